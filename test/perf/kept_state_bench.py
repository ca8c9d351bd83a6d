"""Kept state in `airlock bench` (docs/kept-state.md): Python with pandas imported and a
1,000,000-row DataFrame in memory, kept; then continued with print(len(df)).

  keep        the keep's own cost: from the program's end to the state committed (run --verbose
              "state kept in"), and the whole keeping call beside it
  size        the state on disk (manifest, device state, pages), beside the VM's dirty memory:
              the pages it changed since its restore, as the pages file's header counts them
  continue    restore to ready from the state, and the whole print(len(df)) call from it,
              beside a restore to ready of the language's snapshot in the same rounds, and a
              whole plain print(1) call; and each one's request to result

Interleaved: each round keeps one state, continues it, and restores the plain snapshot.
"""
import os
import shutil
import struct
import subprocess
import tempfile
import time

BUILD_DF = ("import pandas as pd, numpy as np\n"
            "df = pd.DataFrame({'a': np.arange(1_000_000), 'b': np.random.rand(1_000_000)})\n"
            "print(len(df))\n")
CONTINUE = "print(len(df))\n"


def _figure(stderr, before, after):
    return float(stderr.split(before)[1].split(after)[0])


def _run(cmd, expect=b"1000000\n"):
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    ms = (time.monotonic() - t) * 1000
    if p.returncode != 0 or p.stdout != expect:
        raise RuntimeError("failed: %s\n%s" % (" ".join(cmd[-2:]), p.stderr.decode()[-1500:]))
    return ms, p.stderr.decode()


def kept_state_figures(run, stats, rounds):
    """run: the `airlock run --backend B [--images DIR]` command. Returns {name: stats or value}."""
    states = tempfile.mkdtemp(prefix="airlock-bench-states-")
    base = run + ["--state-dir", states, "--verbose"]
    keep_ms, keep_call, cont_ready, cont_call, restore_ready = [], [], [], [], []
    cont_result, restore_result, restore_call = [], [], []
    sizes, dirty = [], []
    try:
        for _ in range(rounds):
            ms, err = _run(base + ["--keep-state", BUILD_DF])
            keep_call.append(ms)
            keep_ms.append(_figure(err, "state kept in ", " ms"))
            sid = err.rstrip().split("state_id ")[-1]
            d = os.path.join(states, sid)
            sizes.append(sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)))
            with open(os.path.join(d, "pages"), "rb") as f:
                count = struct.unpack("<8sIIQQ", f.read(32))[4]
            dirty.append(count * 4096)
            ms, err = _run(base + ["--state-id", sid, CONTINUE])
            cont_call.append(ms)
            cont_ready.append(_figure(err, "boot to ready ", " ms"))
            cont_result.append(_figure(err, "request to result ", " ms"))
            ms, err = _run(run + ["--verbose", "print(1)"], b"1\n")
            restore_call.append(ms)
            restore_ready.append(_figure(err, "boot to ready ", " ms"))
            restore_result.append(_figure(err, "request to result ", " ms"))
            subprocess.run(run[:1] + ["state", "rm", sid, "--state-dir", states],
                           capture_output=True)
    finally:
        shutil.rmtree(states, ignore_errors=True)
    mib = 1 << 20
    return {
        "kept_state_keep": stats(keep_ms),
        "kept_state_keeping_call": stats(keep_call),
        "kept_state_continue_to_ready": stats(cont_ready),
        "kept_state_continue_call": stats(cont_call),
        "kept_state_restore_to_ready_same_rounds": stats(restore_ready),
        "kept_state_continue_request_to_result": stats(cont_result),
        "kept_state_plain_request_to_result": stats(restore_result),
        "kept_state_plain_call": stats(restore_call),
        "kept_state_size_mib": sorted(sizes)[len(sizes) // 2] / mib,
        "kept_state_dirty_mib": sorted(dirty)[len(dirty) // 2] / mib,
    }


def print_kept_state(r):
    print()
    print("kept state (pandas, a 1,000,000-row DataFrame in memory):")
    rows = [("keep: the program's end to the state committed", r["kept_state_keep"]),
            ("  the whole keeping call (restore, build, keep)", r["kept_state_keeping_call"]),
            ("continue: restore to ready from the state", r["kept_state_continue_to_ready"]),
            ("  the whole print(len(df)) call from it", r["kept_state_continue_call"]),
            ("restore to ready of the snapshot, same rounds",
             r["kept_state_restore_to_ready_same_rounds"]),
            ("request to result: print(len(df)) from the state",
             r["kept_state_continue_request_to_result"]),
            ("  print(1) after the plain restore", r["kept_state_plain_request_to_result"]),
            ("the whole plain print(1) call (airlock run)", r["kept_state_plain_call"])]
    for name, s in rows:
        print("%-58s %8.1f ms %8.1f ms" % (name, s["median_ms"], s["p99_ms"]))
    ratio = (r["kept_state_continue_to_ready"]["median_ms"] /
             r["kept_state_restore_to_ready_same_rounds"]["median_ms"])
    r["kept_state_continue_vs_restore"] = ratio
    print("continue to ready / restore to ready: %.2fx" % ratio)
    print("state on disk %.1f MiB; the VM's dirty memory %.1f MiB (%.2fx)" % (
        r["kept_state_size_mib"], r["kept_state_dirty_mib"],
        r["kept_state_size_mib"] / max(r["kept_state_dirty_mib"], 1e-9)))


def main():
    """Alone (the KVM test host, where the whole bench is too long):
    kept_state_bench.py --airlock PATH [--backend B] [--rounds N]"""
    import argparse
    import statistics
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--airlock", required=True)
    ap.add_argument("--backend", default="tcg")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    subprocess.run([a.airlock, "image", "build", "--backend", a.backend], check=True,
                   stdout=subprocess.DEVNULL)

    def stats(xs):
        xs = sorted(xs)
        return {"median_ms": statistics.median(xs), "p99_ms": xs[-1]}
    print_kept_state(kept_state_figures([a.airlock, "run", "--backend", a.backend], stats,
                                        a.rounds))


if __name__ == "__main__":
    main()
