'use strict';
// The receiving / echoing side of one benchmark run. Started by bench/case.js as
//   - a crossport child:            crossport fork(peer.js, [transport, kase, count, warmup])
//   - a child_process IPC child:    child_process.fork(peer.js, [...], { serialization })
//   - a worker_threads Worker:      new Worker(peer.js, { workerData: { transport, kase, count, warmup } })
//   - a crossport Worker:           the same, with crossport's Worker (a process)
// The case names and payloads are in payload.js.
//
// Pipelined cases (small, u8-*, channels): counts and checks every message; answers { ack: n } every
// `ackEvery` messages (flow control), { warm: true } after `warmup` messages, and after `warmup + count`
// { done: true, t, received, maxId, cpuUs } where t is process.hrtime.bigint() (CLOCK_MONOTONIC,
// shared by all processes on the machine) at the last receipt and cpuUs this process's CPU time
// (user + system, µs) from the warm-up's end to the last receipt.
// pingpong: posts every message straight back.
// big-*: answers each buffer with { length, id } (checked at a few places first).
// channels / idle: adopts the ports the driver sends ({ ports: [...] }) and answers { adopted: n }.
// idle: { mark } and { measure } take this process's RSS and fd count (after a GC) before and after.
// The first wrong message is reported as { error } to the driver, which fails the run.

const fs = require('node:fs');
const workerThreads = require('node:worker_threads');
const payload = require('./payload');

let transport, kaseName, count, warmup;
if (!workerThreads.isMainThread) {
  ({ transport, kase: kaseName, count, warmup } = workerThreads.workerData);
} else if (process.argv.length > 2) {
  [transport, kaseName] = process.argv.slice(2, 4);
  [count, warmup] = process.argv.slice(4, 6).map(Number);
} else {
  // The process of a crossport Worker.
  ({ transport, kase: kaseName, count, warmup } = require('crossport-ipc').workerData);
}
const kase = payload.parseCase(kaseName);
const total = warmup + count;

let send;
let listen;
let onClose = () => {};
if (transport === 'worker_threads') {
  const port = workerThreads.parentPort;
  send = (message) => port.postMessage(message);
  listen = (handler) => port.on('message', handler);
} else if (transport === 'crossport' || transport === 'crossport-worker') {
  const { parentPort } = require('crossport-ipc');
  if (parentPort === null) throw new Error('peer.js: crossport parentPort is null (not started by crossport fork?)');
  send = (message) => parentPort.postMessage(message);
  listen = (handler) => parentPort.on('message', handler);
  onClose = (fn) => parentPort.on('close', fn);
} else if (transport === 'ipc-json' || transport === 'ipc-advanced') {
  if (typeof process.send !== 'function') throw new Error('peer.js: no IPC channel');
  send = (message) => process.send(message);
  listen = (handler) => process.on('message', handler);
} else {
  throw new Error(`peer.js: unknown transport ${transport}`);
}

// No process.on('disconnect') here: such a listener refs the IPC channel and would keep a
// crossport child alive after its port closes. If the driver dies, run.js kills the whole group.

let reported = false;
function report(problem) {
  if (reported || problem === null) return;
  reported = true;
  send({ error: `peer (${transport} ${kaseName}): ${problem}` });
}

function collect() {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
}

function fdCount() {
  return fs.readdirSync('/proc/self/fd').length;
}

// ---------------------------------------------------------------------------------------------
// Counting for the pipelined cases.

const { ackEvery } = payload.flowControl(kase);
let received = 0;
let maxId = -1;
let cpuAtWarm = null;

// `id`: the message's id. The channels case has no order across channels, so the driver checks the
// highest id seen (each channel's own order is checked message by message).
function counted(id) {
  received++;
  if (id > maxId) maxId = id;
  if (received % ackEvery === 0) send({ ack: received });
  if (received === warmup) {
    cpuAtWarm = process.cpuUsage();
    send({ warm: true });
  } else if (received === total) {
    const t = String(process.hrtime.bigint());
    const cpu = process.cpuUsage(cpuAtWarm);
    send({ done: true, t, received, maxId, cpuUs: cpu.user + cpu.system });
  } else if (received > total) {
    report(`received ${received} messages, expected ${total}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Channels handed over by the driver (channels, idle).

const adopted = [];
function adopt(message, onPort) {
  if (!message || !Array.isArray(message.ports)) return false;
  for (const port of message.ports) {
    if (!port || typeof port.postMessage !== 'function') {
      report(`expected ports, got ${payload.describe(port)}`);
      return true;
    }
    onPort(port, adopted.length);
    adopted.push(port);
  }
  if (adopted.length === message.expect) send({ adopted: adopted.length });
  return true;
}
onClose(() => {
  for (const port of adopted) port.close();
});

// ---------------------------------------------------------------------------------------------

if (kase.kind === 'small') {
  listen((message) => {
    report(payload.checkSmall(message, received));
    counted(received);
  });
} else if (kase.kind === 'bytes') {
  const { size } = kase;
  listen((message) => {
    report(payload.checkBytes(payload.fromBase64(message), received, size));
    counted(received);
  });
} else if (kase.kind === 'large') {
  // One at a time: checked at a few places (not every page), answered with its length.
  let id = 0;
  listen((message) => {
    const bytes = payload.fromBase64(message);
    report(payload.checkBytes(bytes, id, kase.size, true));
    send({ length: bytes.length, id: id++ });
  });
} else if (kase.kind === 'pingpong') {
  let echoed = 0;
  listen((message) => {
    report(payload.checkSmall(message, echoed));
    echoed++;
    send(message);
  });
} else if (kase.kind === 'channels') {
  // Message i travels on channel i % channels: each channel sees its ids in steps of `channels`.
  const { channels } = kase;
  listen((message) => {
    if (!adopt(message, (port, index) => {
      let next = index;
      port.on('message', (m) => {
        report(payload.checkSmall(m, next));
        next += channels;
        counted(m && m.id);
      });
    })) {
      report(`unexpected message on the main channel: ${payload.describe(message)}`);
    }
  });
} else if (kase.kind === 'idle') {
  let before = null;
  listen((message) => {
    if (adopt(message, (port, index) => {
      // Idle but listening, as a real channel would be; echoes the single check message at the end.
      port.on('message', (m) => {
        if (!m || m.check !== index) report(`idle channel ${index} received ${payload.describe(m)}`);
        port.postMessage(m);
      });
    })) {
      return;
    }
    if (message && message.mark) {
      collect();
      before = { rss: process.memoryUsage.rss(), fds: fdCount() };
      send({ marked: true });
    } else if (message && message.measure) {
      collect();
      const rss = process.memoryUsage.rss();
      const fds = fdCount();
      send({ measured: true, rssDelta: rss - before.rss, fdDelta: fds - before.fds, ports: adopted.length });
    } else {
      report(`unexpected message on the main channel: ${payload.describe(message)}`);
    }
  });
} else {
  throw new Error(`peer.js: unknown case ${kaseName}`);
}

send({ ready: true, pid: process.pid });
