// Worker: worker_threads.Worker's API, with the worker in its own process. A layer above fork()
// and parentPort (DESIGN.md §9): the worker's messages travel over the port that fork() makes;
// its exit, signals, stdio and resource limits come from the ChildProcess.
//
// Two channels join the parent and the worker process, as two ports join a worker thread to its
// parent in Node: the one fork() makes is the *public* channel (Worker#postMessage, 'message', the
// worker's parentPort); a *control* channel carries what Node's internal port carries: the script
// to load with workerData, then 'online' and the worker's uncaught exception. The control channel
// is made, and the script posted on it, before the process is started, so that a workerData that
// cannot be cloned throws with nothing started, as in Node; the process inherits the channel's
// other end as two fds (as fork() passes its own), which its bootstrap (worker-child.ts) adopts.
import type * as childProcess from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs = require('node:fs');
import os = require('node:os');
import path = require('node:path');
import { Readable, type Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';

import { deserializeError } from './error-serdes';
import { codedError, invalidArgType, invalidArgValue } from './errors';
import { inheritAddon, native } from './native';
import { handleOf, MessageChannel, MessagePort, receiveMessageOnPort, type TransferItem } from './port';
import { startChild, withoutEval } from './process';
import { environmentDataForWorker, type ResourceLimits } from './worker-context';
import {
  kControlFds,
  kNoticeFd,
  kStackBufferKb,
  type Limits,
  type LoadScript,
  messageTypes,
  pipeWithoutWarning,
  pushChunks,
  ReadableWorkerStdio,
  type StdioPort,
  waitOn,
  WritableWorkerStdio,
} from './worker-io';

export type { ResourceLimits } from './worker-context';

/** worker_threads.SHARE_ENV, which a process cannot honour (see WorkerOptions.env). */
const SHARE_ENV = Symbol.for('nodejs.worker_threads.SHARE_ENV');

/** worker_threads.WorkerOptions, and what only a process can add. */
export interface WorkerOptions {
  argv?: unknown[];
  /** An object (a copy of it becomes the worker's process.env). Default: process.env. */
  env?: NodeJS.Dict<string> | typeof SHARE_ENV;
  eval?: boolean;
  execArgv?: string[];
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
  workerData?: any;
  /** Moved to the worker with workerData: ArrayBuffers, crossport MessagePorts, OS handles. */
  transferList?: readonly TransferItem[];
  resourceLimits?: ResourceLimits;
  name?: string;
  trackUnmanagedFds?: boolean;
  /** The worker process's working directory. Default: this process's. */
  cwd?: string | Buffer | URL;
  /** The worker process's user id (setuid). */
  uid?: number;
  /** The worker process's group id (setgid). */
  gid?: number;
  /** The signal terminate() sends first. Default: 'SIGTERM'. */
  killSignal?: NodeJS.Signals | number;
  /**
   * Milliseconds terminate() waits after killSignal before it sends SIGKILL; Infinity: never.
   * Default: 5000.
   */
  killTimeout?: number;
}

const kDefaultKillTimeout = 5000;
// Node's default stack for a worker thread (Worker::kStackSize in src/node_worker.h).
const kDefaultStackSizeMb = 4;
const bootstrap = path.join(__dirname, 'worker-child.js');
// The most messages delivered from the public channel once the worker process has ended.
const kDrainLimit = 1 << 16;
// The most control messages delivered in a turn beyond those the port delivers (Node's limit).
const kControlBatch = 1000;

let nextThreadId = 1;

/** What a Worker keeps (see Worker#state). */
interface WorkerState {
  threadId: number;
  limits: Limits;
  killSignal: NodeJS.Signals | number;
  killTimeout: number;
  /** The execArgv the worker was given (without our V8 flags). */
  execArgv: string[];
  child: childProcess.ChildProcess;
  /** Our end of the public channel; null once the worker has exited. */
  public: MessagePort | null;
  control: MessagePort | null;
  noticeFd: number;
  /** The control port, with the count of stdio streams waiting on it (they keep it referenced). */
  stdioPort: StdioPort;
  stdio: { stdin: WritableWorkerStdio | null; stdout: ReadableWorkerStdio; stderr: ReadableWorkerStdio };
  name: string;
  online: boolean;
  onlineAt: number;
  onlineCpuMs: number;
  /** The worker's uncaught exception was reported ('error' emitted). */
  uncaught: boolean;
  /**
   * Control messages held back because the worker process had already ended when this turn of
   * the event loop came to them: its end is handled first, as Node handles a thread's end before
   * its ports' messages when all are pending (the public channel first, then these).
   */
  heldBack: unknown[] | null;
  /** Whether the worker process had ended was looked at in this turn of the event loop. */
  lookedThisTurn: boolean;
  /** Answers awaited from the worker process (getHeapStatistics()...), by request id. */
  readonly requests: Map<number, { resolve(value: unknown): void; reject(error: Error): void }>;
  nextRequest: number;
  terminating: boolean;
  killTimer: NodeJS.Timeout | null;
  readonly forward: (value: unknown) => void;
}

export class Worker extends EventEmitter {
  /**
   * The Worker's state, not enumerable (Node's Worker keeps its own under symbols). Not in ES
   * private names: TypeScript declares those as `#private` in worker.d.ts, an error for consumers
   * compiling for ES5.
   */
  private declare readonly state: WorkerState;
  /** Node's Worker#performance: eventLoopUtilization() (approximated, see below). */
  readonly performance: {
    eventLoopUtilization(utilization1?: EventLoopUtilization, utilization2?: EventLoopUtilization): EventLoopUtilization;
  };

  constructor(filename: string | URL, options: WorkerOptions = {}) {
    super();
    const state: Partial<WorkerState> = {
      public: null,
      control: null,
      noticeFd: -1,
      online: false,
      onlineAt: 0,
      onlineCpuMs: 0,
      uncaught: false,
      heldBack: null,
      lookedThisTurn: false,
      requests: new Map(),
      nextRequest: 1,
      terminating: false,
      killTimer: null,
      forward: (value: unknown) => this.emitFromPort('message', [value]),
    };
    Object.defineProperty(this, 'state', { value: state });
    // The checks of Node's Worker constructor (lib/internal/worker.js), in its order.
    if (options.execArgv) validateArray(options.execArgv, 'options.execArgv');
    let argv: string[] = [];
    if (options.argv) {
      validateArray(options.argv, 'options.argv');
      argv = options.argv.map(String);
    }
    let doEval: LoadScript['doEval'];
    if (options.eval) {
      if (typeof filename !== 'string') {
        throw invalidArgValue('options.eval', options.eval, "must be false when 'filename' is not a string");
      }
      doEval = 'classic';
    } else if (isURL(filename) && filename.protocol === 'data:') {
      doEval = 'module';
      filename = `${filename}`;
    } else {
      doEval = false;
      if (isURL(filename)) {
        filename = fileURLToPath(filename);
      } else if (typeof filename !== 'string') {
        throw invalidArgType('filename', ['string', 'URL'], filename);
      } else if (path.isAbsolute(filename) || /^\.\.?[\\/]/.test(filename)) {
        filename = path.resolve(filename);
      } else {
        throw workerPathError(filename);
      }
    }
    const env = workerEnv(options.env);
    let name = '';
    if (options.name) {
      validateString(options.name, 'options.name');
      name = options.name.trim();
    }
    // What only a process has, checked as child_process checks it, before anything is moved.
    const cwd = validateCwd(options.cwd);
    validateId(options.uid, 'options.uid');
    validateId(options.gid, 'options.gid');
    this.state.killSignal = validateSignal(options.killSignal);
    this.state.killTimeout = validateKillTimeout(options.killTimeout);

    const limits = launchLimits(parseResourceLimits(options.resourceLimits));
    const userExecArgv = options.execArgv ? options.execArgv.map(String) : withoutEval(process.execArgv);
    this.state.execArgv = userExecArgv;
    this.state.threadId = nextThreadId++;
    this.state.limits = limits;
    this.state.name = name;

    // The script, workerData and its transfer list go out before the process exists: a value
    // that cannot be cloned throws here, with nothing started, as in Node.
    const load: LoadScript = {
      type: messageTypes.LOAD_SCRIPT,
      filename: filename as string,
      doEval,
      argv,
      execArgv: userExecArgv,
      workerData: options.workerData,
      environmentData: environmentDataForWorker(),
      threadId: this.state.threadId,
      resourceLimits: limits,
      name,
      hasStdin: Boolean(options.stdin),
      noticeFd: kNoticeFd,
      parentPid: process.pid,
    };
    const control = new MessageChannel();
    let child: ReturnType<typeof startChild>;
    let noticeFds: number[] = [];
    let controlFds: number[] = [];
    try {
      noticeFds = native.noticePair();
      const transferList = options.transferList ? Array.prototype.slice.call(options.transferList) : [];
      control.port1.postMessage(load, transferList as TransferItem[]);
      const [segmentFd, socketFd, side] = handleOf(control.port2).exportFds();
      controlFds = [segmentFd, socketFd];
      // As in a worker thread, the worker has no process.send() (no IPC channel), and its
      // process.stdin/stdout/stderr are streams on the control channel. Its fds 1 and 2 are ours,
      // as a thread's are: what native code or a child process writes there reaches them.
      child = startChild(bootstrap, [doEval === false ? (filename as string) : '[worker eval]', String(side)], {
        execArgv: [...v8Flags(limits), ...userExecArgv],
        env: { ...env, ...inheritAddon() },
        cwd: cwd as string | undefined,  // a Buffer too, as child_process takes it
        uid: options.uid,
        gid: options.gid,
      }, ['ignore', 'inherit', 'inherit', noticeFds[1], segmentFd, socketFd]);
    } catch (error) {
      control.port1.close();
      if (noticeFds.length > 0) native.closeFd(noticeFds[0]);
      throw error;
    } finally {
      // The child has its own copies now (or never will).
      for (const fd of [...noticeFds.slice(1), ...controlFds]) native.closeFd(fd);
      handleOf(control.port2).dispose();
    }
    this.state.child = child;
    this.state.noticeFd = noticeFds[0];
    this.state.public = child.port;
    this.state.control = control.port1;
    this.state.control.on('message', (message) => this.deliverControl(message));
    this.state.control.unref();
    // As a thread's: stdout and stderr are always streams, piped into ours unless asked for.
    this.state.stdioPort = { port: this.state.control, waiting: 0 };
    const stdout = new ReadableWorkerStdio(this.state.stdioPort, 'stdout');
    const stderr = new ReadableWorkerStdio(this.state.stdioPort, 'stderr');
    if (!options.stdout) {
      stdout.incrementsPortRef = false;
      pipeWithoutWarning(stdout, process.stdout);
    }
    if (!options.stderr) {
      stderr.incrementsPortRef = false;
      pipeWithoutWarning(stderr, process.stderr);
    }
    this.state.stdio = { stdin: options.stdin ? new WritableWorkerStdio(this.state.stdioPort, 'stdin') : null, stdout, stderr };
    this.state.public.on('messageerror', (error) => this.emitFromPort('messageerror', [error]));
    // As Node's setupPortReferencing: the public port listens (and keeps this process alive)
    // while the Worker has 'message' listeners.
    this.on('newListener', (event) => {
      if (event === 'message' && this.listenerCount('message') === 0) this.state.public?.on('message', this.state.forward);
    });
    this.on('removeListener', (event) => {
      if (event === 'message' && this.listenerCount('message') === 0) this.state.public?.off('message', this.state.forward);
    });
    child.once('exit', (code, signal) => this.onProcessExit(code, signal));
    child.on('error', (error) => {
      // Only a process that could not be started ends here; a failed kill() changes nothing.
      if (child.pid === undefined) this.finish(initFailed(error), 1);
    });
    this.performance = { eventLoopUtilization: eventLoopUtilization.bind(this, () => this.loopTimes()) };
  }

  /** Sends a message to the worker's parentPort (nothing once the worker has exited). */
  postMessage(value: any, transfer?: readonly TransferItem[] | { transfer?: readonly TransferItem[] }): void {
    if (this.state.public === null) return;
    // eslint-disable-next-line prefer-rest-params
    Reflect.apply(this.state.public.postMessage, this.state.public, arguments);
  }

  /**
   * Stops the worker: sends killSignal, then SIGKILL after killTimeout. Resolves with the exit
   * code once 'exit' has been emitted (for a worker that the signal ended, 1, or 0 if it had not
   * yet come online, as worker_threads), or with undefined when the worker had already exited.
   */
  terminate(callback?: (error: Error | null, exitCode?: number) => void): Promise<number | undefined> {
    this.ref();
    // The callback is deprecated (DEP0132), and ignored from Node 26 on, as worker_threads does.
    if (typeof callback === 'function' && kTerminateTakesCallback) {
      process.emitWarning('Passing a callback to worker.terminate() is deprecated. It returns a Promise instead.',
        'DeprecationWarning', 'DEP0132');
      if (this.state.public === null) return Promise.resolve(undefined);
      this.once('exit', (exitCode) => callback(null, exitCode));
    }
    if (this.state.public === null) return Promise.resolve(undefined);
    if (!this.state.terminating) {
      this.state.terminating = true;
      this.state.child.kill(this.state.killSignal);
      if (this.state.killTimeout !== Infinity) {
        this.state.killTimer = setTimeout(() => this.state.child.kill('SIGKILL'), this.state.killTimeout);
      }
    }
    return new Promise((resolve) => this.once('exit', resolve));
  }

  /** Keeps this process alive while the worker runs (the default). */
  ref(): void {
    if (this.state.public === null) return;
    this.state.child.ref();
    this.state.public.ref();
  }

  /** Lets this process exit while the worker still runs (the worker then ends with it). */
  unref(): void {
    if (this.state.public === null) return;
    this.state.child.unref();
    this.state.public.unref();
  }

  /** A number for this worker, unique in this process; -1 once it has exited. */
  get threadId(): number {
    return this.state.public === null ? -1 : this.state.threadId;
  }

  /** The `name` option (Node 22+'s Worker#threadName); null once the worker has exited. */
  get threadName(): string | null {
    return this.state.public === null ? null : this.state.name;
  }

  /** The worker process's id (not in worker_threads). */
  get pid(): number | undefined {
    return this.state.child.pid;
  }

  /**
   * The limits the worker runs with ({} once it has exited). Before 'online', -1 stands for a
   * heap limit left to V8; after, the worker's own figures (as its resourceLimits export).
   */
  get resourceLimits(): ResourceLimits {
    return this.state.public === null ? {} : { ...this.state.limits };
  }

  /** With `stdin: true`, a Writable to the worker's process.stdin; otherwise null. */
  get stdin(): Writable | null {
    return this.state.stdio.stdin;
  }

  /** The worker's process.stdout (piped into this process's, unless `stdout: true`). */
  get stdout(): Readable {
    return this.state.stdio.stdout;
  }

  /** The worker's process.stderr (piped into this process's, unless `stderr: true`). */
  get stderr(): Readable {
    return this.state.stdio.stderr;
  }

  /** A heap snapshot of the worker process, as Worker#getHeapSnapshot() (a Readable of its JSON). */
  getHeapSnapshot(options?: { exposeInternals?: boolean; exposeNumericValues?: boolean }): Promise<Readable> {
    if (options !== undefined) {
      if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'Object', options);
      for (const key of ['exposeInternals', 'exposeNumericValues'] as const) {
        if (options[key] !== undefined && typeof options[key] !== 'boolean') throw invalidArgType(`options.${key}`, 'boolean', options[key]);
      }
    }
    return this.ask('heapSnapshot', { exposeInternals: Boolean(options?.exposeInternals), exposeNumericValues: Boolean(options?.exposeNumericValues) })
      .then((port) => {
        if (!(port instanceof MessagePort)) throw new Error('crossport: the worker process sent no heap snapshot');
        return snapshotStream(port);
      });
  }

  /** v8.getHeapStatistics() of the worker process (Node 22+'s Worker#getHeapStatistics()). */
  getHeapStatistics(): Promise<unknown> {
    return this.ask('heapStatistics');
  }

  /**
   * The CPU time of the worker process in µs, `{ user, system }`, less `prev` if given (Node
   * 22+'s Worker#cpuUsage(), which counts the worker's thread).
   */
  cpuUsage(prev?: { user: number; system: number }): Promise<{ user: number; system: number }> {
    if (prev) {
      if (typeof prev !== 'object') throw invalidArgType('prev', 'object', prev);
      for (const key of ['user', 'system'] as const) {
        const value = prev[key];
        if (typeof value !== 'number') throw invalidArgType(`prev.${key}`, 'number', value);
        if (!(value >= 0 && value <= Number.MAX_SAFE_INTEGER)) {
          throw codedError(RangeError, 'ERR_OUT_OF_RANGE',
            `The value of "prev.${key}" is out of range. It must be >= 0 && <= ${Number.MAX_SAFE_INTEGER}. Received ${inspect(value)}`);
        }
      }
    }
    return this.ask('cpuUsage').then((usage) => {
      const { user, system } = usage as { user: number; system: number };
      return prev ? { user: user - prev.user, system: system - prev.system } : { user, system };
    });
  }

  /** Asks the worker process; rejects with ERR_WORKER_NOT_RUNNING once it has exited. */
  private ask(what: string, options?: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.state.control === null) {
        reject(codedError(Error, 'ERR_WORKER_NOT_RUNNING', 'Worker instance not running'));
        return;
      }
      const id = this.state.nextRequest++;
      this.state.requests.set(id, { resolve, reject });
      this.state.control.postMessage({ type: messageTypes.REQUEST, id, what, options });
      waitOn(this.state.stdioPort, 1);
    });
  }

  /**
   * Delivers a control message, then what else the control channel holds: as a thread's internal
   * port goes on delivering what arrives while it delivers (Node's MessagePort::OnMessage).
   */
  private deliverControl(message: unknown): void {
    this.onControl(message);
    for (let entry, left = kControlBatch; left > 0 && this.state.control !== null && (entry = receiveMessageOnPort(this.state.control)); left--) {
      this.onControl(entry.message);
    }
  }

  private onControl(message: unknown): void {
    // 'online' first, always (a thread's comes first unless its parent was blocked for its whole
    // life). Anything else that a turn of the event loop reads once the process has ended waits
    // for the end; what a turn began to read while it ran is handled, as a thread's port goes on
    // delivering what it holds.
    if (this.state.heldBack === null && !this.state.lookedThisTurn) {
      this.state.lookedThisTurn = true;
      setImmediate(() => (this.state.lookedThisTurn = false));
      if (processEnded(this.state.child.pid)) this.state.heldBack = [];
    }
    if (this.state.heldBack !== null && !isUpAndRunning(message)) this.state.heldBack.push(message);
    else this.handleControl(message);
  }

  /** What Node's Worker does with a message on its internal port ([kOnMessage]). */
  private handleControl(message: unknown): void {
    if (typeof message !== 'object' || message === null) return;
    const { type } = message as { type?: unknown };
    switch (type) {
      case messageTypes.UP_AND_RUNNING: {
        if (this.state.online) return;
        this.state.online = true;
        this.state.onlineAt = performance.now();
        this.state.onlineCpuMs = mainThreadCpuMs(this.state.child.pid) ?? 0;
        const limits = (message as { resourceLimits?: unknown }).resourceLimits;
        if (isLimits(limits)) this.state.limits = limits;
        this.emitFromPort('online', []);
        return;
      }
      case messageTypes.ERROR_MESSAGE:
      case messageTypes.COULD_NOT_SERIALIZE_ERROR: {
        if (this.state.uncaught) return;
        this.state.uncaught = true;
        const { error } = message as { error?: unknown };
        this.emitFromPort('error', [decodeUncaught(type === messageTypes.ERROR_MESSAGE && error instanceof Uint8Array ? Buffer.from(error) : null)]);
        return;
      }
      case messageTypes.STDIO_PAYLOAD: {
        const { stream, chunks } = message as { stream?: unknown; chunks?: unknown };
        if (stream === 'stdout' || stream === 'stderr') pushChunks(this.state.stdio[stream], chunks);
        return;
      }
      case messageTypes.STDIO_WANTS_MORE_DATA:
        if ((message as { stream?: unknown }).stream === 'stdin') this.state.stdio.stdin?.wantsMoreData();
        return;
      case messageTypes.RESPONSE: {
        const { id, value, error } = message as { id?: unknown; value?: unknown; error?: unknown };
        const request = this.state.requests.get(id as number);
        if (request === undefined) return;
        this.state.requests.delete(id as number);
        waitOn(this.state.stdioPort, -1);
        if (error !== undefined) request.reject(error instanceof Error ? error : new Error(String(error)));
        else request.resolve(value);
      }
    }
  }

  /**
   * Emits an event for what a port delivered. A listener that throws must not throw through the
   * port's dispatch (a listener's exception there is not yet handled as Node handles it: issue
   * 15), so its exception is rethrown from a callback of its own, where Node's usual handling
   * applies (an 'error' nobody listens for is this process's uncaught exception, as in Node).
   */
  private emitFromPort(event: string, args: unknown[]): void {
    // 'online' was posted before any message: a message read first brings it in (with what
    // follows it on the control channel, as if that had been read first).
    if (event === 'message' && !this.state.online && this.state.control !== null) {
      const entry = receiveMessageOnPort(this.state.control);
      if (entry !== undefined) this.deliverControl(entry.message);
    }
    try {
      this.emit(event, ...args);
    } catch (error) {
      setImmediate(() => {
        throw error;
      });
    }
  }

  /**
   * The process has ended: everything it posted is in the channels now. As Node's Worker
   * [kOnExit]: deliver what the public channel holds, then the control channel's messages
   * (stdio, 'online', the uncaught exception), end stdout and stderr, then 'error' for a death
   * that was not an exception (out of memory, a signal, a failed start) and 'exit'.
   */
  private onProcessExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.state.public === null) return;
    const outOfMemory = readNotice(this.state.noticeFd);
    // What the worker posted is in the rings (a few thousand records at most: 512 KiB of small ones)
    // or on its way in the large ring. The cap is for a worker that handed its parentPort on to a
    // process that lives on and keeps the ring full: its later messages are not the worker's.
    for (let left = kDrainLimit; left > 0; left--) {
      let entry;
      try {
        entry = receiveMessageOnPort(this.state.public);
      } catch (error) {
        this.emitFromPort('messageerror', [error]);
        continue;
      }
      if (entry === undefined) break;
      this.emitFromPort('message', [entry.message]);
    }
    for (const message of this.state.heldBack ?? []) this.handleControl(message);
    this.state.heldBack = null;
    for (let entry; this.state.control !== null && (entry = receiveMessageOnPort(this.state.control)) !== undefined;) {
      this.handleControl(entry.message);
    }
    const terminated = this.state.terminating && signal !== null;
    let error: unknown = null;
    let exitCode = code ?? 1;
    if (outOfMemory) {
      error = codedError(Error, 'ERR_WORKER_OUT_OF_MEMORY', 'Worker terminated due to reaching memory limit: JS heap out of memory');
    } else if (this.state.uncaught) {
      // Reported already.
    } else if (signal !== null && !terminated) {
      error = killedBy(signal);
    } else if (!this.state.online && !terminated && code !== 0) {
      error = code === 9 ? invalidExecArgv(this.state.execArgv) : initFailed(`the worker process exited with code ${code} before it started`);
    }
    // A worker thread that terminate() stops before it ran any JavaScript exits with 0, after with 1.
    if (signal !== null) exitCode = terminated ? Number(this.state.online) : 128 + (os.constants.signals[signal] ?? 0);
    this.finish(error, exitCode);
  }

  private finish(error: unknown, exitCode: number): void {
    if (this.state.public === null) return;
    this.state.public.close();
    this.state.control?.close();
    this.state.public = null;
    this.state.control = null;
    if (this.state.noticeFd >= 0) native.closeFd(this.state.noticeFd);
    this.state.noticeFd = -1;
    if (this.state.killTimer !== null) clearTimeout(this.state.killTimer);
    this.removeAllListeners('message');
    this.removeAllListeners('messageerror');
    for (const stream of [this.state.stdio.stdout, this.state.stdio.stderr]) {
      if (!stream.readableEnded) stream.push(null);
    }
    for (const { reject } of this.state.requests.values()) reject(codedError(Error, 'ERR_WORKER_NOT_RUNNING', 'Worker instance not running'));
    this.state.requests.clear();
    const exit = () => {
      this.emit('exit', exitCode);
      this.removeAllListeners();
    };
    if (error !== null) {
      try {
        this.emit('error', error);
      } catch (thrown) {
        // Nobody listens for 'error': as in Node, that is this process's uncaught exception,
        // and 'exit' comes after it (if the process survives it).
        process.nextTick(exit);
        throw thrown;
      }
    }
    exit();
  }

  /** [ms since 'online', ms the worker's main thread ran since] for eventLoopUtilization. */
  private loopTimes(): [number, number] | null {
    if (!this.state.online || this.state.public === null) return null;
    const cpu = mainThreadCpuMs(this.state.child.pid);
    if (cpu === null) return null;
    return [performance.now() - this.state.onlineAt, cpu - this.state.onlineCpuMs];
  }
}

// `await using worker = new Worker(...)` terminates it at the end of the block (Node >= 22).
const asyncDispose = (Symbol as { asyncDispose?: symbol }).asyncDispose;
if (asyncDispose !== undefined) {
  Object.defineProperty(Worker.prototype, asyncDispose, {
    async value(this: Worker) {
      await this.terminate();
    },
    configurable: true,
    writable: true,
  });
}

export interface EventLoopUtilization {
  idle: number;
  active: number;
  utilization: number;
}

/**
 * Worker#performance.eventLoopUtilization(): Node's shape and arithmetic. Another process's
 * event loop cannot be read from here, so `active` is the CPU time of the worker's main thread
 * since 'online' (from /proc), and `idle` the rest of the time since: close to the loop's own
 * figures for a worker that computes, lower for one that blocks in synchronous I/O.
 */
function eventLoopUtilization(
  times: () => [number, number] | null,
  utilization1?: EventLoopUtilization,
  utilization2?: EventLoopUtilization,
): EventLoopUtilization {
  const measured = times();
  if (measured === null) return { idle: 0, active: 0, utilization: 0 };
  const [elapsed, ran] = measured;
  const active = Math.min(ran, elapsed);
  const idle = elapsed - active;
  if (!utilization1) return { idle, active, utilization: elapsed > 0 ? active / elapsed : 0 };
  const [from, to] = utilization2 ? [utilization2, utilization1] : [utilization1, { idle, active }];
  const idleDelta = to.idle - from.idle;
  const activeDelta = to.active - from.active;
  return { idle: idleDelta, active: activeDelta, utilization: activeDelta / (idleDelta + activeDelta) };
}

/** CPU time of a process's main thread in ms (/proc/<pid>/task/<pid>/schedstat), or null. */
function mainThreadCpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return null;
  }
}

/** True when the ended process said it ran out of heap (native watchHeapLimit). */
function readNotice(fd: number): boolean {
  if (fd < 0) return false;
  const byte = Buffer.alloc(1);
  try {
    return fs.readSync(fd, byte, 0, 1, null) === 1 && byte[0] === 'M'.charCodeAt(0);
  } catch {
    return false;  // EAGAIN: nothing was sent
  }
}

function decodeUncaught(encoded: Buffer | null): unknown {
  if (encoded !== null) {
    try {
      return deserializeError(encoded);
    } catch {
      // What the worker sent is not an encoded error.
    }
  }
  return codedError(Error, 'ERR_WORKER_UNSERIALIZABLE_ERROR', 'Serializing an uncaught exception failed');
}

function isUpAndRunning(message: unknown): boolean {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === messageTypes.UP_AND_RUNNING;
}

/**
 * True when process `pid` has ended and waits to be reaped (its exit not yet handled here), from
 * its state in /proc: as a thread's end is seen before its ports' messages when both are pending.
 */
function processEnded(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return /^\s*[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 1));
  } catch {
    return false;
  }
}

/** The Readable of Worker#getHeapSnapshot(): the chunks the worker process posts on `port`, then its close. */
function snapshotStream(port: MessagePort): Readable {
  const stream = new Readable({ read() {} });
  port.on('message', (chunk) => {
    if (chunk instanceof Uint8Array) stream.push(chunk);
  });
  port.once('close', () => stream.push(null));
  return stream;
}

/** 'error' for a worker process that a signal ended (other than terminate()'s). */
function killedBy(signal: NodeJS.Signals): Error {
  const error = codedError(Error, 'ERR_WORKER_KILLED', `Worker process was killed by signal ${signal}`);
  return Object.assign(error, { signal });
}

function initFailed(reason: string | Error): Error {
  const error = codedError(Error, 'ERR_WORKER_INIT_FAILED', `Worker initialization failure: ${typeof reason === 'string' ? reason : reason.message}`);
  if (typeof reason !== 'string') Object.defineProperty(error, 'cause', { value: reason, configurable: true, writable: true });
  return error;
}

/**
 * Node exits with code 9 on an option it does not know. Name the flags it may have refused: the
 * ones it does not list as its own (process.allowedNodeEnvironmentFlags), else all of them.
 */
function invalidExecArgv(execArgv: string[]): Error {
  const flags = execArgv.filter((arg) => arg.startsWith('-'));
  const unknown = flags.filter((flag) => !process.allowedNodeEnvironmentFlags.has(flag.split('=')[0]));
  return codedError(Error, 'ERR_WORKER_INVALID_EXEC_ARGV',
    `Initiated Worker with invalid execArgv flags: ${(unknown.length > 0 ? unknown : flags).join(', ')}`);
}

function workerPathError(filename: string): TypeError {
  return codedError(TypeError, 'ERR_WORKER_PATH',
    'The worker script or module filename must be an absolute path or a relative path starting with \'./\' or \'../\'.' +
    (filename.startsWith('file://') ? ' Wrap file:// URLs with `new URL`.' : '') +
    (filename.startsWith('data:text/javascript') ? ' Wrap data: URLs with `new URL`.' : '') +
    ` Received "${filename}"`);
}

/** Node's test for a URL object (lib/internal/url.js isURL). */
function isURL(value: unknown): value is URL {
  const candidate = value as { href?: unknown; protocol?: unknown; auth?: unknown; path?: unknown } | null;
  return Boolean(candidate?.href && candidate.protocol && candidate.auth === undefined && candidate.path === undefined);
}

function validateArray(value: unknown, name: string): asserts value is unknown[] {
  if (!Array.isArray(value)) throw invalidArgType(name, 'Array', value);
}

function validateString(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') throw invalidArgType(name, 'string', value);
}

/** child_process's checks of cwd, uid, gid and killSignal (normalizeSpawnArguments). */
function validateCwd(cwd: unknown): string | Buffer | undefined {
  if (cwd === undefined || cwd === null) return undefined;
  if (isURL(cwd)) return fileURLToPath(cwd);
  if (typeof cwd !== 'string' && !Buffer.isBuffer(cwd)) throw invalidArgType('options.cwd', ['string', 'Buffer', 'URL'], cwd);
  return cwd;
}

/** worker_threads' terminate() still calls a callback (DEP0132 reached its end of life in Node 26). */
const kTerminateTakesCallback = Number(process.versions.node.split('.')[0]) < 26;

/** A uid or gid child_process would take; else child_process's own error (its text varies by Node). */
function validateId(id: unknown, name: 'options.uid' | 'options.gid'): void {
  if (id === undefined || id === null || id === ((id as number) | 0)) return;
  // child_process checks its options before it starts anything (nothing runs here: no such file).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require('node:child_process') as typeof childProcess).spawnSync('/nonexistent/crossport-id-check', {
    [name.slice('options.'.length)]: id,
  });
  throw invalidArgType(name, 'int32', id);
}

function validateSignal(signal: unknown): NodeJS.Signals | number {
  if (signal === undefined || signal === null) return 'SIGTERM';
  if (typeof signal !== 'string' && typeof signal !== 'number') {
    throw invalidArgType('options.killSignal', ['string', 'number'], signal);
  }
  const signals = os.constants.signals as Record<string, number>;
  if (typeof signal === 'number' && Object.values(signals).includes(signal)) return signal;
  if (typeof signal === 'string' && Object.hasOwn(signals, signal.toUpperCase())) return signal.toUpperCase() as NodeJS.Signals;
  throw codedError(TypeError, 'ERR_UNKNOWN_SIGNAL', `Unknown signal: ${String(signal)}`);
}

function validateKillTimeout(timeout: unknown): number {
  if (timeout === undefined) return kDefaultKillTimeout;
  if (typeof timeout !== 'number') throw invalidArgType('options.killTimeout', 'number', timeout);
  if (!(timeout >= 0)) {
    throw codedError(RangeError, 'ERR_OUT_OF_RANGE',
      `The value of "options.killTimeout" is out of range. It must be >= 0 (Infinity: never). Received ${inspect(timeout)}`);
  }
  return timeout;
}

/**
 * options.env as Node checks it. SHARE_ENV asks that the worker and this process share one
 * process.env object, which separate processes cannot do: rather than quietly handing the
 * worker a copy that later changes do not reach, the constructor refuses it.
 */
function workerEnv(option: unknown): NodeJS.ProcessEnv {
  if (typeof option === 'object' && option !== null) {
    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(option)) env[key] = `${value}`;
    return env;
  }
  if (option === undefined || option === null) return { ...process.env };
  if (option === SHARE_ENV) {
    throw invalidArgValue('options.env', option,
      'cannot be worker_threads.SHARE_ENV: a worker process has its own environment (pass an object, e.g. process.env, for a copy)');
  }
  throw invalidArgType('options.env', ['object', 'undefined', 'null', 'worker_threads.SHARE_ENV'], option);
}

/** resourceLimits as Node reads them: numbers only, -1 for what is left to V8. */
function parseResourceLimits(option: unknown): Limits {
  const limits: Limits = { maxYoungGenerationSizeMb: -1, maxOldGenerationSizeMb: -1, codeRangeSizeMb: -1, stackSizeMb: -1 };
  if (typeof option !== 'object' || option === null) return limits;
  const given = option as ResourceLimits;
  if (typeof given.maxOldGenerationSizeMb === 'number') limits.maxOldGenerationSizeMb = Math.max(given.maxOldGenerationSizeMb, 2);
  if (typeof given.maxYoungGenerationSizeMb === 'number') limits.maxYoungGenerationSizeMb = given.maxYoungGenerationSizeMb;
  if (typeof given.codeRangeSizeMb === 'number') limits.codeRangeSizeMb = given.codeRangeSizeMb;
  if (typeof given.stackSizeMb === 'number') limits.stackSizeMb = given.stackSizeMb;
  return limits;
}

/**
 * The limits the worker process is started with, as Node's Worker#resourceLimits shows them
 * before the worker runs: -1 for what is left to V8, and the stack size (Node's default 4 MiB, at
 * least its 192 KiB guard), which the worker's bootstrap sets (native setStackSize).
 */
function launchLimits(limits: Limits): Limits {
  return { ...limits, stackSizeMb: limits.stackSizeMb > 0 ? Math.max(limits.stackSizeMb, kStackBufferKb / 1024) : kDefaultStackSizeMb };
}

/**
 * V8 flags for the heap limits a worker thread gets from V8's ResourceConstraints (a heap's
 * limits are fixed when V8 makes it). Young generation: V8 sizes it at three semi-spaces (two,
 * and as much again for large objects), so --max-semi-space-size gets a third. The code range has
 * no flag: codeRangeSizeMb has no effect. Any V8 flag costs the process some 10 ms to start (V8
 * then rejects Node's code cache), so none is passed unless a heap limit is given; the stack size
 * needs none (native setStackSize in the worker).
 */
function v8Flags(limits: Limits): string[] {
  const flags: string[] = [];
  if (limits.maxOldGenerationSizeMb > 0) flags.push(`--max-old-space-size=${Math.ceil(limits.maxOldGenerationSizeMb)}`);
  if (limits.maxYoungGenerationSizeMb > 0) {
    flags.push(`--max-semi-space-size=${Math.max(1, Math.ceil(limits.maxYoungGenerationSizeMb / 3))}`);
  }
  return flags;
}

function isLimits(value: unknown): value is Limits {
  if (typeof value !== 'object' || value === null) return false;
  const limits = value as Record<string, unknown>;
  return ['maxYoungGenerationSizeMb', 'maxOldGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb']
    .every((key) => typeof limits[key] === 'number');
}
