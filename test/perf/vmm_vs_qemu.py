#!/usr/bin/env python3
"""Cold boot of one microVM to the agent's READY and to the answer of print(1): airlock-vmm
against QEMU (-M microvm) on the same KVM, kernel and root file system, measured by the same
code in one run (medians of N, interleaved); plus `airlock run` end to end and host python3.
Meant to run where KVM works: inside the KVM test host (test/kvmhost/suite.sh), where
everything runs at emulation speed, so only the ratios mean anything.

    vmm_vs_qemu.py N VMLINUX ROOTFS AIRLOCK_VMM QEMU_DIR
"""
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

FRAME_RUN, FRAME_READY, FRAME_EXIT, FRAME_ERROR = 0x81, 1, 4, 5


def run_once(cmd, env=None):
    """Boots one VM with the channel on fd 3; returns (ms to READY, ms to EXIT)."""
    host, guest = socket.socketpair()
    started = time.monotonic()
    proc = subprocess.Popen(cmd(guest.fileno()), pass_fds=[guest.fileno()], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    guest.close()
    buf = b""

    def frame():
        nonlocal buf
        while True:
            if len(buf) >= 16:  # agent/proto.h, version 3: type, length, stream, flags
                kind, length, _, _ = struct.unpack("<IIII", buf[:16])
                if len(buf) >= 16 + length:
                    payload, buf = buf[16:16 + length], buf[16 + length:]
                    return kind, payload
            chunk = host.recv(1 << 16)
            if not chunk:
                raise RuntimeError("VM closed the channel: %s" % cmd(3)[0])
            buf += chunk

    try:
        kind, _ = frame()
        ready = (time.monotonic() - started) * 1000
        code = b"print(1)"
        # version 3, python, 10 s, a 1 MiB output window (credit enough for print(1)); no
        # stdin, files or setup records, no egress
        run = struct.pack("<IIIIQQQq64sIIIIII", 3, 1, 10000, 1 << 20, 1 << 20, 1 << 20, 1 << 20,
                          time.time_ns(), os.urandom(64), len(code), 0, 0, 0, 0, 0)
        host.sendall(struct.pack("<IIII", FRAME_RUN, len(run) + len(code), 0, 0) + run + code)
        while kind not in (FRAME_EXIT, FRAME_ERROR):
            kind, _ = frame()
        done = (time.monotonic() - started) * 1000
    finally:
        proc.kill()
        proc.wait()
        host.close()
    return ready, done


def main():
    n, vmlinux, rootfs, vmm, qemu_dir = int(sys.argv[1]), *sys.argv[2:6]
    qemu_env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(qemu_dir, "lib"))
    append = "console=ttyS0 quiet reboot=t panic=-1 root=/dev/vda ro rootfstype=ext4 init=/sbin/init"

    def ours(fd):
        return [vmm, "--kernel", vmlinux, "--rootfs", rootfs, "--channel-fd", str(fd),
                "--memory-mb", "512"]

    def qemu(fd):
        return [os.path.join(qemu_dir, "qemu-system-x86_64"), "-L", os.path.join(qemu_dir, "share"),
                "-M", "microvm,acpi=off,x-option-roms=off", "-accel", "kvm", "-cpu", "host",
                "-m", "512", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
                "-no-reboot", "-kernel", vmlinux, "-append", append,
                "-drive", "id=root,file=%s,format=raw,if=none,read-only=on,file.locking=off" % rootfs,
                "-device", "virtio-blk-device,drive=root",
                "-device", "virtio-serial-device,max_ports=1",
                "-chardev", "socket,id=channel,fd=%d" % fd, "-device", "virtconsole,chardev=channel",
                "-serial", "null"]

    results = {"airlock-vmm": [], "qemu-kvm microvm": [], "airlock run (kvm)": [], "host python3": []}
    run_once(ours)  # warm the page cache for both
    run_once(qemu, qemu_env)
    for _ in range(n):
        results["airlock-vmm"].append(run_once(ours))
        results["qemu-kvm microvm"].append(run_once(qemu, qemu_env))
        t = time.monotonic()
        subprocess.run(["build/mcp/airlock", "run", "--backend", "kvm", "print(1)"], check=True,
                       capture_output=True)
        results["airlock run (kvm)"].append((0, (time.monotonic() - t) * 1000))
        t = time.monotonic()
        subprocess.run(["python3", "-c", "print(1)"], check=True, capture_output=True)
        results["host python3"].append((0, (time.monotonic() - t) * 1000))
    med = {k: (statistics.median(r for r, _ in v), statistics.median(d for _, d in v))
           for k, v in results.items()}
    print("%-22s %16s %18s   (medians of %d)" % ("", "boot to READY", "print(1) answered", n))
    for k, (ready, done) in med.items():
        print("%-22s %13.0f ms %15.0f ms" % (k, ready, done) if ready else
              "%-22s %16s %15.0f ms" % (k, "", done))
    ratio_ready = med["airlock-vmm"][0] / med["qemu-kvm microvm"][0]
    ratio_done = med["airlock-vmm"][1] / med["qemu-kvm microvm"][1]
    print("ratio airlock-vmm / qemu-kvm: boot to READY %.2fx, print(1) answered %.2fx"
          % (ratio_ready, ratio_done))


if __name__ == "__main__":
    main()
