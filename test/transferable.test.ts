// allocateTransferable(): ArrayBuffers whose memory moves to another process without a copy,
// and that behave as any ArrayBuffer in every other respect.
import { spawnSync } from 'node:child_process';
import * as workerThreads from 'node:worker_threads';

import { allocateTransferable, MessageChannel, receiveMessageOnPort } from '../lib';
import { fixture, report, runFixture } from './helpers';

const MiB = 1024 * 1024;

/** Everything a user can observe of a buffer made by `make`, used every way an ArrayBuffer is. */
function observe(make: (size: number) => ArrayBuffer, size: number) {
  const buffer = make(size);
  const bytes = new Uint8Array(buffer);
  const zeroFilled = Buffer.compare(Buffer.from(buffer), Buffer.alloc(size)) === 0;
  // Views share its memory.
  bytes[0] = 1;
  bytes[size - 1] = 2;
  const asBuffer = Buffer.from(buffer);
  asBuffer[1] = 3;
  new DataView(buffer).setFloat64(8, Math.PI);
  const views = [bytes[1], new Float64Array(buffer, 8, 1)[0], asBuffer[0], asBuffer.length];
  // Copies do not.
  const slice = buffer.slice(0, 4);
  const clone = structuredClone(buffer);
  bytes[0] = 9;
  const copies = [...new Uint8Array(slice)].concat([...new Uint8Array(clone, 0, 4)], clone.byteLength);
  // worker_threads: clone, then transfer.
  const wt = new workerThreads.MessageChannel();
  wt.port1.postMessage(bytes);
  const wtClone: Uint8Array = workerThreads.receiveMessageOnPort(wt.port2)!.message;
  // Moved by structuredClone: detached here, every view with it.
  const moved = structuredClone(buffer, { transfer: [buffer] });
  const detached = [buffer.byteLength, bytes.length, asBuffer.length, moved.byteLength];
  new Uint8Array(moved)[2] = 4;
  wt.port1.postMessage(moved, [moved]);
  const wtMoved: ArrayBuffer = workerThreads.receiveMessageOnPort(wt.port2)!.message;
  wt.port1.close();
  wt.port2.close();
  // A crossport transfer (both ends here; out of band from 4 MiB), and on again.
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(wtMoved, [wtMoved]);
  const received: ArrayBuffer = receiveMessageOnPort(port2)!.message;
  new Uint8Array(received)[3] = 5;
  port2.postMessage(received, [received]);
  const back: ArrayBuffer = receiveMessageOnPort(port1)!.message;
  port1.close();
  port2.close();
  const head = (b: ArrayBufferLike) => [...new Uint8Array(b, 0, 16)];
  return {
    tag: Object.prototype.toString.call(back),
    isArrayBuffer: back instanceof ArrayBuffer,
    resizable: (back as { resizable?: boolean }).resizable,
    zeroFilled,
    views,
    copies,
    wtClone: [wtClone.length, ...wtClone.subarray(0, 4)],
    detached: [...detached, wtMoved.byteLength, received.byteLength],
    back: [back.byteLength, ...head(back), new Uint8Array(back)[size - 1]],
  };
}

describe('allocateTransferable', () => {
  test.each([
    ['1 KiB', 1024],
    ['8 MiB (moved out of band)', 8 * MiB],
    ['6 MiB + 3 (huge pages, then a 4 KiB tail)', 6 * MiB + 3],
  ])('a %s buffer behaves as an ordinary ArrayBuffer', (_, size) => {
    const ordinary = observe((n) => new ArrayBuffer(n), size);
    const transferable = observe(allocateTransferable, size);
    expect(transferable).toEqual(ordinary);
  });

  test('checks its size as Buffer.allocUnsafeSlow does', () => {
    const outcome = (call: () => unknown) => {
      try {
        const made = call() as ArrayBufferLike;
        return { length: made.byteLength };
      } catch (error) {
        const { constructor, name, code, message } = error as Error & { code?: string };
        return { ctor: constructor.name, name, code, message };
      }
    };
    for (const size of [-1, 1.5, '1', NaN, Infinity, 2 ** 53, 2 ** 33, undefined, null, 1n, {}, 0]) {
      const ours = outcome(() => allocateTransferable(size as number));
      const node = outcome(() => Buffer.allocUnsafeSlow(size as number));
      expect({ size: String(size), ...ours }).toEqual({ size: String(size), ...node });
    }
  });

  test('out of file descriptors, it returns an ordinary ArrayBuffer that works; with fds again, transferable memory', () => {
    const run = spawnSync('sh', ['-c', `ulimit -n 256 && exec "${process.execPath}" "${fixture('transferable-nofds.js')}"`], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    const buffer = { byteLength: 8 * MiB, zeroFilled: true, writable: true };
    expect(JSON.parse(run.stdout)).toEqual({
      kind: 'nofds',
      outOfFds: 'EMFILE',
      withoutFds: { ...buffer, memfd: false },
      withFds: { ...buffer, memfd: true },
    });
  });

  test('across processes: moved without a copy, sealed; ordinary buffers copied once; passed on without a copy until written to', async () => {
    const { worker, crossport } = report(await runFixture('transferable-parent.js'), 'result');
    // What the receiving side observed is what a worker_threads Worker observes.
    const contents = (side: any) => side.received.map(({ report: r }: any) => ({
      i: r.i, ctor: r.ctor, length: r.length, hash: r.hash, writable: r.writable,
    }));
    expect(contents(crossport)).toEqual(contents(worker));
    expect(crossport.sent.map((s: any) => [s.hash, s.detached])).toEqual(worker.sent.map((s: any) => [s.hash, s.detached]));
    expect(worker.sent.every((s: any) => s.detached)).toBe(true);
    expect(crossport.returned.untouched).toMatchObject(worker.returned.untouched);
    expect(crossport.returned.written).toMatchObject(worker.returned.written);
    expect(worker.returned).toEqual({ untouched: { ok: true, length: 8 * MiB }, written: { ok: true, length: 6 * MiB + 3 } });
    // The sender mapped its allocated buffers shared and writable, and no longer maps them at all.
    expect(crossport.sent.map((s: any) => [s.mapped, s.mappedAfter])).toEqual([
      ['rw-s', null], ['rw-s', null], ['rw-s', null], [null, null], [null, null],
    ]);
    // The receiver maps memory objects copy-on-write that nobody can write or shrink: the
    // allocated buffers' own (one each), copies of the ordinary ones in chunks of 32 MiB.
    const sealed = { perms: 'rw-p', change: { write: 'EPERM', truncate: 'EPERM' } };
    const pages = (n: number) => Math.ceil(n / 4096) * 4096;
    expect(crossport.received.map(({ report: r }: any) => r.objects)).toEqual([
      [{ ...sealed, length: 8 * MiB }],
      [{ ...sealed, length: pages(6 * MiB + 3) }],
      [],  // 1 KiB: copied through the ring
      [{ ...sealed, length: 32 * MiB }, { ...sealed, length: 8 * MiB }],
      [{ ...sealed, length: 32 * MiB }, { ...sealed, length: 32 * MiB }, { ...sealed, length: 32 * MiB }, { ...sealed, length: pages(4 * MiB + 5) }],
    ]);
    // Sent back: the untouched one is the same memory object again; the one written to, a copy.
    expect(crossport.returned.untouched.sameObject).toBe('rw-p');
    expect(crossport.returned.written.sameObject).toBeNull();
  });

  test('the collector counts its memory, and frees it (mappings and fds) when the buffer is collected', async () => {
    const runs = await Promise.all(['ordinary', 'transferable'].map(async (which) => {
      const run = await runFixture('transferable-gc.js', [which]);
      expect(run.stderr).toBe('');
      return report(run, 'gc');
    }));
    const [ordinary, transferable] = runs;
    // Counted as external memory, as ordinary ArrayBuffers are.
    expect(transferable.dropped.externalGrowthMiB).toBe(ordinary.dropped.externalGrowthMiB);
    expect(transferable.dropped.held).toEqual({ mappings: 20, fds: 20 });
    expect(transferable.dropped.left).toEqual({ mappings: 0, fds: 0 });
    // 4 GiB made and dropped in a loop: the collector kept up (were its memory invisible to V8,
    // nothing would collect it: 4 GiB of RSS).
    expect(transferable.churn.sum).toBe(ordinary.churn.sum);
    expect(transferable.churn.peakRssMiB).toBeLessThan(1024);
  });
});
