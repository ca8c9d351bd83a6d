#!/usr/bin/env bash
# Two `airlock mcp --http` replicas behind HAProxy, sticky by bearer token, under load: the
# deployment docs/deploy.md describes, on one machine. Installs Debian's haproxy when missing
# (needs root). Checks that no call fails, that each token stays on one replica (from the
# proxy's X-Airlock-Replica header and, independently, from each replica's audit log), that a
# kept state made through the proxy continues through it (and is not another token's), and
# that both replicas stop cleanly on SIGTERM. Prints median and p95 call latency through the
# proxy. Exit 0 when every check passes.
#
#   bash test/deploy/haproxy-two-replicas.sh [--airlock PATH] [--backend tcg|kvm|auto]
#        [--clients N] [--calls N] [--tokens N] [--era 2025-11-25] [--keep-dir]
#
# Everything listens on 127.0.0.1 (ports picked free); it stops by itself (--deadline, default
# 900 s for the load).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=test/deploy

airlock=build/mcp/airlock
backend=tcg
clients=50
calls=20
ntokens=10
era=2025-11-25
deadline=900
keep_dir=false
while [ $# -gt 0 ]; do
  case "$1" in
    --airlock) airlock=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --tokens) ntokens=$2; shift 2 ;;
    --era) era=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    --keep-dir) keep_dir=true; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "haproxy-two-replicas: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { echo "haproxy-two-replicas: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

[ -x "$airlock" ] || fail "no airlock at $airlock (build it: ninja -C build)"
"$airlock" mcp --help 2>&1 | grep -q -- '--http' ||
  fail "$airlock has no --http (this script needs airlock mcp --http)"

if ! command -v haproxy >/dev/null; then
  [ "$(id -u)" = 0 ] || fail "haproxy is missing and installing it needs root"
  say "installing haproxy (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends haproxy >/dev/null
fi

work=$(mktemp -d /tmp/airlock-haproxy.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if $keep_dir; then say "files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The tokens: LABEL:TOKEN, one a line; both replicas take the same file, as replicas of one
# service would.
python3 - "$ntokens" >"$work/tokens" <<'EOF'
import secrets, sys
for i in range(int(sys.argv[1])):
    print("client-%02d:%s" % (i, secrets.token_hex(16)))
print("direct:%s" % secrets.token_hex(16))  # the calls straight to a replica, not the proxy's
EOF
chmod 600 "$work/tokens"

# Each replica has its own state store (as on its own host) and its own audit log.
start_replica() {
  local name=$1
  mkdir -p "$work/$name/states"
  "$airlock" mcp --http 127.0.0.1:0 --token-file "$work/tokens" \
    --audit-log "$work/$name/audit.jsonl" --backend "$backend" \
    --state-dir "$work/$name/states" 2>"$work/$name/stderr" &
  pids+=($!)
  echo $! >"$work/$name/pid"
}

# The port a replica listens on, from its "listening on" line (port 0 picks a free one).
replica_port() {
  local name=$1 i line
  for i in $(seq 1 600); do
    line=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*/mcp' "$work/$name/stderr" | head -n1 || true)
    if [ -n "$line" ]; then
      line=${line##*:}
      echo "${line%/mcp}"
      return 0
    fi
    kill -0 "$(cat "$work/$name/pid")" 2>/dev/null || {
      cat "$work/$name/stderr" >&2
      fail "replica $name exited before listening"
    }
    sleep 0.1
  done
  cat "$work/$name/stderr" >&2
  fail "replica $name did not say it listens within 60 s"
}

# Waits for GET /healthz to answer 200 (images or snapshots may be built first).
wait_healthy() {
  local name=$1 port=$2 i code
  for i in $(seq 1 600); do
    code=$(python3 - "$port" <<'EOF' || true
import http.client, sys
try:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
    c.request("GET", "/healthz")
    print(c.getresponse().status)
except OSError:
    print(0)
EOF
)
    [ "$code" = 200 ] && return 0
    sleep 1
  done
  fail "replica $name: /healthz did not answer 200 within 600 s (last: $code)"
}

start_replica r1
start_replica r2
p1=$(replica_port r1)
p2=$(replica_port r2)
say "replicas listen on 127.0.0.1:$p1 and 127.0.0.1:$p2 (backend $backend)"
wait_healthy r1 "$p1"
wait_healthy r2 "$p2"

# HAProxy: /mcp balanced on a hash of the Authorization header (the same token, the same
# replica, for as long as the set of healthy replicas stays the same); replicas checked with
# GET /healthz; the replica that served a request named in X-Airlock-Replica. A weight of 100
# gives each server more points on the hash ring: a more even share of the tokens.
front=$(free_port)
cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 2000
    stats socket $work/haproxy.sock mode 600 level admin

defaults
    mode http
    timeout connect 5s
    timeout client 330s
    timeout server 330s
    timeout http-request 30s

frontend mcp
    bind 127.0.0.1:$front
    http-request return status 404 content-type text/plain string "not found" if !{ path /mcp }
    default_backend airlock

backend airlock
    balance hdr(Authorization)
    hash-type consistent
    option httpchk
    http-check send meth GET uri /healthz
    http-check expect status 200
    http-response set-header X-Airlock-Replica %[srv_name]
    server r1 127.0.0.1:$p1 weight 100 check inter 2s fall 2 rise 1
    server r2 127.0.0.1:$p2 weight 100 check inter 2s fall 2 rise 1
EOF
haproxy -c -q -f "$work/haproxy.cfg" || fail "haproxy refused its configuration"
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
say "haproxy on 127.0.0.1:$front"

# Both servers UP in haproxy's own view (its health checks on /healthz).
up=0
for i in $(seq 1 100); do
  up=$(python3 - "$work/haproxy.sock" <<'EOF' || true
import socket, sys
try:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall(b"show stat\n")
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    rows = [l.split(",") for l in out.decode().splitlines() if l.startswith("airlock,r")]
    print(sum(1 for r in rows if r[17].startswith("UP")))
except OSError:
    print(0)
EOF
)
  [ "$up" = 2 ] && break
  sleep 0.2
done
[ "$up" = 2 ] || fail "haproxy does not see both replicas UP ($up)"

export PYTHONPATH=$HERE/../perf
rc=0
python3 - "$front" "$work" "$clients" "$calls" "$era" "$deadline" "$p1" <<'EOF' || rc=$?
import http.client, json, sys
from mcp_http_client import (McpHttpClient, McpError, read_token_file, run_load, summarize)

front, work, clients, calls, era, deadline, p1 = sys.argv[1:8]
url = "http://127.0.0.1:%s/mcp" % front
tokens = [t for t in read_token_file(work + "/tokens") if t[0] != "direct"]
direct_token = [t for t in read_token_file(work + "/tokens") if t[0] == "direct"]
failed = []

def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, file=sys.stderr)
    if not cond:
        failed.append(what)

# No token, a wrong token: refused before any replica does work.
for label, headers in (("no token", {}), ("a wrong token", {"Authorization": "Bearer nope"})):
    c = http.client.HTTPConnection("127.0.0.1", int(front), timeout=30)
    c.request("POST", "/mcp", body=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
              headers=dict({"Content-Type": "application/json",
                            "Accept": "application/json, text/event-stream"}, **headers))
    status = c.getresponse().status
    check(status == 401, "%s through haproxy: HTTP %d (401 expected)" % (label, status))

# One client at an agent's pace first (calls 300 ms apart, each finding a warm VM), straight
# to a replica and then through the proxy: what the proxy adds to a call, without queueing.
direct = summarize(run_load("http://127.0.0.1:%s/mcp" % p1, direct_token, 1, 20, era, "print(1)",
                            deadline_s=120, pace_s=0.3))
paced = summarize(run_load(url, tokens[:1], 1, 20, era, "print(1)",
                           served_by_header="X-Airlock-Replica", deadline_s=120, pace_s=0.3))
for what, p in (("straight to r1", direct), ("through haproxy", paced)):
    check(p["failed"] == 0 and p["calls"] == 20,
          "1 client x 20 calls, paced, %s: %d failed %s" % (what, p["failed"], p["errors"]))

# The load.
records = run_load(url, tokens, int(clients), int(calls), era, "print(1)",
                   served_by_header="X-Airlock-Replica", deadline_s=float(deadline))
s = summarize(records)
check(s["calls"] == int(clients) * int(calls) and s["failed"] == 0,
      "%d clients x %d calls: %d made, %d failed %s" % (int(clients), int(calls), s["calls"],
                                                      s["failed"], s["errors"]))
stuck = all(len(v) == 1 for v in s["replicas_by_label"].values())
check(stuck and len(s["replicas_by_label"]) == min(len(tokens), int(clients)),
      "each token served by one replica (X-Airlock-Replica): %s" % s["replicas_by_label"])

# Kept state: keep through haproxy, continue through haproxy; another token cannot use it.
(label_a, token_a), (label_b, token_b) = tokens[0], tokens[1]
with McpHttpClient(url, token_a, era=era) as c:
    kept = c.execute_code("x = 41", keep_state=True)
    sc = kept.get("structuredContent") or {}
    state_id = sc.get("state_id")
    check(bool(state_id) and not kept.get("isError"),
          "keep_state through haproxy (%s, on %s): state_id %s %s" % (
              label_a, c.last_headers.get("x-airlock-replica"), state_id,
              sc.get("state_error") or ""))
    if state_id:
        cont = c.execute_code("print(x + 1)", state_id=state_id)
        out = (cont.get("structuredContent") or {}).get("stdout")
        check(not cont.get("isError") and out == "42\n",
              "state_id continued through haproxy (on %s): stdout %r" % (
                  c.last_headers.get("x-airlock-replica"), out))
if state_id:
    with McpHttpClient(url, token_b, era=era) as c:
        other = c.execute_code("print(x + 1)", state_id=state_id)
        check(bool(other.get("isError")),
              "the same state_id from another token (%s, on %s) is refused" % (
                  label_b, c.last_headers.get("x-airlock-replica")))

s["kept_state_checked"] = bool(state_id)
s["paced"] = paced
s["direct"] = direct
with open(work + "/summary.json", "w") as f:
    json.dump(s, f, indent=1)
print(json.dumps(s))
sys.exit(1 if failed else 0)
EOF

# Both replicas stop on SIGTERM, exit 0 (SPEC.md), within 10 s.
for name in r1 r2; do
  pid=$(cat "$work/$name/pid")
  kill -TERM "$pid"
  code=0
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "FAIL  replica $name still running 10 s after SIGTERM"
    rc=1
  else
    wait "$pid" || code=$?
    if [ "$code" = 0 ]; then say "ok    replica $name exited 0 on SIGTERM"
    else say "FAIL  replica $name exited $code on SIGTERM"; rc=1; fi
  fi
done

# The audit logs, read after the replicas stopped: each label in exactly one of them.
python3 - "$work" "$clients" <<'EOF' || rc=1
import json, sys
work, clients = sys.argv[1], int(sys.argv[2])
seen = {}
for name in ("r1", "r2"):
    try:
        lines = open("%s/%s/audit.jsonl" % (work, name)).read().splitlines()
    except FileNotFoundError:
        lines = []
    labels = {}
    for line in lines:
        entry = json.loads(line)
        labels[entry.get("client")] = labels.get(entry.get("client"), 0) + 1
    print("audit log %s: %d calls, %s" % (name, len(lines), dict(sorted(labels.items()))),
          file=sys.stderr)
    for label in labels:
        seen.setdefault(label, []).append(name)
tokens = [l.split(":", 1)[0] for l in open(work + "/tokens").read().split()
          if not l.startswith("direct:")][:max(2, clients)]
bad = {l: seen.get(l, []) for l in tokens if len(seen.get(l, [])) != 1}
print(("ok    " if not bad else "FAIL  ") +
      "each label in exactly one replica's audit log%s" % ("" if not bad else ": %s" % bad),
      file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

python3 - "$work/summary.json" <<'EOF' || true
import json, sys
s = json.load(open(sys.argv[1]))
fmt = lambda v: "%.1f ms" % v if v is not None else "n/a"
for what, key in (("straight to a replica", "direct"), ("through haproxy", "paced")):
    p = s[key]
    print("FIGURES: 1 client, 20 calls 300 ms apart, %s: median %s, p95 %s" % (
          what, fmt(p["median_ms"]), fmt(p["p95_ms"])))
print("FIGURES: %d calls through haproxy to 2 replicas, %d failed; latency median %s, p95 %s, "
      "max %s; %.1f calls/s over %.1f s" % (s["calls"], s["failed"], fmt(s["median_ms"]),
      fmt(s["p95_ms"]), fmt(s["max_ms"]), s["calls_per_s"] or 0, s["wall_s"]))
EOF
if [ "$rc" = 0 ]; then say "passed"; else say "failed"; fi
exit "$rc"
