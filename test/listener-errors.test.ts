// Listener code that throws (issue 15 §1): each scenario runs over a worker_threads channel and
// over crossport, in one process and with the other end in another thread / process; what the
// process printed, its 'uncaughtException' / 'unhandledRejection' calls (error and origin), the
// order of everything, its stderr and its exit code must be the same.
import { type Observed, runBoth, runScenario } from './scenario';

const run = (args: string[]) => runScenario('listener-errors.js', args);

async function compare(scenario: string, where: string): Promise<Observed> {
  const [reference, observed] = await runBoth('listener-errors.js', [scenario, where]);
  expect(observed).toEqual(reference);
  return observed;
}

const withHandler = [
  'throw',
  'throw-addEventListener',
  'throw-onmessage',
  'tick-throw',
  'microtask-throw',
  'async-throw',
  'unhandled-rejection',
  'rejection-to-uncaught',
  'two-listeners',
  'capture-callback',
];

describe('a listener that throws, as with worker_threads', () => {
  for (const where of ['local', 'remote']) {
    describe(where === 'local' ? 'both ends in one process' : 'the sender in another process', () => {
      test.each(withHandler)('%s: reported, and delivery goes on', async (scenario) => {
        const observed = await compare(scenario, where);
        expect(observed.code).toBe(0);
        // The error was reported, and the messages after it arrived.
        expect(observed.stdout.some((line) => /^(uncaughtException|unhandledRejection|captured) /.test(line))).toBe(true);
        expect(observed.stdout).toContain('message two');
        expect(observed.stdout).toContain('close');
      });

      test.each(['no-handler', 'no-handler-rejection'])('%s: the error is printed and the process exits 1', async (scenario) => {
        const observed = await compare(scenario, where);
        expect(observed.code).toBe(1);
        expect(observed.stderr.some((line) => /^Error: (boom|rejected)$/.test(line))).toBe(true);
        expect(observed.stderr.join('\n')).not.toMatch(/async hook stack|corrupted/);
      });
    });
  }

  test('--abort-on-uncaught-exception aborts, as Node does', async () => {
    const [reference, observed] = await runBoth('listener-errors.js', ['throw', 'local'], ['--abort-on-uncaught-exception']);
    // V8 prints the JavaScript stack after FROM, which differs below the listener.
    const head = (seen: Observed) => ({ ...seen, stderr: seen.stderr.slice(0, seen.stderr.indexOf('FROM') + 2) });
    expect(head(observed)).toEqual(head(reference));
    expect(observed.signal).not.toBeNull(); // (SIGTRAP: how V8 aborts here)
    expect(observed.stderr[0]).toBe('Uncaught Error: boom');
  });

  test('listeners run in the port\'s async context (AsyncLocalStorage), after a throw and a collection too', async () => {
    const [reference, observed] = await runBoth('listener-errors.js', ['async-context', 'local'], ['--expose-gc']);
    expect(observed).toEqual(reference);
    expect(observed.stdout).toContain('message after collection made true true');
  });

  test("a 'close' listener that throws", async () => {
    const observed = await compare('close-throw', 'local');
    expect(observed.stdout).toContain('uncaughtException close boom uncaughtException');
    expect(observed.stdout).toContain('still running');
  });

  test('a forked server whose listener throws after replying keeps answering', async () => {
    const observed = await compare('rpc-handled', 'local');
    expect(observed.stdout).toEqual([
      'reply {"id":1,"result":"a"}',
      'reply {"id":2,"error":"failed"}',
      'server caught server boom 2 uncaughtException',
      'reply {"id":3,"result":"b"}',
      'close',
      'peer exit 0',
      'exit 0',
    ]);
  });

  test('a forked server with no handler dies after its reply went out', async () => {
    const observed = await compare('rpc-unhandled', 'local');
    expect(observed.stdout).toEqual(['reply {"id":1,"result":"a"}', 'reply {"id":2,"error":"failed"}', 'close', 'peer exit 1', 'exit 0']);
  });

  test('@remote-ui/rpc, which rethrows what a handler threw, across processes', async () => {
    const observed = await compare('remote-ui', 'local');
    expect(observed.stdout).toEqual([
      'result echo a',
      'rejected failed b',
      'server caught failed b uncaughtException',
      'result echo c',
      'close',
      'peer exit 0',
      'exit 0',
    ]);
  });
});

describe('listeners worker_threads cannot run the same way (crossport only)', () => {
  test("a 'messageerror' listener that throws", async () => {
    const observed = await run(['crossport', 'messageerror-throw']);
    expect(observed.stdout).toEqual([
      'message one',
      'messageerror DataCloneError',
      'uncaughtException messageerror boom uncaughtException',
      'message two',
      'message end',
      'close',
      'exit 0',
    ]);
    expect(observed.code).toBe(0);
  });

  test("a 'drain' listener that throws", async () => {
    const observed = await run(['crossport', 'drain-throw']);
    expect(observed.stdout[0]).toBe('buffered true');
    const drain = observed.stdout.indexOf('drain');
    expect(observed.stdout[drain + 1]).toBe('uncaughtException drain boom uncaughtException');
    expect(observed.stdout).toContain('received 4000');
    expect(observed.stdout.slice(-2)).toEqual(['close', 'exit 0']);
    expect(observed.code).toBe(0);
  });
});
