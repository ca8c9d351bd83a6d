#!/usr/bin/env python3
"""airlock's benchmark (docs/benchmarks.md): `airlock bench` runs this.

One invocation measures airlock and its peers side by side on this machine, interleaved where it
matters, and prints medians, p99 and ratios (and writes the same as JSON with --json FILE):

  execute_code print(1) through MCP, warm pool, calls paced as an agent's are (250 ms, or twice
         a restore where that is longer), in rounds taken in turn with servers whose VMs run
         without their jail (below)
  execute_code per language (python, javascript, bash, go) and a 200,000-line (20 MB) print beside
         the same program printing to /dev/null, warm, paced, through one server per round
  execute_code back to back from 8 concurrent callers: fresh VMs per second
  restore-to-ready of one VM without a pool (airlock run, snapshot)
  cold boot-to-ready of one VM without a snapshot (airlock run --cold)
  unique memory per idle pooled VM (smaps_rollup), and how many idle VMs fit in free memory
  kept state: keeping a pandas session with a 1,000,000-row DataFrame, its size on disk beside
         the VM's dirty memory, and continuing it beside a plain restore (kept_state_bench.py)
  the warm round trip and restore-to-ready again with VMs started without their jail (and, for
         airlock-vmm, its seccomp filter: AIRLOCK_BENCH_UNCONFINED=1): what the jail costs
  Streamable HTTP: the warm round trip over HTTP (2026-07-28, and a 2025-11-25 session) beside
         stdio, and a load test: 50 clients x 20 calls at once over HTTP (http_bench.py)
  peers: host python3 -c, bubblewrap + python3, QEMU restoring a plain snapshot of the same
         guest (full RAM in the stream, -incoming); for tcg the cold boot *is* QEMU's boot

Standard library only. Absolute times on a shared machine drift; compare the ratios.

    bench.py --airlock PATH [--backend tcg|kvm] [--quick] [--json FILE]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from http_bench import http_figures  # noqa: E402
from kept_state_bench import kept_state_figures, print_kept_state  # noqa: E402
try:
    from egress_bench import egress_figures, print_egress  # noqa: E402
except ImportError:  # installed: its servers and CA live in the source tree's test/integration
    egress_figures = print_egress = None

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
FRAME_READY, FRAME_PING = 1, 0x82  # agent/proto.h, version 3: a 16-byte header
FRAME_HEADER_SIZE = 16
CODE = "print(1)"
LANES = 4  # one pool lane per language (agent/proto.h): python, javascript, bash, go


def stats(xs):
    xs = sorted(xs)
    return {"median_ms": statistics.median(xs), "p99_ms": xs[min(len(xs) - 1, int(len(xs) * 0.99))],
            "n": len(xs)}


def timed_run(cmd, env=None):
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, env=env)
    ms = (time.monotonic() - t) * 1000
    if p.returncode != 0:
        raise RuntimeError("failed: %s\n%s" % (" ".join(cmd), p.stderr.decode()[-1500:]))
    return ms, p.stderr.decode()


class Mcp:
    """One `airlock mcp` session over pipes; calls may come from several threads."""

    def __init__(self, airlock, backend, *args, env=None):
        self.proc = subprocess.Popen([airlock, "mcp", "--backend", backend] + list(args),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)
        self.lock = threading.Lock()
        self.waiting = {}
        self.next_id = 1
        threading.Thread(target=self._reader, daemon=True).start()
        self.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "1"}})

    def _reader(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "id" in msg:
                with self.lock:
                    slot = self.waiting.pop(msg["id"])
                slot[1] = msg
                slot[0].set()

    def request(self, method, params):
        with self.lock:
            rid = self.next_id
            self.next_id += 1
            slot = [threading.Event(), None]
            self.waiting[rid] = slot
            self.proc.stdin.write((json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                               "params": params}) + "\n").encode())
            self.proc.stdin.flush()
        if not slot[0].wait(300):
            raise RuntimeError("no answer to %s" % method)
        return slot[1]

    def execute(self, code, language="python", expect="1\n"):
        r = self.request("tools/call", {"name": "execute_code",
                                        "arguments": {"code": code, "language": language}})
        out = r.get("result", {}).get("structuredContent", {})
        if expect is not None and out.get("stdout") != expect:
            raise RuntimeError("unexpected result: %r" % r)
        return out

    def vms(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def wait_for_pool(mcp, count, timeout=120):
    """Until count VMs exist and none has used CPU for a moment (restored and idle)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(mcp.vms()) >= count:
            time.sleep(1.0)
            return
        time.sleep(0.1)
    raise RuntimeError("the pool did not fill")


def warm_round_trips(airlock, backend, n, envs, pace, rounds=4):
    """n warm calls through servers of each environment, in rounds: in each, one server per
    environment in turn (never two at once: more VMs side by side crash the KVM test host's own
    kernel), so that drift hits all alike. Calls are pace seconds apart, as an agent's are, and
    long enough for the VM that replaces the one used to be restored in between (where a
    restore takes longer than a call, a call would otherwise share the CPU with it). Returns a
    list of times per environment."""
    times = [[] for _ in envs]
    for r in range(rounds):
        calls = n // rounds + (1 if r < n % rounds else 0)
        for env, mine in zip(envs, times):
            mcp = Mcp(airlock, backend, "--pool", "1", env=env)
            try:
                wait_for_pool(mcp, LANES)
                for _ in range(calls):
                    time.sleep(pace)
                    t = time.monotonic()
                    mcp.execute(CODE)
                    mine.append((time.monotonic() - t) * 1000)
            finally:
                mcp.close()
    return times


# Per language: the same one-line program, warm.
HELLO = {"python": "print(1)", "javascript": "console.log(1)", "bash": "echo 1",
         "go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println(1) }\n'}
# 200,000 lines of 100 bytes (20 MB): to stdout (its first 1 MiB comes back, the rest is counted),
# and the same program printing to /dev/null, the program's own cost.
FLOOD = "for i in range(200000): print('x' * 99)\n"
FLOOD_NULL = ("import sys\nsys.stdout = open('/dev/null', 'w')\n"
              "for i in range(200000): print('x' * 99)\n")


def language_round_trips(airlock, backend, n, pace, rounds=4):
    """Warm execute_code round trips per language and for the 20 MB print, through one server
    per round (pool 1 per language), calls paced as in warm_round_trips. Returns
    {name: [ms...]}."""
    times = {lang: [] for lang in HELLO}
    times.update({"flood": [], "flood_null": []})
    flood_n = max(3, n // 5)
    for r in range(rounds):
        calls = n // rounds + (1 if r < n % rounds else 0)
        mcp = Mcp(airlock, backend, "--pool", "1")
        try:
            wait_for_pool(mcp, LANES)
            for _ in range(calls):
                for lang, code in HELLO.items():
                    time.sleep(pace)
                    t = time.monotonic()
                    mcp.execute(code, lang)
                    times[lang].append((time.monotonic() - t) * 1000)
            for _ in range(flood_n // rounds + (1 if r < flood_n % rounds else 0)):
                for name, code in (("flood", FLOOD), ("flood_null", FLOOD_NULL)):
                    time.sleep(pace)
                    t = time.monotonic()
                    out = mcp.execute(code, expect=None)
                    if out.get("exit_code") != 0 or out.get("timed_out"):
                        raise RuntimeError("the 20 MB print did not finish: %r" %
                                           {k: v for k, v in out.items() if k != "stdout"})
                    times[name].append((time.monotonic() - t) * 1000)
        finally:
            mcp.close()
    return times


def concurrent_throughput(airlock, backend, seconds, clients=8):
    mcp = Mcp(airlock, backend, "--pool", "2", "--max-concurrent", str(clients))
    try:
        wait_for_pool(mcp, 2 * LANES)
        done = []
        stop = time.monotonic() + seconds

        def client():
            while time.monotonic() < stop:
                mcp.execute(CODE)
                done.append(time.monotonic())

        started = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(done) / (max(done) - started)
    finally:
        mcp.close()


def process_tree(pid):
    """pid and every process below it (a VM behind its jail: bubblewrap, then QEMU)."""
    tree = [pid]
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            for child in f.read().split():
                tree += process_tree(int(child))
    except OSError:
        pass
    return tree


def unique_memory(airlock, backend, pool):
    """Unique (private) and proportional memory of each idle pooled VM, its jail's processes
    included."""
    mcp = Mcp(airlock, backend, "--pool", str(pool))
    try:
        wait_for_pool(mcp, LANES * pool)
        time.sleep(1)  # restored and idle
        private, pss = [], []
        for vm in mcp.vms():
            fields = {}
            for pid in process_tree(vm):
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                            fields[parts[0][:-1]] = fields.get(parts[0][:-1], 0) + int(parts[1])
            private.append((fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024)
            pss.append(fields.get("Pss", 0) / 1024)
        return private, pss
    finally:
        mcp.close()


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0


# ---- the QEMU peer: a plain snapshot (RAM in the stream) restored with -incoming ----

def qemu_plain_snapshot_peer(airlock, images, n, backend="tcg", qemu_dir=None):
    """Boots the guest in QEMU (python warm), saves it with a plain migration (all RAM in the
    stream, as QEMU does by default), then restores it n times: spawn until the agent answers."""
    listing = subprocess.run([airlock, "image", "list"] + (["--images", images] if images else []),
                             capture_output=True, text=True).stdout
    cache = listing.split("image directory:")[1].split()[0]
    recipe = listing.split("current recipe:")[1].split()
    kernel = os.path.join(cache, recipe[0], "vmlinux")
    rootfs = os.path.join(cache, recipe[2], "rootfs.ext4")
    work = tempfile.mkdtemp(prefix="airlock-bench-")
    state = os.path.join(work, "state")

    binary, env = "qemu-system-x86_64", None
    firmware = []
    if qemu_dir:  # a QEMU brought in beside the payload (the KVM test host has none of its own)
        binary = os.path.join(qemu_dir, "qemu-system-x86_64")
        firmware = ["-L", os.path.join(qemu_dir, "share")]
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(qemu_dir, "lib"))
    accel, cpu = ("kvm", "host") if backend == "kvm" else ("tcg", "max")

    def argv(incoming):
        a = [binary] + firmware + [
             "-M", "microvm,acpi=off,x-option-roms=off", "-accel", accel,
             "-cpu", cpu, "-m", "512", "-smp", "1", "-nodefaults", "-no-user-config",
             "-nographic", "-no-reboot", "-kernel", kernel, "-append",
             "console=ttyS0 quiet reboot=t panic=-1 root=/dev/vda ro rootfstype=ext4 "
             "init=/sbin/init nolapic_timer airlock.warm=python",
             "-drive", "id=root,file=%s,format=raw,if=none,read-only=on" % rootfs,
             "-device", "virtio-blk-device,drive=root",
             "-device", "virtio-serial-device,max_ports=2", "-chardev", "socket,id=channel,fd=3",
             "-device", "virtserialport,chardev=channel,nr=1,name=airlock",
             "-chardev", "socket,id=qmp,fd=4", "-mon", "chardev=qmp,mode=control",
             "-serial", "null"]
        return a + (["-incoming", incoming] if incoming else [])

    def spawn(_unused, incoming=None):
        channel, qmp = socket.socketpair(), socket.socketpair()
        fds = {3: channel[1].fileno(), 4: qmp[1].fileno()}

        def wire():
            for k, v in fds.items():
                os.dup2(v, 100 + k)
            for k in fds:
                os.dup2(100 + k, k)

        p = subprocess.Popen(argv(incoming), preexec_fn=wire, pass_fds=tuple(fds), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        channel[1].close()
        qmp[1].close()
        return p, channel[0], qmp[0].makefile("rwb")

    def qmp_cmd(f, cmd, **args):
        f.write((json.dumps({"execute": cmd, "arguments": args}) + "\n").encode())
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                return msg

    def read_frame(s):
        head = b""
        while len(head) < FRAME_HEADER_SIZE:
            chunk = s.recv(FRAME_HEADER_SIZE - len(head))
            if not chunk:
                raise RuntimeError("the QEMU peer closed its channel")
            head += chunk
        kind, length, _stream, _flags = struct.unpack("<IIII", head)
        body = b""
        while len(body) < length:
            body += s.recv(length - len(body))
        return kind

    try:
        p, channel, qmp = spawn(False)
        json.loads(qmp.readline())
        qmp_cmd(qmp, "qmp_capabilities")
        if read_frame(channel) != FRAME_READY:
            raise RuntimeError("the QEMU peer did not become ready")
        # not stopped first: the VM then runs on when restored (its state says "running")
        qmp_cmd(qmp, "migrate", uri="exec:cat > %s" % state)
        while qmp_cmd(qmp, "query-migrate")["return"].get("status") not in ("completed",
                                                                            "failed"):
            time.sleep(0.02)
        qmp_cmd(qmp, "quit")
        p.wait()
        times = []
        for _ in range(n):
            t = time.monotonic()
            p, channel, qmp = spawn(False, incoming="exec:cat %s" % state)
            channel.sendall(struct.pack("<IIIIq64s", FRAME_PING, 72, 0, 0, time.time_ns(),
                                        os.urandom(64)))
            if read_frame(channel) != FRAME_READY:
                raise RuntimeError("the restored QEMU peer did not answer")
            times.append((time.monotonic() - t) * 1000)
            p.kill()
            p.wait()
        return times, os.path.getsize(state)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- the run ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--airlock", required=True)
    ap.add_argument("--backend", default="tcg")
    ap.add_argument("--images")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--qemu-dir", help="a QEMU to use as the peer (bin, lib/, share/)")
    a = ap.parse_args()
    n = 8 if a.quick else 30
    images = ["--images", a.images] if a.images else []
    run = [a.airlock, "run", "--backend", a.backend] + images
    results, peers = {}, {}

    print("airlock bench: backend %s, %d repetitions, %d cores" % (a.backend, n, os.cpu_count()))
    subprocess.run([a.airlock, "image", "build", "--backend", a.backend] + images, check=True,
                   stdout=subprocess.DEVNULL)

    # one-VM figures and the host peers, interleaved so that drift hits all alike
    host, bwrap, restore, restore_bare, cold = [], [], [], [], []
    bare_env = dict(os.environ, AIRLOCK_BENCH_UNCONFINED="1")  # the VM jail's cost, below
    have_bwrap = shutil.which("bwrap") is not None
    for i in range(n):
        host.append(timed_run([PY, "-c", CODE])[0])
        if have_bwrap:
            bwrap.append(timed_run(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
                                    "/proc", "--unshare-all", "--die-with-parent", PY, "-c",
                                    CODE])[0])
        _, err = timed_run(run + ["--verbose", CODE])
        restore.append(float(err.split("boot to ready ")[1].split()[0]))
        _, err = timed_run(run + ["--verbose", CODE], env=bare_env)
        restore_bare.append(float(err.split("boot to ready ")[1].split()[0]))
        if i < max(3, n // 5):  # a cold boot costs seconds under emulation: fewer of them
            _, err = timed_run(run + ["--verbose", "--cold", CODE])
            cold.append(float(err.split("boot to ready ")[1].split()[0]))
    peers["host python3 -c"] = stats(host)
    if have_bwrap:
        peers["bubblewrap + python3 -c"] = stats(bwrap)
    results["restore_to_ready_no_pool"] = stats(restore)
    results["restore_to_ready_no_pool_unconfined"] = stats(restore_bare)
    results["cold_boot_to_ready"] = stats(cold)
    if a.backend == "tcg" or a.qemu_dir:
        qemu, stream = qemu_plain_snapshot_peer(a.airlock, a.images, max(5, n // 3), a.backend,
                                                a.qemu_dir)
        peers["QEMU%s -incoming restore (plain snapshot, %d MiB stream)" % (
            "-KVM" if a.backend == "kvm" else "", stream >> 20)] = stats(qemu)
    else:
        print("(no QEMU here: the QEMU restore peer is left out; give --qemu-dir)")

    pace = max(0.25, 2 * statistics.median(restore) / 1000)
    results["warm_calls_paced_ms"] = round(pace * 1000)
    warm, warm_bare = warm_round_trips(a.airlock, a.backend, n, [None, bare_env], pace)
    results["execute_code_warm_pool"] = stats(warm)
    results["execute_code_warm_pool_unconfined"] = stats(warm_bare)
    per_language = language_round_trips(a.airlock, a.backend, n, pace)
    for name, xs in per_language.items():
        results["execute_code_warm_%s" % name] = stats(xs)
    results["vms_per_second_8_clients"] = concurrent_throughput(a.airlock, a.backend,
                                                                5 if a.quick else 15)
    private, pss = unique_memory(a.airlock, a.backend, 2)
    results["idle_vm_unique_mib"] = statistics.median(private)
    results["idle_vm_pss_mib"] = statistics.median(pss)
    results["idle_vms_that_fit"] = int(mem_available_mib() / max(statistics.median(pss), 0.1))

    kept = kept_state_figures(run, stats, 3 if a.quick else max(5, n // 3))
    results.update(kept)
    egress_results, egress_peers = (egress_figures(a.airlock, a.backend, a.quick)
                                    if egress_figures else ({}, {}))
    results.update(egress_results)
    peers.update(egress_peers)

    host_ms = peers["host python3 -c"]["median_ms"]
    print()
    print("%-58s %10s %10s %8s" % ("", "median", "p99", "vs host"))
    rows = [("execute_code print(1), warm pool, through MCP (paced %d ms)"
             % results["warm_calls_paced_ms"], results["execute_code_warm_pool"]),
            ("  the same, VMs without their jail", results["execute_code_warm_pool_unconfined"]),
            ("restore to ready, no pool (airlock run)", results["restore_to_ready_no_pool"]),
            ("  the same, VMs without their jail", results["restore_to_ready_no_pool_unconfined"]),
            ("cold boot to ready, no snapshot", results["cold_boot_to_ready"])]
    rows += [("  %s (%s)" % (lang, HELLO[lang] if lang != "go" else "fmt.Println(1), built"),
              results["execute_code_warm_%s" % lang]) for lang in HELLO]
    rows += [("  200,000-line (20 MB) print, 1 MiB returned", results["execute_code_warm_flood"]),
             ("  the same program printing to /dev/null", results["execute_code_warm_flood_null"])]
    rows += [("peer: " + k, v) for k, v in peers.items() if not k.startswith("egress")]
    for name, s in rows:
        print("%-58s %8.1f ms %8.1f ms %7.2fx" % (name, s["median_ms"], s["p99_ms"],
                                                  s["median_ms"] / host_ms))
    js_ratio = (results["execute_code_warm_javascript"]["median_ms"] /
                results["execute_code_warm_python"]["median_ms"])
    results["javascript_vs_python_warm"] = js_ratio
    print("javascript / python, warm through MCP: %.2fx" % js_ratio)
    qemu_key = [k for k in peers if k.startswith("QEMU")]
    if qemu_key:
        ratio = results["restore_to_ready_no_pool"]["median_ms"] / peers[qemu_key[0]]["median_ms"]
        results["restore_vs_qemu_incoming"] = ratio
        print("restore to ready / QEMU's plain -incoming restore: %.2fx" % ratio)
    print("fresh VMs per second, 8 concurrent callers: %.1f" % results["vms_per_second_8_clients"])
    print("idle pooled VM: unique %.1f MiB, PSS %.1f MiB; about %d fit in free memory" % (
        results["idle_vm_unique_mib"], results["idle_vm_pss_mib"], results["idle_vms_that_fit"]))
    print_kept_state(results)
    if print_egress:
        print_egress(egress_results, egress_peers, a.quick)
    else:
        print("egress: left out (its test servers are in the source tree's test/integration)")
    results.update(http_figures(a.airlock, a.backend, n, pace, Mcp, stats, a.quick))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"backend": a.backend, "results": results, "peers": peers}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
