// What the node suites (mcp_sdk_v2, mcp_inspector, mcp_conformance) share: `airlock mcp --http`
// started on a port of its own and stopped with SIGTERM, and the cleanups of their after().
// Not a suite: it has no tests.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const LISTENING = /airlock: listening on (http:\/\/\S+\/mcp)\n/;

// `airlock mcp --backend BACKEND --http 127.0.0.1:0 [--token-file F] ARGS...`, F holding tokens
// ({label: token}; null: no token file, loopback only); resolves once it prints where it listens
// (within 60 s x scale), rejects if it exits first. Resolves with { proc, url, stderr (all it
// has written so far), tokenFile (null without tokens), stop() }; stop() may be called again and
// answers as the first call did.
export async function startHttpServer({ airlock, backend, tokens = null, args = [], scale = 1,
  env = process.env }) {
  const argv = ['mcp', '--backend', backend, '--http', '127.0.0.1:0'];
  let dir = null;
  let tokenFile = null;
  if (tokens) {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-http-'));
    tokenFile = path.join(dir, 'tokens');
    fs.writeFileSync(tokenFile, Object.entries(tokens).map(([label, t]) => `${label}:${t}\n`).join(''),
      { mode: 0o600 });
    argv.push('--token-file', tokenFile);
  }
  const removeDir = () => dir && fs.rmSync(dir, { recursive: true, force: true });
  const proc = spawn(airlock, [...argv, ...args], { env: { ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  let stopped = null;
  const server = {
    proc,
    url: null,
    tokenFile,
    get stderr() {
      return stderr;
    },
    // SIGTERM: the server stops taking requests, ends its calls and VMs, and exits 0
    stop: () => (stopped ??= (async () => {
      proc.kill('SIGTERM');
      let timer;
      const result = await Promise.race([exited, new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), 30000 * scale);
      })]);
      clearTimeout(timer);
      removeDir();
      if (!result) {
        proc.kill('SIGKILL');
        throw new Error(`airlock --http did not exit within ${30 * scale} s of SIGTERM:\n${stderr}`);
      }
      if (result.code !== 0)
        throw new Error(`airlock --http exited ${result.code ?? result.signal} after SIGTERM:\n${stderr}`);
      return result;
    })()),
  };
  try {
    server.url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening on" line within ${60 * scale} s:\n${stderr}`)),
        60000 * scale);
      proc.stderr.on('data', (d) => {
        stderr += d;
        const m = LISTENING.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      proc.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`airlock exited (${code ?? signal}) before listening:\n${stderr}`));
      });
    });
  } catch (e) {
    proc.kill('SIGKILL'); // if it still runs: no caller holds it to stop
    removeDir();
    throw e;
  }
  return server;
}

// Runs cleanups (functions, async or not) last first, each one even if one before it threw;
// resolves with the messages of those that threw.
export async function runCleanups(cleanups) {
  const problems = [];
  for (const cleanup of [...cleanups].reverse()) {
    try {
      await cleanup();
    } catch (e) {
      problems.push(e.message);
    }
  }
  return problems;
}
