// The one place that loads the addon, and the typed shape of what it exports.
import * as path from 'node:path';

/** The native half of a MessagePort (native/port.cc). */
export interface PortHandle {
  setOwner(port: object): void;
  /** Serializes and sends; throws a DataCloneError (nothing sent). True when it went out. */
  post(value: unknown, ports: object[], handles: PortHandle[], detach: ArrayBuffer[]): boolean;
  /** The next message, or the `empty` marker given to setup(). */
  receive(): unknown;
  start(): void;
  stop(): void;
  ref(): void;
  unref(): void;
  hasRef(): boolean;
  close(): void;
  /** Duplicates of [segment fd, socket fd] and the side, for a child process. */
  exportFds(): [number, number, number];
  /** Lets go of the link without telling the peer (its fds now live elsewhere). */
  dispose(): void;
}

/** Functions the addon calls back into (one call per message). */
export interface Hooks {
  /** `ports` is undefined when the message carried none. */
  message(port: object, data: unknown, ports: object[] | undefined): void;
  messageerror(port: object, error: unknown): void;
  close(port: object): void;
  createPort(handle: PortHandle): object;
  empty: object;
  DOMException: typeof DOMException;
}

export interface Native {
  setup(hooks: Hooks): void;
  /**
   * The environment is exiting: deliver nothing more, and write out what ports still queue
   * (blocking while their readers make room; giving up on a reader that stalls for 2 s).
   */
  stop(): void;
  createChannel(ringCapacity?: number): [PortHandle, PortHandle];
  adopt(segmentFd: number, socketFd: number, side: number): PortHandle;
  /** An object V8's serializer sees as a host object (one internal field). */
  newPortObject(): object;
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
