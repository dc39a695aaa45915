// OS handles that travel in messages: net.Socket, net.Server, dgram.Socket,
// fs.promises.FileHandle and our FileDescriptor. The sender gives the addon each handle's fd
// (the addon sends a duplicate) and closes its own object once the message is out, as
// child_process `send(message, handle)` does; the receiver rebuilds the same kind of object.
//
// V8's serializer only lets us act on host objects, which Node's handle objects are not, so the
// sender swaps each handle in the value for a stand-in host object (see replaceHandles).
import type * as dgram from 'node:dgram';
import { closeSync } from 'node:fs';
import type * as fsPromises from 'node:fs/promises';
import type * as net from 'node:net';
import { devNull } from 'node:os';

import { dataCloneError, nodeError } from './errors';
import { lazy } from './lazy';
import { native } from './native';

// Loaded when a handle is first met: a process that never sends or receives one does not pay for
// them (a process that has a net.Socket, a dgram.Socket or a FileHandle has loaded its module).
const netModule = lazy<typeof net>('node:net');
const dgramModule = lazy<typeof dgram>('node:dgram');
const fsPromisesModule = lazy<typeof fsPromises>('node:fs/promises');

/** The kinds of native/message.h (HandleKind). */
export const enum HandleKind {
  Socket = 1,
  Server = 2,
  Udp4 = 3,
  Udp6 = 4,
  FileHandle = 5,
  FileDescriptor = 6,
}

/**
 * A raw file descriptor (any kind) that can be posted and listed in a transfer list: the receiver
 * gets a `FileDescriptor` for its own copy, and the sender's descriptor is closed once the message
 * is out (its `fd` becomes -1). The object owns its descriptor; `close()` closes it. Not in
 * worker_threads.
 */
export class FileDescriptor {
  // TypeScript-private, not #fd: a private name in the published .d.ts fails consumers that
  // compile for ES5 (TS18028), which is tsc's default target.
  private descriptor: number;

  /**
   * @param fd An open file descriptor of this process; the object owns it from now on.
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` when `fd` is not a number.
   * @throws {RangeError} `ERR_OUT_OF_RANGE` when it is not an integer from 0 to 2147483647.
   */
  constructor(fd: number) {
    if (typeof fd !== 'number') {
      throw nodeError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "fd" argument must be of type number. Received ${describe(fd)}`);
    }
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw nodeError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "fd" is out of range. It must be >= 0 && <= 2147483647. Received ${fd}`);
    }
    this.descriptor = fd;
  }

  /** The descriptor, or -1 once it was closed or transferred. */
  get fd(): number {
    return this.descriptor;
  }

  /** Closes the descriptor (once; later calls do nothing). */
  close(): void {
    const fd = this.descriptor;
    if (fd < 0) return;
    this.descriptor = -1;
    // One that arrived was made by the addon, which closes it: in a worker thread Node tracks the
    // descriptors fs opened there, and warns when fs closes another.
    if (received.delete(this)) native.closeFd(fd);
    else closeSync(fd);
  }
}

/** The FileDescriptors made for received messages (see close()). */
const received = new WeakSet<FileDescriptor>();

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'object' || typeof value === 'function') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  return `type ${typeof value} (${String(value)})`;
}

// Node's FileHandle class is not exported; we learn it from the first FileHandle we meet, or
// from one we open (Node only makes FileHandles asynchronously).
type FileHandleClass = new (handle: unknown) => fsPromises.FileHandle;
let fileHandleClass: FileHandleClass | undefined;
let fileHandleLoad: Promise<void> | undefined;

function learnFileHandleClass(item: object): void {
  if (fileHandleClass !== undefined) return;
  fileHandleClass = item.constructor as FileHandleClass;
  native.fileHandlesReady();
}

function isFileHandle(item: object): item is fsPromises.FileHandle {
  if (fileHandleClass !== undefined) return item instanceof fileHandleClass;
  const candidate = item as Partial<fsPromises.FileHandle>;
  return item.constructor?.name === 'FileHandle' && typeof candidate.fd === 'number' &&
    typeof candidate.readFile === 'function' && typeof candidate.close === 'function';
}

/** Called by the addon when a message holds a FileHandle before we can make one. */
export function loadFileHandles(): void {
  fileHandleLoad ??= fsPromisesModule()
    .open(devNull, 'r')
    .then((handle) => {
      learnFileHandleClass(handle);
      return handle.close();
    })
    .catch(() => {
      // No FileHandle can be made here; such messages then give 'messageerror'.
      native.fileHandlesReady();
    });
}

/** The kind of handle `item` is, or `undefined` when it is none (its state is not checked). */
function kindOf(item: object): HandleKind | undefined {
  if (item instanceof FileDescriptor) return HandleKind.FileDescriptor;
  const { Socket, Server } = netModule();
  if (item instanceof Socket) return HandleKind.Socket;
  if (item instanceof Server) return HandleKind.Server;
  if (item instanceof dgramModule().Socket) {
    return (item as { type?: string }).type === 'udp6' ? HandleKind.Udp6 : HandleKind.Udp4;
  }
  if (isFileHandle(item)) {
    learnFileHandleClass(item);
    return HandleKind.FileHandle;
  }
  return undefined;
}

function fdOf(item: object, kind: HandleKind): number | undefined {
  switch (kind) {
    case HandleKind.Socket: {
      const socket = item as net.Socket;
      if (socket.connecting || socket.destroyed) return undefined;
      return (item as unknown as { _handle: { fd?: number } | null })._handle?.fd;
    }
    case HandleKind.Server:
      return (item as unknown as { _handle: { fd?: number } | null })._handle?.fd;
    case HandleKind.Udp4:
    case HandleKind.Udp6: {
      const symbol = Object.getOwnPropertySymbols(item).find((s) => s.description === 'state symbol');
      const state = symbol === undefined ? undefined : (item as any)[symbol];
      // bindState 2 is BIND_STATE_BOUND (lib/internal/dgram.js)
      return state?.bindState === 2 ? state.handle?.fd : undefined;
    }
    case HandleKind.FileHandle:
      return (item as fsPromises.FileHandle).fd;
    case HandleKind.FileDescriptor:
      return (item as FileDescriptor).fd;
  }
}

const kUnusable: Record<HandleKind, string> = {
  [HandleKind.Socket]: 'net.Socket in transfer list is not connected',
  [HandleKind.Server]: 'net.Server in transfer list is not listening',
  [HandleKind.Udp4]: 'dgram.Socket in transfer list is not bound',
  [HandleKind.Udp6]: 'dgram.Socket in transfer list is not bound',
  [HandleKind.FileHandle]: 'FileHandle in transfer list is closed',
  [HandleKind.FileDescriptor]: 'FileDescriptor in transfer list is closed',
};

/**
 * The kind and fd of a transferable handle; `undefined` when `item` is no handle at all. Throws a
 * DataCloneError for a handle that cannot be transferred in its present state.
 */
export function describeHandle(item: object): { kind: HandleKind; fd: number } | undefined {
  const kind = kindOf(item);
  if (kind === undefined) return undefined;
  if ((item as { encrypted?: boolean }).encrypted === true) {
    throw dataCloneError('A TLSSocket cannot be transferred');
  }
  const fd = fdOf(item, kind);
  if (fd === undefined || fd < 0) throw dataCloneError(kUnusable[kind]);
  return { kind, fd };
}

/** Closes a handle object: the sender's once its handle went out, or one nobody received. */
export function closeHandle(item: object): void {
  switch (kindOf(item)) {
    case HandleKind.Socket:
      (item as net.Socket).destroy();
      break;
    case HandleKind.Server:
      (item as net.Server).close();
      break;
    case HandleKind.Udp4:
    case HandleKind.Udp6:
      (item as dgram.Socket).close();
      break;
    case HandleKind.FileHandle:
      (item as fsPromises.FileHandle).close().catch(() => {});
      break;
    case HandleKind.FileDescriptor:
      (item as FileDescriptor).close();
      break;
  }
}

let fsBinding: { FileHandle: new (fd: number) => unknown } | undefined;

function newHandle(kind: HandleKind, fd: number): object {
  switch (kind) {
    case HandleKind.Socket:
      return new (netModule().Socket)({ fd, readable: true, writable: true });
    case HandleKind.Server:
      return netModule().createServer().listen({ fd });
    case HandleKind.Udp4:
    case HandleKind.Udp6: {
      const socket = dgramModule().createSocket(kind === HandleKind.Udp6 ? 'udp6' : 'udp4');
      socket.bind({ fd });
      return socket;
    }
    case HandleKind.FileHandle: {
      if (fileHandleClass === undefined) throw new Error('crossport: cannot make a FileHandle in this process');
      // Node's native FileHandle, wrapped in its JS class as fs.promises.open() does.
      fsBinding ??= (process as unknown as { binding(name: string): typeof fsBinding }).binding('fs');
      return new fileHandleClass(new fsBinding!.FileHandle(fd));
    }
    case HandleKind.FileDescriptor: {
      const descriptor = new FileDescriptor(fd);
      received.add(descriptor);
      return descriptor;
    }
  }
  throw new Error(`crossport: unknown handle kind ${kind}`);
}

/** Called by the addon: the objects for a received message's handles. We own every fd. */
export function createHandles(kinds: HandleKind[], fds: number[]): object[] {
  const made: object[] = [];
  try {
    for (let i = 0; i < kinds.length; i++) made.push(newHandle(kinds[i], fds[i]));
  } catch (error) {
    discardHandles(made);
    for (const fd of fds.slice(made.length)) native.closeFd(fd);
    throw error;
  }
  return made;
}

/** Called by the addon for the handles of a message that could not be delivered. */
export function discardHandles(objects: object[]): void {
  for (const object of objects) closeHandle(object);
}

/**
 * A copy of `value` in which every handle of `standIns` is replaced by its stand-in, through
 * arrays, plain objects, Maps and Sets (at any depth, cycles kept). Other objects are left as
 * they are: the serializer clones them, and a handle inside one is not found.
 */
export function replaceHandles(value: unknown, standIns: Map<object, object>): unknown {
  const copies = new Map<object, unknown>();
  const define = (target: object, key: string, item: unknown) =>
    Object.defineProperty(target, key, { value: item, enumerable: true, writable: true, configurable: true });
  const visit = (item: unknown): unknown => {
    if (typeof item !== 'object' || item === null) return item;
    const standIn = standIns.get(item);
    if (standIn !== undefined) return standIn;
    if (copies.has(item)) return copies.get(item);
    if (Array.isArray(item)) {
      const copy = new Array(item.length);
      copies.set(item, copy);
      for (const key of Object.keys(item)) define(copy, key, visit((item as any)[key]));
      return copy;
    }
    if (item instanceof Map) {
      const copy = new Map();
      copies.set(item, copy);
      for (const [key, entry] of item) copy.set(visit(key), visit(entry));
      return copy;
    }
    if (item instanceof Set) {
      const copy = new Set();
      copies.set(item, copy);
      for (const entry of item) copy.add(visit(entry));
      return copy;
    }
    const prototype = Object.getPrototypeOf(item);
    if (prototype === Object.prototype || prototype === null) {
      const copy = Object.create(prototype);
      copies.set(item, copy);
      for (const key of Object.keys(item)) define(copy, key, visit((item as any)[key]));
      return copy;
    }
    return item;
  };
  return visit(value);
}
