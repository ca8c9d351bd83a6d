// execute_code round trips through the official MCP SDK client: median and p99 of N sequential
// print(1) calls, then 8 concurrent time.sleep(1) calls, in one invocation.
//   node test/perf/mcp_roundtrip.mjs [N] [--backend tcg]
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(root, 'test', 'package.json')); // the tests' SDK
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport } = require('@modelcontextprotocol/sdk/client/stdio.js');

const n = Number(process.argv[2] ?? 50);
const backend = process.argv.includes('--backend') ? process.argv[process.argv.indexOf('--backend') + 1] : 'tcg';
const client = new Client({ name: 'airlock-perf', version: '1.0.0' });
await client.connect(new StdioClientTransport({
  command: path.join(root, 'build', 'mcp', 'airlock'), args: ['mcp', '--backend', backend], stderr: 'ignore',
}));

const call = (code) => client.callTool({ name: 'execute_code', arguments: { code } });
const times = [];
await call('print(1)'); // warm the page cache
for (let i = 0; i < n; i++) {
  const t = performance.now();
  const r = await call('print(1)');
  times.push(performance.now() - t);
  if (r.structuredContent.stdout !== '1\n') throw new Error('bad result');
}
times.sort((a, b) => a - b);
const pct = (p) => times[Math.min(times.length - 1, Math.ceil(p * times.length) - 1)];
console.log(`execute_code print(1) via SDK (${backend}, cold VM per call): median ${pct(0.5).toFixed(1)} ms, p99 ${pct(0.99).toFixed(1)} ms (n=${n})`);

const t = performance.now();
await Promise.all(Array.from({ length: 8 }, () => call('import time; time.sleep(1)')));
console.log(`8 concurrent time.sleep(1) calls: ${((performance.now() - t) / 1000).toFixed(2)} s`);
await client.close();
