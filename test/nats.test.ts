// Remote ports over NATS, against a real nats-server that the tests start on 127.0.0.1 (Debian's
// nats-server package; CI installs it: a missing server fails there, and is skipped elsewhere).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { report, runFixture } from './helpers';
import { startFixture } from './live-fixture';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { freePort, natsServerBinary, startNatsServer } = require('./nats-server');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const values: [string, () => unknown][] = require('./fixtures/values');

interface NatsServer {
  readonly pid: number;
  url(subject: string): string;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

const binary = natsServerBinary();
if (binary === null && process.env.CI) {
  throw new Error('nats-server is not installed; CI installs it (.ci/install-nats-server.sh)');
}
if (binary === null) {
  // eslint-disable-next-line no-console
  console.warn('test/nats.test.ts skipped: nats-server is not installed (apt-get install nats-server)');
}
const describeNats = binary === null ? describe.skip : describe;

describe('without the NATS client installed', () => {
  test('local ports load nothing of NATS; a nats:// address says what to install', async () => {
    const result = report(await runFixture('nats-missing-client.js', ['hidden']), 'result');
    expect(result.local).toEqual({ local: true });
    expect(result.loadedByLocalUse).not.toContainEqual(expect.stringMatching(/@nats-io|[/\\]dist[/\\]nats[/\\]/));
    expect(result.error.code).toBe('ERR_CROSSPORT_NATS_CLIENT_MISSING');
    expect(result.error.message).toContain('npm install @nats-io/transport-node');
  });
});

describeNats('remote ports over NATS', () => {
  let server: NatsServer;
  let subjects = 0;
  const address = (name: string) => server.url(`crossport.test${++subjects}.${name}`);

  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  async function compare(scenario: string) {
    const result = report(await runFixture('diff-parent.js', [scenario, address(scenario)]), 'result');
    return { worker: result.worker, crossport: result.crossport, nats: result.nats };
  }

  describe('observes what worker_threads and a local crossport port observe', () => {
    test('structured clone battery', async () => {
      const { worker, crossport, nats } = await compare('clone');
      expect(worker.received).toHaveLength(values.length);
      for (let i = 0; i < values.length; i++) {
        expect({ name: values[i][0], value: nats.received[i]?.value }).toEqual(worker.received[i]);
      }
      expect(nats.received).toEqual(crossport.received);
    });

    test('100,000 messages arrive once each, in order', async () => {
      const { worker, nats } = await compare('order');
      expect(worker.received).toEqual({ count: 100000, inOrder: true });
      expect(nats.received).toEqual(worker.received);
    });

    test('a 64 MiB message, chunked under max_payload', async () => {
      const { worker, nats } = await compare('big');
      expect(worker.received.objects[0].view.length).toBe(64 * 1024 * 1024);
      expect(nats.received).toEqual(worker.received);
    });

    test('DataCloneError and argument errors: same errors, nothing sent, nothing detached', async () => {
      const { worker, nats } = await compare('errors');
      expect(nats.sent.thrown).toEqual(worker.sent.thrown);
      expect(nats.received).toEqual(worker.received);
    });

    test('close() behind a backlog: the peer receives all of it, in order, then close', async () => {
      const { worker, nats } = await compare('close');
      expect(worker.received.at(-1)).toBe('close');
      expect(nats.received).toEqual(worker.received);
    });
  });

  test('messages posted in one turn go out together, each NATS message under max_payload, and arrive once each in order', async () => {
    const config = path.join(os.tmpdir(), `crossport-nats-payload-${process.pid}.conf`);
    fs.writeFileSync(config, 'max_payload: 4096\n');
    const small: NatsServer = await startNatsServer(['-c', config]);
    try {
      const result = report(await runFixture('nats-packing.js', [small.url('packing'), '4096']), 'result');
      expect(result.inOrder).toBe(true);
      expect(result.largest).toBeLessThanOrEqual(4096);
      // 601 messages: a few packed NATS messages (hundreds of small messages fit in 4 KiB), the chunks.
      expect(result.natsMessages).toBeLessThan(result.sent / 10);
    } finally {
      await small.stop();
      fs.unlinkSync(config);
    }
  });

  test('maxMessageSize: a larger message, in one frame or chunked, is a messageerror; a subject prefix too long for a channel is refused', async () => {
    const result = report(await runFixture('nats-limits.js', [address('limits')]), 'result');
    expect(result.seen).toEqual([{ message: 3000 }, { error: 'DataCloneError' }, { error: 'DataCloneError' }, { message: 5 }]);
    expect(result.longPrefix).toEqual({ name: 'TypeError', code: 'ERR_INVALID_URL' });
  });

  test('what cannot cross hosts, and what is copied or bridged', async () => {
    const result = report(await runFixture('nats-transfers.js', [address('transfers'), 'parent', String(server.pid)]), 'result');
    // An OS handle: DataCloneError at the sender, nothing sent, the handle untouched.
    expect(result.thrown.handle).toEqual({ name: 'DataCloneError', message: 'An OS handle cannot be sent to another host', stillListening: true });
    // A transferred ArrayBuffer: detached here, its bytes there.
    expect(result.thrown.detached).toBe(true);
    // bufferedAmount: what the NATS client still holds, 0 again at 'drain'.
    expect(result.thrown.bufferedAmount.whilePosting).toBeGreaterThan(16 * 1024 * 1024);
    expect(result.thrown.bufferedAmount.afterDrain).toBe(0);
    expect(result.thrown.bufferedAmount.drained).toBe(true);
    // A SharedArrayBuffer: sent, and 'messageerror' with a DataCloneError at the receiver.
    expect(result.report).toEqual([
      { messageerror: 'DataCloneError', message: 'A SharedArrayBuffer cannot be shared between processes; it could not be cloned.' },
      { arrayBuffer: [1, 2, 3] },
      { uint8Array: 32 * 1024 * 1024 },
    ]);
    // A local port posted on a remote one works there (bridged), and its close reaches it.
    expect(result.back).toBe('ping back');
    expect(result.last.slice(3)).toEqual([{ overLocalPort: 'ping' }, 'local port closed']);
  });

  describe("'drain', as on a local port", () => {
    // What the producer's side observed, comparable between a remote and a local port.
    const observed = (run: Awaited<ReturnType<typeof runFixture>>) => {
      const done = report(run, 'done');
      return { received: done.received, inOrder: done.inOrder, waited: done.waits > 0, producerExit: report(run, 'producer exit').code };
    };

    test('a producer awaiting drain, with nothing else to keep its process alive, posts every item', async () => {
      const socket = path.join(os.tmpdir(), `crossport-drain-${process.pid}.sock`);
      const local = observed(await runFixture('nats-drain.js', ['consumer', socket]));
      const remote = observed(await runFixture('nats-drain.js', ['consumer', address('drain'), String(server.pid)]));
      expect(local).toEqual({ received: 5000, inOrder: true, waited: true, producerExit: 0 });
      expect(remote).toEqual(local);
    });

    test.each(['kill', 'frozen'])("the peer dies (SIGKILL) while the producer awaits 'drain' (%s): the wait ends", async (how) => {
      const own: NatsServer = await startNatsServer();
      try {
        const run = await runFixture('nats-drain.js', ['peer-dies', own.url('drain.dies'), how, String(own.pid)]);
        const settled = report(run, 'settled');
        expect(settled.events.slice(0, 2)).toEqual(['waiting', 'drained 0']);
        expect(settled.bufferedAmount).toBe(0);
        expect(run.code).toBe(0);
      } finally {
        await own.stop();
      }
    });
  });

  test('exportPort() hands a remote port to a worker thread, as a local port', async () => {
    const socket = path.join(os.tmpdir(), `crossport-export-${process.pid}.sock`);
    const local = report(await runFixture('nats-export.js', [socket]), 'result');
    const remote = report(await runFixture('nats-export.js', [address('export')]), 'result');
    // The thread's messages reach the peer as they were (a Date, a Map, a BigInt), its answers
    // reach the thread, the thread's close reaches the peer; the exported port object is
    // neutered ('close', a second export is a DataCloneError).
    const sent = [{ from: 'thread', when: '1970-01-01T00:00:00.000Z', lines: { map: [[1, 'pen']] } }, { bigint: '123' }];
    expect(local).toEqual({
      kind: 'result',
      thread: sent.map((echo) => ({ echo })),
      peer: [{ ...sent[0], isDate: true }, sent[1]],
      old: { closeEvents: 1, exportAgain: { name: 'DataCloneError', message: 'MessagePort is already detached' }, postAfterExport: 'undefined' },
    });
    expect(remote).toEqual(local);
  });

  test('a port passed process -> process -> local child, joined only through NATS', async () => {
    const url = address('chain');
    const a = startFixture('nats-chain.js', ['a', url]);
    await a.next('listening');
    const b = startFixture('nats-chain.js', ['b', url]);
    expect((await a.next('a-closed')).seen).toEqual(['hello from C', 'done']);
    expect((await b.next('c-closed')).seen).toEqual(['hello C']);
    expect(await a.exited).toEqual([0, null]);
    expect(await b.exited).toEqual([0, null]);
  });

  test('a port moved on to a third process talks to its peer directly: the middle one can die', async () => {
    const a = startFixture('nats-chain.js', ['a', address('move-a')]);
    await a.next('listening');
    const url = address('move-b');
    const b = startFixture('nats-chain.js', ['b-move', a.child.spawnargs[3], url]);
    await b.next('listening');
    const c = startFixture('nats-chain.js', ['c-remote', url]);
    await c.next('first-exchange');
    b.child.kill('SIGKILL');
    await c.next('b-gone');
    expect((await a.next('a-closed')).seen).toEqual(['hello from C', 'after B died', 'done']);
    expect((await c.next('c-closed')).seen).toEqual(['hello C', 'still here']);
    expect(await a.exited).toEqual([0, null]);
    expect(await c.exited).toEqual([0, null]);
  });

  test("a peer killed with SIGKILL: 'close' (within timeoutMs), and the process exits by itself", async () => {
    const url = address('kill');
    const listener = startFixture('nats-kill.js', ['listener', url, '1000']);
    await listener.next('listening');
    const victim = startFixture('nats-kill.js', ['victim', url, '1000']);
    await victim.next('connected');
    await listener.next('connected');
    victim.child.kill('SIGKILL');
    await listener.next('closed');
    expect(await listener.exited).toEqual([0, null]);
  });

  test("a peer whose process ends with its port open: 'close' at once, not after timeoutMs", async () => {
    const url = address('leave');
    const listener = startFixture('nats-kill.js', ['listener', url, '600000']);
    await listener.next('listening');
    const leaver = startFixture('nats-kill.js', ['leaver', url, '600000']);
    await listener.next('connected');
    expect(await leaver.exited).toEqual([0, null]);
    await listener.next('closed');
    expect(await listener.exited).toEqual([0, null]);
  });

  describe('a hostile publisher on the channel subjects', () => {
    async function hostile(scenario: string) {
      return report(await runFixture('nats-hostile.js', [address(`hostile-${scenario}`), scenario]), 'result');
    }

    test('junk, replays and far-future frames are ignored: the channel goes on', async () => {
      const result = await hostile('junk');
      expect(result.victimSeen).toEqual([{ message: 'legit-1' }, { message: 'legit-2' }]);
      expect(result.peerSeen).toEqual(['answer']);
    });

    test("bad messages under the next numbers: one 'messageerror' each; the peer's own frame then shows the forgery", async () => {
      const result = await hostile('numbered');
      expect(result.victimSeen).toEqual([
        { message: 'legit-1' },
        { error: 'DataCloneError', code: 25 },  // absurd chunk count and total (its chunks dropped with it)
        { error: 'Error' },  // not V8's bytes: V8's own error, as for a local port
        { error: 'DataCloneError', code: 25 },  // chunks cut by another message...
        { message: 'cuts the chunks' },  // ...which is well formed
        { error: 'DataCloneError', code: 25 },  // extras that are not JSON
        { error: 'DataCloneError', code: 25 },  // a port descriptor with bad subjects
        { error: 'DataCloneError', code: 25 },  // a section longer than the message
        { message: 'packed-1' },  // three packed frames in one NATS message: each taken as a frame
        { error: 'Error' },
        { message: 'packed-3' },
        { error: 'Error', code: 'ERR_CROSSPORT_NATS_FORGED' },
      ]);
      expect(result.memoryGrowth).toBeLessThan(64 * 1024 * 1024);
    });

    test("a stale close under a number the peer used: ERR_CROSSPORT_NATS_FORGED, 'close' on both ends", async () => {
      const result = await hostile('stale-close');
      expect(result.victimSeen).toEqual([{ message: 'legit-1' }, { error: 'Error', code: 'ERR_CROSSPORT_NATS_FORGED' }]);
    });

    test("a gap (a frame ahead of one that never comes) is not silent: ERR_CROSSPORT_NATS_MESSAGES_LOST, 'close'", async () => {
      const result = await hostile('gap');
      expect(result.victimSeen).toEqual([{ message: 'legit-1' }, { error: 'Error', code: 'ERR_CROSSPORT_NATS_MESSAGES_LOST' }]);
    });

    test('a close with the next number closes both ends (nothing tells it from the peer\'s)', async () => {
      const result = await hostile('close');
      expect(result.victimSeen).toEqual([{ message: 'legit-1' }]);
    });
  });

  test('the subject permissions of docs/nats.md are enough, and keep others out', async () => {
    const config = path.join(os.tmpdir(), `crossport-nats-${process.pid}.conf`);
    fs.writeFileSync(config, `authorization {
  users = [
    { user: orders, password: "orders-secret", permissions: {
        subscribe: { allow: ["orders.rpc", "orders.rpc.*"] },
        publish:   { allow: ["orders.rpc.*"] },
        allow_responses: true } }
    { user: client, password: "client-secret", permissions: {
        subscribe: { allow: ["orders.rpc.*", "_INBOX.>"] },
        publish:   { allow: ["orders.rpc", "orders.rpc.*"] } } }
    { user: outsider, password: "outsider-secret", permissions: {
        subscribe: { allow: ["_INBOX.>"] },
        publish:   { allow: ["elsewhere.>"] } } }
  ]
}
`);
    const secured: NatsServer = await startNatsServer(['-c', config]);
    try {
      const host = new URL(secured.url('x')).host;
      const result = report(await runFixture('nats-permissions.js', [host]), 'result');
      expect(result.received).toEqual(['hello']);
      expect(result.answer).toBe('re: hello');
      expect(result.outsider).toBe('EACCES');
    } finally {
      await secured.stop();
      fs.unlinkSync(config);
    }
  });

  test("nkeys pass through; 'connection' listeners get the peer's identity as its NATS server reports it", async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { nkeys } = require('@nats-io/transport-node');
    const [service, client] = [nkeys.createUser(), nkeys.createUser()];
    const seed = (pair: { getSeed(): Uint8Array }) => new TextDecoder().decode(pair.getSeed());
    const config = path.join(os.tmpdir(), `crossport-nats-nkeys-${process.pid}.conf`);
    fs.writeFileSync(config, `authorization {
  users = [
    { nkey: ${service.getPublicKey()} }
    { nkey: ${client.getPublicKey()} }
  ]
}
`);
    const monitor: number = await freePort();
    const own: NatsServer = await startNatsServer(['-c', config, '-m', String(monitor)]);
    try {
      const host = new URL(own.url('x')).host;
      const result = report(await runFixture('nats-identity.js', [host, String(monitor), seed(service), seed(client)]), 'result');
      expect(result.server.user).toBe(client.getPublicKey());
      expect(result.peer).toEqual({
        clientId: result.server.clientId,
        clientIp: '127.0.0.1',
        serverId: result.server.serverId,
        serverName: result.server.serverName,
        name: 'the-client',
      });
      expect(result.childCode).toBe(0);
      expect(result.anonymous).toBe('EACCES');
    } finally {
      await own.stop();
      fs.unlinkSync(config);
    }
  });

  test('listen() and connect() to one server with equal NATS options share one connection, closed when nothing uses it', async () => {
    const config = path.join(os.tmpdir(), `crossport-nats-users-${process.pid}.conf`);
    fs.writeFileSync(config, `authorization {
  users = [
    { user: a, password: "a-secret" }
    { user: b, password: "b-secret" }
  ]
}
`);
    const monitor: number = await freePort();
    const own: NatsServer = await startNatsServer(['-c', config, '-m', String(monitor)]);
    try {
      const run = await runFixture('nats-sharing.js', [new URL(own.url('x')).host, String(monitor)]);
      expect(report(run, 'result').steps).toEqual({
        before: 0,
        hundredChannels: 1,  // a listener and 100 connect() calls with different timeoutMs: one connection
        hundredWork: true,
        threeMore: 4,  // another user, another client name, shareConnection: false
        threeWork: true,
        users: ['a', 'a', 'a', 'b'],
        afterClosingThree: 1,
        hundredStillWork: true,
        allClosed: 0,  // the last port closed: its connection closes
        again: 1,
        againWorks: true,
      });
      expect(run.code).toBe(0);  // and nothing keeps the process alive
    } finally {
      await own.stop();
      fs.unlinkSync(config);
    }
  });

  test("connect() and listen() fail with Node's codes, and never show the password", async () => {
    const config = path.join(os.tmpdir(), `crossport-nats-user-${process.pid}.conf`);
    fs.writeFileSync(config, 'authorization { users = [ { user: a, password: "a-secret" } ] }\n');
    const own: NatsServer = await startNatsServer(['-c', config]);
    try {
      const result = report(await runFixture('nats-connect.js', ['errors', new URL(own.url('x')).host, String(await freePort())]), 'result');
      const error = (name: string, code: string) => ({ name, code, leaks: false });
      expect(result.cases).toEqual({
        noServer: error('Error', 'ECONNREFUSED'),  // nothing at that host:port
        badPassword: error('Error', 'EACCES'),
        badPasswordListen: error('Error', 'EACCES'),
        nobodyListens: error('Error', 'ECONNREFUSED'),  // the server, but no listener on the subject
        tlsAddressPlainServer: error('Error', 'EPROTO'),  // tls:// requires TLS
        noEcho: error('TypeError', 'ERR_INVALID_ARG_VALUE'),
        invalidAddress: error('TypeError', 'ERR_INVALID_URL'),
      });
      expect(result.serverAddress).toBe(own.url('x.y').replace('nats://', 'nats://a:***@'));
    } finally {
      await own.stop();
      fs.unlinkSync(config);
    }
  });

  describe('TLS', () => {
    const openssl = (() => {
      try {
        execFileSync('openssl', ['version'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    })();
    if (!openssl) {
      // eslint-disable-next-line no-console
      console.warn('TLS tests skipped: openssl is not installed (it makes their certificates)');
    }
    const testTls = openssl ? test : test.skip;
    let dir: string;

    /** A CA, a certificate for the server at 127.0.0.1 and one for a client, signed by it. */
    beforeAll(() => {
      if (!openssl) return;
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crossport-tls-'));
      const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
      run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=crossport test CA');
      // (The client checks a certificate reached at an IP address against the name 'localhost'.)
      fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
      for (const name of ['server', 'client']) {
        run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
        run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`,
          '-days', '2', ...(name === 'server' ? ['-extfile', 'server.ext'] : []));
      }
    });
    afterAll(() => {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    async function withServer(tlsBlock: string, use: (host: string) => Promise<void>) {
      const config = path.join(dir, 'server.conf');
      fs.writeFileSync(config, `tls {\n  cert_file: "${dir}/server.pem"\n  key_file: "${dir}/server.key"\n${tlsBlock}}\n`);
      const own: NatsServer = await startNatsServer(['-c', config]);
      try {
        await use(new URL(own.url('x')).host);
      } finally {
        await own.stop();
      }
    }

    testTls('a channel over tls:// with the CA; without it, Node\'s certificate error', async () => {
      await withServer('', async (host) => {
        const result = report(await runFixture('nats-connect.js', ['tls', host, path.join(dir, 'ca.pem')]), 'result');
        expect(result.roundTrip).toBe('ping back');
        expect(result.withoutCa).toEqual({ name: 'Error', code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', leaks: false });
      });
    });

    testTls('client certificates pass through (a server that verifies them)', async () => {
      await withServer(`  ca_file: "${dir}/ca.pem"\n  verify: true\n`, async (host) => {
        const result = report(await runFixture('nats-connect.js',
          ['tls', host, ...['ca.pem', 'client.pem', 'client.key'].map((file) => path.join(dir, file))]), 'result');
        expect(result.roundTrip).toBe('ping back');
        // The server ends the session when no certificate comes: the client gives up at its timeout.
        expect(result.withoutClientCert).toEqual({ name: 'Error', code: 'ETIMEDOUT', leaks: false });
      });
    });
  });

  describe('a NATS server restart', () => {
    let own: NatsServer;
    beforeEach(async () => {
      own = await startNatsServer();
    });
    afterEach(async () => {
      await own.stop();
    });

    test('both ends reconnect: the channel resumes, nothing lost, no close', async () => {
      const url = own.url('restart.resume');
      const settings = JSON.stringify({ timeoutMs: 20000, reconnect: true });
      const listener = startFixture('nats-restart.js', ['listener', url, settings]);
      await listener.next('listening');
      const client = startFixture('nats-restart.js', ['client', url, settings]);
      await client.next('ready');
      const echoes = () => client.reports.filter((r) => r.kind === 'echo').map((r) => r.message);
      const echoed = async (count: number) => {
        while (echoes().length < count && !client.reports.some((r) => r.kind === 'closed')) {
          await new Promise((resolve) => client.child.stdout!.once('data', resolve));
        }
      };
      client.send('send 0 3');
      await echoed(3);  // the restart comes while the channel is idle
      await own.restart();
      await listener.next('reconnected');
      await client.next('reconnected');
      client.send('send 3 3');
      await echoed(6);
      client.send('close');
      await client.next('closed');
      await listener.next('closed');
      expect(echoes()).toEqual([0, 1, 2, 3, 4, 5]);
      expect([...client.reports, ...listener.reports].filter((r) => r.kind === 'messageerror')).toEqual([]);
      await client.exited;
      await listener.exited;
    });

    test("an end that does not reconnect: 'close' on both ends, never a silent gap", async () => {
      const url = own.url('restart.close');
      const listener = startFixture('nats-restart.js', ['listener', url, JSON.stringify({ timeoutMs: 1000, reconnect: true })]);
      await listener.next('listening');
      const client = startFixture('nats-restart.js', ['client', url, JSON.stringify({ timeoutMs: 1000, reconnect: false })]);
      await client.next('ready');
      await own.restart();
      await client.next('closed');
      await listener.next('closed');
      await client.exited;
      await listener.exited;
    });
  });
});
