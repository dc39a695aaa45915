// The same scenarios over a worker_threads channel (to a Worker) and over crossport (to a forked
// process): each side must observe the same thing. Values are compared as structural
// descriptions (fixtures/describe.js): identity and sharing, every byte, prototypes, property
// order and descriptors, Map and Set order, -0, holes.
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
    expect(worker.received).toHaveLength(values.length);
    for (let i = 0; i < values.length; i++) {
      expect({ name: values[i][0], value: crossport.received[i]?.value }).toEqual(worker.received[i]);
    }
  });

  test('100,000 messages arrive in order', async () => {
    const { worker, crossport } = await compare('order');
    expect(worker.received).toEqual({ count: 100000, inOrder: true });
    expect(crossport.received).toEqual(worker.received);
  });

  test('a 64 MiB message', async () => {
    const { worker, crossport } = await compare('big');
    expect(worker.received.objects[0].view.length).toBe(64 * 1024 * 1024);
    expect(crossport.received).toEqual(worker.received);
  });

  test('DataCloneError and argument errors: same errors, nothing sent, nothing detached', async () => {
    const { worker, crossport } = await compare('errors');
    expect(worker.sent.thrown.every((entry: { threw?: boolean }) => entry.threw !== false)).toBe(true);
    expect(crossport.sent.thrown).toEqual(worker.sent.thrown);
    expect(worker.received).toHaveLength(1);  // only 'marker'
    expect(crossport.received).toEqual(worker.received);
  });

  test('close() behind a backlog (queued, large, out of band): the peer receives all of it, in order, then close', async () => {
    const { worker, crossport } = await compare('close');
    expect(worker.received).toHaveLength(5 + 20000 + 1);
    expect(worker.received.at(-1)).toBe('close');
    // crossport still held most of it in the sending process when close() was called.
    expect(crossport.sent.heldAtClose).toBeGreaterThan(10 * 1024 * 1024);
    expect(crossport.received).toEqual(worker.received);
    expect(crossport.sent.closeEvent).toBe(true);
  });

  test("a pooled Buffer's ArrayBuffer in the transfer list is copied, not detached: the pool stays usable", async () => {
    const { worker, crossport } = await compare('bufferPool');
    expect(worker.sent).toMatchObject({ sameBuffer: true, a: 'pooled bytes', b: 'another pooled Buffer' });
    expect(crossport.sent).toEqual(worker.sent);
    expect(crossport.received).toEqual(worker.received);
  });

  test("'message', 'messageerror' and 'close' in the order they were caused, as each listener form sees them", async () => {
    const { worker, crossport } = await compare('events');
    const kinds = (events: unknown[][]) => events.map((event) => event[0]);
    expect(kinds(worker.received)).toEqual(['message', 'messageerror', 'messageerror event', 'message', 'message', 'message', 'close']);
    expect(worker.received[1][1]).toMatchObject({ ctor: 'RangeError', name: 'RangeError' });
    // The one difference (README): a SharedArrayBuffer cannot reach another process. Where the
    // worker got it, crossport's receiver gets 'messageerror' with a DataCloneError; the rest is
    // the same.
    const sharedAt = 4;
    expect(worker.received[sharedAt][1].objects.map((o: { tag: string }) => o.tag)).toContain('[object SharedArrayBuffer]');
    const dataCloneError = { ctor: 'DOMException', name: 'DataCloneError', code: 25 };
    expect(crossport.received[sharedAt]).toEqual(['messageerror', expect.objectContaining(dataCloneError)]);
    expect(crossport.received[sharedAt + 1]).toEqual(['messageerror event', 'MessageEvent', 'messageerror', true, expect.objectContaining(dataCloneError)]);
    expect(crossport.received.filter((_: unknown, i: number) => i !== sharedAt && i !== sharedAt + 1))
      .toEqual(worker.received.filter((_: unknown, i: number) => i !== sharedAt));
    expect(crossport.sent).toEqual(worker.sent);
  });

  test('a port sent in a message: what is posted on its channel before and after it moved arrives in order, and it answers', async () => {
    const { worker, crossport } = await compare('transferredPort');
    expect(worker.received).toEqual({ seen: [1, 2, 3, 4, 5, 6], closed: true });
    expect(worker.sent).toEqual({ replies: [10, 20, 30, 40, 50, 60], movedNeutered: true });
    expect(crossport).toEqual(worker);
  });

  test('listeners: every form in the order added, once, off, onmessage, the event object, references, messages that waited', async () => {
    const { worker, crossport } = await compare('listeners');
    expect(worker.received.log.filter((entry: unknown[]) => entry[0] === 'once')).toEqual([['once', 1]]);
    expect(crossport.received).toEqual(worker.received);
  });
});
