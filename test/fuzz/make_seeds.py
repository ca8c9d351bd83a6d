#!/usr/bin/env python3
"""Writes the hand-made seeds of each fuzz target's corpus (test/fuzz/corpus/<target>/seed-*):
well-formed inputs that reach deep paths at once, which the fuzzer then mutates. The rest of
each corpus is what fuzzing found and `run.sh --merge` kept. Run again after changing a format."""
import io
import json
import os
import struct
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def rpc_seeds():
    def lines(*msgs):
        return "".join(json.dumps(m) + "\n" for m in msgs).encode()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "fuzz", "version": "0"}}}
    inited = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "execute_code", "_meta": {"progressToken": 7},
                       "arguments": {"language": "python", "code": "print(1)", "stdin": "x",
                                     "timeout_s": 5,
                                     "files": [{"path": "in/a.txt", "content_base64": "aGk="}]}}}
    write("rpc", "session", lines(init, inited, {"jsonrpc": "2.0", "id": "p", "method": "ping"},
                                  {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, call))
    write("rpc", "cancel", lines(init, call, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                              "params": {"requestId": 2, "reason": "x"}}))
    write("rpc", "logging", lines({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel",
                                   "params": {"level": "debug"}}))
    write("rpc", "batch-and-junk", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]\n{oops\r\n\n')
    # Outside review 2026-12-06, item 8: error texts that quote the client's text cut it inside
    # a UTF-8 character, and the request got no answer at all (or an empty result).
    def call_with(id, **arguments):
        return {"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "execute_code", "arguments": dict(code="1", **arguments)}}
    write("rpc", "utf8-cut", lines(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a" * 199 + "é"}},
        {"jsonrpc": "2.0", "id": 2, "method": "a" * 199 + "é"},
        {"jsonrpc": "2.0", "id": 3, "method": "b" * 198 + "€"},
        call_with(4, **{"b" * 63 + "é": 1}),
        call_with(5, files=[{"path": "p", "content": "", "b" * 63 + "é": 1}]),
        call_with(6, files=[{"path": "c" * 99 + "é/../x", "content": ""}]),
        call_with(7, files=[{"path": "c" * 98 + "😀/x", "content": "", "encoding": "hex"}])))
    odd = ["", "é" * 100, -1, 0, 9223372036854775807, -9223372036854775808, "x" * 5000]
    write("rpc", "odd-ids", lines(*[{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in odd],
                                  {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                  {"jsonrpc": "2.0", "id": 1, "method": "ping"}) +
          b'{"jsonrpc":"2.0","id":1e400,"method":"ping"}\n'
          b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}\n'
          b'{"jsonrpc":"2.0","id":true,"method":"ping"}\n'
          b'{"jsonrpc":"2.0","id":null,"method":"ping"}\n'
          b'{"jsonrpc":"2.0","id":[],"method":"ping"}\n'
          b'{"jsonrpc":"1.0","method":"ping"}\n'
          b'{"jsonrpc":"2.0","id":99999999999999999999,"method":"ping"}\n')
    # MCP 2026-07-28: each request's _meta, discover, tasks, errors of the era
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities":
                {"extensions": {"io.modelcontextprotocol/tasks": {}}},
            "io.modelcontextprotocol/clientInfo": {"name": "fuzz"},
            "io.modelcontextprotocol/logLevel": "debug", "progressToken": "t"}
    write("rpc", "stateless", lines(
        {"jsonrpc": "2.0", "id": "d", "method": "server/discover", "params": {"_meta": meta}},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "execute_code", "arguments": {"code": "1", "timeout_s": 99},
                    "_meta": meta}},
        {"jsonrpc": "2.0", "id": 3, "method": "tasks/get",
         "params": {"taskId": "00", "_meta": meta}},
        {"jsonrpc": "2.0", "id": 4, "method": "tasks/cancel",
         "params": {"taskId": "00", "_meta": meta}},
        {"jsonrpc": "2.0", "id": 5, "method": "ping",
         "params": {"_meta": dict(meta, **{"io.modelcontextprotocol/protocolVersion": "1"})}},
        {"jsonrpc": "2.0", "id": 6, "method": "tools/list",
         "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}))
    write("rpc", "invalid-utf8",
          b'{"jsonrpc":"2.0","id":1,"method":"\xff"}\n'
          b'{"jsonrpc":"2.0","id":2,"method":"\xc0\xaf"}\n'
          b'{"jsonrpc":"2.0","id":3,"method":"\\ud800"}\n'
          b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"\xed\xa0\x80"}}\n'
          b'{"jsonrpc":"2.0","id":"\xe2\x82","method":"ping"}\n'
          b'{"jsonrpc":"2.0","id":5,"method":"a\\u0000b"}\n'
          b'\x00\x01{"jsonrpc":"2.0","id":6,"method":"ping"}\n')


def frame(kind, payload, stream=0):
    """A frame of agent/proto.h version 2: type, length, stream, flags (0), payload."""
    return struct.pack("<IIII", kind, len(payload), stream, 0) + payload


READY, EXIT, ERROR, DATA = 1, 4, 5, 0x41
STDOUT, STDERR = 1, 2


def frame_seeds():
    """Each input: a byte for the read size, a byte for the window ((n + 1) KiB), the stream."""
    ready = frame(READY, struct.pack("<IIII", 2, 0, 0, 0))
    out = frame(DATA, b"hello\n", STDOUT) + frame(DATA, b"\xff\xfe not utf-8\n", STDERR)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, data in (("plot.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 32), ("a/b.txt", b"hi")):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    files = tar_bytes.getvalue()
    skipped = b"123456789 big.bin\n"
    exit_head = struct.pack("<iiIIQQII", 0, 0, 2, 0, 6, 14, len(files), len(skipped))
    exit_frame = frame(EXIT, exit_head + files + skipped)
    write("frame", "run", b"\x07\xff" + ready + out + exit_frame)
    write("frame", "error", b"\x00\xff" + ready + frame(ERROR, b"cannot start python"))
    killed = struct.pack("<iiIIQQII", -1, 9, 1, 0, 0, 0, 0, 0)
    write("frame", "killed", b"\x3f\x00" + frame(EXIT, killed))
    # a window of 1 KiB: output in frames that spend it and the credit granted back, on both
    # streams, then the end
    flow = b"".join(frame(DATA, bytes([0x61 + i]) * 400, STDOUT if i % 3 else STDERR)
                    for i in range(12))
    empty_exit = frame(EXIT, struct.pack("<iiIIQQII", 0, 0, 0, 0, 3200, 1600, 0, 0))
    write("frame", "credit", b"\x10\x00" + ready + flow + empty_exit)
    # what a version 1 agent sends first: an 8-byte header, an 8-byte READY
    write("frame", "v1-ready", b"\x05\x00" + struct.pack("<IIII", READY, 8, 1, 0))
    # pax members libarchive expands (GNU sparse 0.1): each holds one byte and claims 100 KB
    sparse = io.BytesIO()
    with tarfile.open(fileobj=sparse, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(4):
            info = tarfile.TarInfo("big%d" % i)
            info.size = 1
            info.pax_headers = {"GNU.sparse.size": "100000", "GNU.sparse.numblocks": "1",
                                "GNU.sparse.map": "99999,1"}
            tar.addfile(info, io.BytesIO(b"x"))
    sparse_files = sparse.getvalue()
    exit_head = struct.pack("<iiIIQQII", 0, 0, 0, 0, 0, 0, len(sparse_files), 0)
    write("frame", "sparse-tar", b"\x3f\x00" + frame(EXIT, exit_head + sparse_files))


def virtq_seeds():
    """A driver bringing up queue 0 of size 4 (rings at 0x1000/0x2000/0x3000), offering a chain
    of a readable and a writable buffer, and notifying: the script format of fuzz_virtq.c."""
    script = b""

    def reg(offset, value):
        return struct.pack("<BHI", 0, offset, value)

    def mem32(addr, value):
        return struct.pack("<BHI", 3, addr, value)

    def mem(addr, data):
        return struct.pack("<BHB", 2, addr, len(data)) + data
    for status in (1, 3):
        script += reg(0x70, status)                 # ACKNOWLEDGE, DRIVER
    script += reg(0x24, 1) + reg(0x20, 1)           # driver features, high word: VERSION_1
    script += reg(0x70, 0xb)                        # FEATURES_OK
    script += reg(0x30, 0) + reg(0x38, 4)           # queue 0, size 4
    script += reg(0x80, 0x1000) + reg(0x90, 0x2000) + reg(0xa0, 0x3000)
    script += reg(0x44, 1) + reg(0x70, 0xf)         # queue ready, DRIVER_OK
    script += mem(0x1000, struct.pack("<QIHH", 0x4000, 16, 1, 1))   # desc 0 -> 1, readable
    script += mem(0x1010, struct.pack("<QIHH", 0x5000, 32, 2, 0))   # desc 1, writable
    script += mem32(0x2004, 0) + mem32(0x2000, 1 << 16)             # avail ring[0]=0, idx=1
    script += reg(0x50, 0)                                          # notify queue 0
    script += struct.pack("<BH", 1, 0x60) + struct.pack("<BH", 1 | 0x80, 0x100)
    write("virtq", "one-chain", script)


def egress_seeds():
    """fuzz_egress.c's records: [type: 0 OPEN, 1 DATA, 2 CREDIT, 3 CLOSE, 0xff install done]
    [stream - 15][length, LE 16][payload]."""
    def rec(kind, stream, payload=b""):
        return struct.pack("<BBH", kind, stream - 15, len(payload)) + payload
    refused = rec(0, 16) + rec(1, 16, b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    write("egress", "refused", refused + rec(3, 16, struct.pack("<I", 0)))
    connect = rec(0, 17) + rec(1, 17, b"CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n") + \
        rec(1, 17, b"\x16\x03\x01 early bytes") + rec(2, 17, struct.pack("<I", 1000))
    write("egress", "connect", connect + rec(3, 17, struct.pack("<I", 1)))
    write("egress", "install", rec(0, 18) + rec(1, 18, b"GET http://a.invalid/x HTTP/1.1\r\n\r\n") +
          rec(0xff, 18) + rec(0, 19) + rec(1, 19, b"GET http://b.invalid/ HTTP/1.1\r\n\r\n"))
    write("egress", "odd", rec(0, 16) + rec(1, 16, b"GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") +
          rec(0, 17) + rec(1, 17, b"G" * 20000))


def pages_seeds():
    # vmm/pages.h; the magic's first byte ('A') picks 128 KiB of RAM in fuzz_pages.c
    def pages(mem_size, offsets):
        head = b"ALCKPAGE" + struct.pack("<IIQQ", 1, 4096, mem_size, len(offsets))
        body = b"".join(struct.pack("<Q", o) for o in offsets)
        return head + body + b"".join(bytes([i + 1]) * 4096 for i in range(len(offsets)))
    write("pages", "none", pages(128 << 10, []))
    write("pages", "three", pages(128 << 10, [0, 4096 * 7, (128 << 10) - 4096]))
    write("pages", "out-of-order", pages(128 << 10, [8192, 4096]))


def http_seeds():
    def post(path, body, extra=b""):
        return (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                b"application/json\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body)
                + body)
    get = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    write("http", "get", get)
    write("http", "pipelined", get + post(b"/mcp", b'{"jsonrpc":"2.0","id":1}') +
          post(b"/stream", b"{}") + get)
    write("http", "stream-then-later", post(b"/stream", b"[]") + post(b"/later", b"{}") + get)
    write("http", "denied", post(b"/deny", b"x" * 100) + get)
    write("http", "chunked", b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
          b"5\r\nhello\r\n0\r\n\r\n" + get)
    write("http", "headers", post(b"/mcp?x=1", b"{}", b"Authorization: Bearer abc \r\n"
          b"Mcp-Session-Id: 0123\r\nMCP-Protocol-Version: 2026-07-28\r\n"
          b"Mcp-Name: =?base64?ZXhlY3V0ZV9jb2Rl?=\r\nOrigin: http://localhost\r\n"))
    write("http", "repeated", b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    write("http", "too-large", b"POST /mcp HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n")


if __name__ == "__main__":
    rpc_seeds()
    http_seeds()
    frame_seeds()
    egress_seeds()
    virtq_seeds()
    pages_seeds()
