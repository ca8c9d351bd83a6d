#!/usr/bin/env python3
"""Holds one KVM VM (an in-kernel irqchip and one vCPU) for as long as it lives, inside the KVM
test host only, and runs that vCPU now and then as a heartbeat: evidence about the test host's
health that owes nothing to airlock.

Why hold it: KVM turns static keys on and off as the first VM (or the first vCPU with an in-kernel
LAPIC) appears and the last one goes: preempt_notifier_key, patched into __schedule, and the
LAPIC's apic_sw_disabled. Every airlock call makes and destroys a VM, so the test host's kernel
rewrote its own scheduler code with INT3 patching (text_poke_bp) several times a second. QEMU
7.2's TCG sometimes misses such cross-CPU code changes: both CPUs of a frozen test host were found
looping between exc_int3 and __schedule+0x2ab, forever (2026-11-22). With this VM held, the counts
never reach zero, the keys stay on and nothing is patched while the tests run. The product never
needs this: real CPUs handle cross-modified code.

Why the heartbeat: test/runner.py retries a kvm test only when the test host itself is shown
unhealthy, never on airlock's own messages. Every --interval seconds the vCPU runs a three-
instruction real-mode loop (inc al; out 0x10, al; jmp) until its next port exit, and the keeper
prints "kvm_keeper: heartbeat N ..." on the console. A heartbeat that stops (the test host froze,
or its KVM no longer runs a vCPU) or a "kvm_keeper: CANARY FAILED" line is that evidence.

    kvm_keeper.py [--interval S] [--ready FILE]   hold the VM and beat (inside.sh starts it);
                                                  FILE appears after the first heartbeat
    kvm_keeper.py --probe [N]       a fresh VM, N port exits, one line of verdict, exit 0 or 1
"""
import argparse
import ctypes
import fcntl
import mmap
import os
import signal
import struct
import sys
import time

KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VM = 0xAE01
KVM_CREATE_VCPU = 0xAE41
KVM_CREATE_IRQCHIP = 0xAE60
KVM_SET_USER_MEMORY_REGION = 0x4020AE46  # _IOW(KVMIO, 0x46, 32 bytes)
KVM_RUN = 0xAE80
KVM_GET_REGS, KVM_SET_REGS = 0x8090AE81, 0x4090AE82     # struct kvm_regs, 144 bytes
KVM_GET_SREGS, KVM_SET_SREGS = 0x8138AE83, 0x4138AE84   # struct kvm_sregs, 312 bytes
KVM_EXIT_IO = 2
PORT = 0x10
CODE_GPA = 0x1000
# inc al; out 0x10, al; jmp back to inc (real mode, CS base 0)
CODE = bytes([0xFE, 0xC0, 0xE6, PORT, 0xEB, 0xFA])


class Canary:
    """A vCPU in real mode whose every KVM_RUN must end at its next `out` with al one higher."""

    def __init__(self, irqchip):
        self.kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        self.vm = fcntl.ioctl(self.kvm, KVM_CREATE_VM, 0)
        if irqchip:
            fcntl.ioctl(self.vm, KVM_CREATE_IRQCHIP, 0)
        self.mem = mmap.mmap(-1, 0x2000)
        self.mem[CODE_GPA:CODE_GPA + len(CODE)] = CODE
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        fcntl.ioctl(self.vm, KVM_SET_USER_MEMORY_REGION,
                    struct.pack("=IIQQQ", 0, 0, 0, len(self.mem), addr))
        self.vcpu = fcntl.ioctl(self.vm, KVM_CREATE_VCPU, 0)
        size = fcntl.ioctl(self.kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
        self.run_area = mmap.mmap(self.vcpu, size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        sregs = bytearray(312)
        fcntl.ioctl(self.vcpu, KVM_GET_SREGS, sregs, True)
        struct.pack_into("=Q", sregs, 0, 0)    # cs.base
        struct.pack_into("=H", sregs, 12, 0)   # cs.selector
        fcntl.ioctl(self.vcpu, KVM_SET_SREGS, bytes(sregs))
        regs = bytearray(144)
        fcntl.ioctl(self.vcpu, KVM_GET_REGS, regs, True)
        struct.pack_into("=QQ", regs, 128, CODE_GPA, 2)  # rip, rflags
        struct.pack_into("=Q", regs, 0, 0)               # rax
        fcntl.ioctl(self.vcpu, KVM_SET_REGS, bytes(regs))
        self.count = 0

    def step(self):
        """One KVM_RUN; raises AssertionError unless it ended at the loop's port write."""
        fcntl.ioctl(self.vcpu, KVM_RUN, 0)
        reason = struct.unpack_from("=I", self.run_area, 8)[0]
        if reason != KVM_EXIT_IO:
            raise AssertionError("exit reason %d, not KVM_EXIT_IO" % reason)
        direction, size, port, count, offset = struct.unpack_from("=BBHIQ", self.run_area, 32)
        value = self.run_area[offset]
        self.count += 1
        if (direction, size, port) != (1, 1, PORT) or value != self.count & 0xFF:
            raise AssertionError("exit on port %#x (dir %d size %d) value %d, not %d on %#x"
                                 % (port, direction, size, value, self.count & 0xFF, PORT))


def say(line):
    print(line, flush=True)


def probe(n):
    """A fresh VM (created and destroyed: run it while a keeper holds its own VM)."""
    def too_long(*_):
        raise TimeoutError("no port exit within 60 s")
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(60)
    started = time.monotonic()
    try:
        c = Canary(irqchip=False)
        for _ in range(n):
            c.step()
    except Exception as e:  # noqa: BLE001 (any failure is the verdict)
        say("kvmhost-canary: FAILED: %s: %s" % (type(e).__name__, e))
        return 1
    say("kvmhost-canary: ok: a fresh VM ran %d port exits in %.0f ms"
        % (n, (time.monotonic() - started) * 1000))
    return 0


def keep(interval, ready):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    c = Canary(irqchip=True)
    say("kvm_keeper: holding VM fd %d, vCPU fd %d; a heartbeat every %g s"
        % (c.vm, c.vcpu, interval))
    beat = 0
    while True:
        beat += 1
        started = time.monotonic()
        try:
            c.step()
            say("kvm_keeper: heartbeat %d (KVM_RUN %.0f ms)"
                % (beat, (time.monotonic() - started) * 1000))
            if ready and beat == 1:
                open(ready, "w").close()
        except Exception as e:  # noqa: BLE001
            say("kvm_keeper: CANARY FAILED at heartbeat %d: %s: %s" % (beat, type(e).__name__, e))
        time.sleep(interval)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", type=int, nargs="?", const=100, help="fresh-VM probe, N exits")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--ready", help="a file to create after the first heartbeat")
    args = ap.parse_args()
    if args.probe:
        return probe(args.probe)
    keep(args.interval, args.ready)


if __name__ == "__main__":
    sys.exit(main())
