"""airlock bench's egress figures (docs/egress.md), each beside its peer on the host, in the same
invocation: a 100 MB download through the guest's proxy against host curl of the same URL, a
small GET's added latency against the same GET from a host process, and `pip install` of one
small wheel from a local index. Every server is started here on 127.0.0.2 (the guest's NO_PROXY
sends 127.0.0.1 to its own loopback); nothing leaves the machine."""
import http.server
import json
import os
import shutil
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HOST = "127.0.0.2"
BLOCK = bytes(range(256)) * 256


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wheel_dir = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/stream/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                self.wfile.write(BLOCK[:min(n, len(BLOCK))])
                n -= min(n, len(BLOCK))
            return
        if self.path == "/hello":
            body = b"hello\n"
        elif self.path.startswith("/simple/") and self.wheel_dir:
            body = _index_page(self.path, self.wheel_dir)
        elif self.path.startswith("/files/") and self.wheel_dir:
            try:
                with open(os.path.join(self.wheel_dir, os.path.basename(self.path)), "rb") as f:
                    body = f.read()
            except OSError:
                body = None
        else:
            body = None
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _index_page(path, wheel_dir):
    """PEP 503: /simple/NAME/ lists the wheels whose name is NAME."""
    name = path.strip("/").split("/")[-1] if path.strip("/") != "simple" else ""
    links = "".join('<a href="/files/%s">%s</a>\n' % (w, w) for w in sorted(os.listdir(wheel_dir))
                    if name and w.split("-")[0].lower().replace("_", "-") == name)
    return ("<!DOCTYPE html><html><body>\n%s</body></html>\n" % links).encode()


def build_wheel(out_dir, name="airlock_bench_pkg", version="1.0"):
    """A pure-Python wheel made here (zipfile): what pip installs in the benchmark."""
    import base64
    import hashlib
    import zipfile
    dist = "%s-%s" % (name, version)
    files = {"%s/__init__.py" % name: b"VALUE = 42\n",
             "%s.dist-info/METADATA" % dist: ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
                                              % (name, version)).encode(),
             "%s.dist-info/WHEEL" % dist: b"Wheel-Version: 1.0\nGenerator: airlock\n"
                                           b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += "%s,sha256=%s,%d\n" % (path, digest, len(data))
    record += "%s.dist-info/RECORD,,\n" % dist
    files["%s.dist-info/RECORD" % dist] = record.encode()
    path = os.path.join(out_dir, "%s-py3-none-any.whl" % dist)
    with zipfile.ZipFile(path, "w") as z:
        for p, data in files.items():
            z.writestr(p, data)
    return path


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _airlock_json(airlock, backend, port, code, *extra, timeout=300):
    p = subprocess.run([airlock, "run", "--backend", backend, "--json", "--timeout", "240",
                        "--allow-host", "%s:%d" % (HOST, port)] + list(extra) + [code],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    j = json.loads(p.stdout)
    if "error" in j or j.get("exit_code") != 0:
        raise RuntimeError("egress bench run failed: %s" % p.stdout.decode()[-1500:])
    return j


DOWNLOAD = """
import time, urllib.request
t = time.monotonic(); n = 0
r = urllib.request.urlopen("http://%s:%d/stream/%d")
while True:
    b = r.read(1 << 20)
    if not b:
        break
    n += len(b)
print(n, (time.monotonic() - t) * 1000)
"""

SMALL_GETS = """
import time, urllib.request, statistics
opener = urllib.request.build_opener()
ms = []
for i in range(%d):
    t = time.monotonic()
    opener.open("http://%s:%d/hello").read()
    ms.append((time.monotonic() - t) * 1000)
print(statistics.median(ms[1:]))
"""


def egress_figures(airlock, backend, quick):
    """Runs the egress benchmark; returns (results, peers), medians in ms or MB/s."""
    size = (30 if quick else 100) * 1000 * 1000
    reps = 1 if quick else 3
    gets = 10 if quick else 30
    wheel_dir = tempfile.mkdtemp(prefix="airlock-bench-wheels-")
    build_wheel(wheel_dir)
    _Handler.wheel_dir = wheel_dir
    srv = _Server((HOST, 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    results, peers = {}, {}
    try:
        url = "http://%s:%d/stream/%d" % (HOST, port, size)
        guest_mb_s, host_mb_s = [], []
        curl = shutil.which("curl")
        for _ in range(reps):
            j = _airlock_json(airlock, backend, port, DOWNLOAD % (HOST, port, size))
            n, ms = j["stdout"].split()
            if int(n) != size:
                raise RuntimeError("egress bench: %s of %d bytes arrived" % (n, size))
            guest_mb_s.append(size / 1e6 / (float(ms) / 1000))
            t = time.monotonic()
            if curl:
                subprocess.run([curl, "-s", "-o", os.devnull, "--noproxy", "*", url], check=True)
            else:
                with urllib.request.urlopen(url) as r:
                    while r.read(1 << 20):
                        pass
            host_mb_s.append(size / 1e6 / (time.monotonic() - t))
        results["egress_download_mb_s"] = statistics.median(guest_mb_s)
        peers["egress_download_host_%s_mb_s" % ("curl" if curl else "urllib")] = \
            statistics.median(host_mb_s)

        j = _airlock_json(airlock, backend, port, SMALL_GETS % (gets, HOST, port))
        results["egress_small_get_ms"] = float(j["stdout"])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        ms = []
        for _ in range(gets):
            t = time.monotonic()
            opener.open("http://%s:%d/hello" % (HOST, port)).read()
            ms.append((time.monotonic() - t) * 1000)
        peers["egress_small_get_host_ms"] = statistics.median(ms[1:])

        installs = []
        for _ in range(reps):
            j = _airlock_json(airlock, backend, port,
                              "import airlock_bench_pkg; print(airlock_bench_pkg.VALUE)",
                              "--pip-index", "http://%s:%d/simple/" % (HOST, port),
                              "--package", "airlock-bench-pkg==1.0")
            if not j.get("install", {}).get("ok") or j["stdout"] != "42\n":
                raise RuntimeError("egress bench: the install failed: %s" % j)
            installs.append(j["install"]["duration_ms"])
        results["pip_install_one_wheel_ms"] = statistics.median(installs)
    finally:
        srv.shutdown()
        srv.server_close()
        shutil.rmtree(wheel_dir, ignore_errors=True)
    return results, peers


def print_egress(results, peers, quick):
    down = results["egress_download_mb_s"]
    host = [v for k, v in peers.items() if k.startswith("egress_download_host")][0]
    print("egress: %d MB download through the proxy %.1f MB/s; host %s %.1f MB/s (%.2fx)" % (
        30 if quick else 100, down, "curl" if "curl" in str(peers) else "urllib", host,
        down / host))
    print("egress: small GET through the proxy %.2f ms; from the host %.2f ms (+%.2f ms)" % (
        results["egress_small_get_ms"], peers["egress_small_get_host_ms"],
        results["egress_small_get_ms"] - peers["egress_small_get_host_ms"]))
    print("egress: pip install of one small wheel from a local index: %.0f ms" %
          results["pip_install_one_wheel_ms"])


if __name__ == "__main__":
    r, p = egress_figures(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "tcg", True)
    print_egress(r, p, True)
