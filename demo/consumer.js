'use strict';
// Act 3 of the demo: a slow consumer. It checks the order of what it gets and, every 1,000
// messages, stops for 10 ms as if it had work to do.
const { parentPort } = require('crossport-ipc');

let received = 0;
let inOrder = true;
parentPort.on('message', (message) => {
  if (message === 'count') {
    parentPort.postMessage({ received, inOrder });
    return;
  }
  inOrder &&= message.i === received;
  received++;
  if (received % 1000 === 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
});
