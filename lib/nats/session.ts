// One NATS connection as crossport uses it: the endpoints (remote ports) and listeners on it,
// one timer that sends heartbeats and watches liveness for all of them, and whether the process
// must stay alive for them (the connection itself never keeps it alive: see unrefTransport).
// listen()/connect() calls of one thread to the same server with equal options share one
// connection (openSession); a connection of the user's own has one session too.
import { createHash, randomBytes } from 'node:crypto';

import { nodeError } from '../errors';
import { natsClient, type NatsConnection, type NatsSubscription } from './client';
import { kMaxSubjectLength } from './frame';
import type { NatsOptions, Settings } from './options';

export type { NatsOptions, Settings } from './options';

export const kDefaultSettings: Settings = {
  heartbeatMs: 1000,
  timeoutMs: 5000,
  maxMessageSize: 1024 * 1024 * 1024,
  connectTimeoutMs: 5000,
};

/** An endpoint that publishes: what it published in the session's current epoch (see publish). */
export interface Publisher {
  epoch: number;
  held: number;
  /** It listens for 'drain'. */
  wantsDrain(): boolean;
  /** The client holds none of its bytes any more. */
  drained(): void;
}

/** What the session asks of the endpoints it ticks. */
export interface Ticked {
  /** How often it wants tick() (ms). */
  readonly tickMs: number;
  tick(now: number): void;
  /** The connection closed for good. */
  connectionClosed(): void;
  /** The process is about to exit: tell the peer, if any, that this end is gone. */
  farewell?(): void;
}

// Sessions with users. When the event loop empties (a natural exit), their open ports tell their
// peers they are gone, as a local port's peer learns it when the process's sockets close; the
// peers would otherwise learn it only after their timeout.
const liveSessions = new Set<Session>();
let farewellSaid = false;
process.on('beforeExit', () => {
  if (farewellSaid || liveSessions.size === 0) return;
  farewellSaid = true;
  for (const session of liveSessions) session.farewell();
});

/** 128 random bits as a subject token. */
export function newToken(): string {
  return randomBytes(16).toString('base64url');
}

/** How often a port with `settings` checks its peer and sends heartbeats (ms). */
export function tickMsOf(settings: Settings): number {
  return Math.max(10, Math.min(settings.heartbeatMs, settings.timeoutMs / 4));
}

export class Session {
  readonly nc: NatsConnection;
  /** Whose connection: crossport's (closed when its last user is done), or the user's own. */
  readonly #owned: boolean;
  /** Called once the session is done with (its connection closing or closed). */
  readonly #onDone: () => void;
  readonly #ticked = new Set<Ticked>();
  #users = 0;
  #refs = 0;
  /** While the session has users: ticks them, and is what keeps the process alive (ref()). */
  #timer: NodeJS.Timeout | undefined;
  #tickMs = Infinity;
  #done = false;
  // bufferedAmount: what the NATS client still holds (its outbound buffer and its socket's write
  // queue, see held()). Each endpoint counts what it published since the client last held
  // nothing (an epoch: a new one starts at each publish that finds the client empty).
  #epoch = 0;
  // Endpoints with 'drain' listeners that have bytes held, and the timer that looks for the end.
  readonly #draining = new Set<Publisher>();
  #drainCheck: NodeJS.Timeout | undefined;

  constructor(nc: NatsConnection, owned: boolean, onDone: () => void) {
    this.nc = nc;
    this.#owned = owned;
    this.#onDone = onDone;
    if (owned) unrefTransport(nc);
    nc.closed().then(() => this.closed(), () => this.closed());
    void this.#watch();
  }

  /** Closing or closed: a new user needs another session. */
  get done(): boolean {
    return this.#done;
  }

  /** The largest payload the server takes. */
  get maxPayload(): number {
    return this.nc.info?.max_payload ?? 1024 * 1024;
  }

  /** An endpoint, a listener or a pending listen()/connect() starts using the session (release() when done). */
  retain(ticked?: Ticked): void {
    this.#users++;
    liveSessions.add(this);
    if (ticked) {
      this.#ticked.add(ticked);
      if (ticked.tickMs < this.#tickMs) this.#startTimer(ticked.tickMs);
    }
    if (this.#timer === undefined) this.#startTimer(this.#tickMs === Infinity ? 1000 : this.#tickMs);
  }

  release(ticked?: Ticked): void {
    if (ticked) this.#ticked.delete(ticked);
    if (--this.#users > 0) return;
    liveSessions.delete(this);
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#tickMs = Infinity;
    if (this.#owned) {
      // Its last user is done: the connection closes (what it buffered goes out first).
      this.#finish();
      this.nc.close().catch(() => {});
    }
  }

  #startTimer(tickMs: number): void {
    clearInterval(this.#timer);
    this.#tickMs = tickMs;
    this.#timer = setInterval(() => this.#tick(), tickMs);
    if (this.#refs === 0) this.#timer.unref();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#onDone();
  }

  /** The process is exiting: every open port says goodbye, and what is buffered goes out. */
  farewell(): void {
    for (const ticked of this.#ticked) ticked.farewell?.();
    if (this.#owned) {
      this.#finish();
      this.nc.close().catch(() => {});
    }
  }

  /** Something on this session keeps the process alive (ports listening, listeners, connects). */
  ref(): void {
    if (this.#refs++ === 0) this.#timer?.ref();
  }

  unref(): void {
    if (--this.#refs === 0) this.#timer?.unref();
  }

  subscribe(subject: string, onData: (data: Uint8Array) => void): NatsSubscription {
    return this.nc.subscribe(subject, {
      callback: (error, msg) => {
        if (error === null) onData(msg.data);
      },
    });
  }

  /** Publishes, counting the bytes against `owner` while the client holds them. */
  publish(subject: string, data: Uint8Array, owner?: Publisher): void {
    if (owner !== undefined) {
      if (this.held() === 0) this.#epoch++;
      if (owner.epoch !== this.#epoch) {
        owner.epoch = this.#epoch;
        owner.held = 0;
      }
      owner.held += data.byteLength;
    }
    try {
      this.nc.publish(subject, data);
    } catch {
      return;  // closed or closing: the port learns it from connectionClosed()
    }
    if (owner?.wantsDrain()) this.awaitDrain(owner);
  }

  /** `owner.drained()` once the client holds nothing (again). */
  awaitDrain(owner: Publisher): void {
    this.#draining.add(owner);
    this.#drainCheck ??= setTimeout(() => this.#checkDrain(), 0).unref();
  }

  /** `owner` waits for its drained(). */
  awaitsDrain(owner: Publisher): boolean {
    return this.#draining.has(owner);
  }

  /** What `owner` published that the client still holds. */
  heldBy(owner: Publisher): number {
    if (owner.epoch !== this.#epoch) return 0;
    const held = this.held();
    return held === undefined ? owner.held : Math.min(owner.held, held);
  }

  /**
   * Bytes the client holds: its outbound buffer and what its socket has not written yet. The
   * client exposes no such measure, so this reads its internals; undefined when they are not
   * what we know (then each endpoint reports what it published since the client was last seen
   * empty, and 'drain' comes from a flush: PING/PONG).
   */
  held(): number | undefined {
    const protocol = (this.nc as unknown as { protocol?: any }).protocol;
    const outbound = protocol?.outbound?.size?.();
    if (typeof outbound !== 'number') return undefined;
    const socket = protocol.transport?.socket;
    return outbound + (typeof socket?.writableLength === 'number' ? socket.writableLength : 0);
  }

  #checkDrain(): void {
    this.#drainCheck = undefined;
    const held = this.held();
    if (held === undefined) {
      const waiting = [...this.#draining];
      this.#draining.clear();
      this.nc.flush().then(() => {
        this.#epoch++;
        for (const owner of waiting) owner.drained();
      }, () => {});
      return;
    }
    if (held > 0) {
      // Still writing (or disconnected, holding it for the reconnection): look again soon.
      this.#drainCheck = setTimeout(() => this.#checkDrain(), 5).unref();
      return;
    }
    this.#epoch++;
    const drained = [...this.#draining];
    this.#draining.clear();
    for (const owner of drained) owner.drained();
  }

  #tick(): void {
    const now = Date.now();
    for (const ticked of [...this.#ticked]) ticked.tick(now);
  }

  async #watch(): Promise<void> {
    try {
      for await (const status of this.nc.status()) {
        if (status.type === 'reconnect' && this.#owned) unrefTransport(this.nc);
      }
    } catch {
      // the iterator ends with the connection
    }
  }

  /** Called once the connection closed for good. */
  closed(): void {
    this.#finish();
    clearInterval(this.#timer);
    this.#timer = undefined;
    liveSessions.delete(this);
    for (const ticked of [...this.#ticked]) ticked.connectionClosed();
  }
}

/**
 * The connection's socket and its ping timer must not keep the process alive by themselves (the
 * session's timer does, while a port or listener wants it): the client exposes no unref(), so
 * this reaches into its transport. Without those internals the connection keeps the process
 * alive until its last port closes, as before.
 */
function unrefTransport(nc: NatsConnection): void {
  const protocol = (nc as unknown as { protocol?: any }).protocol;
  protocol?.transport?.socket?.unref?.();
  const heartbeats = protocol?.heartbeats;
  if (heartbeats === undefined || heartbeats.crossportUnref) return;
  heartbeats.crossportUnref = true;
  const schedule = heartbeats._schedule;
  if (typeof schedule !== 'function') return;
  heartbeats._schedule = function (this: { timer?: NodeJS.Timeout }) {
    schedule.call(this);
    this.timer?.unref?.();
  };
  heartbeats.timer?.unref?.();
}

// ------------------------------------------------------------------------------------------
// Addresses and options

export interface NatsAddress {
  /** For the client's `servers` option. */
  server: string;
  subject: string;
  /** The address as errors and server.address show it: without its password. */
  shown: string;
  /** tls://: the connection must use TLS. */
  tls: boolean;
  /** From the address's user:password@ part, if any. */
  user?: string;
  pass?: string;
}

/** `nats://[user:pass@]host:port/subject.prefix` (or tls://). */
// A channel's subjects are the prefix, a dot and a token of 22 characters (newToken), within
// the longest subject a port accepts (frame.ts).
const kMaxPrefixLength = kMaxSubjectLength - 23;

/** `address` without the password of its user:password@ part. */
export function redact(address: string): string {
  return address.replace(/^([A-Za-z]+:\/\/[^:/@]*):[^@/]*@/, '$1:***@');
}

export function parseAddress(address: string): NatsAddress {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    url = undefined as never;
  }
  const subject = url ? decodeURIComponent(url.pathname.replace(/^\//, '')) : '';
  if (!url || (url.protocol !== 'nats:' && url.protocol !== 'tls:') || !url.host ||
      !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(subject) || subject.length > kMaxPrefixLength) {
    throw nodeError(TypeError, 'ERR_INVALID_URL',
      `Invalid NATS address: ${redact(address)} (expected nats://host:port/subject.prefix; the subject ` +
        `is made of tokens of letters, digits, - and _, separated by dots, ${kMaxPrefixLength} characters at most)`);
  }
  const parsed: NatsAddress = {
    server: `${url.protocol}//${url.host}`, subject, shown: redact(address), tls: url.protocol === 'tls:',
  };
  if (url.username) parsed.user = decodeURIComponent(url.username);
  if (url.password) parsed.pass = decodeURIComponent(url.password);
  return parsed;
}

export function settingsOf(options: NatsOptions): Settings {
  const settings = { ...kDefaultSettings };
  for (const key of Object.keys(kDefaultSettings) as (keyof Settings)[]) {
    const value = options[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw nodeError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "options.${key}" is out of range. It must be a positive number. Received ${String(value)}`);
    }
    settings[key] = value;
  }
  if (settings.timeoutMs <= settings.heartbeatMs) {
    throw nodeError(RangeError, 'ERR_OUT_OF_RANGE', `options.timeoutMs (${settings.timeoutMs}) must be longer than options.heartbeatMs (${settings.heartbeatMs})`);
  }
  return settings;
}

// Sessions of the connections crossport opened, by server and NATS options (see poolKey), while
// they have users; and the sessions of connections users gave (options.connection).
const pool = new Map<string, Promise<Session>>();
const theirs = new WeakMap<NatsConnection, Session>();

/**
 * A session for `address` with `options`, retained once for the caller (who releases it when its
 * listener or port holds it): the connection given in the options, a connection this thread
 * opened already to the same server with equal NATS options, or a new one.
 */
export async function openSession(address: NatsAddress, options: NatsOptions): Promise<Session> {
  const { connection, shareConnection = true, ...natsOptions } = options;
  for (const key of Object.keys(kDefaultSettings)) delete natsOptions[key];
  if (natsOptions.noEcho === true || (connection as { options?: { noEcho?: unknown } } | undefined)?.options?.noEcho === true) {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_VALUE',
      "The NATS option 'noEcho' is not supported: both ends of a channel may use one connection (in one " +
        'process, through a bridge, or a port moved back), which must then receive what it publishes');
  }
  if (connection !== undefined) {
    let session = theirs.get(connection);
    if (session === undefined || session.done) {
      session = new Session(connection, false, () => {});
      theirs.set(connection, session);
    }
    session.retain();
    return session;
  }
  // Credentials in the address, unless the options give their own; tls:// requires TLS; the
  // address's server first, then those of the servers option (more of the cluster to try).
  const credentials = address.user === undefined ? {} : { user: address.user, pass: address.pass };
  const extra = natsOptions.servers === undefined ? [] : ([] as unknown[]).concat(natsOptions.servers);
  const clientOptions = {
    ...credentials,
    ...natsOptions,
    ...(address.tls ? { tls: natsOptions.tls ?? {} } : {}),
    servers: [address.server, ...extra],
  };
  const key = shareConnection ? poolKey(clientOptions) : undefined;
  for (;;) {
    let pending = key === undefined ? undefined : pool.get(key);
    if (pending === undefined) {
      pending = natsClient().connect(clientOptions).then((nc) => new Session(nc, true, () => {
        if (key !== undefined && pool.get(key) === pending) pool.delete(key);
      }), (error) => {
        throw connectError(error, address.shown);
      });
      if (key !== undefined) {
        pool.set(key, pending);
        pending.catch(() => pool.get(key) === pending && pool.delete(key));
      }
    }
    const session = await pending;
    if (session.done) continue;  // its last user left while we waited: its connection closes
    session.retain();
    return session;
  }
}

/**
 * The client's error for a connection it could not make, as Node's net.connect would give it
 * (class, code, the address, the client's error as `cause`); Node's own (a socket's, TLS's) as
 * they are.
 */
function connectError(error: unknown, shown: string): unknown {
  const { name = '', message = '', code } = (error ?? {}) as { name?: string; message?: string; code?: unknown };
  if (typeof code === 'string') return error;
  const coded = (errorCode: string, why: string) =>
    Object.assign(nodeError(Error, errorCode, `connect ${errorCode} ${shown} (${why})`), { address: shown, cause: error });
  if (name === 'AuthorizationError' || /authorization violation/i.test(message)) {
    return coded('EACCES', `the NATS server refused the credentials: ${message}`);
  }
  if (/connection refused/i.test(message)) return coded('ECONNREFUSED', 'no NATS server accepts connections there');
  if (/tls/i.test(message)) return coded('EPROTO', `TLS: ${message}`);
  if (name === 'TimeoutError' || /timeout/i.test(message)) {
    return coded('ETIMEDOUT', "no NATS handshake within the client's timeout option");
  }
  return error;
}

// Values without an identity of their own (functions, class instances) are known by this number.
const identities = new WeakMap<object, number>();
let lastIdentity = 0;

/**
 * Equal client options give equal keys: plain objects and arrays by content (keys sorted), bytes
 * (a certificate or key in `tls`) by content, functions (an authenticator) and other objects by
 * identity. Hashed, so that credentials are not kept as text in the map.
 */
function poolKey(options: Record<string, unknown>): string {
  const canonical = (value: unknown): string => {
    if (typeof value === 'string') return JSON.stringify(value);
    if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return `${typeof value}:${String(value)}`;
    if (ArrayBuffer.isView(value)) return `bytes:${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}`;
    if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
    const prototype = Object.getPrototypeOf(value);
    if (typeof value === 'object' && (prototype === Object.prototype || prototype === null)) {
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record).filter((key) => record[key] !== undefined).sort();  // { a: undefined } as {}
      const entries = keys.map((key) => `${JSON.stringify(key)}:${canonical(record[key])}`);
      return `{${entries.join(',')}}`;
    }
    let id = identities.get(value);
    if (id === undefined) identities.set(value, (id = ++lastIdentity));
    return `identity:${id}`;
  };
  return createHash('sha256').update(canonical(options)).digest('base64');
}
