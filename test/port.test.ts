// MessagePort behaviour within one process (both ends here), as worker_threads behaves.
import * as workerThreads from 'node:worker_threads';

import { MessageChannel, MessagePort, receiveMessageOnPort } from '../lib';

const channels: MessageChannel[] = [];
function channel(): MessageChannel {
  const created = new MessageChannel();
  channels.push(created);
  return created;
}
afterEach(() => {
  for (const { port1, port2 } of channels.splice(0)) {
    port1.close();
    port2.close();
  }
});

const nextMessage = (port: MessagePort) => new Promise<any>((resolve) => port.once('message', resolve));

describe('MessagePort', () => {
  test('is an EventTarget that cannot be constructed by users', () => {
    const { port1 } = channel();
    expect(port1).toBeInstanceOf(EventTarget);
    expect(port1).toBeInstanceOf(MessagePort);
    expect(() => new (MessagePort as any)()).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_CONSTRUCT_CALL_INVALID' }),
    );
  });

  test("on('message') gets the data; addEventListener and onmessage get a MessageEvent", async () => {
    const { port1, port2 } = channel();
    const seen: unknown[] = [];
    const all = new Promise<void>((resolve) => {
      port2.on('message', (data) => seen.push(['on', data]));
      port2.addEventListener('message', (event) => seen.push(['listener', event.constructor.name, (event as MessageEvent).data, (event as MessageEvent).target === port2, (event as MessageEvent).ports]));
      port2.onmessage = function (this: MessagePort, event: MessageEvent) {
        seen.push(['onmessage', event.data, this === port2]);
        resolve();
      };
    });
    port1.postMessage({ hello: 1 });
    await all;
    expect(seen).toEqual([
      ['on', { hello: 1 }],
      ['listener', 'MessageEvent', { hello: 1 }, true, []],
      ['onmessage', { hello: 1 }, true],
    ]);
    expect(port2.onmessage).toBeInstanceOf(Function);
  });

  test('messages wait for a listener; nextTicks and microtasks run between two messages', async () => {
    const { port1, port2 } = channel();
    port1.postMessage(1);
    port1.postMessage(2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      port2.on('message', (n) => {
        order.push(`message ${n}`);
        process.nextTick(() => order.push(`tick ${n}`));
        Promise.resolve().then(() => order.push(`microtask ${n}`));
        if (n === 2) setImmediate(resolve);
      });
    });
    expect(order).toEqual(['message 1', 'tick 1', 'microtask 1', 'message 2', 'tick 2', 'microtask 2']);
  });

  test('a new port is unreferenced; the first message listener refs it, removing the last unrefs it', () => {
    const { port2 } = channel();
    expect(port2.hasRef()).toBe(false);
    port2.on('messageerror', () => {});
    expect(port2.hasRef()).toBe(false);
    const listener = () => {};
    port2.on('message', listener);
    expect(port2.hasRef()).toBe(true);
    port2.unref();
    expect(port2.hasRef()).toBe(false);
    port2.ref();
    port2.off('message', listener);
    expect(port2.hasRef()).toBe(false);
    port2.onmessage = () => {};
    expect(port2.hasRef()).toBe(true);
    port2.onmessage = null;
    expect(port2.hasRef()).toBe(false);
  });

  test('transferred ArrayBuffers are detached in the sender; ports arrive in event.ports', async () => {
    const { port1, port2 } = channel();
    const extra = channel();
    const buffer = new Uint8Array([1, 2, 3]).buffer;
    const received = new Promise<MessageEvent>((resolve) => port2.addEventListener('message', (e) => resolve(e as MessageEvent), { once: true }));
    port1.postMessage({ buffer, port: extra.port2 }, [buffer, extra.port2]);
    expect(buffer.byteLength).toBe(0);
    const event = await received;
    expect([...new Uint8Array(event.data.buffer)]).toEqual([1, 2, 3]);
    expect(event.ports).toHaveLength(1);
    expect(event.ports[0]).toBe(event.data.port);
    const moved: MessagePort = event.data.port;
    extra.port1.postMessage('through the moved port');
    await expect(nextMessage(moved)).resolves.toBe('through the moved port');
    moved.close();
  });

  test('a transferred port is neutered: posting on it does not throw, and it gets close', async () => {
    const { port1 } = channel();
    const extra = channel();
    const closed = new Promise((resolve) => extra.port2.once('close', resolve));
    port1.postMessage(null, [extra.port2]);
    expect(extra.port2.postMessage('ignored')).toBeUndefined();
    await closed;
    expect(() => port1.postMessage(null, [extra.port2])).toThrow(
      expect.objectContaining({ name: 'DataCloneError', code: 25, message: 'MessagePort in transfer list is already detached' }),
    );
  });

  test('more than 1024 ports in one message is a DataCloneError that neuters none of them', () => {
    const { port1 } = channel();
    const pairs = Array.from({ length: 1025 }, () => channel());
    const many = pairs.map((pair) => pair.port1);
    expect(() => port1.postMessage(many, many)).toThrow(
      expect.objectContaining({ name: 'DataCloneError', message: 'Too many MessagePorts in transfer list' }),
    );
    const stillConnected = pairs.filter(({ port1: mine, port2: peer }) => {
      mine.postMessage('still mine');
      return receiveMessageOnPort(peer)?.message === 'still mine';
    });
    expect(stillConnected).toHaveLength(1025);
  });

  test('receiveMessageOnPort takes messages synchronously', () => {
    const { port1, port2 } = channel();
    expect(receiveMessageOnPort(port2)).toBeUndefined();
    port1.postMessage({ a: 1 });
    port1.postMessage(undefined);
    expect(receiveMessageOnPort(port2)).toEqual({ message: { a: 1 } });
    const second = receiveMessageOnPort(port2);
    expect(second).toEqual({ message: undefined });
    expect(Object.keys(second!)).toEqual(['message']);
    expect(receiveMessageOnPort(port2)).toBeUndefined();
    expect(() => receiveMessageOnPort({} as MessagePort)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: 'The "port" argument must be a MessagePort instance' }),
    );
    const native = new workerThreads.MessageChannel();
    native.port1.postMessage('worker_threads port');
    expect(receiveMessageOnPort(native.port2)).toEqual({ message: 'worker_threads port' });
    native.port1.close();
  });

  test('close fires once on both ends; close(cb); start/ref/unref after close do not throw', async () => {
    const { port1, port2 } = channel();
    const events: string[] = [];
    const both = Promise.all([
      new Promise((resolve) => port1.on('close', () => resolve(events.push('port1')))),
      new Promise((resolve) => port2.on('close', () => resolve(events.push('port2')))),
    ]);
    const callback = new Promise((resolve) => port1.close(() => resolve(events.push('callback'))));
    port1.close();
    await Promise.all([both, callback]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(events.sort()).toEqual(['callback', 'port1', 'port2']);
    expect(() => {
      port1.start();
      port1.ref();
      port1.unref();
      port1.close();
    }).not.toThrow();
    expect(port1.hasRef()).toBe(false);
    expect(port1.postMessage('after close')).toBeUndefined();
  });

  test('a close right behind the message that removed the last listener still arrives', async () => {
    const { port1, port2 } = channel();
    const closed = new Promise<string>((resolve) => {
      port2.once('message', (m) => port2.on('close', () => resolve(`closed after ${m}`)));
    });
    port1.postMessage('last');
    port1.close();
    await expect(closed).resolves.toBe('closed after last');
  });

  test('a SharedArrayBuffer gives messageerror with a DataCloneError, and the next message arrives', async () => {
    const { port1, port2 } = channel();
    const error = new Promise<any>((resolve) => port2.on('messageerror', resolve));
    const message = nextMessage(port2);
    port1.postMessage({ shared: new SharedArrayBuffer(8) });
    port1.postMessage('after');
    const received = await error;
    expect(received.name).toBe('DataCloneError');
    expect(received.code).toBe(25);
    await expect(message).resolves.toBe('after');
  });

  test('every message size around the large-ring limit (4 MiB) goes out at once', () => {
    const { port1, port2 } = new MessageChannel();
    // Byte arrays from 40 bytes under 4 MiB to 4 MiB: their records straddle the largest one
    // the large ring takes; each must be readable right after it was posted.
    for (let size = 4 * 1024 * 1024 - 40; size <= 4 * 1024 * 1024; size++) {
      port1.postMessage(new Uint8Array(size));
      expect(port1.bufferedAmount).toBe(0);
      expect(receiveMessageOnPort(port2)?.message.length).toBe(size);
    }
    port1.close();
  });

  test('large buffers behind views (sent apart from the rest) keep their bytes, views and identity', () => {
    const { port1, port2 } = channel();
    const stamp = (bytes: Uint8Array) => {
      for (let i = 0; i < bytes.length; i += 997) bytes[i] = (i / 997) & 255;
      return bytes;
    };
    // 20 KiB: the whole record fits the small ring; 200 KiB: the large ring; 5 MiB: out of band.
    for (const size of [20 * 1024, 200 * 1024, 5 * 1024 * 1024]) {
      const buffer = new ArrayBuffer(size);
      const bytes = stamp(new Uint8Array(buffer));
      const value = {
        bytes,
        floats: new Float64Array(buffer, 1024, 16),
        view: new DataView(buffer, 3, 5),
        buffer,
        again: bytes,
        other: stamp(new Uint8Array(size)),
        small: new Int16Array([1, -2, 3]),
      };
      value.floats[2] = Math.PI;
      port1.postMessage(value);
      const got = receiveMessageOnPort(port2)!.message;
      expect(got.bytes).toBeInstanceOf(Uint8Array);
      expect(Buffer.compare(Buffer.from(got.bytes.buffer), Buffer.from(buffer))).toBe(0);
      expect(got.buffer).toBe(got.bytes.buffer);
      expect(got.floats.buffer).toBe(got.buffer);
      expect(got.view.buffer).toBe(got.buffer);
      expect(got.again).toBe(got.bytes);
      expect([got.floats.byteOffset, got.floats.length, got.floats[2]]).toEqual([1024, 16, Math.PI]);
      expect([got.view.byteOffset, got.view.byteLength]).toEqual([3, 5]);
      expect(Buffer.compare(Buffer.from(got.other), Buffer.from(value.other))).toBe(0);
      expect(got.other.buffer).not.toBe(got.buffer);
      expect(Array.from(got.small)).toEqual([1, -2, 3]);
      // The sender's buffer is untouched (cloned, not transferred).
      expect(buffer.byteLength).toBe(size);
    }
  });

  test('a transferred 1 MiB buffer arrives whole and is detached in the sender; a view over a resizable buffer keeps tracking its length', () => {
    const { port1, port2 } = channel();
    const bytes = new Uint8Array(1024 * 1024).map((_, i) => i & 255);
    const expected = Buffer.from(bytes);
    port1.postMessage({ bytes }, [bytes.buffer]);
    expect(bytes.byteLength).toBe(0);
    const got = receiveMessageOnPort(port2)!.message;
    expect(Buffer.compare(Buffer.from(got.bytes), expected)).toBe(0);
    const resizable = new (ArrayBuffer as any)(8, { maxByteLength: 32 });
    port1.postMessage(new Uint8Array(resizable));
    const tracking = receiveMessageOnPort(port2)!.message;
    expect(tracking.length).toBe(8);
    tracking.buffer.resize(24);
    expect(tracking.length).toBe(24);
  });

  test('messages larger than the ring arrive whole, in order with small ones', async () => {
    const { port1, port2 } = channel();
    const received: number[] = [];
    const done = new Promise<void>((resolve) => {
      port2.on('message', (m) => {
        received.push(typeof m === 'number' ? m : m.length);
        if (received.length === 6) resolve();
      });
    });
    port1.postMessage(1);
    port1.postMessage(new Uint8Array(300 * 1024));
    port1.postMessage(2);
    port1.postMessage('x'.repeat(4 * 1024 * 1024));
    port1.postMessage(3);
    port1.postMessage(4);
    await done;
    expect(received).toEqual([1, 300 * 1024, 2, 4 * 1024 * 1024, 3, 4]);
  });
});
