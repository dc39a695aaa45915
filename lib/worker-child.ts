// The main module of a Worker's process (lib/worker.ts starts it with fork()). Before any user
// code runs it takes, as a worker thread's bootstrap does (Node's lib/internal/main/
// worker_thread.js), the script to run and its workerData from the control channel (whose end
// this process inherits as two fds); then it sets what crossport's worker exports hold, reports
// an uncaught exception to the parent as a worker thread does, says it is online, and runs the
// script. Its process.stdin/stdout/stderr are streams on the control channel, as a thread's are
// on its internal port.
import Module from 'node:module';
import { constants } from 'node:os';
import { join } from 'node:path';
import type * as v8 from 'node:v8';
import type * as vm from 'node:vm';

import type * as errorSerdes from './error-serdes';
import { lazy } from './lazy';
import { native } from './native';
import { createPort, MessageChannel, type MessagePort, receiveMessageOnPort } from './port';
import { parentPort } from './process';
import { enterWorker, type ResourceLimits } from './worker-context';
import {
  kControlFds,
  kStackBufferKb,
  type LoadScript,
  messageTypes,
  pushChunks,
  ReadableWorkerStdio,
  type StdioPort,
  WritableWorkerStdio,
} from './worker-io';

const MB = 1024 * 1024;
// node:v8 only when the parent asks for heap figures, node:vm only for eval.
const v8Module = lazy<typeof v8>('node:v8');
const vmModule = lazy<typeof vm>('node:vm');
// Needed at an uncaught exception only: loaded once the script has started (see run()), off the
// path to the worker's first message, or then.
let errorSerdesModule: typeof errorSerdes | undefined;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const loadErrorSerdes = () => (errorSerdesModule ??= require('./error-serdes') as typeof errorSerdes);

function fail(reason: string): never {
  process.stderr.write(`crossport: ${reason}\n`);
  process.exit(1);
}

function main(): void {
  // argv: [node, this file, the worker's script (shown by ps), the control channel's side]
  const side = Number(process.argv[3]);
  if (parentPort === null || (side !== 0 && side !== 1)) fail('worker-child.js runs only as the process of a Worker');
  const carrier = parentPort;
  // As parentPort's: the fds are used only once checked to be a link's whose socket pair our
  // parent made.
  let control: MessagePort;
  try {
    const handle = native.adopt(kControlFds[0], kControlFds[1], side, process.ppid);
    if (handle === null) fail('no control channel from the parent process');
    control = createPort(handle);
  } catch (error) {
    fail(`no control channel (${(error as Error).message})`);
  }
  // The script was posted before this process started: it waits in the channel, unless it was
  // too large for the ring and the parent is still writing it.
  const take = (load: unknown) => {
    if (!isLoadScript(load)) fail('the parent sent no script to run');
    run(carrier, control, load);
  };
  const entry = receiveMessageOnPort(control);
  if (entry !== undefined) take(entry.message);
  else control.once('message', take);
}

function isLoadScript(value: unknown): value is LoadScript {
  const load = value as LoadScript | null;
  return typeof load === 'object' && load !== null && load.type === messageTypes.LOAD_SCRIPT &&
    typeof load.filename === 'string' && Number.isInteger(load.noticeFd) && Number.isInteger(load.threadId) &&
    Array.isArray(load.argv) && Array.isArray(load.execArgv) && load.environmentData instanceof Map &&
    typeof load.resourceLimits === 'object' && load.resourceLimits !== null;
}

function run(carrier: MessagePort, control: MessagePort, load: LoadScript): void {
  // A worker thread cannot outlive its process; nor does this one outlive its parent: the
  // kernel kills it when the parent goes (Linux), and the control channel's end says so too.
  native.setParentDeathSignal(constants.signals.SIGKILL);
  if (process.ppid !== load.parentPid) process.exit(1);
  control.on('close', () => process.exit(1));
  native.watchHeapLimit(load.noticeFd);

  const resourceLimits = runningLimits(load.resourceLimits, stackSize(load.resourceLimits.stackSizeMb ?? -1, load.execArgv));
  enterWorker({ parentPort: carrier, workerData: load.workerData, threadId: load.threadId, resourceLimits, environmentData: load.environmentData });
  const stdio = defineStdio(control, load.hasStdin);
  control.on('message', (message) => onControl(control, stdio, message));
  control.unref();
  // What a worker thread sees: the execArgv it was given (not our V8 flags), argv after the script.
  process.execArgv.splice(0, process.execArgv.length, ...load.execArgv);
  const script = load.doEval === 'module' ? [] : [load.doEval === 'classic' ? '[worker eval]' : load.filename];
  process.argv.splice(1, process.argv.length - 1, ...script, ...load.argv);
  if (load.name) process.title = load.name;
  const reportFatal = reportUncaughtExceptions(control);

  control.postMessage({ type: messageTypes.UP_AND_RUNNING, resourceLimits });
  switch (load.doEval) {
    case 'classic':
      evalScript('[worker eval]', load.filename);
      break;
    case 'module':
      importModule(load.filename).catch((error: unknown) => reportFatal(error, true));
      break;
    default:
      (Module as unknown as { runMain(): void }).runMain();
  }
  // Ready before an exception can come from a callback (a file cannot be read without a free fd).
  setImmediate(loadErrorSerdes);
}

interface WorkerStdio {
  stdin: ReadableWorkerStdio;
  stdout: WritableWorkerStdio;
  stderr: WritableWorkerStdio;
}

/** The worker's stdio, made on the call; `made()` says whether it was. */
type StdioAccess = (() => WorkerStdio) & { made(): boolean };

/**
 * process.stdin/stdout/stderr as a worker thread has them (Node's is_not_main_thread.js): made
 * on first use, streams on the control channel. What the worker wrote before its end is posted
 * at 'exit' (flushSync), and what ports queue is written out after it.
 */
function defineStdio(control: MessagePort, hasStdin: boolean): StdioAccess {
  let stdio: WorkerStdio | undefined;
  const make = (): WorkerStdio => {
    if (stdio !== undefined) return stdio;
    const owner: StdioPort = { port: control, waiting: 0 };
    stdio = {
      stdin: new ReadableWorkerStdio(owner, 'stdin'),
      stdout: new WritableWorkerStdio(owner, 'stdout'),
      stderr: new WritableWorkerStdio(owner, 'stderr'),
    };
    if (!hasStdin) stdio.stdin.push(null);
    const made = stdio;
    process.on('exit', () => {
      made.stdout.wantsMoreData();
      made.stderr.wantsMoreData();
      native.stop();
    });
    return stdio;
  };
  for (const name of ['stdin', 'stdout', 'stderr'] as const) {
    Object.defineProperty(process, name, { configurable: true, enumerable: true, get: () => make()[name] });
  }
  return Object.assign(make, { made: () => stdio !== undefined });
}

/** What the worker process does with what its Worker sends on the control channel. */
function onControl(control: MessagePort, stdio: StdioAccess, message: unknown): void {
  if (typeof message !== 'object' || message === null) return;
  const { type, stream } = message as { type?: unknown; stream?: unknown };
  if (type === messageTypes.STDIO_PAYLOAD && stream === 'stdin') {
    pushChunks(stdio().stdin, (message as { chunks?: unknown }).chunks);
  } else if (type === messageTypes.STDIO_WANTS_MORE_DATA && (stream === 'stdout' || stream === 'stderr')) {
    // Streams not made yet have written nothing that waits (the parent asks once at the start).
    if (stdio.made()) stdio()[stream].wantsMoreData();
  } else if (type === messageTypes.REQUEST) {
    const { id, what, options } = message as { id?: unknown; what?: unknown; options?: unknown };
    try {
      const [value, transfer] = answer(what, options);
      control.postMessage({ type: messageTypes.RESPONSE, id, value }, transfer);
    } catch (error) {
      control.postMessage({ type: messageTypes.RESPONSE, id, error });
    }
  }
}

/** The answer to a Worker's question: getHeapStatistics(), cpuUsage(), getHeapSnapshot(). */
function answer(what: unknown, options: unknown): [unknown, MessagePort[]] {
  switch (what) {
    case 'heapStatistics':
      return [v8Module().getHeapStatistics(), []];
    case 'cpuUsage':
      return [process.cpuUsage(), []];
    case 'heapSnapshot': {
      // The snapshot's chunks go on a channel of their own; its close ends the parent's stream.
      const { port1, port2 } = new MessageChannel();
      const snapshot = v8Module().getHeapSnapshot(options as v8.HeapSnapshotOptions);
      snapshot.on('data', (chunk: Buffer) => port1.postMessage(chunk));
      snapshot.on('end', () => port1.close());
      snapshot.on('error', () => port1.close());
      return [port2, [port2]];
    }
    default:
      throw new Error(`crossport: no answer to ${String(what)}`);
  }
}

/**
 * The limits as a worker thread reports them: those given, and for the heap limits left to V8,
 * what V8 gives. V8 reports only the sum of the two heap generations (heap_size_limit), so one of
 * them left to V8 is known from the other; when both are, the young generation is V8's default
 * (as a thread's), the old one the rest. The code range has no flag in a process: V8's default, 0.
 */
function runningLimits(given: ResourceLimits, stackSizeMb: number): Required<ResourceLimits> {
  const [heapLimit, defaultYoung] = native.heapLimits();
  const heapMb = heapLimit / MB;
  let young = given.maxYoungGenerationSizeMb ?? -1;
  let old = given.maxOldGenerationSizeMb ?? -1;
  if (young > 0 && old <= 0) old = heapMb - 3 * Math.max(1, Math.ceil(young / 3));
  else if (old > 0 && young <= 0) young = heapMb - Math.ceil(old);
  else if (young <= 0 && old <= 0) [young, old] = [defaultYoung / MB, heapMb - defaultYoung / MB];
  return {
    maxYoungGenerationSizeMb: young,
    maxOldGenerationSizeMb: old,
    codeRangeSizeMb: given.codeRangeSizeMb !== undefined && given.codeRangeSizeMb > 0 ? given.codeRangeSizeMb : 0,
    stackSizeMb,
  };
}

/**
 * Gives JavaScript the stack a worker thread of `mb` MiB has (the top of this process's stack,
 * less Node's 192 KiB guard), unless execArgv sets V8's --stack-size itself. The size in effect,
 * in MiB as resourceLimits.stackSizeMb counts it; -1 when unknown.
 */
function stackSize(mb: number, execArgv: string[]): number {
  const index = execArgv.findIndex((arg) => /^--stack[-_]size(=|$)/.test(arg));
  if (index >= 0) {
    const kib = Number(execArgv[index].includes('=') ? execArgv[index].split('=')[1] : execArgv[index + 1]);
    return Number.isFinite(kib) ? (kib + kStackBufferKb) / 1024 : -1;
  }
  const granted = native.setStackSize(mb * 1024 - kStackBufferKb);
  return granted > 0 ? (granted + kStackBufferKb) / 1024 : -1;
}

type FatalException = (error: unknown, fromPromise: boolean) => boolean;

/**
 * An uncaught exception ends the worker as it ends a worker thread (workerOnGlobalUncaughtException
 * in Node's worker_thread.js): process 'uncaughtException' listeners may handle it; if none does,
 * the exit code is 1, 'exit' is emitted, the exception goes to the parent (its 'error' event),
 * encoded as Node encodes it, and the process exits without printing it. Node calls
 * process._fatalException for every uncaught exception and lets it be replaced (a worker
 * thread's bootstrap does the same).
 */
function reportUncaughtExceptions(control: MessagePort): FatalException {
  const processInternals = process as unknown as { _fatalException?: FatalException; _exiting?: boolean };
  const original = processInternals._fatalException;
  const report: FatalException = function (this: unknown, error, fromPromise) {
    let handled = false;
    let handlerThrew = false;
    try {
      handled = original ? original.call(this, error, fromPromise) : false;
    } catch (thrown) {
      error = thrown;
      handlerThrew = true;
    }
    if (handled) return true;
    if (!processInternals._exiting) {
      try {
        processInternals._exiting = true;
        process.exitCode = 1;
        if (!handlerThrew) process.emit('exit', 1);
      } catch {
        // On regardless.
      }
    }
    let serialized: Buffer | undefined;
    try {
      serialized = loadErrorSerdes().serializeError(error);
    } catch {
      // Reported as unserializable.
    }
    try {
      control.postMessage(serialized === undefined
        ? { type: messageTypes.COULD_NOT_SERIALIZE_ERROR }
        : { type: messageTypes.ERROR_MESSAGE, error: serialized });
    } catch {
      // The parent will see the exit code.
    }
    // 'exit' has been emitted, and with it the flush of what ports still queued: again, for
    // this message and anything 'exit' listeners posted.
    native.stop();
    process.exit();
  };
  if (original !== undefined) processInternals._fatalException = report;
  return report;
}

/** Runs `body` as Node runs `node -e` and a worker thread its eval: (lib/internal/process/execution.js). */
function evalScript(name: string, body: string): void {
  const cwd = process.cwd();
  const CJSModule = Module as unknown as {
    new (id: string): NodeJS.Module & { _compile(content: string, filename: string): unknown };
    _nodeModulePaths(from: string): string[];
  };
  const module = new CJSModule(name);
  module.filename = join(cwd, name);
  module.paths = CJSModule._nodeModulePaths(cwd);
  const wrapper = `globalThis.module = module; globalThis.exports = exports;
    globalThis.__dirname = __dirname; globalThis.require = require; return (main) => main();`;
  (globalThis as { __filename?: string }).__filename = name;
  const runInWrapper = module._compile(wrapper, `${name}-wrapper`) as (main: () => unknown) => unknown;
  const { constants: vmConstants, runInThisContext } = vmModule() as typeof vm & { constants?: { USE_MAIN_CONTEXT_DEFAULT_LOADER?: symbol } };
  const importModuleDynamically = vmConstants?.USE_MAIN_CONTEXT_DEFAULT_LOADER;
  runInWrapper(() => runInThisContext(body, {
    filename: name,
    displayErrors: true,
    ...(importModuleDynamically ? { importModuleDynamically } : {}),
  } as vm.RunningScriptOptions));
}

// TypeScript would turn import() into require() in this CommonJS module.
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const importModule = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

main();
