import { parentPort } from 'crossport-ipc';

parentPort.once('message', ({ buffer, map }) => {
  parentPort.postMessage({ pid: process.pid, sum: new Uint8Array(buffer).reduce((a, b) => a + b, 0), map });
});
