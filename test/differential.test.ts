// The same scenarios over a worker_threads channel (to a Worker) and over crossport (to a forked
// process): the receiving sides must observe the same thing.
import { report, runFixture } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const values: [string, () => unknown][] = require('./fixtures/values');

async function compare(scenario: string) {
  const result = report(await runFixture('diff-parent.js', [scenario]), 'result');
  return { worker: result.worker, crossport: result.crossport };
}

describe('crossport observes what worker_threads observes', () => {
  test('structured clone battery', async () => {
    const { worker, crossport } = await compare('clone');
    expect(worker).toHaveLength(values.length);
    for (let i = 0; i < values.length; i++) {
      expect({ name: values[i][0], value: crossport[i]?.value }).toEqual(worker[i]);
    }
  });

  test('100,000 messages arrive in order', async () => {
    const { worker, crossport } = await compare('order');
    expect(worker).toEqual({ count: 100000, inOrder: true });
    expect(crossport).toEqual(worker);
  });

  test('a 64 MiB message', async () => {
    const { worker, crossport } = await compare('big');
    expect(worker.length).toBe(64 * 1024 * 1024);
    expect(crossport).toEqual(worker);
  });

  test('DataCloneError and argument errors: same errors, nothing sent, nothing detached', async () => {
    const { worker, crossport } = await compare('errors');
    expect(worker.thrown.every((entry: { threw?: boolean }) => entry.threw !== false)).toBe(true);
    expect(crossport.thrown).toEqual(worker.thrown);
    expect(worker.received).toEqual(["'marker'"]);
    expect(crossport.received).toEqual(worker.received);
  });

  test('close: the peer receives everything posted before it, then close', async () => {
    const { worker, crossport } = await compare('close');
    expect(worker).toEqual(['m1', 'm2', 'm3', 'm4', 'm5', 'close']);
    expect(crossport).toEqual(worker);
  });
});
