#!/usr/bin/env python3
"""Egress end to end (docs/egress.md): a program in the VM reaches servers this test starts on
the host, through the agent's proxy and airlock's policy, on the backend named by
$AIRLOCK_TEST_BACKEND. No test needs the outside network.

The servers listen on 127.0.0.2: in the guest, NO_PROXY sends 127.0.0.1 and localhost to the
guest's own loopback, so a host server on 127.0.0.1 could not be named through the proxy. The
policy allows them by IP literal, the only way a loopback address is ever reachable.
"""
import http.server
import os
import shutil
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SLOWDOWN, airlock, expect, main, run_code, run_json, test  # noqa: E402
from egress_fixtures import GitRepo, NpmRegistry, PypiIndex  # noqa: E402

HOST = "127.0.0.2"
CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "certs")
CA = os.path.join(CERTS, "ca.pem")
HELLO = b"hello from the host\n"
LONG = int(300 * SLOWDOWN)  # the airlock command's own limit, past the VM's --timeout


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, body, status=200):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/hello":
            self._send(HELLO)
        elif self.path == "/echo":  # what reached the server: its request line and Host
            self._send(("%s|%s|%s" % (self.requestline, self.headers.get("Host"),
                                      self.headers.get("Connection"))).encode())
        elif self.path.startswith("/stream/"):  # N bytes
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = bytes(range(256)) * 256
            while n > 0:
                self.wfile.write(block[:min(n, len(block))])
                n -= min(n, len(block))
        elif self.path == "/endless":  # sends until the reader goes away
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass
        elif self.path == "/hang":  # answers nothing, ever
            time.sleep(3600)
        else:
            self._send(b"no such path\n", 404)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self._send(b"got %d bytes" % len(self.rfile.read(n)))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Servers:
    """HTTP and HTTPS (the test CA's certificate for 127.0.0.2) on 127.0.0.2, ports of their own."""

    def __enter__(self):
        self.http = Server((HOST, 0), Handler)
        self.https = Server((HOST, 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(CERTS, "server.pem"), os.path.join(CERTS, "server.key"))
        self.https.socket = ctx.wrap_socket(self.https.socket, server_side=True)
        for s in (self.http, self.https):
            threading.Thread(target=s.serve_forever, daemon=True).start()
        self.http_port = self.http.server_address[1]
        self.https_port = self.https.server_address[1]
        return self

    def __exit__(self, *exc):
        for s in (self.http, self.https):
            s.shutdown()
            s.server_close()

    def allow(self):
        return ["--allow-host", "%s:%d" % (HOST, self.http_port),
                "--allow-host", "%s:%d" % (HOST, self.https_port), "--ca-file", CA]


def free_port():
    """A port on 127.0.0.2 where nothing listens."""
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# A program's raw requests to the proxy, bypassing every client's own rules (NO_PROXY, URL
# parsing): what a hostile program can send. For each, prints "== NAME", the status line and the
# body.
RAW = r'''
import socket
def ask(request):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(request)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode() + "\n" + body.decode(errors="replace")
for name, request in REQUESTS:
    print("==", name)
    print(ask(request))
'''


def raw_requests(*named):
    """A program sending each (name, request text) to the proxy on a connection of its own."""
    return "REQUESTS = %r\n" % [(n, r.encode()) for n, r in named] + RAW


def raw_request(request):
    return raw_requests(("it", request))


@test
def http_and_https_reach_allowed_hosts_and_are_listed():
    with Servers() as s:
        code = """
import urllib.request
print(urllib.request.urlopen("http://%s:%d/hello").read().decode(), end="")
print(urllib.request.urlopen("https://%s:%d/hello").read().decode(), end="")
""" % (HOST, s.http_port, HOST, s.https_port)
        r, j = run_json(code, *s.allow())
    expect(j["exit_code"] == 0 and j["stdout"] == (HELLO * 2).decode(), "both answered", r)
    net = j["network"]
    expect(len(net) == 2 and all(a["allowed"] and a["reason"] == "" for a in net),
           "two allowed attempts", net)
    expect({a["port"] for a in net} == {s.http_port, s.https_port} and
           all(a["host"] == HOST for a in net), "hosts and ports listed", net)
    expect(all(a["bytes_received"] >= len(HELLO) and a["bytes_sent"] > 0 for a in net),
           "bytes counted both ways", net)


@test
def a_host_not_listed_gets_a_403_naming_the_policy():
    with Servers() as s:
        code = """
import urllib.request, urllib.error
try:
    urllib.request.urlopen("http://example.com/")
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"""
        r, j = run_json(code, *s.allow())
    expect(j["stdout"].startswith("403 airlock's policy refused host example.com port 80: "
                                  "not in the allowlist"), "403 with the reason", r)
    expect(j["network"] == [{"host": "example.com", "port": 80, "allowed": False,
                             "reason": "not in the allowlist", "bytes_sent": 0,
                             "bytes_received": 0}], "the refusal listed", j["network"])


@test
def without_allow_host_there_is_no_proxy_at_all():
    code = """
import os, socket
print(sorted(k for k in os.environ if k.lower().endswith("_proxy")))  # (not Go's GOPROXY)
try:
    socket.create_connection(("127.0.0.1", 3128), timeout=2)
    print("listening")
except OSError as e:
    print("nothing on 3128:", e.errno)
"""
    r, j = run_json(code)
    expect(j["stdout"].startswith("[]\nnothing on 3128"), "no proxy variables, no listener", r)
    expect("network" not in j, "no network field without egress", j)


@test
def a_listed_name_that_resolves_to_loopback_is_refused():
    # DNS rebinding: the operator allowed a name; it resolves (on the host) to 127.0.0.1
    with Servers() as s:
        request = "GET http://localhost:%d/hello HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (
            s.http_port, s.http_port)
        r, j = run_json(raw_request(request), "--allow-host", "localhost:%d" % s.http_port)
    expect("\nHTTP/1.1 403" in j["stdout"], "refused", r)
    expect("a loopback address" in j["stdout"] and ("127.0.0.1" in j["stdout"] or
                                                    "::1" in j["stdout"]),
           "says it resolves to loopback (127.0.0.1 or ::1, by the resolver's order)", r)
    expect(j["network"][0]["allowed"] is False and "loopback" in j["network"][0]["reason"],
           "listed as refused", j["network"])


@test
def the_ip_literal_of_a_listed_name_is_not_allowed_by_it():
    with Servers() as s:
        request = "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (HOST, s.https_port, HOST,
                                                                      s.https_port)
        r, j = run_json(raw_request(request), "--allow-host", "localhost:%d" % s.https_port)
    expect("\nHTTP/1.1 403" in j["stdout"] and "not in the allowlist" in j["stdout"],
           "an address is not a name", r)


def refused_framing(name, request_for, expect_text):
    """Sends one oddly framed request (request_for(target)) and then a good one on a new
    connection; the odd one gets a 400 naming what is wrong and never reaches the server."""
    with Servers() as s:
        target = "%s:%d" % (HOST, s.http_port)
        good = "GET http://%s/echo HTTP/1.1\r\nHost: %s\r\nProxy-Connection: keep-alive\r\n\r\n" % (
            target, target)
        r, j = run_json(raw_requests((name, request_for(target)), ("good", good)),
                        "--allow-host", target)
    out = j["stdout"]
    odd = out.split("== good\n")[0]
    expect("\nHTTP/1.1 400 Bad Request\nairlock's proxy refused the request" in odd and
           expect_text in odd, "%s: 400 naming it" % name, r)
    expect("GET /hello" not in out, "the odd request never reached the server", r)
    expect("GET /echo HTTP/1.1|%s|close" % target in out,
           "a good one still goes upstream in origin form, with Connection: close", r)


@test
def two_host_headers_are_refused():
    refused_framing("two Host headers", lambda t: "GET http://%s/hello HTTP/1.1\r\nHost: %s\r\n"
                    "Host: example.com\r\n\r\n" % (t, t), "two Host headers")


@test
def an_absolute_uri_with_another_hosts_host_header_is_refused():
    refused_framing("Host of another", lambda t: "GET http://%s/hello HTTP/1.1\r\n"
                    "Host: example.com\r\n\r\n" % t, "names another host")


@test
def requests_that_are_not_proxy_requests_are_refused():
    refused_framing("origin form", lambda t: "GET /hello HTTP/1.1\r\nHost: %s\r\n\r\n" % t,
                    "send an absolute URI")
    refused_framing("user info", lambda t: "GET http://me@%s/hello HTTP/1.1\r\n\r\n" % t,
                    "user information")


@test
def an_unreachable_port_and_an_unknown_name_fail_with_clear_pages():
    port = free_port()
    code = """
import urllib.request, urllib.error
for url in ["http://%s:%d/", "http://no-such-host.invalid/"]:
    try:
        urllib.request.urlopen(url, timeout=30)
    except urllib.error.HTTPError as e:
        print(e.code, e.read().decode().strip())
""" % (HOST, port)
    r, j = run_json(code, "--allow-host", "%s:%d" % (HOST, port),
                    "--allow-host", "no-such-host.invalid", "--timeout", "60", timeout=LONG)
    lines = j["stdout"].splitlines()
    expect(len(lines) == 2, "two answers", r)
    expect(lines[0].startswith("502 airlock's proxy could not reach %s port %d: cannot connect"
                               % (HOST, port)), "connection refused: 502", r)
    expect(lines[1].startswith(("502", "504")) and "no-such-host.invalid" in lines[1],
           "unknown name: 502 (or 504 if the resolver hangs)", r)
    expect(all(a["allowed"] and a["reason"] for a in j["network"]),
           "allowed, with the failure as reason", j["network"])


@test
def connections_beyond_the_limit_are_refused_and_all_end_with_the_run():
    with Servers() as s:
        code = """
import socket
held, answers = [], {}
for i in range(40):
    c = socket.create_connection(("127.0.0.1", 3128))
    c.sendall(b"GET http://%s:%d/hang HTTP/1.1\\r\\nHost: %s:%d\\r\\n\\r\\n")
    held.append(c)
for c in held[32:]:
    c.settimeout(20)
    status = c.recv(4096).split(b"\\r\\n")[0].decode()
    answers[status] = answers.get(status, 0) + 1
print(answers)
""" % (HOST, s.http_port, HOST, s.http_port)
        r, j = run_json(code, "--allow-host", "%s:%d" % (HOST, s.http_port), "--timeout", "60", timeout=LONG)
        expect(j["stdout"] == "{'HTTP/1.1 403 Forbidden': 8}\n", "8 beyond 32 refused", r)
        refused = [a for a in j["network"] if not a["allowed"]]
        expect(len(refused) == 8 and all("at most 32" in a["reason"] for a in refused),
               "listed with the limit", j["network"])
        # the 32 held ones ended with the run: the server lives on and answers
        r, j = run_json("import urllib.request; print(urllib.request.urlopen("
                        "'http://%s:%d/hello').read())" % (HOST, s.http_port),
                        "--allow-host", "%s:%d" % (HOST, s.http_port))
        expect(j["exit_code"] == 0, "a later run still gets through", r)


@test
def an_endless_download_ends_with_the_timeout():
    with Servers() as s:
        code = """
import urllib.request, sys
r = urllib.request.urlopen("http://%s:%d/endless")
n = 0
while True:
    n += len(r.read(1 << 20))
    print(n, flush=True)
""" % (HOST, s.http_port)
        r, j = run_json(code, "--allow-host", "%s:%d" % (HOST, s.http_port), "--timeout", "5")
    expect(j["timed_out"], "timed out", r)
    got = int(j["stdout"].split()[-1])
    expect(got > 1 << 20, "it was downloading", r)
    expect(j["network"][0]["bytes_received"] >= got, "bytes counted", j["network"])


@test
def a_large_download_arrives_whole():
    size = 20 << 20
    with Servers() as s:
        code = """
import urllib.request, hashlib
h = hashlib.sha256(urllib.request.urlopen("https://%s:%d/stream/%d").read())
print(h.hexdigest())
""" % (HOST, s.https_port, size)
        r, j = run_json(code, *s.allow(), "--timeout", "120", timeout=LONG)
    import hashlib
    block = bytes(range(256)) * 256
    want = hashlib.sha256((block * (size // len(block)))).hexdigest()
    expect(j["stdout"].strip() == want, "20 MiB over TLS, intact", r)


@test
def an_upload_goes_through():
    with Servers() as s:
        code = """
import urllib.request
req = urllib.request.Request("http://%s:%d/upload", data=b"u" * 3000000, method="POST")
print(urllib.request.urlopen(req).read().decode())
""" % (HOST, s.http_port)
        r, j = run_json(code, "--allow-host", "%s:%d" % (HOST, s.http_port), "--timeout", "60", timeout=LONG)
    expect(j["stdout"] == "got 3000000 bytes\n", "3 MB uploaded", r)


# ---- the tools a program uses, and packages (the fixtures: egress_fixtures.py) ----

@test
def curl_git_and_requests_go_through_the_proxy():
    with Servers() as s, GitRepo(bind=HOST, host=HOST) as repo:
        code = """
set -e
curl -sS http://%s:%d/hello
curl -sS https://%s:%d/hello
python3 -c 'import requests; print(requests.get("https://%s:%d/hello").text, end="")'
git clone -q %s /tmp/clone
git -C /tmp/clone rev-parse HEAD
""" % (HOST, s.http_port, HOST, s.https_port, HOST, s.https_port, repo.clone_url)
        r, j = run_json(code, "--lang", "bash", *s.allow(), "--allow-host",
                        "%s:%d" % (HOST, repo.port), "--timeout", "120", timeout=LONG)
    expect(j["exit_code"] == 0, "all of it worked", r)
    expect(j["stdout"] == (HELLO * 3).decode() + repo.head + "\n", "curl, requests, git", r)


@test
def node_fetch_and_https_go_through_the_proxy():
    with Servers() as s:
        code = """
const https = require('https');
(async () => {
  const r = await fetch('https://%s:%d/hello');
  process.stdout.write(await r.text());
  https.get('https://%s:%d/hello', (res) => {
    res.on('data', (d) => process.stdout.write(d));
  });
})();
""" % (HOST, s.https_port, HOST, s.https_port)
        r, j = run_json(code, "--lang", "javascript", *s.allow(), "--timeout", "60", timeout=LONG)
    expect(j["exit_code"] == 0 and j["stdout"] == (HELLO * 2).decode(), "fetch and https.get", r)
    expect(len(j["network"]) == 2 and all(a["allowed"] for a in j["network"]),
           "both through the proxy", j["network"])


@test
def kept_state_cells_reach_the_proxy_in_every_call():
    """A cell takes its call's environment (the proxy, the CA bundle) each time: the keeping
    call and the one continuing it both reach the servers, and each lists only its own."""
    states = tempfile.mkdtemp(prefix="airlock-states-")
    try:
        with Servers() as s:
            fetch = ("print(urllib.request.urlopen('https://%s:%d/hello').read().decode(), "
                     "end='')\n" % (HOST, s.https_port))
            r = airlock("run", "--json", "--keep-state", "--state-dir", states, *s.allow(),
                        "import urllib.request\n" + fetch, timeout=LONG)
            j = r.json()
            expect(j["stdout"] == HELLO.decode() and len(j["network"]) == 1 and j["state_id"],
                   "the keeping call reached https", r)
            r = airlock("run", "--json", "--state-id", j["state_id"], "--state-dir", states,
                        *s.allow(), fetch + fetch, timeout=LONG)
            k = r.json()
            expect(k["stdout"] == (HELLO * 2).decode() and len(k["network"]) == 2,
                   "the continuing call too, its own two listed", r)
            r = airlock("run", "--json", "--keep-state", "--state-dir", states, "--lang",
                        "javascript", *s.allow(), "const http = require('http');", timeout=LONG)
            js = r.json()["state_id"]
            code = ("http.get('http://%s:%d/hello', (res) => res.on('data', (d) => "
                    "process.stdout.write(d)));" % (HOST, s.http_port))
            r = airlock("run", "--json", "--state-id", js, "--state-dir", states, *s.allow(),
                        code, timeout=LONG)
            expect(r.json()["stdout"] == HELLO.decode(), "a javascript cell through it", r)
    finally:
        shutil.rmtree(states, ignore_errors=True)


@test
def pip_installs_a_wheel_and_the_index_closes_after():
    # the second wheel needs numpy, which the index does not have: the image's counts
    projects = PypiIndex.DEFAULT + [("airlock-needs-numpy", "1.0", "import numpy\n"
                                     "VALUE = int(numpy.arange(4).sum())\n", ("numpy",))]
    with PypiIndex(projects, bind=HOST, host=HOST) as index:
        code = """
import airlock_egress_probe, airlock_needs_numpy, urllib.request, urllib.error
print(airlock_egress_probe.VALUE, airlock_needs_numpy.VALUE)
try:
    urllib.request.urlopen("%s")
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
""" % index.index_url
        r, j = run_json(code, "--pip-index", index.index_url, "--package",
                        "airlock-egress-probe==1.0.0", "--package", "airlock-needs-numpy",
                        "--timeout", "120", timeout=LONG)
    expect(j["install"]["ok"] and j["install"]["duration_ms"] > 0, "installed", r)
    expect("numpy" in j["install"]["log"] and "already satisfied" in j["install"]["log"],
           "numpy taken from the image, not fetched", j["install"])
    lines = j["stdout"].splitlines()
    expect(lines[0] == "airlock egress probe 1.0.0 6", "the program imports both", r)
    expect(lines[1].startswith("403 ") and "reachable only while packages install" in lines[1],
           "the index is closed once the install is done", r)
    reasons = [(a["allowed"], a["reason"]) for a in j["network"]]
    expect((True, "") in reasons and (False, "reachable only while packages install") in reasons,
           "both listed", j["network"])


@test
def a_failed_install_is_an_error_and_the_program_does_not_run():
    with PypiIndex(bind=HOST, host=HOST) as index:
        r = run_code("open('/work/out/ran', 'w')", "--pip-index", index.index_url,
                     "--package", "no-such-package", "--timeout", "120", timeout=LONG)
        expect(r.status == 126 and b"could not be installed" in r.stderr and
               b"no-such-package" in r.stderr, "refused with pip's words", r)
        r, j = run_json("open('/work/out/ran', 'w')", "--pip-index", index.index_url,
                        "--package", "no-such-package", "--timeout", "120", timeout=LONG)
    expect(not j["install"]["ok"] and "no-such-package" in j["install"]["log"], "the log", j)
    expect(j["exit_code"] is None and j["files"] == [], "the program never ran", j)


@test
def packages_are_checked_before_any_vm():
    for spec, why in (("-r/etc/passwd", b"not a pip requirement"),
                      ("pkg @ https://evil.test/x.whl", b"not a pip requirement"),
                      ("--index-url=http://x", b"not a pip requirement")):
        r = run_code("1", "--pip-index", "http://127.0.0.2:9/simple/", "--package", spec)
        expect(r.status == 2 and why in r.stderr, "refused: %s" % spec, r)
    r = run_code("1", "--package", "numpy")
    expect(r.status == 2 and b"--pip-index" in r.stderr, "no index: refused naming the flag", r)
    for spec in ("git+https://x.test/r.git", "file:/etc", "../x", "npm:other@1"):
        r = run_code("1", "--lang", "javascript", "--npm-registry", "http://127.0.0.2:9/",
                     "--package", spec)
        expect(r.status == 2 and b"not a npm package spec" in r.stderr, "refused: %s" % spec, r)


@test
def npm_installs_a_package_from_the_registry():
    with NpmRegistry(bind=HOST, host=HOST) as registry:
        code = "console.log(require('airlock-egress-probe').value)"
        r, j = run_json(code, "--lang", "javascript", "--npm-registry", registry.url,
                        "--package", "airlock-egress-probe@1.0.0", "--timeout", "180", timeout=LONG)
    expect(j["install"]["ok"], "installed", r)
    expect(j["stdout"] == "airlock egress probe 1.0.0\n", "the program requires it", r)


@test
def run_repo_clones_through_the_allowlist():
    with GitRepo(bind=HOST, host=HOST, files={"README": "hi\n", "t.sh": "echo tested\n"}) as repo:
        allow = ["--allow-host", "%s:%d" % (HOST, repo.port)]
        r = airlock("run", "--repo", repo.clone_url, "--command",
                    "git rev-parse HEAD && bash t.sh && pwd", *allow, "--timeout", "120", timeout=LONG)
        expect(r.status == 0 and r.stdout == (repo.head + "\ntested\n/work/repo\n").encode(),
               "cloned, ran in the clone", r)
        # another host allowed: the proxy refuses this one, git says so, the command never runs
        r = airlock("run", "--repo", repo.clone_url, "--command", "echo never",
                    "--allow-host", "example.com", "--timeout", "60", timeout=LONG)
        expect(r.status == 128 and b"never" not in r.stdout and b"403" in r.stderr,
               "not allowed: git says 403, the command never runs", r)
        # nothing allowed: no proxy, no route
        r = airlock("run", "--repo", repo.clone_url, "--command", "echo never", "--timeout", "60", timeout=LONG)
        expect(r.status == 128 and b"never" not in r.stdout, "no route out", r)


@test
def a_malformed_allow_host_is_an_error_at_start():
    for pattern in ["", "host:0", "host:99999", "a b", "*", "*.", "1.2.3", "[::1", "x:y:z"]:
        r = run_code("print(1)", "--allow-host", pattern)
        expect(r.status == 2 and b"--allow-host" in r.stderr, "refused: %r" % pattern, r)


if __name__ == "__main__":
    main()
