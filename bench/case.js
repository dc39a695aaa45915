'use strict';
// One benchmark run in a fresh process:  node bench/case.js <transport> <case> <count> <warmup>
//   transport: crossport | worker_threads | ipc-json | ipc-advanced
//   case:      throughput | pingpong
// Starts the peer (bench/peer.js) over the given transport, runs the case, shuts the peer down and
// prints exactly one line `RESULT {json}` on stdout (also on failure: { ok: false, error }).

const childProcess = require('node:child_process');
const path = require('node:path');
const workerThreads = require('node:worker_threads');

const PEER = path.join(__dirname, 'peer.js');
const CHUNK = 1000; // messages posted per event-loop turn in the throughput case
const SHUTDOWN_TIMEOUT_MS = 10000;

const [transport, kase] = process.argv.slice(2, 4);
const [count, warmup] = process.argv.slice(4, 6).map(Number);

function makeMessage(i) {
  return { id: i, op: 'add', args: [1, 2, 3], tag: 'bench' };
}

let printed = false;
function printResult(result) {
  if (printed) return;
  printed = true;
  process.stdout.write(`RESULT ${JSON.stringify({ transport, case: kase, count, warmup, ...result })}\n`);
}

function fail(error) {
  printResult({ ok: false, error: String(error && error.stack ? error.stack : error) });
  process.exit(1);
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

// ---------------------------------------------------------------------------------------------
// Endpoints: { send(message, callback?) -> boolean|undefined, ipc, onMessage, shutdown() }

function startEndpoint() {
  const args = [transport, kase, String(count), String(warmup)];
  // The peer never writes to stdout; anything it prints goes to our stderr so that our stdout
  // carries only the RESULT line.
  const stdio = ['ignore', 2, 2, 'ipc'];
  let handler = () => {};
  const dispatch = (message) => handler(message);
  const endpoint = {
    ipc: false,
    setHandler(fn) {
      handler = fn;
    },
  };

  if (transport === 'crossport') {
    const crossport = require('..');
    const child = crossport.fork(PEER, args, { stdio });
    const port = child.port;
    port.on('message', dispatch);
    endpoint.send = (message) => port.postMessage(message);
    endpoint.exitPromise = exitPromise(child);
    endpoint.shutdown = async () => {
      port.close();
      return endpoint.exitPromise;
    };
  } else if (transport === 'worker_threads') {
    const worker = new workerThreads.Worker(PEER, {
      workerData: { transport, kase, count, warmup },
      stdout: false,
      stderr: false,
    });
    worker.on('message', dispatch);
    worker.on('error', fail);
    endpoint.send = (message) => worker.postMessage(message);
    endpoint.shutdown = async () => {
      const code = await worker.terminate();
      return { code, signal: null };
    };
  } else if (transport === 'ipc-json' || transport === 'ipc-advanced') {
    const serialization = transport === 'ipc-json' ? 'json' : 'advanced';
    const child = childProcess.fork(PEER, args, { stdio, serialization });
    child.on('message', dispatch);
    endpoint.ipc = true;
    endpoint.send = (message, callback) => child.send(message, callback);
    endpoint.exitPromise = exitPromise(child);
    endpoint.shutdown = async () => {
      child.disconnect();
      return endpoint.exitPromise;
    };
  } else {
    throw new Error(`unknown transport ${transport}`);
  }
  return endpoint;
}

function exitPromise(child) {
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
}

function nextMessage(endpoint, what) {
  return new Promise((resolve, reject) => {
    endpoint.setHandler((message) => {
      if (message && message.error) return reject(new Error(message.error));
      if (message && message[what]) return resolve(message);
      reject(new Error(`expected a '${what}' message from the peer, got ${JSON.stringify(message)}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Throughput: post ids [from, to) in chunks of CHUNK with setImmediate in between. For
// child_process IPC, the last message of each chunk carries a write callback; when `send` reported
// a backlog anywhere in the chunk we wait for that callback (everything before it is then written)
// before posting more, so the parent never buffers without bound.

function pump(endpoint, from, to) {
  return new Promise((resolve, reject) => {
    let i = from;
    const next = () => (i >= to ? resolve() : setImmediate(chunk));
    function chunk() {
      const end = Math.min(i + CHUNK, to);
      let backlog = false;
      while (i < end - 1) {
        if (endpoint.send(makeMessage(i++)) === false) backlog = true;
      }
      if (!endpoint.ipc) {
        endpoint.send(makeMessage(i++));
        next();
        return;
      }
      let written = false;
      let waiting = false;
      const ok = endpoint.send(makeMessage(i++), (error) => {
        if (error) return reject(error);
        written = true;
        if (waiting) next();
      });
      if (ok === false) backlog = true;
      if (!backlog || written) next();
      else waiting = true;
    }
    chunk();
  });
}

async function runThroughput(endpoint) {
  const warmed = nextMessage(endpoint, 'warm');
  await pump(endpoint, 0, warmup);
  await warmed;

  const done = nextMessage(endpoint, 'done');
  const t0 = process.hrtime.bigint();
  await pump(endpoint, warmup, warmup + count);
  const sentAt = process.hrtime.bigint();
  const reply = await done;
  const ackAt = process.hrtime.bigint();
  const lastReceipt = BigInt(reply.t);
  const seconds = Number(lastReceipt - t0) / 1e9;
  return {
    ok: true,
    msgsPerSec: count / seconds,
    seconds,
    sendSeconds: Number(sentAt - t0) / 1e9,
    ackSeconds: Number(ackAt - t0) / 1e9,
  };
}

// ---------------------------------------------------------------------------------------------
// Ping-pong: one message in flight; the next is posted from the reply's handler.

function runPingpong(endpoint) {
  return new Promise((resolve, reject) => {
    const total = warmup + count;
    const latencies = new Float64Array(count);
    let i = 0;
    let sentAt = 0n;
    endpoint.setHandler((message) => {
      const now = process.hrtime.bigint();
      if (message && message.error) return reject(new Error(message.error));
      if (!message || message.id !== i || message.op !== 'add' || message.tag !== 'bench' || message.args.length !== 3) {
        return reject(new Error(`round trip #${i}: wrong reply ${JSON.stringify(message)}`));
      }
      if (i >= warmup) latencies[i - warmup] = Number(now - sentAt) / 1000;
      i++;
      if (i === total) return resolve(summarize(latencies));
      sentAt = process.hrtime.bigint();
      endpoint.send(makeMessage(i));
    });
    sentAt = process.hrtime.bigint();
    endpoint.send(makeMessage(0));
  });
}

function summarize(latencies) {
  latencies.sort();
  const n = latencies.length;
  const rank = (p) => latencies[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))];
  let sum = 0;
  for (const value of latencies) sum += value;
  return { ok: true, p50us: rank(0.5), p99us: rank(0.99), meanUs: sum / n, maxUs: latencies[n - 1] };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const endpoint = startEndpoint();
  if (endpoint.exitPromise) {
    endpoint.exitPromise.then(({ code, signal }) => {
      if (!shuttingDown) fail(new Error(`peer exited early (code ${code}, signal ${signal})`));
    });
  }
  await nextMessage(endpoint, 'ready');

  let result;
  if (kase === 'throughput') result = await runThroughput(endpoint);
  else if (kase === 'pingpong') result = await runPingpong(endpoint);
  else throw new Error(`unknown case ${kase}`);

  endpoint.setHandler((message) => {
    process.stderr.write(`case.js: unexpected message after the run: ${JSON.stringify(message)}\n`);
  });
  shuttingDown = true;
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ timeout: true }), SHUTDOWN_TIMEOUT_MS);
  });
  const peerExit = await Promise.race([endpoint.shutdown(), timeout]);
  clearTimeout(timer);
  if (peerExit.timeout) {
    result.ok = false;
    result.error = `peer did not exit within ${SHUTDOWN_TIMEOUT_MS} ms of shutdown (${transport === 'crossport' ? 'port.close()' : transport === 'worker_threads' ? 'terminate()' : 'disconnect()'})`;
    printResult(result);
    process.exit(1);
  }
  result.peerExit = peerExit;
  if (transport !== 'worker_threads' && (peerExit.code !== 0 || peerExit.signal !== null)) {
    result.ok = false;
    result.error = `peer exited with code ${peerExit.code}, signal ${peerExit.signal}`;
  }
  printResult(result);
  // Nothing should keep this process alive now; if something does, say so.
  setTimeout(() => {
    process.stderr.write(`case.js (${transport} ${kase}): process still alive 5 s after the run ended\n`);
    process.exit(3);
  }, 5000).unref();
}

let shuttingDown = false;
main().catch(fail);
