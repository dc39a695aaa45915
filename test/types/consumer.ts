// A consumer of the published package, compiled by test/types/run.sh against the packed
// declarations with tsc --strict, for each @types/node major and module mode: crossport's ports,
// channels and receiveMessageOnPort must stand in wherever worker_threads' are expected.
import * as workerThreads from 'node:worker_threads';
import {
  FileDescriptor,
  MessageChannel,
  MessagePort,
  type NatsOptions,
  type NatsPeer,
  type NatsServer,
  Server,
  Worker,
  type WorkerOptions,
  connect,
  fork,
  getEnvironmentData,
  listen,
  parentPort,
  receiveMessageOnPort,
  setEnvironmentData,
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
const asServer: Server = server;
const isServer: boolean = server instanceof Server;

// Remote ports over NATS: listen() and connect() with a nats:// address, typed (no any).
const natsOptions: NatsOptions = { heartbeatMs: 1000, timeoutMs: 5000, name: 'the-client' };
const natsServer: Promise<NatsServer> = listen('nats://127.0.0.1:4222/orders.rpc', natsOptions);
natsServer.then((listening) => listening.on('connection', (accepted: MessagePort, peer: NatsPeer) => peer.name ?? accepted.bufferedAmount));
connect('tls://127.0.0.1:4222/orders.rpc', { shareConnection: false }).then((connected: MessagePort) => nodePortOnly(connected));

// Worker: a class (loaded on first use), as a value and a type, with worker_threads' shapes.
const options: WorkerOptions = { workerData: { n: 1 }, resourceLimits: { maxOldGenerationSizeMb: 64 }, stdout: true };
const worker: Worker = new Worker('./task.js', options);
worker.on('message', (value: unknown) => value);
const exitCode: Promise<number | undefined> = worker.terminate();
const output: NodeJS.ReadableStream = worker.stdout;
class NamedWorker extends Worker {}
const named: Worker = new NamedWorker(new URL('file:///task.js'), { name: 'n' });
setEnvironmentData('key', { any: 'clonable value' });
const environment: unknown = getEnvironmentData('key');

// The checks bite: each line below must be a type error (an unused directive fails the run).
// @ts-expect-error a port is not a number: its type is not any
const notANumber: number = port;
// @ts-expect-error the transfer list must be a list or { transfer }
port.postMessage(1, 'transfer');
// @ts-expect-error Worker is not any either
const notAString: string = worker;
// @ts-expect-error a NATS listener is not any either
const notANumberEither: number = natsServer;

export { asServer, buffered, environment, exitCode, isServer, named, nodeChannel, nodeReceive, notANumber, notANumberEither, notAString, output, received };
