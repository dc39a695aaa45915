// Starts a nats-server for a test or a benchmark: on 127.0.0.1 only, at a free port, stopped by
// the caller (and killed if the caller's process exits). Plain JS: fixtures and bench/ use it too.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

/** The nats-server binary (PATH, then Debian's /usr/sbin), or null. */
function natsServerBinary() {
  const dirs = [...(process.env.PATH || '').split(path.delimiter), '/usr/sbin', '/usr/local/bin', '/usr/bin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, 'nats-server');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections at 127.0.0.1:port (bounded: 200 tries). */
async function waitForPort(port) {
  for (let attempt = 0; attempt < 200; attempt++) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nats-server did not accept connections at 127.0.0.1:${port}`);
}

const live = new Set();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * A running nats-server: { port, url(subject), stop(), restart() }. `args` are extra
 * command-line arguments (e.g. ['-c', configFile]).
 */
async function startNatsServer(args = []) {
  const binary = natsServerBinary();
  if (binary === null) throw new Error('nats-server is not installed (apt-get install nats-server)');
  const port = await freePort();
  let child;
  const start = async () => {
    // Not the sanitizer runtime that test:asan preloads into everything it starts.
    const { LD_PRELOAD, ...env } = process.env;
    child = spawn(binary, ['-a', '127.0.0.1', '-p', String(port), ...args], { stdio: 'ignore', env });
    live.add(child);
    child.once('exit', () => live.delete(child));
    await waitForPort(port);
  };
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
  await start();
  return {
    port,
    get pid() {
      return child.pid;
    },
    url: (subject) => `nats://127.0.0.1:${port}/${subject}`,
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}

module.exports = { freePort, natsServerBinary, startNatsServer };
