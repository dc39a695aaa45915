'use strict';
// crossport benchmark:  node bench/run.js [--only <case>[,<case>...]]      (npm run bench)
//   BENCH_QUICK=1       counts / 10 and 3 runs instead of 5 (under a minute; the full run takes about 6)
//   BENCH_ONLY=<cases>  same as --only; a name also selects the cases it prefixes: `u8` all byte
//                       cases, `u8-1m` both 1 MiB ones. Cases: small pingpong u8-{4k,64k,1m}-{clone,transfer}
//                       channels idle startup small-load pingpong-load big-{64m,512m,1g}-{transfer,alloc}.
//   BENCH_REPEATS=<n>   runs per (case, transport), default 5 (3 quick); the load and big-* cases
//                       run min(3, n) times
//   BENCH_TIMEOUT_MS    per-run timeout (default 60 s, 30 s quick)
//
// Compares five ways for two Node.js contexts to exchange messages:
//   crossport       parent <-> child made with crossport fork(), child.port <-> parentPort
//   crossport-worker  crossport's Worker (a process), worker.postMessage <-> parentPort
//   worker_threads  main thread <-> Worker, worker.postMessage <-> parentPort
//   ipc-json        child_process.fork IPC, serialization: 'json'
//   ipc-advanced    child_process.fork IPC, serialization: 'advanced'
// Cases (payloads and checks in payload.js; every received message is checked, and a run whose
// receiver did not get exactly the messages sent fails instead of reporting a figure):
//   small           the small object { id, op, args: [1, 2, 3], tag }, pipelined one way: msgs/s, and
//                   CPU seconds per million messages on each side (process.cpuUsage())
//   pingpong        the small object, one in flight: round-trip p50 / p99
//   u8-*            Uint8Arrays of 4 KiB, 64 KiB, 1 MiB pipelined one way, cloned and transferred:
//                   msgs/s and MB/s (ipc-json carries them as base64; IPC cannot transfer, so its
//                   "transfer" rows are the same send, cloned)
//   channels        100 channels between the two sides (made in the parent, port2s transferred to
//                   the peer), the small object round-robin over them: aggregate msgs/s
//   idle            1000 idle channels, both ends listening: RSS and fds per channel on each side
//   small-load, pingpong-load
//                   small and pingpong with as many busy processes as CPUs running beside
//                   (`node -e 'for(;;){}'`, started before each run and killed after it)
//   big-{64m,512m,1g}-transfer, big-*-alloc
//                   one Uint8Array at a time, transferred (IPC: cloned), the receiver answering
//                   with its length: ms per transfer. -alloc: crossport with a buffer from
//                   allocateTransferable(), compared with worker_threads' -transfer of the same size.
//                   IPC 'json' only at 64 MiB (base64 text of more is longer than a string may be)
// channels and idle do not apply to IPC (one channel per child): n.a.
//   startup         (bench/startup.js) a Worker or child started and ended again and again: ms from
//                   the constructor (new Worker / fork()) to 'online' and to the first message it
//                   posts, for crossport's Worker, worker_threads' Worker, child_process.fork and
//                   crossport fork(); medians of each run, then the median and range over runs
// Every (case, transport) pair runs REPEATS times, each time in fresh processes
// (`node bench/case.js <transport> <case> <count> <warmup>`), transports interleaved and their order
// rotated between repeats; the tables show medians, and each as a ratio to worker_threads.
// Results (and the printed tables) also go to bench/results.json.

const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const QUICK = Boolean(process.env.BENCH_QUICK) && process.env.BENCH_QUICK !== '0';
const SCALE = QUICK ? 10 : 1;
const REPEATS = Number(process.env.BENCH_REPEATS) || (QUICK ? 3 : 5);
const TRANSPORTS = ['crossport', 'crossport-worker', 'worker_threads', 'ipc-json', 'ipc-advanced'];
const CHANNEL_TRANSPORTS = ['crossport', 'crossport-worker', 'worker_threads'];
const STARTUP_TRANSPORTS = ['crossport-worker', 'worker_threads', 'fork', 'crossport-fork'];
// The load and large cases: crossport's Worker is crossport fork() underneath, measured above.
const LOAD_TRANSPORTS = ['crossport', 'worker_threads', 'ipc-json', 'ipc-advanced'];
const BIG_TRANSPORTS = ['crossport', 'worker_threads', 'ipc-advanced'];
const BASELINE = 'worker_threads';
// Slow baselines take one transfer per run at the large sizes (a 1 GiB IPC clone takes seconds).
const ONE_TRANSFER = { count: 1, warmup: 0 };
const LARGE_REPEATS = Math.min(3, REPEATS);
const CASES = [
  // Counts give the fastest transport about a second per run; the slowest (IPC) takes a few.
  { name: 'small', count: 500000, warmup: 50000 },
  { name: 'pingpong', count: 20000, warmup: 2000 },
  { name: 'u8-4k-clone', count: 100000, warmup: 10000 },
  { name: 'u8-4k-transfer', count: 100000, warmup: 10000 },
  { name: 'u8-64k-clone', count: 10000, warmup: 1000 },
  { name: 'u8-64k-transfer', count: 10000, warmup: 1000 },
  { name: 'u8-1m-clone', count: 1000, warmup: 100 },
  { name: 'u8-1m-transfer', count: 1000, warmup: 100 },
  { name: 'channels', count: 500000, warmup: 50000, transports: CHANNEL_TRANSPORTS },
  // count = channels created; --expose-gc lets both sides collect before measuring.
  { name: 'idle', count: 1000, warmup: 0, transports: CHANNEL_TRANSPORTS, nodeArgs: ['--expose-gc'] },
  // count = starts measured per run, one after another.
  { name: 'startup', count: 20, warmup: 2, transports: STARTUP_TRANSPORTS, script: 'startup.js' },
  { name: 'small-load', count: 200000, warmup: 20000, load: true, repeats: LARGE_REPEATS, transports: LOAD_TRANSPORTS },
  { name: 'pingpong-load', count: 20000, warmup: 2000, load: true, repeats: LARGE_REPEATS, transports: LOAD_TRANSPORTS },
  { name: 'big-64m-transfer', count: 5, warmup: 1, repeats: LARGE_REPEATS, transports: LOAD_TRANSPORTS, perTransport: { 'ipc-json': ONE_TRANSFER } },
  { name: 'big-64m-alloc', count: 5, warmup: 1, repeats: LARGE_REPEATS, transports: ['crossport'], baselineCase: 'big-64m-transfer' },
  { name: 'big-512m-transfer', count: 3, warmup: 1, repeats: LARGE_REPEATS, transports: BIG_TRANSPORTS, perTransport: { 'ipc-advanced': ONE_TRANSFER } },
  { name: 'big-512m-alloc', count: 3, warmup: 1, repeats: LARGE_REPEATS, transports: ['crossport'], baselineCase: 'big-512m-transfer' },
  { name: 'big-1g-transfer', count: 3, warmup: 1, repeats: LARGE_REPEATS, transports: BIG_TRANSPORTS, perTransport: { 'ipc-advanced': ONE_TRANSFER } },
  { name: 'big-1g-alloc', count: 3, warmup: 1, repeats: LARGE_REPEATS, transports: ['crossport'], baselineCase: 'big-1g-transfer' },
].map((kase) => ({
  transports: TRANSPORTS,
  nodeArgs: [],
  repeats: REPEATS,
  perTransport: {},
  ...kase,
  count: Math.max(1, Math.round(kase.count / SCALE)),
  warmup: Math.round(kase.warmup / SCALE),
}));
// Per run; a run that takes longer is killed (with its peer) and reported as failed.
const RUN_TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS) || (QUICK ? 30000 : 60000);
const CASE_SCRIPT = path.join(__dirname, 'case.js');
const RESULTS_FILE = path.join(__dirname, 'results.json');

// What each case reports (keys of its RESULT line), summarized as medians over the runs.
const METRICS = {
  small: ['msgsPerSec', 'cpuParentPerM', 'cpuPeerPerM', 'cpuTotalPerM'],
  pingpong: ['p50us', 'p99us', 'cpuTotalPerRt'],
  bytes: ['msgsPerSec', 'mbPerSec', 'cpuTotalPerM'],
  channels: ['msgsPerSec', 'cpuTotalPerM'],
  large: ['msMedian', 'mbPerSec'],
  idle: [
    'rssKiBPerChannelParent',
    'rssKiBPerChannelPeer',
    'rssKiBPerChannelTotal',
    'fdsPerChannelParent',
    'fdsPerChannelPeer',
    'fdsPerChannelTotal',
  ],
  startup: ['onlineMs', 'firstMessageMs'],
};

function metricsOf(name) {
  if (name.startsWith('u8-')) return METRICS.bytes;
  if (name.startsWith('big-')) return METRICS.large;
  return METRICS[name.replace(/-load$/, '')];
}

function parseOnly(argv) {
  let only = process.env.BENCH_ONLY || '';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--only' && i + 1 < argv.length) only = argv[++i];
    else if (argv[i].startsWith('--only=')) only = argv[i].slice('--only='.length);
    else throw new Error(`unknown argument ${argv[i]} (usage: node bench/run.js [--only <case>[,<case>...]])`);
  }
  const filters = only.split(',').map((text) => text.trim()).filter(Boolean);
  if (filters.length === 0) return CASES;
  const chosen = CASES.filter((kase) => filters.some((f) => kase.name === f || kase.name.startsWith(`${f}-`)));
  if (chosen.length === 0) {
    throw new Error(`--only ${only} selects no case; cases: ${CASES.map((kase) => kase.name).join(' ')}`);
  }
  // A case compared with another's baseline brings that case along.
  const needed = new Set(chosen.flatMap((kase) => [kase.name, kase.baselineCase].filter(Boolean)));
  return CASES.filter((kase) => needed.has(kase.name));
}

// As many processes as CPUs, each spinning for ever, for the load cases. Killed after each run,
// and at exit whatever happens.
const busy = new Set();
process.on('exit', () => stopBusy());
function startBusy() {
  for (let i = 0; i < os.cpus().length; i++) {
    const child = childProcess.spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
    busy.add(child);
  }
  // Let them start spinning (a node process takes ~0.1 s to start) before the run does.
  return new Promise((resolve) => setTimeout(resolve, 300));
}
function stopBusy() {
  for (const child of busy) child.kill('SIGKILL');
  busy.clear();
}

async function runOne(transport, kase) {
  if (kase.load) await startBusy();
  try {
    return await runCase(transport, kase);
  } finally {
    stopBusy();
  }
}

function runCase(transport, kase) {
  const { count, warmup } = { count: kase.count, warmup: kase.warmup, ...(QUICK ? {} : kase.perTransport[transport]) };
  return new Promise((resolve) => {
    const started = Date.now();
    const loadAverage = os.loadavg()[0];
    // detached: the run gets its own process group, so a timeout can kill the peer it forked too.
    const child = childProcess.spawn(
      process.execPath,
      [...kase.nodeArgs, kase.script ? path.join(__dirname, kase.script) : CASE_SCRIPT, transport, kase.name,
        String(count), String(warmup)],
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
      resolve({ transport, case: kase.name, ok: false, error: `spawn failed: ${error.message}` });
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
      result.case = kase.name;
      result.wallSeconds = wallSeconds;
      result.loadAverage = loadAverage;
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

// summary[case][transport][metric] = { median, runs, failures, ratioToWorkerThreads }
// (absent: the case does not apply to the transport). channels also gets vsOneChannel: its
// aggregate msgs/s over the same transport's small-case msgs/s.
function summarize(cases, runs) {
  const summary = {};
  for (const kase of cases) {
    const byTransport = (summary[kase.name] = {});
    for (const transport of kase.transports) {
      const mine = runs.filter((r) => r.case === kase.name && r.transport === transport);
      const good = mine.filter((r) => r.ok);
      byTransport[transport] = {};
      for (const key of metricsOf(kase.name)) {
        const values = good.map((r) => r[key]).filter((value) => typeof value === 'number');
        byTransport[transport][key] = { median: median(values), runs: values, failures: mine.length - good.length };
      }
    }
  }
  for (const kase of cases) {
    // (The -alloc cases compare with worker_threads' transfer of the same size.)
    const baseline = (summary[kase.baselineCase || kase.name] || {})[BASELINE];
    for (const transport of kase.transports) {
      for (const key of metricsOf(kase.name)) {
        const entry = summary[kase.name][transport][key];
        const base = baseline && baseline[key] ? baseline[key].median : null;
        entry.ratioToWorkerThreads = entry.median !== null && base ? entry.median / base : null;
      }
    }
  }
  if (summary.channels) {
    for (const transport of Object.keys(summary.channels)) {
      const one = summary.small && summary.small[transport] ? summary.small[transport].msgsPerSec.median : null;
      const many = summary.channels[transport].msgsPerSec.median;
      summary.channels[transport].vsOneChannel = one && many !== null ? many / one : null;
    }
  }
  return summary;
}

// ---------------------------------------------------------------------------------------------
// Printing

function formatNumber(value) {
  if (value === null || value === undefined) return 'n/a';
  const magnitude = Math.abs(value);
  if (magnitude >= 1000) return Math.round(value).toLocaleString('en-US');
  if (magnitude >= 100) return value.toFixed(0);
  if (magnitude >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function formatRatio(ratio) {
  return ratio === null || ratio === undefined ? '' : `(${ratio.toFixed(2)}x)`;
}

/** A figure, its ratio to worker_threads unless `ratio` is false, and failed runs if any. */
function cell(entry, { ratio = true } = {}) {
  if (!entry) return 'n.a.';
  const failures = entry.failures ? ` !${entry.failures} failed` : '';
  if (entry.median === null) return `FAILED${failures}`;
  const shown = ratio ? `${formatNumber(entry.median)} ${formatRatio(entry.ratioToWorkerThreads)}` : formatNumber(entry.median);
  return shown.trimEnd() + failures;
}

/** Rows of cells as aligned text; the columns in `left` left-aligned, the others right-aligned. */
function renderTable(headers, rows, left = [0]) {
  const all = [headers, ...rows];
  const widths = headers.map((_, column) => Math.max(...all.map((cells) => String(cells[column]).length)));
  const line = (cells) =>
    '  ' +
    cells
      .map((text, column) => (left.includes(column) ? String(text).padEnd(widths[column]) : String(text).padStart(widths[column])))
      .join('  ')
      .trimEnd();
  return [line(headers), '  ' + widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)];
}

function caseOf(cases, name) {
  return cases.find((kase) => kase.name === name);
}

function tables(cases, summary) {
  const out = [];
  const section = (title, lines) => out.push(title, ...lines, '');
  const count = (name) => caseOf(cases, name).count.toLocaleString('en-US');

  if (summary.small) {
    section(
      `Small object { id, op, args: [1, 2, 3], tag }, one way, pipelined (${count('small')} msgs per run)`,
      renderTable(
        ['transport', 'msgs/s (higher better)'],
        TRANSPORTS.map((t) => [t, cell(summary.small[t] && summary.small[t].msgsPerSec)]),
      ),
    );
  }
  if (summary.pingpong) {
    section(
      `Small object ping-pong, one in flight (${count('pingpong')} round trips per run)`,
      renderTable(
        ['transport', 'RTT p50 µs (lower better)', 'RTT p99 µs (lower better)', 'CPU µs per round trip, both sides'],
        TRANSPORTS.map((t) => [
          t,
          cell(summary.pingpong[t] && summary.pingpong[t].p50us),
          cell(summary.pingpong[t] && summary.pingpong[t].p99us),
          cell(summary.pingpong[t] && summary.pingpong[t].cpuTotalPerRt),
        ]),
      ),
    );
  }
  const byteCases = cases.filter((kase) => kase.name.startsWith('u8-'));
  if (byteCases.length) {
    const rows = [];
    for (const kase of byteCases) {
      const [, size, mode] = kase.name.split('-');
      const label = `${{ '4k': '4 KiB', '64k': '64 KiB', '1m': '1 MiB' }[size]} ${mode}`;
      TRANSPORTS.forEach((t, index) => {
        const entry = summary[kase.name][t];
        const notes = [];
        if (t === 'ipc-json') notes.push('base64 text');
        if (mode === 'transfer' && t.startsWith('ipc-')) notes.push('n.a.: cloned, IPC cannot transfer');
        rows.push([
          index === 0 ? `${label} (${kase.count.toLocaleString('en-US')})` : '',
          t,
          cell(entry && entry.msgsPerSec),
          cell(entry && entry.mbPerSec, { ratio: false }),
          cell(entry && entry.cpuTotalPerM, { ratio: false }),
          notes.join('; '),
        ]);
      });
    }
    section(
      'Uint8Array, one way, pipelined; ratios to worker_threads with the same payload and mode; CPU: both sides',
      renderTable(['payload (msgs)', 'transport', 'msgs/s (higher better)', 'MB/s', 'CPU µs/msg', 'note'], rows, [0, 1, 5]),
    );
  }
  if (summary.channels) {
    const kase = caseOf(cases, 'channels');
    section(
      `${require('./payload').CHANNELS} channels between the two sides, small object round-robin, aggregate (${count('channels')} msgs per run)`,
      renderTable(
        ['transport', 'msgs/s (higher better)', 'vs 1 channel (small case)', 'CPU µs/msg', 'note'],
        TRANSPORTS.map((t) => {
          if (!kase.transports.includes(t)) return [t, 'n.a.', '', '', 'one IPC channel per child'];
          const entry = summary.channels[t];
          const vsOne = entry.vsOneChannel === null ? 'n/a' : `${entry.vsOneChannel.toFixed(2)}x`;
          return [t, cell(entry.msgsPerSec), vsOne, cell(entry.cpuTotalPerM, { ratio: false }), ''];
        }),
        [0, 4],
      ),
    );
  }
  if (summary.idle) {
    const kase = caseOf(cases, 'idle');
    section(
      `Idle channels, both ends listening (${count('idle')} per run): RSS KiB and fds per channel (lower better)`,
      renderTable(
        ['transport', 'RSS parent', 'RSS peer', 'RSS total', 'fds parent', 'fds peer', 'fds total', 'note'],
        TRANSPORTS.map((t) => {
          if (!kase.transports.includes(t)) return [t, 'n.a.', 'n.a.', 'n.a.', 'n.a.', 'n.a.', 'n.a.', 'one IPC channel per child'];
          const e = summary.idle[t];
          const one = t === 'worker_threads';
          const side = (entry) => (one ? '-' : cell(entry, { ratio: false }));
          return [
            t,
            side(e.rssKiBPerChannelParent),
            side(e.rssKiBPerChannelPeer),
            cell(e.rssKiBPerChannelTotal),
            side(e.fdsPerChannelParent),
            side(e.fdsPerChannelPeer),
            cell(e.fdsPerChannelTotal, { ratio: false }),
            one ? 'one process: both ends' : '',
          ];
        }),
        [0, 7],
      ),
    );
  }
  if (summary.startup) {
    const fork = summary.startup.fork.firstMessageMs.median;
    const range = (entry) => (entry.runs.length ? `${formatNumber(Math.min(...entry.runs))} - ${formatNumber(Math.max(...entry.runs))}` : '');
    section(
      `Start-up: from the constructor to 'online' and to the first message, ms (lower better; ${count('startup')} starts per run, one after another)`,
      renderTable(
        ['transport', "to 'online'", 'to first message', 'range over runs', 'vs child_process.fork', 'note'],
        STARTUP_TRANSPORTS.map((t) => {
          const e = summary.startup[t];
          const first = e.firstMessageMs.median;
          return [
            t,
            e.onlineMs.median === null ? 'n.a.' : cell(e.onlineMs),
            cell(e.firstMessageMs),
            range(e.firstMessageMs),
            first !== null && fork ? `${(first / fork).toFixed(2)}x` : 'n/a',
            { 'crossport-worker': 'a process; loads crossport', fork: 'child_process.fork, IPC message', 'crossport-fork': 'loads crossport' }[t] || '',
          ];
        }),
        [0, 5],
      ),
    );
  }
  const busyNote = `${os.cpus().length} busy processes beside (one per CPU, \`node -e 'for(;;){}'\`)`;
  if (summary['small-load']) {
    section(
      `Small object, one way, pipelined, with ${busyNote} (${count('small-load')} msgs per run)`,
      renderTable(
        ['transport', 'msgs/s (higher better)', 'CPU µs/msg, both sides'],
        LOAD_TRANSPORTS.map((t) => [t, cell(summary['small-load'][t].msgsPerSec), cell(summary['small-load'][t].cpuTotalPerM, { ratio: false })]),
      ),
    );
  }
  if (summary['pingpong-load']) {
    section(
      `Small object ping-pong with ${busyNote} (${count('pingpong-load')} round trips per run)`,
      renderTable(
        ['transport', 'RTT p50 µs (lower better)', 'RTT p99 µs (lower better)', 'CPU µs per round trip, both sides'],
        LOAD_TRANSPORTS.map((t) => [
          t,
          cell(summary['pingpong-load'][t].p50us),
          cell(summary['pingpong-load'][t].p99us),
          cell(summary['pingpong-load'][t].cpuTotalPerRt),
        ]),
      ),
    );
  }
  const bigCases = cases.filter((kase) => kase.name.startsWith('big-') && kase.name.endsWith('-transfer'));
  if (bigCases.length) {
    const rows = [];
    for (const kase of bigCases) {
      const size = kase.name.split('-')[1];
      const label = { '64m': '64 MiB', '512m': '512 MiB', '1g': '1 GiB' }[size];
      const alloc = summary[`big-${size}-alloc`];
      const lines = [
        ['crossport, new ArrayBuffer', summary[kase.name].crossport],
        ['crossport, allocateTransferable', alloc && alloc.crossport],
        ...LOAD_TRANSPORTS.filter((t) => t !== 'crossport').map((t) => [t, summary[kase.name][t]]),
      ];
      lines.forEach(([name, entry], index) => {
        const notes = name.startsWith('ipc-') ? 'cloned: IPC cannot transfer' : '';
        rows.push([index === 0 ? label : '', name, cell(entry && entry.msMedian), cell(entry && entry.mbPerSec, { ratio: false }), entry ? notes : '']);
      });
    }
    section(
      'One large Uint8Array at a time, transferred; the receiver answers with its length (ms per transfer, medians; ratio to worker_threads)',
      renderTable(['size', 'transport', 'ms (lower better)', 'MB/s', 'note'], rows, [0, 1, 4]),
    );
  }
  if (summary.small) {
    section(
      'CPU seconds per million small messages (= µs per message), user + system, from the small-object runs (lower better)',
      renderTable(
        ['transport', 'parent', 'peer', 'total', 'note'],
        TRANSPORTS.map((t) => {
          const e = summary.small[t];
          if (t === 'worker_threads') return [t, '-', '-', cell(e.cpuTotalPerM), 'one process: main + Worker'];
          return [t, cell(e.cpuParentPerM, { ratio: false }), cell(e.cpuPeerPerM, { ratio: false }), cell(e.cpuTotalPerM), ''];
        }),
        [0, 4],
      ),
    );
  }
  out.push(`Medians of ${REPEATS} runs (${LARGE_REPEATS} with busy processes and for big-*), each in fresh processes; in parentheses: ratio to ${BASELINE} (same case).`);
  const spread = spreadNotes(cases, summary);
  if (spread.length) {
    out.push(`Runs that disagree by more than ${SPREAD}x (min - max; every run is in results.json):`);
    for (let i = 0; i < spread.length; i += 3) out.push(`  ${spread.slice(i, i + 3).join(';  ')}`);
  }
  return out;
}

// A median hides a bimodal set of runs (on 2 vCPUs, whether the two sides shared a core decides a
// lot); list the headline figures whose runs spread by more than SPREAD.
const SPREAD = 1.5;
const HEADLINE = {
  small: 'msgsPerSec', pingpong: 'p50us', channels: 'msgsPerSec', idle: 'rssKiBPerChannelTotal',
  startup: 'firstMessageMs', 'small-load': 'msgsPerSec', 'pingpong-load': 'p50us',
};

function spreadNotes(cases, summary) {
  const notes = [];
  for (const kase of cases) {
    const key = HEADLINE[kase.name] || (kase.name.startsWith('big-') ? 'msMedian' : 'msgsPerSec');
    for (const transport of kase.transports) {
      const entry = summary[kase.name][transport][key];
      if (!entry || entry.runs.length < 2) continue;
      const low = Math.min(...entry.runs);
      const high = Math.max(...entry.runs);
      if (low > 0 && high / low > SPREAD) notes.push(`${kase.name} ${transport} ${formatNumber(low)} - ${formatNumber(high)}`);
    }
  }
  return notes;
}

function formatLoad(averages) {
  return averages.map((value) => value.toFixed(2)).join(' ');
}

function progressFigure(result) {
  if (!result.ok) return `FAILED: ${result.error}`;
  if (result.case.startsWith('pingpong')) return `p50 ${formatNumber(result.p50us)} µs, p99 ${formatNumber(result.p99us)} µs`;
  if (result.case.startsWith('big-')) return `${formatNumber(result.msMedian)} ms per transfer (${result.times.map(formatNumber).join(', ')})`;
  if (result.case === 'startup') {
    return `online ${result.onlineMs === null ? 'n.a.' : `${formatNumber(result.onlineMs)} ms`}, first message ${formatNumber(result.firstMessageMs)} ms`;
  }
  if (result.case === 'idle') {
    return `RSS ${formatNumber(result.rssKiBPerChannelTotal)} KiB/channel, ${formatNumber(result.fdsPerChannelTotal)} fds/channel`;
  }
  const mb = result.mbPerSec === undefined ? '' : `, ${formatNumber(result.mbPerSec)} MB/s`;
  return `${formatNumber(result.msgsPerSec)} msg/s${mb}, CPU ${formatNumber(result.cpuTotalPerM)} µs/msg`;
}

async function main() {
  const cases = parseOnly(process.argv.slice(2));
  const started = Date.now();
  const header = {
    date: new Date().toISOString(),
    cpu: os.cpus()[0] ? os.cpus()[0].model : 'unknown',
    cores: os.cpus().length,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    quick: QUICK,
    loadAverageAtStart: os.loadavg(),
    only: cases.length === CASES.length ? null : cases.map((kase) => kase.name),
  };
  console.log('crossport benchmark' + (QUICK ? ' (BENCH_QUICK: counts / 10)' : ''));
  console.log(`date:  ${header.date}`);
  console.log(`cpu:   ${header.cpu} x ${header.cores} cores`);
  console.log(`node:  ${header.node} (${header.platform})`);
  console.log(`load:  ${formatLoad(header.loadAverageAtStart)} (1, 5, 15 min; other work on the machine skews figures)`);
  console.log(`cases: ${cases.map((kase) => kase.name).join(' ')}; ${REPEATS} runs each (${LARGE_REPEATS} of the load and big-* ones), fresh processes`);
  console.log('');

  const runs = [];
  const rounds = Math.max(...cases.map((kase) => kase.repeats));
  for (let repeat = 0; repeat < rounds; repeat++) {
    for (const kase of cases.filter((c) => repeat < c.repeats)) {
      // Rotate the transport order each repeat so that no transport always runs first or last.
      const order = kase.transports.map((_, i) => kase.transports[(i + repeat) % kase.transports.length]);
      for (const transport of order) {
        const result = await runOne(transport, kase);
        result.repeat = repeat;
        runs.push(result);
        console.log(
          `  run ${repeat + 1}/${kase.repeats}  ${kase.name.padEnd(17)} ${transport.padEnd(14)} ${progressFigure(result)}  [${result.wallSeconds.toFixed(1)} s, load ${result.loadAverage.toFixed(2)}]`,
        );
        if (!result.ok && result.stderr) console.log(result.stderr.replace(/^/gm, '      | '));
      }
    }
  }

  const summary = summarize(cases, runs);
  const table = tables(cases, summary);
  console.log('');
  for (const line of table) console.log(line);
  const totalSeconds = (Date.now() - started) / 1000;
  const loadAverageAtEnd = os.loadavg();
  console.log(`total time ${totalSeconds.toFixed(1)} s; load average at the end ${formatLoad(loadAverageAtEnd)}`);

  const failures = runs.filter((r) => !r.ok);
  const output = {
    ...header,
    cases: cases.map(({ name, count, warmup, transports }) => ({ name, count, warmup, transports })),
    repeats: REPEATS,
    baseline: BASELINE,
    summary,
    table,
    runs,
    totalSeconds,
    loadAverageAtEnd,
  };
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
