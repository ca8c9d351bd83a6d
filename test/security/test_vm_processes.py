#!/usr/bin/env python3
"""What a VM's host processes (airlock-vmm's supervisor and VM on kvm; setpriv, bubblewrap and
QEMU on tcg) hold and who may reach them, whatever the guest did to them:

- none of airlock's environment and none of its inherited fds;
- started by root, a uid of their own: no other process (nobody's included) may trace them,
  read their memory or signal them;
- a QEMU taken over (test/guests/qemu_attack.c, preloaded in it) can change none of the image
  cache's files, whether airlock runs as root or as the user who owns the cache.

VMs run on $AIRLOCK_TEST_BACKEND (default tcg); the QEMU cases are tcg's own.
"""
import ctypes
import errno
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import AIRLOCK, BUILD, airlock, expect, main, test  # noqa: E402
from mcp_session import BACKEND, LANGUAGES, Server, wait_for_pool  # noqa: E402

VM_UID_BASE = 0x7A1C0000  # mcp/confine/confine.h
VM_UID_COUNT = 65536
OTHER_UID = 4243  # a user of no account here


def descendants(pid):
    """pid and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [int(pid)]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def vm_tree(server):
    """Every process of the server's VMs (not the server itself), and the VMs' top pids."""
    tops = [int(p) for p in server.vms()]
    return tops, [p for top in tops for p in descendants(top)]


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(l for l in f if l.startswith("Uid:")).split()[1])


@test
def vm_processes_get_none_of_airlocks_environment_or_fds():
    marker = "airlock-marker-%d" % os.getpid()
    with tempfile.NamedTemporaryFile(prefix="airlock-marker-fd-") as held:
        fd = os.open(held.name, os.O_RDONLY)  # inheritable: as an MCP host might leave one
        try:
            s = Server("--pool", "1", env=dict(os.environ, AIRLOCK_TEST_SECRET=marker),
                       pass_fds=(fd,))
            try:
                wait_for_pool(s, len(LANGUAGES))
                time.sleep(1)  # the pool's VMs are up, wrappers and all
                with open("/proc/%d/environ" % s.proc.pid, "rb") as f:
                    expect(marker.encode() in f.read(), "the server has the marker itself")
                expect(os.path.exists("/proc/%d/fd/%d" % (s.proc.pid, fd)),
                       "the server holds the fd itself")
                _, procs = vm_tree(s)
                expect(len(procs) >= 3, "VM processes found", procs)
                for p in procs:
                    try:
                        with open("/proc/%d/environ" % p, "rb") as f:
                            env = f.read().split(b"\0")
                        links = [os.readlink("/proc/%d/fd/%s" % (p, n))
                                 for n in os.listdir("/proc/%d/fd" % p)]
                    except (FileNotFoundError, ProcessLookupError):
                        continue  # ended meanwhile (a wrapper that exec'd or exited)
                    expect(not any(marker.encode() in v for v in env),
                           "no marker in the environment of %d" % p, env)
                    expect(held.name not in links, "no inherited fd in %d" % p, links)
                    names = sorted(v.split(b"=", 1)[0].decode() for v in env if b"=" in v)
                    allowed = {"PATH", "LD_PRELOAD", "AIRLOCK_READONLY_RAM", "PWD",
                               "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"}
                    expect(set(names) <= allowed, "a minimal environment in %d" % p, names)
            finally:
                s.close()
        finally:
            os.close(fd)


def try_as(uid, pids):
    """In a child running as uid: for each pid, whether PTRACE_ATTACH, process_vm_readv and
    kill(pid, 0) got through. Returns {pid: [what got through]}."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p,
                                    ctypes.c_void_p]

            class iovec(ctypes.Structure):
                _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
            buf = ctypes.create_string_buffer(64)
            results = []
            for pid in pids:
                through = []
                if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
                    through.append("ptrace")
                    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
                # the access check comes first: EPERM whatever the address; anything else
                # (data, or EFAULT for an address not mapped) means it got past it
                local = iovec(ctypes.cast(buf, ctypes.c_void_p), 64)
                remote = iovec(0x400000, 64)
                ctypes.set_errno(0)
                if (libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1,
                                          0) >= 0 or
                        ctypes.get_errno() not in (errno.EPERM, errno.ESRCH)):
                    through.append("process_vm_readv")
                try:
                    os.kill(pid, 0)
                    through.append("signal")
                except PermissionError:
                    pass
                except ProcessLookupError:
                    pass
                results.append("%d:%s" % (pid, ",".join(through)))
            os.write(w, " ".join(results).encode())
        except BaseException as e:  # said, not swallowed: the caller then finds no result
            os.write(2, ("try_as: %r\n" % e).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        out += chunk
    os.close(r)
    os.waitpid(child, 0)
    return {int(k): [x for x in v.split(",") if x]
            for k, v in (item.split(":") for item in out.decode().split())}


@test
def no_other_process_may_trace_read_or_signal_a_vm():
    expect(os.geteuid() == 0, "run as root: the VMs' own identity is root's deployment")
    s = Server("--pool", "1")
    try:
        wait_for_pool(s, len(LANGUAGES))
        time.sleep(1)
        tops, procs = vm_tree(s)
        procs = [p for p in procs if os.path.exists("/proc/%d" % p)]
        uids = {p: uid_of(p) for p in procs}
        for who in (65534, OTHER_UID):
            # the probes work: a process of who's own is reached
            control = subprocess.Popen(["setpriv", "--reuid=%d" % who, "--regid=%d" % who,
                                        "--clear-groups", "sleep", "60"])
            try:
                time.sleep(0.2)
                through = try_as(who, [control.pid] + [p for p in procs if uids.get(p) != 0])
            finally:
                control.kill()
                control.wait()
            expect("signal" in through.get(control.pid, []),
                   "uid %d reaches a process of its own" % who, through)
            got = {p: t for p, t in through.items() if t and p != control.pid}
            expect(len(through) > 1 and not got, "uid %d reaches no VM process" % who, got)
        # how: a uid of the VM's own, from airlock's range (confine.h)
        for top in tops:
            tree = descendants(top)
            own = {uids[p] for p in tree if p in uids and uids[p] != 0}
            expect(len(own) == 1, "one uid for the VM's processes", (top, own))
            uid = own.pop()
            expect(VM_UID_BASE <= uid < VM_UID_BASE + VM_UID_COUNT,
                   "a uid from airlock's range, not nobody", uid)
            others = [int(e) for e in os.listdir("/proc") if e.isdigit() and
                      int(e) not in tree and os.path.exists("/proc/" + e) and
                      _safe_uid(int(e)) == uid]
            expect(not others, "no process outside the VM runs as its uid", others)
    finally:
        s.close()


def _safe_uid(pid):
    try:
        return uid_of(pid)
    except (OSError, StopIteration):
        return None


def image_copy(owner=0):
    """A private copy of the image cache's kernel, root disk and bash snapshot, owned by owner:
    what a QEMU taken over would attack, so that the real cache is never at stake. Returns the
    copy's directory."""
    listing = airlock("image", "list").stdout.decode()
    image_dir = re.search(r"image directory: (.*)", listing).group(1)
    keep = re.findall(r"^(kernel-[0-9a-f]+|rootfs-[0-9a-f]+|snapshot-bash-%s-[0-9a-f]+)\s.*current$"
                      % BACKEND, listing, re.M)
    expect(len(keep) == 3, "a kernel, a root disk and a bash snapshot to copy", listing)
    tmp = tempfile.mkdtemp(prefix="airlock-attack-images-")
    for name in keep:
        subprocess.run(["cp", "-r", "--sparse=always", os.path.join(image_dir, name), tmp],
                       check=True)
    for root, dirs, files in os.walk(tmp):
        for n in dirs + files + ["."]:
            os.chown(os.path.join(root, n), owner, owner)
    os.chmod(tmp, 0o755)
    snap = [n for n in keep if n.startswith("snapshot-")][0]
    # the manifest keeps the memory file's change time (a written snapshot is refused): the
    # copy's own
    manifest = os.path.join(tmp, snap, "manifest")
    ctime_ns = os.stat(os.path.join(tmp, snap, "memory")).st_ctime_ns
    with open(manifest) as f:
        text = re.sub(r"memory_ctime_ns \d+", "memory_ctime_ns %d" % ctime_ns, f.read())
    with open(manifest, "w") as f:
        f.write(text)
    return tmp


def fingerprint(tree):
    """Every file's size, mode, owner, times and content hash."""
    out = {}
    for root, _, files in os.walk(tree):
        for n in files:
            path = os.path.join(root, n)
            st = os.stat(path)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[path] = (st.st_size, st.st_mode, st.st_uid, st.st_mtime_ns, st.st_ctime_ns,
                         h.hexdigest())
    return out


def attack_from_qemu(owner):
    images = image_copy(owner)
    try:
        before = fingerprint(images)
        cmd = [AIRLOCK, "run", "--backend=tcg", "--images", images, "--lang", "bash",
               "--verbose", "echo still-works"]
        if owner:
            cmd = ["setpriv", "--reuid=%d" % owner, "--regid=%d" % owner, "--clear-groups",
                   "--"] + cmd
        env = dict(os.environ, AIRLOCK_QEMU_PRELOAD=os.path.join(
            BUILD, "test", "guests", "airlock-qemu-attack.so"), TMPDIR="/tmp")
        r = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
        err = r.stderr.decode(errors="replace")
        summary = re.search(r"qemu-attack: (\d+) attempts, (\d+) got through", err)
        expect(summary and int(summary.group(1)) >= 20,
               "the attack ran inside QEMU, on its files", err[-3000:])
        after = fingerprint(images)
        changed = [p for p in before if before[p] != after.get(p)]
        wrote = re.findall(r"qemu-attack: WROTE .*", err)
        expect(not changed, "nothing in the image cache changed", (changed, wrote))
        expect(not wrote, "no write got through", wrote)
        expect(b"still-works" in r.stdout and r.returncode == 0,
               "the VM ran, restored from the snapshot", err[-3000:])
        expect("restored from the snapshot" in err, "restored, not booted", err[-3000:])
    finally:
        shutil.rmtree(images)


@test
def a_qemu_taken_over_cannot_write_the_images_as_root():
    expect(BACKEND == "tcg", "QEMU is tcg's (test/suites.py runs this on tcg only)")
    attack_from_qemu(0)


@test
def a_qemu_taken_over_cannot_write_the_images_of_the_user_it_runs_as():
    expect(BACKEND == "tcg", "QEMU is tcg's (test/suites.py runs this on tcg only)")
    attack_from_qemu(OTHER_UID)


if __name__ == "__main__":
    sys.exit(main())
