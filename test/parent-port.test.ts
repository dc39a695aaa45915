// parentPort is the fork() channel's end only in a process fork() started: a process that
// inherited CROSSPORT_PARENT_PORT by other means sees null, and the fds the variable names are
// checked (reading them only) before anything is done to them.
import { report, runFixture } from './helpers';

describe('parentPort and a stray CROSSPORT_PARENT_PORT', () => {
  test.each([
    ['spawn', 'files'],
    ['shell', 'files'],
    ['exec', 'files'],
    ['spawn', 'nothing'],
    ['shell', 'nothing'],
    ['exec', 'nothing'],
  ])('a grandchild started through %s by a forked child that never loaded crossport, with %s of its own at the fds named: parentPort is null and its fds are left alone', async (how, fds) => {
    // Before: require() threw EINVAL (crossport_segment) after marking those fds close-on-exec,
    // whatever they were (files of its own, or Node's own pipes).
    const run = await runFixture('stray-parent.js', [how, fds]);
    const grandchild = report(run, 'grandchild');
    expect(grandchild).toMatchObject({ inherited: true, threw: null, parentPortIsNull: true, fdsUnchanged: true, variableLeft: false });
    if (fds === 'files') {
      expect(grandchild.read).toEqual(['file at the segment fd', 'file at the socket fd']);
    } else {
      for (const fd of grandchild.before) expect(fd.target).toMatch(/^(pipe|anon_inode):/);
    }
    expect(run.stderr).toBe('');
  });

  test.each([
    ['ours', false],
    ['other', true],
  ])('a child handed a real channel end with the variable naming %s pid: parentPort is null: %s', async (whose, isNull) => {
    // The socket pair's creator, as the kernel recorded it, must be the process the variable
    // names: a channel end from anywhere else is not taken for the parent's.
    const run = await runFixture('spawn-with-link.js', [whose]);
    expect(report(run, 'grandchild')).toMatchObject({ inherited: true, threw: null, parentPortIsNull: isNull, fdsUnchanged: true, variableLeft: false });
    expect(run.code).toBe(0);
  });

  test('a child started by fork() has its parentPort, and neither it nor its own children see the variable afterwards', async () => {
    const run = await runFixture('parent-port-parent.js');
    const answer = report(run, 'answer');
    expect(answer.echo).toEqual({ hello: 'child' });
    expect(answer.variableLeft).toBe(false);
    expect(answer.grandchild).toMatchObject({ inherited: false, threw: null, parentPortIsNull: true });
    expect(run.code).toBe(0);
  });
});
