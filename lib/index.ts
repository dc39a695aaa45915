export { MessageChannel, MessagePort, receiveMessageOnPort, type TransferItem } from './port';
export { FileDescriptor } from './handles';
export { fork, parentPort, type CrossportChildProcess } from './process';
