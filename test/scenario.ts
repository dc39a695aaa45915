// Runs a scenario fixture (`node test/fixtures/<name> <implementation> <scenario> ...`) and
// collects what a user would see of the process, for comparing worker_threads with crossport.
import { spawn } from 'node:child_process';

import { fixture } from './helpers';

export interface Observed {
  stdout: string[];
  /** stderr without stack frames (their last frames name each implementation's internals) */
  stderr: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function runScenario(name: string, args: string[], nodeOptions: string[] = []): Promise<Observed> {
  return new Promise((resolve, reject) => {
    // `ulimit -c 0`: an abort must not leave a core file behind.
    const command = ['ulimit -c 0; exec "$0" "$@"', process.execPath, ...nodeOptions, fixture(name), ...args];
    const child = spawn('/bin/sh', ['-c', ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 40000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        stdout: stdout.split('\n').filter((line) => line !== ''),
        stderr: stderr.split('\n').filter((line) => !/^\s+at /.test(line)),
        code,
        signal,
      });
    });
  });
}

/** The scenario over worker_threads and over crossport: what each showed. */
export async function runBoth(name: string, args: string[], nodeOptions: string[] = []): Promise<[Observed, Observed]> {
  const reference = await runScenario(name, ['worker_threads', ...args], nodeOptions);
  const observed = await runScenario(name, ['crossport', ...args], nodeOptions);
  return [reference, observed];
}
