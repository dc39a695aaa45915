'use strict';
// Act 4 of the demo: the receiving end of the throughput rounds, as a process (crossport's
// fork()) or as a worker_threads thread (then its port comes in workerData). It checks every
// message and answers each round's last one.
const workerThreads = require('node:worker_threads');
const { parentPort } = require('crossport-ipc');

const port = workerThreads.isMainThread ? parentPort : workerThreads.workerData.port;
let expected = 0;
let bad = 0;
port.on('message', (message) => {
  if (message.start !== undefined) {
    expected = message.start;
    bad = 0;
    return;
  }
  if (message.id !== expected++ || message.args[2] !== 3) bad++;
  if (message.last) port.postMessage({ received: expected, bad });
});
