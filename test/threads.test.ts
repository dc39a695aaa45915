// crossport required only inside worker threads, never by the main thread: Node unloads the addon
// with the last environment that loaded it, and the threads' ends must look as worker_threads'.
import { runBoth, runScenario } from './scenario';

describe('crossport used only inside worker threads, as worker_threads', () => {
  test.each(['exit', 'terminate', 'sequence'])('%s', async (scenario) => {
    const [reference, observed] = await runBoth('thread-only.js', [scenario]);
    expect(observed).toEqual(reference);
    expect(observed).toMatchObject({ code: 0, signal: null });
  });

  test('what a thread that ends on its own saw', async () => {
    const [, observed] = await runBoth('thread-only.js', ['exit']);
    expect(observed.stdout).toEqual(['got 1', 'got 2', 'got 3', 'close', 'thread exit 0', 'exit 0']);
  });

  // Node tracks the descriptors fs opens in a thread, and warns when fs closes one it did not.
  test('a thread forks a process and closes the FileDescriptor it sent: no warning', async () => {
    const observed = await runScenario('thread-only.js', ['crossport', 'fork']);
    expect(observed.stderr.join('\n')).toBe('');
    expect(observed).toMatchObject({ stdout: ['got a descriptor true', 'child exit 0', 'thread exit 0', 'exit 0'], code: 0, signal: null });
  });

  test('a thread listens, connects, and closes the server: no warning', async () => {
    const observed = await runScenario('thread-only.js', ['crossport', 'listen']);
    expect(observed.stderr.join('\n')).toBe('');
    expect(observed).toMatchObject({ stdout: ['server got hi', 'server closed', 'thread exit 0', 'exit 0'], code: 0, signal: null });
  });

  test("a thread starts crossport's Worker and terminates it: no warning", async () => {
    const observed = await runScenario('thread-only.js', ['crossport', 'worker']);
    expect(observed.stderr.join('\n')).toBe('');
    expect(observed).toMatchObject({ stdout: ['worker up', 'worker exit 1', 'thread exit 0', 'exit 0'], code: 0, signal: null });
  });
});
