// allocateTransferable(): ArrayBuffers whose memory can move to another process without a copy.
import { constants } from 'node:buffer';

import { nodeError } from './errors';
import { native } from './native';

/**
 * A new zero-filled `ArrayBuffer` of `size` bytes whose memory can move to another process with
 * no copy: transferred (`port.postMessage(buffer, [buffer])`), its pages are handed over sealed,
 * so that nothing in this process can write them any more, and the receiver maps them. In every
 * other respect it is an ordinary `ArrayBuffer` (views, `Buffer.from(buffer)`, clone, transfer,
 * `structuredClone`, garbage collection).
 *
 * `size` is checked as `Buffer.allocUnsafeSlow(size)` checks it. Large buffers are backed by huge
 * pages where the system allows, and their memory is committed at once. When the system cannot
 * provide such memory, an ordinary `ArrayBuffer` is returned (a transfer then copies it).
 */
export function allocateTransferable(size: number): ArrayBuffer {
  if (typeof size !== 'number' || !(size >= 0 && size <= constants.MAX_LENGTH)) {
    throw sizeError(size);
  }
  const length = Math.trunc(size);
  return (length > 0 ? native.allocateTransferable(length) : null) ?? new ArrayBuffer(length);
}

/** The error Node's `Buffer.allocUnsafeSlow(size)` throws for this `size`. */
function sizeError(size: unknown): Error {
  try {
    Buffer.allocUnsafeSlow(size as number);
  } catch (error) {
    const { constructor, code, message } = error as Error & { code?: unknown };
    if (typeof code === 'string') return nodeError(constructor as new (m: string) => Error, code, message);
    return error as Error;
  }
  return nodeError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "size" is out of range. Received ${String(size)}`);
}
