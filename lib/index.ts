export { MessageChannel, MessagePort, receiveMessageOnPort } from './port';
export { fork, parentPort, type CrossportChildProcess } from './process';
