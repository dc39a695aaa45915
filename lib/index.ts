export { MessageChannel, MessagePort, receiveMessageOnPort, type TransferItem } from './port';
export { FileDescriptor } from './handles';
export { exportPort, importPort, type PortToken } from './handoff';
export { connect, listen, Server, type ListenOptions, type Peer } from './rendezvous';
export { fork, parentPort, type CrossportChildProcess } from './process';
export { allocateTransferable } from './transferable';
