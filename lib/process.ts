// fork() and parentPort: a channel between a parent and a child process. The child's end of
// the channel (its segment and socket fds) is passed as two extra stdio entries; the child finds
// them through an environment variable (with the parent's pid) and adopts them as `parentPort`,
// once it checked that they are what the variable says.
import type * as childProcess from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { nodeError } from './errors';
import { lazy } from './lazy';
import { native } from './native';
import { createPort, handleOf, MessageChannel, type MessagePort } from './port';

const kEnvironmentKey = 'CROSSPORT_PARENT_PORT';
// A child (and a Worker's process) adopts its parentPort without child_process.
const childProcessModule = lazy<typeof childProcess>('node:child_process');

/** What `fork()` returns: the `ChildProcess`, with the parent's end of the new channel. */
export interface CrossportChildProcess extends childProcess.ChildProcess {
  /**
   * Entangled with the child's `parentPort`: a `MessagePort` like any other (ports and OS handles
   * travel on it; it may be transferred on). It gets `'close'` when the child ends, after
   * everything the child wrote.
   */
  port: MessagePort;
}

/**
 * Starts a Node.js process as `child_process.fork()` does (same arguments and options), with a new
 * channel between the two: returns the `ChildProcess` with a `port` entangled with the child's
 * `parentPort`. The IPC channel of `child_process` is there too; `child.disconnect()` closes only
 * that one. Not in worker_threads.
 * @throws {TypeError} `ERR_INVALID_ARG_VALUE` for `args` that are neither an array nor options.
 * @throws {Error} `ERR_CHILD_PROCESS_IPC_REQUIRED` for an `options.stdio` without `'ipc'`; what
 *   `child_process.fork()` throws; a system error (`EMFILE`…) when the channel cannot be made.
 */
export function fork(modulePath: string | URL, options?: childProcess.ForkOptions): CrossportChildProcess;
export function fork(
  modulePath: string | URL,
  args?: readonly string[],
  options?: childProcess.ForkOptions,
): CrossportChildProcess;
export function fork(
  modulePath: string | URL,
  argsOrOptions?: readonly string[] | childProcess.ForkOptions,
  maybeOptions?: childProcess.ForkOptions,
): CrossportChildProcess {
  let args: readonly string[] = [];
  let options: childProcess.ForkOptions = {};
  if (Array.isArray(argsOrOptions)) {
    args = argsOrOptions;
    options = maybeOptions ?? {};
  } else if (argsOrOptions !== undefined && argsOrOptions !== null) {
    if (typeof argsOrOptions !== 'object') {
      throw nodeError(TypeError, 'ERR_INVALID_ARG_VALUE', 'The argument \'args\' is invalid.');
    }
    options = argsOrOptions as childProcess.ForkOptions;
  }
  return startChild(modulePath, args, options, forkStdio(options));
}

/**
 * fork()'s work, and (with stdio that has no 'ipc') a Node process without child_process's IPC
 * channel: a Worker's process needs only its crossport channels, and the IPC channel costs both
 * processes some milliseconds to set up. `stdio` is the child's, to which the channel's two fds
 * are appended.
 */
export function startChild(
  modulePath: string | URL,
  args: readonly string[],
  options: childProcess.ForkOptions,
  stdio: childProcess.StdioOptions & unknown[],
): CrossportChildProcess {
  const { port1, port2 } = new MessageChannel();
  const [segmentFd, socketFd, side] = handleOf(port2).exportFds();
  const first = stdio.length;
  stdio = [...stdio, segmentFd, socketFd] as typeof stdio;
  const env = { ...(options.env ?? process.env), [kEnvironmentKey]: `${process.pid},${first},${first + 1},${side}` };
  let child: childProcess.ChildProcess;
  try {
    if (stdio.includes('ipc')) {
      child = childProcessModule().fork(modulePath, args, { ...options, stdio, env });
    } else {
      // What child_process.fork does, less the channel.
      const execArgv = options.execArgv ?? withoutEval(process.execArgv);
      const file = typeof modulePath === 'string' ? modulePath : fileURLToPath(modulePath);
      child = childProcessModule().spawn(options.execPath ?? process.execPath, [...execArgv, file, ...args],
        { ...options, stdio, env, shell: false });
    }
  } catch (error) {
    port1.close();
    throw error;
  } finally {
    // The child has its own copies now (or never will): ours go, and so does port2.
    native.closeFd(segmentFd);
    native.closeFd(socketFd);
    handleOf(port2).dispose();
  }
  return Object.assign(child, { port: port1 });
}

/**
 * This process's execArgv as child_process.fork passes it on: without the `-e <code>` that made
 * this process (a child would run that code rather than its script).
 */
export function withoutEval(execArgv: readonly string[]): string[] {
  const copy = [...execArgv];
  const evaluated = (process as { _eval?: string })._eval;
  if (evaluated != null) {
    const index = copy.lastIndexOf(evaluated);
    if (index > 0) copy.splice(index - 1, 2);
  }
  return copy;
}

function forkStdio(options: childProcess.ForkOptions): childProcess.StdioOptions & unknown[] {
  const { stdio, silent } = options;
  if (stdio === undefined) {
    return silent ? ['pipe', 'pipe', 'pipe', 'ipc'] : [0, 1, 2, 'ipc'];
  }
  if (typeof stdio === 'string') return [stdio, stdio, stdio, 'ipc'];
  if (!stdio.includes('ipc')) {
    throw nodeError(Error, 'ERR_CHILD_PROCESS_IPC_REQUIRED', 'Forked processes must have an IPC channel, missing value \'ipc\' in options.stdio');
  }
  return [...stdio];
}

function adoptParentPort(): MessagePort | null {
  const value = process.env[kEnvironmentKey];
  if (value === undefined) return null;
  // Read once and never passed on: nothing this process starts may take these fds for its own.
  delete process.env[kEnvironmentKey];
  const numbers = value.split(',').map(Number);
  if (numbers.length !== 4 || !numbers.every((n) => Number.isSafeInteger(n) && n >= 0)) return null;
  const [parentPid, segmentFd, socketFd, side] = numbers;
  if (side > 1) return null;
  // A process fork() did not start can inherit the variable (a grandchild started before its
  // parent loaded crossport, or by one that never did): its fds of those numbers are not a
  // link's whose socket pair the named process made, and are left alone.
  const handle = native.adopt(segmentFd, socketFd, side, parentPid);
  return handle === null ? null : createPort(handle);
}

/**
 * In a process started by `fork()`, the port connected to the parent; otherwise `null` (also in a
 * process that inherited fork()'s environment variable without being started by it: the
 * descriptors it names are checked first, and the variable is removed from `process.env`).
 */
export const parentPort: MessagePort | null = adoptParentPort();
