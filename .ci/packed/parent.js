// A user's program in a fresh project that installed the packed tarball: forks child.mjs (an ES
// module) and exchanges a message with it, an ArrayBuffer transferred on the way out.
'use strict';
const { fork } = require('crossport-ipc');

const child = fork(`${__dirname}/child.mjs`);
const buffer = new Uint8Array([1, 2, 3]).buffer;
child.port.once('message', (reply) => {
  const ok = reply.pid !== process.pid && reply.sum === 6 && reply.map.get('node') === process.version;
  console.log(JSON.stringify({ ok, node: process.version, childPid: reply.pid, detached: buffer.byteLength === 0 }));
  child.port.close();
  process.exitCode = ok && buffer.byteLength === 0 ? 0 : 1;
});
child.port.postMessage({ buffer, map: new Map([['node', process.version]]) }, [buffer]);
