// Processes that die or leave with messages in flight: SIGKILL mid-stream in both directions
// (a small run of scripts/stress-kill.js, which does 100+ trials), and a normal exit with the
// overflow queue full.
import { spawn } from 'node:child_process';
import * as path from 'node:path';

import { report, runFixture } from './helpers';

function stressKill(trials: number): Promise<any> {
  return new Promise((resolve, reject) => {
    const script = path.join(__dirname, '..', 'scripts', 'stress-kill.js');
    const child = spawn(process.execPath, [script, String(trials), '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    child.on('error', reject);
    child.on('close', () => resolve(JSON.parse(stdout)));
  });
}

describe('SIGKILL of either side mid-stream', () => {
  test('10 trials: the survivor gets close and a gap-free, uncorrupted prefix; nothing left behind', async () => {
    const summary = await stressKill(10);
    expect(summary.failures).toEqual([]);
    expect(summary.passed).toBe(10);
    expect(summary.leftovers).toEqual({ devShm: [], tmp: [] });
    expect(summary.ok).toBe(true);
  });
});

describe('a process that exits with messages still queued', () => {
  test.each(['exit', 'natural'])('the peer receives them all before close (%s)', async (mode) => {
    const run = await runFixture('pending-at-exit.js', [mode, '20000']);
    expect(report(run, 'closed')).toEqual({ kind: 'closed', received: 20000, expected: 20000, bad: 0 });
    expect(report(run, 'childExit').code).toBe(0);
  });

  test('a peer that never reads does not keep it from exiting', async () => {
    const run = await runFixture('pending-at-exit.js', ['exit', '20000', 'noreader']);
    expect(report(run, 'childExit').code).toBe(0);
  });
});
