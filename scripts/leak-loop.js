#!/usr/bin/env node
// Opens and closes channels many times and checks that nothing accumulates: open fds
// (/proc/self/fd), memory mappings (/proc/self/maps) and RSS, measured after a warm-up and at
// the end, each time after the closes completed and a full GC (the script re-runs itself with
// --expose-gc). Each round makes channels three ways: closed at once; a message posted and
// read synchronously, then closed; or just dropped, for the garbage collector to finalize. Both ends are closed by this process.
//
// Usage: node scripts/leak-loop.js [channels=100000] [--json]
// Exit status 0 when fds and segment mappings are back to their warm-up counts, the total
// mapping count grew by less than 200 and RSS by less than 64 MiB.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');

if (typeof global.gc !== 'function') {
  const result = spawnSync(process.execPath, ['--expose-gc', __filename, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(result.status ?? 1);
}

const { MessageChannel, receiveMessageOnPort } = require('crossport-ipc');

const total = Number(process.argv[2] ?? 100000);
const json = process.argv.includes('--json');
// Under AddressSanitizer (scripts/test-asan.sh sets CROSSPORT_SANITIZED) freed memory sits in
// its quarantine, so RSS says nothing about leaks there: only fds and mappings are checked.
const kRssBound = process.env.CROSSPORT_SANITIZED ? Infinity : 64 * 1024 * 1024;
const kMapsBound = 200;
const kBatch = 500;

const fds = () => fs.readdirSync('/proc/self/fd').length;
const mapLines = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter(Boolean);
const maps = () => mapLines().length;
// Mappings of our segments and out-of-band copies (memfds named "crossport").
const segmentMaps = () => mapLines().filter((line) => line.includes('memfd:crossport')).length;
const rss = () => process.memoryUsage().rss;
const turn = () => new Promise((resolve) => setImmediate(resolve));

async function settle() {
  // Closes finish on later loop turns; dropped ports are finalized by GC, then close.
  for (let i = 0; i < 5; i++) {
    await turn();
    global.gc();
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
  global.gc();
  await turn();
}

async function batch(start, count) {
  for (let n = start; n < start + count; n++) {
    const { port1, port2 } = new MessageChannel();
    switch (n % 3) {
      case 0:
        port1.close();
        port2.close();
        break;
      case 1: {
        port1.postMessage({ n, text: 'leak check' });
        const got = receiveMessageOnPort(port2);
        if (got === undefined || got.message.n !== n) throw new Error(`message ${n} lost`);
        port2.close();
        port1.close();
        break;
      }
      case 2:
        break; // dropped: the garbage collector's finalization releases it
    }
  }
  // Each end closed itself, so nothing waits for a 'close' event (see the report on lost
  // 'close' events of unstarted ports); the links go on the next loop turns.
  await turn();
}

async function main() {
  const keepAlive = setInterval(() => {}, 1000);
  const warmup = Math.min(Math.max(Math.floor(total / 10), kBatch), total);
  let done = 0;
  while (done < warmup) {
    await batch(done, kBatch);
    done += kBatch;
  }
  await settle();
  const before = { fds: fds(), maps: maps(), segmentMaps: segmentMaps(), rss: rss() };
  const started = Date.now();
  while (done < total) {
    const count = Math.min(kBatch, total - done);
    await batch(done, count);
    done += count;
    if (done % 5000 === 0) global.gc();
  }
  await settle();
  const after = { fds: fds(), maps: maps(), segmentMaps: segmentMaps(), rss: rss() };
  // Segment mappings must be back where they were; the total may move a little as V8 and the
  // allocator map and unmap heap pages, within a bound.
  const ok =
    after.fds === before.fds &&
    after.segmentMaps === before.segmentMaps &&
    after.maps - before.maps < kMapsBound &&
    after.rss - before.rss < kRssBound;
  const mib = (bytes) => Math.round((bytes / 1048576) * 10) / 10;
  const summary = {
    ok,
    channels: total,
    warmup,
    seconds: (Date.now() - started) / 1000,
    afterWarmup: { fds: before.fds, maps: before.maps, segmentMaps: before.segmentMaps, rssMiB: mib(before.rss) },
    atEnd: { fds: after.fds, maps: after.maps, segmentMaps: after.segmentMaps, rssMiB: mib(after.rss) },
    rssGrowthMiB: mib(after.rss - before.rss),
    rssBounded: kRssBound !== Infinity,
  };
  console.log(json ? JSON.stringify(summary) : JSON.stringify(summary, null, 2));
  process.exitCode = ok ? 0 : 1;
  clearInterval(keepAlive);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
