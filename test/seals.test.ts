// A peer that holds a memory object of ours, or sends us one, must not be able to crash us.
// Every channel segment is sealed against shrinking and growing before anyone else holds it,
// and no memory object from a peer is mapped unless it is sealed as the protocol requires and
// of the size it must have. The attackers are real processes (see fixtures/attack-tool.cc); the
// victims must survive and see 'close' or 'messageerror' where the peer broke the channel.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { report, runFixture, type Run } from './helpers';
import { buildAttackTool } from './attack-tool';

let tool: string;
beforeAll(() => {
  tool = buildAttackTool();
});

function survived(run: Run): void {
  expect(run.signal).toBeNull();
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
}

describe('a peer holding the segment of a channel', () => {
  // fork: the child's parentPort; transfer: a child a port was transferred to; listen: a client
  // that listen() admitted with uids: 'any' (as uid 65534 when the tests run as root).
  const carriers = ['fork', 'transfer', 'listen'];

  test.each(carriers.flatMap((carrier) => ['shrink', 'zero', 'grow'].map((how) => [carrier, how])))(
    '%s: cannot %s it (the victim used to die of SIGBUS), and the channel still works',
    async (carrier, how) => {
      const run = await runFixture('seal-victim.js', [tool, carrier, how]);
      const attacked = report(run, 'attacked');
      expect(attacked).toMatchObject({ how, error: 'EPERM' });
      if (carrier === 'listen' && process.getuid!() === 0) {
        expect(attacked.uid).toBe(65534);
        expect(report(run, 'connection').peer.uid).toBe(65534);
      }
      // The peer read what we wrote before and after its attempt (16 KiB, across pages), and
      // answered.
      expect(report(run, 'attackerRead').read).toEqual([6, 16384]);
      expect(report(run, 'closed')).toEqual({ kind: 'closed', messages: ['echo'], errors: [] });
      survived(run);
    },
  );

  test.each(carriers.flatMap((carrier) => ['punch', 'remove'].map((how) => [carrier, how])))(
    '%s: can still %s its pages (they read as zeros, as if it had written zeros): the victim survives and gets close',
    async (carrier, how) => {
      const run = await runFixture('seal-victim.js', [tool, carrier, how]);
      expect(report(run, 'attacked')).toMatchObject({ how, error: null });
      const closed = report(run, 'closed');
      for (const message of closed.messages) expect(message).toBe('echo');
      for (const error of closed.errors) expect(['Error', 'DataCloneError']).toContain(error);
      survived(run);
    },
  );
});

describe('memory objects a peer forges', () => {
  const refused = { delivered: [], errors: ['DataCloneError'] };
  test.each([
    // A port whose segment the peer made: only a sealed one of the right size is adopted.
    ['port', 'sealed', { delivered: [{ port: true, same: true }], errors: [] }],
    ['port', 'unsealed', refused],
    ['port', 'partly-sealed', refused],  // can grow, cannot shrink
    ['port', 'wrong-size', refused],
    // An out-of-band message: only a read-only sealed object of the announced size is mapped.
    ['message', 'sealed', { delivered: ['oob'], errors: [] }],
    ['message', 'unsealed', refused],
    ['message', 'partly-sealed', refused],  // still writable
    ['message', 'wrong-size', refused],
    // A transferred ArrayBuffer, mapped copy-on-write: likewise.
    ['buffer', 'sealed', { delivered: [{ byteLength: 1 << 20 }], errors: [] }],
    ['buffer', 'unsealed', refused],
    ['buffer', 'partly-sealed', refused],
  ])('a %s in a %s memory object: %j, and no SIGBUS when the peer then truncates it', async (carrier, kind, expected) => {
    const run = await runFixture('forge-victim.js', [tool, carrier as string, kind as string]);
    const result = report(run, 'result');
    expect(result).toMatchObject(expected as object);
    if (kind === 'sealed') {
      // What the victim accepted cannot be truncated; a read-only one cannot be punched either.
      expect(result.attacked.truncate).toBe('EPERM');
      if (carrier !== 'port') expect(result.attacked.punch).toBe('EPERM');
      if (carrier === 'buffer') expect(result.touched).toEqual({ intact: true });
    } else {
      // The peer kept its power over what it sent; the victim never mapped it.
      expect(result.touched).toBeNull();
    }
    survived(run);
  });

  test.each([
    ['sealed', { connected: true }],
    ['unsealed', { code: 'EPROTO', syscall: 'connect' }],
    ['partly-sealed', { code: 'EPROTO', syscall: 'connect' }],
    ['wrong-size', { code: 'EPROTO', syscall: 'connect' }],
  ])('a listener that answers connect() with a %s segment: %j', async (kind, expected) => {
    const address = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'crossport-impostor-')), 'impostor.sock');
    const run = await runFixture('impostor-victim.js', [tool, address, kind]);
    expect(report(run, 'result')).toMatchObject(expected);
    survived(run);
  });
});
