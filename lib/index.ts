export { MessageChannel, MessagePort, receiveMessageOnPort, type TransferItem } from './port';
export { FileDescriptor } from './handles';
export { exportPort, importPort, type PortToken } from './handoff';
export { connect, listen, Server, type ConnectedPort, type ConnectOptions, type ListenOptions, type Peer } from './rendezvous';
export type { NatsOptions, NatsPeer, NatsServer } from './nats';
export { fork, type CrossportChildProcess } from './process';
export {
  Worker,
  isMainThread,
  parentPort,
  workerData,
  threadId,
  resourceLimits,
  type WorkerOptions,
  type ResourceLimits,
  type EventLoopUtilization,
} from './worker';
export { allocateTransferable } from './transferable';
