"""A small test harness for airlock's VM tests: standard library only.

Tests are plain functions registered with @test; each gets a fresh look at the world through the
helpers here. The runner prints one PASS/FAIL line per test and ends with "N passed, N failed".
"""
import json
import os
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")  # the agent and the guest fixtures come from here
# The airlock binary under test: build/ by default; the sanitizer build's with AIRLOCK_BUILD.
AIRLOCK = os.path.join(os.environ.get("AIRLOCK_BUILD", BUILD), "mcp", "airlock")
os.environ.setdefault("AIRLOCK_AGENT", os.path.join(BUILD, "agent", "airlock-agent"))

_tests = []


def test(fn):
    _tests.append(fn)
    return fn


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


def expect(cond, what, ctx=None):
    if not cond:
        raise AssertionError(what + ("\n%r" % (ctx,) if ctx is not None else ""))


def vm_processes():
    """VM processes (QEMU or airlock-vmm) currently alive."""
    out = subprocess.run(["pgrep", "-a", "-f", "qemu-system-x86_64|airlock-vmm"],
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def main():
    if sys.argv[1:] == ["--list"]:
        print("\n".join(fn.__name__ for fn in _tests))
        return 0
    only = sys.argv[1:]
    passed = failed = 0
    before = set(vm_processes())
    for fn in _tests:
        if only and fn.__name__ not in only:
            continue
        started = time.monotonic()
        try:
            fn()
            passed += 1
            print("PASS %s (%.1fs)" % (fn.__name__, time.monotonic() - started), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (fn.__name__, time.monotonic() - started), flush=True)
            traceback.print_exc(file=sys.stdout)
    # The whole suite must leave no VM behind.
    time.sleep(0.2)
    leaked = [p for p in vm_processes() if p not in before]
    if leaked:
        failed += 1
        print("FAIL no_vm_process_outlives_the_suite: %s" % leaked)
    else:
        passed += 1
        print("PASS no_vm_process_outlives_the_suite")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
