#!/usr/bin/env python3
"""Snapshots through `airlock run`: every language answers after a restore, many times in a row;
restored VMs are unique (entropy, PRNGs, clock); a damaged snapshot is refused and made again.
Runs on the backend in $AIRLOCK_TEST_BACKEND (tcg here; kvm in the KVM test host). Makes the
snapshots first (`airlock image build`): cached on tcg, a minute in the KVM test host.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import airlock, expect, main, run_code, test  # noqa: E402
from mcp_session import LANGUAGES, started, wait_for_pool  # noqa: E402

BACKEND = os.environ.get("AIRLOCK_TEST_BACKEND", "tcg")


def image_dir():
    out = airlock("image", "list").stdout.decode()
    return out.split("image directory:")[1].split()[0]


def restored(r):
    return b"restored from the snapshot" in r.stderr


@test
def snapshots_are_made_for_every_language():
    r = airlock("image", "build", "--backend", BACKEND, timeout=1200)
    expect(r.status == 0, "image build", r)
    listing = airlock("image", "list").stdout.decode()
    for lang in LANGUAGES:
        expect(any(line.startswith("snapshot-%s-%s-" % (lang, BACKEND)) and "current" in line
                   for line in listing.splitlines()), "a current %s snapshot" % lang, listing)


@test
def every_language_answers_after_restore_many_times():
    programs = {"python": ("import sys; print(sum(range(10)), sys.argv[0])",
                           b"45 /run/airlock/main.py\n"),
                "javascript": ("console.log(6 * 7)", b"42\n"),
                "bash": ('echo "$((6 * 7)) $(id -un)"', b"42 sandbox\n"),
                "go": ('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println(6 * 7) }\n',
                       b"42\n")}
    for lang, (code, want) in programs.items():
        # go builds each time (seconds, not ms); on kvm each run costs the test host seconds
        for i in range(2 if lang == "go" else 3 if BACKEND == "kvm" else 5):
            r = run_code(code, "--lang", lang, "--verbose")
            expect(r.status == 0 and r.stdout == want and restored(r),
                   "%s run %d restored and answered" % (lang, i + 1), r)


@test
def python_program_semantics_survive_the_warm_interpreter():
    r = run_code("import sys\nprint(__name__, __file__)\nimport numpy\nsys.exit(3)")
    expect(r.status == 3 and r.stdout == b"__main__ /run/airlock/main.py\n", "exit 3", r)
    r = run_code("def f():\n    1/0\nf()")
    expect(r.status == 1 and b"start.py" not in r.stderr and b"ZeroDivisionError" in r.stderr
           and b'File "/run/airlock/main.py", line 3' in r.stderr, "traceback is the program's", r)
    r = run_code("import atexit; atexit.register(lambda: print('bye'))\nprint(input())",
                 stdin=b"fed\n")
    expect(r.stdout == b"fed\nbye\n", "stdin and atexit", r)


@test
def restored_vms_are_unique():
    code = ("import os, random, uuid, time, numpy\n"
            "print(os.urandom(16).hex(), random.random(), uuid.uuid4(), numpy.random.random())\n"
            "print(time.time())")
    a, b = run_code(code, "--verbose"), run_code(code, "--verbose")
    expect(a.status == 0 and b.status == 0 and restored(a) and restored(b), "ran restored", (a, b))
    first_a, first_b = a.stdout.split(b"\n")[0].split(), b.stdout.split(b"\n")[0].split()
    for i, what in enumerate(("os.urandom", "random.random", "uuid4", "numpy.random")):
        expect(first_a[i] != first_b[i], "%s differs" % what, (a.stdout, b.stdout))
    guest_time = float(a.stdout.split(b"\n")[1])
    expect(abs(guest_time - time.time()) < 1.0 + a.seconds, "clock within a second of the host's",
           (guest_time, time.time()))
    a = run_code("echo $RANDOM $RANDOM $SRANDOM", "--lang", "bash")
    b = run_code("echo $RANDOM $RANDOM $SRANDOM", "--lang", "bash")
    expect(a.stdout != b.stdout, "bash $RANDOM differs", (a, b))
    js = "console.log(Math.random(), require('crypto').randomBytes(8).toString('hex'))"
    a, b = run_code(js, "--lang", "javascript"), run_code(js, "--lang", "javascript")
    expect(a.status == 0 and a.stdout != b.stdout, "node's PRNGs differ", (a, b))


# Every source of randomness a Node program has, and the random and key share of a TLS
# ClientHello (to a listener of its own on loopback): one JSON line.
NODE_RANDOMNESS = r"""
const c = require('crypto'), net = require('net'), tls = require('tls');
const hex = (b) => Buffer.from(b).toString('hex');
const out = {
  'Math.random': Math.random(), randomBytes: hex(c.randomBytes(8)),
  randomFillSync: hex(c.randomFillSync(Buffer.alloc(8))), randomInt: c.randomInt(2 ** 47),
  randomUUID: c.randomUUID(), getRandomValues: hex(c.getRandomValues(new Uint8Array(8))),
  'webcrypto.getRandomValues': hex(c.webcrypto.getRandomValues(new Uint8Array(8))),
};
const server = net.createServer((s) => s.once('data', (hello) => {
  out['ClientHello random'] = hex(hello.subarray(11, 43));
  out['ClientHello'] = hex(hello.subarray(43));
  console.log(JSON.stringify(out));
  process.exit(0);
}));
server.listen(0, '127.0.0.1', () => {
  tls.connect({ port: server.address().port, host: '127.0.0.1', rejectUnauthorized: false })
    .on('error', () => {});
});
"""


def node_randomness(result):
    expect(result.get("exit_code") == 0, "the node program ran", result)
    return json.loads(result["stdout"])


@test
def javascript_randomness_is_fresh_in_every_vm():
    """node waits in the snapshot with its PRNGs' state: two VMs restored from it, and two pooled
    VMs that sat idle, draw different values from every source (V8's Math.random is replaced,
    OpenSSL is reseeded by the image's addon), and their TLS ClientHellos differ."""
    runs = []
    for _ in range(2):
        r = run_code(NODE_RANDOMNESS, "--lang", "javascript", "--json", "--verbose")
        expect(r.status == 0 and restored(r), "ran restored", r)
        runs.append(node_randomness(r.json()))
    s = started("--pool", "1")
    try:
        wait_for_pool(s, len(LANGUAGES))
        time.sleep(5)  # idle in the pool, prepared (reseeded) when it was restored
        for i in range(2):
            result = s.call(i, {"code": NODE_RANDOMNESS, "language": "javascript"},
                            timeout=120)["result"]
            runs.append(node_randomness(result.get("structuredContent", result)))
    finally:
        s.close()
    for name in runs[0]:
        values = [r[name] for r in runs]
        expect(len(set(values)) == len(values), "%s differs in each VM" % name, values)


@test
def guest_clock_is_fine_grained():
    # A snapshot's kernel keeps the clock it booted with. Left to calibrate the TSC against the
    # emulated PIT, a guest on a loaded host now and then fails and falls back to the 4 ms jiffies
    # clock, in every VM of that snapshot (and time.time() then moves in 4 ms steps).
    source = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
    for lang in LANGUAGES:
        r = run_code("cat " + source, "--lang", "bash") if lang == "bash" else run_code(
            {"python": "print(open(%r).read().strip())",
             "javascript": "console.log(require('fs').readFileSync(%r, 'utf8').trim())",
             "go": 'package main\n\nimport (\n\t"fmt"\n\t"os"\n\t"strings"\n)\n\n'
                   'func main() {\n\tb, _ := os.ReadFile("%s")\n'
                   '\tfmt.Println(strings.TrimSpace(string(b)))\n}\n'}[lang]
            % source, "--lang", lang)
        expect(r.status == 0 and r.stdout.strip() not in (b"jiffies", b"refined-jiffies", b""),
               "%s snapshot's clocksource is not jiffies" % lang, r)
    r = run_code("cat " + source, "--lang", "bash", "--cold")
    expect(r.status == 0 and b"jiffies" not in r.stdout, "a cold boot's clocksource", r)
    r = run_code("import time\nt = [time.monotonic_ns() for _ in range(50)]\n"
                 "print(min(b - a for a, b in zip(t, t[1:]) if b > a))")
    expect(r.status == 0 and 0 < int(r.stdout) < 1000000, "monotonic steps below 1 ms", r)


def copy_of_the_images(tmp, languages):
    """The current kernel and root file system (linked) and the languages' snapshots (copied,
    their manifests told the copies' change times, which they cannot know) in the image
    directory tmp."""
    cache = image_dir()
    listing = airlock("image", "list").stdout.decode()
    recipe = listing.split("current recipe:")[1].split()
    for name in (recipe[0], recipe[2]):  # kernel, rootfs: shared, read-only
        os.symlink(os.path.join(cache, name), os.path.join(tmp, name))
    for lang in languages:
        # the current recipe's snapshot (the cache may hold older ones, some newer on disk)
        current = [line.split()[0] for line in listing.splitlines()
                   if line.startswith("snapshot-%s-%s-" % (lang, BACKEND))
                   and line.rstrip().endswith("current")]
        expect(len(current) == 1, "one current %s snapshot" % lang, listing)
        subprocess.run(["cp", "-a", "--sparse=always", os.path.join(cache, current[0]), tmp],
                       check=True)
        copy = os.path.join(tmp, current[0])
        with open(os.path.join(copy, "manifest")) as f:
            lines = [line for line in f if not line.startswith("memory_ctime_ns ")]
        lines.append("memory_ctime_ns %d\n" % os.stat(os.path.join(copy, "memory")).st_ctime_ns)
        with open(os.path.join(copy, "manifest"), "w") as f:
            f.writelines(lines)


def write_one_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@test
def damaged_snapshots_are_refused_and_made_again():
    tmp = tempfile.mkdtemp(prefix="airlock-snaptest-")
    try:
        copy_of_the_images(tmp, LANGUAGES)
        bash = glob.glob(os.path.join(tmp, "snapshot-bash-*"))[0]
        python = glob.glob(os.path.join(tmp, "snapshot-python-*"))[0]
        write_one_byte(os.path.join(bash, "state"), 100)
        os.truncate(os.path.join(python, "memory"), 4096)  # a truncated memory file
        for lang, code in (("bash", "echo ok"), ("python", "print('ok')")):
            r = airlock("run", "--images", tmp, "--lang", lang, "--verbose", code)
            expect(r.status == 0 and r.stdout == b"ok\n" and not restored(r)
                   and b"damaged" in r.stderr, "%s: refused, booted instead" % lang, r)
        r = airlock("image", "build", "--images", tmp, "--backend", BACKEND, timeout=1200)
        expect(r.status == 0 and r.stderr.count(b"damaged") == 2
               and b"making it again" in r.stderr, "both made again", r)
        for lang, code in (("bash", "echo ok"), ("python", "print('ok')")):
            r = airlock("run", "--images", tmp, "--lang", lang, "--verbose", code)
            expect(r.status == 0 and r.stdout == b"ok\n" and restored(r),
                   "%s: restored from the new snapshot" % lang, r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@test
def a_written_memory_file_is_refused():
    # What a VM that broke out into QEMU 7.2 could do (it maps the file, opened read-write): its
    # change time gives it away, even with the modification time put back. Refused at the start,
    # and a VM restored before the write (the warm pool's) runs no request after it.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mcp_session import LANGUAGES, started, wait_for_pool  # noqa: E402
    tmp = tempfile.mkdtemp(prefix="airlock-snaptest-")
    try:
        # all of them, so that the server makes none at its start (in the KVM test host each is a
        # nested boot, which now and then never gets ready)
        copy_of_the_images(tmp, LANGUAGES)
        memory = os.path.join(glob.glob(os.path.join(tmp, "snapshot-python-*"))[0], "memory")
        s = started("--backend", BACKEND, "--images", tmp, "--pool", "1")
        try:
            wait_for_pool(s, len(LANGUAGES))
            r = s.call(1, {"code": "print(1)"})
            expect(r["result"]["structuredContent"]["stdout"] == "1\n", "restored and ran", r)
            wait_for_pool(s, len(LANGUAGES))
            time.sleep(1)  # the replacement is restored, before the write
            before = os.stat(memory)
            write_one_byte(memory, 1 << 20)
            os.utime(memory, ns=(before.st_atime_ns, before.st_mtime_ns))
            r = s.call(2, {"code": "print(2)"})
            text = json.dumps(r)
            expect(r["result"].get("isError") and "written" in text and "image build" in text,
                   "the pooled VM runs nothing, and says why", r)
        finally:
            s.close()
        r = airlock("run", "--images", tmp, "--verbose", "print(3)")
        expect(r.status == 0 and r.stdout == b"3\n" and not restored(r) and b"written" in r.stderr,
               "refused at the start: booted instead", r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
