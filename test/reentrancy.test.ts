// A listener that calls back into its own port or its peer (issue 15 §9), and getters run by
// postMessage that close or move ports of the same message (§6): each scenario runs over
// worker_threads and over crossport, in one process and (where the case allows) with the other
// end in another thread / process; what the process observed and its exit code must be the same.
import { runBoth, runScenario } from './scenario';

const both = ['close', 'close-then-post', 'close-then-receive', 'close-in-tick', 'close-then-remove',
  'close-twice-with-callback', 'receive', 'receive-all', 'swap', 'remove-then-add-later', 'unref'];
// These need the peer port in this thread.
const localOnly = ['peer-close', 'post-through-peer', 'close-then-peer-posts', 'exit'];

describe('re-entrant calls from a listener, as with worker_threads', () => {
  test.each([...both, ...localOnly])('%s, both ends in one process', async (scenario) => {
    const [reference, observed] = await runBoth('reentrancy.js', [scenario, 'local']);
    expect(observed).toEqual(reference);
  });

  test.each(both)('%s, the sender in another process', async (scenario) => {
    const [reference, observed] = await runBoth('reentrancy.js', [scenario, 'remote']);
    expect(observed).toEqual(reference);
  });

  test('close() in the listener delivers what was already queued, then closes', async () => {
    const [, observed] = await runBoth('reentrancy.js', ['close', 'remote']);
    expect(observed.stdout).toEqual(['got 1', 'got 2', 'got 3', 'got 4', 'got 5', 'close', 'peer exit 0', 'exit 0']);
  });

  test('a peer that calls process.exit() in its listener: its replies arrive, then close', async () => {
    const [reference, observed] = await runBoth('reentrancy.js', ['peer-exit', 'remote']);
    expect(observed).toEqual(reference);
    expect(observed.stdout).toEqual(['got reply 1', 'got reply 2', 'close', 'peer exit 7', 'exit 0']);
  });

  test('a listener that transfers its own port: the rest goes to the new owner', async () => {
    const [reference, observed] = await runBoth('reentrancy.js', ['transfer-self', 'local']);
    // The neutered port's own 'close' comes a little earlier in worker_threads (before the new
    // owner's first message, from the same loop turn); everything else is the same.
    const withoutClose = (lines: string[]) => lines.filter((line) => line !== 'close');
    expect(withoutClose(observed.stdout)).toEqual(withoutClose(reference.stdout));
    expect(observed.stdout.filter((line) => line === 'close')).toHaveLength(1);
    expect(observed.code).toBe(reference.code);
  });
});

describe('a getter run by postMessage that closes or moves a port of the same message', () => {
  test.each(['getter-closes-listed', 'getter-closes-sender', 'getter-posts'])('%s: delivered as worker_threads does', async (scenario) => {
    const [reference, observed] = await runBoth('reentrancy.js', [scenario]);
    expect(observed).toEqual(reference);
    expect(observed.stdout).toContain('listed peer got through the moved port');
  });

  test('getter-transfers-listed: a DataCloneError, nothing sent, no channel lost (Node aborts)', async () => {
    const observed = await runScenario('reentrancy.js', ['crossport', 'getter-transfers-listed']);
    expect(observed.stdout).toEqual([
      'threw DataCloneError MessagePort in transfer list is already detached',
      'second returned true',
      'got "second"',
      'elsewhere got a port true',
      'close',
      'listed port close',
      'listed peer close',
      'exit 0',
    ]);
    expect(observed.code).toBe(0);
  });
});
