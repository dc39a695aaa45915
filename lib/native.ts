// The one place that loads the addon, and the typed shape of what it exports.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve, sep } from 'node:path';

/** The native half of a MessagePort (native/port.cc). */
export interface PortHandle {
  setOwner(port: object): void;
  /**
   * Serializes and sends; throws a DataCloneError (nothing sent). True when it went out.
   * `objects` are the host objects the value may hold (handle stand-ins, then ports), `ports`
   * the ports' handles, `handles` the OS handles as kind, fd, kind, fd, ... (sent as duplicates).
   */
  post(value: unknown, objects: object[], ports: PortHandle[], handles: number[], detach: ArrayBuffer[]): boolean;
  /** The same with nothing to transfer. */
  post(value: unknown): boolean;
  /** The next message, or the `empty` marker given to setup(). */
  receive(): unknown;
  /** Within deliver(): the batch's next message, `empty` at its end, `handled` if delivered by a hook. */
  next(): unknown;
  start(): void;
  /**
   * The port has 'close' or 'drain' listeners: keep it while it is open; 'drain' listeners: keep
   * the process alive while it holds queued messages (as a socket's pending writes do).
   */
  watch(listened: boolean, drainListened: boolean): void;
  stop(): void;
  ref(): void;
  unref(): void;
  hasRef(): boolean;
  /** Bytes posted but still held here (the send queue). */
  bufferedAmount(): number;
  close(): void;
  /** Duplicates of [segment fd, socket fd] and the side, for a child process. */
  exportFds(): [number, number, number];
  /** Lets go of the link without telling the peer (its fds now live elsewhere). */
  dispose(): void;
  /** Neuters the port and deposits its channel end for another thread: its number. */
  handOff(): number;
  // Transports other than the addon's shared memory (lib/nats) also implement these; the
  // addon's handle does not (lib/port.ts then uses the addon's own rules).
  /** A port with `handle` can move over this port as it is (otherwise it is bridged). */
  canCarry?(handle: PortHandle): boolean;
  /** Two entangled handles of this transport (a bridge's far end travels as one of them). */
  createChannel?(): [PortHandle, PortHandle];
  /** A relay could not read a message for this port's peer: the peer gets 'messageerror'. */
  postUndeliverable?(): void;
}

/** Calls back each time an fd is readable (native/rendezvous.h). */
export interface FdWatcher {
  ref(): void;
  unref(): void;
  close(): void;
}

/** Functions the addon calls back into (one call per message). */
export interface Hooks {
  /**
   * Dispatches a batch: pulls messages with `next()` until it returns `empty`, running nextTicks
   * and microtasks between two (one entry from the addon per batch).
   */
  deliver(port: object): void;
  /** The port's send queue emptied: emit 'drain'. */
  drain(port: object): void;
  /** For a message with ports (called from `next()`); `ports` is undefined when it carried none. */
  message(port: object, data: unknown, ports: object[] | undefined): void;
  messageerror(port: object, error: unknown): void;
  close(port: object): void;
  createPort(handle: PortHandle): object;
  /** The objects for a received message's handles (lib owns the fds from here). */
  createHandles(kinds: number[], fds: number[]): object[];
  /** Closes the handle objects of a message that could not be delivered. */
  discardHandles(objects: object[]): void;
  /** A message holds a FileHandle: learn how to make one, then call fileHandlesReady(). */
  loadFileHandles(): void;
  /** A new ArrayBuffer of `size` bytes whose memory is not zeroed (it is about to be filled). */
  allocate(size: number): ArrayBuffer;
  empty: object;
  handled: object;
  DOMException: typeof DOMException;
  /** The error this Node throws for a port in a message but not in its transfer list. */
  missingTransferable(): Error;
}

export interface Native {
  setup(hooks: Hooks): void;
  /** The addon's PortHandle class (for instanceof). */
  PortHandle: abstract new (...args: never[]) => PortHandle;
  /**
   * The environment is exiting: deliver nothing more, and write out what ports still queue
   * (blocking while their readers make room; giving up on a reader that stalls for 2 s).
   */
  stop(): void;
  /** FileHandles can be made now: messages that waited for that are delivered. */
  fileHandlesReady(): void;
  /** Closes a descriptor the addon made (fs.closeSync warns about it in a worker thread). */
  closeFd(fd: number): void;
  createChannel(ringCapacity?: number): [PortHandle, PortHandle];
  adopt(segmentFd: number, socketFd: number, side: number): PortHandle;
  /**
   * The same, once the fds are checked, reading them only, to be a link's: a unix SOCK_SEQPACKET
   * socket whose pair process `parentPid` made, and a segment. Null when they are not (nothing
   * was done to them).
   */
  adopt(segmentFd: number, socketFd: number, side: number, parentPid: number): PortHandle | null;
  /** An object V8's serializer sees as a host object (one internal field). */
  newPortObject(): object;
  /** A zero-filled ArrayBuffer over memory that can move to another process; null if unavailable. */
  allocateTransferable(size: number): ArrayBuffer | null;
  /** The channel end deposited by handOff(), once; null when there is none. */
  takeOver(id: number): PortHandle | null;
  FdWatcher: new (fd: number, onReadable: () => void) => FdWatcher;
  /**
   * Binds and listens at a unix socket path: [fd, device, inode] of the socket file it made
   * (0n, 0n for an abstract name).
   */
  listenLocal(path: Buffer, mode: number, backlog: number): [number, bigint, bigint];
  /** [fd, pid, uid, gid] of a waiting connection, or null. */
  acceptLocal(listener: number): [number, number, number, number] | null;
  /** [fd, pid, uid, gid]: the connection, and who listens (as of its listen()). */
  connectLocal(path: Buffer): [number, number, number, number];
  /** Gives an accepted connection its channel (null: it left already). Takes the fd. */
  welcome(fd: number): PortHandle | null;
  /** Turns an accepted connection away. Takes the fd. */
  refuse(fd: number): void;
  /** The connecting side's port once the listener answered, or null before. */
  arrive(fd: number): PortHandle | null;
  /**
   * [the parent's end, the worker process's end] of a socket pair (close-on-exec, non-blocking)
   * on which a worker process sends one byte, 'M', when its heap is about to run out.
   */
  noticePair(): [number, number];
  /**
   * In a worker process: on the heap's near-limit callback, flush what ports queue, send 'M' on
   * `fd` (taken, made close-on-exec) and end the process with exit code 1.
   */
  watchHeapLimit(fd: number): void;
  /**
   * Lets JavaScript use the top `kib` KiB of this thread's stack (V8's stack limit); the KiB
   * granted (less when the stack is smaller), or 0 when the limit stays as it was.
   */
  setStackSize(kib: number): number;
  /**
   * [this process's heap limit (V8's heap_size_limit: old + young generation), the young
   * generation V8 gives a heap by default], in bytes.
   */
  heapLimits(): [number, number];
  /** Asks for `signal` when the parent process ends; false where the system cannot. */
  setParentDeathSignal(signal: number): boolean;
  /**
   * Structured clone to bytes, for transports that are not a link: [kHeaderSize bytes of room
   * (`headroom`) then V8's bytes, ...copies of the sections]. Throws the DataCloneError; detaches
   * the buffers of `detach` once the value is serialized.
   */
  serializeToBytes(value: unknown, objects: object[], carried: ArrayBuffer[], detach: ArrayBuffer[],
    headroom: number, slab?: Uint8Array, offset?: number): Buffer[] | number;
  /** The value back; host objects are `objects`, sections `sections`. Throws the DataCloneError. */
  deserializeFromBytes(bytes: Uint8Array, objects: object[], sections: ArrayBuffer[], offset?: number): unknown;
}

/** node-gyp-build: the binary for this Node (its ABI, platform, arch and libc) or the local build. */
interface BindingResolver {
  /** The file to load: build/Release, build/Debug, then prebuilds/<platform>-<arch>/; throws if none. */
  path(packageRoot: string): string;
  /** The tags of a prebuilt binary's file name (abi, runtime, libc...). */
  parseTags(file: string): object | undefined;
  /** A filter: the parsed tags fit this runtime and ABI. */
  matchTags(runtime: string, abi: string): (tags: object | undefined) => boolean;
}

const kRebuild = 'Run `npm rebuild crossport-ipc` to build it for this Node.js.';
const thisNode = `Node.js ${process.version} (NODE_MODULE_VERSION ${process.versions.modules}, ${process.platform}-${process.arch})`;

/** An error as Node's require() gives it, with `code`. */
function loadError(message: string, code: string, cause?: unknown): Error {
  return Object.assign(new Error(message, { cause }), { code });
}

// A Worker tells its process which binary it loaded (`<NODE_MODULE_VERSION>:<path>`): the process
// runs the same Node, and need not load node-gyp-build and search for it (some 2 ms of its start).
// Read once and never passed on, as CROSSPORT_PARENT_PORT.
const kInheritedAddonKey = 'CROSSPORT_WORKER_ADDON';

function inheritedAddon(): string | undefined {
  const value = process.env[kInheritedAddonKey];
  if (value === undefined) return undefined;
  delete process.env[kInheritedAddonKey];
  const separator = value.indexOf(':');
  const file = value.slice(separator + 1);
  return separator > 0 && value.slice(0, separator) === process.versions.modules && isAbsolute(file) && existsSync(file)
    ? file
    : undefined;
}

/** The binary was named by CROSSPORT_ADDON. */
let addonChosen = false;

/** Which binary: an explicit choice, the parent's (in a Worker's process), else the one node-gyp-build finds. */
function addonPath(root: string): string {
  const inherited = inheritedAddon();
  // An explicit path, e.g. the cmake-js or sanitizer build, or a prebuild under test.
  const explicit = process.env.CROSSPORT_ADDON;
  if (explicit) {
    addonChosen = true;
    const file = resolve(explicit);
    if (!existsSync(file)) {
      throw loadError(`crossport-ipc: CROSSPORT_ADDON names ${file}, which does not exist`, 'MODULE_NOT_FOUND');
    }
    return file;
  }
  if (inherited !== undefined) return inherited;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const resolver = require('node-gyp-build') as BindingResolver;
  try {
    const file = resolver.path(root);
    // node-gyp-build prefers a local build to a prebuilt binary. A local build made under another
    // Node (the user switched Node since) would be refused: the prebuilt one for this Node wins.
    const build = join(root, 'build');
    if (file.startsWith(build + sep) && builtForAbi(build) !== process.versions.modules) {
      return prebuiltForThisNode(resolver, root) ?? file;
    }
    return file;
  } catch (error) {
    throw loadError(
      `crossport-ipc: the native addon is neither built nor prebuilt for ${thisNode}. ${kRebuild}\n` +
        `(${(error as Error).message.trim()})`,
      'MODULE_NOT_FOUND',
      error,
    );
  }
}

/** The NODE_MODULE_VERSION node-gyp built `build` for (from its config.gypi), if it says. */
function builtForAbi(build: string): string | undefined {
  try {
    return /"node_module_version":\s*(\d+)/.exec(readFileSync(join(build, 'config.gypi'), 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/** This Node's prebuilt binary in the package, if there is one. */
function prebuiltForThisNode(resolver: BindingResolver, root: string): string | undefined {
  const directory = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  let files: string[];
  try {
    files = readdirSync(directory);
  } catch {
    return undefined;
  }
  const fits = resolver.matchTags('node', process.versions.modules);
  const file = files.find((name) => fits(resolver.parseTags(name)));
  return file === undefined ? undefined : join(directory, file);
}

/** The binary this process loaded. */
export const addonFile = addonPath(join(__dirname, '..'));

/**
 * The environment entry that hands `addonFile` to a Worker's process, when node-gyp-build found it
 * (the process would find the same one); a binary named by CROSSPORT_ADDON is not passed on: the
 * worker's environment decides, as it would without this.
 */
export const inheritAddon = (): Record<string, string> =>
  (addonChosen ? {} : { [kInheritedAddonKey]: `${process.versions.modules}:${addonFile}` });

function load(file: string): Native {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as Native;
  } catch (error) {
    // The addon refuses another Node's ABI itself (native/addon.cc); this is what is left when the
    // loader resolves every symbol at once (LD_BIND_NOW) and dlopen fails first on a V8 one.
    if (/undefined symbol: _ZN(2v8|4node)/.test((error as Error).message)) {
      throw loadError(
        `crossport-ipc: the native addon ${file} was built for another Node.js than ${thisNode}. ${kRebuild}`,
        'ERR_DLOPEN_FAILED',
        error,
      );
    }
    throw error;
  }
}

export const native: Native = load(addonFile);
