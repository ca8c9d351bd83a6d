"""airlock bench's egress figures (docs/egress.md), each beside its peer on the host, in the same
invocation: a 100 MB download through the guest's proxy against host curl of the same URL, a
small GET's added latency against the same GET from a host process, and `pip install` of one
small wheel from a local index. Every server is started here on 127.0.0.2 (the guest's NO_PROXY
sends 127.0.0.1 to its own loopback); nothing leaves the machine."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from egress_fixtures import HttpServer, PypiIndex  # noqa: E402

HOST = "127.0.0.2"


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
    results, peers = {}, {}
    with HttpServer({"/hello": b"hello\n"}, bind=HOST, host=HOST) as srv, \
            PypiIndex(bind=HOST, host=HOST) as index:
        port = srv.port
        url = "%s/stream/%d" % (srv.url, size)
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
            opener.open("%s/hello" % srv.url).read()
            ms.append((time.monotonic() - t) * 1000)
        peers["egress_small_get_host_ms"] = statistics.median(ms[1:])

        installs = []
        for _ in range(reps):
            j = _airlock_json(airlock, backend, port,
                              "import airlock_egress_probe; print(airlock_egress_probe.VALUE)",
                              "--pip-index", index.index_url,
                              "--package", "airlock-egress-probe==1.0.0")
            if not j.get("install", {}).get("ok"):
                raise RuntimeError("egress bench: the install failed: %s" % j)
            installs.append(j["install"]["duration_ms"])
        results["pip_install_one_wheel_ms"] = statistics.median(installs)
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
