// Behaviour while every CPU is busy. No timing here (bench/ measures latency under load); what
// is checked is what the port does with its CPU.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { fixture, runFixture } from './helpers';

const strace = spawnSync('strace', ['-V']).status === 0;
// Skipped, and said to be, where strace is missing; CI installs it, and there a missing one fails.
if (!strace && process.env.CI) throw new Error('strace is not installed; CI installs it (.ci/run)');
if (!strace) console.warn('test/load.test.ts: the sched_yield count is skipped: strace is not installed');

/**
 * Starts one process that spins for ever per CPU and waits until each one spins (each says so
 * just before its loop: a Node process takes a while to start, several times longer under the
 * sanitizers, and a ping-pong started before them would run on idle CPUs). Returns a function
 * that stops them.
 */
async function busyEveryCpu(): Promise<() => void> {
  const busy: ChildProcess[] = os.cpus().map(() =>
    spawn(process.execPath, ['-e', "process.stdout.write('spinning\\n'); for (;;) {}"], { stdio: ['ignore', 'pipe', 'ignore'] }),
  );
  const stop = () => busy.forEach((child) => child.kill('SIGKILL'));
  try {
    await Promise.all(
      busy.map(
        (child) =>
          new Promise<void>((resolve, reject) => {
            child.stdout!.once('data', () => resolve());
            child.once('exit', (code, signal) => reject(new Error(`a busy process ended before it spun (${code ?? signal})`)));
          }),
      ),
    );
  } catch (error) {
    stop();
    throw error;
  }
  return stop;
}

describe('with every CPU busy', () => {
  // A port that has just delivered a message keeps looking at its ring for a short window,
  // yielding its CPU between two looks. On a machine whose CPUs are all taken, a yield hands the
  // CPU to a busy neighbour for a whole time slice (milliseconds inside a round trip): there the
  // window must stay closed and the port sleep at once, as worker_threads does.
  (strace ? test : test.skip)('a ping-pong gives its CPU up by sleeping, not by yielding it to the busy processes', async () => {
    const stop = await busyEveryCpu();
    const counts = path.join(os.tmpdir(), `crossport-yields-${process.pid}.txt`);
    try {
      const run = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
        const child = spawn('strace', ['-f', '-c', '-e', 'trace=sched_yield', '-o', counts, process.execPath, fixture('pingpong.js'), '2000'], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let stdout = '';
        child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout }));
      });
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout)).toEqual({ kind: 'pingpong', roundTrips: 2000 });
      // strace -c: "... calls errors syscall" rows; no row when the call never happened.
      const row = fs.readFileSync(counts, 'utf8').split('\n').find((line) => /\ssched_yield$/.test(line));
      const yields = row === undefined ? 0 : Number(row.trim().split(/\s+/)[3]);
      // Both sides, 2000 round trips: with the window open under load they yield thousands of
      // times; a window closed at once leaves those few made before the load was sampled.
      expect(yields).toBeLessThan(100);
    } finally {
      stop();
      fs.rmSync(counts, { force: true });
    }
  });

  test('a ping-pong still completes', async () => {
    const stop = await busyEveryCpu();
    try {
      const run = await runFixture('pingpong.js', ['2000']);
      expect(run.code).toBe(0);
      expect(run.reports).toEqual([{ kind: 'pingpong', roundTrips: 2000 }]);
    } finally {
      stop();
    }
  });
});
