// listen() and connect(): unrelated processes meet at a unix socket path (or a Linux abstract
// name). Each accepted connection becomes a new channel: the listening side makes its shared
// segment and sends it over the connection, which then serves as the channel's socket.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';

import { nodeError } from './errors';
import { native, type FdWatcher } from './native';
import { createPort, type MessagePort } from './port';

/** Who connected, as the kernel reported it when the connection was made. */
export interface Peer {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

export interface ListenOptions {
  /** Mode of the socket file (default `0o600`). Abstract names have no file and no mode. */
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

function checkOptions(options: ListenOptions): { mode: number; uids: Set<number> | null; backlog: number } {
  const { mode = 0o600, uids = [process.getuid!()], backlog = 511 } = options;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw nodeError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "options.mode" is out of range. It must be an integer >= 0 && <= 0o777. Received ${mode}`);
  }
  if (!Number.isInteger(backlog) || backlog < 0) {
    throw nodeError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "options.backlog" is out of range. It must be an integer >= 0. Received ${backlog}`);
  }
  if (uids === 'any') return { mode, uids: null, backlog };
  if (!Array.isArray(uids) || !uids.every((uid) => Number.isInteger(uid) && uid >= 0)) {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_VALUE', "The property 'options.uids' must be 'any' or an array of uids.");
  }
  return { mode, uids: new Set(uids), backlog };
}

/** Binds `path`, replacing a socket file that a dead listener left behind (never a live one). */
function bind(path: string, mode: number, backlog: number): number {
  const address = Buffer.from(path);
  try {
    return native.listenLocal(address, mode, backlog);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || path.startsWith('\0')) throw error;
    if (!fs.lstatSync(path, { throwIfNoEntry: false })?.isSocket()) throw error;
    let probe: number;
    try {
      probe = native.connectLocal(address);
    } catch (probeError) {
      if ((probeError as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw error;
      // Nobody listens there any more: the file is stale.
      fs.unlinkSync(path);
      return native.listenLocal(address, mode, backlog);
    }
    fs.closeSync(probe);
    throw error;
  }
}

/**
 * Emits `'connection'` with `(port, peer)` for each process that connects, `'refused'` with
 * `(peer)` for each one its options turn away, `'error'` when accepting fails, and `'close'`.
 */
export class Server extends EventEmitter {
  readonly #path: string;
  readonly #uids: Set<number> | null;
  #fd: number;
  #watcher: FdWatcher | undefined;
  #file: fs.Stats | undefined;

  /** @internal use listen() */
  constructor(path: string, options: ListenOptions) {
    super();
    const { mode, uids, backlog } = checkOptions(options);
    this.#path = path;
    this.#uids = uids;
    try {
      this.#fd = bind(path, mode, backlog);
    } catch (error) {
      throw withAddress(error, path);
    }
    if (!path.startsWith('\0')) this.#file = fs.statSync(path);
    this.#watcher = new native.FdWatcher(this.#fd, () => this.#accept());
    process.nextTick(() => this.emit('listening'));
  }

  /** The path (or `'\0'`-prefixed abstract name) it listens at. */
  get path(): string {
    return this.#path;
  }

  get listening(): boolean {
    return this.#watcher !== undefined;
  }

  #accept(): void {
    for (;;) {
      let accepted: [number, number, number, number] | null;
      try {
        accepted = native.acceptLocal(this.#fd);
      } catch (error) {
        this.emit('error', withAddress(error, this.#path));
        return;
      }
      if (accepted === null) return;
      const [fd, pid, uid, gid] = accepted;
      const peer: Peer = Object.freeze({ pid, uid, gid });
      if (this.#uids !== null && !this.#uids.has(uid)) {
        native.refuse(fd);
        this.emit('refused', peer);
        continue;
      }
      const handle = native.welcome(fd);
      if (handle !== null) this.emit('connection', createPort(handle), peer);
    }
  }

  /** Stops accepting and removes the socket file; ports already made stay open. */
  close(callback?: (error?: Error) => void): this {
    if (this.#watcher === undefined) {
      if (callback) process.nextTick(callback, nodeError(Error, 'ERR_SERVER_NOT_RUNNING', 'Server is not running.'));
      return this;
    }
    this.#watcher.close();
    this.#watcher = undefined;
    fs.closeSync(this.#fd);
    const file = this.#file;
    const now = file && fs.lstatSync(this.#path, { throwIfNoEntry: false });
    // Only our own file: another listener may have replaced it since.
    if (file && now && now.ino === file.ino && now.dev === file.dev) fs.unlinkSync(this.#path);
    if (callback) this.once('close', callback);
    process.nextTick(() => this.emit('close'));
    return this;
  }

  /** A listening server keeps the process alive (the default); unref() lets it exit. */
  ref(): this {
    this.#watcher?.ref();
    return this;
  }

  unref(): this {
    this.#watcher?.unref();
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
 * Listens at a unix socket `path` (a string starting with `'\0'` is a Linux abstract name).
 * Throws as bind() fails: EADDRINUSE when a live listener is there (a stale socket file left by
 * a dead one is replaced).
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

/**
 * Connects to a listener at `path`, resolving to a port entangled with the one its
 * `'connection'` event gets. Rejects with the errno code: ENOENT, ECONNREFUSED, EACCES (refused
 * by the listener's options), ECONNRESET (the listener went without answering).
 *
 * With a `nats://host:port/subject.prefix` address, connects through NATS to a listener on that
 * subject (`options` as for listen()): ECONNREFUSED when nobody listens there, EACCES when NATS
 * forbids it, ETIMEDOUT without an answer in `connectTimeoutMs` (see docs/nats.md).
 */
export function connect(path: string, options?: import('./nats').NatsOptions): Promise<MessagePort> {
  checkPath(path);
  if (isNatsAddress(path)) {
    try {
      return nats().connectNats(path, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }
  return new Promise((resolve, reject) => {
    let fd: number;
    try {
      fd = native.connectLocal(Buffer.from(path));
    } catch (error) {
      reject(withAddress(error, path));
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
      if (handle === null) watcher = new native.FdWatcher(fd, arrive);
      else resolve(createPort(handle));
    };
    arrive();
  });
}
