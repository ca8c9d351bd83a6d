// `airlock mcp` driven by the official MCP TypeScript SDK client, as an MCP host would drive it.
// The SDK checks every structuredContent against the tool's outputSchema by itself.
// Run: node --test test/integration/mcp_sdk.test.mjs   (VMs on $AIRLOCK_TEST_BACKEND, default tcg)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { LATEST_PROTOCOL_VERSION, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const airlock = path.join(process.env.AIRLOCK_BUILD ?? path.join(root, 'build'), 'mcp', 'airlock');
const backend = process.env.AIRLOCK_TEST_BACKEND ?? 'tcg';

let client;
let transport;

before(async () => {
  transport = new StdioClientTransport({
    command: airlock,
    args: ['mcp', '--backend', backend],
    // all of ours (the SDK passes only HOME, PATH and a few): AIRLOCK_IMAGES, AIRLOCK_AGENT and
    // LD_LIBRARY_PATH point airlock at the payload in the KVM test host
    env: { ...process.env },
    stderr: 'ignore',
  });
  client = new Client({ name: 'airlock-sdk-test', version: '1.0.0' });
  await client.connect(transport);
});

after(async () => {
  await client.close();
});

// This server's VMs: its children (a VM, or the wrapper above it), not the VMs that another
// airlock on the same machine runs at the same time, nor short-lived forks of the server itself.
function vmCount() {
  let children;
  try {
    children = execFileSync('pgrep', ['-P', String(transport.pid)]).toString().trim().split('\n');
  } catch {
    return 0; // pgrep exits 1 when nothing matches
  }
  const server = fs.readlinkSync(`/proc/${transport.pid}/exe`);
  return children.filter((pid) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/exe`) !== server;
    } catch {
      return false; // gone meanwhile
    }
  }).length;
}

async function waitFor(what, cond, ms = 30000) {
  const t = Date.now();
  while (!cond()) {
    assert.ok(Date.now() - t < ms, `${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// Slower hosts (the KVM test host: everything emulated, snapshots made at first use) scale the
// SDK's 60 s request timeout, as test/runner.py scales every test's deadline there.
const scale = Number(process.env.AIRLOCK_TEST_TIMEOUT_SCALE ?? 1);

async function run(args, options) {
  return client.callTool({ name: 'execute_code', arguments: args }, undefined,
    { timeout: 60000 * scale, ...options });
}

test('initialize: latest protocol, server info, instructions, capabilities', () => {
  assert.equal(LATEST_PROTOCOL_VERSION, '2025-11-25');
  assert.equal(client.getServerVersion().name, 'airlock');
  assert.match(client.getInstructions(), /microVM/);
  const caps = client.getServerCapabilities();
  assert.deepEqual(caps.tools, { listChanged: false });
  assert.ok(caps.logging);
});

test('tools/list describes execute_code with input and output schemas', async () => {
  const { tools } = await client.listTools();
  assert.equal(tools.length, 1);
  const tool = tools[0];
  assert.equal(tool.name, 'execute_code');
  assert.match(tool.description, /numpy/);
  assert.match(tool.description, /no network/i);
  assert.equal(tool.inputSchema.additionalProperties, false);
  assert.deepEqual(tool.inputSchema.properties.language.enum, ['python', 'javascript', 'bash', 'go']);
  assert.deepEqual(tool.outputSchema.required.sort(), ['duration_ms', 'exit_code', 'files', 'signal',
    'stderr', 'stderr_truncated', 'stdout', 'stdout_truncated', 'timed_out']);
});

test('python runs and returns text and structured content', async () => {
  const r = await run({ code: 'print(6 * 7)' });
  assert.equal(r.isError, false);
  assert.equal(r.structuredContent.stdout, '42\n');
  assert.equal(r.structuredContent.exit_code, 0);
  assert.equal(r.content[0].type, 'text');
  assert.equal(r.content[0].text, '42\n');
  const summary = JSON.parse(r.content.at(-1).text);
  assert.equal(summary.exit_code, 0);
  assert.equal(summary.stdout, undefined, 'output is not sent twice');
});

test('javascript and bash run', async () => {
  const js = await run({ code: 'console.log([1, 2, 3].map((x) => x * 2).join(","))', language: 'javascript' });
  assert.equal(js.structuredContent.stdout, '2,4,6\n');
  const sh = await run({ code: 'echo "$(( 6 * 7 ))" | tr 4 X', language: 'bash' });
  assert.equal(sh.structuredContent.stdout, 'X2\n');
});

test('keep_state returns a state_id that later calls continue from (schema-checked)', async () => {
  const kept = await run({ code: 'import json\nrows = [1, 2, 3]', keep_state: true });
  assert.equal(kept.isError, false);
  assert.match(kept.structuredContent.state_id, /^[0-9a-f]{32}$/);
  assert.match(kept.structuredContent.state_expires_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(kept.structuredContent.state_error, null);
  const id = kept.structuredContent.state_id;
  const [a, b] = await Promise.all([
    run({ code: 'rows.append(4)\nprint(sum(rows))', state_id: id }),
    run({ code: 'print(json.dumps(rows))', state_id: id }),
  ]);
  assert.equal(a.structuredContent.stdout, '10\n');
  assert.equal(b.structuredContent.stdout, '[1, 2, 3]\n', 'a branch does not see the other');
  const timedOut = await run({ code: 'while True: pass', keep_state: true, timeout_s: 1 });
  assert.equal(timedOut.structuredContent.state_id, null);
  assert.match(timedOut.structuredContent.state_error, /timed out/);
});

test('a failing program is isError with its exit code and stderr', async () => {
  const r = await run({ code: 'import sys\nprint("partial")\nsys.exit("boom")' });
  assert.equal(r.isError, true);
  assert.equal(r.structuredContent.exit_code, 1);
  assert.equal(r.structuredContent.stderr, 'boom\n');
  assert.equal(r.content[0].text, 'partial\n[stderr]\nboom\n[exit code 1]');
});

test('timeout: isError, timed_out, and the readable line says so', async () => {
  const t = Date.now();
  const r = await run({ code: 'print("waiting", flush=True)\nwhile True: pass', timeout_s: 1 });
  assert.ok(Date.now() - t < 6000);
  assert.equal(r.isError, true);
  assert.equal(r.structuredContent.timed_out, true);
  assert.equal(r.structuredContent.exit_code, null);
  assert.match(r.content[0].text, /^waiting\n\[timed out after 1 s\]$/);
});

test('stdin and files go in; plots come back as images, other files as resources', async () => {
  const code = [
    'import sys, json, pandas as pd, matplotlib.pyplot as plt',
    'df = pd.read_csv("data/points.csv")',
    'cfg = json.load(open("cfg.json"))',
    'print(sys.stdin.read().strip(), cfg["title"], int(df.y.sum()))',
    'df.plot(x="x", y="y", title=cfg["title"]); plt.show()',
    'df.describe().to_csv("out/summary.csv")',
    'open("out/raw.bin", "wb").write(bytes(range(256)))',
  ].join('\n');
  const r = await run({
    code,
    stdin: 'hello',
    files: [
      { path: 'data/points.csv', content: 'x,y\n1,2\n2,4\n3,8\n' },
      { path: 'cfg.json', content: Buffer.from('{"title": "growth"}').toString('base64'), encoding: 'base64' },
    ],
    timeout_s: 60,
  }, { timeout: 120000 });
  assert.equal(r.isError, false, r.content[0].text);
  assert.equal(r.structuredContent.stdout, 'hello growth 14\n');
  const image = r.content.find((c) => c.type === 'image');
  assert.equal(image.mimeType, 'image/png');
  assert.equal(Buffer.from(image.data, 'base64').subarray(1, 4).toString(), 'PNG');
  const csv = r.content.find((c) => c.type === 'resource' && c.resource.uri === 'airlock://out/summary.csv');
  assert.match(csv.resource.text, /^,x,y/);
  assert.equal(csv.resource.mimeType, 'text/csv');
  const raw = r.content.find((c) => c.type === 'resource' && c.resource.uri === 'airlock://out/raw.bin');
  assert.equal(Buffer.from(raw.resource.blob, 'base64').length, 256);
  const paths = r.structuredContent.files.map((f) => f.path).sort();
  assert.deepEqual(paths, ['figure-1.png', 'raw.bin', 'summary.csv']);
  assert.ok(r.structuredContent.files.every((f) => f.returned));
});

test('bad arguments are an isError result naming the field', async () => {
  const r = await run({ code: 'print(1)', language: 'fortran' });
  assert.equal(r.isError, true);
  assert.match(r.content[0].text, /language/);
});

test('an unknown tool is a JSON-RPC error', async () => {
  await assert.rejects(client.callTool({ name: 'nope', arguments: {} }), (e) => e.code === -32602);
});

test('progress arrives at least once a second', async () => {
  const seen = [];
  const r = await run({ code: 'import time\nfor i in range(3):\n    print(i, flush=True); time.sleep(1)' },
    { onprogress: (p) => seen.push(p) });
  assert.equal(r.structuredContent.stdout, '0\n1\n2\n');
  assert.ok(seen.length >= 2, `got ${seen.length} progress notifications`);
  assert.match(seen.at(-1).message, /running for/);
});

test('ping is answered while a slow call runs', async () => {
  const slow = run({ code: 'import time; time.sleep(3); print("done")' });
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const t = Date.now();
  await client.ping();
  assert.ok(Date.now() - t < 500, `ping took ${Date.now() - t} ms`);
  assert.equal((await slow).structuredContent.stdout, 'done\n');
});

test('cancellation through an AbortSignal ends the call and its VM', async () => {
  const before = vmCount();
  const controller = new AbortController();
  const call = run({ code: 'import time; time.sleep(30)' }, { signal: controller.signal });
  await waitFor('the call takes a VM (the pool refills)', () => vmCount() === before + 1);
  controller.abort('test');
  await assert.rejects(call);
  const t = Date.now();
  while (vmCount() > before && Date.now() - t < 2000) await new Promise((r) => setTimeout(r, 5));
  assert.equal(vmCount(), before, 'VM gone');
  assert.equal((await run({ code: 'print("next")' })).structuredContent.stdout, 'next\n');
});

test('8 concurrent time.sleep(2) calls finish in under 16 s, the least they take in turn', async () => {
  // 2 s, not 1: the bound stays the sum of the sleeps (what calls one after another cannot beat)
  // and leaves room for the VMs' own start-up on slow hosts (the KVM test host)
  const t = Date.now();
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) =>
    run({ code: `import time; time.sleep(2); print(${i})` })));
  const seconds = (Date.now() - t) / 1000;
  results.forEach((r, i) => assert.equal(r.structuredContent.stdout, `${i}\n`));
  console.log(`# 8 concurrent sleep(2) calls: ${seconds.toFixed(2)} s`);
  assert.ok(seconds < 16, `took ${seconds} s`);
});

test('logging/setLevel debug: the server then logs to the client', async () => {
  const logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params));
  assert.deepEqual(await client.setLoggingLevel('debug'), {});
  // a cancelled call is logged at debug level (mcp/protocol/server.c)
  const controller = new AbortController();
  const call = run({ code: 'import time; time.sleep(30)' }, { signal: controller.signal });
  await client.ping(); // answered in order: the server has the call by then
  controller.abort('test');
  await assert.rejects(call);
  await waitFor('a log message', () => logs.length > 0, 10000);
  assert.ok(logs.every((l) => l.logger === 'airlock' && l.level && typeof l.data === 'string'),
    JSON.stringify(logs));
  assert.ok(logs.some((l) => l.level === 'debug' && /cancel/.test(l.data)), JSON.stringify(logs));
  await client.setLoggingLevel('warning');
});
