// Smaller edges of the port API (issue 15 §8): Node's invalid-this and argument errors, and a
// large resizable ArrayBuffer that must arrive resizable.
import { once } from 'node:events';
import * as workerThreads from 'node:worker_threads';

import { fork, MessageChannel, MessagePort, receiveMessageOnPort } from '../lib';
import { fixture } from './helpers';

function thrown(action: () => unknown): object {
  try {
    action();
  } catch (error) {
    const { constructor, name, message, code } = error as Error & { code?: string };
    return { constructor: constructor.name, name, message, code };
  }
  return { threw: false };
}

describe("methods called on something that is not a port throw Node's errors", () => {
  const calls: [string, (proto: any, port: any) => unknown][] = [
    ['postMessage.call({}, 1)', (proto) => proto.postMessage.call({}, 1)],
    ['postMessage.call({})', (proto) => proto.postMessage.call({})],
    ['postMessage.call(Object.create(port), 1)', (proto, port) => proto.postMessage.call(Object.create(port), 1)],
    ['start.call({})', (proto) => proto.start.call({})],
    ['close.call({})', (proto) => proto.close.call({})],
    ['ref.call(Object.create(port))', (proto, port) => proto.ref.call(Object.create(port))],
    ['unref.call({})', (proto) => proto.unref.call({})],
    ['hasRef.call({})', (proto) => proto.hasRef.call({})],
  ];
  test.each(calls)('%s', (_, call) => {
    const reference = new workerThreads.MessageChannel();
    const ours = new MessageChannel();
    try {
      const expected = thrown(() => call(workerThreads.MessagePort.prototype, reference.port1));
      expect(expected).toMatchObject({ constructor: 'TypeError' }); // (Node 20: 'Illegal invocation')
      expect(thrown(() => call(MessagePort.prototype, ours.port1))).toEqual(expected);
    } finally {
      reference.port1.close();
      ours.port1.close();
    }
  });

  test.each([
    ['an object inheriting from a port', (port: any) => Object.create(port)],
    ['a plain object', () => ({})],
  ])('receiveMessageOnPort(%s)', (_, make) => {
    const reference = new workerThreads.MessageChannel();
    const ours = new MessageChannel();
    try {
      ours.port2.postMessage('waiting');
      const expected = thrown(() => workerThreads.receiveMessageOnPort(make(reference.port1)));
      expect(expected).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
      expect(thrown(() => receiveMessageOnPort(make(ours.port1)))).toEqual(expected);
      expect(receiveMessageOnPort(ours.port1)).toEqual({ message: 'waiting' }); // still there
    } finally {
      reference.port1.close();
      ours.port1.close();
    }
  });
});

test('a transferred resizable ArrayBuffer of 4 MiB or more arrives resizable in another process', async () => {
  const child = fork(fixture('resizable-child.js'));
  const buffer = new (ArrayBuffer as any)(5 * 1024 * 1024, { maxByteLength: 8 * 1024 * 1024 }) as ArrayBuffer;
  const bytes = new Uint8Array(buffer);
  bytes[0] = 7;
  bytes[bytes.length - 1] = 9;
  child.port.postMessage({ buffer }, [buffer]);
  expect(buffer.byteLength).toBe(0); // detached here
  const [described] = await once(child.port, 'message');
  expect(described).toEqual({
    resizable: true,
    byteLength: 5 * 1024 * 1024,
    maxByteLength: 8 * 1024 * 1024,
    first: 7,
    last: 9,
    grewTo: 8 * 1024 * 1024,
  });
  await once(child, 'exit');
});
