"""One `airlock mcp` session on pipes, for the tests that speak MCP to it (test_mcp_raw.py and
test/security/): raw lines in, messages out, calls, the server's VMs, and a clean close."""
import json
import os
import select
import subprocess
import time

from harness import AIRLOCK, SLOWDOWN, expect

BACKEND = os.environ.get("AIRLOCK_TEST_BACKEND", "tcg")
INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "raw-test", "version": "1"}}}


class Server:
    """One `airlock mcp` process on pipes."""

    def __init__(self, *args, stdin=subprocess.PIPE, env=None, pass_fds=()):
        self.proc = subprocess.Popen([AIRLOCK, "mcp", "--backend", BACKEND] + list(args),
                                     stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, pass_fds=pass_fds)
        self.buf = b""
        self.messages = []  # read but not yet taken

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg):
        self.send_raw(json.dumps(msg).encode() + b"\n")

    def _read_line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def take(self, pred, timeout=60):
        """The first message (read or queued) for which pred holds."""
        for m in self.messages:
            if pred(m):
                self.messages.remove(m)
                return m
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_line(deadline)
            if m is None:
                raise AssertionError("no matching message within %ss; queued: %r"
                                     % (timeout, self.messages[-5:]))
            if pred(m):
                return m
            self.messages.append(m)

    def reply(self, id, timeout=60):
        return self.take(lambda m: m.get("id") == id and "method" not in m, timeout)

    def request(self, id, method, params=None, timeout=60):
        msg = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.reply(id, timeout)

    def call(self, id, arguments, meta=None, timeout=120):
        params = {"name": "execute_code", "arguments": arguments}
        if meta:
            params["_meta"] = meta
        return self.request(id, "tools/call", params, timeout)

    def vms(self):
        """The server's VM processes: its children, but for short-lived forks of the server
        itself (readonly_files.c opens a VM's files in one)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        server_exe = os.readlink("/proc/%d/exe" % self.proc.pid)
        vms = []
        for pid in out.split():
            try:
                if os.readlink("/proc/%s/exe" % pid) == server_exe:
                    continue
            except OSError:
                continue  # gone meanwhile
            vms.append(pid)
        return vms

    def close(self):
        # as an MCP host ends a server: stdin EOF (the server then kills its VMs, warm pool
        # included); SIGKILL only if it does not go
        if self.proc.poll() is None and self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.stdin = None
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


def started(*args):
    s = Server(*args)
    r = s.request(0, "initialize", INIT["params"])
    expect(r["result"]["protocolVersion"] == "2025-11-25", "initialize", r)
    s.init_result = r
    s.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    return s


# The languages, one pool lane each (agent/proto.h, AL_LANGUAGES): a full pool of N per language
# is N * len(LANGUAGES) VMs.
LANGUAGES = ("python", "javascript", "bash", "go")


def wait_for_pool(s, count, timeout=60):
    """Waits until the server has count VM processes (its warm pool, once refilled). The limit
    scales like every duration a test asserts (harness.SLOWDOWN): in the one-CPU KVM test host
    a fresh server's first pool waits for its snapshots to be made, over 60 s. Each look runs
    pgrep: four a second, since twenty took most of that one CPU from the VMs waited for."""
    deadline = time.monotonic() + timeout * SLOWDOWN
    while len(s.vms()) < count:
        expect(time.monotonic() < deadline, "the pool has %d VMs (has %d)" % (count, len(s.vms())))
        time.sleep(0.25)
