#!/usr/bin/env node
// Kill trials: in each, a parent and a forked child (test/fixtures/kill-pair.js) stream
// messages both ways; once both stream, one of them, chosen at random, is killed with SIGKILL
// after a random delay. The survivor must get 'close' and exit by itself, and what it received
// must be a gap-free, duplicate-free, uncorrupted prefix of what was sent. After all trials,
// nothing may be left in /dev/shm or in the trials' own temp directory (memfds have no name;
// this checks it).
//
// Usage: node scripts/stress-kill.js [trials=100] [--json]
// Exit status 0 when every trial passed. Prints a summary (JSON with --json).
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const trials = Number(process.argv[2] ?? 100);
const json = process.argv.includes('--json');
const fixture = path.join(__dirname, '..', 'test', 'fixtures', 'kill-pair.js');
// Generous: a hang guard, not a performance bar. "Prompt" close latencies are reported.
const kDeadlineMs = 20000;
// The trials' processes get a temp directory of their own, so that what other processes on
// this machine create does not count as our leftovers.
const tmpdir = fs.mkdtempSync(path.join(os.tmpdir(), 'crossport-kill-'));

// True while `pid` runs. An orphan that exited may stay a zombie when PID 1 does not reap
// (containers): a zombie counts as gone.
function running(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const listing = (dir) => {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
};

function trial(index) {
  return new Promise((resolve) => {
    const parent = spawn(process.execPath, [fixture], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TMPDIR: tmpdir },
    });
    const result = { index, victim: null, survivor: null, delayMs: 0, closeLatencyMs: null, failures: [] };
    const pids = {};
    let output = '';
    let stderr = '';
    let killedAt = 0;
    let survivorReport = null;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      if (survivorReport === null) result.failures.push('survivor never reported close');
      if (stderr !== '') result.failures.push(`stderr: ${stderr.slice(0, 500)}`);
      // Everyone must be gone: the survivor exits by itself once its port is closed.
      for (const [role, pid] of Object.entries(pids)) {
        if (running(pid)) {
          result.failures.push(`${role} ${pid} still running`);
          process.kill(pid, 'SIGKILL');
        }
      }
      resolve(result);
    };
    const deadline = setTimeout(() => {
      result.failures.push(`no close within ${kDeadlineMs} ms`);
      for (const pid of Object.values(pids)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      finish();
    }, kDeadlineMs);
    parent.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
    parent.stdout.setEncoding('utf8').on('data', (chunk) => {
      output += chunk;
      let newline;
      while ((newline = output.indexOf('\n')) >= 0) {
        const line = output.slice(0, newline);
        output = output.slice(newline + 1);
        const report = JSON.parse(line);
        if (report.kind === 'ready') {
          pids[report.role] = report.pid;
          if (pids.parent && pids.child && result.victim === null) {
            result.victim = Math.random() < 0.5 ? 'parent' : 'child';
            result.survivor = result.victim === 'parent' ? 'child' : 'parent';
            result.delayMs = Math.floor(Math.random() * 300);
            setTimeout(() => {
              killedAt = Date.now();
              process.kill(pids[result.victim], 'SIGKILL');
            }, result.delayMs);
          }
        } else if (report.kind === 'closed') {
          if (report.role !== result.survivor || killedAt === 0) {
            result.failures.push(`unexpected close: ${line}`);
            continue;
          }
          survivorReport = report;
          result.closeLatencyMs = Date.now() - killedAt;
          result.received = report.received;
          if (report.gaps !== 0) result.failures.push(`${report.gaps} gaps or duplicates`);
          if (report.corrupt !== 0) result.failures.push(`${report.corrupt} corrupt messages`);
        }
      }
    });
    // The parent process ends when it is the victim (killed) or once its port closed.
    parent.on('close', () => {
      if (result.victim === null) return finish();
      // Then the child must be gone too, killed or exiting by itself once its port closed, which
      // can take it a few ms more than the parent's end: wait until it is (or the deadline). When
      // the parent was killed, the orphaned child's report may come before or after that end.
      const childGone = () => waitGone(pids.child, finish);
      if (result.victim === 'parent') whenReported(childGone);
      else childGone();
    });
    const whenReported = (then) => {
      if (finished) return;
      if (survivorReport !== null) return then();
      setTimeout(whenReported, 5, then);
    };
  });
}

// Calls `done` once `pid` has exited (the orphan is not our child: poll for it).
function waitGone(pid, done) {
  const poll = setInterval(() => {
    if (!running(pid)) {
      clearInterval(poll);
      clearTimeout(giveUp);
      done();
    }
  }, 5);
  const giveUp = setTimeout(() => {
    clearInterval(poll);
    done();
  }, 5000);
}

async function main() {
  const shmBefore = listing('/dev/shm');
  const results = [];
  for (let i = 0; i < trials; i++) results.push(await trial(i));
  const failed = results.filter((r) => r.failures.length > 0);
  const latencies = results.map((r) => r.closeLatencyMs).filter((v) => v !== null).sort((a, b) => a - b);
  const leftovers = {
    devShm: listing('/dev/shm').filter((name) => !shmBefore.includes(name)),
    tmp: listing(tmpdir),
  };
  fs.rmSync(tmpdir, { recursive: true, force: true });
  const summary = {
    trials,
    passed: trials - failed.length,
    parentKilled: results.filter((r) => r.victim === 'parent').length,
    childKilled: results.filter((r) => r.victim === 'child').length,
    receivedBySurvivor: { min: Math.min(...results.map((r) => r.received ?? 0)), max: Math.max(...results.map((r) => r.received ?? 0)) },
    closeLatencyMs: latencies.length ? { p50: latencies[Math.floor(latencies.length / 2)], max: latencies[latencies.length - 1] } : null,
    leftovers,
    failures: failed.map((r) => ({ trial: r.index, victim: r.victim, failures: r.failures })),
  };
  const ok = failed.length === 0 && leftovers.devShm.length === 0 && leftovers.tmp.length === 0;
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok, ...summary })}\n`);
  } else {
    console.log(JSON.stringify(summary, null, 2));
    console.log(ok ? 'all kill trials passed' : 'KILL TRIALS FAILED');
  }
  process.exitCode = ok ? 0 : 1;
}

main();
