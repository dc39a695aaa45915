'use strict';
// Remote ports over NATS against plain NATS, through one local nats-server, in one run:
//   node bench/nats.js            (npm run bench runs it after bench/run.js; BENCH_QUICK=1: counts / 10)
// Cases (bench/nats-case.js): small (one way, pipelined), pingpong (round trip), rpc (64 in
// flight), each for remote-port and nats-json; channels (1,000 remote channels on one server).
// Each (case, transport) runs BENCH_REPEATS times (default 3) in fresh processes, transports
// interleaved; medians are printed, and the remote port's figures as ratios to plain NATS.
// Needs nats-server (apt-get install nats-server) and @nats-io/transport-node; skips without them.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { natsServerBinary, startNatsServer } = require('../test/nats-server');

const QUICK = Boolean(process.env.BENCH_QUICK) && process.env.BENCH_QUICK !== '0';
const SCALE = QUICK ? 10 : 1;
const REPEATS = Number(process.env.BENCH_REPEATS) || 3;
const CASES = [
  { name: 'small', count: 200000 / SCALE, transports: ['remote-port', 'nats-json'], metrics: ['msgsPerSec', 'cpuTotalPerMsg', 'cpuSenderPerMsg', 'cpuPeerPerMsg'] },
  { name: 'pingpong', count: 5000 / SCALE, transports: ['remote-port', 'nats-json'], metrics: ['p50us', 'p99us'] },
  { name: 'rpc', count: 50000 / SCALE, transports: ['remote-port', 'nats-json'], metrics: ['requestsPerSec'] },
  { name: 'channels', count: 1000, transports: ['remote-port'], metrics: ['rssKiBPerChannelSender', 'serverRssKiBPerChannel',
    'serverSubscriptionsPerChannel', 'idleMsgsPerSecAtServer', 'roundTripsPerSec'] },
];

function runOne(server, monitorPort, kase, transport, index) {
  return new Promise((resolve) => {
    const address = server.url(`bench.${kase.name}.${transport}.${index}`);
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
      resolve(line ? JSON.parse(line.slice(7)) : { ok: false, error: `no result: ${stdout.slice(-500)}` });
    });
  });
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length === 0 ? null : sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
const format = (value) => (value === null ? 'FAILED' : value >= 1000 ? Math.round(value).toLocaleString('en-US') : value.toFixed(value >= 10 ? 1 : 2));

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
  const summary = {};
  try {
    for (let repeat = 0; repeat < REPEATS; repeat++) {
      for (const kase of CASES) {
        const order = repeat % 2 ? [...kase.transports].reverse() : kase.transports;
        for (const transport of order) {
          const result = await runOne(server, monitorPort, kase, transport, repeat);
          const runs = ((summary[kase.name] ??= {})[transport] ??= []);
          runs.push(result);
          process.stderr.write(`${kase.name} ${transport}: ${result.ok ? kase.metrics.map((m) => `${m} ${format(result[m])}`).join(', ') : `FAILED ${result.error}`}\n`);
        }
      }
    }
  } finally {
    await server.stop();
  }
  const lines = [`Remote ports over NATS vs plain NATS (JSON), one nats-server on 127.0.0.1, ${new Date().toISOString()}, ` +
    `${os.cpus().length} x ${os.cpus()[0].model}, Node ${process.version}; medians of ${REPEATS}`];
  for (const kase of CASES) {
    lines.push('', `${kase.name} (${kase.count.toLocaleString('en-US')})`);
    for (const metric of kase.metrics) {
      const cells = kase.transports.map((transport) => {
        const values = summary[kase.name][transport].filter((r) => r.ok).map((r) => r[metric]);
        return { transport, value: median(values) };
      });
      const base = cells.find((cell) => cell.transport === 'nats-json')?.value;
      lines.push(`  ${metric.padEnd(30)} ${cells.map(({ transport, value }) =>
        `${transport} ${format(value)}${base && transport !== 'nats-json' && value !== null ? ` (${(value / base).toFixed(2)}x)` : ''}`).join('   ')}`);
    }
  }
  console.log(lines.join('\n'));
  fs.writeFileSync(path.join(__dirname, 'nats-results.json'), JSON.stringify({ summary, text: lines }, null, 2));
}

main();
