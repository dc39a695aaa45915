// What a worker sees: isMainThread, parentPort, workerData, threadId, resourceLimits and the
// environment data, in a crossport Worker's process (set by its bootstrap, worker-child.ts), in a
// worker_threads thread (worker_threads' own values, so that one worker file serves both kinds of
// worker) and elsewhere (the main thread's values). Small on purpose: a worker process loads it
// before its script runs, and not the Worker class.
import workerThreads = require('node:worker_threads');

import type { MessagePort } from './port';
import { parentPort as forkParentPort } from './process';

export interface ResourceLimits {
  maxYoungGenerationSizeMb?: number;
  maxOldGenerationSizeMb?: number;
  codeRangeSizeMb?: number;
  stackSizeMb?: number;
}

export interface WorkerContext {
  parentPort: MessagePort;
  workerData: unknown;
  threadId: number;
  resourceLimits: Required<ResourceLimits>;
  environmentData: Map<unknown, unknown>;
}

// Set on `process` by the worker's bootstrap, so that another copy of this package loaded in
// the same worker process (a second node_modules) sees the same values.
const kWorkerContext = Symbol.for('crossport.workerContext');
const inherited = (process as unknown as { [kWorkerContext]?: WorkerContext })[kWorkerContext];
const inThread = !workerThreads.isMainThread;

/** False in a worker: a crossport Worker's process, or a worker_threads thread. */
export let isMainThread = !inThread && inherited === undefined;
/**
 * In a worker, the port to its parent (a worker thread: worker_threads' own parentPort); in a
 * process started by fork(), the port to its parent; otherwise null.
 */
export let parentPort: MessagePort | workerThreads.MessagePort | null = inThread ? workerThreads.parentPort : inherited?.parentPort ?? forkParentPort;
/** In a worker, a clone of the workerData given to its Worker; null in the main thread. */
export let workerData: any = inThread ? workerThreads.workerData : inherited ? inherited.workerData : null;
/** In a worker, its Worker's threadId; 0 in the main thread. */
export let threadId: number = inThread ? workerThreads.threadId : inherited?.threadId ?? 0;
/** In a worker, the limits it runs with; {} in the main thread. */
export let resourceLimits: ResourceLimits = inThread ? workerThreads.resourceLimits : inherited?.resourceLimits ?? {};

// The environment data this process gives each new Worker (a copy of it, as worker_threads does):
// in a worker process, what its Worker gave it.
let environmentData: Map<unknown, unknown> = inherited?.environmentData ?? new Map();

/**
 * worker_threads.setEnvironmentData: `value` (undefined: none) is cloned into every Worker made
 * after this call, of either kind (it is set in worker_threads' own data too).
 */
export function setEnvironmentData(key: unknown, value: unknown): void {
  workerThreads.setEnvironmentData(key as never, value as never);
  if (value === undefined) environmentData.delete(key);
  else environmentData.set(key, value);
}

/** worker_threads.getEnvironmentData: in a worker, what its parent had set when it made the Worker. */
export function getEnvironmentData(key: unknown): unknown {
  return environmentData.has(key) ? environmentData.get(key) : workerThreads.getEnvironmentData(key as never);
}

/** The environment data a new Worker gets (cloned by postMessage). */
export function environmentDataForWorker(): Map<unknown, unknown> {
  return environmentData;
}

/** Called by the bootstrap of a worker process before the worker's script runs. */
export function enterWorker(context: WorkerContext): void {
  Object.defineProperty(process, kWorkerContext, { value: context });
  isMainThread = false;
  parentPort = context.parentPort;
  workerData = context.workerData;
  threadId = context.threadId;
  resourceLimits = context.resourceLimits;
  environmentData = context.environmentData;
}
