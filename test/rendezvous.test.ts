// listen()/connect(): unrelated processes meet at a path; and ports handed to worker threads.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { connect, exportPort, importPort, listen, MessageChannel, type Peer } from '../lib';
import { fixture, report, runFixture } from './helpers';

const socketPath = (): string => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'crossport-meet-')), 'meet.sock');

/** Starts a fixture that keeps running, resolving once it printed a line with `kind`. */
function start(name: string, args: string[], kind: string): Promise<{ child: ChildProcess; lines: any[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture(name), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: any[] = [];
    let buffered = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buffered.slice(0, newline)));
        buffered = buffered.slice(newline + 1);
        if (lines[lines.length - 1].kind === kind) resolve({ child, lines });
      }
    });
    child.on('error', reject);
    child.on('exit', () => reject(new Error(`${name} exited before '${kind}'`)));
  });
}

const waitFor = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 25));
};

describe('listen and connect', () => {
  test('two unrelated processes connect to a third; each gets its own channel and the server sees their credentials', async () => {
    const file = socketPath();
    const { child: server, lines } = await start('meet-server.js', [file], 'listening');
    try {
      const [first, second] = await Promise.all([runFixture('meet-client.js', [file]), runFixture('meet-client.js', [file])]);
      for (const run of [first, second]) {
        const answers = report(run, 'answers');
        expect(answers).toEqual({ kind: 'answers', count: 100, inOrder: true, servers: [server.pid], pid: answers.pid });
      }
      await waitFor(() => lines.filter((line) => line.kind === 'portClosed').length === 2);
      const peers = lines.filter((line) => line.kind === 'connection').map((line) => line.peer);
      const clientPids = [report(first, 'answers').pid, report(second, 'answers').pid];
      expect(peers.map((peer: Peer) => peer.pid).sort()).toEqual(clientPids.sort());
      for (const peer of peers) expect(peer).toMatchObject({ uid: process.getuid!(), gid: process.getgid!() });
      // Each client's close reached the server as the close of that client's port.
      expect(lines.filter((line) => line.kind === 'portClosed').map((line) => line.pid).sort()).toEqual(clientPids.sort());
    } finally {
      server.kill('SIGKILL');
    }
  });

  test('the socket file is 0600 by default, and the mode option widens it', async () => {
    const file = socketPath();
    const strict = listen(file);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    strict.close();
    expect(fs.existsSync(file)).toBe(false);
    const shared = listen(file, { mode: 0o660 });
    expect(fs.statSync(file).mode & 0o777).toBe(0o660);
    shared.close();
  });

  test('a peer whose uid is not allowed is refused before it gets a port', async () => {
    const file = socketPath();
    const server = listen(file, { uids: [process.getuid!() + 1] });
    const connections: unknown[] = [];
    const refused: Peer[] = [];
    server.on('connection', (port) => connections.push(port));
    server.on('refused', (peer) => refused.push(peer));
    await expect(connect(file)).rejects.toMatchObject({ code: 'EACCES', syscall: 'connect', address: file });
    await waitFor(() => refused.length === 1);
    expect(refused).toEqual([{ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() }]);
    expect(connections).toEqual([]);
    server.close();
  });

  // Only root can start a process as another user; CI runs as root.
  const asRoot = process.getuid!() === 0 ? test : test.skip;
  asRoot('a process of another user is refused by default (an abstract name has no file mode to stop it)', async () => {
    const name = `crossport-other-user-${process.pid}`;
    const server = listen(`\0${name}`);
    const refused: Peer[] = [];
    server.on('refused', (peer) => refused.push(peer));
    server.on('connection', (port) => port.close());
    const client = spawn(process.execPath, [fixture('meet-client.js'), `@${name}`], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    client.stdout!.setEncoding('utf8').on('data', (chunk) => (output += chunk));
    await new Promise((resolve) => client.once('exit', resolve));
    expect(JSON.parse(output)).toEqual({ kind: 'error', code: 'EACCES' });
    expect(refused).toEqual([{ pid: client.pid, uid: 65534, gid: 65534 }]);
    server.close();
  });

  test('a stale socket file from a killed listener is replaced; a live listener is never stolen', async () => {
    const file = socketPath();
    const { child } = await start('listen-and-die.js', [file], 'listening');
    // Live: a second listener fails and the first one keeps working.
    expect(() => listen(file)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    const port = await connect(file);
    port.close();
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(fs.statSync(file).isSocket()).toBe(true);
    await expect(connect(file)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    const server = listen(file);
    const connected = new Promise<Peer>((resolve) => server.once('connection', (p, peer) => { p.close(); resolve(peer); }));
    (await connect(file)).close();
    expect((await connected).pid).toBe(process.pid);
    server.close();
  });

  test('a file that is not a socket is never replaced', () => {
    const file = socketPath();
    fs.writeFileSync(file, 'keep me');
    expect(() => listen(file)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
  });

  test('connect to nothing rejects with the errno code', async () => {
    await expect(connect(path.join(os.tmpdir(), 'crossport-no-such-dir', 'x.sock'))).rejects.toMatchObject({ code: 'ENOENT', syscall: 'connect' });
    await expect(connect('\0crossport-nobody-listens-here')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(() => connect(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });

  test('Linux abstract names work', async () => {
    const name = `\0crossport-test-${process.pid}`;
    const server = listen(name);
    server.on('connection', (port) => port.on('message', (m) => port.postMessage(m * 2)));
    const port = await connect(name);
    const answer = new Promise((resolve) => port.once('message', resolve));
    port.postMessage(21);
    expect(await answer).toBe(42);
    port.close();
    server.close();
  });
});

describe('a port handed to a worker thread', () => {
  test('exportPort/importPort carry a crossport port through worker_threads; a token works once', async () => {
    const { port1, port2 } = new MessageChannel();
    const token = exportPort(port2);
    expect(() => port2.postMessage('neutered')).not.toThrow();
    const worker = new Worker(fixture('worker-import.js'), { workerData: { token } });
    const answer = new Promise((resolve) => port1.once('message', resolve));
    port1.postMessage({ hello: 'worker' });
    expect(await answer).toEqual({ echo: { hello: 'worker' }, inWorker: true });
    expect(() => importPort(token)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: 'The token was already imported' }));
    expect(() => exportPort(port2)).toThrow(expect.objectContaining({ name: 'DataCloneError' }));
    const closed = new Promise((resolve) => port1.once('close', resolve));
    port1.postMessage('bye');
    await closed;
    await worker.terminate();
  });

  test('terminating a worker at each stage of taking over a port (around importPort, right after, mid-dispatch) does not crash the process; once the worker had the port, its peer gets close', async () => {
    const run = await runFixture('worker-terminate.js');
    expect({ code: run.code, signal: run.signal }).toEqual({ code: 0, signal: null });
    // landed[asked][reached]: how many trials, terminated the moment the worker reached stage
    // `asked`, had reached `reached` when termination took effect (1: around importPort).
    const { landed, closes } = report(run, 'stages');
    for (const asked of ['1', '2', '3', '4']) {
      // The termination landed at the stage asked in some trials: the race is really run.
      expect(landed[asked][asked] ?? 0).toBeGreaterThan(0);
      const hadPort = Object.entries(landed[asked] as Record<string, number>)
        .filter(([reached]) => Number(reached) >= 2)
        .reduce((sum, [, count]) => sum + count, 0);
      expect(closes[asked]).toBe(hadPort);
    }
  });
});
