// A hostile peer process (fixtures/hostile-peer.js) writes into the shared segment and the
// socket what no honest peer would. The victim (fixtures/hostile-victim.js) must not crash or
// hang, must deliver 'messageerror' for what cannot be deserialized and go on, must close the
// port when the link is beyond repair, and must not leak the fds the peer pushed at it.
import { report, runFixture, type Run } from './helpers';

async function victim(scenario: string, seed = '1'): Promise<{ run: Run; closed: any; end: any }> {
  const run = await runFixture('hostile-victim.js', [scenario, seed]);
  const closed = report(run, 'closed');
  const end = report(run, 'end');
  expect(run.stderr).toBe('');
  expect(run.signal).toBeNull();
  expect(run.code).toBe(0);
  expect(end.code).toBe(0); // the peer itself ran its scenario to the end
  expect(end.leakedFds).toEqual([]);
  return { run, closed, end };
}

// The good messages the peer planned arrived in order, and each bad one gave a 'messageerror'
// named as in `names`. (The peer holds its end open until the victim says 'bye' after 'close':
// a 'closed' report is itself proof that the victim closed the port on its own.)
function expectPlanKept(closed: any, end: any, names: string[]): void {
  expect(closed.messages).toEqual(Array.from({ length: end.plan.good }, (_, i) => ({ i })));
  expect(closed.errors).toHaveLength(end.plan.bad);
  for (const error of closed.errors) expect(names).toContain(error.name);
}

describe('a hostile peer', () => {
  test('undeserializable messages give messageerror, in order between the good ones', async () => {
    const { closed, end } = await victim('protocol');
    // The close record the peer wrote ended the port.
    expectPlanKept(closed, end, ['Error', 'DataCloneError']);
  });

  test('a large message announced with nothing in the large ring closes the port', async () => {
    const { closed } = await victim('emptyLarge');
    expect(closed.messages).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
    expect(closed.errors).toEqual([]);
  });

  test('large messages lying about their prefix or sections give messageerror and free their room; a prefix past the size closes the port', async () => {
    const { closed, end } = await victim('lyingLarge');
    expectPlanKept(closed, end, ['DataCloneError']);
  });

  test('a handle said to be a socket, a server or a UDP socket that is a file gives messageerror, not a crash', async () => {
    const { closed, end } = await victim('lyingHandles');
    expectPlanKept(closed, end, ['DataCloneError']);
  });

  test('transferred buffers whose memory objects break the rules (not sealed, chunks that do not fit, counts that lie) give messageerror and leave no fd open', async () => {
    const { closed, end } = await victim('lyingBuffers');
    expectPlanKept(closed, end, ['DataCloneError']);
  });

  test('a record announcing fds that never came closes the port', async () => {
    const { closed } = await victim('badFdCount');
    expect(closed.messages).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
    expect(closed.errors).toEqual([]);
  });

  // An honest peer sends a record's fds (one packet) just before it publishes the record: with
  // nothing published, one packet of fds may wait for its record, never more.
  test('stray fds: one packet of them is tolerated (a record may claim it); more with nothing published closes the port', async () => {
    const { closed, end } = await victim('strayFds');
    expect(closed.messages).toEqual([{ i: 0 }, { i: 1 }]);
    expect(end.plan.strays).toBeGreaterThan(64);
  });

  test('a socket full of stray fds behind waiting records: the victim takes a bounded number, delivers the records, then closes', async () => {
    const { closed, end } = await victim('busyStrays');
    expect(closed.messages).toEqual(Array.from({ length: 300 }, (_, i) => ({ i })));
    // The socket held thousands of fds; no more than 4 packets of them were taken ahead of
    // records (kMaxReadAheadFds), and one more packet at most.
    expect(end.plan.strays).toBeGreaterThan(5000);
    expect(closed.maxOpenFds - closed.openFdsBefore).toBeLessThanOrEqual(5 * 64 + 16);
  });

  test.each(['1', '2', '3', '4', '5', '6', '7', '8'])(
    'random bytes over the segment and the socket (seed %s): no crash, no hang, close',
    async (seed) => {
      const { closed } = await victim('scribble', seed);
      // What could not be read came as 'messageerror' carrying an error a user can act on.
      for (const error of closed.errors) expect(['Error', 'DataCloneError']).toContain(error.name);
      expect(closed.echoFailures).toEqual([]);
    },
  );
});
