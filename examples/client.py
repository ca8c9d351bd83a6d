#!/usr/bin/env python3
"""A minimal MCP client using only Python's standard library: it starts `airlock mcp`, then runs
a short agent-style session against execute_code (write data, analyse it, plot it), printing
what a model would read and saving returned images under ./airlock-out/.

    python3 examples/client.py [path/to/airlock]
"""
import base64
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
AIRLOCK = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "mcp", "airlock")


class McpClient:
    def __init__(self, command):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.next_id = 1

    def request(self, method, params=None):
        msg_id = self.next_id
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()
        while True:  # skip notifications (progress, logs) until our reply arrives
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("airlock mcp exited")
            reply = json.loads(line)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"]["message"])
                return reply["result"]

    def notify(self, method):
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method}).encode() + b"\n")
        self.proc.stdin.flush()

    def close(self):
        self.proc.stdin.close()  # EOF: the server kills its VMs and exits 0
        return self.proc.wait(timeout=10)


def show(step, result):
    print("== %s%s" % (step, "  (isError)" if result.get("isError") else ""))
    for block in result["content"][:-1]:  # the last block repeats structuredContent as JSON
        if block["type"] == "text":
            print(block["text"])
        elif block["type"] == "image":
            os.makedirs("airlock-out", exist_ok=True)
            path = os.path.join("airlock-out", "plot-%d.png" % len(os.listdir("airlock-out")))
            with open(path, "wb") as f:
                f.write(base64.b64decode(block["data"]))
            print("[image %s saved to %s]" % (block["mimeType"], path))
        elif block["type"] == "resource":
            print("[file %s]" % block["resource"]["uri"])


def main():
    client = McpClient([AIRLOCK, "mcp"])
    init = client.request("initialize", {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "airlock-example", "version": "1.0"}})
    client.notify("notifications/initialized")
    print("connected to %s %s (protocol %s)" % (init["serverInfo"]["name"],
                                               init["serverInfo"]["version"],
                                               init["protocolVersion"]))
    tools = client.request("tools/list")["tools"]
    print("tools:", ", ".join(t["name"] for t in tools))

    def run(step, **arguments):
        result = client.request("tools/call", {"name": "execute_code", "arguments": arguments})
        show(step, result)
        return result

    # 1. The model writes a data set (every call is a fresh VM, so data travels as files).
    csv = "month,sales\n" + "".join("%d,%d\n" % (m, 100 + 7 * m + (m % 3) * 11) for m in range(1, 13))
    run("explore the data", code="import pandas as pd\ndf = pd.read_csv('sales.csv')\n"
        "print(df.describe().loc[['mean', 'min', 'max']])",
        files=[{"path": "sales.csv", "content": csv}])
    # 2. It analyses it.
    fit = run("fit a trend", code="import numpy as np, pandas as pd\ndf = pd.read_csv('sales.csv')\n"
              "slope, intercept = np.polyfit(df.month, df.sales, 1)\n"
              "print(f'trend: {slope:.2f} per month, intercept {intercept:.1f}')",
              files=[{"path": "sales.csv", "content": csv}])
    # 3. It plots it: plt.show() comes back as an image block.
    run("plot it", code="import pandas as pd, matplotlib.pyplot as plt\n"
        "df = pd.read_csv('sales.csv')\nax = df.plot(x='month', y='sales', marker='o', title='Sales')\n"
        "ax.set_ylabel('units'); plt.show()", files=[{"path": "sales.csv", "content": csv}])
    # 4. A mistake is reported as such, so the model can fix its code.
    run("a bug", code="print(undefined_name)")
    status = client.close()
    ok = not fit.get("isError") and "trend:" in fit["structuredContent"]["stdout"] and status == 0
    print("session %s" % ("completed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
