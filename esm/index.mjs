// ES module entry: the same objects as require('crossport').
import crossport from '../dist/index.js';

export const {
  MessageChannel,
  MessagePort,
  receiveMessageOnPort,
  FileDescriptor,
  exportPort,
  importPort,
  listen,
  connect,
  Server,
  fork,
  parentPort,
  allocateTransferable,
} = crossport;
export default crossport;
