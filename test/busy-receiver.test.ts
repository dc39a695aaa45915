// Descriptors in flight to a receiver that is busy: the child reads nothing until everything
// was posted, so whatever the sender posted waits in the ring, the socket and the sender's
// queue. Every port and descriptor must arrive, in order, and the channel must stay open; the
// kernel's socket buffer (and its limit on fds in flight) hold the sender back meanwhile.
import { report, runFixture, type Run } from './helpers';

function expectAllArrived(run: Run, messages: number, perMessage: number): void {
  const busy = report(run, 'busy');
  expect(busy.child).toMatchObject({ messages, outOfOrder: 0, items: messages * perMessage, badItems: 0 });
  expect({ answered: busy.answered, wrong: busy.wrong }).toEqual({ answered: messages * perMessage, wrong: 0 });
  // The channel is still open: it answers, and nothing is left queued.
  expect(busy.pong).toBe('pong');
  expect(busy.bufferedAmount).toBe(0);
  // It closes only after: the child's 'exit' and our 'close' come from two sources, in either order.
  const kinds = run.reports.map((r) => r.kind);
  expect(kinds.filter((kind) => kind !== 'childExit').slice(0, 2)).toEqual(['busy', 'closed']);
  expect(kinds.indexOf('childExit')).toBeGreaterThan(kinds.indexOf('busy'));
}

describe('a busy receiver gets every descriptor sent to it', () => {
  test('3 messages of 1,000 ports each: every port arrives and answers on its channel', async () => {
    expectAllArrived(await runFixture('busy-receiver-parent.js', ['ports', '3', '1000']), 3, 1000);
  });

  test('5,000 messages each carrying a FileDescriptor', async () => {
    const run = await runFixture('busy-receiver-parent.js', ['files', '5000', '1']);
    expectAllArrived(run, 5000, 1);
    expect(report(run, 'busy').child.heldWhilePosting).toBe(true);  // the sender had to queue
  });

  test('100 messages of 50 FileDescriptors: more fds than a receiver may hold ahead fill its socket', async () => {
    expectAllArrived(await runFixture('busy-receiver-parent.js', ['files', '100', '50']), 100, 50);
  });

  test('an unprivileged sender at its limit of fds in flight (ETOOMANYREFS) queues, and sends on as the receiver takes them', async () => {
    // 1,500 fds to a busy child, by a user allowed 1,024 open files: the kernel refuses more
    // than about 1,024 in flight for that user.
    const run = await runFixture('limited.js', ['1024', 'busy-receiver-parent.js', 'files', '150', '10']);
    expectAllArrived(run, 150, 10);
    expect(report(run, 'limited')).toMatchObject({ code: 0, signal: null });
  });
});
