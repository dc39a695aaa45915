// The README's backpressure idiom, `if (port.bufferedAmount > limit) await once(port, 'drain')`,
// when the consumer process dies while the producer waits (issue 15 §7): the wait must end.
// 'drain' comes once bufferedAmount fell to 0 because the channel closed, just before 'close'.
import { report, runFixture } from './helpers';

test.each(['kill', 'exit'])('the peer dies (%s) while the producer waits for drain', async (how) => {
  const run = await runFixture('drain-peer-dies.js', [how]);
  const settled = report(run, 'settled');
  expect(settled.events.slice(0, 2)).toEqual(['waiting', 'drained 0']);
  expect(settled.bufferedAmount).toBe(0);
  expect(run.code).toBe(0);
});

test('a producer awaiting drain, with nothing else to keep its process alive, posts every item', async () => {
  const run = await runFixture('drain-producer.js');
  expect(report(run, 'done')).toMatchObject({ received: 5000, inOrder: true });
  expect(report(run, 'done').waits).toBeGreaterThan(0);
  expect(report(run, 'child exit')).toMatchObject({ code: 0, received: 5000 });
});
