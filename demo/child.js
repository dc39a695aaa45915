'use strict';
// The child side of demo/demo.js, started with crossport's fork(). Talks to the parent through
// `parentPort`, a crossport MessagePort with the worker_threads API.

const { parentPort } = require('crossport-ipc');

const log = (...args) => console.log('[child ]', ...args);

if (parentPort === null) {
  console.error('demo/child.js must be started by crossport fork() (see demo/demo.js)');
  process.exit(1);
}

let benchExpected = 0;
let benchReceived = 0;
let benchBad = 0;

parentPort.on('message', (message) => {
  // Throughput messages first: the hot path.
  if (message && message.tag === 'bench') {
    if (message.id !== benchReceived || message.op !== 'add' || message.args[2] !== 3) benchBad++;
    if (++benchReceived === benchExpected) {
      parentPort.postMessage({ kind: 'bench-done', received: benchReceived, bad: benchBad });
    }
    return;
  }

  switch (message.kind) {
    case 'clone': {
      const { map, date } = message;
      log(`got a Map (instanceof Map: ${map instanceof Map}):`, map);
      log(`got a Date (instanceof Date: ${date instanceof Date}): ${date.toISOString()}`);
      parentPort.postMessage({
        kind: 'clone-reply',
        map: new Map([
          ['pid', process.pid],
          ['keys seen', [...map.keys()]],
        ]),
        date: new Date(date.getTime() + 24 * 3600 * 1000),
        same: map.get('nested'),
      });
      break;
    }

    case 'buffer': {
      const { buffer } = message;
      const text = new TextDecoder().decode(buffer);
      log(`got an ArrayBuffer of ${buffer.byteLength} bytes: "${text}"`);
      // Send one back, transferred as well.
      const reply = new TextEncoder().encode(`child ${process.pid} says hi`).buffer;
      const before = reply.byteLength;
      parentPort.postMessage({ kind: 'buffer-reply', buffer: reply }, [reply]);
      log(`transferred an ArrayBuffer back: byteLength here ${before} -> ${reply.byteLength}`);
      parentPort.postMessage({ kind: 'buffer-sent', byteLengthAfter: reply.byteLength });
      break;
    }

    case 'port': {
      const { port } = message;
      log(`got a MessagePort inside a message (is a crossport MessagePort: ${port instanceof Object.getPrototypeOf(parentPort).constructor})`);
      port.on('message', (note) => {
        log('the new port says:', note);
        log('closing the new port');
        port.close();
      });
      port.postMessage({ greeting: 'hello over the port you sent me', from: process.pid });
      break;
    }

    case 'bench-start':
      benchExpected = message.count;
      benchReceived = 0;
      benchBad = 0;
      parentPort.postMessage({ kind: 'bench-ready' });
      break;

    default:
      log('unexpected message:', message);
  }
});

parentPort.on('close', () => log('parentPort closed, nothing keeps me alive: exiting'));
process.on('exit', (code) => log(`exit code ${code}`));

parentPort.postMessage({ kind: 'ready', pid: process.pid });
