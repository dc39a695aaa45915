// The one place that loads the addon, and the typed shape of what it exports.
import * as path from 'node:path';

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
  /** The port has 'close' or 'drain' listeners: keep it while it is open. */
  watch(listened: boolean): void;
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
  /**
   * The environment is exiting: deliver nothing more, and write out what ports still queue
   * (blocking while their readers make room; giving up on a reader that stalls for 2 s).
   */
  stop(): void;
  /** FileHandles can be made now: messages that waited for that are delivered. */
  fileHandlesReady(): void;
  createChannel(ringCapacity?: number): [PortHandle, PortHandle];
  adopt(segmentFd: number, socketFd: number, side: number): PortHandle;
  /** An object V8's serializer sees as a host object (one internal field). */
  newPortObject(): object;
  /** A zero-filled ArrayBuffer over memory that can move to another process; null if unavailable. */
  allocateTransferable(size: number): ArrayBuffer | null;
  /** The channel end deposited by handOff(), once; null when there is none. */
  takeOver(id: number): PortHandle | null;
  FdWatcher: new (fd: number, onReadable: () => void) => FdWatcher;
  /** Binds and listens at a unix socket path; the fd. */
  listenLocal(path: Buffer, mode: number, backlog: number): number;
  /** [fd, pid, uid, gid] of a waiting connection, or null. */
  acceptLocal(listener: number): [number, number, number, number] | null;
  connectLocal(path: Buffer): number;
  /** Gives an accepted connection its channel (null: it left already). Takes the fd. */
  welcome(fd: number): PortHandle | null;
  /** Turns an accepted connection away. Takes the fd. */
  refuse(fd: number): void;
  /** The connecting side's port once the listener answered, or null before. */
  arrive(fd: number): PortHandle | null;
}

function load(): Native {
  const root = path.join(__dirname, '..');
  const candidates = [
    // An explicit choice, e.g. the cmake-js build in CI's smoke test.
    ...(process.env.CROSSPORT_ADDON ? [path.resolve(process.env.CROSSPORT_ADDON)] : []),
    path.join(root, 'build', 'Release', 'crossport.node'),
    path.join(root, 'build', 'Debug', 'crossport.node'),
    path.join(root, 'build', 'cmake', 'Release', 'crossport.node'),
      ];
  const failures: string[] = [];
  for (const candidate of candidates) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return require(candidate) as Native;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'MODULE_NOT_FOUND') throw error;
      failures.push(`  ${candidate}: not found`);
    }
  }
  throw new Error(
    `crossport: the native addon is not built. Run \`npm install\` (or \`npm run build\`). ` +
      `Tried:\n${failures.join('\n')}`,
  );
}

export const native: Native = load();
