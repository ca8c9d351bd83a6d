#!/usr/bin/env python3
"""Cold-start figures for `airlock run` (no snapshot, no pool yet), next to starting python3 on
the host, in one invocation: medians and p90 of N runs, and their ratio.

    test/perf/cold_start.py [N] [--backend tcg]
"""
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AIRLOCK = os.path.join(ROOT, "build", "mcp", "airlock")


def timed(cmd):
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (cmd, p.stderr.decode()[-2000:]))
    return (time.monotonic() - t) * 1000, p.stderr.decode()


def summary(name, xs):
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
    print("%-44s median %8.1f ms   p90 %8.1f ms   (n=%d)" % (name, statistics.median(xs), p90,
                                                              len(xs)))
    return statistics.median(xs)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 10
    backend = sys.argv[sys.argv.index("--backend") + 1] if "--backend" in sys.argv else "tcg"
    host, run, boot = [], [], []
    timed(["/usr/bin/python3", "-c", "print(1)"])  # warm the page cache for both
    timed([AIRLOCK, "run", "--backend", backend, "print(1)"])
    for _ in range(n):  # interleaved, so drift hits both alike
        host.append(timed(["/usr/bin/python3", "-c", "print(1)"])[0])
        ms, err = timed([AIRLOCK, "run", "--backend", backend, "--verbose", "print(1)"])
        run.append(ms)
        boot.append(float(re.search(r"boot to ready ([0-9.]+) ms", err).group(1)))
    h = summary("host /usr/bin/python3 -c 'print(1)'", host)
    r = summary("airlock run print(1) (%s, cold boot)" % backend, run)
    summary("  of which boot to agent READY", boot)
    print("ratio airlock run / host python3: %.1fx" % (r / h))


if __name__ == "__main__":
    main()
