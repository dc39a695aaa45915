// Worker: the same parent code and worker file run once with worker_threads.Worker and once with
// crossport's Worker (worker-compare.js, worker-task.js); what the parents observed must be equal.
// Then what only a worker process has (worker-process.js).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

import { fixture, report, runFixture, type Run } from './helpers';

async function both(scenario: string, timeoutMs?: number): Promise<{ threads: any; crossport: any; runs: Run[] }> {
  const threads = await runFixture('worker-compare.js', ['threads', scenario], timeoutMs);
  const crossport = await runFixture('worker-compare.js', ['crossport', scenario], timeoutMs);
  return { threads: report(threads, 'observed').observed, crossport: report(crossport, 'observed').observed, runs: [threads, crossport] };
}

describe('Worker: worker_threads and crossport observed alike', () => {
  test('workerData, argv and messages both ways; online first, then a natural exit', async () => {
    const { threads, crossport } = await both('basic');
    expect(crossport).toEqual(threads);
    const echoes = ['early', 'x', 'y', 'z'].map((echo) => ({ message: { echo } }));
    expect(crossport.events).toEqual(['online', 'values', ...echoes, { exit: 0 }]);
    expect(crossport.values).toMatchObject({ isMainThread: false, threadId: true, mapEntries: [['k', 1]], bytesType: 'Uint16Array', argv: ['a', '1'] });
    const limits = { maxYoungGenerationSizeMb: 48, maxOldGenerationSizeMb: 256, stackSizeMb: 4 };
    expect(crossport.values.resourceLimits).toEqual({ ...limits, codeRangeSizeMb: 0 });
    expect(crossport.before.limits).toEqual(limits);
    expect(crossport.after).toEqual({ threadId: -1, limits: {} });
  });

  test('a port and an ArrayBuffer in the transfer list; a buffer and a new port back', async () => {
    const { threads, crossport } = await both('transfer');
    expect(crossport).toEqual(threads);
    expect(crossport).toMatchObject({ detachedHere: true, back: [4, 3, 2, 1], overNewPort: 'over a port made in the worker' });
    expect(crossport.viaPort).toHaveLength(2);
  });

  test("an uncaught exception: 'error' with the worker's error (class, code, own properties, cause), then 'exit' 1", async () => {
    const { threads, crossport } = await both('throw');
    expect(crossport).toEqual(threads);
    expect(crossport.messages).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
    expect(crossport.error).toMatchObject({ ctor: 'TypeError', code: 'E_TASK', detail: { attempt: 3 }, cause: { ctor: 'RangeError' } });
    expect(crossport.last.map((event: any) => Object.keys(event)[0])).toEqual(['error', 'exit']);
    expect(crossport.last[1]).toEqual({ exit: 1 });
  });

  test('a thrown non-Error value and an unhandled rejection reach the parent the same way', async () => {
    for (const scenario of ['throwValue', 'reject']) {
      const { threads, crossport } = await both(scenario);
      expect(crossport).toEqual(threads);
      expect(crossport.last[1]).toEqual({ exit: 1 });
    }
  });

  // Node emits a thread's 'error' when its internal port delivers it and its messages when the
  // public port does: racy, but deterministic when this parent is blocked until the worker is gone.
  test("'error' among the messages, the parent blocked inside 'online': 'error' first, then the messages", async () => {
    const { threads, crossport } = await both('errorOrderInOnline');
    expect(crossport).toEqual(threads);
    expect(crossport.events).toEqual(['online', { error: 'after the messages' }, { messages: [0, 19] }, { exit: 1 }]);
  });

  test("'error' among the messages, the parent blocked from the start: the messages, then 'error'", async () => {
    const { threads, crossport } = await both('errorOrderBlocked');
    // Node then emits 'online' after the messages too; crossport's 'online' always comes first.
    const withoutOnline = (events: unknown[]) => events.filter((event) => event !== 'online');
    expect(withoutOnline(crossport.events)).toEqual(withoutOnline(threads.events));
    expect(crossport.events).toEqual(['online', { messages: [0, 19] }, { error: 'after the messages' }, { exit: 1 }]);
  });

  test("an exception the worker's own 'uncaughtException' listener handles is not an 'error'", async () => {
    const { threads, crossport } = await both('handled');
    expect(crossport).toEqual(threads);
    expect(crossport.events).toContainEqual({ message: { handled: 'handled in the worker' } });
  });

  test('process.exit(7) in the worker', async () => {
    const { threads, crossport } = await both('exit7');
    expect(crossport).toEqual(threads);
    expect(crossport.events).toEqual(['online', { message: 'one' }, { message: 'two' }, { exit: 7 }]);
  });

  test('terminate() while the worker floods: resolves with 1, what arrived has no gap', async () => {
    const { threads, crossport } = await both('terminateFlood');
    expect(crossport).toEqual(threads);
    expect(crossport).toEqual({ resolved: 1, gapFree: true, atLeast: true, tail: ['online', { exit: 1 }] });
  });

  test('workerData larger than the ring, and a large ArrayBuffer moved with it', async () => {
    const { threads, crossport } = await both('bigData');
    expect(crossport).toEqual(threads);
    expect(crossport).toEqual({ message: { length: 24 << 20, last: 0x5a, sum: expect.any(Number), moved: 9 << 20, movedLast: 0xa5 }, movedHere: 0, code: 0 });
  });

  test("performance.eventLoopUtilization(): zeros before 'online' and after 'exit', Node's shape and arithmetic between", async () => {
    const { threads, crossport } = await both('eventLoopUtilization');
    expect(crossport).toEqual(threads);
    expect(crossport).toMatchObject({ sane: true, cumulative: true, arithmetic: true, sinceCovers: true });
    expect(crossport.before).toEqual({ idle: 0, active: 0, utilization: 0 });
  });

  test("an exception thrown by the worker's parentPort listener: 'error', then 'exit' 1", async () => {
    const { threads, crossport } = await both('throwInListener');
    expect(crossport).toEqual(threads);
    expect(crossport.last.map((event: any) => Object.keys(event)[0])).toEqual(['error', 'exit']);
  });

  test('the stack: as deep a recursion as in a thread, by default (4 MiB) and with resourceLimits.stackSizeMb', async () => {
    const { threads, crossport } = await both('recursion');
    for (const size of ['default', '1', '2']) {
      expect(crossport[size].error).toBe('RangeError');
      expect(crossport[size].stackSizeMb).toBe(threads[size].stackSizeMb);
      // The frames below the script differ a little between a thread and a process.
      expect(crossport[size].depth / threads[size].depth).toBeGreaterThan(0.9);
      expect(crossport[size].depth / threads[size].depth).toBeLessThan(1.1);
    }
  });

  test('terminate() at once, twice and with the deprecated callback; a worker that has exited ignores calls', async () => {
    const { threads, crossport } = await both('lifecycle');
    expect(crossport).toEqual(threads);
    // Stopped before it ran any JavaScript: exit code 0 (worker_threads' choice). The callback is
    // deprecated (a warning), and from Node 26 on ignored, without a warning.
    const callbackTaken = Number(process.versions.node.split('.')[0]) < 26;
    expect(crossport).toEqual({
      first: 0,
      second: 0,
      callback: callbackTaken ? { error: null, code: 0 } : 'not called',
      afterExit: { threadId: -1 },
      events: [{ exit: 0 }],
      warnings: callbackTaken ? ['DEP0132'] : [],
    });
  });

  test("unref() lets the parent exit while the worker runs (and the worker process goes with it)", async () => {
    const { threads, crossport } = await both('unref');
    expect(crossport.exitedWith).toBe(0);
    expect({ ...crossport, pid: null }).toEqual(threads);
    try {
      await expectGone(crossport.pid);
    } finally {
      killIfThere(crossport.pid);
    }
  });

  test('a worker that runs out of heap: ERR_WORKER_OUT_OF_MEMORY, then exit 1', async () => {
    const { threads, crossport } = await both('outOfMemory');
    expect(crossport).toEqual(threads);
    expect(crossport.events).toEqual([
      'online',
      { message: 'allocating' },
      {
        error: expect.objectContaining({
          ctor: 'Error',
          name: 'Error',
          code: 'ERR_WORKER_OUT_OF_MEMORY',
          message: 'Worker terminated due to reaching memory limit: JS heap out of memory',
        }),
      },
      { exit: 1 },
    ]);
  });

  test('100 workers started and ended in a loop leave no process, fd or memory behind', async () => {
    // A process start takes some 0.1 s here, and several times that under ASan.
    const { threads, crossport } = await both('loop', 240000);
    expect(crossport).toEqual(threads);
    expect(crossport).toEqual({ codes: [0, 1], fdsLeft: 0, childrenLeft: 0, memoryGrowthUnder1MiB: true });
  }, 500000);

  test('an ES module given as a file: URL, a script to evaluate, a data: URL', async () => {
    for (const scenario of ['esm', 'eval', 'dataUrl']) {
      const { threads, crossport } = await both(scenario);
      expect(crossport).toEqual(threads);
      expect(crossport.code).toBe(0);
      expect(crossport.message.workerData).toBeDefined();
    }
  });

  test('a worker file that does not exist: online, then its MODULE_NOT_FOUND as the error', async () => {
    const { threads, crossport } = await both('missingFile');
    expect(crossport).toEqual(threads);
    expect(crossport.events[1].error.code).toBe('MODULE_NOT_FOUND');
  });

  test("stdio: stdin and stdout as streams; by default the worker's stderr is ours", async () => {
    const { threads, crossport, runs } = await both('stdio');
    expect(crossport).toEqual(threads);
    expect(crossport).toEqual({ input: 'fed through stdin', captured: 'worker says hello on stdout\n', stdinIsWritable: true });
    for (const run of runs) {
      expect(run.stderr).toBe('worker says hello on stderr\n');
      expect(run.stdout.split('\n').filter((line) => line && !line.startsWith('{'))).toEqual([]);
    }
  });

  test("stdio by default: the worker's output appears in ours, its stdin is empty", async () => {
    const { threads, crossport, runs } = await both('stdioDefault');
    expect(crossport).toEqual(threads);
    expect(crossport).toEqual({ input: '' });
    for (const run of runs) {
      expect(run.stderr).toBe('worker says hello on stderr\n');
      expect(run.stdout.split('\n').filter((line) => line && !line.startsWith('{'))).toEqual(['worker says hello on stdout']);
    }
  });

  test('a worker that writes 2 MB to stdout and leaves at once (exit, throw, natural end): worker.stdout gets all of it', async () => {
    const { threads, crossport } = await both('stdoutFlood');
    expect(crossport).toEqual(threads);
    const all = { bytes: 20000 * 'line  \n'.length + 20000 * 90 + 'END\n'.length + [...Array(20000).keys()].join('').length, tail: 'END\n', readable: true };
    // As in a thread, the worker's process.stdout/stderr are streams, not TTYs, without an fd.
    const stderr = 'stderr: isTTY undefined undefined fd undefined\n';
    expect(crossport).toEqual({ exit: { code: 0, ...all, stderr }, natural: { code: 0, ...all, stderr }, throw: { code: 1, ...all, stderr } });
  });

  test("by default the worker's output is piped into ours, all of it, in order", async () => {
    const { threads, crossport, runs } = await both('stdoutFloodDefault');
    expect(crossport).toEqual(threads);
    expect(crossport).toEqual({ code: 0, stdoutIsStream: true, stderrIsStream: true });
    // What this parent writes from its 'exit' listener may come before the end of the worker's
    // output, which is still flowing through the pipe (in Node too): set it aside.
    const ours = (run: Run) => run.stdout.split('\n').filter((line) => line !== 'parent: at exit' && !line.startsWith('{'));
    const [threadsRun, crossportRun] = runs;
    expect(ours(crossportRun)).toEqual(ours(threadsRun));
    expect(ours(crossportRun)).toEqual(['parent: before', ...[...Array(2000).keys()].map((i) => `line ${i} ${'x'.repeat(90)}`), 'END', '']);
    expect(crossportRun.stdout).toContain('parent: at exit\n');
    expect(crossportRun.stderr).toBe(threadsRun.stderr);
  });

  test('setEnvironmentData(): each Worker gets a copy of the data as it was when it was made; a value that cannot be cloned throws', async () => {
    const { threads, crossport } = await both('environmentData');
    expect(crossport).toEqual(threads);
    expect(crossport.seen).toEqual({ k: { list: [1, 'two'], map: [['m', 3]] }, later: null });
    expect(crossport.thrown).toMatchObject({ ctor: 'DOMException', name: 'DataCloneError' });
  });

  test("resourceLimits with no limit given: V8's figures, in the worker and from the Worker", async () => {
    const { threads, crossport } = await both('defaultLimits');
    expect(crossport).toEqual(threads);
    expect(crossport.inWorker.maxYoungGenerationSizeMb).toBeGreaterThan(0);
    expect(crossport.inWorker.maxOldGenerationSizeMb).toBeGreaterThan(0);
  });

  test('markAsUntransferable(): an ArrayBuffer so marked (and the pool of small Buffers) in a transfer list, as this Node treats it', async () => {
    const { threads, crossport } = await both('untransferable');
    expect(crossport).toEqual(threads);
    expect(crossport.plain).toEqual({ threw: null, left: 0 });
    expect(crossport.pooledStillUsable).toBe('after');
  });

  test('bad arguments: the same errors (class, name, code, message) from both constructors', async () => {
    const run = await runFixture('worker-arguments.js');
    const result = report(run, 'arguments');
    for (const { name, threads, crossport } of result.cases) {
      expect({ name, error: crossport }).toEqual({ name, error: threads });
      expect({ name, threw: threads.threw }).toEqual({ name, threw: undefined });
    }
    for (const { name, childProcess, crossport } of result.processOptions) {
      expect({ name, error: crossport }).toEqual({ name, error: childProcess });
      expect({ name, threw: childProcess.threw }).toEqual({ name, threw: undefined });
    }
    const own = Object.fromEntries(result.ownOptions.map(({ name, crossport }: any) => [name, crossport]));
    expect(own['env: worker_threads.SHARE_ENV']).toMatchObject({ ctor: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
    expect(own['killTimeout: negative']).toMatchObject({ ctor: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
    expect(own['killTimeout: a string']).toMatchObject({ ctor: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  });
});

describe("crossport's worker exports", () => {
  test("hold worker_threads' values in a thread, the Worker's in a worker process, and main-thread values elsewhere", async () => {
    const run = await runFixture('worker-exports.js');
    const exports = report(run, 'exports');
    expect(exports.main).toEqual({ isMainThread: true, parentPort: null, workerData: null, threadId: 0, resourceLimits: {} });
    const sameAsWorkerThreads = { isMainThread: false, sameParentPort: true, sameWorkerData: true, sameThreadId: true, sameResourceLimits: true };
    expect(exports.thread).toEqual(sameAsWorkerThreads);
    expect(exports.threadInProcess).toEqual(sameAsWorkerThreads);
    expect(exports.process).toEqual({
      isMainThread: false,
      parentPortIsCrossportPort: true,
      workerData: { role: 'process', expectThreadId: 1 },
      threadIdMatches: true,
      // Those given, and the young generation V8 gave (the heap limit less the old generation).
      resourceLimits: { maxYoungGenerationSizeMb: expect.any(Number), maxOldGenerationSizeMb: 64, codeRangeSizeMb: 0, stackSizeMb: 2 },
      workerThreadsIsMainThread: true,
    });
    expect(exports.process.resourceLimits.maxYoungGenerationSizeMb).toBeGreaterThan(0);
    expect(exports.threadId).toBe(1);
  });
});

async function process_(scenario: string): Promise<any> {
  return report(await runFixture('worker-process.js', [scenario]), 'observed').observed;
}

/** Waits (at most 20 s) for a process to be gone. */
async function expectGone(pid: number): Promise<void> {
  expect(Number.isInteger(pid)).toBe(true);
  for (let waited = 0; fs.existsSync(`/proc/${pid}`) && waited < 400; waited++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
}

function killIfThere(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone, as it should be
  }
}

const killedBy = (signal: string, exit: number) => [
  { error: { ctor: 'Error', name: 'Error', code: 'ERR_WORKER_KILLED', message: `Worker process was killed by signal ${signal}`, signal } },
  { exit },
];

describe('Worker: what only a process has', () => {
  test("getHeapStatistics(), cpuUsage(), getHeapSnapshot(), threadName; ERR_WORKER_NOT_RUNNING once it has exited", async () => {
    const notRunning = { ctor: 'Error', name: 'Error', code: 'ERR_WORKER_NOT_RUNNING', message: 'Worker instance not running' };
    expect(await process_('diagnostics')).toEqual({
      statisticsKeys: true,
      heapLimitMb: expect.any(Number),
      cpu: ['number', 'number', true, true],
      badPrev: { ctor: 'RangeError', name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: expect.stringContaining('"prev.user" is out of range') },
      snapshotNodes: true,
      threadName: 'diagnosed',
      threadNameAfter: null,
      after: [notRunning, notRunning, notRunning],
    });
  });

  test("a SIGKILLed worker: 'error' then 'exit' 137, every message posted before it there", async () => {
    const observed = await process_('sigkill');
    expect(observed).toEqual({ messages: 1001, tail: killedBy('SIGKILL', 137), complete: true });
  });

  test('a worker that posts a burst and dies at once: the whole burst, then the error and the exit', async () => {
    const observed = await process_('burstThenDie');
    expect(observed).toEqual({ messages: 5000, tail: killedBy('SIGKILL', 137), complete: true });
  });

  test("a message that cannot be received here (a SharedArrayBuffer): 'messageerror', then the next message", async () => {
    const observed = await process_('messageerror');
    expect(observed).toEqual({ errors: [{ ctor: 'DOMException', name: 'DataCloneError' }], events: ['online', { message: 'after' }, { exit: 0 }] });
  });

  test('a segmentation fault (a real stack overrun), a SIGSEGV and an abort: the parent hears of each', async () => {
    expect(await process_('segfault')).toEqual({ messages: 3, tail: killedBy('SIGSEGV', 139) });
    expect(await process_('selfSegv')).toEqual({ messages: 3, tail: killedBy('SIGSEGV', 139) });
    expect(await process_('abort')).toEqual({ messages: 3, tail: killedBy('SIGABRT', 134) });
  });

  test('cwd, env, name and (as root) uid/gid', async () => {
    const observed = await process_('options');
    expect(observed.cwd).toBe(observed.expectedCwd);
    expect(observed.marker).toBe('from options.env');
    expect(observed.channel).toEqual(['CROSSPORT_TEST_MARKER']);
    expect(observed.title).toBe('task-name');
    if (observed.root) expect([observed.uid, observed.gid]).toEqual([65534, 65534]);
  });

  test('terminate() on a worker that ignores SIGTERM: SIGKILL after killTimeout, exit code 1', async () => {
    const observed = await process_('killTimeout');
    expect(observed).toEqual({ code: 1, events: ['online', { message: 'ready' }, { message: 'got SIGTERM' }, { exit: 1 }] });
  });

  test('terminate() with a killSignal the worker handles by leaving: its own exit code', async () => {
    const observed = await process_('killSignal');
    expect(observed).toEqual({ code: 3, events: ['online', { message: 'ready' }, { message: 'got SIGINT' }, { exit: 3 }] });
  });

  test('a worker busy in a loop does not outlive its parent', async () => {
    // The parent reports its worker's pid and waits; we kill the parent.
    const parent = spawn(process.execPath, [fixture('worker-process.js'), 'parentKilled'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    const line = await new Promise<string>((resolve, reject) => {
      parent.stdout.setEncoding('utf8').on('data', (chunk) => {
        stdout += chunk;
        if (stdout.includes('\n')) resolve(stdout.split('\n')[0]);
      });
      parent.on('exit', (code) => reject(new Error(`the parent exited (${code}) before reporting: ${stdout}`)));
    });
    const { pid } = JSON.parse(line).observed;
    parent.kill('SIGKILL');
    try {
      await expectGone(pid);
    } finally {
      killIfThere(pid);  // a worker that outlived its parent must not outlive the test
    }
  });

  test("a worker process refuses a control channel its parent did not make (it never runs what came on it)", async () => {
    const run = await runFixture('worker-stray-control.js');
    expect(report(run, 'stray')).toEqual({
      kind: 'stray',
      code: 1,
      signal: null,
      heard: [],
      output: 'crossport: no control channel from the parent process',
    });
  });

  test("an execArgv flag Node refuses: 'error' ERR_WORKER_INVALID_EXEC_ARGV", async () => {
    const observed = await process_('unknownFlag');
    expect(observed.events).toEqual([
      { error: { ctor: 'Error', name: 'Error', code: 'ERR_WORKER_INVALID_EXEC_ARGV', message: 'Initiated Worker with invalid execArgv flags: --no-such-flag-here' } },
      { exit: 9 },
    ]);
  });

  test("a process that cannot start: 'error' ERR_WORKER_INIT_FAILED, then 'exit' 1", async () => {
    const observed = await process_('noSuchCwd');
    expect(observed.events).toEqual([
      { error: { ctor: 'Error', name: 'Error', code: 'ERR_WORKER_INIT_FAILED', message: expect.stringContaining('Worker initialization failure: spawn') } },
      { exit: 1 },
    ]);
  });

  test("a Worker 'message' listener that throws: this process's uncaught exception; the worker goes on", async () => {
    const observed = await process_('listenerThrows');
    expect(observed).toEqual({ caught: ['thrown by a Worker listener'], events: ['online', { message: 'one' }, { message: 'two' }, { exit: 7 }] });
  });
});
