#!/usr/bin/env node
// Soak: 10 million messages and 10,000 port transfers between a parent and a forked child.
// The parent streams numbered messages (flow-controlled by the child's acks); every 1,000th
// message also transfers a new port, on which the child answers once and closes it. Both
// processes report their memory and open fds after a warm-up (the first million messages) and
// at the end, each time after a full garbage collection: RSS, and the live memory (V8 heap in
// use plus memory outside it that V8 accounts). Fails (exit 1) on a lost, duplicated or corrupt
// message, a missing answer, more fds at the end than after warm-up, or live memory grown by
// more than 5% (or 1 MiB). RSS is reported, not checked: V8 keeps heap pages it grew into (its
// heapTotal) after a collection empties them, which shows as RSS that no object holds.
//
// Usage: node scripts/soak.js [messages=10000000] [transfers=10000]
'use strict';
const fs = require('node:fs');
const v8 = require('node:v8');
const vm = require('node:vm');
const { fork, parentPort, MessageChannel } = require('crossport-ipc');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const fds = () => fs.readdirSync('/proc/self/fd').length;
const mib = (bytes) => Math.round((bytes / 1048576) * 10) / 10;
// RSS and live memory (MiB) after a full collection.
function memory() {
  gc();
  const usage = process.memoryUsage();
  return { rssMiB: mib(usage.rss), liveMiB: mib(usage.heapUsed + usage.external) };
}
const kAckEvery = 50000;

if (parentPort) {
  // Child: check the stream, ack it, answer on every port that arrives.
  let expected = 0;
  let bad = 0;
  parentPort.on('message', (message) => {
    if (message.done) {
      parentPort.postMessage({ final: true, received: expected, bad, ...memory(), fds: fds() });
      return;
    }
    if (message.i !== expected || message.tag !== `m${message.i % 1000}`) bad++;
    expected = message.i + 1;
    if (message.port) {
      message.port.postMessage({ answer: message.i });
      message.port.close();
    }
    if (expected % kAckEvery === 0) parentPort.postMessage({ ack: expected, bad, ...memory(), fds: fds() });
  });
  return;
}

const total = Number(process.argv[2] ?? 10_000_000);
const transfers = Number(process.argv[3] ?? 10_000);
const transferEvery = Math.max(1, Math.floor(total / transfers));
const warmupAt = Math.min(1_000_000, Math.floor(total / 10));
const child = fork(__filename);
const port = child.port;
let sent = 0;
let acked = 0;
let transfersSent = 0;
let answers = 0;
let wrongAnswers = 0;
let warm = null;
const started = Date.now();
const open = new Set(); // ports waiting for their answer (held so none is collected early)

function pump() {
  while (sent < total && sent - acked < 8 * kAckEvery) {
    const message = { i: sent, tag: `m${sent % 1000}` };
    if (sent % transferEvery === 0 && transfersSent < transfers) {
      const { port1, port2 } = new MessageChannel();
      const id = sent;
      open.add(port1);
      port1.once('message', (answer) => {
        if (answer.answer !== id) wrongAnswers++;
        answers++;
        open.delete(port1);
        port1.close();
      });
      message.port = port2;
      port.postMessage(message, [port2]);
      transfersSent++;
    } else {
      port.postMessage(message);
    }
    sent++;
    if (sent % 10000 === 0) break; // let acks and answers in
  }
  if (sent < total) setImmediate(pump);
  else port.postMessage({ done: true });
}

port.on('message', (message) => {
  if (message.ack !== undefined) {
    acked = message.ack;
    if (warm === null && acked >= warmupAt) {
      warm = { messages: acked, parent: { ...memory(), fds: fds() }, child: pick(message) };
      console.log(`after warm-up (${acked} messages): ${describe(warm)}`);
    }
    if (message.bad > 0) fail(`child saw ${message.bad} bad messages`);
    return;
  }
  if (message.final) {
    // Let the last answers and closes settle before measuring.
    const finish = () => {
      if (answers < transfersSent) return setTimeout(finish, 50);
      setTimeout(() => report(message), 200);
    };
    finish();
  }
});

const pick = ({ rssMiB, liveMiB, fds }) => ({ rssMiB, liveMiB, fds });
const describe = ({ parent, child }) =>
  [['parent', parent], ['child', child]]
    .map(([side, m]) => `${side} RSS ${m.rssMiB} MiB, live ${m.liveMiB} MiB, ${m.fds} fds`)
    .join('; ');

function report(final) {
  const seconds = (Date.now() - started) / 1000;
  const end = { parent: { ...memory(), fds: fds() }, child: pick(final) };
  console.log(`at the end (${final.received} messages, ${answers}/${transfersSent} transfers answered, ${seconds.toFixed(1)} s): ${describe(end)}`);
  console.log(JSON.stringify({ kind: 'soak', messages: final.received, transfers: transfersSent, answers, wrongAnswers, bad: final.bad, seconds, warm, end }));
  const problems = [];
  if (final.received !== total) problems.push(`child received ${final.received} of ${total}`);
  if (final.bad !== 0) problems.push(`${final.bad} bad messages`);
  if (answers !== transfersSent || wrongAnswers !== 0) problems.push(`${answers} answers (${wrongAnswers} wrong) for ${transfersSent} transfers`);
  // At warm-up some transferred ports are still in flight (4 fds each in the parent); at the
  // end none is, so a leak shows as more fds than at warm-up.
  if (warm && end.parent.fds > warm.parent.fds) problems.push(`parent fds ${warm.parent.fds} -> ${end.parent.fds}`);
  if (warm && end.child.fds > warm.child.fds) problems.push(`child fds ${warm.child.fds} -> ${end.child.fds}`);
  for (const side of ['parent', 'child']) {
    const [before, after] = [warm?.[side].liveMiB, end[side].liveMiB];
    if (before !== undefined && after > Math.max(before * 1.05, before + 1)) {
      problems.push(`${side} live memory ${before} -> ${after} MiB`);
    }
  }
  port.close();
  if (problems.length > 0) fail(problems.join('; '));
  else console.log('soak passed');
}

function fail(why) {
  console.error(`SOAK FAILED: ${why}`);
  process.exitCode = 1;
  child.kill();
  process.exit(1);
}

port.on('close', () => {});
pump();
