#!/usr/bin/env python3
"""Restore from a snapshot to the agent's answer of a PING (spawn to READY), airlock-vmm against
QEMU-KVM (-M microvm, the same kernel, disk and memory size) restoring the same guest from a
migration file (-incoming "exec:cat FILE"); and what an idle restored VM costs in memory
(/proc/PID/smaps_rollup of several VMs restored side by side: Rss, Pss, Private = unique).
Meant for the KVM test host, where everything runs at emulation speed: compare, do not quote.
Used by test/kvmhost/snapshot_test.py (which makes the airlock-vmm snapshot), or alone:

    kvm_restore.py SNAPSHOT_DIR N [QEMU_DIR]      (in the test host's payload directory)
"""
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

FRAME_READY, FRAME_PING = 1, 0x82  # agent/proto.h, version 3: a 16-byte header
FRAME_HEADER_SIZE = 16
VMM = "build/vmm/airlock-vmm"
KERNEL = "vmlinux"
ROOTFS = "/dev/vda"
MEMORY_MB = 512
WARM = "airlock.warm=python"
SIDE_BY_SIDE = 3  # VMs restored at once for the memory figures


def reseal(state):
    """Recomputes a state file's trailing FNV-1a 64 checksum (vmm/snapshot.c's format)."""
    h = 0xcbf29ce484222325
    for byte in bytes(state[:-8]):
        h = ((h ^ byte) * 0x100000001b3) & 0xffffffffffffffff
    state[-8:] = struct.pack("<Q", h)
    return state


def wait_ready(sock, timeout=120):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < FRAME_HEADER_SIZE:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("the VM closed the channel")
        buf += chunk
    kind, _, _, _ = struct.unpack("<IIII", buf[:FRAME_HEADER_SIZE])
    if kind != FRAME_READY:
        raise RuntimeError("expected READY, got frame %d" % kind)


def spawn(cmd_for_fd, env=None, log=None):
    """Starts a VM with its channel on a socketpair; returns (process, host socket)."""
    host, guest = socket.socketpair()
    err = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd_for_fd(guest.fileno()), pass_fds=[guest.fileno()], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    if log:
        err.close()
    guest.close()
    return proc, host


def restore_to_ready(cmd_for_fd, env=None, log=None):
    """ms from spawn to READY answering a PING sent at once."""
    t = time.monotonic()
    proc, host = spawn(cmd_for_fd, env, log)
    try:
        host.sendall(struct.pack("<IIII", FRAME_PING, 0, 0, 0))
        wait_ready(host)
        return (time.monotonic() - t) * 1000
    finally:
        proc.kill()
        proc.wait()
        host.close()


def smaps(pid):
    """smaps_rollup's kB figures, summed over pid and the processes below it (airlock-vmm is a
    supervisor with the VM below it)."""
    figures = {}
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        for child in f.read().split():
            for k, v in smaps(int(child)).items():
                figures[k] = figures.get(k, 0) + v
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                figures[parts[0].rstrip(":")] = figures.get(parts[0].rstrip(":"), 0) + int(parts[1])
    return figures


def idle_memory(cmd_for_fd, env=None):
    """Restores SIDE_BY_SIDE VMs, PINGs each, lets them idle, and returns median kB figures."""
    vms = []
    try:
        for _ in range(SIDE_BY_SIDE):
            proc, host = spawn(cmd_for_fd, env)
            vms.append((proc, host))
            host.sendall(struct.pack("<IIII", FRAME_PING, 0, 0, 0))
            wait_ready(host)
        time.sleep(1)
        rows = [smaps(proc.pid) for proc, _ in vms]
    finally:
        for proc, host in vms:
            proc.kill()
            proc.wait()
            host.close()
    med = {k: statistics.median(r.get(k, 0) for r in rows)
           for k in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean")}
    med["Private"] = statistics.median(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
                                       for r in rows)
    return med


# ---- the QEMU peer ----

def qemu_cmd(qemu_dir, qmp_path=None, incoming=None):
    append = ("console=ttyS0 quiet reboot=t panic=-1 root=/dev/vda ro rootfstype=ext4 "
              "init=/sbin/init " + WARM)

    def cmd(fd):
        c = [os.path.join(qemu_dir, "qemu-system-x86_64"), "-L", os.path.join(qemu_dir, "share"),
             "-M", "microvm,acpi=off,x-option-roms=off", "-accel", "kvm", "-cpu", "host",
             "-m", str(MEMORY_MB), "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
             "-no-reboot", "-kernel", KERNEL, "-append", append,
             "-drive", "id=root,file=%s,format=raw,if=none,read-only=on,file.locking=off" % ROOTFS,
             "-device", "virtio-blk-device,drive=root",
             "-device", "virtio-serial-device,max_ports=1",
             "-chardev", "socket,id=channel,fd=%d" % fd, "-device", "virtconsole,chardev=channel",
             "-serial", "null"]
        if qmp_path:
            c += ["-qmp", "unix:%s,server=on,wait=off" % qmp_path]
        if incoming:
            c += ["-incoming", "exec:cat %s" % incoming]
        return c
    return cmd


class Qmp:
    def __init__(self, path):
        for _ in range(100):
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                time.sleep(0.1)
        self.file = self.sock.makefile("rwb")
        self.file.readline()  # greeting
        self.call("qmp_capabilities")

    def call(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError("QMP %s: %s" % (command, reply["error"]))


def qemu_snapshot(qemu_dir, env, path):
    """Boots QEMU to READY, stops it and migrates it into path."""
    qmp_path = "/tmp/qemu-snapshot.qmp"
    if os.path.exists(qmp_path):
        os.unlink(qmp_path)
    proc, host = spawn(qemu_cmd(qemu_dir, qmp_path), env, "/tmp/qemu-boot.log")
    try:
        t = time.monotonic()
        wait_ready(host, 240)
        print("QEMU: booted to READY in %.1f s" % (time.monotonic() - t), flush=True)
        qmp = Qmp(qmp_path)
        qmp.call("stop")
        qmp.call("migrate", uri="exec:cat > %s" % path)
        for _ in range(1200):
            status = qmp.call("query-migrate").get("status")
            if status in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.1)
        if status != "completed":
            raise RuntimeError("QEMU migration to file: %s" % status)
        print("QEMU: migration file written (%d MiB)" % (os.path.getsize(path) >> 20), flush=True)
    finally:
        proc.kill()
        proc.wait()
        host.close()


def measure(snap, n, qemu_dir, report=None):
    ours = lambda fd: [VMM, "--restore", snap, "--rootfs", ROOTFS, "--channel-fd", str(fd)]
    bare = lambda fd: ours(fd) + ["--unconfined"]  # no jail, no seccomp: what they cost
    restore_to_ready(ours)  # the page cache holds the snapshot from here on, as in a pool
    vmm_ms, bare_ms = [], []
    for _ in range(n):  # interleaved, so that drift in the host hits both alike
        vmm_ms.append(restore_to_ready(ours))
        bare_ms.append(restore_to_ready(bare))
    vmm_mem = idle_memory(ours)

    qemu_ms, qemu_mem = [], None
    qemu_bin = os.path.join(qemu_dir or "", "qemu-system-x86_64")
    if qemu_dir and os.path.exists(qemu_bin):
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(qemu_dir, "lib"))
        mig = "/tmp/qemu-snapshot.mig"
        try:
            qemu_snapshot(qemu_dir, env, mig)
            theirs = qemu_cmd(qemu_dir, incoming=mig)
            restore_to_ready(theirs, env, "/tmp/qemu-restore.log")
            qemu_ms = [restore_to_ready(theirs, env) for _ in range(n)]
            qemu_mem = idle_memory(theirs, env)
        except (RuntimeError, OSError, EOFError) as e:
            print("QEMU peer failed: %s" % e)
            for log in ("/tmp/qemu-boot.log", "/tmp/qemu-restore.log"):
                if os.path.exists(log):
                    with open(log, "rb") as f:
                        print("  %s: %s" % (log, f.read()[-600:].decode(errors="replace")))
    else:
        print("QEMU peer skipped: no %s" % qemu_bin)

    print("restore to READY (spawn -> PING answered), medians of %d:" % n)
    print("  airlock-vmm  %7.0f ms   (min %.0f, max %.0f)" % (statistics.median(vmm_ms),
                                                          min(vmm_ms), max(vmm_ms)))
    print("  unconfined   %7.0f ms   (min %.0f, max %.0f): the jail and the filter add %.1f ms"
          % (statistics.median(bare_ms), min(bare_ms), max(bare_ms),
             statistics.median(vmm_ms) - statistics.median(bare_ms)))
    if qemu_ms:
        print("  qemu-kvm     %7.0f ms   (min %.0f, max %.0f), from a %d MiB migration file"
              % (statistics.median(qemu_ms), min(qemu_ms), max(qemu_ms),
                 os.path.getsize("/tmp/qemu-snapshot.mig") >> 20))
        print("  ratio airlock-vmm / qemu-kvm: %.2fx"
              % (statistics.median(vmm_ms) / statistics.median(qemu_ms)))
    print("idle restored VM, %d side by side, median kB per VM (its processes):" % SIDE_BY_SIDE)
    print("  %-12s %8s %8s %8s %8s %8s" % ("", "Rss", "Pss", "Private", "Priv_Dirty",
                                          "Shared_Cl"))
    for name, mem in (("airlock-vmm", vmm_mem), ("qemu-kvm", qemu_mem)):
        if mem:
            print("  %-12s %8d %8d %8d %8d %8d" % (name, mem["Rss"], mem["Pss"], mem["Private"],
                                                  mem["Private_Dirty"], mem["Shared_Clean"]))
    if report:
        report(len(vmm_ms) == n, "measured restore-to-READY and idle memory",
               "airlock-vmm %.0f ms, unique %d kB" % (statistics.median(vmm_ms),
                                                       vmm_mem["Private"]))


if __name__ == "__main__":
    measure(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
