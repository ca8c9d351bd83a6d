"""A small test harness for airlock's VM tests: standard library only.

Tests are plain functions registered with @test (or @test(timeout=SECONDS)); each gets a fresh
look at the world through the helpers here. A file run as a script:

    FILE --list                         the names of its tests, one a line
    FILE [--timeout S] [NAME...]        those tests (all by default); an unknown NAME is an error

prints "# run NAME" as each test starts, then one PASS/FAIL line for it, then the check that no VM
process outlived the file, and ends with "N passed, N failed". Each test has a deadline (its own
timeout, else --timeout, else $AIRLOCK_TEST_TIMEOUT or 240 s, times $AIRLOCK_TEST_TIMEOUT_SCALE):
past it the test is interrupted and fails. test/runner.py runs these files (docs/testing.md).
"""
import argparse
import errno
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")  # the agent and the guest fixtures come from here
# The airlock binary under test: build/ by default; the sanitizer build's with AIRLOCK_BUILD.
AIRLOCK = os.path.join(os.environ.get("AIRLOCK_BUILD", BUILD), "mcp", "airlock")
os.environ.setdefault("AIRLOCK_AGENT", os.path.join(BUILD, "agent", "airlock-agent"))

_tests = []
SUITE_CHECK = "no_vm_process_outlives_the_suite"


def test(fn=None, *, timeout=None):
    """Registers a test: @test, or @test(timeout=SECONDS) for one that needs longer."""
    def register(f):
        f.test_timeout = timeout
        _tests.append(f)
        return f
    return register(fn) if fn is not None else register


class TestTimeout(BaseException):
    """Raised into a test at its deadline (a BaseException: `except Exception` in a test must not
    swallow it)."""


class Run:
    """What one `airlock run` did."""

    def __init__(self, proc, seconds):
        self.status = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.seconds = seconds

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self):
        return "exit %d after %.1fs\n--- stdout\n%s\n--- stderr\n%s" % (
            self.status, self.seconds, self.stdout[-2000:], self.stderr[-2000:])


# How much slower than this machine the tests run: 3 in the KVM test host, where everything is
# emulated (docs/testing.md). Tests that bound a duration multiply by it.
SLOWDOWN = float(os.environ.get("AIRLOCK_TEST_TIMEOUT_SCALE", 1))


def airlock(*args, stdin=b"", env=None, timeout=120):
    """Runs the airlock CLI; returns a Run with bytes stdout/stderr."""
    backend = os.environ.get("AIRLOCK_TEST_BACKEND", "tcg")
    full_env = dict(os.environ)
    full_env.update(env or {})
    cmd = [AIRLOCK] + list(args)
    if args and args[0] == "run" and not any(a.startswith("--backend") for a in args):
        cmd.insert(2, "--backend=" + backend)
    started = time.monotonic()
    proc = subprocess.run(cmd, input=stdin, capture_output=True, env=full_env, timeout=timeout)
    return Run(proc, time.monotonic() - started)


def run_code(code, *args, **kw):
    return airlock("run", *args, code, **kw)


def run_json(code, *args, **kw):
    r = airlock("run", "--json", *args, code, **kw)
    try:
        j = r.json()
    except ValueError:
        raise AssertionError("not JSON: %r" % r)
    if "error" in j:  # the sandbox failed: say how, not which key is missing
        raise AssertionError("sandbox error: %s" % j["error"])
    return r, j


def misbehaving_images(mode, extra_files=None):
    """An image directory whose kernel is the real one and whose root file system holds only a
    misbehaving /sbin/init (test/guests/misbehave.c, its mode in /misbehave), and extra_files
    ({name: bytes}) at /. The caller removes it (shutil.rmtree)."""
    listing = airlock("image", "list").stdout.decode()
    m = re.search(r"kernel-([0-9a-f]{16}) base-[0-9a-f]{16} rootfs-([0-9a-f]{16})", listing)
    image_dir = re.search(r"image directory: (.*)", listing).group(1)
    tmp = tempfile.mkdtemp(prefix="airlock-badguest-")
    os.symlink(os.path.join(image_dir, "kernel-" + m.group(1)),
               os.path.join(tmp, "kernel-" + m.group(1)))
    tree = os.path.join(tmp, "tree")
    for d in ("sbin", "dev", "proc"):
        os.makedirs(os.path.join(tree, d))
    shutil.copy(os.path.join(BUILD, "test", "guests", "misbehave"),
                os.path.join(tree, "sbin", "init"))
    with open(os.path.join(tree, "misbehave"), "w") as f:
        f.write(mode)
    for name, content in (extra_files or {}).items():
        with open(os.path.join(tree, name), "wb") as f:
            f.write(content)
    rootfs = os.path.join(tmp, "rootfs-" + m.group(2))
    os.makedirs(rootfs)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-d", tree,
                    os.path.join(rootfs, "rootfs.ext4"), "48M"], check=True,
                   stdout=subprocess.DEVNULL)
    return tmp


def expect(cond, what, ctx=None):
    if not cond:
        raise AssertionError(what + ("\n%r" % (ctx,) if ctx is not None else ""))


def vm_processes():
    """VM processes (QEMU or airlock-vmm) currently alive."""
    out = subprocess.run(["pgrep", "-a", "-f", "qemu-system-x86_64|airlock-vmm"],
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def wait_until_gone(pids, timeout):
    """Seconds until every process in pids has exited (pidfds: no polling, no pgrep), or None
    past timeout."""
    started = time.monotonic()
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(int(pid)))
        except ProcessLookupError:
            pass  # gone already
        except OSError as e:  # EINVAL: no thread group left to it, it is exiting
            if e.errno != errno.EINVAL:
                raise
    try:
        for fd in fds:
            left = started + timeout - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        return time.monotonic() - started
    finally:
        for fd in fds:
            os.close(fd)


def _select(names):
    """The tests named, in file order; an unknown name is an error, not a silent skip."""
    known = {fn.__name__: fn for fn in _tests}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit("harness: no such test in %s: %s (see --list)"
                         % (os.path.basename(sys.argv[0]), ", ".join(unknown)))
    chosen = [fn for fn in _tests if not names or fn.__name__ in names]
    if not chosen:
        raise SystemExit("harness: no test to run in %s" % os.path.basename(sys.argv[0]))
    return chosen


def _on_deadline(signum, frame):
    raise TestTimeout()


def _run_one(fn, default_timeout, scale):
    limit = (fn.test_timeout or default_timeout) * scale
    print("# run %s (deadline %.0f s)" % (fn.__name__, limit), flush=True)
    started = time.monotonic()
    signal.signal(signal.SIGALRM, _on_deadline)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        try:
            fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        print("PASS %s (%.1fs)" % (fn.__name__, time.monotonic() - started), flush=True)
        return True
    except TestTimeout:
        print("FAIL %s (%.1fs): timed out after %.0f s" % (fn.__name__,
              time.monotonic() - started, limit), flush=True)
        traceback.print_exc(file=sys.stdout)
    except Exception:
        print("FAIL %s (%.1fs)" % (fn.__name__, time.monotonic() - started), flush=True)
        traceback.print_exc(file=sys.stdout)
    sys.stdout.flush()
    return False


def _parent(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _is_vm(pid):
    """A VM program itself (QEMU, airlock-vmm, or the bubblewrap above QEMU), not any process
    whose command line names one (a shell script, a flock, an editor)."""
    try:
        with open("/proc/%s/comm" % pid) as f:
            return f.read().strip() in ("qemu-system-x86", "airlock-vmm", "bwrap")
    except OSError:
        return False


def _ours(pid):
    """A VM below this process, or an orphan (its server gone, it was reparented to init): not a
    VM that another airlock on the same machine runs right now."""
    parent = _parent(pid)
    if parent <= 1:
        return True
    while parent > 1:
        if parent == os.getpid():
            return True
        parent = _parent(parent)
    return False


def _leaked_vms(before, grace):
    """VM processes this file started and left alive after grace seconds (a server ends its
    VMs as it exits; give the kernel time to reap them, without sleeping when there are none)."""
    deadline = time.monotonic() + grace
    while True:
        leaked = [p for p in vm_processes() if p not in before and _is_vm(p.split()[0]) and
                  _ours(p.split()[0])]
        if not leaked or time.monotonic() >= deadline:
            return leaked
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description="Runs this file's tests (harness.py).")
    ap.add_argument("--list", action="store_true", help="print the test names and exit")
    ap.add_argument("--timeout", type=float,
                    default=float(os.environ.get("AIRLOCK_TEST_TIMEOUT", 240)),
                    help="seconds per test unless it names its own (default 240)")
    ap.add_argument("names", nargs="*", help="tests to run (default: all)")
    args = ap.parse_args()
    if args.list:
        if args.names:
            ap.error("--list takes no names")
        print("\n".join(fn.__name__ for fn in _tests))
        return 0 if _tests else 1
    chosen = _select(args.names)
    passed = failed = 0
    before = set(vm_processes())
    for fn in chosen:
        if _run_one(fn, args.timeout, SLOWDOWN):
            passed += 1
        else:
            failed += 1
    # The whole file must leave no VM behind.
    leaked = _leaked_vms(before, 2.0)
    if leaked:
        failed += 1
        print("FAIL %s: %s" % (SUITE_CHECK, leaked))
    else:
        passed += 1
        print("PASS %s" % SUITE_CHECK)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
