import type * as handoff from './handoff';
import type * as rendezvous from './rendezvous';
import type * as worker from './worker';

export { MessageChannel, MessagePort, receiveMessageOnPort, type TransferItem } from './port';
export { FileDescriptor } from './handles';
export type { NatsOptions, NatsPeer, NatsServer } from './nats';
export { fork, type CrossportChildProcess } from './process';
export {
  isMainThread,
  parentPort,
  workerData,
  threadId,
  resourceLimits,
  setEnvironmentData,
  getEnvironmentData,
  type ResourceLimits,
} from './worker-context';
export { allocateTransferable } from './transferable';
export type { PortToken } from './handoff';
export type { ConnectedPort, ConnectOptions, ListenOptions, Peer } from './rendezvous';
export type { WorkerOptions, EventLoopUtilization } from './worker';

// The rest is loaded on first use: a worker process, which loads this package before its script
// runs, pays for the modules it uses only (start-up is measured against child_process.fork's).
export declare const exportPort: typeof handoff.exportPort;
export declare const importPort: typeof handoff.importPort;
export declare const connect: typeof rendezvous.connect;
export declare const listen: typeof rendezvous.listen;
export declare const Server: typeof rendezvous.Server;
export type Server = rendezvous.Server;
export declare const Worker: typeof worker.Worker;
export type Worker = worker.Worker;

const later: Record<string, string> = {
  exportPort: './handoff',
  importPort: './handoff',
  connect: './rendezvous',
  listen: './rendezvous',
  Server: './rendezvous',
  Worker: './worker',
};
for (const [name, file] of Object.entries(later)) {
  Object.defineProperty(exports, name, {
    configurable: true,
    enumerable: true,
    get() {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const value: unknown = require(file)[name];
      Object.defineProperty(exports, name, { value, enumerable: true, writable: false, configurable: false });
      return value;
    },
  });
}
