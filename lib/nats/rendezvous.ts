// listen() and connect() for nats:// addresses. A listener subscribes the address's subject; a
// connecting process subscribes a subject of its own (the prefix and 128 random bits), then asks
// the listener (NATS request/reply) with a Hello naming it. The listener makes its end (another
// random subject), answers with a Welcome naming it, and emits 'connection'. From then on the
// two ends talk on their two subjects (handle.ts).
import { EventEmitter } from 'node:events';

import { nodeError } from '../errors';
import { createPort, type MessagePort } from '../port';
import { isSubject } from './frame';
import { NatsPortHandle } from './handle';
import type { NatsOptions, Settings } from './options';
import { newToken, openSession, parseAddress, settingsOf, type Session } from './session';

/** Who connected, as the peer's NATS server described the peer's connection to it (INFO). */
export interface NatsPeer {
  /** The client id the server gave the peer's connection. */
  readonly clientId: number | null;
  /** The peer's address as its server saw it. */
  readonly clientIp: string | null;
  readonly serverId: string | null;
  readonly serverName: string | null;
  /** The connection name the peer chose (its `name` option). */
  readonly name: string | null;
}

const kProtocol = 1;
const kMaxHandshake = 64 * 1024;

function identity(session: Session, options: NatsOptions): NatsPeer {
  const info = session.nc.info;
  return {
    clientId: info?.client_id ?? null,
    clientIp: info?.client_ip ?? null,
    serverId: info?.server_id ?? null,
    serverName: info?.server_name ?? null,
    name: typeof options.name === 'string' ? options.name : null,
  };
}

function text(value: unknown): string | null {
  return typeof value === 'string' ? value.slice(0, 256) : null;
}

/** The peer as its Hello/Welcome described it: checked, and only the fields we know. */
function peerOf(value: unknown): NatsPeer {
  const peer = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  return Object.freeze({
    clientId: Number.isSafeInteger(peer.clientId) ? (peer.clientId as number) : null,
    clientIp: text(peer.clientIp),
    serverId: text(peer.serverId),
    serverName: text(peer.serverName),
    name: text(peer.name),
  });
}

/** A Hello or Welcome: { crossport: 1, inbox, peer }, or undefined. */
function parseHandshake(data: Uint8Array): { inbox: string; peer: NatsPeer } | undefined {
  if (data.byteLength > kMaxHandshake) return undefined;
  let message: { crossport?: unknown; inbox?: unknown; peer?: unknown };
  try {
    message = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof message !== 'object' || message === null || message.crossport !== kProtocol) return undefined;
  if (!isSubject(message.inbox)) return undefined;
  return { inbox: message.inbox, peer: peerOf(message.peer) };
}

function handshake(inbox: string, peer: NatsPeer): Uint8Array {
  return Buffer.from(JSON.stringify({ crossport: kProtocol, inbox, peer }), 'utf8');
}

/**
 * Emits `'connection'` with `(port, peer)` for each process that connects, `'close'` once closed.
 * Made by `listen('nats://host:port/subject', options)`.
 */
export interface NatsServer extends EventEmitter {
  /** The address it listens at (without the password, if it had one). */
  readonly address: string;
  readonly listening: boolean;
  /** Stops accepting; ports already made stay open. */
  close(callback?: (error?: Error) => void): this;
  /** A listening server keeps the process alive (the default); unref() lets it exit. */
  ref(): this;
  unref(): this;
  on(event: 'connection', listener: (port: MessagePort, peer: NatsPeer) => void): this;
  on(event: 'close', listener: () => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  once(event: 'connection', listener: (port: MessagePort, peer: NatsPeer) => void): this;
  once(event: 'close', listener: () => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
}

// The NatsServer listen() makes (a type only for users: its declaration, with private names, is
// not theirs to read).
class NatsListener extends EventEmitter implements NatsServer {
  readonly #session: Session;
  readonly #subject: string;
  readonly #address: string;
  #subscription: { unsubscribe(): void } | undefined;
  #refed = true;
  readonly #ticked = { tickMs: Infinity, tick() {}, connectionClosed: () => this.close() };

  /** @internal use listen() */
  constructor(session: Session, settings: Settings, subject: string, address: string, options: NatsOptions) {
    super();
    this.#session = session;
    this.#subject = subject;
    this.#address = address;
    // The connection closing for good ends the listener too.
    session.retain(this.#ticked);
    session.ref();
    const me = identity(session, options);
    this.#subscription = session.nc.subscribe(subject, {
      callback: (error, msg) => {
        if (error !== null) return;
        const hello = parseHandshake(msg.data);
        if (hello === undefined) return;  // not a crossport Hello: ignored
        const handle = new NatsPortHandle(session, {
          settings,
          inbox: `${subject}.${newToken()}`,
          peer: hello.inbox,
          nextOut: 1,
          nextIn: 1,
        });
        const port = createPort(handle);
        msg.respond(handshake(handle.inbox, me));
        this.emit('connection', port, hello.peer);
      },
    });
  }

  /** The address it listens at (without the password, if it had one). */
  get address(): string {
    return this.#address;
  }

  get listening(): boolean {
    return this.#subscription !== undefined;
  }

  /** Stops accepting; ports already made stay open. */
  close(callback?: (error?: Error) => void): this {
    if (this.#subscription === undefined) {
      if (callback) process.nextTick(callback, nodeError(Error, 'ERR_SERVER_NOT_RUNNING', 'Server is not running.'));
      return this;
    }
    try {
      this.#subscription.unsubscribe();
    } catch {
      // the connection is gone already
    }
    this.#subscription = undefined;
    this.unref();
    this.#session.release(this.#ticked);
    if (callback) this.once('close', callback);
    process.nextTick(() => this.emit('close'));
    return this;
  }

  /** A listening server keeps the process alive (the default); unref() lets it exit. */
  ref(): this {
    if (!this.#refed && this.#subscription !== undefined) {
      this.#refed = true;
      this.#session.ref();
    }
    return this;
  }

  unref(): this {
    if (this.#refed) {
      this.#refed = false;
      this.#session.unref();
    }
    return this;
  }
}

export async function listenNats(address: string, options: NatsOptions = {}): Promise<NatsServer> {
  const parsed = parseAddress(address);
  const { subject } = parsed;
  const settings = settingsOf(options);
  const session = await openSession(parsed, options);
  try {
    const listener = new NatsListener(session, settings, subject, parsed.shown, options);
    // Subscribed at the server before anyone is told we listen.
    await session.nc.flush();
    return listener;
  } finally {
    session.release();
  }
}

export async function connectNats(address: string, options: NatsOptions = {}): Promise<MessagePort> {
  const parsed = parseAddress(address);
  const { subject } = parsed;
  const settings = settingsOf(options);
  const session = await openSession(parsed, options);
  const handle = new NatsPortHandle(session, { settings, inbox: `${subject}.${newToken()}`, peer: null, nextOut: 1, nextIn: 1 });
  session.release();  // the handle holds it now
  session.ref();  // the handshake keeps the process alive
  try {
    const reply = await session.nc.request(subject, handshake(handle.inbox, identity(session, options)), {
      timeout: settings.connectTimeoutMs,
    });
    const welcome = parseHandshake(reply.data);
    if (welcome === undefined) {
      throw nodeError(Error, 'ERR_CROSSPORT_NATS_PROTOCOL', `connect: ${parsed.shown} did not answer as a crossport listener`);
    }
    handle.setPeer(welcome.inbox);
    return createPort(handle);
  } catch (error) {
    handle.dispose();
    const name = (error as Error)?.name ?? '';
    const message = String((error as Error)?.message ?? '');
    const coded = (code: string, why: string) =>
      Object.assign(nodeError(Error, code, `connect ${code} ${parsed.shown} (${why})`), { address: parsed.shown, cause: error });
    if (name === 'NoRespondersError' || /no responders/i.test(message)) throw coded('ECONNREFUSED', 'nobody listens on the subject');
    if (/permissions? violation/i.test(message) || (error as { cause?: Error })?.cause?.name === 'PermissionViolationError') {
      throw coded('EACCES', message);
    }
    if (name === 'TimeoutError' || /timeout/i.test(message)) throw coded('ETIMEDOUT', `no answer in ${settings.connectTimeoutMs} ms`);
    throw error;
  } finally {
    session.unref();
  }
}
