#!/usr/bin/env python3
"""Who airlock-vmm is outside, proven inside the KVM test host (python3 stdlib only).

Started as root with --run-as UID:GID, the VM and its supervisor run as that uid and gid, in a
user namespace that root owns, never dumpable; so a process running as nobody, or as any other
unrelated uid, cannot PTRACE_ATTACH them, read their memory (process_vm_readv) or signal them
(kill(pid, 0) gets EPERM): not once they run, nor at any moment while they start (attackers
spin from before the spawn until the VM answers). Started as root without --run-as (by hand)
it is nobody, and still never dumpable. And it holds no fd it was not given (close_range at
its start): a canary fd passed beside the channel must not survive.

Each attacker also proves it could do all this to a process of its own (a control: an attack
that cannot work anywhere proves nothing), and Yama's ptrace_scope is set to 0 for the run so
that only airlock-vmm's own protection is measured.

Run from the host:
    KVMHOST_EXTRA=test/kvmhost/snapshot_test.py:test/kvmhost/identity_test.py \\
        bash test/kvmhost/suite.sh identity_test.py [--vmm PATH]
One PASS/FAIL line per check, then "N passed, N failed".
"""
import argparse
import ctypes
import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import snapshot_test as st  # noqa: E402

RUN_AS = (42001, 42002)    # the VM's own user and group, as airlock would allocate them
NOBODY = (65534, 65534)
UNRELATED = (42999, 42999)  # another uid of the host, unrelated to the VM
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
NS_GET_OWNER_UID = 0xB704
WALL = 0x40000000

results = []


def report(ok, name, detail=""):
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""),
          flush=True)


# ---- the attacker: a separate process that becomes another user, then tries everything ----

class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def attacks(libc, pid):
    """Returns {"kill": ..., "ptrace": ..., "readv": ...}: "ok" where the attack worked, else
    the errno's name."""
    out = {}
    try:
        os.kill(pid, 0)
        out["kill"] = "ok"
    except OSError as e:
        out["kill"] = e.__class__.__name__ if e.errno is None else os.strerror(e.errno)
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0:
        out["ptrace"] = "ok"
        try:
            os.waitpid(pid, WALL)
        except OSError:
            pass
        libc.ptrace(PTRACE_DETACH, pid, None, None)
    else:
        out["ptrace"] = os.strerror(ctypes.get_errno())
    buf = ctypes.create_string_buffer(64)
    local = Iovec(ctypes.cast(buf, ctypes.c_void_p), 64)
    remote = Iovec(0x1000, 64)  # any address: EFAULT would mean the access itself was allowed
    n = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    out["readv"] = "ok" if n >= 0 or ctypes.get_errno() == 14 else os.strerror(ctypes.get_errno())
    return out


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def attacker(uid, gid):
    """Becomes uid:gid, proves the attacks work on a process of its own, then reads the
    supervisor's pid from stdin and attacks it and the VM below it until stdin closes. Prints
    one JSON line: what worked, how often, and /proc owners that showed a dumpable process."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong,
                                      ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    own = subprocess.Popen(["sleep", "60"])
    control = attacks(libc, own.pid)
    own.kill()
    own.wait()
    print("ready", flush=True)
    supervisor = int(sys.stdin.readline())
    worked, tries, dumpable = {}, 0, []
    started = time.monotonic()
    while True:
        for pid in [supervisor] + children(supervisor):
            try:
                owner = os.stat("/proc/%d/status" % pid).st_uid
                if owner != 0:  # /proc gives a process's files to root while it is undumpable
                    dumpable.append([round(time.monotonic() - started, 4), pid, owner])
            except OSError:
                continue
            for kind, res in attacks(libc, pid).items():
                if res == "ok":  # when (s after the spawn): the first few, and how often
                    w = worked.setdefault(kind, {"count": 0, "first": []})
                    w["count"] += 1
                    if len(w["first"]) < 3:
                        w["first"].append(round(time.monotonic() - started, 4))
            tries += 1
        if select.select([sys.stdin], [], [], 0)[0]:
            break
    print(json.dumps({"uid": uid, "control": control, "tries": tries, "worked": worked,
                      "dumpable": dumpable[:10], "dumpable_count": len(dumpable)}), flush=True)


class Attacker:
    def __init__(self, ids):
        self.ids = ids
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--attack",
                                      str(ids[0]), str(ids[1])], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.proc.stdout.readline()  # "ready": its control is done, it waits for a pid

    def aim(self, pid):
        self.proc.stdin.write("%d\n" % pid)
        self.proc.stdin.flush()

    def result(self):
        self.proc.stdin.write("stop\n")
        self.proc.stdin.close()
        line = self.proc.stdout.readline()
        self.proc.wait()
        return json.loads(line) if line else {"error": "the attacker died"}


# ---- the checks ----

def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def userns_owner(pid):
    fd = os.open("/proc/%d/ns/user" % pid, os.O_RDONLY)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, NS_GET_OWNER_UID, buf)
        return struct.unpack("I", buf)[0]
    finally:
        os.close(fd)


def fds_to(pid, target):
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                out.append(int(fd))
        except OSError:
            pass
    return out


def start_vm(vmm, extra, canary_fd, log):
    host, guest = socket.socketpair()
    args = [vmm, "--kernel", st.KERNEL, "--rootfs", st.ROOTFS, "--memory-mb", str(st.MEMORY_MB),
            "--channel-fd", str(guest.fileno())] + extra
    logf = open(log, "wb")
    proc = subprocess.Popen(args, pass_fds=[guest.fileno(), canary_fd],
                            stdout=subprocess.DEVNULL, stderr=logf)
    guest.close()
    return proc, st.Channel(host), logf


def tail(log):
    with open(log, "rb") as f:
        return f.read()[-300:].decode(errors="replace").strip().replace("\n", " | ")


def one_vm(vmm, name, extra, expect_ids, attackers_ids, strict_signals):
    """Starts a VM (boot) with attackers spinning from before its start until it has run a
    program; checks its identity, its fds, and what the attackers achieved."""
    canary = "/tmp/identity-canary"
    canary_fd = os.open(canary, os.O_RDWR | os.O_CREAT, 0o600)
    attackers = [Attacker(ids) for ids in attackers_ids]
    log = "/tmp/identity-%s.log" % name
    proc, chan, logf = start_vm(vmm, extra, canary_fd, log)
    os.close(canary_fd)
    for a in attackers:
        a.aim(proc.pid)
    try:
        kind, _ = chan.recv(120)
        vm = (children(proc.pid) or [None])[0]
        if kind != st.FRAME_READY or vm is None:
            report(False, "%s: the VM boots to READY" % name, "frame %d, VM %s" % (kind, vm))
            return
        sup_status, vm_status = proc_status(proc.pid), proc_status(vm)
        want_uid, want_gid = ["%d" % expect_ids[0]] * 4, ["%d" % expect_ids[1]] * 4
        report(sup_status["Uid"].split() == want_uid and sup_status["Gid"].split() == want_gid and
               vm_status["Uid"].split() == want_uid and vm_status["Gid"].split() == want_gid,
               "%s: supervisor and VM run as %d:%d outside" % (name, expect_ids[0], expect_ids[1]),
               "supervisor Uid %s Gid %s, VM Uid %s Gid %s" % (
                   sup_status["Uid"], sup_status["Gid"], vm_status["Uid"], vm_status["Gid"]))
        owner = userns_owner(vm)
        report(owner == 0, "%s: the VM's user namespace is root's, not the VM user's" % name,
               "owner uid %d" % owner)
        leaked = {"supervisor": fds_to(proc.pid, canary), "VM": fds_to(vm, canary)}
        report(not leaked["supervisor"] and not leaked["VM"],
               "%s: an fd passed beside the channel is closed at start" % name,
               "canary held: %s" % leaked)
        out, _, code, error = st.run_program(chan, st.LANG_PYTHON, "print('ok')")
        report(out == b"ok\n" and code == 0, "%s: the VM runs a program" % name,
               "stdout %r exit %s %s" % (out, code, error))
    except (TimeoutError, EOFError, OSError) as e:
        report(False, "%s: the VM answers" % name, "%s; vmm: %s" % (e, tail(log)))
    finally:
        res = [a.result() for a in attackers]
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        chan.sock.close()
        logf.close()
    for r in res:
        who = "uid %s" % r.get("uid")
        control = r.get("control", {})
        report(control == {"kill": "ok", "ptrace": "ok", "readv": "ok"},
               "%s: control: %s can attack a process of its own" % (name, who), str(control))
        worked = r.get("worked", {})
        if not strict_signals:
            worked.pop("kill", None)  # nobody signals nobody: why airlock gives each VM a user
        report(r.get("tries", 0) > 0 and not worked,
               "%s: %s never attaches to, reads or %s the supervisor or the VM, from before "
               "its start on" % (name, who, "signals" if strict_signals else "(nobody mode) "
                                 "traces"),
               "%d tries; worked: %s" % (r.get("tries", 0), worked or "never"))
        report(r.get("dumpable_count", 1) == 0,
               "%s: never dumpable while %s watched (/proc/PID/status owned by root)" % (name, who),
               "%d samples owned by another uid, first %s" % (r.get("dumpable_count", -1),
                                                             r.get("dumpable")))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--attack":
        attacker(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmm", default=st.VMM)
    args = ap.parse_args()
    scope = "/proc/sys/kernel/yama/ptrace_scope"
    if os.path.exists(scope):
        with open(scope, "w") as f:  # measure airlock-vmm's protection, not Yama's
            f.write("0")
    print("vmm: %s" % args.vmm, flush=True)
    one_vm(args.vmm, "--run-as", ["--run-as", "%d:%d" % RUN_AS], RUN_AS, [NOBODY, UNRELATED],
           strict_signals=True)
    one_vm(args.vmm, "root, no --run-as", [], NOBODY, [NOBODY], strict_signals=False)
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
