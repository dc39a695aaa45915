// Ports nobody references any more: the garbage collector may take one only when nothing it
// would still do can be observed. Both cases lost events or messages before the port held its
// JS object for them (PortHandle::UpdateOwnerHold).
import { report, runFixture } from './helpers';

test("ports referenced only by their 'close' listeners, and ports dropped with messages still queued, lose nothing", async () => {
  const run = await runFixture('dropped-parent.js');
  // 200 ports whose peers close after five full collections: every 'close' listener runs.
  expect(report(run, 'close-listeners')).toEqual({ kind: 'close-listeners', closed: 200, collectedBeforeClose: 0 });
  // The child dropped a port holding about 20 MB of posted messages, and collected garbage
  // while the parent did not read: all 20,000 arrive, then 'close' once the collector took it.
  const dropped = report(run, 'dropped-with-queue');
  expect(dropped.childSaw.heldAfterPosting).toBeGreaterThan(19_000 * 1024);
  expect(dropped).toMatchObject({ received: 20000, inOrder: true, childSaw: { collected: true } });
  expect(run.code).toBe(0);
});
