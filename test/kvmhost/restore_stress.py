#!/usr/bin/env python3
"""Restores one airlock-vmm snapshot many times, WORKERS at a time, inside the KVM test host, to
catch a restored VM that dies or stops answering (hardening issue, item 12: with 8 concurrent
callers, "the guest shut down before the program finished" and "the guest did not become ready
within 60 s"). Each restore gets a PING, then a program: a sleep and a print, a plain print, or
now and then a memory bomb (the guest's OOM killer must end it, not the VM). Any other end is
a failure, and its evidence is printed: airlock-vmm's own log (since item 12 it logs the VM's
state when the guest crashes, or leaves the host unanswered 15 s) and the serial tail.
A diagnostic, not part of CI (python3 stdlib only). From the host:

    KVMHOST_EXTRA=test/kvmhost/snapshot_test.py:test/kvmhost/restore_stress.py \\
        bash test/kvmhost/suite.sh restore_stress.py [--restores N] [--workers N] [--vmm PATH]
"""
import argparse
import os
import signal
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import snapshot_test as st  # noqa: E402

PROGRAMS = [
    ("sleep+print", "import time; time.sleep(0.1); print('ok')", b"ok\n", 0),
    ("print", "print(1)", b"1\n", 0),
    ("sleep+print", "import time; time.sleep(0.1); print('ok')", b"ok\n", 0),
    ("print", "print(1)", b"1\n", 0),
    ("sleep+print", "import time; time.sleep(0.1); print('ok')", b"ok\n", 0),
    ("print", "print(1)", b"1\n", 0),
    ("sleep+print", "import time; time.sleep(0.1); print('ok')", b"ok\n", 0),
    ("memory bomb", "a = []\nwhile True: a.append(bytearray(8 << 20))", None, None),
]
PING_TIMEOUT = 60  # what airlock allows a restored VM to become ready
RUN_TIMEOUT = 90

SNAP_VM_PIT, SNAP_VM_IOAPIC, SNAP_CPU_LAPIC, SNAP_CPU_MSRS = 2, 5, 23, 24
STATE_HEADER = 64  # vmm/snapshot.c documents the format


def describe(path):
    """The snapshot's timer state: a restored guest whose sleep never returns lost its timer."""
    with open(path, "rb") as f:
        data = f.read()
    s, off = {}, STATE_HEADER
    for _ in range(struct.unpack_from("<I", data, 12)[0]):
        kind, length = struct.unpack_from("<II", data, off)
        s[kind] = data[off + 8:off + 8 + length]
        off += 8 + ((length + 7) & ~7)
    reg = lambda off: struct.unpack_from("<I", s[SNAP_CPU_LAPIC], off)[0]  # noqa: E731
    print("  lapic LVTT %#x TMICT %#x TMCCT %#x TDCR %#x SVR %#x LINT0 %#x" % (
        reg(0x320), reg(0x380), reg(0x390), reg(0x3e0), reg(0xf0), reg(0x350)))
    msrs = s[SNAP_CPU_MSRS]
    for i in range(struct.unpack_from("<I", msrs)[0]):
        index, _, value = struct.unpack_from("<IIQ", msrs, 8 + 16 * i)
        if index in (0x10, 0x6e0):  # TSC, TSC deadline
            print("  msr %#x = %#x" % (index, value))
    for ch in range(3):  # struct kvm_pit_channel_state, 24 bytes each
        f = struct.unpack_from("<IHBBBBBBBBBBq", s[SNAP_VM_PIT], 24 * ch)
        print("  pit %d count %d mode %d gate %d" % (ch, f[0], f[9], f[11]))
    redir = struct.unpack_from("<24Q", s[SNAP_VM_IOAPIC], 8 + 24)
    print("  ioapic redir %s" % " ".join("%d:%#x" % (i, redir[i]) for i in range(8)), flush=True)


lock = threading.Lock()
counts = {"ok": 0, "failed": 0}
failures = []


def tail(path, limit):
    try:
        with open(path, "rb") as f:
            return f.read()[-limit:].decode(errors="replace")
    except OSError as e:
        return "(%s)" % e


def one_restore(snap, n, worker):
    name, code, expect_out, expect_code = PROGRAMS[n % len(PROGRAMS)]
    log = "/tmp/stress-%d.log" % worker
    serial = log + ".serial"
    for path in (log, serial):
        if os.path.exists(path):
            os.unlink(path)
    vm = st.Vm(st.restore_args(snap) + ["--serial-log", serial], log)
    stage, started = "PING", time.monotonic()
    outcome = None
    try:
        vm.chan.send(st.FRAME_PING)
        kind, _ = vm.chan.recv(PING_TIMEOUT)
        if kind != st.FRAME_READY:
            outcome = "PING answered with frame %d" % kind
        else:
            stage = "RUN (%s)" % name
            ready = time.monotonic() - started
            out, _, exit_code, error = st.run_program(vm.chan, st.LANG_PYTHON, code,
                                                      RUN_TIMEOUT)
            stage = "the VM's end"
            status = vm.wait(30)
            if error:
                outcome = "agent ERROR %r" % error
            elif expect_out is not None and (out != expect_out or exit_code != expect_code):
                outcome = "stdout %r exit %s" % (out[:80], exit_code)
            elif status != 0:
                outcome = "VM status %s after the program's EXIT" % status
    except TimeoutError as e:
        outcome = "no answer (%s) waiting for %s" % (e, stage)
    except (EOFError, OSError) as e:
        status = vm.wait(10)
        outcome = "%s waiting for %s; VM status %s" % (e, stage, status)
    finally:
        if outcome:
            if vm.proc.poll() is None:  # a stall: it has logged its state at 15 s
                vm.proc.send_signal(signal.SIGKILL)
            vm.close()
            with lock:
                counts["failed"] += 1
                failures.append((n, name, outcome))
                print("FAIL restore %d (worker %d, %s) after %.1f s: %s\n  airlock-vmm log:\n%s\n"
                      "  serial tail:\n%s" % (n + 1, worker, name, time.monotonic() - started,
                                              outcome, tail(log, 6000), tail(serial, 1500)),
                      flush=True)
        else:
            vm.close()
            with lock:
                counts["ok"] += 1
                if (counts["ok"] + counts["failed"]) % 10 == 0:
                    print("progress: %d ok, %d failed (restore %d: READY after %.2f s)" % (
                        counts["ok"], counts["failed"], n + 1, ready), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--restores", type=int, default=150)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--vmm", default=st.VMM)
    ap.add_argument("--snapshot", default="/tmp/airlock-snapshot",
                    help="made unless it exists (so that runs can share one)")
    args = ap.parse_args()
    st.VMM = args.vmm
    snap = args.snapshot
    if not os.path.exists(os.path.join(snap, "state")) and not st.make_snapshot(snap):
        return 1
    print("the snapshot's timers:")
    describe(os.path.join(snap, "state"))
    next_restore = [0]
    started = time.monotonic()

    def worker(w):
        while True:
            with lock:
                n = next_restore[0]
                next_restore[0] += 1
            if n >= args.restores:
                return
            one_restore(snap, n, w)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    print("%d restores, %d workers: %d ok, %d failed, %.1f s" % (
        args.restores, args.workers, counts["ok"], counts["failed"], took))
    for n, name, outcome in failures:
        print("  restore %d (%s): %s" % (n + 1, name, outcome))
    print("%d passed, %d failed" % (int(not failures), int(bool(failures))))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
