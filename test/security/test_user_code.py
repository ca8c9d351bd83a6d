#!/usr/bin/env python3
"""Hostile user code against the sandbox, through `airlock mcp` as an agent would send it.

Every case runs an attack with execute_code, asserts that it was contained (the program saw an
error, was killed or timed out; nothing outside its VM changed), and then asserts that the next
call still works in a fresh VM. VMs run on $AIRLOCK_TEST_BACKEND (default tcg). One PASS/FAIL
line per case, then "N passed, N failed" (test/integration/harness.py).

The attacks: sockets to outside addresses (TCP, UDP, ICMP, raw) and DNS; host paths; mount,
unshare, ptrace and kill of PID 1 (the agent), kill -9 -1, /dev/mem, module loading, kexec, BPF,
userfaultfd, io_uring, reboot; a fork bomb; a memory bomb; filling the disk; very many files;
an output flood; an infinite loop; sleeping past the timeout; closing stdout early; a daemon
that double-forks to outlive the program, and what one call leaves for the next; a forged exit
report, links in /work/out and a link swapped in while the files are collected.
"""
import base64
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import expect, main, test  # noqa: E402
from mcp_session import started  # noqa: E402

server = None
calls = 0


def call(code, language="python", timeout_s=30, wait=180):
    """One execute_code call; returns the whole CallToolResult (a sandbox failure fails the
    case)."""
    global server, calls
    if server is None:
        server = started("--pool", "1")
    calls += 1
    args = {"code": code, "language": language, "timeout_s": timeout_s}
    r = server.call("c%d" % calls, args, timeout=wait)
    expect("result" in r and "structuredContent" in r["result"],
           "a program result, not a sandbox failure", r)
    return r["result"]


def execute(code, language="python", timeout_s=30, wait=180):
    """One execute_code call; returns structuredContent."""
    return call(code, language, timeout_s, wait)["structuredContent"]


def returned_files(result):
    """{path under /work/out: content bytes} of the files a result carries (an image block has
    no path: "<image N>")."""
    files = {}
    for n, block in enumerate(result["content"]):
        if block["type"] == "image":
            files["<image %d>" % n] = base64.b64decode(block["data"])
        elif block["type"] == "resource":
            res = block["resource"]
            path = res["uri"][len("airlock://out/"):]
            files[path] = (res["text"].encode() if "text" in res
                           else base64.b64decode(res["blob"]))
    return files


def still_serves():
    res = execute("print('still here')")
    expect(res["stdout"] == "still here\n" and res["exit_code"] == 0,
           "the next call works in a fresh VM", res)


def lines(res):
    return res["stdout"].splitlines()


# Each syscall by number (x86_64), so that no library wrapper hides what the kernel answered.
SYSCALL_PROBE = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, number, *args):
    rc = libc.syscall(number, *args)
    err = ctypes.get_errno()
    print(name, "ALLOWED" if rc >= 0 else errno.errorcode.get(err, str(err)))
"""


@test
def outside_network_is_unreachable():
    code = r"""
import socket
def attempt(name, fn):
    try:
        fn()
        print(name, "REACHED")
    except OSError as e:
        print(name, "refused", e.errno)
attempt("tcp", lambda: socket.create_connection(("1.1.1.1", 443), timeout=2))
attempt("tcp-gateway", lambda: socket.create_connection(("10.0.2.2", 80), timeout=2))
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"x", ("8.8.8.8", 53))
    s.recv(1)
attempt("udp", udp)
attempt("icmp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        .sendto(b"\x08\0\0\0\0\0\0\0", ("1.1.1.1", 0)))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
try:
    socket.getaddrinfo("example.com", 443)
    print("dns RESOLVED")
except OSError as e:
    print("dns refused", e.errno)
"""
    res = execute(code)
    out = lines(res)
    expect(len(out) == 7 and all(" refused " in l for l in out), "every way out refused", res)
    still_serves()


@test
def host_paths_are_not_there():
    marker = "/tmp/airlock-host-marker-%s" % uuid.uuid4().hex
    with open(marker, "w") as f:
        f.write("host secret")
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        code = ("import os\nfor p in (%r, %r, '/root/.cache/airlock', '/proc/1/root/%s'):\n"
                "    print(p, os.path.exists(p))\n" % (marker, here, marker.lstrip("/")))
        res = execute(code)
        expect(res["exit_code"] == 0 and "True" not in res["stdout"],
               "no host path visible in the guest", res)
    finally:
        os.unlink(marker)
    still_serves()


@test
def privileged_operations_are_refused():
    code = SYSCALL_PROBE + r"""
attempt("mount", 165, b"none", b"/mnt", b"tmpfs", 0, None)
attempt("unshare", 272, 0x20000 | 0x10000000)   # CLONE_NEWNS | CLONE_NEWUSER
attempt("ptrace-attach-1", 101, 16, 1, 0, 0)     # PTRACE_ATTACH the agent
attempt("kill-1", 62, 1, 9)
attempt("init_module", 175, None, 0, b"")
attempt("finit_module", 313, 0, b"", 0)
attempt("kexec_load", 246, 0, 0, None, 0)
attempt("bpf", 321, 0, None, 0)
attempt("userfaultfd", 323, 0)
attempt("io_uring_setup", 425, 1, None)
attempt("reboot", 169, 0xfee1dead, 672274793, 0x1234567, None)
attempt("setuid-0", 105, 0)
for path in ("/dev/mem", "/dev/kmem", "/dev/port", "/proc/kcore"):
    try:
        open(path, "rb").read(1)
        print(path, "ALLOWED")
    except OSError as e:
        print(path, errno.errorcode.get(e.errno))
import os
print("agent alive", os.path.exists("/proc/1/status"))
"""
    res = execute(code)
    out = lines(res)
    expect(len(out) == 17, "every probe reported", res)
    expect(not any("ALLOWED" in l for l in out), "nothing privileged allowed", res)
    expect(out[-1] == "agent alive True", "PID 1 untouched", res)
    still_serves()


@test
def kill_all_reaches_only_the_users_processes():
    # kill(-1) signals every process the caller may signal but itself: the user's own children
    code = "sleep 60 & kill -9 -1; wait $!; echo survived $?"
    res = execute(code, language="bash")
    expect(res["stdout"] == "survived 137\n" and res["exit_code"] == 0,
           "the child was killed, the agent (PID 1) was not: it answered", res)
    still_serves()


@test
def fork_bomb_is_contained():
    # the bomb in the background, the program itself busy in a builtin loop (no fork needed)
    res = execute(":(){ :|:& };:; while :; do :; done", language="bash", timeout_s=8)
    expect(res["timed_out"], "the bomb ran until the timeout (RLIMIT_NPROC held it)", res)
    expect(res["duration_ms"] < 20000, "then it was killed, every process of it", res)
    still_serves()


@test
def memory_bomb_is_contained():
    code = ("chunks = []\n"
            "while True:\n"
            "    chunks.append(bytearray(16 << 20))\n")
    res = execute(code, timeout_s=60)
    expect(res["exit_code"] != 0 and not res["timed_out"],
           "MemoryError or the OOM killer ended it", res)
    still_serves()


@test
def filling_the_disk_stops_at_its_size():
    code = ("import errno\n"
            "written = 0\n"
            "try:\n"
            "    with open('/work/fill', 'wb') as f:\n"
            "        while True:\n"
            "            f.write(b'x' * (1 << 20)); f.flush(); written += 1\n"
            "except OSError as e:\n"
            "    print(errno.errorcode[e.errno], written)\n")
    res = execute(code, timeout_s=60)
    out = res["stdout"].split()
    expect(res["exit_code"] == 0 and out[0] == "ENOSPC" and int(out[1]) <= 256,
           "ENOSPC at the size of /work (256 MiB)", res)
    still_serves()


@test
def very_many_files_are_contained():
    # as many files as the timeout allows, in the directory whose files come back: the result
    # still comes, listing a bounded number of them. A fast host reaches /work's own limit on
    # files first (ENOSPC after some 63,000, 2026-12-07): contained too.
    code = ("import os\nos.makedirs('/work/out', exist_ok=True)\n"
            "for i in range(10 ** 6):\n"
            "    open('/work/out/f%07d' % i, 'w').close()\n"
            "print('made them all')\n")
    res = execute(code, timeout_s=6)
    at_the_limit = res["exit_code"] == 1 and "No space left on device" in res["stderr"]
    expect(res["timed_out"] or res["exit_code"] == 0 or at_the_limit,
           "killed at the timeout, done, or stopped by /work's limit on files",
           {k: v for k, v in res.items() if k != "files"})
    expect(len(res["files"]) <= 1000, "at most 1000 files listed (%d)" % len(res["files"]))
    still_serves()


@test
def output_flood_is_cut():
    res = execute("yes airlock", language="bash", timeout_s=5)
    expect(res["stdout_truncated"] and len(res["stdout"]) <= 1 << 20, "stdout capped", {
        k: v for k, v in res.items() if k not in ("stdout", "stderr")})
    still_serves()


@test
def infinite_loop_and_sleep_end_at_the_timeout():
    for code in ("while True: pass", "import time; time.sleep(600)"):
        res = execute(code, timeout_s=2)
        expect(res["timed_out"] and res["exit_code"] is None, "timed out", res)
        expect(res["duration_ms"] < 6000, "ended soon after 2 s", res)
    still_serves()


@test
def closing_stdout_early_keeps_the_exit_status():
    code = ("import os, sys, time\nprint('before', flush=True)\nos.close(1)\nos.close(2)\n"
            "time.sleep(0.5)\nos._exit(3)\n")
    res = execute(code)
    expect(res["stdout"] == "before\n" and res["exit_code"] == 3, "output and status", res)
    still_serves()


@test
def closing_every_fd_keeps_the_exit_status():
    # a program that closes every inherited fd (as daemons do) closes the starter's report pipe
    code = "import os, sys\nos.closerange(0, 256)\nsys.exit(7)\n"
    res = execute(code)
    expect(res["exit_code"] == 7 and not res["timed_out"], "the program's own status", res)
    still_serves()


@test
def nothing_outlives_a_call():
    # a daemon that double-forks, a file in /tmp and in /work: the next call sees none of them
    first = ("import os, time\n"
             "open('/tmp/left-behind', 'w').write('x')\n"
             "open('/work/left-behind', 'w').write('x')\n"
             "if os.fork() == 0:\n"
             "    os.setsid()\n"
             "    if os.fork() == 0:\n"
             "        time.sleep(600)\n"
             "    os._exit(0)\n"
             "print('parent done')\n")
    res = execute(first)
    expect(res["stdout"] == "parent done\n" and res["duration_ms"] < 10000,
           "the answer did not wait for the daemon", res)
    second = ("import os\n"
              "print(os.path.exists('/tmp/left-behind'), os.path.exists('/work/left-behind'))\n"
              "mine = [p for p in os.listdir('/proc') if p.isdigit() and\n"
              "        os.stat('/proc/' + p).st_uid == os.getuid()]\n"
              "print(len(mine))\n")
    res = execute(second)
    expect(lines(res) == ["False False", "1"], "a fresh VM: no file, no process left", res)


# What only the guest's root may read, and what marks it: /etc/shadow starts with root's line.
ROOT_ONLY_MARK = b"root:"


def expect_only_own_files(result, own, what):
    """Every file the result lists or carries is one the program made (own: {path: content})."""
    listed = [f["path"] for f in result["structuredContent"]["files"]]
    carried = returned_files(result)
    expect(set(listed) <= set(own), what + ": only the program's own files listed", listed)
    for path, content in carried.items():
        expect(ROOT_ONLY_MARK not in content, what + ": nothing of /etc/shadow", path)
        expect(content == own.get(path), what + ": %s holds what the program wrote" % path,
               content[:200])


@test
def a_forged_exit_report_ends_the_program():
    # The python starter reports the program's end on fd 4, where the program can write too. A
    # daemon forges "exit 0" there, then goes on writing to /work/out and swaps it for a link to
    # /etc; the program itself sleeps on. The forged report must end it all as an exit with
    # status 0 would: nothing done after it comes back.
    code = r"""
import os, time
os.makedirs('/work/out', exist_ok=True)
open('/work/out/before.txt', 'w').write('written before the report')
print('before', flush=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(4, b"X0\n")
        for i in range(2000):
            open('/work/out/after-%d.txt' % i, 'w').write('written after the report')
            if i == 10:
                os.rename('/work/out', '/work/moved')
                os.symlink('/etc', '/work/out')
        os._exit(0)
    os._exit(0)
time.sleep(600)
"""
    res = call(code, timeout_s=60)
    sc = res["structuredContent"]
    expect(sc["exit_code"] == 0 and not sc["timed_out"] and sc["stdout"] == "before\n",
           "the forged report ended the program as exit 0, with what it printed before", sc)
    expect(sc["duration_ms"] < 30000, "long before the timeout", sc)
    expect_only_own_files(res, {"before.txt": b"written before the report"}, "forged report")
    expect("before.txt" in returned_files(res), "what was there before the report comes back",
           sc["files"])
    still_serves()


@test
def bash_and_node_find_no_report_pipe_on_fd_4():
    # bash's starter closes the report pipe (fd 4) before the program runs; node's closes it too,
    # keeping the pipe under a descriptor of its own (close-on-exec) to report the exit after the
    # 'exit' listeners. Writing "X0" on fd 4 fails, and the program ends when it ends. (A report
    # forged on the starter's own descriptor would end the program early, as exiting would: see
    # a_forged_exit_report_ends_the_program for python's.)
    cases = (("bash", "echo X0 >&4 && echo wrote; echo went on; exit 3"),
             ("javascript", "const fs = require('fs');\n"
                            "try { fs.writeSync(4, 'X0\\n'); console.log('wrote'); } catch (e) {}\n"
                            "console.log('went on'); process.exit(3);\n"))
    for language, code in cases:
        res = execute(code, language=language)
        expect(res["stdout"] == "went on\n" and res["exit_code"] == 3,
               language + ": no report pipe on fd 4, the program's own end", res)
    still_serves()


@test
def links_in_out_are_not_followed():
    # links to what only root may read, in /work/out and as /work/out itself: the files are
    # collected as the sandbox user and no link is followed
    code = r"""
import os
os.makedirs('/work/out/sub', exist_ok=True)
open('/work/out/mine.txt', 'w').write('mine')
os.symlink('/etc/shadow', '/work/out/shadow')
os.symlink('/etc', '/work/out/etc')
os.symlink('/sbin/init', '/work/out/agent')
os.symlink('/etc/shadow', '/work/out/sub/shadow')
print('made')
"""
    res = call(code)
    expect(res["structuredContent"]["exit_code"] == 0, "the program ran", res["structuredContent"])
    expect_only_own_files(res, {"mine.txt": b"mine"}, "links in /work/out")
    expect(returned_files(res) == {"mine.txt": b"mine"}, "the regular file comes back",
           res["structuredContent"]["files"])
    code = r"""
import os
os.rmdir('/work/out')
os.symlink('/etc', '/work/out')
print('swapped')
"""
    res = call(code)
    expect(res["structuredContent"]["exit_code"] == 0, "the program ran", res["structuredContent"])
    expect_only_own_files(res, {}, "/work/out a link to /etc")
    still_serves()


@test
def a_link_swapped_in_during_collection_is_not_followed():
    # A daemon swaps /work/out, and a directory in it, for links to / as fast as it can while
    # the program ends and its files are collected. Several runs, each ending at another point
    # of the swapping: none may return anything from outside /work/out.
    code = r"""
import os
os.makedirs('/work/out/d', exist_ok=True)
open('/work/out/mine.txt', 'w').write('mine')
open('/work/out/d/mine.txt', 'w').write('mine')
if os.fork() == 0:
    os.setsid()
    null = os.open('/dev/null', os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    if os.fork() == 0:
        while True:
            os.rename('/work/out/d', '/work/d.real')
            os.symlink('/', '/work/out/d')
            os.rename('/work/out', '/work/out.real')
            os.symlink('/', '/work/out')
            for _ in range(2000):  # mostly in the linked state
                pass
            os.unlink('/work/out')
            os.rename('/work/out.real', '/work/out')
            os.unlink('/work/out/d')
            os.rename('/work/d.real', '/work/out/d')
    os._exit(0)
import time
time.sleep(0.3)
print('done')
"""
    own = {"mine.txt": b"mine", "d/mine.txt": b"mine"}
    for run in range(6):
        res = call(code)
        sc = res["structuredContent"]
        expect(sc["exit_code"] == 0 and sc["stdout"] == "done\n", "run %d ended" % run, sc)
        expect_only_own_files(res, own, "run %d" % run)
    still_serves()


@test
def the_server_ends_cleanly():
    global server
    if server is None:  # run on its own: a server with a call behind it, to end
        still_serves()
    server.close()
    status, server = server.proc.returncode, None
    expect(status == 0, "airlock mcp exited 0 on stdin EOF (status %s)" % status)


if __name__ == "__main__":
    sys.exit(main())
