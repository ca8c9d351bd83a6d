#!/usr/bin/env python3
"""A VM that ends, or stalls, without a reason of its own leaves airlock-vmm's account of it,
proven inside the KVM test host (python3 stdlib only).

1. A crash: a snapshot whose saved IDT points at no memory is restored; the guest's first
   interrupt then triple-faults it. airlock-vmm logs its last exits with the guest's rips.
   On Intel it must exit 1 (not 0, a guest's own reboot), log the vCPU's registers, events,
   LAPIC and the devices' state (serial tail, virtqueues), and end its log with one line that
   says the guest crashed. On AMD, where KVM resets the vCPU at a triple fault, its last line
   must say what is known (crash_report's docstring).
2. A guest's own reboot stays quiet: a normal restore and run ends with status 0 and no report.
3. A stall: a restored guest that says nothing (no PING is sent) has its state logged after
   15 s, and runs on: a PING then gets READY and a program runs.

Run from the host:
    KVMHOST_EXTRA=test/kvmhost/snapshot_test.py:test/kvmhost/crash_report_test.py \\
        bash test/kvmhost/suite.sh crash_report_test.py [--vmm PATH]
One PASS/FAIL line per check, then "N passed, N failed".
"""
import argparse
import os
import re
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import snapshot_test as st  # noqa: E402

SREGS_IDT = 8 * 24 + 16  # struct kvm_sregs: 8 segments, the GDT, then the IDT (base, limit)
STATE_HEADER = 64
REPORT_PARTS = ("rip=", "cr0=", "events:", "lapic:", "last exits", "serial:", "virtio-console:")


def sreg_section_offset(state):
    count = struct.unpack_from("<I", state, 12)[0]
    off = STATE_HEADER
    for _ in range(count):
        kind, length = struct.unpack_from("<II", state, off)
        if kind == 19:  # SNAP_CPU_SREGS
            return off + 8
        off += 8 + ((length + 7) & ~7)
    raise ValueError("no SREGS section")


def idt_nowhere(state):
    """The saved IDT moved to an address beyond guest RAM: the next interrupt cannot be
    delivered, nor the fault that follows: a triple fault with a non-empty IDT."""
    import kvm_restore
    at = sreg_section_offset(state) + SREGS_IDT
    struct.pack_into("<QH", state, at, 0xffffffff00000000, 0xfff)
    return kvm_restore.reseal(state)


def log_text(vm):
    vm.log.flush()
    with open(vm.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def amd():
    with open("/proc/cpuinfo") as f:
        return "AuthenticAMD" in f.read()


def crash(snap):
    """Intel keeps the vCPU's state at a triple fault: the crash is told from the guest's own
    reboot (an empty IDT), airlock-vmm exits 1 and logs that state. AMD's KVM resets the vCPU
    then (svm.c, shutdown_interception), so the two cannot be told apart: airlock-vmm exits 0,
    as for a reboot, and its last line says what is known: the triple fault, the exits, where
    the guest was at the one before, the console's last line; the exit history holds rips."""
    bad = st.damaged_copy(snap, "idt-nowhere", idt_nowhere)
    vm = st.Vm(st.restore_args(bad) + ["--serial-log", "/tmp/crash.serial"], "/tmp/crash.log")
    try:
        vm.chan.send(st.FRAME_PING)
        status = vm.wait(60)
        text = log_text(vm)
        print("---- airlock-vmm's log of the crash ----\n%s---- end ----" % text, flush=True)
        lines = [l for l in text.splitlines() if l.strip()]
        last = lines[-1] if lines else ""
        exits = re.search(r"last exits \(\d+ in all.*", text)
        report(exits is not None, "crash: the log holds the last exits",
               exits.group(0)[:300] if exits else "no exit history")
        if amd():
            report(status == 0 and "triple fault" in last and re.search(r"\d+ exits, ", last)
                   and "console's last line" in last,
                   "crash (AMD: KVM keeps no state): the log ends with one line naming the "
                   "triple fault, the exits, the rip before it and the console's last line",
                   "status %s, last line %r" % (status, last[-300:]))
            return
        report(status == 1, "crash: airlock-vmm exits 1 when the guest triple-faults unasked",
               "status %s" % status)
        report("the guest crashed" in last and "triple fault" in last,
               "crash: the log ends with one line saying the guest crashed", repr(last[-200:]))
        missing = [p for p in REPORT_PARTS if p not in text]
        report(not missing, "crash: the log holds the VM's state (registers, segments, events, "
               "LAPIC, last exits, serial tail, virtqueues)",
               "missing %s; log: %s" % (missing, text[-600:].replace("\n", " | ")))
    finally:
        vm.close()


def clean_end(snap):
    vm = st.Vm(st.restore_args(snap), "/tmp/clean.log")
    try:
        vm.chan.send(st.FRAME_PING)
        kind, _ = vm.chan.recv(60)
        # no hang-up: the guest ends itself, after the agent's 30 s wait for the host
        out, _, code, _ = st.run_program(vm.chan, st.LANG_PYTHON, "print('ok')", hang_up=False)
        status = vm.wait(90)
        text = log_text(vm)
        print("---- airlock-vmm's log of a clean end ----\n%s---- end ----" % text, flush=True)
        if amd():  # a triple fault on AMD: its one line, whose exits carry the kernel's rips
            rips = [int(r, 16) for r in re.findall(r"@(0x[0-9a-f]+)", text)]
            report("reboot: Restarting system" in text and
                   any(r >= 0xffffffff80000000 for r in rips),
                   "clean end (AMD): one line with the exits at the guest kernel's rips and "
                   "its console's last line (its reboot)", text[-300:])
        report(kind == st.FRAME_READY and out == b"ok\n" and status == 0 and
               "the VM's state" not in text and "crashed" not in text,
               "clean end: the guest's own reboot ends with status 0 and no state report",
               "stdout %r exit %s status %s log %r" % (out, code, status, text[-300:]))
    except (TimeoutError, EOFError, OSError) as e:
        report(False, "clean end: a restored VM runs and ends", "%s; %s" % (e, vm.stderr_tail()))
    finally:
        vm.close()


def stall(snap):
    vm = st.Vm(st.restore_args(snap), "/tmp/stall.log")
    try:
        time.sleep(18)  # no PING: the restored guest has nothing to answer
        text = log_text(vm)
        print("---- airlock-vmm's log of the stall ----\n%s---- end ----" % text, flush=True)
        missing = [p for p in REPORT_PARTS if p not in text]
        report(vm.proc.poll() is None and "has not answered the host" in text and not missing,
               "stall: a silent restored guest's state is logged after 15 s, the VM running on",
               "running %s, missing %s; log: %s" % (vm.proc.poll() is None, missing,
                                                    text[-400:].replace("\n", " | ")))
        vm.chan.send(st.FRAME_PING)
        kind, _ = vm.chan.recv(60)
        out, _, code, _ = st.run_program(vm.chan, st.LANG_PYTHON, "print('after')")
        report(kind == st.FRAME_READY and out == b"after\n" and code == 0,
               "stall: after the report the VM answers and runs a program",
               "stdout %r exit %s" % (out, code))
    except (TimeoutError, EOFError, OSError) as e:
        report(False, "stall: the VM answers after its report", "%s; %s" % (e, vm.stderr_tail()))
    finally:
        vm.close()


results = []


def report(ok, name, detail=""):
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""),
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", default=st.VMM)
    args = ap.parse_args()
    st.VMM = args.vmm
    print("vmm: %s" % args.vmm, flush=True)
    snap = "/tmp/airlock-snapshot-%d" % os.getpid()
    if st.make_snapshot(snap):
        crash(snap)
        clean_end(snap)
        stall(snap)
    passed = sum(results) + sum(st.results)
    failed = len(results) + len(st.results) - passed
    print("%d passed, %d failed" % (passed, failed))
    return 0 if results and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
