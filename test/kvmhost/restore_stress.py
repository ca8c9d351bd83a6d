#!/usr/bin/env python3
"""Restores one airlock-vmm snapshot many times in a row, inside the KVM test host, to catch a
restore that stops answering; a hung VM is snapshotted again (SIGUSR2) and the vCPU, LAPIC,
PIT, IOAPIC and PIC state of that snapshot printed, with its threads' kernel wait channels.
A diagnostic, not part of CI (python3 stdlib only). From the host:

    KVMHOST_EXTRA=test/kvmhost/snapshot_test.py:test/kvmhost/restore_stress.py \\
        bash test/kvmhost/suite.sh restore_stress.py [RESTORES]
"""
import os
import shutil
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import snapshot_test as st  # noqa: E402

SNAP_VM_PIT, SNAP_VM_PIC_MASTER, SNAP_VM_PIC_SLAVE, SNAP_VM_IOAPIC = 2, 3, 4, 5
SNAP_CPU_MP_STATE, SNAP_CPU_REGS, SNAP_CPU_LAPIC, SNAP_CPU_MSRS = 17, 18, 23, 24
STATE_HEADER = 64  # vmm/snapshot.c documents the format


def sections(path):
    with open(path, "rb") as f:
        data = f.read()
    count = struct.unpack_from("<I", data, 12)[0]
    out, off = {}, STATE_HEADER
    for _ in range(count):
        kind, length = struct.unpack_from("<II", data, off)
        out[kind] = data[off + 8:off + 8 + length]
        off += 8 + ((length + 7) & ~7)
    return out


def describe(path):
    s = sections(path)
    regs = struct.unpack_from("<18Q", s[SNAP_CPU_REGS])
    print("  mp_state %d rip %#x rflags %#x" % (struct.unpack_from("<I", s[SNAP_CPU_MP_STATE])[0],
                                              regs[16], regs[17]))
    lapic = s[SNAP_CPU_LAPIC]
    reg = lambda off: struct.unpack_from("<I", lapic, off)[0]  # noqa: E731
    print("  lapic TPR %#x LVTT %#x TMICT %#x TMCCT %#x SVR %#x LINT0 %#x" % (
        reg(0x80), reg(0x320), reg(0x380), reg(0x390), reg(0xf0), reg(0x350)))
    print("  lapic ISR %s IRR %s" % (" ".join("%08x" % reg(0x100 + 16 * i) for i in range(8)),
                                     " ".join("%08x" % reg(0x200 + 16 * i) for i in range(8))))
    msrs = s[SNAP_CPU_MSRS]
    for i in range(struct.unpack_from("<I", msrs)[0]):
        index, _, value = struct.unpack_from("<IIQ", msrs, 8 + 16 * i)
        if index in (0x10, 0x6e0):  # TSC, TSC deadline
            print("  msr %#x = %#x" % (index, value))
    for ch in range(3):  # struct kvm_pit_channel_state, 24 bytes each
        f = struct.unpack_from("<IHBBBBBBBBBBq", s[SNAP_VM_PIT], 24 * ch)
        print("  pit %d count %d mode %d gate %d" % (ch, f[0], f[9], f[11]))
    irr = struct.unpack_from("<I", s[SNAP_VM_IOAPIC], 8 + 16)[0]
    redir = struct.unpack_from("<24Q", s[SNAP_VM_IOAPIC], 8 + 24)
    print("  ioapic irr %#x redir %s" % (irr, " ".join("%d:%#x" % (i, redir[i]) for i in range(8))))
    for name, kind in (("master", SNAP_VM_PIC_MASTER), ("slave", SNAP_VM_PIC_SLAVE)):
        last_irr, pic_irr, imr, isr = s[kind][8:12]  # struct kvm_pic_state's first bytes
        print("  pic %s irr %#x imr %#x isr %#x" % (name, pic_irr, imr, isr))


def threads(pid):
    """What each thread of airlock-vmm waits in, the VM's below its supervisor included."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            for child in f.read().split():
                threads(int(child))
    except OSError:
        pass
    for tid in sorted(os.listdir("/proc/%d/task" % pid)):
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "comm") as c, open(base + "stat") as s, open(base + "wchan") as w:
                print("  thread %s %s state %s wchan %s" % (tid, c.read().strip(),
                                                            s.read().split()[2], w.read()))
        except OSError:
            pass


def main():
    restores = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    snap = "/tmp/airlock-snapshot"
    if not st.make_snapshot(snap):
        return 1
    print("the snapshot's own state:")
    describe(os.path.join(snap, "state"))
    hangs, started = 0, time.monotonic()
    for i in range(restores):
        kept = "/tmp/hung-%d" % i
        vm = st.Vm(st.restore_args(snap) + ["--snapshot-to", kept], "/tmp/stress.log")
        stage = "PING"
        try:
            vm.chan.send(st.FRAME_PING)
            vm.chan.recv(15)
            stage = "RUN"
            out, _, code, _ = st.run_program(vm.chan, st.LANG_PYTHON,
                                             "import time; time.sleep(0.1); print('ok')", 15)
            status = vm.wait(15)
            print("restore %d: stdout %r exit %s, VM status %s, %.1f s" % (
                i + 1, out, code, status, time.monotonic() - started), flush=True)
        except (TimeoutError, EOFError) as e:
            hangs += 1
            print("HANG at restore %d waiting for %s: %s" % (i + 1, stage, e), flush=True)
            threads(vm.proc.pid)
            vm.proc.send_signal(signal.SIGUSR2)
            print("  airlock-vmm after SIGUSR2: status %s; %s" % (vm.wait(30), vm.stderr_tail()))
            if os.path.exists(os.path.join(kept, "state")):
                describe(os.path.join(kept, "state"))
        finally:
            vm.close()
            shutil.rmtree(kept, ignore_errors=True)
    print("%d restores, %d hangs, %.1f s" % (restores, hangs, time.monotonic() - started))
    print("%d passed, %d failed" % (int(hangs == 0), int(hangs > 0)))
    return 0 if hangs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
