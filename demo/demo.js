'use strict';
// crossport demo:  node demo/demo.js   (npm run demo)
//
// The parent forks demo/child.js with crossport's fork() and, over child.port (a MessagePort with
// the worker_threads API whose other end lives in the child process):
//   1. sends a Map and a Date (structured clone) and gets some back,
//   2. transfers an ArrayBuffer (the sender's copy is detached) and gets one transferred back,
//   3. sends the child one end of a new MessageChannel; the child answers over it,
//   4. times 100k small messages parent -> child, against a worker_threads channel main -> Worker,
// then closes its ports so that both processes exit on their own with code 0.

const path = require('node:path');
const workerThreads = require('node:worker_threads');

const { fork, MessageChannel, MessagePort } = require('crossport-ipc');

const BENCH_COUNT = 100000;
const BENCH_WARMUP = 10000;
const CHUNK = 1000;

const log = (...args) => console.log('[parent]', ...args);
let failures = 0;
function check(condition, what) {
  if (!condition) {
    failures++;
    console.log(`[parent] CHECK FAILED: ${what}`);
  }
}

// A hang is a failure, never a silent wait (unref'd: does not itself keep the process alive).
const watchdog = setTimeout(() => {
  console.error('[parent] demo did not finish within 30 s: giving up');
  process.exit(1);
}, 30000);
watchdog.unref();

const child = fork(path.join(__dirname, 'child.js'));
const childExit = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));

// One permanent listener feeding an inbox, so replies are read in order with `await next()`.
const inbox = [];
const waiting = [];
child.port.on('message', (message) => {
  if (waiting.length) waiting.shift()(message);
  else inbox.push(message);
});
function next(kind) {
  const message = inbox.length ? Promise.resolve(inbox.shift()) : new Promise((resolve) => waiting.push(resolve));
  return message.then((value) => {
    if (!value || value.kind !== kind) throw new Error(`expected '${kind}' from the child, got ${JSON.stringify(value)}`);
    return value;
  });
}

function benchMessage(i) {
  return { id: i, op: 'add', args: [1, 2, 3], tag: 'bench' };
}

// Posts ids [from, to) in chunks, yielding to the event loop between chunks.
function pump(post, from, to) {
  return new Promise((resolve) => {
    let i = from;
    (function chunk() {
      const end = Math.min(i + CHUNK, to);
      while (i < end) post(benchMessage(i++));
      if (i < to) setImmediate(chunk);
      else resolve();
    })();
  });
}

async function crossportThroughput() {
  child.port.postMessage({ kind: 'bench-start', count: BENCH_WARMUP + BENCH_COUNT });
  await next('bench-ready');
  const post = (message) => child.port.postMessage(message);
  await pump(post, 0, BENCH_WARMUP);
  const t0 = process.hrtime.bigint();
  await pump(post, BENCH_WARMUP, BENCH_WARMUP + BENCH_COUNT);
  const done = await next('bench-done');
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  check(done.received === BENCH_WARMUP + BENCH_COUNT && done.bad === 0, `crossport child got ${done.received} messages, ${done.bad} wrong`);
  return BENCH_COUNT / seconds;
}

// The same through a worker_threads MessageChannel whose port2 is handed to a Worker.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { port, count } = workerData;
let received = 0, bad = 0;
port.on('message', (message) => {
  if (message.id !== received || message.op !== 'add' || message.args[2] !== 3) bad++;
  if (++received === count) { port.postMessage({ kind: 'bench-done', received, bad }); }
});
port.postMessage({ kind: 'bench-ready' });
`;

async function workerThreadsThroughput() {
  const { port1, port2 } = new workerThreads.MessageChannel();
  const worker = new workerThreads.Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { port: port2, count: BENCH_WARMUP + BENCH_COUNT },
    transferList: [port2],
  });
  const workerExit = new Promise((resolve) => worker.on('exit', resolve));
  worker.on('error', (error) => {
    failures++;
    console.log('[parent] worker error:', error);
  });
  const replies = [];
  const replyWaiters = [];
  port1.on('message', (message) => (replyWaiters.length ? replyWaiters.shift()(message) : replies.push(message)));
  const reply = () => (replies.length ? Promise.resolve(replies.shift()) : new Promise((resolve) => replyWaiters.push(resolve)));

  await reply(); // bench-ready
  const post = (message) => port1.postMessage(message);
  await pump(post, 0, BENCH_WARMUP);
  const t0 = process.hrtime.bigint();
  await pump(post, BENCH_WARMUP, BENCH_WARMUP + BENCH_COUNT);
  const done = await reply();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  check(done.received === BENCH_WARMUP + BENCH_COUNT && done.bad === 0, `worker got ${done.received} messages, ${done.bad} wrong`);
  port1.close(); // the worker's port closes too, and the worker exits on its own
  const code = await workerExit;
  check(code === 0, `worker exit code ${code}`);
  return BENCH_COUNT / seconds;
}

const format = (rate) => Math.round(rate).toLocaleString('en-US').padStart(9);

async function main() {
  const { pid } = await next('ready');
  log(`forked demo/child.js (pid ${pid}) with crossport fork(); child.port is a crossport MessagePort`);

  // 1. Structured clone: Map and Date.
  log('--- 1. structured clone');
  const map = new Map([
    ['answer', 42],
    ['nested', { list: [1, 2, 3], when: new Date(0) }],
  ]);
  const date = new Date('2024-02-29T12:34:56.789Z');
  log('sending a Map and a Date:', map, date.toISOString());
  child.port.postMessage({ kind: 'clone', map, date });
  const cloneReply = await next('clone-reply');
  log(`got back a Map (instanceof Map: ${cloneReply.map instanceof Map}):`, cloneReply.map);
  log(`got back a Date (instanceof Date: ${cloneReply.date instanceof Date}): ${cloneReply.date.toISOString()}`);
  check(cloneReply.map instanceof Map && cloneReply.map.get('pid') === pid, 'Map reply');
  check(cloneReply.date instanceof Date && cloneReply.date.getTime() === date.getTime() + 86400000, 'Date reply');
  check(cloneReply.same && cloneReply.same.when instanceof Date && cloneReply.same.list.join() === '1,2,3', 'nested value round trip');

  // 2. Transferring an ArrayBuffer.
  log('--- 2. transferring an ArrayBuffer');
  const buffer = new TextEncoder().encode('hello from the parent process').buffer;
  log(`before postMessage: buffer.byteLength = ${buffer.byteLength}`);
  child.port.postMessage({ kind: 'buffer', buffer }, [buffer]);
  log(`after postMessage({ buffer }, [buffer]): buffer.byteLength = ${buffer.byteLength} (detached, it moved)`);
  check(buffer.byteLength === 0, 'sender buffer detached');
  const bufferReply = await next('buffer-reply');
  log(`got an ArrayBuffer back (${bufferReply.buffer.byteLength} bytes): "${new TextDecoder().decode(bufferReply.buffer)}"`);
  check(bufferReply.buffer instanceof ArrayBuffer && bufferReply.buffer.byteLength > 0, 'buffer reply');
  const { byteLengthAfter } = await next('buffer-sent');
  check(byteLengthAfter === 0, `child's transferred buffer detached (byteLength ${byteLengthAfter})`);

  // 3. Sending a MessagePort to the other process.
  log('--- 3. sending one end of a new MessageChannel to the child');
  const { port1, port2 } = new MessageChannel();
  const portClosed = new Promise((resolve) => port1.once('close', resolve));
  const overNewPort = new Promise((resolve) => port1.once('message', resolve));
  child.port.postMessage({ kind: 'port', port: port2 }, [port2]);
  const greeting = await overNewPort;
  log('port1 received:', greeting);
  check(greeting.from === pid, 'reply over the transferred port');
  port1.postMessage('thanks! you may close this port now');
  await portClosed;
  log(`port1 got 'close' after the child closed its end (port1 instanceof MessagePort: ${port1 instanceof MessagePort})`);

  // 4. Throughput, one way, small messages.
  log(`--- 4. throughput: ${BENCH_COUNT.toLocaleString('en-US')} messages { id, op: 'add', args: [1, 2, 3], tag: 'bench' }, one way`);
  const crossportRate = await crossportThroughput();
  log(`crossport       parent process -> child process: ${format(crossportRate)} msgs/s`);
  const workerRate = await workerThreadsThroughput();
  log(`worker_threads  main thread -> Worker:           ${format(workerRate)} msgs/s`);
  log(`ratio crossport / worker_threads: ${(crossportRate / workerRate).toFixed(2)}x   (rough: one run; see npm run bench)`);

  // 5. Shut down: closing child.port closes parentPort in the child, which then has nothing left
  // to keep it alive.
  log('--- 5. closing child.port');
  child.port.close();
  const { code, signal } = await childExit;
  log(`child exited with code ${code}${signal ? `, signal ${signal}` : ''}`);
  check(code === 0 && signal === null, 'child exit code 0');

  if (failures) {
    log(`${failures} check(s) failed`);
    process.exitCode = 1;
  } else {
    log('all done; nothing is left open, so this process exits now');
  }
}

main().catch((error) => {
  console.log('[parent] demo failed:', error);
  process.exitCode = 1;
  child.kill();
});
