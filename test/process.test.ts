// fork(), parentPort, and what each side sees when the other process leaves or dies.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { report, runFixture } from './helpers';

describe('fork and parentPort', () => {
  test('parentPort is null in a process not started by fork()', async () => {
    expect(report(await runFixture('print-parent-port.js'), 'parentPort')).toEqual({ kind: 'parentPort', isNull: true });
  });

  test('parent and child exchange a Map, a Date, a transferred ArrayBuffer and a new port', async () => {
    const run = await runFixture('fork-parent.js');
    expect(report(run, 'parentPortInParent')).toMatchObject({ isNull: true, hasPort: true });
    const echo = report(run, 'echo');
    expect(echo.reply).toEqual({ mapEntries: [['k', 1]], dateIsDate: true, time: 1234, bytes: [9, 8, 7], pid: echo.childPid });
    expect(echo.sentBufferLength).toBe(0);
    expect(report(run, 'newPort').viaNewPort).toEqual({ via: 'new port', from: echo.childPid });
    report(run, 'newPortClosed');
    report(run, 'childGone');
    expect(run.code).toBe(0);
  });

  test('a child killed with SIGKILL: what it had written into shared memory still arrives, in order, then close', async () => {
    const run = await runFixture('kill-child.js');
    expect(report(run, 'exit').signal).toBe('SIGKILL');
    const closed = report(run, 'closed');
    // The child filled the ring (thousands of messages) and held one more in its own queue.
    expect(closed.inSharedMemory).toBeGreaterThan(1000);
    expect(closed.posted).toBe(closed.inSharedMemory + 1);
    expect(closed).toMatchObject({ received: closed.inSharedMemory, gapFree: true, afterClose: 0 });
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
  });

  test('a send that finds the peer process dead still leads to close', async () => {
    // Regression: the send saw EPIPE, the link stopped polling, and nothing told the port.
    // The process then exited without 'close' (or spun forever if it kept posting).
    const run = await runFixture('post-to-dead-child.js', [], 30000);
    expect(run.reports).toEqual([0, 1, 2, 3, 4, 5].map((round) => ({ kind: 'closed', round })));
    expect(run.code).toBe(0);
  });

  test('a parent killed with SIGKILL: the child gets close on parentPort', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'crossport-')), 'orphan.json');
    const run = await runFixture('doomed-parent.js', [file]);
    expect(run.signal).toBe('SIGKILL');
    for (let waited = 0; !fs.existsSync(file) && waited < 200; waited++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ kind: 'orphanClosed' });
  });
});

describe('process lifetime', () => {
  test('a listening port keeps the process alive until its peer closes', async () => {
    const run = await runFixture('keepalive.js', ['listen']);
    expect(run.reports.map((r) => r.kind)).toEqual(['close', 'exit']);
  });

  test('an unref()ed listening port lets the process exit', async () => {
    const run = await runFixture('keepalive.js', ['unref']);
    expect(run.reports.map((r) => r.kind)).toEqual(['exit']);
    expect(run.code).toBe(0);
  });
});
