#!/usr/bin/env python3
"""`airlock mcp` on stdio in both protocol eras: stateless 2026-07-28 (server/discover, version
and capabilities in each request's _meta, resultType, per-request log level, cancellation, the
tasks extension) beside the initialize era on one stdin; and the audit log (--audit-log). VMs
run on $AIRLOCK_TEST_BACKEND (default tcg)."""
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SLOWDOWN, expect, main, test, wait_until_gone  # noqa: E402
from mcp_session import BACKEND, INIT, Server  # noqa: E402

V2026 = "2026-07-28"
PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"
INFO = "io.modelcontextprotocol/clientInfo"
LOG_LEVEL = "io.modelcontextprotocol/logLevel"
SERVER_INFO = "io.modelcontextprotocol/serverInfo"
TASKS = "io.modelcontextprotocol/tasks"
WITH_TASKS = {"extensions": {TASKS: {}}}
AUDIT_KEYS = {"time", "client", "tool", "language", "code_sha256", "limits", "duration_ms",
              "exit_code", "signal", "timed_out", "bytes_out", "network", "state_from",
              "state_kept", "backend"}  # SPEC.md, "Audit log"


def meta(caps=None, extra=None, name="eras-test"):
    m = {PV: V2026, CAPS: caps if caps is not None else {}, INFO: {"name": name, "version": "1"}}
    m.update(extra or {})
    return m


def modern_message(id, method, params=None, caps=None, extra=None, name="eras-test"):
    return {"jsonrpc": "2.0", "id": id, "method": method,
            "params": dict(params or {}, _meta=meta(caps, extra, name))}


def modern(s, id, method, params=None, caps=None, extra=None, timeout=60, name="eras-test"):
    s.send(modern_message(id, method, params, caps, extra, name))
    return s.reply(id, timeout)


def modern_call(s, id, code, caps=None, extra=None, timeout=120, name="eras-test", **args):
    return modern(s, id, "tools/call", {"name": "execute_code", "arguments": dict(args, code=code)},
                  caps, extra, timeout, name)


def send_call(s, id, code, caps=None, extra=None, **args):
    s.send(modern_message(id, "tools/call",
                          {"name": "execute_code", "arguments": dict(args, code=code)},
                          caps, extra))


def expect_error(r, code, what):
    expect("error" in r and r["error"]["code"] == code, "%s: error %d" % (what, code), r)
    return r["error"]


def expect_complete(result, what):
    expect(result.get("resultType") == "complete", "%s: resultType complete" % what, result)
    info = result.get("_meta", {}).get(SERVER_INFO, {})
    expect(info.get("name") == "airlock", "%s: serverInfo in _meta" % what, result)


def wait_for_vm(s, timeout=30):
    deadline = time.monotonic() + timeout * SLOWDOWN
    while not s.vms():
        expect(time.monotonic() < deadline, "a VM started")
        time.sleep(0.02)
    return s.vms()


# ---- server/discover and the 2026-07-28 envelope ----

@test
def server_discover_describes_both_eras():
    s = Server()
    try:
        r = modern(s, "d", "server/discover")["result"]
        expect(V2026 in r["supportedVersions"] and "2025-11-25" in r["supportedVersions"],
               "supportedVersions", r)
        caps = r["capabilities"]
        expect(isinstance(caps.get("tools"), dict), "capabilities.tools", r)
        expect(isinstance(caps.get("extensions", {}).get(TASKS), dict),
               "capabilities.extensions has the tasks extension", r)
        expect(isinstance(r.get("ttlMs"), int) and r["ttlMs"] >= 0 and
               r.get("cacheScope") in ("public", "private"), "ttlMs, cacheScope", r)
        expect_complete(r, "server/discover")
        expect(isinstance(r["_meta"][SERVER_INFO].get("version"), str), "serverInfo.version", r)
        expect(isinstance(r.get("instructions"), str) and r["instructions"], "instructions", r)
    finally:
        s.close()


@test
def a_2026_request_without_client_capabilities_gets_32602():
    s = Server()
    try:
        for id, caps in (("none", None), ("string", "tools"), ("list", [])):
            msg = modern_message(id, "tools/list")
            if caps is None:
                del msg["params"]["_meta"][CAPS]
            else:
                msg["params"]["_meta"][CAPS] = caps
            s.send(msg)
            expect_error(s.reply(id), -32602, "clientCapabilities %r" % (caps,))
        expect("result" in modern(s, "ok", "tools/list"), "with them: served")
    finally:
        s.close()


@test
def an_unknown_version_gets_32022_with_supported_and_requested():
    s = Server()
    try:
        for id, method in (("d", "server/discover"), ("l", "tools/list"), ("c", "tools/call")):
            msg = modern_message(id, method, {"name": "execute_code",
                                              "arguments": {"code": "print(1)"}}
                                 if method == "tools/call" else None)
            msg["params"]["_meta"][PV] = "2099-01-01"
            s.send(msg)
            err = expect_error(s.reply(id), -32022, method)
            data = err.get("data", {})
            expect(V2026 in data.get("supported", []) and "2025-11-25" in data["supported"] and
                   data.get("requested") == "2099-01-01", "data.supported, data.requested", err)
    finally:
        s.close()


@test
def ping_set_level_and_initialize_are_not_2026_methods():
    s = Server()
    try:
        for id, method, params in (("p", "ping", None),
                                   ("l", "logging/setLevel", {"level": "debug"}),
                                   ("i", "initialize", INIT["params"])):
            expect_error(modern(s, id, method, params), -32601, method)
        # the initialize era's own still work on the same stdin
        expect(s.request("legacy-ping", "ping")["result"] == {}, "a legacy ping")
    finally:
        s.close()


@test
def every_2026_result_has_result_type():
    s = Server()
    try:
        expect_complete(modern(s, 1, "server/discover")["result"], "server/discover")
        expect_complete(modern(s, 2, "tools/list")["result"], "tools/list")
        r = modern_call(s, 3, "print('ok')")["result"]
        expect_complete(r, "tools/call")
        expect(r["structuredContent"]["stdout"] == "ok\n", "the call ran", r)
        r = modern_call(s, 4, "raise SystemExit(2)")["result"]
        expect_complete(r, "a failed tools/call")
        expect(r["isError"], "isError", r)
        r = modern_call(s, 5, "x", language="cobol")["result"]
        expect_complete(r, "a tools/call with bad arguments")
    finally:
        s.close()


@test
def tools_list_in_2026_is_cacheable():
    s = Server()
    try:
        r = modern(s, 1, "tools/list")["result"]
        expect(r["tools"][0]["name"] == "execute_code", "the tool", r)
        expect(isinstance(r.get("ttlMs"), int) and r["ttlMs"] >= 0 and
               r.get("cacheScope") in ("public", "private"), "ttlMs, cacheScope", r)
    finally:
        s.close()


@test
def initialize_answers_each_era_on_one_stdin():
    s = Server()
    try:
        r = s.request(1, "initialize", dict(INIT["params"], protocolVersion="2025-06-18"))
        expect(r["result"]["protocolVersion"] == "2025-06-18", "2025-06-18 for 2025-06-18", r)
        r = s.request(2, "initialize", dict(INIT["params"], protocolVersion=V2026))
        expect(r["result"]["protocolVersion"] == "2025-11-25",
               "initialize asking 2026-07-28 gets the newest initialize-era version", r)
        expect(r["result"]["serverInfo"]["name"] == "airlock", "serverInfo", r)
        s.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        r = modern(s, 3, "server/discover")
        expect(V2026 in r["result"]["supportedVersions"], "2026-07-28 beside it", r)
        expect(s.request(4, "ping")["result"] == {}, "and the initialize era's ping")
        r = s.request(5, "tools/list")["result"]
        expect(r["tools"][0]["name"] == "execute_code", "legacy tools/list", r)
    finally:
        s.close()


@test
def a_2026_call_gets_log_messages_only_when_it_asks():
    """A call whose VM dies is logged at warning level ("sandbox failure"): as
    notifications/message before its result when its _meta asks for a log level, never
    otherwise. The VM is killed from the host, as a crash would end it."""
    s = Server("--pool", "0")
    try:
        for id, extra in (("quiet", None), ("told", {LOG_LEVEL: "debug"})):
            send_call(s, id, "import time; time.sleep(30)", extra=extra)
            wait_for_vm(s)
            time.sleep(0.3)
            for pid in s.vms():
                os.kill(int(pid), signal.SIGKILL)
            r = s.reply(id, timeout=30)
            expect(r["result"]["isError"], "the call failed", r)
            logs = [m for m in s.messages if m.get("method") == "notifications/message"]
            s.messages.clear()
            if extra is None:
                expect(not logs, "no log line without _meta's logLevel", logs)
            else:
                expect(logs and all(m["params"]["level"] in ("warning", "error") and
                                    m["params"]["logger"] == "airlock" for m in logs) and
                       any("sandbox failure" in m["params"]["data"] for m in logs),
                       "the failure logged to the call that asked", logs)
        s.send(modern_message("bad", "tools/list", extra={LOG_LEVEL: "loud"}))
        expect_error(s.reply("bad"), -32602, "an unknown level")
    finally:
        s.close()


@test
def cancelling_a_running_2026_call_kills_its_vm_and_sends_no_result():
    s = Server("--pool", "0")
    try:
        send_call(s, "victim", "import time; time.sleep(30)")
        victims = wait_for_vm(s)
        time.sleep(0.2)
        s.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": "victim", "reason": "test"}})
        took = wait_until_gone(victims, 5)
        expect(took is not None and took < 1, "VM gone %s after the cancel" %
               ("%.0f ms" % (took * 1000) if took is not None else "not within 5 s"))
        r = modern_call(s, "next", "print('after')")
        expect(r["result"]["structuredContent"]["stdout"] == "after\n", "the next call works", r)
        expect(not any(m.get("id") == "victim" for m in s.messages), "no result for it",
               s.messages)
    finally:
        s.close()


# ---- the tasks extension ----

def poll_task(s, task_id, until, timeout=60):
    deadline = time.monotonic() + timeout * SLOWDOWN
    n = 0
    while True:
        n += 1
        r = modern(s, "get%d" % n, "tasks/get", {"taskId": task_id}, WITH_TASKS)
        expect("result" in r, "tasks/get", r)
        if r["result"]["status"] in until:
            return r["result"]
        expect(time.monotonic() < deadline, "task %s reached %s" % (task_id, until), r)
        time.sleep(0.2)


@test
def a_long_call_from_a_client_with_tasks_becomes_a_task():
    s = Server()
    try:
        r = modern_call(s, "long", "import time; time.sleep(1.5); print('done')",
                        caps=WITH_TASKS, timeout_s=60)["result"]
        expect(r.get("resultType") == "task", "resultType task", r)
        expect(isinstance(r.get("taskId"), str) and r["taskId"] and r["status"] == "working" and
               isinstance(r.get("pollIntervalMs"), int) and r["pollIntervalMs"] > 0,
               "taskId, status working, pollIntervalMs", r)
        expect(re.match(r"\d{4}-\d\d-\d\dT", r.get("createdAt", "")) and "ttlMs" in r,
               "createdAt, ttlMs", r)
        first = modern(s, "g0", "tasks/get", {"taskId": r["taskId"]}, WITH_TASKS)["result"]
        expect(first["status"] == "working" and first["taskId"] == r["taskId"],
               "working while the program runs", first)
        expect_complete(first, "tasks/get")
        done = poll_task(s, r["taskId"], ("completed", "failed", "cancelled"))
        expect(done["status"] == "completed", "completed", done)
        expect(done["result"]["structuredContent"]["stdout"] == "done\n" and
               not done["result"]["isError"], "the call's result in the task", done)
        expect(not any(m.get("id") == "long" for m in s.messages),
               "the call's id got no second answer", s.messages)
    finally:
        s.close()


@test
def tasks_cancel_stops_a_sleeping_task_and_its_vm():
    s = Server("--pool", "0")
    try:
        r = modern_call(s, "long", "import time; time.sleep(30)", caps=WITH_TASKS,
                        timeout_s=60)["result"]
        expect(r.get("resultType") == "task", "a task", r)
        vms = wait_for_vm(s)
        time.sleep(0.2)
        c = modern(s, "cancel", "tasks/cancel", {"taskId": r["taskId"]}, WITH_TASKS)
        expect_complete(c["result"], "tasks/cancel")
        took = wait_until_gone(vms, 5 * SLOWDOWN)
        expect(took is not None and took < 2, "the VM gone after tasks/cancel",
               [p for p in vms if os.path.exists("/proc/%s" % p)])
        g = modern(s, "g", "tasks/get", {"taskId": r["taskId"]}, WITH_TASKS)["result"]
        expect(g["status"] == "cancelled" and "result" not in g, "tasks/get: cancelled", g)
        time.sleep(0.5)
        g = modern(s, "g2", "tasks/get", {"taskId": r["taskId"]}, WITH_TASKS)["result"]
        expect(g["status"] == "cancelled", "still cancelled once the VM is gone", g)
    finally:
        s.close()


@test
def tasks_get_without_the_extension_gets_32021():
    s = Server()
    try:
        r = modern_call(s, "long", "print('t')", caps=WITH_TASKS, timeout_s=60)["result"]
        expect(r.get("resultType") == "task", "a task", r)
        err = expect_error(modern(s, "g", "tasks/get", {"taskId": r["taskId"]}), -32021,
                           "tasks/get without the extension")
        expect(TASKS in err.get("data", {}).get("requiredCapabilities", {})
               .get("extensions", {}), "data names the extension", err)
        expect_error(modern(s, "c", "tasks/cancel", {"taskId": r["taskId"]}), -32021,
                     "tasks/cancel without it")
        expect_error(s.request("legacy", "tasks/get", {"taskId": r["taskId"]}), -32601,
                     "tasks/get in the initialize era")
    finally:
        s.close()


@test
def an_unknown_task_id_gets_32602():
    s = Server()
    try:
        for id, task_id in (("zeros", "0" * 32), ("empty", ""), ("other", "no-such-task")):
            expect_error(modern(s, id, "tasks/get", {"taskId": task_id}, WITH_TASKS), -32602,
                         "taskId %r" % task_id)
        s.send(modern_message("none", "tasks/get", {}, WITH_TASKS))
        expect_error(s.reply("none"), -32602, "no taskId")
    finally:
        s.close()


@test
def a_long_call_without_the_extension_is_answered_normally():
    s = Server()
    try:
        r = modern_call(s, "long", "import time; time.sleep(0.5); print('plain')",
                        timeout_s=60)["result"]
        expect_complete(r, "tools/call without the tasks extension")
        expect(r["structuredContent"]["stdout"] == "plain\n" and "taskId" not in r,
               "the result itself, no task", r)
        # declared, but a call within the default timeout: answered normally too
        r = modern_call(s, "short", "print('short')", caps=WITH_TASKS)["result"]
        expect_complete(r, "a short call with the extension")
        expect(r["structuredContent"]["stdout"] == "short\n", "no task for it", r)
    finally:
        s.close()


# ---- the audit log ----

def audit_lines(path):
    with open(path) as f:
        text = f.read()
    expect(text.endswith("\n") or not text, "whole lines", text)
    return text, [json.loads(line) for line in text.splitlines()]


@test
def the_audit_log_has_a_line_per_call_with_spec_fields_and_no_code_or_output():
    d = tempfile.mkdtemp(prefix="airlock-audit-test-")
    path = os.path.join(d, "audit.log")
    s = Server("--audit-log", path)
    try:
        r = s.request(0, "initialize", dict(INIT["params"],
                                            clientInfo={"name": "audit-probe", "version": "1"}))
        expect("result" in r, "initialize", r)
        ok_code = ("# CODE_MARK_7f3a\nimport sys\n"
                   "print('OUT_' + 'MARK_91c2', sys.stdin.read(), open('in.txt').read())")
        fail_code = "import sys\nprint('FAIL_' + 'OUT_4e7d')\nsys.exit(3)"
        r = s.call(1, {"code": ok_code, "stdin": "STDIN_MARK_55e1",
                       "files": [{"path": "in.txt", "content": "FILE_MARK_0d4b"}]})["result"]
        expect(r["structuredContent"]["stdout"] ==
               "OUT_MARK_91c2 STDIN_MARK_55e1 FILE_MARK_0d4b\n", "the first call", r)
        r = s.call(2, {"code": fail_code})["result"]
        expect(r["isError"] and r["structuredContent"]["exit_code"] == 3, "the second fails", r)
        s.close()  # stdin EOF: every line written
        text, lines = audit_lines(path)
    finally:
        s.close()
        shutil.rmtree(d)
    expect(len(lines) == 2, "two lines", text)
    for line, code in zip(lines, (ok_code, fail_code)):
        expect(set(line) == AUDIT_KEYS, "exactly SPEC.md's keys: extra %s, missing %s"
               % (set(line) - AUDIT_KEYS, AUDIT_KEYS - set(line)), line)
        expect(line["code_sha256"] == hashlib.sha256(code.encode()).hexdigest(), "code_sha256",
               line)
        expect(line["client"] == "audit-probe" and line["tool"] == "execute_code" and
               line["language"] == "python" and line["backend"] == BACKEND, "who and what", line)
        expect(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line["time"]), "time", line)
        expect(isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0 and
               isinstance(line["limits"], dict) and line["limits"].get("timeout_s") == 30,
               "duration, limits", line)
        expect(line["timed_out"] is False and line["signal"] is None and
               line["network"] == [] and line["state_from"] is None and
               line["state_kept"] is None, "how it ended", line)
        expect(isinstance(line["bytes_out"], int) and line["bytes_out"] > 0, "bytes_out", line)
    expect([l["exit_code"] for l in lines] == [0, 3], "exit codes", lines)
    for mark in ("CODE_MARK", "OUT_MARK", "STDIN_MARK", "FILE_MARK", "FAIL_OUT", "sys.exit",
                 "in.txt"):
        expect(mark not in text, "%s is not in the audit log" % mark, text)


@test
def the_audit_log_records_kept_and_continued_states():
    d = tempfile.mkdtemp(prefix="airlock-audit-test-")
    path = os.path.join(d, "audit.log")
    s = Server("--audit-log", path)
    try:
        r = modern_call(s, 1, "x = 41", name="era-2026-client", keep_state=True)["result"]
        sid = r["structuredContent"]["state_id"]
        expect(isinstance(sid, str) and sid, "a state", r)
        r = modern_call(s, 2, "print(x + 1)", name="era-2026-client", state_id=sid)["result"]
        expect(r["structuredContent"]["stdout"] == "42\n", "continued", r)
        s.close()
        text, lines = audit_lines(path)
    finally:
        s.close()
        shutil.rmtree(d)
    expect(len(lines) == 2 and all(set(l) == AUDIT_KEYS for l in lines), "two lines", text)
    expect(lines[0]["state_kept"] == sid and lines[0]["state_from"] is None, "kept", lines[0])
    expect(lines[1]["state_from"] == sid and lines[1]["state_kept"] is None, "continued",
           lines[1])
    expect(all(l["client"] == "era-2026-client" for l in lines),
           "the client named in 2026-07-28's _meta clientInfo", lines)


if __name__ == "__main__":
    sys.exit(main())
