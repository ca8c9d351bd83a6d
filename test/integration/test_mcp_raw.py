#!/usr/bin/env python3
"""`airlock mcp` at the wire: raw lines in, replies checked one by one. Malformed, oversized,
binary and out-of-order lines; concurrency; progress; cancellation; shutdown on EOF and SIGTERM.
VMs run on $AIRLOCK_TEST_BACKEND (default tcg)."""
import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import AIRLOCK, expect, main, test, wait_until_gone  # noqa: E402
from mcp_session import BACKEND, INIT, LANGUAGES, Server, started, wait_for_pool  # noqa: E402


def wait_for_vm(s, timeout=30):
    deadline = time.monotonic() + timeout
    while not s.vms():
        expect(time.monotonic() < deadline, "a VM started")
        time.sleep(0.01)


def eventually(check, timeout=30):
    """check() (which asserts) once it passes, polled until timeout: for state the server sets
    up asynchronously (a VM jailed and grouped after its process appears). Past the timeout,
    check's own assertion fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, OSError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.05)


def seccomp_filters(pid):
    with open("/proc/%s/status" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("Seccomp_filters:"))


def jailed_leaf(vm):
    """The VM process below vm once its jail is complete, so no check below sees it half set up.
    QEMU's last step (the preload) makes it not dumpable. airlock-vmm started by root is never
    dumpable, so that says nothing there: its last step is its own seccomp filter, loaded in the
    VM process below its supervisor (vm), which then holds one filter more than vm. Seen too
    early, the leaf was the supervisor itself, its limits not the VM's (2026-12-07)."""
    leaf = leaf_process(vm)
    expect(os.stat("/proc/%s/fd" % leaf).st_uid == 0, "not dumpable", leaf)
    if BACKEND == "kvm":
        expect(leaf != vm and seccomp_filters(leaf) > seccomp_filters(vm),
               "airlock-vmm's VM process, below its supervisor, with its own filter", leaf)
    return leaf


@test
def version_negotiation():
    s = Server()
    try:
        for asked, answered in (("2025-11-25", "2025-11-25"), ("2025-06-18", "2025-06-18"),
                                ("2025-03-26", "2025-03-26"), ("2024-11-05", "2024-11-05"),
                                ("1999-01-01", "2025-11-25")):
            r = s.request(asked, "initialize", dict(INIT["params"], protocolVersion=asked))
            res = r["result"]
            expect(res["protocolVersion"] == answered, asked, r)
            expect(res["serverInfo"]["name"] == "airlock" and res["instructions"], "info", r)
            expect(res["capabilities"] == {"tools": {"listChanged": False}, "logging": {}},
                   "capabilities", r)
    finally:
        s.close()


def seccomp_mode(pid):
    """Its "Seccomp:" field, or None once it is gone (the VM that served a call is killed after
    the answer, so it can end between listing and reading)."""
    try:
        with open("/proc/%s/status" % pid) as f:
            return next(line.split()[1] for line in f if line.startswith("Seccomp:"))
    except FileNotFoundError:
        return None


@test
def the_server_and_its_vms_run_under_its_seccomp_filter():
    os.environ["AIRLOCK_SECCOMP_SELFTEST"] = "1"
    try:
        s = started("--pool", "1")
    finally:
        del os.environ["AIRLOCK_SECCOMP_SELFTEST"]
    try:
        r = s.call(1, {"code": "print(6 * 7)"})
        expect(r["result"]["structuredContent"]["stdout"] == "42\n", "a call works under it", r)
        expect(seccomp_mode(s.proc.pid) == "2", "the server is filtered (Seccomp: 2)")
        modes = [m for m in map(seccomp_mode, s.vms()) if m is not None]
        expect(modes and all(m == "2" for m in modes), "so are its VMs", modes)
        s.proc.stdin.close()  # the end of the session: the server exits, its stderr ends
        s.proc.wait(timeout=10)
        err = s.proc.stderr.read().decode(errors="replace")
    finally:
        s.close()
    expect("perf_event_open refused (EPERM): the filter is on" in err,
           "a refused syscall fails with EPERM", err[-500:])


def cgroup_of(pid):
    """{controller or "": path} from /proc/PID/cgroup."""
    groups = {}
    with open("/proc/%s/cgroup" % pid) as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                groups[c] = path
    return groups


def cgroup_limit(mount, path, name):
    with open("/sys/fs/cgroup/%s%s/%s" % (mount, path, name)) as f:
        return f.read().strip()


def leaf_process(pid):
    """The process at the bottom of pid's tree (the VM itself, below any wrapper)."""
    for _ in range(5):
        with open("/proc/%s/task/%s/children" % (pid, pid)) as f:
            children = f.read().split()
        if not children:
            break
        pid = children[0]
    return pid


def held_files(pid):
    """(fd, access mode) of each regular file pid holds, but its stdio (its log)."""
    held = []
    for fd in os.listdir("/proc/%s/fd" % pid):
        try:
            if int(fd) > 2 and os.path.isfile("/proc/%s/fd/%s" % (pid, fd)):
                with open("/proc/%s/fdinfo/%s" % (pid, fd)) as f:
                    flags = next(int(l.split()[1], 8) for l in f if l.startswith("flags:"))
                held.append((int(fd), flags & os.O_ACCMODE))
        except (OSError, StopIteration):
            pass
    return held


def reopens_for_writing(pid, fd):
    """Whether even root may open what pid's fd names for writing (no byte is written)."""
    try:
        os.close(os.open("/proc/%s/fd/%s" % (pid, fd), os.O_RDWR))
        return True
    except OSError as e:
        if e.errno != errno.EROFS:
            raise
        return False


VM_UID_BASE, VM_UID_COUNT = 0x7A1C0000, 65536  # mcp/confine/confine.h


@test
def vms_run_jailed():
    """The VM process (QEMU under bubblewrap on tcg, airlock-vmm on kvm) has no capabilities,
    no_new_privs, namespaces of its own and a root that holds only what it needs."""
    # CI and the KVM test host run as root: the checks for root's server below must run
    expect(os.geteuid() == 0, "run as root (the uid, dumpable and file checks need it)")
    s = started("--pool", "1")
    try:
        wait_for_pool(s, len(LANGUAGES))
        vms = s.vms()
        expect(len(vms) >= len(LANGUAGES), "the pool's VMs are there", vms)
        for vm in vms:
            leaf = eventually(lambda: jailed_leaf(vm))
            with open("/proc/%s/status" % leaf) as f:
                status = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
            expect(status["CapEff"] == "0000000000000000" and status["NoNewPrivs"] == "1",
                   "no capabilities, no_new_privs", (leaf, status.get("CapEff")))
            if os.geteuid() == 0:  # started by root, the VM runs as a uid of its own
                uids = set(status["Uid"].split())
                expect(len(uids) == 1 and
                       VM_UID_BASE <= int(uids.pop()) < VM_UID_BASE + VM_UID_COUNT,
                       "its own uid outside", status["Uid"])
            # not dumpable: /proc then gives its files to root
            expect(os.stat("/proc/%s/fd" % leaf).st_uid == 0, "not dumpable")
            if BACKEND == "tcg":  # its files (kernel, root disk, snapshot) on read-only mounts
                held = held_files(leaf)
                expect(len(held) >= 2 and all(m == os.O_RDONLY for _, m in held),
                       "it holds its files read-only", held)
                expect(not [fd for fd, _ in held if reopens_for_writing(leaf, fd)],
                       "no file it holds can be reopened for writing, by root either", held)
            # both run in a pid namespace of their own, under a supervisor outside it (bubblewrap;
            # airlock-vmm's own, vmm/jail_supervisor.c)
            spaces = ("user", "mnt", "net", "ipc", "uts", "pid")
            with open("/proc/%s/limits" % leaf) as f:
                limits = f.read()
            expect(re.search(r"Max core file size\s+0\s+0", limits) and
                   not re.search(r"Max open files\s+unlimited", limits) and
                   not re.search(r"Max address space\s+unlimited", limits) and
                   not re.search(r"Max file size\s+unlimited", limits),
                   "no core dumps, bounded fds, address space and log", limits)
            shared = [n for n in spaces
                      if os.readlink("/proc/%s/ns/%s" % (leaf, n)) ==
                      os.readlink("/proc/self/ns/" + n)]
            expect(not shared, "namespaces of its own", shared)
            root = "/proc/%s/root/" % leaf
            top = set(os.listdir(root))
            allowed = {"bin", "dev", "etc", "lib", "lib64", "proc", "root", "tmp", "usr",
                       "airlock-qemu-preload.so"}
            expect(top <= allowed, "its root holds only what the VM needs", top - allowed)
            if "etc" in top:
                expect(os.listdir(root + "etc") == ["ld.so.cache"], "of /etc, ld.so.cache",
                       os.listdir(root + "etc"))
            for host_path in ("/etc/passwd", "/etc/shadow", os.path.abspath(__file__)):
                expect(not os.path.exists(root + host_path.lstrip("/")),
                       "the host's %s is not there" % host_path)
            if BACKEND == "tcg":  # and binds none of them
                with open("/proc/%s/mountinfo" % leaf) as f:
                    mounts = [l.split()[4] for l in f]
                expect(not [m for m in mounts if "/snapshot-" in m or "/rootfs-" in m],
                       "no image file is mounted in its root", mounts)
    finally:
        s.close()


@test
def each_vm_runs_in_a_cgroup_of_its_own_with_limits():
    """Where the host lets the server make cgroups (v2 delegated to it, or v1), every VM has its
    own with memory, pids and cpu limits, and they are gone with the server; where it does not,
    the server says why and the VMs run without."""
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    # what a killed server would have left: its group, with an empty VM group in it
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = cgroup_of("self")
    stale = ("/sys/fs/cgroup%s/airlock-%d" % (mine.get("", ""), dead.pid) if v2 else
             "/sys/fs/cgroup/pids%s/airlock-%d" % (mine.get("pids", "").rstrip("/"), dead.pid))
    try:
        os.makedirs(stale + "/vm-1")
    except OSError:
        stale = None  # no cgroups here, or no permission: the server will say so
    s = started("--pool", "1")
    try:
        wait_for_pool(s, len(LANGUAGES))
        seen = {}
        for vm in s.vms():
            if stale is not None:  # it is put in its group once it runs: wait for that
                eventually(lambda: expect("/airlock-%d/vm-%s" % (s.proc.pid, vm) in
                                          cgroup_of(vm).get("" if v2 else "memory", ""),
                                          "VM %s in its own group" % vm, cgroup_of(vm)))
            # a wrapper's children are gathered in with it
            g = eventually(lambda: (expect(cgroup_of(leaf_process(vm)) == cgroup_of(vm),
                                           "the VM below its wrapper is in it too",
                                           (cgroup_of(vm), cgroup_of(leaf_process(vm)))),
                                    cgroup_of(vm))[1])
            if v2 and "/airlock-%d/vm-%s" % (s.proc.pid, vm) in g.get("", ""):
                p = g[""]
                seen[vm] = (p, cgroup_limit("", p, "memory.max"), cgroup_limit("", p, "pids.max"),
                            cgroup_limit("", p, "cpu.max"))
            elif not v2 and "/airlock-%d/vm-%s" % (s.proc.pid, vm) in g.get("memory", ""):
                seen[vm] = (g["memory"],
                            cgroup_limit("memory", g["memory"], "memory.limit_in_bytes"),
                            cgroup_limit("pids", g["pids"], "pids.max"),
                            "%s %s" % (cgroup_limit("cpu", g["cpu"], "cpu.cfs_quota_us"),
                                       cgroup_limit("cpu", g["cpu"], "cpu.cfs_period_us")))
                expect(g["pids"].endswith("/vm-%s" % vm) and g["cpu"].endswith("/vm-%s" % vm),
                       "its pids and cpu groups too", g)
        vms = s.vms()
        s.proc.stdin.close()
        s.proc.wait(timeout=10)
        err = s.proc.stderr.read().decode(errors="replace")
    finally:
        s.close()
    expect(vms, "the pool's VMs were there", vms)
    if stale is None:
        # this test could not make a group either: the server must say why, and group nothing
        expect("VMs run without cgroup limits:" in err,
               "the server says it runs VMs without cgroup limits", err[-500:])
        expect(not seen, "no VM in a group when the server says it makes none", seen)
        print("# no cgroups here: %s" % err.split("VMs run without cgroup limits:")[1]
              .splitlines()[0].strip(), flush=True)
        return
    # this test just made a group where the server makes its own: so must the server
    expect("VMs run without cgroup limits" not in err, "the server makes groups here",
           err[-500:])
    expect(sorted(seen) == sorted(vms), "every VM in a group of its own", (seen, vms))
    for vm, (path, memory, pids, cpu) in seen.items():
        expect(memory == str((512 + 512) << 20), "memory: guest RAM + 512 MiB", memory)
        expect(pids == "64", "pids: 64", pids)
        expect(cpu == "200000 100000", "cpu: two CPUs' worth (the vCPU, the monitor's I/O)", cpu)
    path = next(iter(seen.values()))[0]
    parent = "/sys/fs/cgroup/%s%s" % ("" if v2 else "memory", os.path.dirname(path))
    expect(not os.path.exists(parent), "the server's groups are gone after it", parent)
    expect(stale is None or not os.path.exists(stale),
           "a killed server's leftover groups are removed at start", stale)


@test
def bad_lines_get_errors_and_the_server_keeps_serving():
    s = started()
    try:
        cases = [
            (b"{not json\n", -32700, None),
            (b"\xff\xfe\x00binary\x01\n", -32700, None),
            (b'{"jsonrpc":"2.0","id":1,"method":"ping"\n', -32700, None),   # cut short
            (b"[1,2]\n", -32600, None),                                      # a batch
            (b"42\n", -32600, None),
            (b'{"id":5,"method":"ping"}\n', -32600, 5),                      # no jsonrpc
            (b'{"jsonrpc":"1.0","id":6,"method":"ping"}\n', -32600, 6),
            (b'{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}\n', -32600, None),
            (b'{"jsonrpc":"2.0","id":7,"method":3}\n', -32600, 7),
            (b'{"jsonrpc":"2.0","id":8}\n', -32600, 8),                       # no method
            (b'{"jsonrpc":"2.0","id":9,"method":"ping","params":[1]}\n', -32602, 9),
            (b'{"jsonrpc":"2.0","id":10,"method":"resources/list"}\n', -32601, 10),
            (b'{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"rm_rf"}}\n',
             -32602, 11),
            (b'{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{}}\n', -32602, 12),
        ]
        for line, code, id in cases:
            s.send_raw(line)
            r = s.take(lambda m: "error" in m)
            expect(r["error"]["code"] == code and r.get("id") == id, repr(line), r)
            expect(s.request("alive", "ping")["result"] == {}, "still serving after " + repr(line))
        # messages that get no reply at all
        s.send_raw(b"\n   \n\r\n")
        s.send({"jsonrpc": "2.0", "method": "notifications/whatever"})
        s.send({"jsonrpc": "2.0", "id": 99, "result": {}})  # a response to nothing
        s.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": "never-sent"}})
        r = s.request("after", "ping")
        expect(r["result"] == {} and not s.messages, "no reply to those", s.messages)
    finally:
        s.close()


@test
def oversized_line_is_refused_and_skipped():
    s = started()
    try:
        big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * (16 << 20) + b'"}}\n'
        s.send_raw(big)
        r = s.take(lambda m: "error" in m)
        expect(r["error"]["code"] == -32600 and r["id"] is None and "16 MiB" in r["error"]["message"],
               "oversized", r)
        expect(s.request(2, "ping")["result"] == {}, "serving after it")
    finally:
        s.close()


@test
def requests_before_initialize_are_served():
    s = Server()
    try:
        r = s.request(1, "tools/list")
        tool = r["result"]["tools"][0]
        expect(tool["name"] == "execute_code", "tools/list", r)
        schema = tool["inputSchema"]
        expect(schema["additionalProperties"] is False and schema["required"] == ["code"],
               "input schema", schema)
        expect(set(tool["outputSchema"]["properties"]) == {
            "exit_code", "signal", "timed_out", "stdout", "stderr", "stdout_truncated",
            "stderr_truncated", "duration_ms", "files", "network", "install", "advisories",
            "state_id", "state_expires_at", "state_error"},
            "output schema", tool)
        expect({"keep_state", "state_id"} <= set(schema["properties"]), "kept state's inputs",
               schema)
        expect("There is no network access." in tool["description"], "no network said", tool)
        expect("packages" in schema["properties"], "packages in the input schema", schema)
    finally:
        s.close()


def fits_schema(value, schema):
    """The subset of JSON Schema the tool's outputSchema uses: type, required, properties,
    additionalProperties false, items. Returns None or what does not fit."""
    types = schema.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        py = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
              "integer": int, "number": (int, float)}
        if not any(isinstance(value, py[t]) and not (t in ("integer", "number") and
                                                     isinstance(value, bool)) for t in types):
            return "%r is not %s" % (value, types)
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                return "missing %s" % k
        props = schema.get("properties", {})
        for k, v in value.items():
            if k not in props:
                if schema.get("additionalProperties") is False:
                    return "unexpected %s" % k
                continue
            why = fits_schema(v, props[k])
            if why:
                return k + ": " + why
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            why = fits_schema(v, schema["items"])
            if why:
                return "[%d]: %s" % (i, why)
    return None


@test
def allowed_hosts_are_told_and_results_fit_the_output_schema():
    s = started("--allow-host", "api.example.com", "--allow-host", "*.pypi.test:8443",
                "--scan", "warn")
    try:
        tool = s.request(1, "tools/list")["result"]["tools"][0]
        for text in (tool["description"], s.init_result["result"]["instructions"]):
            expect("api.example.com, *.pypi.test:8443" in text and "403" in text,
                   "the reachable hosts are listed", text)
        r = s.call("c", {"code": "import urllib.request, urllib.error, subprocess\n"
                                 "try:\n    urllib.request.urlopen('http://example.com/')\n"
                                 "except urllib.error.HTTPError as e:\n    print(e.code)"})["result"]
        sc = r["structuredContent"]
        expect(sc["stdout"] == "403\n", "refused through the proxy", r)
        expect(sc["network"][0]["host"] == "example.com" and not sc["network"][0]["allowed"],
               "network listed", sc)
        expect(sc["advisories"] and sc["advisories"][0]["rule"] == "import", "advisories", sc)
        why = fits_schema(sc, tool["outputSchema"])
        expect(why is None, "structuredContent fits outputSchema: %s" % why, sc)
        r = s.call("p", {"code": "1", "packages": ["numpy"]})["result"]
        text = r["content"][0]["text"]
        expect(r["isError"] and "packages" in text and "--pip-index" in text,
               "packages without an index: refused, naming the flag", r)
    finally:
        s.close()


@test
def argument_errors_name_the_field():
    s = started()
    try:
        for args, field in (({}, "code"), ({"code": 1}, "code"),
                            ({"code": "1", "language": "cobol"}, "language"),
                            ({"code": "1", "timeout_s": 0}, "timeout_s"),
                            ({"code": "1", "timeout_s": "10"}, "timeout_s"),
                            ({"code": "1", "stdin": 5}, "stdin"),
                            ({"code": "1", "extra": True}, "extra"),
                            ({"code": "1", "files": {}}, "files"),
                            ({"code": "1", "files": [{"path": "../x", "content": ""}]}, "files[0].path"),
                            ({"code": "1", "files": [{"path": "/etc/x", "content": ""}]}, "files[0].path"),
                            ({"code": "1", "files": [{"path": "a", "content": "!", "encoding": "base64"}]},
                             "files[0].content"),
                            ({"code": "1", "files": [{"path": "a", "content": "", "mode": 7}]}, "mode")):
            r = s.call("a", args)["result"]
            text = r["content"][0]["text"]
            expect(r["isError"] and field in text and "Invalid arguments" in text, field, r)
    finally:
        s.close()


@test
def slow_call_does_not_block_ping_or_other_calls():
    s = started()
    try:
        s.send({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
                "params": {"name": "execute_code",
                           "arguments": {"code": "import time; time.sleep(4); print('slow')"}}})
        wait_for_vm(s)
        t = time.monotonic()
        expect(s.request("p", "ping")["result"] == {}, "ping")
        expect(time.monotonic() - t < 0.5, "ping answered in %.3f s" % (time.monotonic() - t))
        fast = s.call("fast", {"code": "print('fast')"})["result"]
        expect(fast["structuredContent"]["stdout"] == "fast\n", "fast call", fast)
        expect(not any(m.get("id") == "slow" for m in s.messages), "fast finished first")
        slow = s.reply("slow")["result"]
        expect(slow["structuredContent"]["stdout"] == "slow\n", "slow call", slow)
    finally:
        s.close()


@test
def progress_is_reported_every_second():
    s = started()
    try:
        r = s.call(1, {"code": "import time\nfor i in range(4):\n    print(i, flush=True); time.sleep(1)"},
                   meta={"progressToken": "tok"})
        progress = [m for m in s.messages if m.get("method") == "notifications/progress"]
        expect(len(progress) >= 3, "at least 3 progress notifications in ~4 s", progress)
        values = [p["params"]["progress"] for p in progress]
        expect(all(p["params"]["progressToken"] == "tok" for p in progress), "token echoed")
        expect(values == sorted(values) and len(set(values)) == len(values), "increasing", values)
        expect("bytes of output" in progress[-1]["params"]["message"], "message", progress[-1])
        expect(r["result"]["structuredContent"]["stdout"] == "0\n1\n2\n3\n", "result", r)
    finally:
        s.close()


@test
def progress_shows_the_output_as_it_comes():
    """Each notifications/progress carries the lines completed since the one before, stderr's
    marked: together, in order, every line the program printed while it ran, each once. (No
    flush in the program: python's buffer goes out after 10 ms by itself.)"""
    s = started()
    try:
        code = ("import sys, time\n"
                "for i in range(4):\n"
                "    print('line', i); print('problem', i, file=sys.stderr); time.sleep(1)\n")
        r = s.call(1, {"code": code}, meta={"progressToken": 7})
        progress = [m["params"]["message"] for m in s.messages
                    if m.get("method") == "notifications/progress"]
        shown = [line for m in progress for line in m.split("\n")[1:]]
        want = [x for i in range(4) for x in ("line %d" % i, "[stderr] problem %d" % i)]
        expect(shown == want[:len(shown)] and len(shown) >= 4,
               "the lines, in order, each once, as they came", progress)
        expect(progress and "stdout" in progress[0].split("\n")[0], "counts first", progress)
        expect(r["result"]["structuredContent"]["stderr"].count("problem") == 4, "result", r)
    finally:
        s.close()


@test
def cancellation_kills_the_vm_quickly_and_sends_no_result():
    s = started("--pool", "0")  # the victim is then the only VM
    try:
        s.send({"jsonrpc": "2.0", "id": "victim", "method": "tools/call",
                "params": {"name": "execute_code", "arguments": {"code": "import time; time.sleep(30)"}}})
        wait_for_vm(s)
        victims = s.vms()
        s.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": "victim", "reason": "test"}})
        took = wait_until_gone(victims, 5)
        expect(took is not None and took < 0.1, "VM gone %s after the cancel" %
               ("%.0f ms" % (took * 1000) if took is not None else "not within 5 s"))
        r = s.call("next", {"code": "print('after')"})
        expect(r["result"]["structuredContent"]["stdout"] == "after\n", "next call works", r)
        expect(s.request("last", "ping")["result"] == {}, "ping")  # all it sent before is read
        expect(not any(m.get("id") == "victim" for m in s.messages), "no result for it", s.messages)
    finally:
        s.close()


@test
def eof_kills_running_vms_and_exits_zero_within_a_second():
    s = started()
    try:
        s.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "execute_code", "arguments": {"code": "import time; time.sleep(30)"}}})
        wait_for_vm(s)
        vms = s.vms()
        t = time.monotonic()
        s.proc.stdin.close()
        s.proc.stdin = None
        status = s.proc.wait(timeout=5)
        took = time.monotonic() - t
        expect(status == 0 and took < 1.0, "exit %s after %.2f s" % (status, took))
        alive = [p for p in vms if os.path.exists("/proc/%s" % p)]
        expect(not alive, "VMs killed", alive)
    finally:
        s.close()


@test
def sigterm_kills_running_vms_and_exits_zero():
    s = started()
    try:
        s.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "execute_code", "arguments": {"code": "import time; time.sleep(30)"}}})
        wait_for_vm(s)
        vms = s.vms()
        t = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        status = s.proc.wait(timeout=5)
        took = time.monotonic() - t
        expect(status == 0 and took < 1.0, "exit %s after %.2f s" % (status, took))
        expect(not [p for p in vms if os.path.exists("/proc/%s" % p)], "VMs killed")
        expect(b"SIGTERM" in s.proc.stderr.read(), "logged on stderr")
    finally:
        s.close()


@test
def stdin_may_be_a_plain_file():
    with tempfile.TemporaryFile() as f:
        f.write(json.dumps(INIT).encode() + b"\n")
        f.write(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n{"jsonrpc":"2.0","id":2,"method":"tools/list"}')
        f.seek(0)
        p = subprocess.run([AIRLOCK, "mcp", "--backend", BACKEND], stdin=f, capture_output=True,
                           timeout=30)
    lines = [json.loads(x) for x in p.stdout.decode().splitlines()]
    expect(p.returncode == 0 and [m["id"] for m in lines] == [0, 1, 2], "replies", lines)
    expect(lines[2]["result"]["tools"][0]["name"] == "execute_code", "last line without newline")


@test
def a_crashing_vm_is_an_error_result_and_the_server_lives_on():
    s = started("--pool", "0")  # the call's VM is then the only one
    try:
        # The guest kernel is made to panic from inside: the program cannot do that as uid
        # 1000, so kill the VM process from the host instead, as a crash would end it.
        s.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "execute_code", "arguments": {"code": "import time; time.sleep(30)"}}})
        wait_for_vm(s)
        time.sleep(0.3)
        for pid in s.vms():
            os.kill(int(pid), signal.SIGKILL)
        r = s.reply(1)["result"]
        text = r["content"][0]["text"]
        expect(r["isError"] and "Sandbox error" in text and "airlock doctor" in text, "error", r)
        r = s.call(2, {"code": "print('alive')"})
        expect(r["result"]["structuredContent"]["stdout"] == "alive\n", "still serving", r)
    finally:
        s.close()


@test
def logging_level_can_be_set():
    s = started()
    try:
        expect(s.request(1, "logging/setLevel", {"level": "debug"})["result"] == {}, "debug")
        r = s.request(2, "logging/setLevel", {"level": "loud"})
        expect(r["error"]["code"] == -32602, "bad level", r)
        s.call(3, {"code": "print(1)"})
        # a cancelled call is logged at debug level (mcp/protocol/server.c)
        s.send({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                "params": {"name": "execute_code", "arguments": {"code": "import time; time.sleep(30)"}}})
        s.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 4}})
        cancelled = s.take(lambda m: m.get("method") == "notifications/message" and
                           "cancel" in m["params"].get("data", ""), timeout=30)
        expect(s.request(5, "ping")["result"] == {}, "ping")
        logs = [cancelled] + [m for m in s.messages if m.get("method") == "notifications/message"]
        expect(all(m["params"]["logger"] == "airlock" and m["params"]["level"] in
                   ("debug", "info", "notice", "warning", "error", "critical") and
                   isinstance(m["params"]["data"], str) for m in logs), "log shape", logs)
    finally:
        s.close()


@test
def warm_pool_serves_calls_and_refills_after_a_burst():
    s = started("--pool", "1", "--max-concurrent", "4")
    try:
        wait_for_pool(s, len(LANGUAGES))  # one per language
        seen = set(s.vms())
        for i in range(3):
            r = s.call("seq%d" % i, {"code": "print(%d)" % i})
            expect(r["result"].get("structuredContent", {}).get("stdout") == "%d\n" % i,
                   "answered", r)
        # a burst of 12 over 4 slots: every call answered, in fresh VMs, then the pool refills
        for i in range(12):
            s.send({"jsonrpc": "2.0", "id": "b%d" % i, "method": "tools/call",
                    "params": {"name": "execute_code",
                               "arguments": {"code": "echo $$ burst %d" % i, "language": "bash"}}})
        for i in range(12):
            r = s.reply("b%d" % i, timeout=120)
            expect(r["result"].get("structuredContent", {}).get("stdout", "").endswith(
                "burst %d\n" % i), "burst", r)
        wait_for_pool(s, len(LANGUAGES))
        eventually(lambda: expect(len(s.vms()) == len(LANGUAGES), "back to one idle VM per language",
                                  s.vms()), timeout=10)
        # python and bash served (their VMs are new); javascript's and go's wait still
        expect(len(set(s.vms()) & seen) == len(LANGUAGES) - 2, "the VMs that served were destroyed",
               (seen, s.vms()))
    finally:
        s.close()


@test
def vms_die_with_a_killed_server():
    """The kernel ends every VM of a server killed with SIGKILL, and nothing of theirs is left
    in the temporary directory (each VM's log is unlinked as soon as it is made: until
    2026-12-07 a directory per VM stayed behind)."""
    tmp = tempfile.gettempdir()
    before = {n for n in os.listdir(tmp) if n.startswith("airlock-vm")}
    s = started("--pool", "1")
    try:
        s.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "execute_code", "arguments": {"code": "import time; time.sleep(30)"}}})
        wait_for_pool(s, len(LANGUAGES) + 1)  # one waiting per language, one running
        vms = s.vms()
        s.proc.kill()  # no chance to clean up: the kernel must end its VMs
        s.proc.wait()
        def running(pid):  # a zombie left for init to reap counts as gone
            try:
                with open("/proc/%s/stat" % pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                return False

        deadline = time.monotonic() + 2
        while [p for p in vms if running(p)] and time.monotonic() < deadline:
            time.sleep(0.02)
        alive = [p for p in vms if running(p)]
        expect(not alive, "VMs gone within 2 s of SIGKILL", alive)
        left = {n for n in os.listdir(tmp) if n.startswith("airlock-vm")} - before
        expect(not left, "nothing of the VMs left in %s" % tmp, sorted(left))
    finally:
        s.close()



# ---- bounds and answers (outside review 2026-12-06, items 7 and 8) ----

def call_message(id, arguments):
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "execute_code", "arguments": arguments}}


@test
def calls_past_max_queued_are_refused_at_once():
    """--max-concurrent 1 --max-queued 2: one call runs, two wait, the fourth is refused at once
    (before any of the others ends) and the three others complete."""
    s = started("--pool", "0", "--max-concurrent", "1", "--max-queued", "2")
    try:
        # calls wait for the server's check of its images at start: once one call has run, the
        # next one starts at once
        r = s.call("ready", {"code": "print('ready')"})["result"]
        expect(r["structuredContent"]["stdout"] == "ready\n", "a first call", r)
        calls = [call_message("run", {"code": "import time; time.sleep(3); print('run')"}),
                 call_message("wait1", {"code": "print('wait1')"}),
                 call_message("wait2", {"code": "print('wait2')"}),
                 call_message("busy", {"code": "print('busy')"})]
        # one write: the server frames the four lines in one go, so the refusal cannot depend
        # on how fast the first call runs
        s.send_raw(b"".join(json.dumps(c).encode() + b"\n" for c in calls))
        first = s.take(lambda m: m.get("id") in ("run", "wait1", "wait2", "busy"), timeout=60)
        expect(first["id"] == "busy", "the refusal comes first", first)
        r = first["result"]
        expect(r["isError"] and r["content"][0]["text"] ==
               "airlock is busy: 2 calls are already waiting", "the busy result", r)
        for id in ("run", "wait1", "wait2"):
            r = s.reply(id, timeout=120)["result"]
            expect(not r["isError"] and r["structuredContent"]["stdout"] == id + "\n",
                   id + " completed", r)
        r = s.call("after", {"code": "print('after')"})["result"]
        expect(r["structuredContent"]["stdout"] == "after\n", "the queue takes calls again", r)
    finally:
        s.close()


@test
def user_text_cut_inside_a_character_still_gets_an_answer():
    """Error texts quote at most N bytes of the client's text; cut inside a UTF-8 character, the
    answer could not be encoded and none was sent (tools/call named 199 x 'a' + 'é'), or an
    empty result was."""
    s = started()
    try:
        r = s.request(1, "tools/call", {"name": "a" * 199 + "é"})
        expect(r["error"]["code"] == -32602 and
               r["error"]["message"].startswith("Unknown tool: aaaa"), "tool name", r)
        r = s.request(2, "a" * 199 + "é")
        expect(r["error"]["code"] == -32601 and
               r["error"]["message"].startswith("Method not found: aaaa"), "method", r)
        for id, args, field in (
                (3, {"code": "1", "b" * 63 + "é": 1}, "unknown argument"),
                (4, {"code": "1", "files": [{"path": "p", "content": "", "b" * 63 + "é": 1}]},
                 "files[0]: unknown field"),
                (5, {"code": "1", "files": [{"path": "c" * 99 + "é/../x", "content": ""}]},
                 "files[0].path")):
            r = s.call(id, args)["result"]
            text = r["content"][0]["text"]
            expect(r["isError"] and text.startswith("Invalid arguments: " + field), field, r)
        expect(s.request("alive", "ping")["result"] == {}, "still serving")
    finally:
        s.close()


def peak_rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024


@test
def a_client_that_stops_reading_does_not_grow_the_server():
    """The client sends 200 pings with 1 MiB ids (200 MiB of answers) and a call, and reads
    nothing: the server stops reading past 64 MiB of unread output, so its peak RSS stays far
    below what it would hold otherwise; once the client reads, every answer comes, the call's
    result too."""
    count = 200
    asan = os.environ.get("ASAN_OPTIONS")
    # for the ASan build: freed memory held in quarantine would count as the server's own
    os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=8"
    try:
        s = started("--pool", "0")
    finally:
        if asan is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = asan
    written = [0]

    def writer():
        pad = "x" * (1 << 20)
        try:
            for i in range(count):
                s.send({"jsonrpc": "2.0", "id": "%03d%s" % (i, pad), "method": "ping"})
                written[0] += 1
        except (BrokenPipeError, ValueError):
            pass

    try:
        s.send(call_message("call", {"code": "import time; time.sleep(1); print('call done')"}))
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        # until the server stops reading (the writer blocks on a full pipe for 3 s) or has read
        # everything
        seen, still, deadline = -1, 0, time.monotonic() + 120
        while t.is_alive() and still < 6 and time.monotonic() < deadline:
            time.sleep(0.5)
            still = still + 1 if written[0] == seen else 0
            seen = written[0]
        stalled_at = written[0]
        ids = []
        while len(ids) < count:
            m = s.take(lambda m: "id" in m and m["id"] != "call", timeout=120)
            ids.append(m["id"][:3])
        result = s.reply("call", timeout=120)["result"]
        peak = peak_rss_mib(s.proc.pid)
        print("# the server stopped reading after %d of %d requests; peak RSS %.0f MiB"
              % (stalled_at, count, peak), flush=True)
        t.join(timeout=30)
        expect(ids == ["%03d" % i for i in range(count)], "every answer, in order", ids[:5])
        expect(result["structuredContent"]["stdout"] == "call done\n", "the call's result", result)
        expect(stalled_at < count, "the server stopped reading", stalled_at)
        expect(peak < 150, "peak RSS %.0f MiB < 150 MiB" % peak)
    finally:
        s.close()


@test
def sigterm_ends_a_server_whose_client_stopped_reading():
    """SIGTERM ends the server within seconds even when its client never reads again: output the
    client left unread holds the end up for at most 2 s (RPC_CLOSE_DRAIN_MS)."""
    s = started("--pool", "0")
    try:
        def writer():
            pad = "x" * (1 << 20)
            try:
                for i in range(100):
                    s.send({"jsonrpc": "2.0", "id": "%03d%s" % (i, pad), "method": "ping"})
            except (BrokenPipeError, ValueError, OSError):
                pass
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        t.join(timeout=8)  # it blocks once the server stops reading: output is backed up
        expect(t.is_alive(), "the server stopped reading (its output backed up)")
        s.proc.send_signal(signal.SIGTERM)
        started_at = time.monotonic()
        try:
            status = s.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            status = None
            s.proc.kill()  # the writer, blocked on its pipe, then ends too
        took = time.monotonic() - started_at
        t.join(timeout=10)
        expect(status == 0, "the server exited 0 (status %r)" % status)
        expect(took < 15, "ended %.1f s after SIGTERM" % took)
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
