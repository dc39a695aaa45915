'use strict';
// Act 2 of the demo: receives a listening net.Server from its parent, and serves connections on
// it until told to stop.
const { parentPort } = require('crossport-ipc');

parentPort.on('message', (message) => {
  if (message === 'stop') return parentPort.close();
  const { server } = message;
  let served = 0;
  server.on('connection', (socket) => {
    served++;
    socket.end(`hello from pid ${process.pid}, which did not exist when the server was made (connection ${served})\n`);
  });
  parentPort.on('close', () => server.close());
  parentPort.postMessage({ listening: server.listening, address: server.address() });
});
