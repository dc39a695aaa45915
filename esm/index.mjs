// ES module entry: the same objects as require('crossport-ipc').
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
  Worker,
  isMainThread,
  workerData,
  threadId,
  resourceLimits,
  setEnvironmentData,
  getEnvironmentData,
  allocateTransferable,
} = crossport;
export default crossport;
