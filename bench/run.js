'use strict';
// crossport benchmark:  node bench/run.js   (npm run bench)      BENCH_QUICK=1 cuts counts by 10x;
// BENCH_TIMEOUT_MS overrides the per-run timeout (default 60 s, 30 s quick).
//
// Compares four ways for two Node.js contexts to exchange messages:
//   crossport       parent <-> child made with crossport fork(), child.port <-> parentPort
//   worker_threads  main thread <-> Worker, worker.postMessage <-> parentPort
//   ipc-json        child_process.fork IPC, serialization: 'json'
//   ipc-advanced    child_process.fork IPC, serialization: 'advanced'
// Cases:
//   throughput  pipelined one-way parent -> peer; msgs/s from the first send to the last receipt
//   pingpong    one message in flight, round-trip latency p50 / p99 in microseconds
// Every (transport, case) pair runs REPEATS times, each time in fresh processes
// (`node bench/case.js <transport> <case> <count> <warmup>`), transports interleaved and their order
// rotated between repeats; the table shows medians and each as a ratio to worker_threads.
// Results also go to bench/results.json.

const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const QUICK = Boolean(process.env.BENCH_QUICK) && process.env.BENCH_QUICK !== '0';
const SCALE = QUICK ? 10 : 1;
const REPEATS = 3;
const TRANSPORTS = ['crossport', 'worker_threads', 'ipc-json', 'ipc-advanced'];
const BASELINE = 'worker_threads';
const CASES = {
  throughput: { count: 200000 / SCALE, warmup: 20000 / SCALE },
  pingpong: { count: 20000 / SCALE, warmup: 2000 / SCALE },
};
// Per run; a run that takes longer is killed (with its peer) and reported as failed.
const RUN_TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS) || (QUICK ? 30000 : 60000);
const CASE_SCRIPT = path.join(__dirname, 'case.js');
const RESULTS_FILE = path.join(__dirname, 'results.json');

function runOne(transport, kase) {
  const { count, warmup } = CASES[kase];
  return new Promise((resolve) => {
    const started = Date.now();
    // detached: the run gets its own process group, so a timeout can kill the peer it forked too.
    const child = childProcess.spawn(
      process.execPath,
      [CASE_SCRIPT, transport, kase, String(count), String(warmup)],
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, RUN_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ transport, case: kase, ok: false, error: `spawn failed: ${error.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      killGroup(child); // a peer left behind by a crashed case.js
      const wallSeconds = (Date.now() - started) / 1000;
      const line = stdout.split('\n').find((text) => text.startsWith('RESULT '));
      let result;
      if (line) {
        try {
          result = JSON.parse(line.slice('RESULT '.length));
        } catch (error) {
          result = { ok: false, error: `unparsable result line: ${line}` };
        }
      } else {
        result = { ok: false, error: 'no RESULT line' };
      }
      result.transport = transport;
      result.case = kase;
      result.wallSeconds = wallSeconds;
      result.exit = { code, signal };
      if (timedOut) {
        result.ok = false;
        result.error = `timed out after ${RUN_TIMEOUT_MS / 1000} s and was killed` + (result.error ? ` (${result.error})` : '');
      } else if (code !== 0 && result.ok) {
        result.ok = false;
        result.error = `case.js exited with code ${code}, signal ${signal}`;
      }
      if (stderr.trim()) result.stderr = stderr.trim().slice(-4000);
      resolve(result);
    });
  });
}

function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function median(values) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const METRICS = [
  { key: 'msgsPerSec', case: 'throughput', label: 'throughput msg/s', better: 'higher' },
  { key: 'p50us', case: 'pingpong', label: 'RTT p50 µs', better: 'lower' },
  { key: 'p99us', case: 'pingpong', label: 'RTT p99 µs', better: 'lower' },
];

function summarize(runs) {
  const summary = {};
  for (const transport of TRANSPORTS) {
    summary[transport] = {};
    for (const metric of METRICS) {
      const good = runs.filter((r) => r.transport === transport && r.case === metric.case && r.ok);
      const failed = runs.filter((r) => r.transport === transport && r.case === metric.case && !r.ok);
      const values = good.map((r) => r[metric.key]);
      summary[transport][metric.key] = { median: median(values), runs: values, failures: failed.length };
    }
  }
  for (const transport of TRANSPORTS) {
    for (const metric of METRICS) {
      const own = summary[transport][metric.key].median;
      const base = summary[BASELINE][metric.key].median;
      summary[transport][metric.key].ratioToWorkerThreads = own !== null && base ? own / base : null;
    }
  }
  return summary;
}

function formatNumber(value) {
  if (value === null || value === undefined) return 'n/a';
  if (value >= 1000) return Math.round(value).toLocaleString('en-US');
  if (value >= 100) return value.toFixed(0);
  return value.toFixed(1);
}

function formatCell(entry) {
  const ratio = entry.ratioToWorkerThreads === null ? '   -  ' : `${entry.ratioToWorkerThreads.toFixed(2)}x`;
  const failures = entry.failures ? ` !${entry.failures} failed` : '';
  return `${formatNumber(entry.median).padStart(9)} (${ratio.padStart(6)})${failures}`;
}

function printTable(summary) {
  const rows = [
    ['transport', ...METRICS.map((m) => `${m.label} (${m.better} better)`)],
    ...TRANSPORTS.map((transport) => [transport, ...METRICS.map((m) => formatCell(summary[transport][m.key]))]),
  ];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((cells) => cells[column].length)));
  const line = (cells) => cells.map((cell, column) => cell.padEnd(widths[column])).join(' | ').trimEnd();
  console.log(line(rows[0]));
  console.log(widths.map((width) => '-'.repeat(width)).join('-|-'));
  for (const cells of rows.slice(1)) console.log(line(cells));
  console.log(`(medians of ${REPEATS} runs; in parentheses: ratio to ${BASELINE})`);
}

async function main() {
  const started = Date.now();
  const header = {
    date: new Date().toISOString(),
    cpu: os.cpus()[0] ? os.cpus()[0].model : 'unknown',
    cores: os.cpus().length,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    quick: QUICK,
  };
  console.log('crossport benchmark' + (QUICK ? ' (BENCH_QUICK: counts / 10)' : ''));
  console.log(`date:  ${header.date}`);
  console.log(`cpu:   ${header.cpu} x ${header.cores} cores`);
  console.log(`node:  ${header.node} (${header.platform})`);
  console.log(
    `cases: throughput ${CASES.throughput.count} msgs (+${CASES.throughput.warmup} warm-up), ` +
      `pingpong ${CASES.pingpong.count} round trips (+${CASES.pingpong.warmup} warm-up); ` +
      `message { id: i, op: 'add', args: [1, 2, 3], tag: 'bench' }; ${REPEATS} runs each, fresh processes`,
  );
  console.log('');

  const runs = [];
  for (let repeat = 0; repeat < REPEATS; repeat++) {
    // Rotate the transport order each repeat so that no transport always runs first or last.
    const order = TRANSPORTS.map((_, i) => TRANSPORTS[(i + repeat) % TRANSPORTS.length]);
    for (const kase of Object.keys(CASES)) {
      for (const transport of order) {
        const result = await runOne(transport, kase);
        result.repeat = repeat;
        runs.push(result);
        const figure = !result.ok
          ? `FAILED: ${result.error}`
          : kase === 'throughput'
            ? `${formatNumber(result.msgsPerSec)} msg/s`
            : `p50 ${formatNumber(result.p50us)} µs, p99 ${formatNumber(result.p99us)} µs`;
        console.log(`  run ${repeat + 1}/${REPEATS}  ${kase.padEnd(10)} ${transport.padEnd(14)} ${figure}  [${result.wallSeconds.toFixed(1)} s]`);
        if (!result.ok && result.stderr) console.log(result.stderr.replace(/^/gm, '      | '));
      }
    }
  }

  const summary = summarize(runs);
  console.log('');
  printTable(summary);
  const totalSeconds = (Date.now() - started) / 1000;
  console.log(`total time ${totalSeconds.toFixed(1)} s`);

  const failures = runs.filter((r) => !r.ok);
  const output = { ...header, cases: CASES, repeats: REPEATS, baseline: BASELINE, summary, runs, totalSeconds };
  fs.writeFileSync(RESULTS_FILE, JSON.stringify(output, null, 2) + '\n');
  console.log(`results written to ${path.relative(process.cwd(), RESULTS_FILE) || RESULTS_FILE}`);
  if (failures.length) {
    console.log(`${failures.length} run(s) failed:`);
    for (const failure of failures) console.log(`  ${failure.transport} ${failure.case} run ${failure.repeat + 1}: ${failure.error}`);
    process.exitCode = 1;
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
