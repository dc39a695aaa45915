// OS handles in messages: net.Socket, net.Server, dgram.Socket, FileHandle and FileDescriptor.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { FileDescriptor, MessageChannel, receiveMessageOnPort } from '../lib';
import { report, runFixture } from './helpers';

describe('OS handles between processes', () => {
  test('sockets, a server, a UDP socket, a FileHandle and a FileDescriptor arrive working', async () => {
    const run = await runFixture('handles-parent.js');
    expect(report(run, 'senderSide')).toEqual({
      kind: 'senderSide',
      tcpDestroyed: true,
      unixDestroyed: true,
      serverListening: false,
      fileFd: -1,
      rawFd: -1,
    });
    const used = report(run, 'childUsed');
    expect(used.kinds).toEqual({ tcp: true, unix: true, server: true, udp: true, file: true, raw: true });
    expect(used.note).toBe('handles');
    expect(used.tcpAnswer).toMatch(/^OVER TCP \(parent \d+\)$/);
    expect(used.unixAnswer).toMatch(/^OVER UNIX \(parent \d+\)$/);
    expect(used.fileText).toBe('text for the child');
    const outside = report(run, 'fromOutside');
    expect(outside).toEqual({
      kind: 'fromOutside',
      served: `served by ${outside.childPid}`,
      udpReply: `udp ping from ${outside.childPid}`,
      written: `written by ${outside.childPid}`,
      childPid: used.pid,
    });
    expect(run.code).toBe(0);
  });

  test('a descriptor in the transfer list but not in the value is closed by the receiver, not leaked', async () => {
    const run = await runFixture('unreferenced-handle.js');
    const { before, after } = report(run, 'fds');
    expect(after.received).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(after.open).toBe(before.open);
  });

  test('200 descriptors in 100 messages among 900 others, all posted at once: order kept, none lost or leaked', async () => {
    const run = await runFixture('handles-flood-parent.js');
    const flood = report(run, 'flood');
    expect(flood.seen).toEqual({ inOrder: true, count: 1000, badHandles: 0 });
    expect(flood.indices).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(flood.fdsGrewBy).toBe(0);
  });
});

describe('OS handles in one process', () => {
  const tempFile = (): string => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'crossport-')), 'f');

  test('a FileDescriptor moves: the receiver gets its own descriptor, the sender is closed', () => {
    const { port1, port2 } = new MessageChannel();
    const file = tempFile();
    const sent = new FileDescriptor(fs.openSync(file, 'w'));
    const before = sent.fd;
    port1.postMessage({ deep: [{ sent }] }, [sent]);
    expect(sent.fd).toBe(-1);
    expect(() => fs.fstatSync(before)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    const received = receiveMessageOnPort(port2)!.message.deep[0].sent as FileDescriptor;
    expect(received).toBeInstanceOf(FileDescriptor);
    fs.writeSync(received.fd, 'via the copy');
    received.close();
    expect(fs.readFileSync(file, 'utf8')).toBe('via the copy');
    port1.close();
  });

  test('a handle that cannot be transferred is a DataCloneError, and nothing is sent or detached', () => {
    const { port1, port2 } = new MessageChannel();
    const buffer = new ArrayBuffer(8);
    const closed = new FileDescriptor(fs.openSync(os.devNull, 'r'));
    closed.close();
    const cases: [unknown, string][] = [
      [new net.Socket(), 'net.Socket in transfer list is not connected'],
      [net.createServer(), 'net.Server in transfer list is not listening'],
      [closed, 'FileDescriptor in transfer list is closed'],
    ];
    for (const [handle, message] of cases) {
      let thrown: any;
      try {
        port1.postMessage({ handle, buffer }, [buffer, handle as FileDescriptor]);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(DOMException);
      expect(thrown).toMatchObject({ name: 'DataCloneError', code: 25, message });
      expect(buffer.byteLength).toBe(8);
    }
    const open = new FileDescriptor(fs.openSync(os.devNull, 'r'));
    expect(() => port1.postMessage(open, [open, open])).toThrow(
      expect.objectContaining({ name: 'DataCloneError', message: 'Transfer list contains duplicate handle' }),
    );
    expect(open.fd).toBeGreaterThanOrEqual(0);
    expect(receiveMessageOnPort(port2)).toBeUndefined();
    open.close();
    port1.close();
  });

  test('FileDescriptor checks its argument as Node checks an fd', () => {
    expect(() => new FileDescriptor('3' as unknown as number)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' }),
    );
    expect(() => new FileDescriptor(-1)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new FileDescriptor(1.5)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
  });
});
