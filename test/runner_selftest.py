#!/usr/bin/env python3
"""The runner's rules for kvm tests in the KVM test host, against a fake test host that prints
scripted console output in a second (no VM, no QEMU): what is retried, on which evidence, what
fails at once, and fail-fast. test/runner.py runs this file as the suite `runner`.

    runner_selftest.py [--list] [NAME...]          (harness.py)
    runner_selftest.py --fake-host SCENARIO ARGS   (what the runner starts instead of suite.sh)
"""
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration"))
sys.path.insert(0, HERE)
from harness import expect, main, test  # noqa: E402

STALL = "[  123.456789] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [airlock-vmm:321]"


def fake_host(scenario_path, args):
    """Prints what one boot of the test host would, for the tests named in args (after the
    harness options), as the scenario's next boot says: {test: "pass" | "fail WHY" | "freeze"},
    and "kernel": a line the test host's kernel prints after the first test starts."""
    with open(scenario_path) as f:
        scenario = json.load(f)
    count_path = scenario_path + ".boots"
    boot = int(open(count_path).read()) if os.path.exists(count_path) else 0
    with open(count_path, "w") as f:
        f.write(str(boot + 1))
    spec = scenario["boots"][min(boot, len(scenario["boots"]) - 1)]
    names = [a for a in args if not a.startswith("-") and "=" not in a and not a.endswith(".py")
             and not a.isdigit()]

    def say(line):
        print(line, flush=True)
    say("kvmhost-init: modules: 15 loaded, 0 failed")
    say("kvmhost-init: starting command")
    say("kvm_keeper: heartbeat 1 (KVM_RUN 1 ms)")
    say("kvmhost-canary: ok: a fresh VM ran 100 port exits in 80 ms")
    passed = failed = 0
    for i, name in enumerate(names):
        say("# run %s (deadline 720 s)" % name)
        if i == 0 and spec.get("kernel"):
            say(spec["kernel"])
        outcome = spec.get(name, "pass")
        if outcome == "freeze":
            time.sleep(60)  # no heartbeat, no output: frozen
            return 1
        if outcome == "pass":
            say("PASS %s (0.1s)" % name)
            passed += 1
        else:
            say("FAIL %s (0.1s)" % name)
            say("Traceback (most recent call last):")
            say('  File "x.py", line 1, in %s' % name)
            say("AssertionError: %s" % outcome.split(" ", 1)[1])
            failed += 1
        say("kvm_keeper: heartbeat %d (KVM_RUN 1 ms)" % (i + 2))
    say("PASS no_vm_process_outlives_the_suite")
    say("%d passed, %d failed" % (passed + 1, failed))
    say("kvmhost-canary: ok: a fresh VM ran 100 port exits in 80 ms")
    say("kvmhost-script-exit: %d" % (1 if failed else 0))
    return 1 if failed else 0


def run_fake(boots, tests=("a", "b", "c"), canary=None, quarantine=(), boot_with=()):
    """Runs the runner's kvm loop over the fake test host; returns (results by test, the Run,
    boots used, what it printed)."""
    import io
    import contextlib
    import runner
    scratch = tempfile.mkdtemp(prefix="runner-selftest-")
    scenario = os.path.join(scratch, "scenario.json")
    with open(scenario, "w") as f:
        json.dump({"boots": boots}, f)
    runner.KVMHOST_SUITE = [sys.executable, os.path.abspath(__file__), "--fake-host", scenario]
    runner.HEARTBEAT_GAP, runner.TICK, runner.LOGS = 2, 0.5, scratch
    os.environ.pop("KVMHOST_LOCK", None)  # a fake boot takes no real test host's lock
    suite = dict(name="fake.kvm", kind="harness", about="fake", file="fake.py", backend="kvm")
    if canary:
        suite["canary"] = canary
    if boot_with:
        suite["boot_with"] = list(boot_with)
    run = runner.Run(600, list(quarantine))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runner.run_kvmhost(run, suite, list(tests))
    results = {r.test: r for r in run.results}
    used = int(open(scenario + ".boots").read())
    return results, run, used, out.getvalue()


@test
def a_failure_on_a_healthy_host_is_not_retried():
    results, run, boots, out = run_fake([{"b": "fail the guest did not become ready within 60 s"}])
    expect(results["a"].ok and not results["b"].ok and results["c"].ok, "b fails", out)
    expect(boots == 1 and not run.retries, "no retry on airlock's own message", out)


@test
def a_failure_with_a_kernel_stall_is_retried_and_may_pass():
    results, run, boots, out = run_fake([{"b": "fail Sandbox error", "kernel": STALL}, {}])
    expect(all(r.ok for r in results.values()), "b passes on the second boot", out)
    expect(boots == 2 and len(run.retries) == 1 and "soft lockup" in run.retries[0],
           "one retry, its reason the stall", (run.retries, out))
    expect("RETRY fake.kvm/b (attempt 2 of at most 3)" in out, "the retry is printed", out)


@test
def the_same_failure_twice_fails_even_with_evidence():
    stalled = {"b": "fail a VM never answered", "kernel": STALL}
    results, run, boots, out = run_fake([stalled, stalled, stalled])
    expect(not results["b"].ok and "the same way as its previous attempt" in results["b"].why,
           "b fails after its second attempt", (results["b"].why, out))
    expect(boots == 2 and len(run.retries) == 1, "one retry only", out)


@test
def a_frozen_host_is_stopped_and_the_running_test_retried():
    started = time.monotonic()
    results, run, boots, out = run_fake([{"b": "freeze"}, {}])
    expect(all(r.ok for r in results.values()), "b and c pass in the next boot", out)
    expect(boots == 2 and len(run.retries) == 1 and "froze" in run.retries[0],
           "b retried because the heartbeat stopped", (run.retries, out))
    expect(time.monotonic() - started < 30, "the frozen boot was stopped, not waited out")


@test
def a_retry_boot_first_runs_what_the_tests_rely_on():
    results, run, boots, out = run_fake([{"b": "freeze"}, {}], boot_with=["a"])
    expect(all(r.ok for r in results.values()) and boots == 2, "b and c pass", out)
    expect("ran fake.kvm/a again first" in out, "a ran first in the second boot", out)
    expect(sum(1 for r in run.results if r.test == "a") == 1, "a counted once", out)


@test
def a_failed_canary_on_a_healthy_host_stops_every_kvm_test():
    results, run, boots, out = run_fake([{"a": "fail python hello"}], canary="a")
    expect(not results["a"].ok and boots == 1 and not run.retries, "a fails at once", out)
    expect(run.kvm_stopped and "canary" in run.kvm_stopped, "kvm stops", run.kvm_stopped)
    expect(all(results[t].note == "not run" for t in ("b", "c")), "b and c are not run", out)


@test
def three_failures_in_a_row_on_a_healthy_host_stop_kvm():
    bad = {t: "fail broken" for t in "abcde"}
    results, run, boots, out = run_fake([bad], tests=list("abcde"))
    expect([results[t].note for t in "abc"] == ["", "", ""] and
           all(results[t].note == "not run" for t in "de"), "d and e are not run", out)
    expect(run.kvm_stopped and "3 kvm tests in a row" in run.kvm_stopped, "kvm stops",
           run.kvm_stopped)


@test
def a_quarantined_failure_is_shown_not_retried_and_does_not_stop_kvm():
    results, run, boots, out = run_fake([{"a": "fail heavy", "kernel": STALL}], canary="a",
                                        quarantine=[("fake.kvm/a", "the host's own bug")])
    expect(not results["a"].ok and results["a"].quarantine == "the host's own bug",
           "a failed, quarantined", out)
    expect(boots == 1 and not run.retries and not run.kvm_stopped, "no retry, no stop", out)
    expect("QUARANTINED FAIL fake.kvm/a" in out, "printed as such", out)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fake-host"]:
        sys.exit(fake_host(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
