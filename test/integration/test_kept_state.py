#!/usr/bin/env python3
"""Kept state (SPEC.md, "Kept state"): a call with keep_state saves its VM, and later calls
continue from it in fresh VMs, as often as they like (branches). Through `airlock run` and
`airlock mcp`, on the backend in $AIRLOCK_TEST_BACKEND (tcg here; kvm in the KVM test host).
Each test keeps its states in a directory of its own (--state-dir), removed at its end.
"""
import contextlib
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import airlock, expect, main, test  # noqa: E402
from mcp_session import started  # noqa: E402


@contextlib.contextmanager
def state_dir():
    d = tempfile.mkdtemp(prefix="airlock-states-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(states, code, *args, stdin=b""):
    return airlock("run", "--state-dir", states, *args, code, stdin=stdin, timeout=300)


def keep(states, code, *args, stdin=b""):
    """Runs code with --keep-state; returns (the run, the state id from its last stderr line)."""
    r = run(states, code, "--keep-state", *args, stdin=stdin)
    last = r.stderr.decode(errors="replace").rstrip("\n").split("\n")[-1]
    m = re.fullmatch(r"airlock: state_id ([0-9a-f]{32})", last)
    expect(m is not None, "the last stderr line names the state", r)
    return r, m.group(1)


def state_files(states, sid):
    return {os.path.basename(p): os.path.getsize(p)
            for p in glob.glob(os.path.join(states, sid, "*"))}


@test(timeout=1200)
def the_snapshots_are_made():
    """States are restores of the language's snapshot: made here when this boot has none (the
    KVM test host's cache disk usually holds them from an earlier suite; tcg's cache does)."""
    backend = os.environ.get("AIRLOCK_TEST_BACKEND", "tcg")
    r = airlock("image", "build", "--backend", backend, timeout=1200)
    expect(r.status == 0, "image build", r)


@test
def three_python_cells_carry_a_dataframe_and_files():
    """import pandas and build a DataFrame; transform it; print it: each call a fresh VM."""
    with state_dir() as states:
        r, s1 = keep(states, "import pandas as pd\n"
                             "df = pd.DataFrame({'n': range(1, 6)})\n"
                             "open('/work/notes.txt', 'w').write('from cell one')\n"
                             "open('/tmp/scratch', 'w').write('tmp too')\n"
                             "print('built', len(df))\n")
        expect(r.status == 0 and r.stdout == b"built 5\n", "cell one", r)
        r, s2 = keep(states, "df['sq'] = df.n ** 2\nprint(df.sq.sum())\n", "--state-id", s1)
        expect(r.status == 0 and r.stdout == b"55\n", "cell two sees df", r)
        r = run(states, "print(df.to_string(index=False))\n"
                        "print(open('/work/notes.txt').read(), open('/tmp/scratch').read())\n",
                "--state-id", s2)
        expect(r.status == 0 and b" 5  25" in r.stdout and
               b"from cell one tmp too" in r.stdout, "cell three: df, /work and /tmp", r)
        files = state_files(states, s1)
        expect(set(files) == {"manifest", "state", "pages"} and files["pages"] < 64 << 20,
               "a state is its manifest, device state and changed pages only", files)


@test
def branches_of_one_state_diverge_and_never_see_each_other():
    with state_dir() as states:
        _, base = keep(states, "items = ['base']\n")
        rand = ("import os, random, uuid\n"
                "print(os.urandom(8).hex(), random.random(), uuid.uuid4())\n")
        r_a, a = keep(states, "items.append('a')\nopen('/work/a.txt', 'w').write('a')\n" + rand,
                      "--state-id", base)
        r_b, b = keep(states, "items.append('b')\n" + rand, "--state-id", base)
        expect(r_a.status == 0 and r_b.status == 0, "both branches ran", (r_a, r_b))
        expect(r_a.stdout != r_b.stdout and len(set(r_a.stdout.split()) &
                                                set(r_b.stdout.split())) == 0,
               "every source of randomness differs between branches", (r_a, r_b))
        probe = "import os\nprint(items, os.path.exists('/work/a.txt'))\n"
        expect(run(states, probe, "--state-id", a).stdout == b"['base', 'a'] True\n", "a's")
        expect(run(states, probe, "--state-id", b).stdout == b"['base', 'b'] False\n", "b's")
        expect(run(states, probe, "--state-id", base).stdout == b"['base'] False\n",
               "the base is as it was, used three times")


@test
def javascript_cells_keep_globals_and_timers_finish():
    with state_dir() as states:
        r, s = keep(states, "let counter = 1;\nvar list = [1];\nglobalThis.shared = {k: 'v'};\n"
                            "function bump() { counter += 1; return counter; }\n"
                            "setTimeout(() => { list.push('timer'); console.log('timer ran'); }, 30);\n"
                            "console.log('first');\n", "--lang", "javascript")
        expect(r.status == 0 and r.stdout == b"first\ntimer ran\n",
               "the cell ends once its timer ran", r)
        r = run(states, "console.log(bump(), list, shared.k, typeof require('fs').readFileSync);\n"
                        "process.exitCode = 3;\n", "--state-id", s)
        expect(r.status == 3 and r.stdout == b"2 [ 1, 'timer' ] v function\n",
               "globals, functions and require carry over; exitCode is the cell's", r)
        r = run(states, "throw new Error('cell failed')", "--state-id", s)
        expect(r.status == 1 and b"Error: cell failed" in r.stderr, "an uncaught error", r)


@test
def bash_cells_keep_variables_functions_cwd_and_read_their_own_stdin():
    with state_dir() as states:
        r, s = keep(states, "cd /tmp\nGREETING=hello\ngreet() { echo \"$GREETING $1\"; }\n"
                            "read first; echo \"first: $first\"\n", "--lang", "bash",
                    stdin=b"one\n")
        expect(r.status == 0 and r.stdout == b"first: one\n", "cell one reads its stdin", r)
        r = run(states, "greet world; pwd; read second; echo \"second: $second\"; exit 4",
                "--state-id", s, stdin=b"two\n")
        expect(r.status == 4 and r.stdout == b"hello world\n/tmp\nsecond: two\n",
               "cell two: function, variable, cwd, its own stdin, its status", r)


@test
def output_files_are_only_those_the_cell_created_or_changed():
    with state_dir() as states:
        r = run(states, "import os\nos.makedirs('/work/out', exist_ok=True)\n"
                        "open('/work/out/old.txt', 'w').write('old')\n"
                        "open('/work/out/edited.txt', 'w').write('v1')\n",
                "--keep-state", "--json")
        j = r.json()
        expect(sorted(f["path"] for f in j["files"]) == ["edited.txt", "old.txt"] and
               re.fullmatch(r"[0-9a-f]{32}", j["state_id"] or "") and j["state_error"] is None
               and j["state_expires_at"].endswith("Z"), "the first call returns both", j)
        r = run(states, "import time\ntime.sleep(0.05)\n"
                        "open('/work/out/edited.txt', 'w').write('v2')\n"
                        "open('/work/out/new.txt', 'w').write('new')\n",
                "--state-id", j["state_id"], "--json")
        got = sorted(f["path"] for f in r.json()["files"])
        expect(got == ["edited.txt", "new.txt"], "the second returns what it wrote", r)


@test
def a_timed_out_cell_keeps_no_state_and_says_why():
    with state_dir() as states:
        r = run(states, "while True: pass", "--keep-state", "--timeout", "1")
        expect(r.status == 124 and
               b"airlock: no state kept: the program timed out" in r.stderr, "no state", r)
        r = run(states, "print(1)", "--keep-state", "--json", "--timeout", "1")
        expect(r.json()["state_id"] is not None, "a quick cell keeps one", r)
        r = run(states, "import time\ntime.sleep(5)", "--keep-state", "--json", "--timeout", "1")
        j = r.json()
        expect(j["timed_out"] and j["state_id"] is None and "timed out" in j["state_error"],
               "--json says why", j)


@test
def unknown_damaged_and_mismatched_states_are_refused():
    with state_dir() as states:
        r = run(states, "print(1)", "--state-id", "0" * 32)
        expect(r.status == 2 and b"unknown state_id '" + b"0" * 32 in r.stderr, "unknown", r)
        _, s = keep(states, "x = 1\n")
        r = run(states, "print(x)", "--state-id", s, "--lang", "bash")
        expect(r.status == 2 and b"the state " + s.encode() + b" is python" in r.stderr,
               "a language other than the state's", r)
        r = run(states, "package main\nfunc main() {}\n", "--keep-state", "--lang", "go")
        expect(r.status == 2 and b"go has no interpreter whose state could be kept" in r.stderr,
               "go keeps no state", r)
        # the pages file changed: its change time no longer matches the MACed manifest
        _, damaged = keep(states, "x = 2\n")
        with open(os.path.join(states, damaged, "pages"), "r+b") as f:
            f.seek(4096 * 3)
            f.write(b"\xff" * 64)
        r = run(states, "print(x)", "--state-id", damaged)
        expect(r.status == 125 and b"changed, truncated or replaced" in r.stderr and not r.stdout,
               "a changed pages file is refused, never half-restored", r)
        # a manifest edited: its MAC no longer holds
        _, edited = keep(states, "x = 3\n")
        path = os.path.join(states, edited, "manifest")
        m = json.load(open(path))
        m["created"] += 1
        json.dump(m, open(path, "w"))
        r = run(states, "print(x)", "--state-id", edited)
        expect(r.status == 125 and b"does not carry this installation's MAC" in r.stderr,
               "an edited manifest is refused", r)
        # a truncated pages file with its manifest re-MACed cannot be made here; the restore
        # parser's own checks are the fuzz target's (test/fuzz/fuzz_pages.c)
        expect(run(states, "print(x)", "--state-id", s).stdout == b"1\n", "the good one works")


@test
def states_expire_and_the_least_recently_used_are_evicted():
    with state_dir() as states:
        _, short = keep(states, "x = 'short'\n", "--state-ttl", "1")
        time.sleep(2.5)
        r = run(states, "print(x)", "--state-id", short)
        expect(r.status == 2 and (b"has expired" in r.stderr or
                                  b"unknown state_id '%s' (never kept here, or expired"
                                  % short.encode() in r.stderr), "expired", r)
        expect(not os.path.exists(os.path.join(states, short)), "and removed")
        _, first = keep(states, "a = 1\n")
        size = sum(state_files(states, first).values())
        cap = str((size * 2 + size // 2) // (1 << 20) + 1)  # room for two, not three
        _, second = keep(states, "b = 2\n", "--state-max-mb", cap)
        expect(run(states, "print(a)", "--state-id", first).stdout == b"1\n",
               "the first, used now, is the most recent")
        _, third = keep(states, "c = 3\n", "--state-max-mb", cap)
        expect(os.path.isdir(os.path.join(states, first)) and
               not os.path.isdir(os.path.join(states, second)) and
               os.path.isdir(os.path.join(states, third)),
               "the least recently used (the second) went to make room",
               os.listdir(states))
        r = run(states, "print(b)", "--state-id", second)
        expect(r.status == 2 and b"unknown state_id" in r.stderr, "an evicted state", r)
        r = run(states, "print(1)", "--keep-state", "--state-max-mb", "1")
        expect(b"more than --state-max-mb (1)" in r.stderr, "a state larger than the cap", r)


@test
def state_list_and_rm():
    with state_dir() as states:
        _, s = keep(states, "x = 1\n")
        r = airlock("state", "list", "--state-dir", states)
        expect(r.status == 0 and r.stdout.decode().startswith(s + "  python"), "listed", r)
        expect(airlock("state", "rm", s, "--state-dir", states).status == 0, "removed")
        r = airlock("state", "rm", s, "--state-dir", states)
        expect(r.status == 1 and b"no state" in r.stderr, "and gone", r)
        expect(airlock("state", "list", "--state-dir", states).stdout == b"", "none listed")


@test
def chained_calls_do_not_grow_the_state():
    """Each link continues the last and removes it: the one state left stays the size of what
    the interpreter holds (the pages changed since the snapshot, not since each restore)."""
    with state_dir() as states:
        _, sid = keep(states, "total = 0\n")
        sizes = []
        for i in range(12):
            r, nxt = keep(states, "total += %d\nprint(total)\n" % i, "--state-id", sid)
            expect(r.stdout == b"%d\n" % sum(range(i + 1)), "link %d" % i, r)
            airlock("state", "rm", sid, "--state-dir", states)
            sid = nxt
            sizes.append(sum(state_files(states, sid).values()))
        expect(len([d for d in os.listdir(states) if re.fullmatch("[0-9a-f]{32}", d)]) == 1,
               "one state left", os.listdir(states))
        expect(sizes[-1] <= sizes[1] * 1.25, "the last link is no larger than the second "
               "by more than a quarter", sizes)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


@test(timeout=600)
def a_hundred_chained_calls_grow_neither_the_server_nor_the_store():
    """100 calls through one server, each continuing the last and keeping its own state: the
    server's memory stays flat, and the store holds the states kept and nothing else (under a
    small cap, the oldest go)."""
    with state_dir() as states:
        s = started("--pool", "0", "--state-dir", states, "--state-max-mb", "64")
        try:
            sid, rss = None, {}
            for i in range(100):
                args = {"code": "n = n + 1 if 'n' in globals() else 1\nprint(n)",
                        "keep_state": True}
                if sid:
                    args["state_id"] = sid
                try:
                    r = s.call(i + 1, args)["result"]
                except AssertionError:
                    s.proc.kill()
                    raise AssertionError("call %d: the server said %r" % (
                        i, s.proc.stderr.read()[-2000:]))
                sc = r["structuredContent"]
                expect(sc["stdout"] == "%d\n" % (i + 1) and sc["state_id"], "call %d" % i, r)
                sid = sc["state_id"]
                if i in (19, 99):
                    rss[i] = rss_kib(s.proc.pid)
            kept = [d for d in os.listdir(states) if re.fullmatch("[0-9a-f]{32}", d)]
            others = [d for d in os.listdir(states) if d not in kept and d != "key"]
            size = sum(os.path.getsize(os.path.join(states, d, f))
                       for d in kept for f in os.listdir(os.path.join(states, d)))
            expect(not others and size <= 64 << 20 and sid in kept,
                   "only the states kept, within the cap", (others, size, len(kept)))
            expect(rss[99] - rss[19] < 4096, "the server's memory flat (KiB)", rss)
        finally:
            s.close()


@test
def an_mcp_servers_states_die_with_it_unless_persisted():
    with state_dir() as states:
        s = started("--pool", "0", "--state-dir", states)
        try:
            r = s.call(1, {"code": "secret = 42\nprint('kept')", "keep_state": True})
            sc = r["result"]["structuredContent"]
            expect(not r["result"]["isError"] and re.fullmatch("[0-9a-f]{32}", sc["state_id"])
                   and sc["state_error"] is None, "keep_state returns a state_id", r)
            summary = json.loads(r["result"]["content"][-1]["text"])
            expect(summary["state_id"] == sc["state_id"], "the summary block has it too", r)
            r = s.call(2, {"code": "print(secret + 1)", "state_id": sc["state_id"]})
            expect(r["result"]["structuredContent"]["stdout"] == "43\n" and
                   "state_id" not in r["result"]["structuredContent"],
                   "continued, with no state fields when none was asked to be kept", r)
            r = s.call(3, {"code": "print(1)", "state_id": "f" * 32})
            expect(r["result"]["isError"] and "unknown state_id" in
                   r["result"]["content"][0]["text"], "an unknown id", r)
            r = s.call(4, {"code": "print(1)", "state_id": "../../etc"})
            expect(r["result"]["isError"] and "state_id" in r["result"]["content"][0]["text"],
                   "a malformed id names the field", r)
        finally:
            s.close()
        first = sc["state_id"]
        expect(not os.path.exists(os.path.join(states, first)),
               "the server removed its states at its exit")
        # a server killed outright leaves its states; the next neither serves nor keeps them
        s = started("--pool", "0", "--state-dir", states)
        try:
            r = s.call(1, {"code": "w = 1", "keep_state": True})
            orphan = r["result"]["structuredContent"]["state_id"]
        finally:
            s.proc.kill()
            s.close()
        expect(os.path.isdir(os.path.join(states, orphan)), "a killed server's state is left")
        s = started("--pool", "0", "--state-dir", states, "--state-persist")
        try:
            for sid in (first, orphan):
                r = s.call(2, {"code": "print(1)", "state_id": sid})
                expect(r["result"]["isError"] and "unknown state_id" in
                       r["result"]["content"][0]["text"], "an earlier server's id refused", r)
            expect(not os.path.exists(os.path.join(states, orphan)),
                   "and the killed server's state swept at the next one's start")
            r = s.call(1, {"code": "v = 'persisted'", "keep_state": True})
            kept = r["result"]["structuredContent"]["state_id"]
        finally:
            s.close()
        r = run(states, "print(v)", "--state-id", kept)
        expect(r.status == 0 and r.stdout == b"persisted\n",
               "--state-persist: the user's later runs continue it", r)


if __name__ == "__main__":
    main()
