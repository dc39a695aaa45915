// Runs fixture scripts as real child processes and collects what they report.
import { spawn } from 'node:child_process';
import * as path from 'node:path';

export const fixture = (name: string): string => path.join(__dirname, 'fixtures', name);

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Each stdout line that parses as JSON. */
  reports: any[];
}

/** Runs `node test/fixtures/<name> ...args` to completion (killed after `timeoutMs`). */
export function runFixture(name: string, args: string[] = [], timeoutMs = 50000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const reports: any[] = [];
      for (const line of stdout.split('\n')) {
        try {
          if (line.startsWith('{') || line.startsWith('[')) reports.push(JSON.parse(line));
        } catch {
          // not a report line
        }
      }
      resolve({ code, signal, stdout, stderr, reports });
    });
  });
}

/** The single report with `kind`, failing loudly if the fixture did not produce it. */
export function report(run: Run, kind: string): any {
  const found = run.reports.find((r) => r.kind === kind);
  if (found === undefined) {
    throw new Error(`no '${kind}' report; exit ${run.code} ${run.signal}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  }
  return found;
}
