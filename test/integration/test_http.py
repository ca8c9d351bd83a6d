#!/usr/bin/env python3
"""`airlock mcp --http` at the wire: Streamable HTTP with http.client and raw sockets. Tokens,
Origin and Host checks, size bounds, clients that leave, many idle connections, the initialize
era's sessions, 2026-07-28's header rules, event streams, kept states per token, start-up
refusals, SIGTERM, fairness between tokens, the audit log's client. VMs run on
$AIRLOCK_TEST_BACKEND (default tcg)."""
import hashlib
import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "perf"))
from harness import AIRLOCK, SLOWDOWN, expect, main, test, wait_until_gone  # noqa: E402
from mcp_http_client import run_load, summarize  # noqa: E402

BACKEND = os.environ.get("AIRLOCK_TEST_BACKEND", "tcg")
TOKENS = {"alice": "alice-0123456789abcdef", "bob": "bob-0123456789abcdef0"}
V2026 = "2026-07-28"
PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"
INFO = "io.modelcontextprotocol/clientInfo"
BODY_MAX = 16 << 20  # SPEC.md: a message over 16 MiB is refused


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # {lower-case name: value}
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def messages(self):
        """The JSON-RPC messages of the body: one (JSON) or each event's (an event stream)."""
        if (self.header("content-type") or "").startswith("text/event-stream"):
            return sse_messages(self.body)
        return [self.json()]

    def __repr__(self):
        return "HTTP %d %r %r" % (self.status, self.headers, self.body[:600])


def sse_messages(data):
    msgs = []
    for event in data.decode().split("\n\n"):
        lines = [l[len("data: "):] for l in event.split("\n") if l.startswith("data: ")]
        if lines:
            msgs.append(json.loads("\n".join(lines)))
    return msgs


def vm_children(pid):
    """The server's VM processes: its children, but for short-lived forks of the server itself."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    try:
        server_exe = os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return []
    vms = []
    for child in out.split():
        try:
            if os.readlink("/proc/%s/exe" % child) == server_exe:
                continue
        except OSError:
            continue
        vms.append(child)
    return vms


def modern(method, params=None, id=1, caps=None, meta=None):
    """A 2026-07-28 request's body and the headers that go with it."""
    m = {PV: V2026, CAPS: caps if caps is not None else {}, INFO: {"name": "http-test",
                                                                   "version": "1"}}
    m.update(meta or {})
    body = {"jsonrpc": "2.0", "id": id, "method": method, "params": dict(params or {}, _meta=m)}
    headers = {"MCP-Protocol-Version": V2026, "Mcp-Method": method}
    if method == "tools/call":
        headers["Mcp-Name"] = body["params"]["name"]
    elif method.startswith("tasks/"):
        headers["Mcp-Name"] = body["params"]["taskId"]
    return body, headers


def call_params(code, **args):
    return {"name": "execute_code", "arguments": dict(args, code=code)}


class HttpServer:
    """One `airlock mcp --http 127.0.0.1:0` process; its stderr is gathered by a thread."""

    def __init__(self, *args, tokens=TOKENS, token_text=None, audit=False, wait_healthy=True):
        self.dir = tempfile.mkdtemp(prefix="airlock-http-test-")
        cmd = [AIRLOCK, "mcp", "--backend", BACKEND, "--http", "127.0.0.1:0"]
        if tokens is not None:
            path = os.path.join(self.dir, "tokens")
            with open(path, "w") as f:
                f.write(token_text if token_text is not None else
                        "".join("%s:%s\n" % kv for kv in tokens.items()))
            os.chmod(path, 0o600)
            cmd += ["--token-file", path]
        self.audit_path = os.path.join(self.dir, "audit.log") if audit else None
        if audit:
            cmd += ["--audit-log", self.audit_path]
        self.proc = subprocess.Popen(cmd + list(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.err = []
        self.listening = threading.Event()
        self.port = None
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()
        try:
            if not self.listening.wait(30 * SLOWDOWN):
                raise AssertionError("no listening line: %s" % self.stderr())
            if wait_healthy:
                self.wait_healthy()
        except BaseException:
            self.close()
            raise

    def _read_stderr(self):
        for line in self.proc.stderr:
            line = line.decode(errors="replace")
            self.err.append(line)
            m = re.search(r"airlock: listening on http://127\.0\.0\.1:(\d+)/mcp", line)
            if m:
                self.port = int(m.group(1))
                self.listening.set()

    def stderr(self):
        return "".join(self.err)[-3000:]

    def wait_healthy(self, timeout=60):
        deadline = time.monotonic() + timeout * SLOWDOWN
        while True:
            r = self.request("GET", "/healthz", token=None)
            if r.status == 200:
                return r
            expect(time.monotonic() < deadline, "healthy within %d s" % timeout, r)
            time.sleep(0.1)

    def connect(self, timeout=120):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * SLOWDOWN)

    def request(self, method, path, body=None, headers=None, token="alice", timeout=120,
                conn=None):
        """One request on a fresh connection (or conn); returns a Reply. token: a TOKENS label,
        None for no Authorization, or ("raw", VALUE) for the header as given."""
        h = {}
        if isinstance(token, tuple):
            h["Authorization"] = token[1]
        elif token:
            h["Authorization"] = "Bearer " + TOKENS[token]
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
            h["Accept"] = "application/json, text/event-stream"
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        own = conn is None
        c = conn or self.connect(timeout)
        try:
            c.request(method, path, body, h)
            r = c.getresponse()
            data = r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            if own:
                c.close()

    def post(self, body, headers=None, token="alice", **kw):
        return self.request("POST", "/mcp", body, headers, token, **kw)

    def modern(self, method, params=None, id=1, caps=None, meta=None, headers=None,
               token="alice", **kw):
        body, h = modern(method, params, id, caps, meta)
        h.update(headers or {})
        return self.post(body, h, token, **kw)

    def call(self, code, token="alice", accept=None, meta=None, **args):
        """A 2026-07-28 tools/call; returns (Reply, its last message)."""
        headers = {"Accept": accept} if accept else None
        r = self.modern("tools/call", call_params(code, **args), meta=meta, headers=headers,
                        token=token)
        expect(r.status == 200, "tools/call answered", r)
        return r, r.messages()[-1]

    def metrics(self):
        r = self.request("GET", "/metrics")
        expect(r.status == 200, "metrics", r)
        return r.body.decode()

    def vms(self):
        return vm_children(self.proc.pid)

    def wait_for_vm(self, timeout=30):
        deadline = time.monotonic() + timeout * SLOWDOWN
        while not self.vms():
            expect(time.monotonic() < deadline, "a VM started")
            time.sleep(0.02)
        return self.vms()

    def stop(self):
        """SIGTERM, and the end of its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)

    def close(self):
        self.stop()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def metric(text, name):
    """The value of one sample line (name with its labels, as written), or None."""
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def sleeper_body(seconds, id="sleeper"):
    return modern("tools/call", call_params("import time; time.sleep(%d)" % seconds), id=id)


def send_raw_request(port, body_obj, headers, token="alice"):
    """A POST /mcp on a socket of its own, the response left unread; returns the socket."""
    payload = json.dumps(body_obj).encode()
    head = ["POST /mcp HTTP/1.1", "Host: 127.0.0.1:%d" % port,
            "Authorization: Bearer " + TOKENS[token], "Content-Type: application/json",
            "Content-Length: %d" % len(payload)]
    head += ["%s: %s" % kv for kv in headers.items()]
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    return s


# ---- access: tokens, Origin, Host ----

@test
def healthz_answers_ok_without_a_token():
    s = HttpServer(wait_healthy=False)
    try:
        r = s.wait_healthy()
        expect(r.body == b"ok\n" and r.header("content-type").startswith("text/plain"),
               "200 ok", r)
        r = s.request("GET", "/healthz", token=("raw", "Bearer wrong-token-0123456789"))
        expect(r.status == 200 and r.body == b"ok\n", "a wrong token does not matter there", r)
    finally:
        s.close()


@test
def a_missing_or_wrong_token_gets_401_with_an_empty_body():
    s = HttpServer()
    try:
        body, headers = modern("tools/list")
        wrong = [None, ("raw", "Bearer " + TOKENS["alice"][:-1] + "X"),
                 ("raw", "Bearer " + TOKENS["alice"] + "X"), ("raw", "Bearer "),
                 ("raw", "Basic " + TOKENS["alice"]), ("raw", TOKENS["alice"])]
        for token in wrong:
            r = s.post(body, headers, token=token)
            expect(r.status == 401 and r.body == b"" and
                   r.header("www-authenticate") == "Bearer", "401 for %r" % (token,), r)
        r = s.request("GET", "/mcp", token=None)
        expect(r.status == 401 and r.body == b"", "GET without a token too", r)
        for label in TOKENS:
            r = s.post(body, headers, token=label)
            expect(r.status == 200 and r.messages()[0]["result"]["tools"], "%s's token" % label,
                   r)
        r = s.post(body, headers, token=("raw", "bearer " + TOKENS["bob"]))
        expect(r.status == 200, "the scheme's name in any case", r)
    finally:
        s.close()


@test
def metrics_need_the_token_and_count_calls():
    s = HttpServer()
    try:
        r = s.request("GET", "/metrics", token=None)
        expect(r.status == 401 and r.body == b"", "no token: 401", r)
        s.call("print('ok')")
        s.call("raise SystemExit(3)")
        text = s.metrics()
        for line in ('airlock_calls_total{client="alice",outcome="ok"} 1',
                     'airlock_calls_total{client="alice",outcome="error"} 1',
                     "airlock_call_duration_seconds_count 2",
                     'airlock_http_refusals_total{reason="token"} 1'):
            expect(re.search("^%s$" % re.escape(line), text, re.M), line, text)
        for name in ("airlock_calls_running", "airlock_calls_queued", "airlock_vms",
                     "airlock_pool_ready", "airlock_http_connections", "airlock_tasks",
                     'airlock_call_duration_seconds_bucket{le="+Inf"}'):
            expect(metric(text, name) is not None, name, text)
        expect("# TYPE airlock_calls_total counter" in text, "Prometheus text", text)
    finally:
        s.close()


@test
def a_foreign_origin_is_refused_with_403():
    s = HttpServer()
    try:
        body, headers = modern("tools/list")
        for origin in ("https://evil.example.com", "http://localhost.evil.example.com",
                       "http://127.0.0.1.evil.example.com:%d" % s.port, "null"):
            r = s.post(body, dict(headers, Origin=origin))
            expect(r.status == 403, "Origin %s: 403" % origin, r)
    finally:
        s.close()


@test
def a_loopback_origin_is_allowed():
    s = HttpServer()
    try:
        body, headers = modern("tools/list")
        for origin in ("http://localhost:%d" % s.port, "http://127.0.0.1:%d" % s.port,
                       "http://localhost", "https://[::1]:8080"):
            r = s.post(body, dict(headers, Origin=origin))
            expect(r.status == 200 and r.messages()[0]["result"]["tools"], origin, r)
    finally:
        s.close()


@test
def a_foreign_host_on_a_loopback_bind_is_refused_with_403():
    """DNS rebinding: a page of evil.example.com whose name now points at 127.0.0.1 still
    sends its own name in Host. Without a token file the Host check is the wall (with tokens a
    page has none to show, and a proxy may pass its own Host: docs/interface.md)."""
    s = HttpServer(tokens=None)
    try:
        body, headers = modern("tools/list")
        for host in ("evil.example.com", "evil.example.com:%d" % s.port,
                     "localhost.evil.example.com:%d" % s.port, "127.0.0.1.nip.io"):
            r = s.post(body, dict(headers, Host=host), token=None)
            expect(r.status == 403, "Host %s: 403" % host, r)
            r = s.request("GET", "/healthz", headers={"Host": host}, token=None)
            expect(r.status == 403, "healthz with Host %s: 403" % host, r)
        for host in ("localhost:%d" % s.port, "127.0.0.1:%d" % s.port, "localhost",
                     "LOCALHOST:%d" % s.port):
            r = s.post(body, dict(headers, Host=host), token=None)
            expect(r.status == 200, "Host %s is this server" % host, r)
    finally:
        s.close()


@test
def pipelined_requests_are_answered_in_order():
    s = HttpServer()
    try:
        auth = "Authorization: Bearer %s\r\n" % TOKENS["alice"]
        body = json.dumps(modern("tools/list")[0])
        post = ("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
                "MCP-Protocol-Version: %s\r\nMcp-Method: tools/list\r\nContent-Length: %d\r\n"
                "\r\n%s" % (auth, V2026, len(body), body))
        requests = ["GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                    "GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % auth,
                    post,
                    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n"
                    % auth]
        sock = socket.create_connection(("127.0.0.1", s.port))
        try:
            sock.sendall("".join(requests).encode())  # in one write: read together
            sock.settimeout(10 * SLOWDOWN)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
        seen = re.findall(rb"HTTP/1\.1 (\d+) .*?\r\n\r\n(ok\n|404 the MCP|\{\"jsonrpc\"|# HELP)",
                          data, re.S)
        expect(seen == [(b"200", b"ok\n"), (b"404", b"404 the MCP"), (b"200", b'{"jsonrpc"'),
                        (b"200", b"# HELP")], "four answers in the order asked", seen)
    finally:
        s.close()


# ---- bounds ----

def read_response(sock, timeout):
    """The status line and body of what the server answered on sock (whole: it closes after,
    or the body's length or a chunked stream's end says so)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length: *(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
                if re.search(rb"(?i)transfer-encoding: *chunked", head) and \
                        rest.endswith(b"0\r\n\r\n"):
                    break  # an event stream, ended
    except ConnectionResetError:
        pass
    return data


@test
def a_body_announced_over_16_mib_gets_413_before_it_is_sent():
    s = HttpServer()
    try:
        sock = socket.create_connection(("127.0.0.1", s.port))
        try:
            sock.sendall(("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                          "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\n\r\n" % (s.port, TOKENS["alice"], 17 << 20))
                         .encode())
            data = read_response(sock, 10 * SLOWDOWN)
        finally:
            sock.close()
        expect(data.startswith(b"HTTP/1.1 413 "), "413 without waiting for the body", data)
        r = s.modern("tools/list")
        expect(r.status == 200, "the server serves on", r)
    finally:
        s.close()


@test
def a_request_without_a_token_is_refused_before_its_body_is_read():
    """Only a client that shows a token gets its body read (and held in memory): without one,
    a POST announcing a large body is answered 401 at once, and the connection closed."""
    s = HttpServer()
    try:
        for auth in ("", "Authorization: Bearer wrong-0123456789abcdef\r\n"):
            sock = socket.create_connection(("127.0.0.1", s.port))
            try:
                sock.sendall(("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s"
                              "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                              % (s.port, auth, 8 << 20)).encode())
                sock.sendall(b"{" + b" " * 1000)  # a start of the body, never finished
                t = time.monotonic()
                data = read_response(sock, 10 * SLOWDOWN)
                took = time.monotonic() - t
            finally:
                sock.close()
            expect(data.startswith(b"HTTP/1.1 401 ") and took < 2 * SLOWDOWN,
                   "401 without waiting for the body (%.2f s)" % took, data)
    finally:
        s.close()


@test
def a_chunked_body_growing_past_16_mib_gets_413():
    s = HttpServer()
    try:
        sock = socket.create_connection(("127.0.0.1", s.port))
        sent = 0
        try:
            sock.sendall(("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                          "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n" % (s.port, TOKENS["alice"]))
                         .encode())
            chunk = b"100000\r\n" + b" " * (1 << 20) + b"\r\n"  # 1 MiB of JSON whitespace
            deadline = time.monotonic() + 60 * SLOWDOWN
            while sent <= BODY_MAX + (2 << 20) and time.monotonic() < deadline:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += 1 << 20
            data = read_response(sock, 10 * SLOWDOWN)
        finally:
            sock.close()
        expect(data.startswith(b"HTTP/1.1 413 "), "413 after %d MiB" % (sent >> 20), data[:200])
        expect(sent > BODY_MAX - (1 << 20), "not before 16 MiB came (%d MiB)" % (sent >> 20))
        r = s.modern("tools/list")
        expect(r.status == 200, "the server serves on", r)
    finally:
        s.close()


# ---- clients that leave, many clients ----

@test
def a_client_that_disconnects_mid_call_has_its_vm_killed():
    s = HttpServer("--pool", "0")  # the call's VM is then the only one
    try:
        for accept in ("application/json, text/event-stream", "application/json"):
            body, headers = sleeper_body(30)
            sock = send_raw_request(s.port, body, dict(headers, Accept=accept))
            vms = s.wait_for_vm()
            time.sleep(0.2)
            sock.close()
            took = wait_until_gone(vms, 5 * SLOWDOWN)
            expect(took is not None and took < 2 * SLOWDOWN,
                   "Accept %s: the VM gone %s after the client left" %
                   (accept, "%.2f s" % took if took is not None else "not within 5 s"))
        text = s.metrics()
        expect(metric(text, 'airlock_calls_total{client="alice",outcome="cancelled"}') == 2,
               "both counted as cancelled", text)
        _, m = s.call("print('after')")
        expect(m["result"]["structuredContent"]["stdout"] == "after\n", "the next call works", m)
    finally:
        s.close()


def raise_fd_limit(want):
    """Raises this process's RLIMIT_NOFILE (the server started after inherits it); returns the
    old one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError) as e:
            raise AssertionError("cannot raise RLIMIT_NOFILE to %d (hard limit %d): %s; run as "
                                 "root or raise the hard limit" % (want, hard, e))
    return soft, hard


@test
def a_thousand_idle_connections_do_not_stop_a_new_clients_call():
    old = raise_fd_limit(4096)
    s = None
    idle = []
    try:
        s = HttpServer()
        for i in range(1000):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            if i % 2:  # half of them have started a request and stopped (slowloris)
                c.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10")
            idle.append(c)
        deadline = time.monotonic() + 30 * SLOWDOWN
        while True:  # every one of them accepted by the server
            n = metric(s.metrics(), "airlock_http_connections")
            if n is not None and n >= 1001:
                break
            expect(time.monotonic() < deadline, "1000 connections held (%s)" % n)
            time.sleep(0.2)
        started = time.monotonic()
        _, m = s.call("print('through')")
        took = time.monotonic() - started
        expect(m["result"]["structuredContent"]["stdout"] == "through\n", "the call", m)
        expect(took < 10 * SLOWDOWN, "answered in %.1f s" % took)
        alive = sum(1 for c in idle[:10] if not select.select([c], [], [], 0)[0])
        expect(alive == 10, "the idle ones are still open (%d of 10)" % alive)
    finally:
        for c in idle:
            c.close()
        if s:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


@test
def idle_connections_are_closed_after_30_seconds():
    s = HttpServer()
    try:
        fresh = socket.create_connection(("127.0.0.1", s.port))
        partial = socket.create_connection(("127.0.0.1", s.port))
        partial.sendall(b"GET /healthz HTTP/1.1\r\n")
        kept = s.connect()
        r = s.request("GET", "/healthz", token=None, conn=kept)
        expect(r.status == 200 and r.header("connection") == "keep-alive", "kept alive", r)
        opened = time.monotonic()
        socks = {"nothing sent": fresh, "half a request": partial, "after a request": kept.sock}
        time.sleep(25)
        for what, sock in socks.items():
            expect(not select.select([sock], [], [], 0)[0], "%s: open after 25 s" % what)
        for what, sock in socks.items():
            left = opened + 40 - time.monotonic()
            ready = select.select([sock], [], [], max(left, 0))[0]
            expect(ready and sock.recv(1024) == b"", "%s: closed by the server after %.0f s"
                   % (what, time.monotonic() - opened))
        for sock in (fresh, partial):
            sock.close()
        kept.close()
    finally:
        s.close()


# ---- the initialize era over HTTP: sessions ----

def initialize(s, token="alice", version="2025-11-25"):
    r = s.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": version, "capabilities": {},
                           "clientInfo": {"name": "legacy-http", "version": "1"}}},
               token=token)
    expect(r.status == 200, "initialize", r)
    return r


def legacy(s, session, method="tools/list", id=1, token="alice", params=None, version=None):
    msg = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        msg["params"] = params
    headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": version}
    return s.post(msg, headers, token=token)


@test
def initialize_opens_a_session_named_in_mcp_session_id():
    s = HttpServer()
    try:
        r = initialize(s)
        sid = r.header("mcp-session-id")
        expect(sid and re.fullmatch(r"[\x21-\x7e]{16,}", sid), "a session id", r)
        expect(r.messages()[0]["result"]["protocolVersion"] == "2025-11-25", "2025-11-25", r)
        r2 = initialize(s, version="2025-06-18")
        expect(r2.messages()[0]["result"]["protocolVersion"] == "2025-06-18" and
               r2.header("mcp-session-id") not in (None, sid), "another session, 2025-06-18",
               r2)
        r = s.post({"jsonrpc": "2.0", "method": "notifications/initialized"},
                   {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
        expect(r.status == 202 and r.body == b"", "initialized: 202", r)
        r = legacy(s, sid, version="2025-11-25")
        expect(r.status == 200 and r.messages()[0]["result"]["tools"][0]["name"] ==
               "execute_code", "tools/list in the session", r)
        expect("resultType" not in r.messages()[0]["result"], "an initialize-era result", r)
        r = legacy(s, sid, "ping", id=2)
        expect(r.status == 200 and r.messages()[0]["result"] == {}, "ping", r)
    finally:
        s.close()


@test
def a_request_without_the_session_id_gets_400():
    s = HttpServer()
    try:
        initialize(s)
        r = s.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        expect(r.status == 400, "400", r)
    finally:
        s.close()


@test
def an_unknown_session_id_gets_404():
    s = HttpServer()
    try:
        sid = initialize(s).header("mcp-session-id")
        other = "0" * len(sid) if sid != "0" * len(sid) else "1" * len(sid)
        for bad in (other, sid + "0", sid[:-1], "x"):
            r = legacy(s, bad)
            expect(r.status == 404, "session %r: 404" % bad, r)
        r = s.modern("tools/list", headers={"Mcp-Session-Id": other})
        expect(r.status == 200, "a 2026-07-28 request ignores Mcp-Session-Id", r)
    finally:
        s.close()


@test
def another_tokens_session_reads_as_unknown():
    s = HttpServer()
    try:
        sid = initialize(s, token="alice").header("mcp-session-id")
        r = legacy(s, sid, token="bob")
        expect(r.status == 404, "bob with alice's session: 404", r)
        r = s.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid}, token="bob")
        expect(r.status == 404, "bob cannot end it", r)
        r = legacy(s, sid, token="alice")
        expect(r.status == 200, "alice's still works", r)
    finally:
        s.close()


@test
def delete_ends_the_session():
    s = HttpServer()
    try:
        sid = initialize(s).header("mcp-session-id")
        expect(legacy(s, sid).status == 200, "the session works")
        r = s.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid})
        expect(r.status in (200, 204), "DELETE ends it", r)
        r = legacy(s, sid)
        expect(r.status == 404, "gone after DELETE", r)
        r = s.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid})
        expect(r.status == 404, "a second DELETE: 404", r)
    finally:
        s.close()


@test
def delete_ends_a_session_with_a_call_in_flight():
    """A DELETE answered with success ends the session even while one of its calls runs: later
    requests with its id get 404 (or the DELETE is refused, and says so)."""
    s = HttpServer("--pool", "0")
    try:
        sid = initialize(s).header("mcp-session-id")
        sock = send_raw_request(s.port, {"jsonrpc": "2.0", "id": "running", "method": "tools/call",
                                         "params": call_params("import time; time.sleep(30)")},
                                {"Accept": "application/json, text/event-stream",
                                 "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
        try:
            s.wait_for_vm()
            r = s.request("DELETE", "/mcp", headers={"Mcp-Session-Id": sid})
            if 200 <= r.status < 300:
                after = legacy(s, sid)
                expect(after.status == 404, "DELETE said %d, yet the session still serves "
                       "(tools/list in it: HTTP %d)" % (r.status, after.status))
            else:
                expect(r.status != 404, "the session exists: not 404", r)
        finally:
            sock.close()
    finally:
        s.close()


@test
def a_legacy_session_cancels_a_call_with_notifications_cancelled():
    """The initialize era over HTTP cancels with a notifications/cancelled POSTed in the session
    (2025-11-25's transport: a disconnection is not a cancellation, the notification is); its
    VM is killed and no result is sent."""
    s = HttpServer("--pool", "0")
    try:
        sid = initialize(s).header("mcp-session-id")
        session = {"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}
        sock = send_raw_request(s.port, {"jsonrpc": "2.0", "id": "victim", "method": "tools/call",
                                         "params": call_params("import time; time.sleep(30)")},
                                dict(session, Accept="application/json, text/event-stream"))
        try:
            vms = s.wait_for_vm()
            time.sleep(0.2)
            r = s.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": "victim", "reason": "test"}}, session)
            expect(r.status == 202, "the notification accepted", r)
            took = wait_until_gone(vms, 5 * SLOWDOWN)
            expect(took is not None and took < 1 * SLOWDOWN,
                   "the VM gone %s after the cancel" %
                   ("%.2f s" % took if took is not None else "not within 5 s"))
            data = read_response(sock, 2)
            expect(b'"result"' not in data, "no result for it", data)
        finally:
            sock.close()
    finally:
        s.close()


@test
def get_on_mcp_is_405():
    s = HttpServer()
    try:
        r = s.request("GET", "/mcp", headers={"Accept": "text/event-stream"})
        expect(r.status == 405 and "POST" in (r.header("allow") or ""), "405, Allow: POST", r)
        sid = initialize(s).header("mcp-session-id")
        r = s.request("GET", "/mcp", headers={"Accept": "text/event-stream",
                                              "Mcp-Session-Id": sid})
        expect(r.status == 405, "in a session too", r)
    finally:
        s.close()


# ---- 2026-07-28 over HTTP: stateless ----

def expect_rpc_error(r, status, code, id=1):
    expect(r.status == status and
           (r.header("content-type") or "").startswith("application/json"),
           "HTTP %d with a JSON body" % status, r)
    msg = r.json()
    expect(msg["error"]["code"] == code and msg.get("id") == id, "error %d" % code, r)
    return msg


@test
def missing_or_mismatched_headers_get_400_with_32020():
    s = HttpServer()
    try:
        body, headers = modern("tools/call", call_params("print(1)"))
        cases = {
            "no MCP-Protocol-Version": {"MCP-Protocol-Version": None},
            "MCP-Protocol-Version 2025-11-25": {"MCP-Protocol-Version": "2025-11-25"},
            "no Mcp-Method": {"Mcp-Method": None},
            "Mcp-Method tools/list": {"Mcp-Method": "tools/list"},
            "no Mcp-Name": {"Mcp-Name": None},
            "Mcp-Name other_tool": {"Mcp-Name": "other_tool"},
            "Mcp-Name base64 of another": {"Mcp-Name": "=?base64?b3RoZXJfdG9vbA==?="},
        }
        for what, change in cases.items():
            r = s.post(body, dict(headers, **change))
            msg = expect_rpc_error(r, 400, -32020)
            expect(msg["error"]["message"], what, r)
        body, headers = modern("tools/list")
        r = s.post(body, dict(headers, **{"Mcp-Method": "tools/call"}))
        expect_rpc_error(r, 400, -32020)
        # what agrees is served: the plain name and its base64 form
        for name in ("execute_code", "=?base64?ZXhlY3V0ZV9jb2Rl?="):
            body, headers = modern("tools/call", call_params("print(6 * 7)"))
            r = s.post(body, dict(headers, **{"Mcp-Name": name}))
            expect(r.status == 200 and
                   r.messages()[-1]["result"]["structuredContent"]["stdout"] == "42\n",
                   "Mcp-Name %s" % name, r)
    finally:
        s.close()


@test
def an_unknown_method_gets_404_with_a_32601_body():
    s = HttpServer()
    try:
        for method in ("prompts/list", "ping", "no/such/method"):
            r = s.modern(method)
            expect_rpc_error(r, 404, -32601)
    finally:
        s.close()


@test
def an_unsupported_meta_version_gets_400_32022_with_the_supported_ones():
    s = HttpServer()
    try:
        body, headers = modern("tools/list")
        body["params"]["_meta"][PV] = "2099-01-01"
        r = s.post(body, dict(headers, **{"MCP-Protocol-Version": "2099-01-01"}))
        msg = expect_rpc_error(r, 400, -32022)
        data = msg["error"]["data"]
        expect(V2026 in data["supported"] and "2025-11-25" in data["supported"] and
               data["requested"] == "2099-01-01", "data.supported, data.requested", msg)
        body, headers = modern("tools/list")
        del body["params"]["_meta"][CAPS]
        expect_rpc_error(s.post(body, headers), 400, -32602)
    finally:
        s.close()


@test(timeout=120)
def a_quiet_event_stream_gets_a_comment_every_15_seconds():
    """A call that says nothing for a while (no progress token) still shows its stream alive:
    a reverse proxy in front with a read timeout (nginx's is 60 s) must not cut a long call."""
    s = HttpServer()
    try:
        body, headers = modern("tools/call", call_params("import time; time.sleep(17)"), id="q")
        c = s.connect()
        try:
            h = dict(headers, Authorization="Bearer " + TOKENS["alice"],
                     **{"Content-Type": "application/json",
                        "Accept": "application/json, text/event-stream"})
            t0 = time.monotonic()
            c.request("POST", "/mcp", json.dumps(body), h)
            resp = c.getresponse()
            comments, result_at = [], None
            while True:
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b":"):
                    comments.append(time.monotonic() - t0)
                elif line.startswith(b"data:") and b'"id":"q"' in line:
                    result_at = time.monotonic() - t0
        finally:
            c.close()
        expect(result_at is not None and comments and comments[0] < result_at and
               13 < comments[0] < 17 * SLOWDOWN,
               "a comment line about 15 s in, before the result (comments at %s, result at %s)"
               % (comments, result_at))
    finally:
        s.close()


@test
def tools_call_streams_progress_before_its_result_when_the_client_takes_events():
    s = HttpServer()
    try:
        code = "import time; time.sleep(2.5); print('slept')"
        body, headers = modern("tools/call", call_params(code), id="p",
                               meta={"progressToken": "tick"})
        c = s.connect()
        try:
            h = dict(headers, Authorization="Bearer " + TOKENS["alice"],
                     **{"Content-Type": "application/json",
                        "Accept": "application/json, text/event-stream"})
            c.request("POST", "/mcp", json.dumps(body), h)
            resp = c.getresponse()
            expect(resp.status == 200 and
                   resp.getheader("Content-Type").startswith("text/event-stream"),
                   "an event stream", resp.getheaders())
            events, data = [], b""
            while True:
                line = resp.readline()
                if not line:
                    break
                data += line
                if line == b"\n":
                    events.append((time.monotonic(), sse_messages(data)[0]))
                    data = b""
            # the stream ended cleanly: the connection carries the next request
            again = s.modern("tools/list", conn=c)
            expect(again.status == 200 and again.messages()[0]["result"]["tools"],
                   "the connection is reused after the stream", again)
        finally:
            c.close()
        progress = [(t, m) for t, m in events if m.get("method") == "notifications/progress"]
        final = [(t, m) for t, m in events if m.get("id") == "p"]
        expect(len(final) == 1 and events[-1][1] is final[0][1], "the result comes last", events)
        expect(len(progress) >= 2 and
               all(m["params"]["progressToken"] == "tick" for _, m in progress),
               "progress notifications with the token", events)
        expect(final[0][0] - progress[0][0] > 0.8,
               "the first progress came %.2f s before the result, as the program ran"
               % (final[0][0] - progress[0][0]))
        result = final[0][1]["result"]
        expect(result["structuredContent"]["stdout"] == "slept\n" and
               result["resultType"] == "complete", "the result", result)
    finally:
        s.close()


@test
def tools_call_is_answered_as_json_when_the_client_takes_only_json():
    s = HttpServer()
    try:
        r, m = s.call("import time; time.sleep(1.5); print('json')", accept="application/json",
                      meta={"progressToken": "tick"})
        expect(r.header("content-type").startswith("application/json"), "JSON", r)
        expect(m["result"]["structuredContent"]["stdout"] == "json\n" and
               m["result"]["resultType"] == "complete", "the result alone", r)
    finally:
        s.close()


# ---- kept states, audit log ----

@test
def a_kept_state_belongs_to_the_token_that_made_it():
    s = HttpServer()
    try:
        _, m = s.call("x = 41", keep_state=True)
        sid = m["result"]["structuredContent"]["state_id"]
        expect(isinstance(sid, str) and sid, "a state_id", m)
        _, m = s.call("print(x + 1)", token="bob", state_id=sid)
        r = m["result"]
        expect(r["isError"] and sid in r["content"][0]["text"] and
               "42" not in json.dumps(r), "bob's call does not know alice's state", m)
        _, m = s.call("print(x + 1)", state_id=sid)
        expect(m["result"]["structuredContent"]["stdout"] == "42\n", "alice continues it", m)
    finally:
        s.close()


@test
def the_audit_log_names_the_token_label():
    bare = "a-bare-token-without-label-0123"
    s = HttpServer(audit=True, token_text="# the team's tokens\nalice:%s\n\nbob:%s\n%s\n"
                   % (TOKENS["alice"], TOKENS["bob"], bare))
    try:
        s.call("print('from alice')")
        s.call("print('from bob')", token="bob")
        s.call("print('bare')", token=("raw", "Bearer " + bare))
        initialize_reply = initialize(s, token="bob")
        sid = initialize_reply.header("mcp-session-id")
        r = legacy(s, sid, "tools/call", token="bob",
                   params=call_params("print('legacy bob')"))
        expect(r.status == 200, "a legacy call", r)
        s.stop()
        with open(s.audit_path) as f:
            text = f.read()
    finally:
        s.close()
    lines = [json.loads(l) for l in text.splitlines()]
    expect([l["client"] for l in lines] == ["alice", "bob", "token-3", "bob"],
           "token labels (a bare token: token-N)", lines)
    expect([l["code_sha256"] for l in lines] ==
           [hashlib.sha256(c.encode()).hexdigest() for c in
            ("print('from alice')", "print('from bob')", "print('bare')",
             "print('legacy bob')")],
           "code digests", lines)
    expect("from alice" not in text and "legacy bob" not in text, "no code, no output", text)


@test
def a_task_belongs_to_the_token_that_made_it():
    s = HttpServer()
    try:
        tasks = {"extensions": {"io.modelcontextprotocol/tasks": {}}}
        r = s.modern("tools/call", call_params("print('task')", timeout_s=60), caps=tasks)
        task = r.messages()[-1]["result"]
        expect(r.status == 200 and task["resultType"] == "task", "a task", r)
        r = s.modern("tasks/get", {"taskId": task["taskId"]}, caps=tasks, token="bob")
        msg = r.messages()[-1]
        expect(msg.get("error", {}).get("code") == -32602, "bob does not see it", r)
        r = s.modern("tasks/cancel", {"taskId": task["taskId"]}, caps=tasks, token="bob")
        expect(r.messages()[-1].get("error", {}).get("code") == -32602, "nor cancel it", r)
        deadline = time.monotonic() + 30 * SLOWDOWN
        while True:
            r = s.modern("tasks/get", {"taskId": task["taskId"]}, caps=tasks)
            got = r.messages()[-1]["result"]
            if got["status"] != "working":
                break
            expect(time.monotonic() < deadline, "the task ends", got)
            time.sleep(0.1)
        expect(got["status"] == "completed" and
               got["result"]["structuredContent"]["stdout"] == "task\n", "alice's result", got)
        body, headers = modern("tasks/get", {"taskId": task["taskId"]}, caps=tasks)
        r = s.post(body, dict(headers, **{"Mcp-Name": "0" * 32}))
        expect_rpc_error(r, 400, -32020)
    finally:
        s.close()


# ---- start-up ----

@test
def without_a_token_file_a_non_loopback_address_is_refused_at_start():
    p = subprocess.run([AIRLOCK, "mcp", "--backend", BACKEND, "--http", "0.0.0.0:0"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    err = p.stderr.decode(errors="replace")
    expect(p.returncode != 0 and "loopback" in err and "listening" not in err,
           "refused (exit %d)" % p.returncode, err)


@test
def without_a_token_file_a_loopback_address_warns_and_serves():
    s = HttpServer(tokens=None)
    try:
        expect(re.search(r"warning.*any local process", s.stderr()), "a warning", s.stderr())
        _, m = s.call("print('open')", token=None)
        expect(m["result"]["structuredContent"]["stdout"] == "open\n", "served", m)
    finally:
        s.close()


@test
def a_token_file_with_a_short_token_is_refused_at_start():
    d = tempfile.mkdtemp(prefix="airlock-http-test-")
    try:
        for content in ("alice:short\n", "x" * 15 + "\n",
                        "alice:alice-0123456789abcdef\nbob:tooshort\n"):
            path = os.path.join(d, "tokens")
            with open(path, "w") as f:
                f.write(content)
            os.chmod(path, 0o600)
            p = subprocess.run([AIRLOCK, "mcp", "--backend", BACKEND, "--http", "127.0.0.1:0",
                                "--token-file", path], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=30)
            err = p.stderr.decode(errors="replace")
            expect(p.returncode != 0 and "token" in err and "listening" not in err,
                   "%r refused (exit %d)" % (content, p.returncode), err)
    finally:
        shutil.rmtree(d)


# ---- shutdown, fairness ----

@test
def sigterm_while_a_call_runs_exits_zero_and_leaves_no_vm():
    s = HttpServer()
    try:
        body, headers = sleeper_body(30)
        sock = send_raw_request(s.port, body, dict(headers, Accept="application/json, "
                                                   "text/event-stream"))
        s.wait_for_vm()
        time.sleep(0.5)
        vms = s.vms()
        t = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        status = s.proc.wait(timeout=15)
        took = time.monotonic() - t
        expect(status == 0 and took < 3 * SLOWDOWN, "exit %s after %.2f s" % (status, took))
        expect(wait_until_gone(vms, 2) is not None, "no VM left",
               [p for p in vms if os.path.exists("/proc/%s" % p)])
        data = read_response(sock, 5)
        sock.close()
        expect(b'"id":"sleeper"' not in data, "no result for the call", data)
    finally:
        s.close()


@test
def one_tokens_calls_do_not_starve_anothers():
    """--max-concurrent 1: alice queues 6 one-second calls, then bob sends one quick call; the
    clients take turns at the free slot, so bob's answer comes before alice's third."""
    s = HttpServer("--max-concurrent", "1")
    try:
        done = []
        lock = threading.Lock()

        def run(label, token, code):
            _, m = s.call(code, token=token)
            with lock:
                done.append((label, m))

        threads = []
        for i in range(6):
            t = threading.Thread(target=run, daemon=True,
                                 args=("a%d" % i, "alice",
                                       "import time; time.sleep(1); print('a%d')" % i))
            t.start()
            threads.append(t)
        deadline = time.monotonic() + 30 * SLOWDOWN
        while True:  # alice's six are in: one runs, five wait
            text = s.metrics()
            if (metric(text, "airlock_calls_running"), metric(text, "airlock_calls_queued")) == \
                    (1, 5):
                break
            expect(time.monotonic() < deadline and not done, "alice's calls queued", text)
            time.sleep(0.02)
        t = threading.Thread(target=run, args=("b", "bob", "print('b')"), daemon=True)
        t.start()
        threads.append(t)
        for t in threads:
            t.join(timeout=120 * SLOWDOWN)
        order = [label for label, _ in done]
        expect(sorted(order) == sorted(["a%d" % i for i in range(6)] + ["b"]), "all answered",
               done)
        for label, m in done:
            expect(m["result"]["structuredContent"]["stdout"] == label + "\n", label, m)
        alice_before_bob = order.index("b")
        expect(alice_before_bob <= 2, "bob's answer came before alice's third: %s" % order)
    finally:
        s.close()


@test(timeout=900)
def fifty_clients_of_twenty_calls_all_succeed():
    """The load test of the issue: 50 clients at once, each its own connection, 20 calls of
    print(1) each, half of them on each token and in each era, through one server at its
    defaults: every call answered right."""
    s = HttpServer()
    try:
        url = "http://127.0.0.1:%d/mcp" % s.port
        records = []
        for era, clients in (("2026-07-28", 25), ("2025-11-25", 25)):
            done = []
            t = threading.Thread(target=lambda e=era, c=clients: done.extend(
                run_load(url, sorted(TOKENS.items()), clients=c, calls=20, era=e,
                         deadline_s=800)))
            t.start()
            records.append((t, done))
        for t, _ in records:
            t.join()
        every = [r for _, done in records for r in done]
        summary = summarize(every)
        print("# %d calls, %d failed, %.1f calls/s, median %.0f ms" % (
            summary["calls"], summary["failed"], summary["calls_per_s"] or 0,
            summary["median_ms"] or 0))
        expect(summary["calls"] == 1000 and summary["failed"] == 0,
               "1000 calls, none failed", summary)
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
