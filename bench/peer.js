'use strict';
// The receiving / echoing side of one benchmark run. Started by bench/case.js as
//   - a crossport child:            crossport fork(peer.js, [transport, kase, count, warmup])
//   - a child_process IPC child:    child_process.fork(peer.js, [...], { serialization })
//   - a worker_threads Worker:      new Worker(peer.js, { workerData: { transport, kase, count, warmup } })
//
// Cases:
//   throughput  counts `warmup` messages and answers { warm: true }, then counts `count` more and
//               answers { done: true, t } where t is process.hrtime.bigint() (CLOCK_MONOTONIC,
//               shared by all processes on the machine) at the last receipt.
//   pingpong    posts every message straight back.
// Every received message is checked (id in sequence, fields intact); the first mismatch is reported
// as { error } to the driver.

const workerThreads = require('node:worker_threads');

let transport, kase, count, warmup;
if (!workerThreads.isMainThread) {
  ({ transport, kase, count, warmup } = workerThreads.workerData);
} else {
  [transport, kase] = process.argv.slice(2, 4);
  [count, warmup] = process.argv.slice(4, 6).map(Number);
}

let send;
let listen;
if (transport === 'worker_threads') {
  const port = workerThreads.parentPort;
  send = (message) => port.postMessage(message);
  listen = (handler) => port.on('message', handler);
} else if (transport === 'crossport') {
  const { parentPort } = require('..');
  if (parentPort === null) throw new Error('peer.js: crossport parentPort is null (not started by crossport fork?)');
  send = (message) => parentPort.postMessage(message);
  listen = (handler) => parentPort.on('message', handler);
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
function check(message, expectedId) {
  if (reported) return;
  if (
    message === null ||
    typeof message !== 'object' ||
    message.id !== expectedId ||
    message.op !== 'add' ||
    message.tag !== 'bench' ||
    !Array.isArray(message.args) ||
    message.args.length !== 3 ||
    message.args[0] !== 1 ||
    message.args[1] !== 2 ||
    message.args[2] !== 3
  ) {
    reported = true;
    send({ error: `peer (${transport}) received message #${expectedId} wrong: ${safeStringify(message)}` });
  }
}

function safeStringify(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

if (kase === 'throughput') {
  let received = 0;
  const total = warmup + count;
  listen((message) => {
    check(message, received);
    received++;
    if (received === warmup) send({ warm: true });
    else if (received === total) send({ done: true, t: String(process.hrtime.bigint()), received });
  });
} else if (kase === 'pingpong') {
  let received = 0;
  listen((message) => {
    check(message, received);
    received++;
    send(message);
  });
} else {
  throw new Error(`peer.js: unknown case ${kase}`);
}

send({ ready: true, pid: process.pid });
