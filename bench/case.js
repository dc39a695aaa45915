'use strict';
// One benchmark run in a fresh process:  node bench/case.js <transport> <case> <count> <warmup>
//   transport: crossport | crossport-worker | worker_threads | ipc-json | ipc-advanced
//   case:      small | pingpong | u8-{4k,64k,1m}-{clone,transfer} | channels | idle |
//              small-load | pingpong-load | big-{64m,512m,1g}-{transfer,alloc}   (see payload.js)
//   count:     messages timed (round trips for pingpong; channels created for idle; transfers,
//              one at a time, for big-*)
// Starts the peer (bench/peer.js) over the given transport, runs the case, shuts the peer down and
// prints exactly one line `RESULT {json}` on stdout (also on failure: { ok: false, error }).
// The idle case wants `node --expose-gc` (run.js passes it) so that both sides can collect first.

const childProcess = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const workerThreads = require('node:worker_threads');
const payload = require('./payload');

const PEER = path.join(__dirname, 'peer.js');
const SHUTDOWN_TIMEOUT_MS = 10000;

const [transport, kaseName] = process.argv.slice(2, 4);
const [count, warmup] = process.argv.slice(4, 6).map(Number);

let printed = false;
function printResult(result) {
  if (printed) return;
  printed = true;
  process.stdout.write(`RESULT ${JSON.stringify({ transport, case: kaseName, count, warmup, ...result })}\n`);
}

function fail(error) {
  printResult({ ok: false, error: String(error && error.stack ? error.stack : error) });
  process.exit(1);
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

const kase = payload.parseCase(kaseName);
const isIpc = transport === 'ipc-json' || transport === 'ipc-advanced';

// ---------------------------------------------------------------------------------------------
// Endpoint: { post(value, transfer?), MessageChannel?, shutdown(), exitPromise? } plus the
// protocol state below. Every message from the peer goes through `handler`.

let handler = protocol;

function startEndpoint() {
  const args = [transport, kaseName, String(count), String(warmup)];
  // The peer never writes to stdout; anything it prints goes to our stderr so that our stdout
  // carries only the RESULT line.
  const stdio = ['ignore', 2, 2, 'ipc'];
  const dispatch = (message) => handler(message);
  const endpoint = {};

  if (transport === 'crossport') {
    const crossport = require('crossport-ipc');
    const child = crossport.fork(PEER, args, { stdio });
    const port = child.port;
    port.on('message', dispatch);
    endpoint.post = (value, transfer) => port.postMessage(value, transfer);
    endpoint.MessageChannel = crossport.MessageChannel;
    endpoint.exitPromise = exitPromise(child);
    endpoint.pid = child.pid;
    endpoint.shutdown = async () => {
      port.close();
      return endpoint.exitPromise;
    };
  } else if (transport === 'crossport-worker') {
    // crossport's Worker: worker_threads' API, the peer in a process of its own.
    const crossport = require('crossport-ipc');
    const worker = new crossport.Worker(PEER, { workerData: { transport, kase: kaseName, count, warmup } });
    worker.on('message', dispatch);
    worker.on('error', fail);
    endpoint.post = (value, transfer) => worker.postMessage(value, transfer);
    endpoint.MessageChannel = crossport.MessageChannel;
    endpoint.pid = worker.pid;
    endpoint.exitPromise = new Promise((resolve) => worker.on('exit', (code) => resolve({ code, signal: null })));
    endpoint.shutdown = async () => {
      await worker.terminate();
      return endpoint.exitPromise;
    };
  } else if (transport === 'worker_threads') {
    const worker = new workerThreads.Worker(PEER, {
      workerData: { transport, kase: kaseName, count, warmup },
      stdout: false,
      stderr: false,
    });
    worker.on('message', dispatch);
    worker.on('error', fail);
    endpoint.post = (value, transfer) => worker.postMessage(value, transfer);
    endpoint.MessageChannel = workerThreads.MessageChannel;
    endpoint.shutdown = async () => {
      const code = await worker.terminate();
      return { code, signal: null };
    };
  } else if (isIpc) {
    const serialization = transport === 'ipc-json' ? 'json' : 'advanced';
    const child = childProcess.fork(PEER, args, { stdio, serialization });
    child.on('message', dispatch);
    // No transfer over IPC: the same send, cloned.
    endpoint.post = (value) => child.send(value);
    endpoint.exitPromise = exitPromise(child);
    endpoint.pid = child.pid;
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

// The peer's protocol messages: { error }, { ack: n } (flow control), and replies awaited by name.
let acked = 0;
let onCredit = null;
const awaited = new Map();

function protocol(message) {
  if (message && message.error) return fail(new Error(message.error));
  if (message && typeof message.ack === 'number') {
    acked = message.ack;
    if (onCredit) {
      const resume = onCredit;
      onCredit = null;
      resume();
    }
    return;
  }
  for (const [name, resolve] of awaited) {
    if (message && message[name]) {
      awaited.delete(name);
      return resolve(message);
    }
  }
  fail(new Error(`unexpected message from the peer: ${payload.describe(message)}`));
}

function reply(name) {
  return new Promise((resolve) => awaited.set(name, resolve));
}

// ---------------------------------------------------------------------------------------------
// Pipelined sending: ids [from, to), `chunk` per event-loop turn (setImmediate in between), never
// more than `window` ahead of the peer's last acknowledgement.

function pump(sendOne, from, to) {
  const { window, chunk } = payload.flowControl(kase);
  return new Promise((resolve, reject) => {
    let i = from;
    function turn() {
      try {
        const end = Math.min(to, i + chunk);
        while (i < end) {
          if (i - acked >= window) {
            onCredit = turn;
            return;
          }
          sendOne(i++);
        }
        if (i >= to) resolve();
        else setImmediate(turn);
      } catch (error) {
        reject(error);
      }
    }
    turn();
  });
}

function senderFor(endpoint, ports) {
  if (kase.kind === 'small') return (id) => endpoint.post(payload.smallMessage(id));
  if (kase.kind === 'channels') {
    const n = ports.length;
    return (id) => ports[id % n].postMessage(payload.smallMessage(id));
  }
  if (kase.kind !== 'bytes') throw new Error(`no sender for ${kaseName}`);
  const { size, mode } = kase;
  const encode = transport === 'ipc-json' ? payload.toBase64 : (u8) => u8;
  // Both modes make and fill a fresh buffer per message, as a producer of new data does (and as
  // transfer requires: the sent buffer is detached), so that the two modes differ only in the
  // transfer list. Over IPC there is no transfer: the same send, cloned (the table says so).
  const transfer = mode === 'transfer' && !isIpc;
  return (id) => {
    const u8 = new Uint8Array(size);
    payload.writeBytes(u8, id);
    if (!transfer) {
      endpoint.post(encode(u8));
    } else {
      endpoint.post(u8, [u8.buffer]);
      if (u8.byteLength !== 0) throw new Error(`transfer did not detach the sent ArrayBuffer (#${id})`);
    }
  };
}

async function runPipelined(endpoint, ports) {
  const sendOne = senderFor(endpoint, ports);
  const warmed = reply('warm');
  await pump(sendOne, 0, warmup);
  await warmed;

  const done = reply('done');
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await pump(sendOne, warmup, warmup + count);
  const sentAt = process.hrtime.bigint();
  const answer = await done;
  const cpu = process.cpuUsage(cpu0);
  const total = warmup + count;
  if (answer.received !== total || answer.maxId !== total - 1) {
    throw new Error(`peer counted ${answer.received} messages (highest id ${answer.maxId}), expected ${total} (highest ${total - 1})`);
  }
  const seconds = Number(BigInt(answer.t) - t0) / 1e9;
  const result = { ok: true, msgsPerSec: count / seconds, seconds, sendSeconds: Number(sentAt - t0) / 1e9 };
  if (kase.kind === 'bytes') result.mbPerSec = (count * kase.size) / seconds / 1e6;
  // CPU seconds per million messages = CPU µs per message. worker_threads: main and Worker are one
  // process, and process.cpuUsage() anywhere in it is the whole process's: report that as the total.
  const parentUs = cpu.user + cpu.system;
  if (transport === 'worker_threads') {
    result.cpuTotalPerM = parentUs / count;
  } else {
    result.cpuParentPerM = parentUs / count;
    result.cpuPeerPerM = answer.cpuUs / count;
    result.cpuTotalPerM = (parentUs + answer.cpuUs) / count;
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Ping-pong: one message in flight; the next is posted from the reply's handler.

// CPU time of every thread of another process, in µs, from /proc/<pid>/task/*/schedstat (its
// first field is the thread's time on a CPU in ns): fine-grained enough for a short run.
function processCpuUs(pid) {
  let ns = 0;
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    ns += Number(fs.readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
  }
  return ns / 1000;
}

function runPingpong(endpoint) {
  return new Promise((resolve, reject) => {
    const total = warmup + count;
    const latencies = new Float64Array(count);
    let i = 0;
    let sentAt = 0n;
    let cpu0 = null;
    let peerCpu0 = 0;
    handler = (message) => {
      const now = process.hrtime.bigint();
      if (message && message.error) return reject(new Error(message.error));
      const problem = payload.checkSmall(message, i);
      if (problem) return reject(new Error(`round trip #${i}: ${problem}`));
      if (i >= warmup) latencies[i - warmup] = Number(now - sentAt) / 1000;
      i++;
      if (i === warmup) {
        cpu0 = process.cpuUsage();
        if (endpoint.pid) peerCpu0 = processCpuUs(endpoint.pid);
      }
      if (i === total) {
        handler = protocol;
        // CPU per round trip, both sides: what waiting costs (a poll window spends CPU here).
        const cpu = process.cpuUsage(cpu0);
        const result = percentiles(latencies);
        result.cpuParentPerRt = (cpu.user + cpu.system) / count;
        if (endpoint.pid) {
          result.cpuPeerPerRt = (processCpuUs(endpoint.pid) - peerCpu0) / count;
          result.cpuTotalPerRt = result.cpuParentPerRt + result.cpuPeerPerRt;
        } else {
          result.cpuTotalPerRt = result.cpuParentPerRt;  // one process: both sides
        }
        return resolve(result);
      }
      sentAt = process.hrtime.bigint();
      endpoint.post(payload.smallMessage(i));
    };
    sentAt = process.hrtime.bigint();
    endpoint.post(payload.smallMessage(0));
  });
}

// ---------------------------------------------------------------------------------------------
// One large buffer at a time: made and filled (not timed), posted (transferred where the transport
// can; IPC clones), and timed until the receiver answers with its length. Over IPC 'json' the bytes
// would be base64 text longer than a string may be above 64 MiB: run.js does not ask for that.

async function runLarge(endpoint) {
  const { size, mode } = kase;
  const transfer = !isIpc;
  const allocate = mode === 'alloc' && transport === 'crossport'
    ? require('crossport-ipc').allocateTransferable
    : (n) => new ArrayBuffer(n);
  const times = [];
  for (let id = 0; id < warmup + count; id++) {
    const bytes = new Uint8Array(allocate(size));
    payload.writeBytes(bytes, id);
    const answered = reply('length');
    const t0 = process.hrtime.bigint();
    if (transport === 'ipc-json') endpoint.post(payload.toBase64(bytes));
    else if (transfer) endpoint.post(bytes, [bytes.buffer]);
    else endpoint.post(bytes);
    const answer = await answered;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (answer.length !== size || answer.id !== id) {
      throw new Error(`transfer #${id}: the receiver answered ${JSON.stringify(answer)}, expected length ${size}`);
    }
    if (transfer && bytes.byteLength !== 0) throw new Error(`transfer did not detach the sent ArrayBuffer (#${id})`);
    if (id >= warmup) times.push(ms);
  }
  times.sort((a, b) => a - b);
  const msMedian = times[times.length >> 1];
  return { ok: true, msMedian, msMin: times[0], msMax: times[times.length - 1], times, mbPerSec: size / 1e6 / (msMedian / 1000) };
}

function percentiles(latencies) {
  latencies.sort();
  const n = latencies.length;
  const rank = (p) => latencies[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))];
  let sum = 0;
  for (const value of latencies) sum += value;
  return { ok: true, p50us: rank(0.5), p99us: rank(0.99), meanUs: sum / n, maxUs: latencies[n - 1] };
}

// ---------------------------------------------------------------------------------------------
// Channels (channels, idle): made here, port2s sent to the peer over the main channel, 100 per
// message; resolves when the peer has adopted all of them. `onPort1` gets each kept end.

const PORTS_PER_MESSAGE = 100;

async function openChannels(endpoint, n, onPort1) {
  if (!endpoint.MessageChannel) throw new Error(`${transport} has only one channel per child`);
  const kept = [];
  const adopted = reply('adopted');
  for (let first = 0; first < n; first += PORTS_PER_MESSAGE) {
    const batch = [];
    for (let i = first; i < Math.min(n, first + PORTS_PER_MESSAGE); i++) {
      const { port1, port2 } = new endpoint.MessageChannel();
      onPort1(port1, i);
      kept.push(port1);
      batch.push(port2);
    }
    endpoint.post({ ports: batch, expect: n }, batch);
  }
  const answer = await adopted;
  if (answer.adopted !== n) throw new Error(`peer adopted ${answer.adopted} ports, expected ${n}`);
  return kept;
}

async function runChannels(endpoint) {
  const ports = await openChannels(endpoint, kase.channels, (port) => {
    port.on('message', (m) => fail(new Error(`unexpected message on a data channel: ${payload.describe(m)}`)));
  });
  const result = await runPipelined(endpoint, ports);
  result.channels = ports.length;
  return { result, ports };
}

function collect() {
  if (typeof globalThis.gc !== 'function') throw new Error('the idle case needs node --expose-gc');
  globalThis.gc();
  globalThis.gc();
}

function fdCount() {
  return fs.readdirSync('/proc/self/fd').length;
}

async function runIdle(endpoint) {
  const n = count;
  const marked = reply('marked');
  endpoint.post({ mark: true });
  await marked;
  collect();
  const rss0 = process.memoryUsage.rss();
  const fds0 = fdCount();

  let echoes = 0;
  let allEchoed;
  const echoed = new Promise((resolve) => (allEchoed = resolve));
  const ports = await openChannels(endpoint, n, (port, index) => {
    port.on('message', (m) => {
      if (!m || m.check !== index) return fail(new Error(`idle channel ${index} echoed ${payload.describe(m)}`));
      if (++echoes === n) allEchoed();
    });
  });

  const measured = reply('measured');
  endpoint.post({ measure: true });
  const peer = await measured;
  collect();
  const rss1 = process.memoryUsage.rss();
  const fds1 = fdCount();
  if (peer.ports !== n) throw new Error(`peer holds ${peer.ports} ports, expected ${n}`);

  // Every channel must work: one message each way.
  ports.forEach((port, index) => port.postMessage({ check: index }));
  await echoed;

  const KiB = 1024;
  const result = { ok: true, channels: n };
  if (transport === 'worker_threads') {
    // One process: its RSS and fd table hold both ends.
    result.rssKiBPerChannelTotal = (rss1 - rss0) / KiB / n;
    result.fdsPerChannelTotal = (fds1 - fds0) / n;
  } else {
    result.rssKiBPerChannelParent = (rss1 - rss0) / KiB / n;
    result.rssKiBPerChannelPeer = peer.rssDelta / KiB / n;
    result.rssKiBPerChannelTotal = (rss1 - rss0 + peer.rssDelta) / KiB / n;
    result.fdsPerChannelParent = (fds1 - fds0) / n;
    result.fdsPerChannelPeer = peer.fdDelta / n;
    result.fdsPerChannelTotal = (fds1 - fds0 + peer.fdDelta) / n;
  }
  return { result, ports };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  if ((kase.kind === 'channels' || kase.kind === 'idle') && isIpc) {
    throw new Error(`${transport} has a single channel per child; the ${kaseName} case does not apply`);
  }
  const endpoint = startEndpoint();
  if (endpoint.exitPromise) {
    endpoint.exitPromise.then(({ code, signal }) => {
      if (!shuttingDown) fail(new Error(`peer exited early (code ${code}, signal ${signal})`));
    });
  }
  await reply('ready');

  let result;
  let ports = [];
  if (kase.kind === 'small' || kase.kind === 'bytes') result = await runPipelined(endpoint, []);
  else if (kase.kind === 'pingpong') result = await runPingpong(endpoint);
  else if (kase.kind === 'large') result = await runLarge(endpoint);
  else if (kase.kind === 'channels') ({ result, ports } = await runChannels(endpoint));
  else if (kase.kind === 'idle') ({ result, ports } = await runIdle(endpoint));
  else throw new Error(`unknown case ${kaseName}`);

  handler = (message) => {
    process.stderr.write(`case.js: unexpected message after the run: ${payload.describe(message)}\n`);
  };
  shuttingDown = true;
  for (const port of ports) port.close();
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ timeout: true }), SHUTDOWN_TIMEOUT_MS);
  });
  const peerExit = await Promise.race([endpoint.shutdown(), timeout]);
  clearTimeout(timer);
  if (peerExit.timeout) {
    result.ok = false;
    result.error = `peer did not exit within ${SHUTDOWN_TIMEOUT_MS} ms of shutdown (${transport === 'crossport' ? 'port.close()' : transport.endsWith('worker') || transport === 'worker_threads' ? 'terminate()' : 'disconnect()'})`;
    printResult(result);
    process.exit(1);
  }
  result.peerExit = peerExit;
  // Workers are ended by terminate() (exit code 1); the other peers leave by themselves.
  if (!transport.endsWith('worker') && transport !== 'worker_threads' && (peerExit.code !== 0 || peerExit.signal !== null)) {
    result.ok = false;
    result.error = `peer exited with code ${peerExit.code}, signal ${peerExit.signal}`;
  }
  printResult(result);
  // Nothing should keep this process alive now; if something does, say so.
  setTimeout(() => {
    process.stderr.write(`case.js (${transport} ${kaseName}): process still alive 5 s after the run ended\n`);
    process.exit(3);
  }, 5000).unref();
}

let shuttingDown = false;
main().catch(fail);
