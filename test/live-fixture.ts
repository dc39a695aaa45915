// A fixture process the test talks to while it runs: its JSON report lines as they come, stdin
// for commands, and its end.
import { spawn, type ChildProcess } from 'node:child_process';

import { fixture } from './helpers';

export interface LiveFixture {
  child: ChildProcess;
  reports: any[];
  /** The first report of `kind` (already received or still to come). */
  next(kind: string): Promise<any>;
  send(line: string): void;
  /** Resolves with [code, signal] once the process has exited. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  stderr(): string;
}

export function startFixture(name: string, args: string[]): LiveFixture {
  const child = spawn(process.execPath, [fixture(name), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const reports: any[] = [];
  const waiters: [string, (report: any) => void][] = [];
  let pending = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    for (let end = pending.indexOf('\n'); end >= 0; end = pending.indexOf('\n')) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      let report: any;
      try {
        report = JSON.parse(line);
      } catch {
        continue;
      }
      reports.push(report);
      for (const waiter of waiters.filter(([kind]) => kind === report.kind)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter[1](report);
      }
    }
  });
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('exit', (code, signal) => resolve([code, signal]));
  });
  return {
    child,
    reports,
    next(kind) {
      const found = reports.find((report) => report.kind === kind);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        waiters.push([kind, resolve]);
        exited.then(([code, signal]) => reject(new Error(
          `${name} exited (${code} ${signal}) without a '${kind}' report; reports: ${JSON.stringify(reports)}\nstderr:\n${stderr}`)));
      });
    },
    send(line) {
      child.stdin!.write(`${line}\n`);
    },
    exited,
    stderr: () => stderr,
  };
}
