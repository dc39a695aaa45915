'use strict';
// What bench/startup.js starts: posts one message to its parent as soon as it runs, over the
// channel of its kind, loading only what that kind needs (a user of worker_threads or
// child_process would not load crossport).
const workerThreads = require('node:worker_threads');
// fork and crossport-fork pass their kind as an argument; a thread is a worker_threads worker.
const kind = process.argv[2] || (workerThreads.isMainThread ? 'crossport-worker' : 'worker_threads');
if (kind === 'worker_threads') {
  workerThreads.parentPort.postMessage('ready');
} else if (kind === 'fork') {
  process.send('ready');
  process.disconnect();
} else {
  // crossport-worker (parentPort of a Worker) or crossport-fork (parentPort of fork())
  const { parentPort } = require('crossport-ipc');
  parentPort.postMessage('ready');
  parentPort.close();
}
