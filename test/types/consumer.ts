// A consumer of the published package, compiled by test/types/run.sh against the packed
// declarations with tsc --strict, for each @types/node major and module mode: crossport's ports,
// channels and receiveMessageOnPort must stand in wherever worker_threads' are expected.
import * as workerThreads from 'node:worker_threads';
import {
  FileDescriptor,
  MessageChannel,
  MessagePort,
  connect,
  fork,
  listen,
  parentPort,
  receiveMessageOnPort,
} from 'crossport-ipc';

function nodePortOnly(port: workerThreads.MessagePort): workerThreads.MessagePort {
  return port;
}

const channel = new MessageChannel();
const port: MessagePort = channel.port1;
nodePortOnly(port);
const nodeChannel: workerThreads.MessageChannel = channel;
const nodeReceive: typeof workerThreads.receiveMessageOnPort = receiveMessageOnPort;
if (parentPort !== null) nodePortOnly(parentPort);
nodePortOnly(fork('./child.js', ['--flag'], { stdio: 'inherit' }).port);
nodePortOnly(fork(new URL('file:///child.js')).port);

// Used as worker_threads' ports are used.
const buffer = new ArrayBuffer(8);
port.on('message', (value: unknown) => value);
port.once('messageerror', (error: Error) => error.message);
port.on('close', (event: Event) => event.type);
port.addEventListener('message', (event) => (event as MessageEvent).data);
port.onmessage = (event: MessageEvent) => event.data;
port.postMessage({ buffer }, [buffer]);
port.postMessage({ buffer }, { transfer: [buffer] });
port.postMessage({ port: channel.port2 }, [channel.port2]);
const received: { message: any } | undefined = receiveMessageOnPort(port);
receiveMessageOnPort(new workerThreads.MessageChannel().port1);
port.close(() => undefined);

// crossport's own additions.
port.on('drain', () => undefined);
const buffered: number = port.bufferedAmount;
const descriptor = new FileDescriptor(0);
port.postMessage(descriptor, [descriptor]);
const server = listen('/tmp/crossport-types.sock', { mode: 0o600 });
server.on('connection', (accepted: MessagePort, peer) => peer.pid + peer.uid + accepted.bufferedAmount);
connect('/tmp/crossport-types.sock').then((connected: MessagePort) => nodePortOnly(connected));

// The checks bite: each line below must be a type error (an unused directive fails the run).
// @ts-expect-error a port is not a number: its type is not any
const notANumber: number = port;
// @ts-expect-error the transfer list must be a list or { transfer }
port.postMessage(1, 'transfer');

export { buffered, nodeChannel, nodeReceive, notANumber, received };
