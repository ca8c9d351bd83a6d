// airlock's Node starter: the interpreter that runs the user's JavaScript program.
//
// The agent starts it as the sandbox user, with stdin/stdout/stderr already wired to the agent:
//   fd 3  lines from the agent: "P<seed>" prepare (any number of times), then "G<seed>" go, or
//         "C<seed>" ("K<seed>" with the run's environment): run SCRIPT as a cell (below)
//   fd 4  we write "R" once we wait, and after each prepare; "X<status>" at a cell's end
//
//     node /usr/lib/airlock/start.js SCRIPT [--preload]
//
// A snapshot is taken while this waits, so every VM restored from it shares its memory: V8's
// Math.random state and OpenSSL's DRBGs included. Before any user code runs, each is made fresh
// from the kernel, which the agent has just fed fresh host entropy (at prepare, else at go):
// - OpenSSL's DRBGs are reseeded by reseed.node (images/node-reseed.c); crypto.randomBytes,
//   randomFill(Sync), randomInt, randomUUID, getRandomValues, webcrypto and TLS draw from them.
//   randomInt's and randomUUID's caches are filled on first use, never here.
// - V8 cannot reseed Math.random, so it is replaced by a generator drawing from OpenSSL.
// Prepare also runs a little throwaway code and lets the event loop turn once through each of its
// phases (ticks, promises, timers, poll, immediates), so that an emulated CPU has translated the
// engine's and the loop's common paths before the program needs them: a restored QEMU starts
// with none translated, and the loop's first turn after a program cost ~60 ms of a 180 ms call
// on tcg (2026-12-07). The waiting itself happens inside the loop (an immediate's callback), so
// that node's bootstrap is over and the loop's own code compiled before the snapshot.
//
// Runs with an environment of their own (egress, packages) never reach here: node reads
// NODE_OPTIONS and NODE_EXTRA_CA_CERTS only at its start, so the agent starts a fresh node then.
//
// The program then runs as `node SCRIPT` would run it: its own main module, process.argv,
// require.main; its exit status is node's.
//
// Cells (a call that keeps state or continues one) run instead as scripts in this one global
// context, as the REPL runs its input: top-level declarations and globals carry over to the next
// cell, `require` is there, `module` and `exports` are not. A cell ends when the event loop has
// nothing left to do ('beforeExit'); its status is 1 after an uncaught error (which no longer
// ends the process), else process.exitCode's, else 0. Then "X<status>" is reported and the next
// line waited for, inside the 'beforeExit' listener: a prepare (the VM restored from the kept
// state, fresh randomness) or the next cell. A cell's stdin is empty (node cannot rebind fd 0).
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const Module = require('module');
const vm = require('vm');
const { reseed, moveDescriptor } = require('/usr/lib/airlock/reseed.node');

const PRELOAD = ['assert', 'buffer', 'child_process', 'events', 'fs', 'http', 'https', 'os',
  'path', 'stream', 'url', 'util', 'zlib'];

// Math.random: uniform doubles in [0, 1) with 53 random bits, from OpenSSL in batches.
const BATCH = 1024; // words: 512 doubles a refill
const words = new Uint32Array(BATCH);
let next = BATCH; // nothing drawn yet: the first call fills
const random = {
  random() { // a method, so that the function is named "random" and is no constructor
    if (next + 2 > BATCH) {
      crypto.randomFillSync(words);
      next = 0;
    }
    const high = words[next++] >>> 5; // 27 bits
    const low = words[next++] >>> 6; // 26 bits
    return (high * 67108864 + low) / 9007199254740992;
  },
}.random;

function makeFresh() {
  reseed();
  next = BATCH; // drop what was drawn before the reseed
}

function readLine() {
  const buf = Buffer.alloc(64);
  let line = '';
  while (!line.endsWith('\n')) {
    let n;
    try {
      n = fs.readSync(3, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EINTR') continue;
      throw e;
    }
    if (n === 0) process.exit(125); // the agent went away: there is nothing to run
    line += buf.toString('latin1', 0, n);
  }
  return line;
}

function warmUp() {
  // compiled and run as a program's code would be, on throwaway values, and a throwaway module
  // loaded the way the program will be (the CommonJS loader: resolve, read, wrap, compile); one
  // line to the real stdout (the agent drops what a prepare prints)
  const values = Array.from({ length: 64 }, (_, i) => i * 2);
  const text = JSON.stringify({ sum: values.reduce((a, b) => a + b, 0), values });
  JSON.parse(text);
  new Function('x', 'return `${x}`.length')(text);
  const file = `/tmp/.airlock-warm-up-${process.pid}.js`;
  try {
    fs.writeFileSync(file, 'module.exports = [1, 2, 3].map((x) => x * 2).join(",");\n');
    require(file);
  } catch (e) {
    // a warm-up that cannot run leaves the program as it is
  } finally {
    delete require.cache[file];
    fs.rmSync(file, { force: true });
  }
  // console.log's own path (formatting, util.inspect of a number): what most programs print first
  console.log(values.length, 'x');
}

// The exit report: "X<status>" on the ready pipe once every 'exit' listener has run, the program's
// output already in its pipes (node writes to pipes synchronously), and then the process ends at
// once: node's own teardown took 350 ms of a 540 ms call on tcg, and the VM goes next anyway. The
// agent answers at the report, as it does at python's (start.py). A program can write the report
// itself; since the agent then stops every user process, that only ends it early, as exiting
// would. Not after an uncaught error: node emits 'exit' before it prints the error's trace, so
// that end is left to node, and the agent learns the status at the exit.
function reportExits(reportFd) {
  let fatal = false; // an uncaught error that no 'uncaughtException' listener handles
  process.on('uncaughtExceptionMonitor', () => {
    fatal = process.listenerCount('uncaughtException') === 0;
  });
  const emit = process.emit;
  process.emit = function (event, ...args) {
    const result = emit.call(this, event, ...args);
    if (event === 'exit' && !fatal) {
      const code = (process.exitCode !== undefined ? process.exitCode : args[0]) & 0xff;
      try {
        fs.writeSync(reportFd, `X${code}\n`);
      } catch (e) {
        // the program closed it: the agent learns the status from the exit
      }
      process.reallyExit(code);
    }
    return result;
  };
}

// After go: the agent's lines closed, the ready pipe kept for the exit report, moved off fd 4 and
// close-on-exec (reseed.node), so that the program's children do not hold it, then the program.
// Without the report the agent learns the status at the exit, some 60 ms later on tcg.
function run(script, prepared) {
  fs.closeSync(3);
  let reportFd = -1;
  try {
    reportFd = moveDescriptor(4);
  } catch (e) {
    fs.closeSync(4);
  }
  if (!prepared) makeFresh(); // else a prepare has reseeded since the VM became unique
  if (reportFd >= 0) reportExits(reportFd);
  process.argv.splice(1, process.argv.length - 1, script); // as `node SCRIPT` has them
  Module.runMain(script);
}

// A cell's environment (egress, packages): the agent's NAME='VALUE' lines into process.env, and
// the modules NODE_OPTIONS would have preloaded at a start (the proxy's hook).
function applyEnvironment() {
  const text = fs.readFileSync('/run/airlock/env', 'utf8');
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && line.length >= eq + 3 && line[eq + 1] === "'" && line.endsWith("'")) {
      process.env[line.slice(0, eq)] = line.slice(eq + 2, -1);
    }
  }
  const options = (process.env.NODE_OPTIONS || '').split(/\s+/);
  for (let i = 0; i + 1 < options.length; i++) {
    if (options[i] === '--require' || options[i] === '-r') require(options[i + 1]);
  }
}

let cellStatus = 0;

function reportUncaught(error) {
  const text = error && error.stack ? error.stack : `Uncaught ${String(error)}`;
  try {
    fs.writeSync(2, `${text}\n`);
  } catch (e) {
    // stderr closed by the cell: the status still says it failed
  }
  cellStatus = 1;
}

function runCell(script, line) {
  if (line.startsWith('K')) applyEnvironment();
  cellStatus = 0;
  process.exitCode = undefined;
  let code;
  try {
    code = fs.readFileSync(script, 'utf8');
    vm.runInThisContext(code, { filename: script });
  } catch (e) {
    reportUncaught(e);
  }
}

// Cells until the process is ended: line is the first one's.
function serveCells(script, prepared, line) {
  if (!prepared) makeFresh(); // else a prepare has reseeded since the VM became unique
  globalThis.require = Module.createRequire(script);
  process.on('uncaughtException', reportUncaught);
  process.on('beforeExit', () => {
    const status = process.exitCode !== undefined ? process.exitCode : cellStatus;
    fs.writeSync(4, `X${status & 0xff}\n`);
    for (;;) {
      const next = readLine();
      if (next.startsWith('C') || next.startsWith('K')) {
        runCell(script, next);
        break;
      }
      makeFresh(); // a prepare: the VM was restored from the kept state and is unique now
      warmUp(); // a restored QEMU has translated nothing of the next cell's path
      fs.writeSync(4, 'R');
    }
    setImmediate(() => {}); // the loop turns again: 'beforeExit' comes at this cell's end
  });
  runCell(script, line);
}

// One turn of the event loop through each phase, then done() (from an immediate).
function turnTheLoop(done) {
  process.nextTick(() => {});
  Promise.resolve().then(() => {});
  setTimeout(() => setImmediate(done), 0);
}

// Blocks for the agent's next line, in an immediate's callback: a prepare is answered (and the
// loop turned) and waited for again; go runs the program.
// ("E", go with an environment, never comes: the agent starts a fresh node for such a run.)
function waitForGo(script, prepared) {
  fs.writeSync(4, 'R');
  const line = readLine();
  if (line.startsWith('G') || line.startsWith('E')) {
    run(script, prepared);
    return;
  }
  if (line.startsWith('C') || line.startsWith('K')) {
    serveCells(script, prepared, line);
    return;
  }
  makeFresh();
  warmUp();
  turnTheLoop(() => waitForGo(script, true));
}

function start() {
  const script = process.argv[2];
  if (process.argv[3] === '--preload') {
    for (const name of PRELOAD) require(name);
    process.stdout; // eslint-disable-line no-unused-expressions -- its getter sets it up
    process.stderr; // eslint-disable-line no-unused-expressions
  }
  Object.defineProperty(Math, 'random', { value: random, writable: true, configurable: true,
    enumerable: false });
  // The report's descriptor will sit above 64 (moveDescriptor): grow the descriptor table that
  // far now, in the snapshot. Growing a table that node's threads share waits for an RCU grace
  // period, 11-17 ms of a 70 ms call on tcg.
  fs.closeSync(moveDescriptor(fs.openSync('/dev/null', 'r')));
  turnTheLoop(() => waitForGo(script, false));
}

start();
