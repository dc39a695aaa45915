// listen() and connect(): unrelated processes meet at a unix socket path (or a Linux abstract
// name). Each accepted connection becomes a new channel: the listening side makes its shared
// segment and sends it over the connection, which then serves as the channel's socket.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { constants } from 'node:os';

import { nodeError } from './errors';
import { native, type FdWatcher } from './native';
import { createPort, type MessagePort } from './port';

/** A process at the other end of a connection, as the kernel reported it (`SO_PEERCRED`) when it was made. */
export interface Peer {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** Options of `listen(path, options)`. */
export interface ListenOptions {
  /**
   * Mode of the socket file (default `0o600`: this uid only). The file has it from the moment it
   * appears, never wider. Abstract names have no file and no mode.
   */
  mode?: number;
  /**
   * The uids allowed to connect (default: this process's uid only); `'any'` admits every uid
   * that can reach the socket. A refused peer gets no port: its `connect()` rejects with EACCES.
   */
  uids?: readonly number[] | 'any';
  /** Connections the kernel queues before they are accepted (default 511). */
  backlog?: number;
}

function printable(path: string): string {
  return path.startsWith('\0') ? `@${path.slice(1)}` : path;
}

function withAddress(error: unknown, path: string): unknown {
  const systemError = error as Error & { address?: string };
  if (typeof systemError?.message === 'string' && systemError.address === undefined) {
    systemError.message = `${systemError.message} ${printable(path)}`;
    systemError.address = path;
  }
  return error;
}

function checkPath(path: unknown): asserts path is string {
  if (typeof path !== 'string') {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "path" argument must be of type string. Received ${typeof path}`);
  }
}

function checkOptionsObject(options: unknown): asserts options is object {
  if (typeof options !== 'object' || options === null) {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "options" argument must be of type object. Received ${options === null ? 'null' : `type ${typeof options}`}`);
  }
}

/** `uids` as an allowed set, or null for 'any'. */
function checkUids(uids: unknown): Set<number> | null {
  if (uids === 'any') return null;
  if (!Array.isArray(uids) || !uids.every((uid) => Number.isInteger(uid) && uid >= 0)) {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_VALUE', "The property 'options.uids' must be 'any' or an array of uids.");
  }
  return new Set(uids);
}

function checkListenOptions(options: unknown): { mode: number; uids: Set<number> | null; backlog: number } {
  checkOptionsObject(options);
  const { mode = 0o600, uids = [process.getuid!()], backlog = 511 } = options as ListenOptions;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw nodeError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "options.mode" is out of range. It must be an integer >= 0 && <= 0o777. Received ${mode}`);
  }
  if (!Number.isInteger(backlog) || backlog < 0) {
    throw nodeError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "options.backlog" is out of range. It must be an integer >= 0. Received ${backlog}`);
  }
  return { mode, uids: checkUids(uids), backlog };
}

/** Removes `path` unless someone else removed it first. */
function unlinkIfThere(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** Which socket file a listener made (to remove only that one). */
interface SocketFile {
  dev: bigint;
  ino: bigint;
}

/**
 * Binds `path`, replacing a socket file that a dead listener left behind (never a live one):
 * the fd, and the socket file it made (undefined for an abstract name).
 */
function bind(path: string, mode: number, backlog: number): { fd: number; file?: SocketFile } {
  const address = Buffer.from(path);
  const listenAt = (): { fd: number; file?: SocketFile } => {
    const [fd, dev, ino] = native.listenLocal(address, mode, backlog);
    return path.startsWith('\0') ? { fd } : { fd, file: { dev, ino } };
  };
  try {
    return listenAt();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || path.startsWith('\0')) throw error;
    if (!fs.lstatSync(path, { throwIfNoEntry: false })?.isSocket()) throw error;
    let probe: number;
    try {
      [probe] = native.connectLocal(address);
    } catch (probeError) {
      if ((probeError as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw error;
      // Nobody listens there any more: the file is stale.
      unlinkIfThere(path);
      return listenAt();
    }
    native.closeFd(probe);
    throw error;
  }
}

/** True for the errors of a process (or system) out of file descriptors. */
function outOfFds(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** A spare fd, given up to shed connections when out of fds; -1 when none can be had. */
function openReserve(): number {
  try {
    return fs.openSync('/dev/null', 'r');
  } catch {
    return -1;
  }
}

// While accepting fails for a reason shedding cannot cure, how long the server waits before it
// watches its socket again (doubling from the first to the last while it keeps failing).
const kFirstRetryMs = 10;
const kLastRetryMs = 1000;

/**
 * What `listen()` returns. Emits `'listening'` (on the next tick), `'connection'` with
 * `(port, peer)` for each process that connects (`port`: the server's end of a new channel),
 * `'refused'` with `(peer)` for each one its `uids` turn away, `'error'` when accepting fails, and
 * `'close'` after `close()`. Not in worker_threads.
 *
 * Out of file descriptors, it does what a net.Server does (libuv's uv__emfile_trick): it gives
 * up a spare fd it keeps for this, accepts every waiting connection with it and closes them at
 * once (their `connect()` rejects with ECONNRESET), and takes the spare again; no 'error'. A
 * connection accepted when its channel cannot be made for want of fds is closed the same way.
 * Only when that is impossible (no spare) or accepting fails otherwise does it emit 'error',
 * and watch again a while later rather than at once.
 */
export class Server extends EventEmitter {
  // TypeScript-private, not #names: a private name in the published .d.ts fails consumers that
  // compile for ES5 (TS18028), which is tsc's default target.
  private readonly socketPath: string;
  private readonly uids: Set<number> | null;
  private fd: number;
  private open = true;
  private watcher: FdWatcher | undefined;  // undefined while closed, or paused after an error
  private file: SocketFile | undefined;
  private reserve: number;
  private retry: NodeJS.Timeout | undefined;
  private retryMs = kFirstRetryMs;
  private referenced = true;

  /** @internal use listen() */
  constructor(path: string, options: ListenOptions) {
    super();
    const { mode, uids, backlog } = checkListenOptions(options);
    this.socketPath = path;
    this.uids = uids;
    try {
      ({ fd: this.fd, file: this.file } = bind(path, mode, backlog));
    } catch (error) {
      throw withAddress(error, path);
    }
    this.reserve = openReserve();
    this.watch();
    process.nextTick(() => this.emit('listening'));
  }

  /** The path (or `'\0'`-prefixed abstract name) given to `listen()`. */
  get path(): string {
    return this.socketPath;
  }

  /** `true` until `close()`. */
  get listening(): boolean {
    return this.open;
  }

  private watch(): void {
    this.watcher = new native.FdWatcher(this.fd, () => this.accept());
    if (!this.referenced) this.watcher.unref();
  }

  private accept(): void {
    // (A listener may close the server: nothing more is accepted then.)
    while (this.watcher !== undefined) {
      let accepted: [number, number, number, number] | null;
      try {
        accepted = native.acceptLocal(this.fd);
      } catch (error) {
        // (At the limit, accept() fails even with nothing waiting: shed, then wait for the next.)
        if (!outOfFds(error) || !this.shed()) this.pause(error);
        return;
      }
      if (accepted === null) return;
      this.retryMs = kFirstRetryMs;
      const [fd, pid, uid, gid] = accepted;
      const peer: Peer = Object.freeze({ pid, uid, gid });
      if (this.uids !== null && !this.uids.has(uid)) {
        native.refuse(fd);
        this.emit('refused', peer);
        continue;
      }
      let handle;
      try {
        handle = native.welcome(fd);  // (it closes the connection when it throws)
      } catch (error) {
        if (!outOfFds(error)) this.emit('error', withAddress(error, this.socketPath));
        continue;
      }
      if (handle !== null) this.emit('connection', createPort(handle), peer);
    }
  }

  /**
   * Out of fds: accepts and closes every waiting connection in the slot of the spare fd, so
   * that they neither wait nor keep the socket readable. False if it could not get to the end
   * of them (no spare, or another thread took its slot first).
   */
  private shed(): boolean {
    if (this.reserve < 0) {
      this.reserve = openReserve();
      return false;
    }
    fs.closeSync(this.reserve);
    let drained = false;
    while (!drained) {
      let accepted;
      try {
        accepted = native.acceptLocal(this.fd);
      } catch {
        break;
      }
      if (accepted === null) drained = true;
      else native.closeFd(accepted[0]);
    }
    this.reserve = openReserve();
    return drained;
  }

  /** Accepting failed: reported through 'error', and tried again a while later, not at once. */
  private pause(error: unknown): void {
    this.watcher?.close();
    this.watcher = undefined;
    const delay = this.retryMs;
    this.retryMs = Math.min(kLastRetryMs, 2 * delay);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.open) this.watch();
    }, delay);
    if (!this.referenced) this.retry.unref();
    this.emit('error', withAddress(error, this.socketPath));
  }

  /**
   * Stops accepting and removes the socket file (only while it is still the one this server
   * made); ports already made stay open.
   * @param callback Called once closed; with an `Error` `ERR_SERVER_NOT_RUNNING` if it was not
   *   running.
   */
  close(callback?: (error?: Error) => void): this {
    if (!this.open) {
      if (callback) process.nextTick(callback, nodeError(Error, 'ERR_SERVER_NOT_RUNNING', 'Server is not running.'));
      return this;
    }
    this.open = false;
    this.watcher?.close();
    this.watcher = undefined;
    clearTimeout(this.retry);
    native.closeFd(this.fd);
    if (this.reserve >= 0) fs.closeSync(this.reserve);
    const file = this.file;
    const now = file && fs.lstatSync(this.socketPath, { bigint: true, throwIfNoEntry: false });
    // Only our own file: another listener may have replaced it since.
    if (file && now && now.ino === file.ino && now.dev === file.dev) unlinkIfThere(this.socketPath);
    if (callback) this.once('close', callback);
    process.nextTick(() => this.emit('close'));
    return this;
  }

  /** A listening server keeps the process alive (the default); unref() lets it exit. */
  ref(): this {
    this.referenced = true;
    this.watcher?.ref();
    this.retry?.ref();
    return this;
  }

  /** Lets the process exit while the server listens. */
  unref(): this {
    this.referenced = false;
    this.watcher?.unref();
    this.retry?.unref();
    return this;
  }
}

export interface Server {
  on(event: 'connection', listener: (port: MessagePort, peer: Peer) => void): this;
  on(event: 'refused', listener: (peer: Peer) => void): this;
  on(event: 'listening' | 'close', listener: () => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  once(event: 'connection', listener: (port: MessagePort, peer: Peer) => void): this;
  once(event: 'refused', listener: (peer: Peer) => void): this;
  once(event: 'listening' | 'close', listener: () => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
}

// nats:// (or tls://) addresses: remote ports (lib/nats, loaded only when such an address is used).
type NatsAddress = `nats://${string}` | `tls://${string}`;
type Nats = typeof import('./nats');

function isNatsAddress(path: string): boolean {
  return path.startsWith('nats://') || path.startsWith('tls://');
}

function nats(): Nats {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('./nats') as Nats;
}

/**
 * Listens at a unix socket `path` (a string starting with `'\0'` is a Linux abstract name), where
 * any process that may reach it can `connect()` and get a port. A socket file left by a dead
 * listener is replaced; a live listener is never taken over, and a path that is not a socket is
 * never removed. Not in worker_threads.
 * @throws {Error} a system error with `code`, `syscall` `'bind'` and `address` when it cannot bind:
 *   `EADDRINUSE` (a live listener, or a file that is not a socket, is there), `EACCES`, `ENOENT`…
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` (`path`, `options`), `ERR_INVALID_ARG_VALUE` (`uids`).
 * @throws {RangeError} `ERR_OUT_OF_RANGE` (`mode`, `backlog`).
 *
 * With a `nats://host:port/subject.prefix` address, listens on that NATS subject instead and
 * resolves once subscribed; `options` are the NATS client's (auth, TLS...) and crossport's
 * (heartbeatMs, timeoutMs, maxMessageSize, connectTimeoutMs, connection).
 */
export function listen(address: NatsAddress, options?: import('./nats').NatsOptions): Promise<import('./nats').NatsServer>;
export function listen(path: string, options?: ListenOptions): Server;
export function listen(path: string, options: ListenOptions | import('./nats').NatsOptions = {}): Server | Promise<import('./nats').NatsServer> {
  checkPath(path);
  if (isNatsAddress(path)) return nats().listenNats(path, options as import('./nats').NatsOptions);
  return new Server(path, options as ListenOptions);
}

/** Options of `connect(path, options)`. */
export interface ConnectOptions {
  /**
   * The uids the listening process may run as (default: this process's uid, and root's); `'any'`
   * trusts whoever listens. Another uid (an impostor that took the path first, say) gets no
   * port: `connect()` rejects with EACCES and closes the connection before any message flows.
   */
  uids?: readonly number[] | 'any';
}

/** A port made by `connect()`: `peer` is the listening process, as the kernel reported it. */
export interface ConnectedPort extends MessagePort {
  readonly peer: Peer;
}

function checkConnectOptions(options: unknown): Set<number> | null {
  checkOptionsObject(options);
  const { uids = [process.getuid!(), 0] } = options as ConnectOptions;
  return checkUids(uids);
}

function refusedListener(path: string, peer: Peer): Error {
  const error = new Error(`connect EACCES ${printable(path)}: the listener runs as uid ${peer.uid}, not one of options.uids`);
  return Object.assign(error, { errno: -constants.errno.EACCES, code: 'EACCES', syscall: 'connect', address: path, peer });
}

/**
 * Connects to a `listen()`er at `path`, resolving to a port entangled with the one its
 * `'connection'` event gets; the port's `peer` tells who listens. Not in worker_threads.
 * Rejects with an `Error` with `code`, `errno`, `syscall` `'connect'` and `address`: ENOENT (no
 * such path), ECONNREFUSED (nobody listens), EACCES (refused by the listener's options, or the
 * listener's uid is not in `options.uids`: then the error has `peer` too), ECONNRESET (the
 * listener went without answering), EPROTO (what it answered is no channel), EPROTOTYPE (a socket
 * of another kind).
 * @throws {TypeError} synchronously: `ERR_INVALID_ARG_TYPE` (`path`, `options`),
 *   `ERR_INVALID_ARG_VALUE` (`uids`).
 *
 * With a `nats://host:port/subject.prefix` address, connects through NATS to a listener on that
 * subject (`options` as for listen()): ECONNREFUSED when nobody listens there, EACCES when NATS
 * forbids it, ETIMEDOUT without an answer in `connectTimeoutMs` (see docs/nats.md).
 */
export function connect(address: NatsAddress, options?: import('./nats').NatsOptions): Promise<MessagePort>;
export function connect(path: string, options?: ConnectOptions): Promise<ConnectedPort>;
export function connect(path: string, options: ConnectOptions | import('./nats').NatsOptions = {}): Promise<ConnectedPort | MessagePort> {
  checkPath(path);
  if (isNatsAddress(path)) {
    try {
      return nats().connectNats(path, options as import('./nats').NatsOptions);
    } catch (error) {
      return Promise.reject(error);
    }
  }
  const uids = checkConnectOptions(options);
  return new Promise((resolve, reject) => {
    let fd: number;
    let peer: Peer;
    try {
      const [connected, pid, uid, gid] = native.connectLocal(Buffer.from(path));
      fd = connected;
      peer = Object.freeze({ pid, uid, gid });
    } catch (error) {
      reject(withAddress(error, path));
      return;
    }
    if (uids !== null && !uids.has(peer.uid)) {
      native.closeFd(fd);
      reject(refusedListener(path, peer));
      return;
    }
    // The fd may have only one watcher at a time, and the port's link needs it: each attempt
    // stops watching first, and watches again while the answer is still on its way.
    let watcher: FdWatcher | undefined;
    const arrive = (): void => {
      watcher?.close();
      watcher = undefined;
      let handle;
      try {
        handle = native.arrive(fd);
      } catch (error) {
        reject(withAddress(error, path));
        return;
      }
      if (handle === null) {
        watcher = new native.FdWatcher(fd, arrive);
        return;
      }
      const port = createPort(handle);
      Object.defineProperty(port, 'peer', { value: peer, enumerable: true });
      resolve(port as ConnectedPort);
    };
    arrive();
  });
}
