// The same kind of session through the official MCP TypeScript SDK.
//   npm ci --prefix examples && node examples/client.mjs [path/to/airlock]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const airlock = process.argv[2] ?? path.join(here, '..', 'build', 'mcp', 'airlock');

const client = new Client({ name: 'airlock-node-example', version: '1.0.0' });
await client.connect(new StdioClientTransport({ command: airlock, args: ['mcp'], stderr: 'ignore' }));
console.log('connected to', client.getServerVersion().name);

const result = await client.callTool({
  name: 'execute_code',
  arguments: {
    language: 'javascript',
    code: 'const xs = JSON.parse(require("fs").readFileSync("xs.json"));\n'
      + 'console.log("sum", xs.reduce((a, b) => a + b, 0), "on", process.version);',
    files: [{ path: 'xs.json', content: JSON.stringify([1, 2, 3, 4]) }],
  },
}, undefined, { onprogress: (p) => console.log('progress:', p.message) });
console.log(result.content[0].text.trim());
console.log('structured:', JSON.stringify({ exit_code: result.structuredContent.exit_code }));
await client.close();
process.exit(result.isError ? 1 : 0);
