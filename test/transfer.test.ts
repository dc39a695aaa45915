// Ports moving between processes: chains, messages in flight, both ends elsewhere.
import { report, runFixture } from './helpers';

describe('ports move between processes', () => {
  test('parent → A → B chain with 1,000 messages of 4 KiB in flight each way; A leaves; nothing lost or reordered', async () => {
    const run = await runFixture('chain-parent.js');
    const middle = report(run, 'middle');
    // A read 100 of the parent's messages, then gave the port away inside its listener.
    expect(middle).toEqual({ kind: 'middle', got: 100, firstSeqs: [0, 1, 2], postAfterTransfer: 'undefined' });
    const chain = report(run, 'chain');
    expect(chain.received).toBe(2000);
    expect(chain.inOrder).toBe(true);
    expect(chain.senders).toEqual({ A: 1000, B: 1000 });
    // B got the rest of the parent's messages, from the 101st on, without a gap.
    expect(chain.endGot).toEqual({ count: 900, first: 100, gapFree: true });
    // B answered after A had exited: nothing was relayed through A.
    expect(chain.middleExitCode).toBe(0);
    expect(chain.endPid).not.toBe(chain.middlePid);
    report(run, 'closed');
    expect(run.code).toBe(0);
  });

  test('the two ports of a new channel, sent to two different children, talk directly', async () => {
    const run = await runFixture('siblings-parent.js');
    const { x, y } = report(run, 'siblings');
    expect(y).toEqual({ got: 500, inOrder: true, peers: [x.pid], pid: y.pid });
    expect(x).toEqual({ answers: 500, inOrder: true, peers: [y.pid], pid: x.pid });
    expect(run.code).toBe(0);
  });

  test('messages of every size class (small ring, large ring, out of band), cloned and transferred, both ways; the port moves with them queued', async () => {
    const run = await runFixture('sizes-parent.js');
    expect(report(run, 'sizes')).toEqual({
      kind: 'sizes',
      parentReceived: 60,
      parentProblems: [],
      child: { done: true, childRead: 30, grandchildRead: 30, problems: [] },
    });
    expect(run.code).toBe(0);
  });
});
