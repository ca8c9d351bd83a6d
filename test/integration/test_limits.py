#!/usr/bin/env python3
"""The limits of docs/interface.md at their edges, through `airlock mcp`: a guest that goes silent after
RUN, the stderr cap, the 1 MiB total of returned files, binary files byte-exact both ways,
--max-concurrent, --max-timeout, cancelling a queued call, and pooled VMs that sat idle.
VMs run on $AIRLOCK_TEST_BACKEND (default tcg)."""
import base64
import hashlib
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import expect, main, misbehaving_images, test  # noqa: E402
from mcp_session import BACKEND, LANGUAGES, started, wait_for_pool  # noqa: E402

CAP = 1 << 20         # stdout, stderr, and /work/out's returned files in total (docs/interface.md)
RUN_GRACE_S = 2.0     # mcp/sandbox/sandbox_internal.h RUN_GRACE_MS: the host's wait past the limit


# ---- helpers ----

def running(pid):
    """Whether pid is a live process (a zombie left for its parent to reap counts as gone)."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def send_call(s, id, arguments):
    s.send({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "execute_code", "arguments": arguments}})


def replies_watching_vms(s, ids, timeout=180):
    """Waits for the replies to ids while sampling the server's VM processes. Returns
    ({id: reply}, {id: when it was read}, [(when, set of VM pids)])."""
    got, when, samples = {}, {}, []
    deadline = time.monotonic() + timeout
    while len(got) < len(ids):
        samples.append((time.monotonic(), set(s.vms())))
        expect(time.monotonic() < deadline, "replies to %r within %d s (have %r)"
               % (ids, timeout, sorted(got)))
        try:
            m = s.take(lambda m: m.get("id") in ids and m.get("id") not in got
                       and "method" not in m, timeout=0.1)
            got[m["id"]], when[m["id"]] = m, time.monotonic()
        except AssertionError:  # nothing yet: sample again, unless the server is gone
            expect(s.proc.poll() is None, "the server lives", s.proc.returncode)
    return got, when, samples


def wait_gone(pids, timeout=10):
    """Waits until none of pids runs. The result comes first and the VM is killed right after
    (mcp/sandbox/sandbox.c, sandbox_end()): gone within milliseconds, but not always by the reply."""
    deadline = time.monotonic() + timeout
    while [p for p in pids if running(p)]:
        expect(time.monotonic() < deadline, "VMs gone within %d s" % timeout,
               [p for p in pids if running(p)])
        time.sleep(0.01)


def run_result(reply):
    """The CallToolResult of a call whose program ran (not a sandbox or argument error)."""
    expect("structuredContent" in reply.get("result", {}), "the program ran", reply)
    return reply["result"]


def structured(reply):
    return run_result(reply)["structuredContent"]


def resource_bytes(block):
    """The bytes of an embedded resource block (text when UTF-8, else base64 blob)."""
    r = block["resource"]
    return base64.b64decode(r["blob"]) if "blob" in r else r["text"].encode()


def returned_files(result):
    """{path: bytes} of the files a result returned in its content blocks."""
    files = {}
    for block in result["content"]:
        if block["type"] == "resource":
            uri = block["resource"]["uri"]
            expect(uri.startswith("airlock://out/"), "resource uri", uri)
            files[uri[len("airlock://out/"):]] = resource_bytes(block)
    return files


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---- the tests ----

@test
def a_guest_silent_after_run_is_ended_at_the_limit_plus_grace():
    """READY, then RUN read whole, then nothing: the host's own deadline (limit + RUN_GRACE_MS)
    ends the call as timed out, its VM is killed with it, and the server serves on."""
    tmp = misbehaving_images("silent-run")
    s = started("--images", tmp, "--pool", "0")  # snapshots of the misbehaving guest first
    try:
        limit = 3
        send_call(s, "silent", {"code": "print(1)", "timeout_s": limit})
        got, _, samples = replies_watching_vms(s, ["silent"])
        r = got["silent"]["result"]
        sc = r["structuredContent"]
        expect(r["isError"] and sc["timed_out"] and sc["exit_code"] is None and
               sc["stdout"] == "", "a timed-out result, nothing from the guest", r)
        seconds = sc["duration_ms"] / 1000
        expect(limit + RUN_GRACE_S - 0.5 <= seconds <= limit + RUN_GRACE_S + 10,
               "ended %.1f s after RUN (limit %d s + grace %g s)" % (seconds, limit, RUN_GRACE_S))
        seen = set().union(*(vms for _, vms in samples))
        expect(seen, "the call's VM was seen running")
        wait_gone(seen)
        expect(not s.vms(), "the server has no VM left", s.vms())
        expect(s.request("after", "ping")["result"] == {}, "the server serves on")
    finally:
        s.close()
        shutil.rmtree(tmp)


@test
def stderr_past_the_cap_is_cut_at_exactly_the_cap_and_flagged():
    """1.5 MiB of numbered lines to stderr: exactly the first 1 MiB comes back, flagged;
    512 KiB of stdout beside it comes back whole and unflagged."""
    code = ("import sys\n"
            "sys.stdout.write(''.join('o%06d\\n' % i for i in range(65536)))\n"
            "sys.stderr.write(''.join('%07d\\n' % i for i in range(196608)))\n")
    expected_out = "".join("o%06d\n" % i for i in range(65536))
    expected_err = "".join("%07d\n" % i for i in range(196608))[:CAP]
    s = started("--pool", "0")
    try:
        r = run_result(s.call(1, {"code": code}, timeout=180))
        sc = r["structuredContent"]
        expect(sc["exit_code"] == 0 and not sc["timed_out"], "the program ran to its end", sc)
        expect(sc["stderr_truncated"] is True, "stderr_truncated", sc["stderr_truncated"])
        expect(len(sc["stderr"]) == CAP, "stderr is %d bytes, the cap %d" % (len(sc["stderr"]),
                                                                               CAP))
        expect(sc["stderr"] == expected_err, "stderr is the first 1 MiB written, in order")
        expect(sc["stdout_truncated"] is False and sc["stdout"] == expected_out,
               "stdout whole (%d bytes) and not flagged" % len(sc["stdout"]))
        expect("[output truncated]" in r["content"][0]["text"], "the text block says so")
    finally:
        s.close()


@test
def output_files_past_one_mib_in_total_are_listed_but_not_returned():
    """Five files under /work/out, 1.3 MiB in all: those returned are byte-exact and total at
    most 1 MiB; each one left out (returned: false, its size given) would not have fitted."""
    sizes = {"a.bin": 300 << 10, "b.bin": 500 << 10, "c.bin": 400 << 10, "d.txt": 100 << 10,
             "e.bin": 10}
    code = ("import hashlib, json, os, random\n"
            "os.makedirs('out', exist_ok=True)\n"
            "sums = {}\n"
            "for name, size in %r.items():\n"
            "    data = (os.urandom(size) if name.endswith('.bin') else\n"
            "            ''.join(random.choice('abc\\n') for _ in range(size)).encode())\n"
            "    open('out/' + name, 'wb').write(data)\n"
            "    sums[name] = hashlib.sha256(data).hexdigest()\n"
            "print(json.dumps(sums))\n" % sizes)
    expect(sum(sizes.values()) > CAP, "the files exceed the cap together")
    s = started("--pool", "0")
    try:
        r = run_result(s.call(1, {"code": code}, timeout=180))
        sc = r["structuredContent"]
        expect(sc["exit_code"] == 0, "the program ran", sc)
        sums = json.loads(sc["stdout"])
        listed = {f["path"]: f for f in sc["files"]}
        expect(sorted(listed) == sorted(sizes), "every file listed", sc["files"])
        for name, size in sizes.items():
            expect(listed[name]["size"] == size, "%s: size %d" % (name, size), listed[name])
        content = returned_files(r)
        returned = sorted(p for p, f in listed.items() if f["returned"])
        expect(sorted(content) == returned, "a content block for each returned file, only those",
               (sorted(content), returned))
        for name in returned:
            expect(sha256(content[name]) == sums[name], "%s byte-exact" % name)
        total = sum(sizes[p] for p in returned)
        expect(total <= CAP, "returned %d bytes, at most %d" % (total, CAP))
        left_out = [p for p in sizes if p not in returned]
        expect(left_out, "some file left out", returned)
        for name in left_out:
            expect(total + sizes[name] > CAP, "%s (%d bytes) would have fitted beside %d"
                   % (name, sizes[name], total))
    finally:
        s.close()


@test
def random_binary_files_go_in_and_come_out_byte_exact():
    """Random bytes sent base64 reach the program exactly (its sha256s match); files it writes,
    random and every byte value, come back exactly (they match the sha256s it printed)."""
    inputs = {"in/empty": b"", "in/nul": b"\0", "in/every-byte": bytes(range(256)) * 4,
              "in/crlf": b"\r\n\r\0\xff\xfe\n", "in/random.bin": os.urandom(200000)}
    code = ("import hashlib, json, os, shutil\n"
            "got = {p: hashlib.sha256(open(p, 'rb').read()).hexdigest() for p in %r}\n"
            "os.makedirs('out', exist_ok=True)\n"
            "open('out/random.bin', 'wb').write(os.urandom(300000))\n"
            "open('out/every-byte', 'wb').write(bytes(range(256)) * 3 + b'\\0')\n"
            "open('out/short', 'wb').write(os.urandom(3))\n"
            "shutil.copy('in/random.bin', 'out/echo.bin')\n"
            "made = {p: hashlib.sha256(open('out/' + p, 'rb').read()).hexdigest()\n"
            "        for p in os.listdir('out')}\n"
            "print(json.dumps({'got': got, 'made': made}))\n" % sorted(inputs))
    files = [{"path": p, "content": base64.b64encode(d).decode(), "encoding": "base64"}
             for p, d in inputs.items()]
    s = started("--pool", "0")
    try:
        r = run_result(s.call(1, {"code": code, "files": files}, timeout=180))
        sc = r["structuredContent"]
        expect(sc["exit_code"] == 0, "the program ran", sc)
        printed = json.loads(sc["stdout"])
        for path, data in inputs.items():
            expect(printed["got"][path] == sha256(data), "%s arrived byte-exact" % path)
        out = returned_files(r)
        expect(sorted(out) == sorted(printed["made"]), "every output file returned",
               (sorted(out), sc["files"]))
        for path, data in out.items():
            expect(sha256(data) == printed["made"][path], "out/%s came back byte-exact" % path)
        expect(out["echo.bin"] == inputs["in/random.bin"], "a file sent in comes back the same")
        expect(out["every-byte"] == bytes(range(256)) * 3 + b"\0", "every byte value")
    finally:
        s.close()


@test
def a_result_carrying_a_full_mib_of_files_arrives_every_time():
    """Thirty calls (six on kvm), each returning a file just under the 1 MiB cap: every result
    arrives whole. (The EXIT frame is then ~1 MiB; the guest ends itself right after sending
    it.) The loss it guards against was QEMU's, 1 call in 10 (e8071c5); on kvm a call costs the
    test host 3 to 6 s, and the suite has 44 minutes."""
    rounds = 6 if BACKEND == "kvm" else 30
    size = CAP - (8 << 10)
    code = "import os\nopen('out/r.bin', 'wb').write(os.urandom(%d))\n" % size
    s = started("--pool", "1")
    try:
        lost = []
        for i in range(rounds):
            r = s.call(i, {"code": code}, timeout=180)["result"]
            if "structuredContent" not in r:
                lost.append(r["content"][0]["text"])
                continue
            files = r["structuredContent"]["files"]
            expect(files == [{"path": "r.bin", "size": size, "mime_type":
                              "application/octet-stream", "returned": True}], "the file", files)
            expect(len(returned_files(r)["r.bin"]) == size, "its content returned")
        expect(not lost, "%d of %d results lost" % (len(lost), rounds), lost[:3])
    finally:
        s.close()


@test
def max_concurrent_caps_the_programs_running_at_once():
    """--max-concurrent 2, five 5-second calls at once: never more than 2 VMs (sampled) nor 2
    programs (by their own clocks) at a time, the cap is used, and all five complete."""
    code = ("import time\n"
            "start = time.time(); time.sleep(5); print(start, time.time())\n")
    s = started("--max-concurrent", "2", "--pool", "0")  # every VM is then a running call's
    try:
        ids = ["c%d" % i for i in range(5)]
        for id in ids:
            send_call(s, id, {"code": code})
        got, when, samples = replies_watching_vms(s, ids, timeout=300)
        # A VM is started only for a call given a slot; once its call is answered it is being
        # killed, which can outlast the reply by milliseconds while the next one starts. So:
        # VMs started so far less calls answered so far (a reply sent just before the sample
        # may be read up to a couple of seconds later on a loaded host) is at most 2.
        first_seen = {}
        for t, vms in samples:
            for p in vms:
                first_seen.setdefault(p, t)
        expect(len(first_seen) == 5, "one VM per call", first_seen)
        for t, _ in samples:
            started_vms = sum(1 for f in first_seen.values() if f <= t)
            answered = sum(1 for w in when.values() if w <= t + 2)
            expect(started_vms - answered <= 2, "%d VMs for unanswered calls at once"
                   % (started_vms - answered), (t, first_seen, when))
        spans = []
        for id in ids:
            sc = structured(got[id])
            expect(sc["exit_code"] == 0, "%s completed" % id, sc)
            spans.append(tuple(map(float, sc["stdout"].split())))
        # the most programs running at one instant, by their start and end times
        edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans],
                       key=lambda e: (e[0], e[1]))
        level = peak = 0
        for _, step in edges:
            level += step
            peak = max(peak, level)
        expect(peak <= 2, "at most 2 programs at once, %d overlapped" % peak, spans)
        expect(peak == 2, "2 programs did run at once (the cap, not one at a time)", spans)
    finally:
        s.close()


@test
def max_timeout_clamps_a_longer_timeout_s():
    """--max-timeout 2: a call asking 60 s for `sleep 30` is timed out after about 2 s."""
    s = started("--max-timeout", "2", "--pool", "0")
    try:
        t = time.monotonic()
        r = s.call(1, {"code": "import time; time.sleep(30)", "timeout_s": 60})["result"]
        took = time.monotonic() - t
        sc = r["structuredContent"]
        expect(r["isError"] and sc["timed_out"], "timed out", r)
        expect(1.9 <= sc["duration_ms"] / 1000 <= 2 + RUN_GRACE_S + 3,
               "ran %.1f s (the clamp: 2 s)" % (sc["duration_ms"] / 1000))
        expect(took < 20, "answered after %.1f s, well before the program's 30 s" % took)
        expect("[timed out after 2 s]" in r["content"][0]["text"], "the text names the clamp",
               r["content"][0]["text"])
    finally:
        s.close()


@test
def a_cancelled_queued_call_never_starts_a_vm_and_gets_no_reply():
    """--max-concurrent 1: while a slow call runs, a second waits; cancelling the waiting one
    starts no VM for it and sends no reply for it; the running call completes, and a later
    call (queued behind where the cancelled one was) runs next."""
    s = started("--max-concurrent", "1", "--pool", "0")
    try:
        send_call(s, "running", {"code": "import time; time.sleep(6); print('done')"})
        deadline = time.monotonic() + 120
        while not s.vms():
            expect(time.monotonic() < deadline, "the running call's VM started")
            time.sleep(0.05)
        first_vm = set(s.vms())
        send_call(s, "queued", {"code": "import time; time.sleep(20); print('queued ran')"})
        s.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": "queued", "reason": "test"}})
        got, _, samples = replies_watching_vms(s, ["running"])
        expect(structured(got["running"])["stdout"] == "done\n", "the running call completed",
               got["running"])
        during = set().union(*(vms for _, vms in samples))
        expect(during == first_vm, "no VM but the running call's", (during, first_vm))
        send_call(s, "later", {"code": "print('later')"})
        got, _, samples = replies_watching_vms(s, ["later"])
        expect(structured(got["later"])["stdout"] == "later\n", "a later call works",
               got["later"])
        after = set().union(*(vms for _, vms in samples)) - first_vm
        expect(len(after) <= 1, "one VM for the later call, none for the cancelled", after)
        expect(s.request("p", "ping")["result"] == {}, "serving")
        expect(not [m for m in s.messages if m.get("id") == "queued"],
               "no reply for the cancelled call", s.messages)
    finally:
        s.close()


def cpu_seconds(pid):
    """CPU time of pid and its descendants that are still alive (the VM below its wrapper)."""
    total, todo = 0.0, [str(pid)]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%s/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            with open("/proc/%s/task/%s/children" % (p, p)) as f:
                todo += f.read().split()
        except OSError:
            pass
    return total


def wait_until_idle(s, timeout=180):
    """Waits until every VM of the server has been nearly idle (HLT) for a second: restored and
    waiting, not restoring."""
    deadline = time.monotonic() + timeout
    while True:
        vms = s.vms()
        before = {p: cpu_seconds(p) for p in vms}
        time.sleep(1)
        busy = {p: cpu_seconds(p) - t for p, t in before.items() if cpu_seconds(p) - t > 0.2}
        if not busy:
            return vms
        expect(time.monotonic() < deadline, "the pool's VMs idle", busy)


UNIQUE = ("import json, os, random, time, uuid\n"
          "print(json.dumps({'time': time.time(), 'urandom': os.urandom(16).hex(),\n"
          "                  'random': random.random(), 'uuid': str(uuid.uuid4())}))\n")


@test
def pooled_vms_idle_for_30_s_have_fresh_entropy_and_the_hosts_clock():
    """--pool 2, idle 30 s, then two calls served by those pooled VMs and one by a fresh VM:
    os.urandom, random and uuid4 differ between all three, and each one's time.time() is the
    host's at the call (within 1 s)."""
    s = started("--pool", "2")
    try:
        wait_for_pool(s, 2 * len(LANGUAGES), timeout=180)  # two per language
        pooled = wait_until_idle(s)
        time.sleep(30)  # the idle time under test, not a wait for something
        seen = []
        for id in ("pooled-1", "pooled-2", "fresh"):
            before = time.time()
            sc = structured(s.call(id, {"code": UNIQUE}))
            after = time.time()
            expect(sc["exit_code"] == 0, id, sc)
            v = json.loads(sc["stdout"])
            expect(before - 1 <= v["time"] <= after + 1,
                   "%s: guest clock %.3f, host's %.3f..%.3f" % (id, v["time"], before, after))
            seen.append(v)
            if id.startswith("pooled"):  # served by a VM that sat idle: it goes after
                deadline = time.monotonic() + 10
                while len([p for p in pooled if running(p)]) > len(pooled) - int(id[-1]):
                    expect(time.monotonic() < deadline, "%s ran in a pooled VM" % id,
                           (pooled, s.vms()))
                    time.sleep(0.01)
        for key in ("urandom", "random", "uuid"):
            values = [v[key] for v in seen]
            expect(len(set(values)) == 3, "%s differs in every VM" % key, values)
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
