#!/usr/bin/env python3
"""airlock bench's HTTP section (docs/benchmarks.md), also runnable alone:

  the warm round trip of execute_code print(1) over Streamable HTTP (2026-07-28, stateless, one
         keep-alive connection; and the initialize era's session) beside the same call over
         stdio, paced as an agent's are, servers taken in turn in rounds
  a load test on loopback: 50 clients x 20 calls over HTTP at once, each its own connection
         and session: failures, calls per second, latency median and p99

Standard library only; the HTTP client is mcp_http_client.py beside this file.

    http_bench.py --airlock PATH [--backend tcg|kvm] [--quick]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mcp_http_client import (STATELESS_ERA, McpHttpClient, check_print_one,  # noqa: E402
                             run_load, summarize)

TOKEN_LABEL, TOKEN = "bench", "bench-token-0123456789abcdef"


class HttpServer:
    """`airlock mcp --http 127.0.0.1:0` with one token; its URL from its listening line."""

    def __init__(self, airlock, backend, *args):
        self.dir = tempfile.TemporaryDirectory(prefix="airlock-http-bench-")
        self.tokens = os.path.join(self.dir.name, "tokens")
        with open(self.tokens, "w") as f:
            f.write("%s:%s\n" % (TOKEN_LABEL, TOKEN))
        os.chmod(self.tokens, 0o600)
        self.proc = subprocess.Popen([airlock, "mcp", "--backend", backend, "--http",
                                      "127.0.0.1:0", "--token-file", self.tokens] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.url = None
        deadline = time.monotonic() + 120
        for line in self.proc.stderr:
            if "listening on " in line:
                self.url = line.split("listening on ")[1].strip()
                break
            if time.monotonic() > deadline:
                break
        if not self.url:
            self.proc.kill()
            raise RuntimeError("airlock mcp --http did not start")
        # keep reading stderr, so that the server never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def vms(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        return out.split()

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.dir.cleanup()
        if self.proc.returncode != 0:
            raise RuntimeError("airlock mcp --http exited %d at SIGTERM" % self.proc.returncode)


def wait_for_vms(server, count, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(server.vms()) >= count:
            time.sleep(1.0)
            return
        time.sleep(0.1)
    raise RuntimeError("the pool did not fill")


def timed_calls(call, n, pace):
    """n calls of call(), pace seconds apart; their times in ms."""
    times = []
    for _ in range(n):
        time.sleep(pace)
        t = time.monotonic()
        error = check_print_one(call())
        times.append((time.monotonic() - t) * 1000)
        if error:
            raise RuntimeError(error)
    return times


def round_trips(airlock, backend, n, pace, mcp_class, rounds=4):
    """stdio, HTTP 2026-07-28 and HTTP initialize-era calls, servers in turn within each round
    (one at a time, as the other warm-call rows are taken)."""
    stdio, stateless, session = [], [], []
    per_round = max(2, n // rounds)
    for _ in range(rounds):
        m = mcp_class(airlock, backend, "--pool", "1")
        try:
            wait_for_vms(m, 4)
            stdio += timed_calls(lambda: m.request("tools/call", {
                "name": "execute_code", "arguments": {"code": "print(1)"}})["result"],
                per_round, pace)
        finally:
            m.close()
        for era, into in ((STATELESS_ERA, stateless), ("2025-11-25", session)):
            s = HttpServer(airlock, backend, "--pool", "1")
            try:
                wait_for_vms(s, 4)
                with McpHttpClient(s.url, TOKEN, era=era) as c:
                    into += timed_calls(lambda: c.execute_code("print(1)"), per_round, pace)
            finally:
                s.close()
    return stdio, stateless, session


def load_test(airlock, backend, clients, calls):
    s = HttpServer(airlock, backend)
    try:
        records = run_load(s.url, [(TOKEN_LABEL, TOKEN)], clients=clients, calls=calls,
                           era=STATELESS_ERA)
    finally:
        s.close()
    summary = summarize(records)
    ok = sorted(r["latency_ms"] for r in records if r["ok"])
    summary["p99_ms"] = ok[min(len(ok) - 1, int(len(ok) * 0.99))] if ok else None
    return summary


def http_figures(airlock, backend, n, pace, mcp_class, stats, quick=False):
    """The section's results (for bench.py's JSON) after printing its table."""
    stdio, stateless, session = round_trips(airlock, backend, n, pace, mcp_class)
    clients, calls = (10, 5) if quick else (50, 20)
    load = load_test(airlock, backend, clients, calls)
    results = {
        "execute_code_warm_stdio": stats(stdio),
        "execute_code_warm_http_2026": stats(stateless),
        "execute_code_warm_http_session": stats(session),
        "http_load": load,
    }
    base = results["execute_code_warm_stdio"]["median_ms"]
    results["http_vs_stdio_warm"] = results["execute_code_warm_http_2026"]["median_ms"] / base
    print()
    print("Streamable HTTP (paced %d ms, rounds of servers in turn)" % round(pace * 1000))
    print("%-58s %10s %10s %8s" % ("", "median", "p99", "vs stdio"))
    for name, key in (("execute_code print(1) over stdio", "execute_code_warm_stdio"),
                      ("  over HTTP, 2026-07-28 (stateless, keep-alive)",
                       "execute_code_warm_http_2026"),
                      ("  over HTTP, 2025-11-25 session", "execute_code_warm_http_session")):
        s = results[key]
        print("%-58s %8.1f ms %8.1f ms %7.2fx" % (name, s["median_ms"], s["p99_ms"],
                                                  s["median_ms"] / base))
    print("load: %d clients x %d calls over HTTP: %d ok, %d failed in %.1f s (%.1f calls/s), "
          "latency median %.0f ms, p99 %.0f ms" % (
              clients, calls, load["ok"], load["failed"], load["wall_s"],
              load["calls_per_s"] or 0, load["median_ms"] or 0, load["p99_ms"] or 0))
    for e in load["errors"]:
        print("  failure: %s" % e)
    return results


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench import Mcp, stats  # noqa: E402 (bench imports this file too)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--airlock", required=True)
    ap.add_argument("--backend", default="tcg")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pace", type=float, default=0.4)
    a = ap.parse_args()
    r = http_figures(a.airlock, a.backend, 8 if a.quick else 30, a.pace, Mcp, stats, a.quick)
    return 0 if r["http_load"]["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
