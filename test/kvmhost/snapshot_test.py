#!/usr/bin/env python3
"""airlock-vmm snapshot and restore, proven inside the KVM test host (python3 stdlib only).

Boots the guest with --snapshot-to, waits for the agent's READY, sends SIGUSR2 and expects exit 0
with DIR/memory (sparse) and DIR/state written; then restores it 20 times in a row, each time
PING -> READY, a python RUN that sleeps 0.1 s (timer interrupts survive the restore) and prints
"ok", the EXIT frame with code 0, and the VM process ending with status 0; a bash RUN; two
restores whose os.urandom/random differ; a restored VM snapshotted again, and that snapshot
restored; airlock-vmm killed by its seccomp filter at a forbidden syscall; a corrupt, a
truncated, a foreign and a mismatched snapshot refused with exit status 3. Then measures
(test/perf/kvm_restore.py) restore-to-READY
against QEMU-KVM restoring the same guest from a migration file, and the memory an idle
restored VM costs. One PASS/FAIL line per check, then "N passed, N failed".

Run from the host:
    KVMHOST_EXTRA=test/kvmhost/snapshot_test.py:test/perf/kvm_restore.py:QEMU_DIR \\
        bash test/kvmhost/suite.sh snapshot_test.py [--qemu-dir qemu] [--restores 20]
(inside.sh runs it in the payload directory; QEMU_DIR is a directory named qemu holding
qemu-system-x86_64, the libraries it needs in lib/ and its firmware in share/, as for
test/perf/vmm_vs_qemu.py; without it the QEMU comparison is skipped.)
"""
import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "test", "perf"))

PROTOCOL = 3  # agent/proto.h: AL_PROTO_VERSION
FRAME_READY, FRAME_EXIT, FRAME_ERROR = 1, 4, 5
FRAME_RUN, FRAME_PING = 0x81, 0x82
FRAME_DATA, FRAME_CREDIT = 0x41, 0x42
STREAM_STDOUT, STREAM_STDERR = 1, 2
OUTPUT_WINDOW = 1 << 20
LANG_PYTHON, LANG_BASH = 1, 3
EXIT_REFUSED = 3

VMM = "build/vmm/airlock-vmm"
KERNEL = "vmlinux"
ROOTFS = "/dev/vda"  # the test host's disk is the guest image
MEMORY_MB = 512
WARM = "airlock.warm=python"
RUN_AS = (42001, 42002)  # a VM's own user and group, as airlock (root) gives each VM

results = []


def report(ok, name, detail=""):
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""),
          flush=True)


class Channel:
    """The host end of the agent's framed channel (agent/proto.h)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.stream = 0  # of the frame recv returned last

    def send(self, kind, payload=b"", stream=0):
        self.sock.sendall(struct.pack("<IIII", kind, len(payload), stream, 0) + payload)

    def recv(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 16:
                kind, length, self.stream, _ = struct.unpack("<IIII", self.buf[:16])
                if len(self.buf) >= 16 + length:
                    payload, self.buf = self.buf[16:16 + length], self.buf[16 + length:]
                    return kind, payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame within %.0f s" % timeout)
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("the VM closed the channel")
            self.buf += chunk


def run_frame(language, code, timeout_ms=20000):
    code = code.encode()
    # struct al_run: no stdin, files or setup records, no egress (flags 0), reserved 0
    head = struct.pack("<IIIIQQQq64sIIIIII", PROTOCOL, language, timeout_ms, OUTPUT_WINDOW,
                       1 << 20, 1 << 20, 1 << 20,
                       time.time_ns(), os.urandom(64), len(code), 0, 0, 0, 0, 0)
    return head + code


def run_program(chan, language, code, timeout=60, hang_up=True):
    """Sends RUN; returns (stdout, stderr, exit_code or None, error text). Then hangs up, as
    airlock does with the answer in hand: airlock-vmm ends the VM (status 0) when its host goes.
    Without the hang-up the agent waits 30 s for the host before its own reboot (agent/main.c,
    LAST_FRAME_GRACE_MS)."""
    chan.send(FRAME_RUN, run_frame(language, code))
    out, err = b"", b""
    while True:
        kind, payload = chan.recv(timeout)
        if kind == FRAME_DATA:  # granted back at once: the window never runs out
            if chan.stream == STREAM_STDOUT:
                out += payload
            else:
                err += payload
            if payload:
                chan.send(FRAME_CREDIT, struct.pack("<I", len(payload)), chan.stream)
        elif kind in (FRAME_EXIT, FRAME_ERROR):
            if hang_up:
                chan.sock.shutdown(socket.SHUT_WR)
            if kind == FRAME_EXIT:
                return out, err, struct.unpack("<i", payload[:4])[0], ""
            return out, err, None, payload.decode(errors="replace")


class Vm:
    """One airlock-vmm process with its channel on a socketpair."""

    def __init__(self, args, log):
        host, guest = socket.socketpair()
        self.log_path = log
        self.log = open(log, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([VMM, "--channel-fd", str(guest.fileno())] + args,
                                     pass_fds=[guest.fileno()], stdout=subprocess.DEVNULL,
                                     stderr=self.log)
        guest.close()
        self.chan = Channel(host)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-400:].decode(errors="replace").strip().replace("\n", " | ")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.chan.sock.close()
        self.log.close()


def boot_args(snapshot_dir):
    return ["--kernel", KERNEL, "--rootfs", ROOTFS, "--memory-mb", str(MEMORY_MB),
            "--cmdline-extra", WARM, "--snapshot-to", snapshot_dir]


def restore_args(snapshot_dir):
    return ["--restore", snapshot_dir, "--rootfs", ROOTFS]


def make_snapshot(snap):
    shutil.rmtree(snap, ignore_errors=True)
    vm = Vm(boot_args(snap), "/tmp/snapshot-boot.log")
    try:
        kind, _ = vm.chan.recv(240)
        booted = time.monotonic() - vm.started
        if kind != FRAME_READY:
            report(False, "boot to READY", "first frame %d" % kind)
            return False
        t = time.monotonic()
        vm.proc.send_signal(signal.SIGUSR2)
        status = vm.wait(120)
        took = time.monotonic() - t
        files = all(os.path.isfile(os.path.join(snap, f)) for f in ("memory", "state"))
        ok = status == 0 and files
        detail = "boot to READY %.2f s, snapshot written in %.2f s" % (booted, took)
        if files:
            st = os.stat(os.path.join(snap, "memory"))
            detail += ", memory %d MiB apparent, %d MiB allocated (sparse), state %d bytes" % (
                st.st_size >> 20, st.st_blocks * 512 >> 20,
                os.path.getsize(os.path.join(snap, "state")))
        else:
            detail += ", exit status %s, files missing: %s" % (status, vm.stderr_tail())
        report(ok, "snapshot on SIGUSR2 (exit 0, memory and state written)", detail)
        return ok
    except (TimeoutError, EOFError) as e:
        report(False, "boot to READY", "%s; %s" % (e, vm.stderr_tail()))
        return False
    finally:
        vm.close()


def restore_and_run(snap, name, language, code, expect_out, log="/tmp/restore.log"):
    """Restore, PING -> READY, RUN; checks output, exit code 0 and the VM's end."""
    vm = Vm(restore_args(snap) + ["--serial-log", log + ".serial"], log)
    stage = "PING"
    try:
        vm.chan.send(FRAME_PING)
        kind, _ = vm.chan.recv(30)
        ready = time.monotonic() - vm.started
        if kind != FRAME_READY:
            report(False, name, "PING answered with frame %d" % kind)
            return None
        stage = "RUN"
        out, err, code_, error = run_program(vm.chan, language, code)
        stage = "the VM's end"
        status = vm.wait(60)
        ok = (error == "" and code_ == 0 and status == 0 and
              (expect_out is None or out == expect_out))
        detail = "READY %.2f s after spawn, stdout %r, exit %s, VM status %s" % (
            ready, out[:60], code_, status)
        if not ok:
            detail += ", stderr %r, error %r, vmm: %s" % (err[-200:], error, vm.stderr_tail())
        report(ok, name, detail)
        return out if ok else None
    except (TimeoutError, EOFError, OSError) as e:
        serial = ""
        if os.path.exists(log + ".serial"):
            with open(log + ".serial", "rb") as f:
                serial = f.read()[-300:].decode(errors="replace").replace("\n", " | ")
        report(False, name, "%s waiting for %s; vmm: %s; guest console: %s"
               % (e, stage, vm.stderr_tail(), serial))
        return None
    finally:
        vm.close()


def snapshot_of_restored(snap, again):
    """A restored VM snapshotted again (SIGUSR2 after its READY): how a hung VM's state is
    kept for a look (restore_stress.py). The second snapshot must restore and run too."""
    shutil.rmtree(again, ignore_errors=True)
    vm = Vm(restore_args(snap) + ["--snapshot-to", again], "/tmp/resnapshot.log")
    try:
        vm.chan.send(FRAME_PING)
        kind, _ = vm.chan.recv(30)
        vm.proc.send_signal(signal.SIGUSR2)
        status = vm.wait(60)
        ok = kind == FRAME_READY and status == 0 and os.path.isfile(os.path.join(again, "state"))
        report(ok, "snapshot of a restored VM written", "READY %s, exit %s, %s" % (
            kind == FRAME_READY, status, vm.stderr_tail()))
        return ok
    except (TimeoutError, EOFError, OSError) as e:
        report(False, "snapshot of a restored VM written", "%s; %s" % (e, vm.stderr_tail()))
        return False
    finally:
        vm.close()


def forbidden_syscall_kills(snap):
    """airlock-vmm's seccomp filter is on once the VM is set up: --seccomp-selftest then makes
    a syscall outside it (socket), which must end the process with SIGSYS."""
    vm = Vm(restore_args(snap) + ["--seccomp-selftest"], "/tmp/seccomp.log")
    try:
        status = vm.wait(30)
        report(status == -signal.SIGSYS, "seccomp: a forbidden syscall kills airlock-vmm (SIGSYS)",
               "status %s, stderr: %s" % (status, vm.stderr_tail()))
    finally:
        vm.close()


def vm_below(supervisor):
    with open("/proc/%d/task/%d/children" % (supervisor, supervisor)) as f:
        children = [int(c) for c in f.read().split()]
    return children[0] if len(children) == 1 else None


def gone(pid, within):
    """Whether pid is gone (or a zombie) within that many seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.02)
    return False


def the_vm_ends_with_its_supervisor(snap):
    """The supervisor outside the VM's pid namespace (vmm/jail_supervisor.c) turns SIGTERM into
    the VM's end and ends as it did; and a supervisor killed outright takes the VM with it."""
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGKILL, "SIGKILL")):
        vm = Vm(restore_args(snap), "/tmp/supervisor.log")
        try:
            vm.chan.send(FRAME_PING)
            kind, _ = vm.chan.recv(30)
            child = vm_below(vm.proc.pid)
            vm.proc.send_signal(sig)
            status = vm.wait(10)
            ok = kind == FRAME_READY and child is not None and gone(child, 5)
            report(ok and status == -signal.SIGKILL,
                   "jail: %s to the supervisor ends the VM, and the supervisor as killed" % name,
                   "READY %s, the VM %s, supervisor status %s" % (
                       kind == FRAME_READY, child, status))
        except (TimeoutError, EOFError, OSError) as e:
            report(False, "jail: %s to the supervisor ends the VM" % name,
                   "%s; %s" % (e, vm.stderr_tail()))
        finally:
            vm.close()


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def jail_in_place(snap):
    """A restored VM, once READY, runs jailed (vmm/jail.c): pid 1 of its own pid namespace under
    a confined supervisor (vmm/jail_supervisor.c), both the --run-as user outside (identity_test.py
    shows what that keeps out), its own user, mount, net, ipc, uts and cgroup namespaces, an
    empty root, no capabilities, no_new_privs, under its seccomp filter, with no core dumps and
    few fds; and it still runs a program."""
    vm = Vm(restore_args(snap) + ["--run-as", "%d:%d" % RUN_AS], "/tmp/jail.log")
    try:
        vm.chan.send(FRAME_PING)
        kind, _ = vm.chan.recv(30)
        supervisor = vm.proc.pid
        with open("/proc/%d/task/%d/children" % (supervisor, supervisor)) as f:
            children = [int(c) for c in f.read().split()]
        pid = vm_below(supervisor) or supervisor
        status, outer = proc_status(pid), proc_status(supervisor)
        report(len(children) == 1 and status.get("NSpid", "").split()[1:] == ["1"] and
               os.readlink("/proc/%d/ns/pid" % pid) != os.readlink("/proc/self/ns/pid"),
               "jail: the VM is pid 1 of a pid namespace of its own, under a supervisor",
               "supervisor's children %s, the VM's NSpid %r" % (children, status.get("NSpid")))
        report(outer.get("Uid", "").split() == [str(RUN_AS[0])] * 4 and
               outer.get("Gid", "").split() == [str(RUN_AS[1])] * 4 and
               outer.get("CapEff") == "0000000000000000" and
               outer.get("CapBnd") == "0000000000000000" and outer.get("NoNewPrivs") == "1" and
               len(os.listdir("/proc/%d/fd" % supervisor)) == 2 and
               "2" in os.listdir("/proc/%d/fd" % supervisor),
               "jail: the supervisor runs as the --run-as user, with no capability, no_new_privs, "
               "and holds "
               "no fd but stderr and the VM's lifeline",
               "Uid %s CapEff %s CapBnd %s NoNewPrivs %s fds %s" % (
                   outer.get("Uid"), outer.get("CapEff"), outer.get("CapBnd"),
                   outer.get("NoNewPrivs"), sorted(os.listdir("/proc/%d/fd" % supervisor))))
        uids, gids = status.get("Uid", "").split(), status.get("Gid", "").split()
        report(kind == FRAME_READY and uids == [str(RUN_AS[0])] * 4 and
               gids == [str(RUN_AS[1])] * 4,
               "jail: the restored VM runs as the --run-as user outside",
               "Uid %s Gid %s" % (uids, gids))
        report(status.get("CapEff") == "0000000000000000" and
               status.get("CapBnd") == "0000000000000000",
               "jail: no capabilities (effective, bounding)",
               "CapEff %s CapBnd %s" % (status.get("CapEff"), status.get("CapBnd")))
        report(status.get("NoNewPrivs") == "1" and status.get("Seccomp") == "2",
               "jail: no_new_privs and the seccomp filter",
               "NoNewPrivs %s Seccomp %s" % (status.get("NoNewPrivs"), status.get("Seccomp")))
        own = {n: os.readlink("/proc/self/ns/" + n) for n in
               ("user", "mnt", "net", "ipc", "uts", "cgroup")}
        theirs = {n: os.readlink("/proc/%d/ns/%s" % (pid, n)) for n in own}
        same = [n for n in own if own[n] == theirs[n]]
        report(not same, "jail: its own user, mount, net, ipc, uts and cgroup namespaces",
               "shared with the host: %s" % (", ".join(same) or "none"))
        try:
            root = os.listdir("/proc/%d/root/" % pid)
        except OSError as e:
            root = ["(cannot list: %s)" % e]
        report(root == [], "jail: its root is empty", "root holds %s" % root)
        with open("/proc/%d/limits" % pid) as f:
            limits = f.read()
        report(re.search(r"Max core file size\s+0\s+0", limits) is not None and
               re.search(r"Max open files\s+64\s+64", limits) is not None,
               "jail: no core dumps, at most 64 fds", "")
        out, _, code, error = run_program(vm.chan, LANG_PYTHON, "print('jailed')")
        report(out == b"jailed\n" and code == 0, "jail: the jailed VM runs a program",
               "stdout %r, exit %s %s" % (out, code, error))
    except (TimeoutError, EOFError, OSError) as e:
        report(False, "jail: a restored VM answers", "%s; %s" % (e, vm.stderr_tail()))
    finally:
        vm.close()


def expect_refused(name, snap_dir):
    vm = Vm(restore_args(snap_dir), "/tmp/refused.log")
    try:
        status = vm.wait(30)
        msg = vm.stderr_tail()
        report(status == EXIT_REFUSED and "refused" in msg, name,
               "exit %s, stderr: %s" % (status, msg))
    finally:
        vm.close()


def damaged_copy(snap, name, state_edit=None, memory_size_delta=0):
    """A copy of the snapshot with its state edited or a memory file of another size (the
    memory is a symlink to the original when its size is kept)."""
    bad = "/tmp/snap-" + name
    shutil.rmtree(bad, ignore_errors=True)
    os.makedirs(bad)
    with open(os.path.join(snap, "state"), "rb") as f:
        state = bytearray(f.read())
    if state_edit:
        state = state_edit(state)
    with open(os.path.join(bad, "state"), "wb") as f:
        f.write(state)
    mem = os.path.join(snap, "memory")
    if memory_size_delta:
        with open(os.path.join(bad, "memory"), "wb") as f:
            f.truncate(os.path.getsize(mem) + memory_size_delta)
    else:
        os.symlink(mem, os.path.join(bad, "memory"))
    return bad


def flip(offset):
    def edit(state):
        state[offset % len(state)] ^= 0x5a
        return state
    return edit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--restores", type=int, default=20)
    ap.add_argument("--qemu-dir", default="qemu")
    ap.add_argument("--measure", type=int, default=10, help="restores timed per VMM (0: none)")
    args = ap.parse_args()
    snap = "/tmp/airlock-snapshot"

    if make_snapshot(snap):
        for i in range(args.restores):
            restore_and_run(snap, "restore %d/%d: PING, python sleep 0.1 + print, EXIT 0"
                            % (i + 1, args.restores), LANG_PYTHON,
                            "import time; time.sleep(0.1); print('ok')", b"ok\n")
        restore_and_run(snap, "restore: bash run", LANG_BASH,
                        "echo hi from $0; sleep 0.1; echo done", None)
        # the MP table (vmm/mptable.c): without it the tick is the PIT's, through the 8259
        restore_and_run(snap, "restore: the guest ticks on its LAPIC, its devices interrupt "
                        "through the IOAPIC (the MP table)", LANG_PYTHON,
                        "print(open('/sys/devices/system/clockevents/clockevent0/"
                        "current_device').read().strip(), 'IO-APIC' in open('/proc/interrupts')"
                        ".read())", b"lapic-deadline True\n")
        probe = ("import os, random, time; print(os.urandom(16).hex(), random.random(), "
                 "time.time())")
        a = restore_and_run(snap, "restore: uniqueness probe 1", LANG_PYTHON, probe, None)
        b = restore_and_run(snap, "restore: uniqueness probe 2", LANG_PYTHON, probe, None)
        if a and b:
            (ua, ra, ta), (ub, rb, tb) = a.split(), b.split()
            report(ua != ub and ra != rb, "two restores: different os.urandom and random",
                   "%s %s / %s %s" % (ua[:8], ra, ub[:8], rb))
            report(abs(float(tb) - time.time()) < 5, "restored guest wall clock is the host's",
                   "guest %.1f, host %.1f" % (float(tb), time.time()))

        again = "/tmp/airlock-snapshot-again"
        if snapshot_of_restored(snap, again):
            restore_and_run(again, "restore of that second snapshot: python run", LANG_PYTHON,
                            "print('again')", b"again\n")

        forbidden_syscall_kills(snap)
        jail_in_place(snap)
        the_vm_ends_with_its_supervisor(snap)

        expect_refused("corrupt state (a flipped byte) refused with 3",
                       damaged_copy(snap, "corrupt", flip(200)))
        expect_refused("truncated state refused with 3",
                       damaged_copy(snap, "truncated", lambda s: s[:len(s) // 2]))
        expect_refused("bad magic refused with 3", damaged_copy(snap, "magic", flip(0)))
        expect_refused("memory file of another size refused with 3",
                       damaged_copy(snap, "memsize", memory_size_delta=-4096))
        expect_refused("missing snapshot refused with 3", "/tmp/snap-does-not-exist")
        # another build: same file with the build id changed and the checksum made right again
        def other_build(s):
            s[32] ^= 0xff
            import kvm_restore  # noqa: E402 (the checksum lives with the format tools)
            return kvm_restore.reseal(s)
        expect_refused("snapshot from another airlock-vmm build refused with 3",
                       damaged_copy(snap, "build", other_build))

        if args.measure:
            import kvm_restore
            kvm_restore.measure(snap, args.measure, args.qemu_dir, report)

    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
