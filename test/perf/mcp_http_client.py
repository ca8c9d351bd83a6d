#!/usr/bin/env python3
"""An MCP client for `airlock mcp --http` (Streamable HTTP at /mcp, bearer token), Python's
standard library only, and a small load generator built on it. Used by
test/deploy/haproxy-two-replicas.sh and test/perf/http_bench.py; meant to be imported by other
tests too:

    from mcp_http_client import McpHttpClient, run_load, summarize
    with McpHttpClient("http://127.0.0.1:8080/mcp", token) as c:
        result = c.execute_code("print(1)")           # the CallToolResult
        print(result["structuredContent"]["stdout"])

Eras: "2025-11-25" (and "2025-06-18", "2025-03-26"): initialize, then notifications/initialized,
then requests carrying the Mcp-Session-Id the server gave (if it gave one) and
MCP-Protocol-Version. "2026-07-28": stateless: server/discover, then requests that each carry
the version and capabilities in params._meta and the MCP-Protocol-Version, Mcp-Method and
Mcp-Name headers (stateless_request() below).

Every POST sends `Accept: application/json, text/event-stream`, and the answer may be either: a
JSON body, or an SSE stream whose `data:` events are JSON-RPC messages (notifications first,
then the response whose id matches ours).

As a program: python3 test/perf/mcp_http_client.py --url URL --token-file F [--clients N]
[--calls N] [--era E] [--code CODE] [--served-by-header H] [--json OUT]
"""
import argparse
import http.client
import json
import socket
import statistics
import sys
import threading
import time
import urllib.parse

SESSION_ERAS = ("2025-11-25", "2025-06-18", "2025-03-26")
STATELESS_ERA = "2026-07-28"
ACCEPT = "application/json, text/event-stream"


class McpError(Exception):
    """A JSON-RPC error response, or an HTTP status that is not a success."""

    def __init__(self, message, http_status=None, rpc_error=None):
        super().__init__(message)
        self.http_status = http_status
        self.rpc_error = rpc_error


def read_token_file(path):
    """[(label, token)] from an airlock token file: one a line, LABEL:TOKEN or bare TOKEN
    (labelled token-N, N counting lines that hold a token from 1, as SPEC.md words it).
    Blank lines and lines starting with # are skipped."""
    tokens = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            label, sep, token = line.partition(":")
            if not sep:
                label, token = "token-%d" % (len(tokens) + 1), line
            tokens.append((label, token))
    return tokens


def parse_sse(lines):
    """Yields the data of each SSE event (the `data:` lines joined by newlines) from an
    iterator of raw lines (bytes, with their line ends)."""
    data = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line == "":
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith(":"):
            continue  # a comment (keep-alive)
        else:
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                data.append(value)
            # event:, id:, retry: carry nothing we need
    if data:
        yield "\n".join(data)


class McpHttpClient:
    """One MCP client over Streamable HTTP: one keep-alive connection, one session (in the
    session eras), requests one at a time. Not thread-safe: one per thread."""

    def __init__(self, url, token, era="2025-11-25", timeout=330.0, client_name="airlock-load",
                 ssl_context=None):
        if era not in SESSION_ERAS and era != STATELESS_ERA:
            raise ValueError("unknown era %r" % era)
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https"):
            raise ValueError("url must be http:// or https://")
        self.https = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.https else 80)
        self.path = u.path or "/"
        self.token = token
        self.era = era
        self.timeout = timeout
        self.client_name = client_name
        self.ssl_context = ssl_context  # https: e.g. ssl.create_default_context(cafile=...)
        self.session_id = None
        self.next_id = 1
        self.conn = None
        self.last_headers = {}  # the latest response's headers, lower-cased names
        self.notifications = []  # notifications that came on a request's SSE stream

    # ---- transport ----

    def _connection(self):
        if self.conn is None:
            if self.https:
                self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                        context=self.ssl_context)
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def _drop_connection(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _headers(self, extra=None):
        h = {
            "Content-Type": "application/json",
            "Accept": ACCEPT,
            "Authorization": "Bearer " + self.token,
        }
        if self.era in SESSION_ERAS:
            if self.session_id:
                h["Mcp-Session-Id"] = self.session_id
            if self.era != "2025-03-26":  # the header came with 2025-06-18
                h["MCP-Protocol-Version"] = self.era
        h.update(extra or {})
        return h

    def post(self, message, extra_headers=None):
        """POSTs one JSON-RPC message. For a request (it has an id) returns the response
        message; for a notification or response returns None (the server answers 202).
        Raises McpError on an HTTP status other than 2xx."""
        body = json.dumps(message).encode()
        headers = self._headers(extra_headers)
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # a kept-alive connection the server (or a proxy) closed meanwhile: once more
                self._drop_connection()
                if attempt:
                    raise
        self.last_headers = {k.lower(): v for k, v in resp.getheaders()}
        ctype = self.last_headers.get("content-type", "").split(";")[0].strip().lower()
        want_id = message.get("id") if "method" in message else None
        if resp.status >= 300:
            text = resp.read().decode("utf-8", "replace")
            if resp.will_close:
                self._drop_connection()
            raise McpError("HTTP %d: %s" % (resp.status, text[:300]), http_status=resp.status)
        if want_id is None:
            resp.read()
            if resp.will_close:
                self._drop_connection()
            return None
        if ctype == "text/event-stream":
            reply = self._read_sse(resp, want_id)
        else:
            reply = json.loads(resp.read() or b"null")
            if resp.will_close:
                self._drop_connection()
            if isinstance(reply, list):  # a batch answer (older eras): ours by id
                reply = next((m for m in reply if m.get("id") == want_id), None)
        if not isinstance(reply, dict) or reply.get("id") != want_id:
            raise McpError("no response with id %r" % (want_id,))
        return reply

    def _read_sse(self, resp, want_id):
        """Reads SSE events until the response with want_id; keeps notifications. The server
        should end the stream once it has answered; if it lingers, the connection is dropped
        after a short wait rather than held."""
        reply = None
        lines = iter(resp.readline, b"")
        try:
            for data in parse_sse(lines):
                try:
                    msg = json.loads(data)
                except ValueError:
                    continue
                for m in msg if isinstance(msg, list) else [msg]:
                    if isinstance(m, dict) and "method" in m and "id" not in m:
                        self.notifications = self.notifications[-99:] + [m]  # the last 100
                    elif isinstance(m, dict) and m.get("id") == want_id:
                        reply = m
                if reply is not None:
                    sock = getattr(self.conn, "sock", None)
                    if sock is not None:
                        sock.settimeout(2.0)
                    rest = resp.read()  # the stream's end (normally at once)
                    del rest
                    break
        except (socket.timeout, TimeoutError):
            if reply is None:
                raise
            self._drop_connection()
            return reply
        if self.conn is not None and self.conn.sock is not None:
            self.conn.sock.settimeout(self.timeout)
        if resp.will_close or reply is None:
            self._drop_connection()
        return reply

    # ---- JSON-RPC ----

    def request(self, method, params=None):
        """Sends a request, returns its result; raises McpError for a JSON-RPC error."""
        if self.era == STATELESS_ERA:
            return stateless_request(self, method, params)
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        self.next_id += 1
        if params is not None:
            msg["params"] = params
        reply = self.post(msg)
        if "error" in reply:
            err = reply["error"]
            raise McpError("%s: %s" % (err.get("code"), err.get("message")), rpc_error=err)
        return reply.get("result")

    def notify(self, method, params=None):
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.post(msg)

    # ---- MCP ----

    def open(self):
        """The handshake of the era. Returns the server's initialize (or discover) result."""
        if self.era == STATELESS_ERA:
            return stateless_open(self)
        result = self.request("initialize", {
            "protocolVersion": self.era,
            "capabilities": {},
            "clientInfo": {"name": self.client_name, "version": "1"},
        })
        self.session_id = self.last_headers.get("mcp-session-id") or None
        agreed = result.get("protocolVersion")
        if agreed != self.era:
            raise McpError("asked for %s, server answered %s" % (self.era, agreed))
        self.notify("notifications/initialized")
        return result

    def call_tool(self, name, arguments):
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def execute_code(self, code, **arguments):
        """execute_code with code and any other of its arguments (language, keep_state,
        state_id, timeout_s...). Returns the CallToolResult."""
        args = dict(arguments)
        args["code"] = code
        return self.call_tool("execute_code", args)

    def close(self):
        """Ends the session (DELETE, where the server gave one; a 405 is fine) and the
        connection."""
        if self.session_id and self.era in SESSION_ERAS:
            try:
                conn = self._connection()
                conn.request("DELETE", self.path, headers=self._headers())
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                pass
        self.session_id = None
        self._drop_connection()

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


# ---- MCP 2026-07-28 (stateless) ----------------------------------------------------------
#
# From the specification's 2026-07-28 revision (notes: /tmp/research/mcp-2026.md when this was
# written): no initialize and no session; `server/discover` is optional; every request carries
# the protocol version and the client's capabilities in params._meta, and over HTTP the headers
# MCP-Protocol-Version, Mcp-Method and (tools/call, prompts/get, resources/read, tasks/*)
# Mcp-Name, each equal to what the body says. Every result has resultType ("complete" here: we
# declare no tasks extension, so a server may not answer with a task).

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
              "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId"}


def header_value(text):
    """A header value as the 2026-07-28 transport writes one: plain when it is printable
    ASCII without leading or trailing space, else =?base64?...?= of its UTF-8."""
    if text and text.isascii() and text.isprintable() and text == text.strip():
        return text
    import base64
    return "=?base64?%s?=" % base64.b64encode(text.encode()).decode()


def stateless_request(client, method, params):
    """2026-07-28: one self-describing request; returns its result (raises McpError for a
    JSON-RPC error, or a result without resultType "complete")."""
    params = dict(params or {})
    meta = dict(params.get("_meta") or {})
    meta.setdefault(META_VERSION, STATELESS_ERA)
    meta.setdefault(META_CAPABILITIES, {})
    meta.setdefault(META_CLIENT_INFO, {"name": client.client_name, "version": "1"})
    params["_meta"] = meta
    msg = {"jsonrpc": "2.0", "id": client.next_id, "method": method, "params": params}
    client.next_id += 1
    headers = {"MCP-Protocol-Version": STATELESS_ERA, "Mcp-Method": method}
    if method in NAME_PARAM and isinstance(params.get(NAME_PARAM[method]), str):
        headers["Mcp-Name"] = header_value(params[NAME_PARAM[method]])
    reply = client.post(msg, extra_headers=headers)
    if "error" in reply:
        err = reply["error"]
        raise McpError("%s: %s" % (err.get("code"), err.get("message")), rpc_error=err)
    result = reply.get("result")
    if not isinstance(result, dict) or result.get("resultType") != "complete":
        raise McpError("result without resultType complete: %r" % (
            result.get("resultType") if isinstance(result, dict) else result,))
    return result


def stateless_open(client):
    """2026-07-28: server/discover; checks the server supports the era. Returns its result."""
    result = stateless_request(client, "server/discover", {})
    if STATELESS_ERA not in (result.get("supportedVersions") or []):
        raise McpError("server/discover: %s not in supportedVersions %r" % (
            STATELESS_ERA, result.get("supportedVersions")))
    return result


# ---- load ---------------------------------------------------------------------------------

def check_print_one(result):
    """None when an execute_code of print(1) came back right, else what was wrong."""
    if not isinstance(result, dict):
        return "no result"
    if result.get("isError"):
        text = next((b.get("text", "") for b in result.get("content", [])
                     if b.get("type") == "text"), "")
        return "isError: " + text[:200]
    sc = result.get("structuredContent") or {}
    if sc.get("exit_code") != 0 or sc.get("stdout") != "1\n":
        return "unexpected result: exit_code %r stdout %r" % (sc.get("exit_code"),
                                                            sc.get("stdout"))
    return None


def run_load(url, tokens, clients=50, calls=20, era="2025-11-25", code="print(1)",
             check=check_print_one, served_by_header=None, deadline_s=900.0, pace_s=0.0,
             ssl_context=None):
    """`clients` threads, client i with tokens[i % len(tokens)] (a (label, token) pair), each
    opening its own session and making `calls` execute_code calls of `code` one after another.
    Returns a list of records, one per call (and one per failed handshake):
    {client, label, ok, error, latency_ms, served_by}. served_by is the value of the response
    header served_by_header (a proxy may name the replica there), else None. pace_s: a pause
    before each call after the first (an agent's pace: the pool refills meanwhile). Every
    thread stops at deadline_s after the start."""
    records = []
    lock = threading.Lock()
    start = time.monotonic()

    def one_client(i):
        label, token = tokens[i % len(tokens)]
        mine = []
        c = McpHttpClient(url, token, era=era, client_name="load-%d" % i,
                          ssl_context=ssl_context)
        try:
            c.open()
        except Exception as e:  # noqa: BLE001 (a failure is a record, not a crash)
            mine.append({"client": i, "label": label, "ok": False,
                         "error": "open: %s" % e, "latency_ms": None, "served_by": None})
            with lock:
                records.extend(mine)
            return
        try:
            for n in range(calls):
                if n and pace_s:
                    time.sleep(pace_s)
                if time.monotonic() - start > deadline_s:
                    mine.append({"client": i, "label": label, "ok": False,
                                 "error": "deadline", "latency_ms": None, "served_by": None})
                    break
                t0 = time.monotonic()
                error = None
                try:
                    error = check(c.execute_code(code))
                except Exception as e:  # noqa: BLE001
                    error = "%s: %s" % (type(e).__name__, e)
                ms = (time.monotonic() - t0) * 1000.0
                served = c.last_headers.get(served_by_header.lower()) if served_by_header else None
                mine.append({"client": i, "label": label, "ok": error is None, "error": error,
                             "latency_ms": ms, "served_by": served})
        finally:
            c.close()
            with lock:
                records.extend(mine)

    threads = [threading.Thread(target=one_client, args=(i,), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline_s + 60 - (time.monotonic() - start)))
    wall = time.monotonic() - start
    for r in records:
        r.setdefault("wall_s", wall)
    return records


def percentile(values, p):
    """The p-th percentile (0-100) by the nearest-rank method."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, int(-(-p * len(s) // 100)))  # ceil(p/100 * n)
    return s[min(rank, len(s)) - 1]


def summarize(records):
    """Counts, latency median/p95/max (ms) of the successful calls, the wall time, and per
    token label the set of replicas (served_by) it reached."""
    ok = [r["latency_ms"] for r in records if r["ok"]]
    by_label = {}
    for r in records:
        if r.get("served_by"):
            by_label.setdefault(r["label"], set()).add(r["served_by"])
    wall = max((r.get("wall_s", 0) for r in records), default=0)
    return {
        "calls": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "errors": sorted({r["error"] for r in records if not r["ok"]})[:10],
        "median_ms": statistics.median(ok) if ok else None,
        "p95_ms": percentile(ok, 95),
        "max_ms": max(ok) if ok else None,
        "wall_s": wall,
        "calls_per_s": (len(ok) / wall) if wall else None,
        "replicas_by_label": {k: sorted(v) for k, v in sorted(by_label.items())},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="http://HOST:PORT/mcp")
    ap.add_argument("--token-file", required=True, help="airlock's token file format")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--calls", type=int, default=20, help="calls per client")
    ap.add_argument("--era", default="2025-11-25", choices=list(SESSION_ERAS) + [STATELESS_ERA])
    ap.add_argument("--code", default="print(1)",
                    help="python code; anything but print(1) is checked only for isError")
    ap.add_argument("--served-by-header", default=None,
                    help="a response header naming the replica (set by the proxy)")
    ap.add_argument("--pace", type=float, default=0.0, help="seconds between a client's calls")
    ap.add_argument("--deadline", type=float, default=900.0, help="seconds, all clients")
    ap.add_argument("--json", help="write the summary (and every record) here")
    a = ap.parse_args(argv)
    tokens = read_token_file(a.token_file)
    if not tokens:
        ap.error("no token in %s" % a.token_file)
    check = check_print_one if a.code == "print(1)" else (
        lambda r: ("isError" if not isinstance(r, dict) or r.get("isError") else None))
    records = run_load(a.url, tokens, a.clients, a.calls, a.era, a.code, check,
                       a.served_by_header, a.deadline, a.pace)
    s = summarize(records)
    print(json.dumps(s, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"summary": s, "records": records}, f)
    return 0 if s["failed"] == 0 and s["calls"] == a.clients * a.calls else 1


if __name__ == "__main__":
    sys.exit(main())
