'use strict';
// Remote ports over NATS against plain NATS, through one local nats-server, in one run:
//   node bench/nats.js [--only <case>[,<case>...]]      (npm run bench runs it after bench/run.js)
//   BENCH_QUICK=1       counts / 10, 3 rounds
//   BENCH_REPEATS=<n>   rounds (default 5)
//   BENCH_ONLY=<cases>  same as --only: small spaced pingpong rpc channels
// Cases (bench/nats-case.js): small (one way, pipelined), spaced (one way, one message per turn of
// the sender's loop), pingpong (round trip, one in flight), rpc (64 in flight), each for a remote
// port and the baseline the issue names, plain NATS with JSON payloads (JSON.stringify + publish,
// subscribe + JSON.parse; request/reply for the round trips) — and, for the round trips, plain
// NATS as a port makes them (a subject each way, no reply subject); channels (1,000 remote channels
// on one server).
// Each round runs every (case, transport) once, in fresh processes, the transports of a case one
// after the other (their order rotated between rounds), so that a ratio compares two runs made
// moments apart. The machine is shared: each run records the 1-minute load average as it starts.
// Printed per figure: the median over rounds and [min–max]; per ratio, the median of the ratios
// taken within each round and [min–max]; and the load averages the runs saw.
// Needs nats-server (apt-get install nats-server) and @nats-io/transport-node; skips without them.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { natsServerBinary, startNatsServer } = require('../test/nats-server');

const QUICK = Boolean(process.env.BENCH_QUICK) && process.env.BENCH_QUICK !== '0';
const SCALE = QUICK ? 10 : 1;
const REPEATS = Number(process.env.BENCH_REPEATS) || (QUICK ? 3 : 5);
const onlyArg = process.argv.indexOf('--only');
const ONLY = (onlyArg > 0 ? process.argv[onlyArg + 1] : process.env.BENCH_ONLY || '').split(',').filter(Boolean);
const ONE_WAY = ['msgsPerSec', 'cpuTotalPerMsg', 'cpuSenderPerMsg', 'cpuPeerPerMsg'];
const ROUND_TRIP = ['remote-port', 'nats-json', 'nats-json-pubsub'];
const ALL_CASES = [
  { name: 'small', count: 200000 / SCALE, transports: ['remote-port', 'nats-json'], metrics: ONE_WAY,
    what: 'the small object, one way, pipelined (500 posts per turn)' },
  { name: 'spaced', count: 30000 / SCALE, transports: ['remote-port', 'nats-json'], metrics: ONE_WAY,
    what: 'the small object, one way, one post per turn of the sender\'s event loop' },
  { name: 'pingpong', count: 5000 / SCALE, transports: ROUND_TRIP, metrics: ['p50us', 'p99us', 'cpuTotalPerRoundTrip'],
    what: 'round trip, one in flight' },
  { name: 'rpc', count: 50000 / SCALE, transports: ROUND_TRIP, metrics: ['requestsPerSec', 'cpuTotalPerRequest'],
    what: '64 requests in flight, each answered' },
  { name: 'channels', count: 1000, transports: ['remote-port'], metrics: ['rssKiBPerChannelSender', 'serverRssKiBPerChannel',
    'serverSubscriptionsPerChannel', 'idleMsgsPerSecAtServer', 'roundTripsPerSec'],
    what: '1,000 remote channels on one server' },
];
const CASES = ONLY.length === 0 ? ALL_CASES : ALL_CASES.filter((kase) => ONLY.includes(kase.name));
const UNITS = { msgsPerSec: 'msgs/s', requestsPerSec: 'requests/s', roundTripsPerSec: 'round trips/s', p50us: 'µs', p99us: 'µs',
  cpuTotalPerMsg: 'µs CPU, both sides', cpuSenderPerMsg: 'µs CPU, sender', cpuPeerPerMsg: 'µs CPU, receiver',
  cpuTotalPerRoundTrip: 'µs CPU, both sides', cpuTotalPerRequest: 'µs CPU, both sides' };

function runOne(server, monitorPort, kase, transport, index) {
  return new Promise((resolve) => {
    const address = server.url(`bench.${kase.name}.${transport}.${index}`);
    const load = os.loadavg()[0];
    const child = spawn(process.execPath, ['--expose-gc', path.join(__dirname, 'nats-case.js'), transport, kase.name, String(kase.count), address], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NATS_MONITOR_PORT: String(monitorPort), NATS_SERVER_PID: String(server.pid) },
      detached: true,
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    const timer = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), 150000);
    child.on('close', () => {
      clearTimeout(timer);
      try {
        process.kill(-child.pid, 'SIGKILL');  // its peer, if left behind
      } catch {
        // gone
      }
      const line = stdout.split('\n').find((text) => text.startsWith('RESULT '));
      const result = line ? JSON.parse(line.slice(7)) : { ok: false, error: `no result: ${stdout.slice(-500)}` };
      resolve({ ...result, load });
    });
  });
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length === 0 ? null : sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
const format = (value) => (value === null ? 'FAILED' : value >= 1000 ? Math.round(value).toLocaleString('en-US') : value.toFixed(value >= 10 ? 1 : 2));
/** median [min–max] */
function spread(values, show = format) {
  if (values.length === 0) return 'FAILED';
  return `${show(median(values))} [${show(Math.min(...values))}–${show(Math.max(...values))}]`;
}

async function main() {
  if (natsServerBinary() === null) {
    console.log('bench/nats.js: skipped, nats-server is not installed (apt-get install nats-server)');
    return;
  }
  const monitorPort = await new Promise((resolve) => {
    const probe = require('node:net').createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
  const server = await startNatsServer(['-m', String(monitorPort)]);
  // rounds[case][round][transport] = result
  const rounds = {};
  try {
    for (let round = 0; round < REPEATS; round++) {
      for (const kase of CASES) {
        const shift = round % kase.transports.length;
        const order = [...kase.transports.slice(shift), ...kase.transports.slice(0, shift)];
        const results = {};
        for (const transport of order) {
          const result = await runOne(server, monitorPort, kase, transport, round);
          results[transport] = result;
          process.stderr.write(`round ${round + 1} ${kase.name} ${transport} (load ${result.load.toFixed(2)}): ${result.ok
            ? kase.metrics.map((m) => `${m} ${format(result[m])}`).join(', ') : `FAILED ${result.error}`}\n`);
        }
        (rounds[kase.name] ??= []).push(results);
      }
    }
  } finally {
    await server.stop();
  }
  const lines = [`Remote ports over NATS vs plain NATS (JSON), one nats-server on 127.0.0.1, ${new Date().toISOString()}, ` +
    `${os.cpus().length} x ${os.cpus()[0].model}, Node ${process.version}, ${REPEATS} rounds.`,
  'Each figure: median [min–max] over rounds; ratios: median [min–max] of the ratios within each round.'];
  const summary = {};
  for (const kase of CASES) {
    const caseRounds = rounds[kase.name];
    const loads = caseRounds.flatMap((round) => Object.values(round).map((r) => r.load));
    lines.push('', `${kase.name}: ${kase.what}, ${kase.count.toLocaleString('en-US')} measured ` +
      `(load average ${spread(loads, (v) => v.toFixed(2))} as its runs started)`);
    const baselines = kase.transports.filter((t) => t !== 'remote-port');
    summary[kase.name] = { count: kase.count, loads, metrics: {} };
    for (const metric of kase.metrics) {
      const cells = [];
      const entry = (summary[kase.name].metrics[metric] = {});
      for (const transport of kase.transports) {
        const values = caseRounds.map((round) => round[transport]).filter((r) => r?.ok).map((r) => r[metric]);
        entry[transport] = { median: median(values), values };
        cells.push(`${transport} ${spread(values)}`);
      }
      for (const baseline of baselines) {
        const ratios = caseRounds.filter((round) => round['remote-port']?.ok && round[baseline]?.ok)
          .map((round) => round['remote-port'][metric] / round[baseline][metric]);
        entry[`ratio to ${baseline}`] = { median: median(ratios), values: ratios };
        cells.push(`remote-port / ${baseline} ${spread(ratios, (v) => `${v.toFixed(2)}x`)}`);
      }
      lines.push(`  ${metric} (${UNITS[metric] ?? ''})`.padEnd(40) + cells.join('   '));
    }
  }
  console.log(lines.join('\n'));
  fs.writeFileSync(path.join(__dirname, 'nats-results.json'), JSON.stringify({ rounds, summary, text: lines }, null, 2));
}

main();
