'use strict';
// One startup run in a fresh process:  node bench/startup.js <transport> startup <count> <warmup>
// Or interleaved rounds:               node bench/startup.js rounds <rounds> [transport ...]
//   (default crossport-worker fork): each round starts one of each, one after another, in an order
//   that alternates between rounds; prints each transport's median, quartiles and range, the
//   round-by-round ratio of each to the last one named, and the load average before and after.
//   transport: crossport-worker | worker_threads | fork | crossport-fork
// Starts `warmup + count` workers or children one after another (each started once the previous
// one has exited) and measures, for the last `count`, the time from the constructor call (new
// Worker / fork()) to 'online' (workers only: the worker runs JavaScript) and to the first message
// it posts (bench/startup-peer.js posts one at once). Prints `RESULT {json}` with the medians of
// this run (ms); bench/run.js takes the median and the spread over runs.
const childProcess = require('node:child_process');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const workerThreads = require('node:worker_threads');

const os = require('node:os');

const PEER = path.join(__dirname, 'startup-peer.js');
const [transport, kaseName] = process.argv.slice(2, 4);
const [count, warmup] = process.argv.slice(4, 6).map(Number);

function printResult(result) {
  process.stdout.write(`RESULT ${JSON.stringify({ transport, case: kaseName, count, warmup, ...result })}\n`);
}

/** Starts one; resolves with { onlineMs, firstMessageMs } once it has exited. */
function startOne(transport) {
  const t0 = performance.now();
  let onlineMs = null;
  let firstMessageMs = null;
  const since = () => performance.now() - t0;
  return new Promise((resolve, reject) => {
    const done = () => resolve({ onlineMs, firstMessageMs });
    if (transport === 'worker_threads' || transport === 'crossport-worker') {
      const { Worker } = transport === 'worker_threads' ? workerThreads : require('crossport-ipc');
      const worker = new Worker(PEER);
      worker.once('online', () => (onlineMs = since()));
      worker.once('message', () => (firstMessageMs = since()));
      worker.once('error', reject);
      worker.once('exit', done);
    } else if (transport === 'fork') {
      const child = childProcess.fork(PEER, [transport]);
      child.once('message', () => (firstMessageMs = since()));
      child.once('error', reject);
      child.once('exit', done);
    } else if (transport === 'crossport-fork') {
      const child = require('crossport-ipc').fork(PEER, [transport]);
      child.port.once('message', () => (firstMessageMs = since()));
      child.once('error', reject);
      child.once('exit', done);
    } else {
      reject(new Error(`unknown transport ${transport}`));
    }
  });
}

function median(values) {
  const sorted = values.filter((value) => value !== null).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function rounds(count, transports) {
  const loadBefore = os.loadavg();
  const times = Object.fromEntries(transports.map((t) => [t, []]));
  for (const t of transports) await startOne(t);  // warm-up: the file cache, lazily made handles
  for (let round = 0; round < count; round++) {
    for (const t of round % 2 ? [...transports].reverse() : transports) {
      const sample = await startOne(t);
      if (sample.firstMessageMs === null) throw new Error(`${t} exited without its message`);
      times[t].push(sample.firstMessageMs);
    }
  }
  const f = (value) => value.toFixed(value < 10 ? 2 : 1);
  const spread = (values) => `median ${f(median(values))}  quartiles ${f(quantile(values, 0.25))} - ${f(quantile(values, 0.75))}  range ${f(Math.min(...values))} - ${f(Math.max(...values))}`;
  const base = transports[transports.length - 1];
  const lines = [`${count} rounds, load average before ${loadBefore.map(f).join(' ')}, after ${os.loadavg().map(f).join(' ')}`];
  lines.push('ms from the constructor to the first message:');
  for (const t of transports) lines.push(`  ${t.padEnd(16)} ${spread(times[t])}`);
  lines.push(`round by round, ratio to ${base}:`);
  for (const t of transports.slice(0, -1)) lines.push(`  ${t.padEnd(16)} ${spread(times[t].map((ms, i) => ms / times[base][i]))}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

(async () => {
  if (transport === 'rounds') {
    const listed = process.argv.slice(4);
    return rounds(Number(kaseName) || 20, listed.length ? listed : ['crossport-worker', 'fork']);
  }
  const samples = [];
  for (let i = 0; i < warmup + count; i++) {
    const sample = await startOne(transport);
    if (sample.firstMessageMs === null) throw new Error(`start #${i} exited without its message`);
    if (i >= warmup) samples.push(sample);
  }
  printResult({
    ok: true,
    onlineMs: median(samples.map((sample) => sample.onlineMs)),
    firstMessageMs: median(samples.map((sample) => sample.firstMessageMs)),
  });
})().catch((error) => {
  printResult({ ok: false, error: String(error && error.stack ? error.stack : error) });
  process.exitCode = 1;
});
