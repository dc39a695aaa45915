// MessagePort, MessageChannel and receiveMessageOnPort with worker_threads' API and behaviour.
//
// A port object is made by the addon (an object V8's serializer treats as a host object, so a
// port can sit anywhere in a message) and given MessagePort.prototype. For events it reuses
// Node's own NodeEventTarget — the base class of worker_threads' MessagePort — so `on`,
// `addEventListener`, `once`, `{ signal }` and every other listener form behave exactly as in
// Node: the port is started and referenced by the first 'message' listener and stopped by the
// removal of the last, through the same listener hooks Node's ports use.
import { executionAsyncId } from 'node:async_hooks';
import * as workerThreads from 'node:worker_threads';

import { dataCloneError, invalidTransferObject, missingTransferable, nodeError } from './errors';
import {
  closeHandle,
  createHandles,
  discardHandles,
  type FileDescriptor,
  describeHandle,
  loadFileHandles,
  replaceHandles,
} from './handles';
import { bridge } from './bridge';
import { native, type PortHandle } from './native';

type Listener = (...args: any[]) => void;
/**
 * What a transfer list may hold: `ArrayBuffer`s (detached here), crossport `MessagePort`s
 * (neutered here, working in the receiving process), and OS handles — a connected `net.Socket`,
 * a listening `net.Server`, a bound `dgram.Socket`, an open `FileHandle` or `FileDescriptor` —
 * which the receiver gets as the same kind of object for its own descriptor (closed here once
 * the message is out).
 */
export type TransferItem =
  | ArrayBuffer
  | MessagePort
  | import('node:net').Socket
  | import('node:net').Server
  | import('node:dgram').Socket
  | import('node:fs/promises').FileHandle
  | FileDescriptor;

/**
 * The transfer list worker_threads' own `postMessage` takes, in the @types/node at hand. Accepted
 * too, so that a crossport port is assignable where Node's is expected; an item that cannot cross
 * processes (an AbortSignal, a stream) throws as Node throws for an invalid transfer object.
 */
type NodeTransferList = Parameters<workerThreads.MessagePort['postMessage']>[1];

// Node's NodeEventTarget: the class worker_threads' MessagePort extends (not exported by Node).
const NodeEventTarget = Object.getPrototypeOf(workerThreads.MessagePort) as new () => EventTarget;

function eventTargetSymbol(description: string): symbol {
  for (const symbol of Object.getOwnPropertySymbols(EventTarget.prototype)) {
    if (symbol.description === description) return symbol;
  }
  throw new Error(`crossport: this Node.js has no EventTarget ${description}; Node >= 20 needed`);
}

// Hooks of Node's EventTarget that its own ports use (lib/internal/event_target.js).
const kHybridDispatch = Symbol.for('nodejs.internal.kHybridDispatch');
const kCreateEvent = eventTargetSymbol('kCreateEvent');
const kNewListener = eventTargetSymbol('kNewListener');
const kRemoveListener = eventTargetSymbol('kRemoveListener');

interface PortState {
  /** the port this state is the own property of */
  port: MessagePort;
  handle: PortHandle;
  /** closed, or transferred away: the object no longer owns a channel end */
  detached: boolean;
  receivingPorts: MessagePort[] | undefined;
  onmessage: unknown;
  onmessageerror: unknown;
  handlers: Map<string, Listener>;
}

// One addon serves every copy of this module in a process: Node keeps an addon loaded once per
// file, while a test runner that resets its module registry between test files (jest) loads lib/
// afresh. The copies share, through the addon, the key of a port's state and the markers receive()
// and next() return, so that the hooks the last copy installed serve the ports an earlier copy made
// (they threw 'Illegal invocation' at every delivery, for ever, and an earlier copy's
// receiveMessageOnPort took the later copy's marker for a message).
interface SharedAcrossCopies {
  state: symbol;
  /** What the addon returns from receive() when no message waits. */
  empty: object;
  /** What next() returns for a message it delivered itself (with ports, or a messageerror). */
  handled: object;
}
const shared = ((native as { crossportShared?: SharedAcrossCopies }).crossportShared ??= {
  state: Symbol('crossport.state'),
  empty: Object.freeze({}),
  handled: Object.freeze({}),
});
const kState = shared.state;
const EMPTY = shared.empty;
const HANDLED = shared.handled;

/** The state of a port; for anything else (an object inheriting from a port too) Node's error. */
function stateOf(port: MessagePort): PortState {
  const state = (port as unknown as { [kState]?: PortState } | null | undefined)?.[kState];
  if (state === undefined || state.port !== port) throw new TypeError('Illegal invocation');
  return state;
}

export function isMessagePort(value: unknown): value is MessagePort {
  return (
    typeof value === 'object' && value !== null && (value as { [kState]?: PortState })[kState]?.port === value
  );
}

export function handleOf(port: MessagePort): PortHandle {
  return stateOf(port).handle;
}

/** Whether a port with `handle` can travel over `carrier` as it is. */
function carries(carrier: PortHandle, handle: PortHandle): boolean {
  if (carrier.canCarry !== undefined) return carrier.canCarry(handle);
  return handle instanceof native.PortHandle;
}

/** A handle that no longer owns anything: what a port bridged elsewhere keeps. */
const kDetachedHandle: PortHandle = {
  setOwner() {},
  post: () => false,
  receive: () => EMPTY,
  next: () => EMPTY,
  start() {},
  watch() {},
  stop() {},
  ref() {},
  unref() {},
  hasRef: () => false,
  bufferedAmount: () => 0,
  close() {},
  exportFds() {
    throw new Error('The port is closed');
  },
  dispose() {},
  handOff() {
    throw new Error('The port is closed');
  },
};

/** Takes `port`'s channel end away (for a bridge); the port keeps an inert handle and gets 'close'. */
function takeHandle(port: MessagePort): PortHandle {
  const state = stateOf(port);
  const { handle } = state;
  state.handle = kDetachedHandle;
  state.detached = true;
  handle.stop();
  handle.unref();
  handle.watch(false, false);
  // Like a port transferred away, the old object still gets 'close'.
  setImmediate(() => port.dispatchEvent(new Event('close')));
  return handle;
}

/**
 * Hands a port of another transport (a remote port) to a thread of this process (exportPort):
 * the thread gets the far end of a new local channel, bridged here to the port. The id of the
 * deposited far end, as handOff() gives it.
 */
export function handOffBridged(port: MessagePort): number {
  const [near, far] = native.createChannel();
  const id = far.handOff();
  bridge(createPort(takeHandle(port)), createPort(near));
  return id;
}

/** The port no longer owns a channel end (it moved elsewhere). */
export function markDetached(port: MessagePort): void {
  stateOf(port).detached = true;
}

/**
 * One end of a channel, as `worker_threads.MessagePort`, whose other end may be in another
 * process. Instances come from `new MessageChannel()`, `fork()` (`child.port`), `parentPort`,
 * `connect()`, a `Server`'s `'connection'` event, `importPort()` and received messages; the
 * constructor throws (`TypeError` `ERR_CONSTRUCT_CALL_INVALID`), as Node's does.
 *
 * Events: `'message'` (the value; a `MessageEvent` for `addEventListener`/`onmessage`),
 * `'messageerror'` (the error), `'close'` (an `Event`), `'drain'` (an `Event`; not in
 * worker_threads). A new port is not started and does not keep the process alive; the first
 * `'message'` listener starts and references it, removing the last stops and unreferences it.
 * A listener that throws is reported as Node reports it; delivery goes on.
 *
 * Unlike worker_threads: an open port that nothing references and nothing listens to (no
 * `'message'`, `'close'` or `'drain'` listener, no `'close'` owed, nothing posted still held) can
 * be garbage-collected, which closes it (its peer gets `'close'`); `'close'` is a plain `Event`.
 * The reference: docs/api.md.
 */
export class MessagePort extends NodeEventTarget {
  constructor() {
    throw nodeError(TypeError, 'ERR_CONSTRUCT_CALL_INVALID', 'Constructor cannot be called');
    super();
  }

  /**
   * Sends a structured clone of `value` (V8's, as worker_threads). Never blocks and never drops:
   * what does not fit in the channel's memory waits in this process (`bufferedAmount`).
   *
   * @param value The message.
   * @param transfer Objects to move rather than copy (or `{ transfer }`): `ArrayBuffer`s
   *   (detached here), crossport `MessagePort`s (neutered here; the receiver talks straight to
   *   their peers), and OS handles — `net.Socket`, `net.Server`, `dgram.Socket`, `FileHandle`,
   *   `FileDescriptor` — closed here once the message is out. At most 1024 ports and 1024 handles.
   * @returns `true` when sent; `undefined` on a closed or transferred port (nothing is sent).
   * @throws {DOMException} `DataCloneError` (code 25) for a value that cannot be cloned or a
   *   transfer list that cannot be honoured (a duplicate, the port itself, a detached port, a
   *   handle that cannot move in its state, too many ports or handles). Nothing is then sent,
   *   detached or closed.
   * @throws {TypeError} `ERR_MISSING_ARGS` with no argument; `ERR_INVALID_ARG_TYPE` for a
   *   transfer list that is not iterable; for an object that cannot be transferred, or a port in
   *   `value` missing from the list, what the running Node throws (Node 20: `TypeError`
   *   `ERR_INVALID_TRANSFER_OBJECT` / `ERR_MISSING_TRANSFERABLE_IN_TRANSFER_LIST`; Node 22+:
   *   `DataCloneError`).
   */
  postMessage(value: any, transfer?: readonly TransferItem[] | NodeTransferList | { transfer?: readonly TransferItem[] }): void;
  postMessage(value?: unknown, transfer?: unknown): boolean | undefined {
    const state = stateOf(this);
    if (arguments.length === 0) {
      throw nodeError(TypeError, 'ERR_MISSING_ARGS', 'Not enough arguments to MessagePort.postMessage');
    }
    if (transfer === undefined) {
      // The common case, kept free of per-message allocations.
      // undefined on a closed port (as Node); true when sent, even by a port that a getter
      // closed meanwhile (its close waited for this message).
      return state.handle.post(value) || !state.detached ? true : undefined;
    }
    const buffers: ArrayBuffer[] = [];
    const ports: MessagePort[] = [];
    const handles: object[] = [];
    const handleFds: number[] = [];  // kind, fd, kind, fd, ...
    for (const item of transferListOf(transfer)) {
      if (isMarkedAsUntransferable?.(item)) throw dataCloneError('Cannot transfer object of unsupported type.');
      if (item instanceof ArrayBuffer) {
        if (buffers.includes(item)) throw dataCloneError('Transfer list contains duplicate ArrayBuffer');
        buffers.push(item);
      } else if (isMessagePort(item)) {
        if (item === this) throw dataCloneError('Transfer list contains source port');
        if (ports.includes(item)) throw dataCloneError('Transfer list contains duplicate MessagePort');
        if (stateOf(item).detached) throw dataCloneError('MessagePort in transfer list is already detached');
        ports.push(item);
      } else {
        const handle = typeof item === 'object' && item !== null ? describeHandle(item) : undefined;
        if (handle === undefined) {
          throw invalidTransferObject();
        }
        if (handles.includes(item as object)) throw dataCloneError('Transfer list contains duplicate handle');
        handles.push(item as object);
        handleFds.push(handle.kind, handle.fd);
      }
    }
    let objects: object[] = ports;
    if (handles.length > 0) {
      // Handles travel as stand-ins (host objects) listed before the ports.
      const standIns = new Map(handles.map((handle) => [handle, native.newPortObject()]));
      value = replaceHandles(value, standIns);
      objects = [...standIns.values(), ...ports];
    }
    const detach = buffers.filter((buffer) => !isUntransferable(buffer));
    // A port of another transport (a remote port on a local link, a local port on a remote one)
    // travels as the far end of a new channel of this port's kind, bridged to it here.
    const carried = ports.map(handleOf);
    const bridges: [MessagePort, PortHandle, PortHandle][] = [];
    for (let i = 0; i < carried.length; i++) {
      if (carries(state.handle, carried[i])) continue;
      const [near, far] = state.handle.createChannel?.() ?? native.createChannel();
      bridges.push([ports[i], near, far]);
      carried[i] = far;
    }
    let sent: boolean;
    try {
      sent = state.handle.post(value, objects, carried, handleFds, detach);
    } catch (error) {
      for (const [, near, far] of bridges) {
        near.close();
        far.close();
      }
      throw error;
    }
    for (const [port, near] of bridges) bridge(createPort(takeHandle(port)), createPort(near));
    for (const port of ports) markDetached(port);
    // The receiver has its own copies now (or, on a closed port, nobody does).
    for (const handle of handles) closeHandle(handle);
    return sent || !state.detached ? true : undefined;
  }

  /**
   * Starts delivering messages (the first `'message'` listener does it by itself). As in
   * worker_threads, a started port with no `'message'` listener drops what it receives.
   */
  start(): void {
    stateOf(this).handle.start();
  }

  /**
   * Closes the channel: `'close'` fires on this port and, once it has received everything posted
   * before, on the peer. Messages this port still holds are written out first. Closing twice
   * fires once; a closed port ignores `start`, `ref`, `unref` and `postMessage`.
   * @param callback Added as a `'close'` listener, once.
   */
  close(callback?: () => void): void {
    const state = stateOf(this);
    if (typeof callback === 'function') this.once('close', callback);
    state.detached = true;
    state.handle.close();
  }

  /** Keeps the process alive while the port is open (what the first `'message'` listener does). */
  ref(): void {
    stateOf(this).handle.ref();
  }

  /** Lets the process exit even though this port listens. */
  unref(): void {
    stateOf(this).handle.unref();
  }

  /** Whether the port keeps the process alive. */
  hasRef(): boolean {
    return stateOf(this).handle.hasRef();
  }

  /**
   * Not in worker_threads: bytes of messages posted on this port that this process still holds
   * because the other side has not made room for them yet. `'drain'` fires when it falls back
   * to 0, so a producer can wait for it: `if (port.bufferedAmount > limit) await once(port, 'drain')`.
   * A port that closes while it holds messages (its peer died) drops them: `'drain'` then fires
   * just before `'close'`, so that wait always settles.
   */
  get bufferedAmount(): number {
    return stateOf(this).handle.bufferedAmount();
  }

  /**
   * The `'message'` listener set by assignment (it gets a `MessageEvent`); setting a function
   * replaces the previous one and starts the port, `null` removes it.
   */
  get onmessage(): ((this: MessagePort, event: MessageEvent) => void) | null {
    return (stateOf(this).onmessage as never) ?? null;
  }

  set onmessage(handler: ((this: MessagePort, event: MessageEvent) => void) | null) {
    setEventHandler(this, 'message', handler);
  }

  /** The `'messageerror'` listener set by assignment (it gets a `MessageEvent` whose `data` is the error). */
  get onmessageerror(): ((this: MessagePort, event: MessageEvent) => void) | null {
    return (stateOf(this).onmessageerror as never) ?? null;
  }

  set onmessageerror(handler: ((this: MessagePort, event: MessageEvent) => void) | null) {
    setEventHandler(this, 'messageerror', handler);
  }

  /** @internal Node's EventTarget asks this for the event given to addEventListener listeners. */
  [kCreateEvent](data: unknown, type: string): Event {
    const event = new MessageEvent(type, { data });
    const ports = stateOf(this).receivingPorts;
    if (ports !== undefined && ports.length > 0) {
      Object.defineProperty(event, 'ports', { value: ports, enumerable: true });
    }
    return event;
  }

  /** @internal Called by Node's EventTarget after a listener is added (size: the new count). */
  [kNewListener](size: number, type: string, ...rest: unknown[]): void {
    (EventTarget.prototype as any)[kNewListener].call(this, size, type, ...rest);
    if (type === 'message' && size === 1) {
      const { handle } = stateOf(this);
      handle.ref();
      handle.start();
    }
    if (type === 'close' || type === 'drain') watchIfListened(this, type, size);
  }

  /** @internal Called by Node's EventTarget after a listener goes (size: the new count). */
  [kRemoveListener](size: number, type: string, ...rest: unknown[]): void {
    (EventTarget.prototype as any)[kRemoveListener].call(this, size, type, ...rest);
    if (type === 'message' && size === 0) {
      const { handle } = stateOf(this);
      handle.stop();
      handle.unref();
    }
    if (type === 'close' || type === 'drain') watchIfListened(this, type, size);
  }
}

/**
 * A port listened to for 'close' or 'drain' must not be collected while it is open. `size`
 * counts the listeners for `type` (EventTarget records a first listener only after the hook).
 */
function watchIfListened(port: MessagePort, type: 'close' | 'drain', size: number): void {
  const other = port.listenerCount(type === 'close' ? 'drain' : 'close');
  const drain = type === 'drain' ? size : port.listenerCount('drain');
  stateOf(port).handle.watch(size + other > 0, drain > 0);
}

// Node-style methods come from NodeEventTarget. Their types are those @types/node gives
// worker_threads' MessagePort (the same overloads, in the same order, so that a crossport port is
// assignable where Node's is expected), plus 'drain'.
export interface MessagePort {
  addListener(event: 'close', listener: (event: Event) => void): this;
  addListener(event: 'message', listener: (value: any) => void): this;
  addListener(event: 'messageerror', listener: (error: Error) => void): this;
  addListener(event: 'drain', listener: () => void): this;
  addListener(event: string | symbol, listener: Listener): this;
  emit(event: 'close', ev: Event): boolean;
  emit(event: 'message', value: any): boolean;
  emit(event: 'messageerror', error: Error): boolean;
  emit(event: string | symbol, ...args: any[]): boolean;
  off(event: 'close', listener: (event: Event) => void, options?: EventListenerOptions): this;
  off(event: 'message', listener: (value: any) => void, options?: EventListenerOptions): this;
  off(event: 'messageerror', listener: (error: Error) => void, options?: EventListenerOptions): this;
  off(event: 'drain', listener: () => void, options?: EventListenerOptions): this;
  off(event: string | symbol, listener: Listener, options?: EventListenerOptions): this;
  /**
   * `'close'`: once, on both ends, when either closes (after the peer received everything posted
   * before), or when the peer's process ended. The listener gets an `Event`.
   */
  on(event: 'close', listener: (event: Event) => void): this;
  /** `'message'`: each message, in order; the listener gets the value. Starts and refs the port. */
  on(event: 'message', listener: (value: any) => void): this;
  /**
   * `'messageerror'`: a message that could not be deserialized here (e.g. a `SharedArrayBuffer`,
   * which cannot reach another process: a `DataCloneError`); the next messages arrive as usual.
   */
  on(event: 'messageerror', listener: (error: Error) => void): this;
  /** `'drain'` (not in worker_threads): `bufferedAmount` fell back to 0. */
  on(event: 'drain', listener: () => void): this;
  on(event: string | symbol, listener: Listener): this;
  once(event: 'close', listener: (event: Event) => void): this;
  once(event: 'message', listener: (value: any) => void): this;
  once(event: 'messageerror', listener: (error: Error) => void): this;
  once(event: 'drain', listener: () => void): this;
  once(event: string | symbol, listener: Listener): this;
  removeListener(event: 'close', listener: (event: Event) => void, options?: EventListenerOptions): this;
  removeListener(event: 'message', listener: (value: any) => void, options?: EventListenerOptions): this;
  removeListener(event: 'messageerror', listener: (error: Error) => void, options?: EventListenerOptions): this;
  removeListener(event: 'drain', listener: () => void, options?: EventListenerOptions): this;
  removeListener(event: string | symbol, listener: Listener, options?: EventListenerOptions): this;
  removeAllListeners(event?: string | symbol): this;
  listenerCount(event: string | symbol): number;
  eventNames(): string[];
  setMaxListeners(n: number): this;
  getMaxListeners(): number;
}

function setEventHandler(port: MessagePort, type: 'message' | 'messageerror', handler: unknown): void {
  const state = stateOf(port);
  const previous = state.handlers.get(type);
  if (previous !== undefined) {
    port.removeEventListener(type, previous);
    state.handlers.delete(type);
  }
  state[type === 'message' ? 'onmessage' : 'onmessageerror'] = handler;
  if (typeof handler === 'function') {
    const listener = function (this: MessagePort, event: Event) {
      return (handler as Listener).call(this, event);
    };
    state.handlers.set(type, listener);
    port.addEventListener(type, listener);
  }
}

/** The transfer list of postMessage's second argument, checked as Node checks it. */
function transferListOf(option: unknown): Iterable<unknown> {
  if (option === undefined || option === null) return [];
  if (typeof option !== 'object' && typeof option !== 'function') {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', 'Optional transferList argument must be an iterable');
  }
  if (isIterable(option)) return option;
  const transfer = (option as { transfer?: unknown }).transfer;
  if (transfer === undefined) return [];
  if (!isIterable(transfer)) {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', 'Optional options.transfer argument must be an iterable');
  }
  return transfer;
}

function isIterable(value: unknown): value is Iterable<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function'
  );
}

// An object marked with markAsUntransferable() (e.g. the pool behind small Buffers) in a transfer
// list: Node 21+ throws; Node 20, which has no public test for the mark, copies such an ArrayBuffer
// rather than detach it. There, a transfer list naming it twice is no error (it is skipped), as it
// is for any other ArrayBuffer: that asks Node itself, detaching nothing.
const { isMarkedAsUntransferable } = workerThreads as { isMarkedAsUntransferable?: (value: unknown) => boolean };
let untransferableProbe: workerThreads.MessageChannel | undefined;

function isUntransferable(buffer: ArrayBuffer): boolean {
  if (isMarkedAsUntransferable) return false;  // a marked one was refused before
  untransferableProbe ??= new workerThreads.MessageChannel();
  try {
    untransferableProbe.port1.postMessage(undefined, [buffer, buffer]);
  } catch {
    return false;
  }
  workerThreads.receiveMessageOnPort(untransferableProbe.port2);
  return true;
}

/** Makes the port object for a native handle (also called by the addon for received ports). */
export function createPort(handle: PortHandle): MessagePort {
  const port = native.newPortObject() as MessagePort;
  Object.setPrototypeOf(port, MessagePort.prototype);
  // NodeEventTarget keeps its state in own symbol-keyed properties set by its constructor;
  // take them from a fresh instance.
  const template = new NodeEventTarget();
  for (const key of Reflect.ownKeys(template)) {
    Object.defineProperty(port, key, Object.getOwnPropertyDescriptor(template, key)!);
  }
  const state: PortState = {
    port,
    handle,
    detached: false,
    receivingPorts: undefined,
    onmessage: null,
    onmessageerror: null,
    handlers: new Map(),
  };
  Object.defineProperty(port, kState, { value: state });
  handle.setOwner(port);
  return port;
}

// Memory for received ArrayBuffers, filled at once: V8's own allocation, so that the collector
// counts it, without zeroing it first (which cost more than the copy: perf, u8-64k-clone).
const { allocUnsafeSlow } = Buffer;

// Runs queued microtasks, then nextTicks: what Node's timers call between two callbacks.
const runNextTicks = (process as unknown as { _tickCallback?: () => void })._tickCallback;

/** What the addon calls back, and other transports' handles call too (lib/nats/handle.ts). */
export const portHooks = {
  deliver(port: object): void {
    const { handle } = stateOf(port as MessagePort);
    if (runNextTicks === undefined) {
      // One message per call: the addon calls again, each call followed by the ticks.
      const data = handle.next();
      if (data !== EMPTY && data !== HANDLED) (port as any)[kHybridDispatch](data, 'message', undefined);
      return;
    }
    // Nothing here catches: an exception (a listener's, re-thrown by EventTarget from a nextTick)
    // leaves for the addon, which reports it as Node reports its own callbacks' and delivers the
    // rest of the batch on the next loop turn, as Node's MessagePort does.
    const asyncId = executionAsyncId();
    // What a listener that threw left queued (its microtasks, its ticks) runs before the next
    // message, as it does between two messages. (Otherwise nothing is queued here: a batch starts
    // from the event loop, after Node ran everything the previous callback queued.)
    runNextTicks();
    for (;;) {
      const data = handle.next();
      if (data === EMPTY) return;
      if (data !== HANDLED) (port as any)[kHybridDispatch](data, 'message', undefined);
      runNextTicks();
      // An unhandled rejection handled by 'uncaughtException' empties Node's async id stack:
      // the next message gets a callback scope (the port's async context) of its own.
      if (executionAsyncId() !== asyncId) return;
    }
  },
  message(port: object, data: unknown, ports: object[] | undefined): void {
    const state = stateOf(port as MessagePort);
    state.receivingPorts = ports as MessagePort[] | undefined;
    try {
      (port as any)[kHybridDispatch](data, 'message', undefined);
    } finally {
      state.receivingPorts = undefined;
    }
  },
  messageerror(port: object, error: unknown): void {
    (port as any)[kHybridDispatch](error, 'messageerror', undefined);
  },
  close(port: object): void {
    stateOf(port as MessagePort).detached = true;
    (port as MessagePort).dispatchEvent(new Event('close'));
  },
  drain(port: object): void {
    (port as MessagePort).dispatchEvent(new Event('drain'));
  },
  empty: EMPTY,
  handled: HANDLED,
};

native.setup({
  ...portHooks,
  createPort: createPort as (handle: PortHandle) => object,
  createHandles,
  discardHandles,
  loadFileHandles,
  allocate: (size) => allocUnsafeSlow(size).buffer as ArrayBuffer,
  DOMException,
  missingTransferable,
});

// After 'exit' no JavaScript may run; the addon must not dispatch into it.
process.once('exit', () => native.stop());

/**
 * Two entangled ports, `port1` and `port2`: what is posted on one arrives at the other. Either (or
 * both) may be sent to another process, where it talks straight to its peer.
 * @throws {Error} a system error (`EMFILE`…) when the channel's memory or sockets cannot be made.
 */
export class MessageChannel {
  readonly port1: MessagePort;
  readonly port2: MessagePort;
  constructor() {
    const [first, second] = native.createChannel();
    this.port1 = createPort(first);
    this.port2 = createPort(second);
  }
}

/**
 * Takes the next message waiting on `port` synchronously, bypassing its listeners:
 * `{ message }`, or `undefined` when none waits. Also accepts a worker_threads port (then Node's
 * own is called). Unlike Node, a port that was just transferred gives `undefined`.
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `port` is not a port.
 */
export function receiveMessageOnPort(port: MessagePort | workerThreads.MessagePort): { message: any } | undefined {
  if (port instanceof workerThreads.MessagePort) return workerThreads.receiveMessageOnPort(port);
  if (!isMessagePort(port)) {
    throw nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "port" argument must be a MessagePort instance');
  }
  const message = stateOf(port).handle.receive();
  return message === EMPTY ? undefined : { message };
}
