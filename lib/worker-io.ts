// What a Worker and its process say to each other on the control channel (as Node's
// lib/internal/worker/io.js for a worker thread): the message types, the script to load, where
// the process finds its fds, and the stdio streams, which travel on the control channel as a
// thread's do on its internal port.
import { Readable, Writable } from 'node:stream';

import type { MessagePort } from './port';
import type { ResourceLimits } from './worker-context';

// As Node's messageTypes.
export const messageTypes = {
  LOAD_SCRIPT: 'loadScript',
  UP_AND_RUNNING: 'upAndRunning',
  ERROR_MESSAGE: 'errorMessage',
  COULD_NOT_SERIALIZE_ERROR: 'couldNotSerializeError',
  STDIO_PAYLOAD: 'stdioPayload',
  STDIO_WANTS_MORE_DATA: 'stdioWantsMoreData',
  // Not Node's: a question from the Worker to its process (getHeapStatistics()...) and the answer.
  REQUEST: 'request',
  RESPONSE: 'response',
} as const;

export type Limits = Required<ResourceLimits>;

/** The first message on the control channel: what the worker process is to run. */
export interface LoadScript {
  type: typeof messageTypes.LOAD_SCRIPT;
  filename: string;
  /** false: a file; 'classic': filename is a script to evaluate; 'module': a data: URL. */
  doEval: false | 'classic' | 'module';
  argv: string[];
  execArgv: string[];
  workerData: unknown;
  environmentData: Map<unknown, unknown>;
  threadId: number;
  resourceLimits: Limits;
  name: string;
  hasStdin: boolean;
  noticeFd: number;
  parentPid: number;
}

// Where a worker process finds its out-of-memory notice fd (after stdin, stdout, stderr), then its
// end of the control channel (segment, socket); its public channel's follow.
export const kNoticeFd = 3;
export const kControlFds = [4, 5] as const;
// Node's stack guard for a worker thread (kStackBufferSize in src/node_worker.h).
export const kStackBufferKb = 192;

type StdioName = 'stdin' | 'stdout' | 'stderr';
type Callback = (error?: Error | null) => void;

/** The control port, and how many stdio streams and requests wait on it (they keep it referenced). */
export interface StdioPort {
  port: MessagePort;
  waiting: number;
}

/** Counts `count` more (or fewer) waiting on the port: referenced while any does. */
export function waitOn(owner: StdioPort, count: number): void {
  const before = owner.waiting;
  owner.waiting += count;
  if (before === 0 && owner.waiting > 0) owner.port.ref();
  else if (before > 0 && owner.waiting === 0) owner.port.unref();
}

/**
 * The reading end of a stdio stream (the parent's worker.stdout/stderr, the worker's
 * process.stdin): asks the other side for more when it wants data (Node's ReadableWorkerStdio).
 */
export class ReadableWorkerStdio extends Readable {
  #startedReading = false;
  /** False for a stream piped into this process's own (it keeps nothing alive). */
  incrementsPortRef = true;

  constructor(readonly owner: StdioPort, readonly stdioName: StdioName) {
    super();
    this.on('end', () => {
      if (this.#startedReading && this.incrementsPortRef) waitOn(this.owner, -1);
    });
  }

  override _read(): void {
    if (!this.#startedReading && this.incrementsPortRef) {
      this.#startedReading = true;
      waitOn(this.owner, 1);
    }
    this.owner.port.postMessage({ type: messageTypes.STDIO_WANTS_MORE_DATA, stream: this.stdioName });
  }
}

/**
 * The writing end (the worker's process.stdout/stderr, the parent's worker.stdin): each write
 * is posted at once; its callback waits until the reader wants more (Node's WritableWorkerStdio).
 */
export class WritableWorkerStdio extends Writable {
  #callbacks: Callback[] = [];

  constructor(readonly owner: StdioPort, readonly stdioName: StdioName) {
    super({ decodeStrings: false });
  }

  override _writev(chunks: { chunk: unknown; encoding: BufferEncoding }[], callback: Callback): void {
    this.owner.port.postMessage({
      type: messageTypes.STDIO_PAYLOAD,
      stream: this.stdioName,
      chunks: chunks.map(({ chunk, encoding }) => ({ chunk, encoding })),
    });
    if ((process as { _exiting?: boolean })._exiting) {
      callback();
    } else {
      this.#callbacks.push(callback);
      waitOn(this.owner, 1);
    }
  }

  override _final(callback: Callback): void {
    this.owner.port.postMessage({ type: messageTypes.STDIO_PAYLOAD, stream: this.stdioName, chunks: [{ chunk: null, encoding: '' }] });
    callback();
  }

  /** The reader wants more: what was written so far is done. */
  wantsMoreData(): void {
    const callbacks = this.#callbacks;
    this.#callbacks = [];
    for (const callback of callbacks) callback();
    waitOn(this.owner, -callbacks.length);
  }
}

/** Pushes a STDIO_PAYLOAD's chunks into the stream it is for (a null chunk ends it). */
export function pushChunks(readable: Readable | null | undefined, chunks: unknown): void {
  if (!readable || !Array.isArray(chunks)) return;
  for (const entry of chunks) {
    const { chunk, encoding } = (entry ?? {}) as { chunk?: unknown; encoding?: BufferEncoding };
    if (chunk === null) readable.push(null);
    else if (typeof chunk === 'string') readable.push(chunk, encoding);
    else if (chunk instanceof Uint8Array) readable.push(chunk);
  }
}

/** Node's pipeWithoutWarning: a pipe that adds no listener-count warning to either stream. */
export function pipeWithoutWarning(source: Readable, destination: NodeJS.WritableStream): void {
  const sourceMax = (source as unknown as { _maxListeners?: number })._maxListeners;
  const destinationMax = (destination as unknown as { _maxListeners?: number })._maxListeners;
  source.setMaxListeners(Infinity);
  (destination as unknown as Writable).setMaxListeners(Infinity);
  source.pipe(destination);
  (source as unknown as { _maxListeners?: number })._maxListeners = sourceMax;
  (destination as unknown as { _maxListeners?: number })._maxListeners = destinationMax;
}
