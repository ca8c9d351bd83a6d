#!/usr/bin/env python3
"""Holds one idle KVM VM (an in-kernel irqchip and one vCPU that never runs) for as long as it
lives, inside the KVM test host only.

Why: KVM turns static keys on and off as the first VM (or the first vCPU with an in-kernel LAPIC)
appears and the last one goes: preempt_notifier_key, patched into __schedule, and the LAPIC's
apic_sw_disabled. Every airlock call makes and destroys a VM, so the test host's kernel rewrote
its own scheduler code with INT3 patching (text_poke_bp) several times a second. QEMU 7.2's TCG
sometimes misses such cross-CPU code changes: both CPUs of a frozen test host were found looping
between exc_int3 and __schedule+0x2ab, forever (2026-11-22). With this VM held, the counts never
reach zero, the keys stay on and nothing is patched while the tests run. The product never needs
this: real CPUs handle cross-modified code."""
import fcntl
import os
import signal
import sys

KVM_CREATE_VM = 0xAE01
KVM_CREATE_VCPU = 0xAE41
KVM_CREATE_IRQCHIP = 0xAE60


def main():
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    fcntl.ioctl(vm, KVM_CREATE_IRQCHIP, 0)
    vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
    print("kvm_keeper: holding VM fd %d, vCPU fd %d" % (vm, vcpu), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
