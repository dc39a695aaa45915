// A producer faster than its consumer: what it holds is visible (bufferedAmount), 'drain' tells
// when it emptied, and nothing is lost or reordered.
import { report, runFixture } from './helpers';

test('flooding: bufferedAmount and drain give backpressure; 120,000 messages of 1 KiB arrive in order', async () => {
  const run = await runFixture('flood-parent.js');
  const flood = report(run, 'flood');
  // 20,000 posted at once: nearly all of them (20 MB) wait in this process until 'drain'.
  expect(flood.heldAfterBurst).toBeGreaterThan(19_000 * 1024);
  expect(flood.afterDrain).toEqual({ bufferedAmount: 0, drains: 1 });
  // Waiting for 'drain' over 1 MiB: it never held more than the limit and one message.
  expect(flood.waits).toBeGreaterThan(10);
  expect(flood.maxHeld).toBeLessThanOrEqual(flood.limit + 2048);
  // (Not under ASan, whose quarantine keeps freed memory resident.)
  if (!process.env.CROSSPORT_SANITIZED) expect(flood.rssGrowthMiB).toBeLessThan(64);
  // Its event loop kept turning while it flooded.
  expect(flood.ticks).toBeGreaterThan(10);
  expect(flood.child).toEqual({ received: 120000, outOfOrder: 0 });
  expect(run.code).toBe(0);
});

test('a process that ends naturally with messages still queued writes them out first; the peer gets them all, then close', async () => {
  const run = await runFixture('leave-parent.js');
  expect(report(run, 'left')).toEqual({ kind: 'left', received: 20000, inOrder: true, exitedBeforeReading: false });
});
