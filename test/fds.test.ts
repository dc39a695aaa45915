// A listener out of file descriptors behaves as a net.Server does (libuv's uv__emfile_trick):
// it sheds the connections it cannot serve (their connect() rejects at once), does not spin,
// reports nothing as an error, does not die, and serves again once fds are free. The listener
// runs under `ulimit -n 256` and fills its fd table itself (fixtures/fd-limited-server.js).
import { report, runFixture } from './helpers';

describe('a listener out of file descriptors', () => {
  test.each([
    // spare fds: 0, accept() fails; 1, accept() takes the last and the channel's segment
    // (memfd_create) fails. With and without an 'error' listener.
    ['0', 'listen', 'accept() fails'],
    ['1', 'listen', 'the channel cannot be made'],
    ['0', 'none', 'accept() fails, nobody listens for errors'],
    ['1', 'none', 'the channel cannot be made, nobody listens for errors'],
  ])('%s spare fds, %s for errors (%s): each waiting client is turned away at once, no spinning, no error; served again once fds are free', async (spare, onError) => {
    // Before: with 0 spare fds the listener emitted an 'error' on every turn of its loop (its
    // poll callback ran 100,000 times and the fixture stopped it), or died of the unhandled
    // 'error'; with 1, the EMFILE of memfd_create was thrown out of the poll callback and
    // killed it even with an 'error' listener.
    const attempts = 50;
    const run = await runFixture('fd-limit-driver.js', [spare, onError, String(attempts), '5']);
    const fds = report(run, 'fds');
    expect(fds.serverExit).toBeNull();
    expect(fds.outOfFds).toEqual({ ECONNRESET: attempts });
    expect(fds.during).toMatchObject({ connections: 0, errors: 0 });
    // Not spinning: the listening socket's poll callback ran about once per client.
    expect(fds.during.pollCalls).toBeLessThanOrEqual(2 * attempts);
    expect(fds.afterFree).toEqual({ connected: 5 });
    expect(fds.closedAfterFree).toBe(5);
    expect(run.code).toBe(0);
  });
});
