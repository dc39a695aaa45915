// The frames a remote port's two ends exchange on their NATS subjects. Every frame starts with a
// 16-byte header (little-endian):
//
//   0  u8   version (1)
//   1  u8   type (FrameType)
//   2  u16  flags (kHasExtras: the message carries ports or sections, see message.ts;
//                  kPacked: the frame's payload length is at 12, and another frame may follow)
//   4  u32  sequence number, low 32 bits   } ordered frames: this frame's number in its direction
//   8  u32  sequence number, high 21 bits  } (from 1); a heartbeat: the last number sent
//   12 u32  a First frame: the number of chunks; a packed frame: its payload's length; else 0
//
// A First frame adds the message's total length (u32 low, u32 high) before its part.
//
// One NATS message carries one frame, or several packed frames one after the other: the messages
// a port posts in one turn of the event loop go out together (handle.ts), each frame keeping its
// own sequence number. A frame that is not packed runs to the end of the NATS message.
//
// Nothing in a frame is trusted: parseFrame checks the header, and the receiver checks every count
// and length against what it has and what its limits allow before it uses them.

export const kVersion = 1;
export const kHeaderSize = 16;
export const kFirstHeaderSize = 24;
export const kHasExtras = 1;
export const kPacked = 2;

export const enum FrameType {
  /** A whole message. */
  Data = 1,
  /** The first chunk of a message larger than the server's max_payload. */
  First = 2,
  /** A further chunk. */
  More = 3,
  /** The sender closed its end; nothing follows. */
  Close = 4,
  /** Liveness; its sequence field is the last number the sender used. Not ordered. */
  Heartbeat = 5,
  /** The sender's end moved (a transfer): send to the subject in the payload from now on. */
  Moved = 6,
  /** Answers Moved: nothing more comes to the old subject named in the payload. */
  MoveAck = 7,
  /** The receiving side of a transfer is listening on its new subject. Not ordered. */
  Ready = 8,
  /** A relay could not read a message: the receiver gets 'messageerror'. */
  Undeliverable = 9,
}

const kOrdered = new Set<number>([
  FrameType.Data, FrameType.First, FrameType.More, FrameType.Close, FrameType.Moved,
  FrameType.MoveAck, FrameType.Undeliverable,
]);
const kKnown = new Set<number>([...kOrdered, FrameType.Heartbeat, FrameType.Ready]);

/** The largest sequence number (2^53 - 1: exact in a double). */
const kHighLimit = 2 ** 21;

export interface Frame {
  /** A single-frame message is its own entry in a port's queue (handle.ts, Entry). */
  kind: 'frame';
  type: FrameType;
  flags: number;
  seq: number;
  /** A First frame's chunk count. */
  chunks: number;
  /** A First frame's total message length. */
  total: number;
  /** Where the payload starts in `raw`. */
  offset: number;
  /** The whole frame as received (a forwarder passes it on unchanged). */
  raw: Uint8Array;
}

export function bodyOf(frame: Frame): Uint8Array {
  return frame.raw.subarray(frame.offset);
}

export function bodyLength(frame: Frame): number {
  return frame.raw.byteLength - frame.offset;
}

export function bodyText(frame: Frame): string {
  return Buffer.from(frame.raw.buffer, frame.raw.byteOffset + frame.offset, bodyLength(frame)).toString('utf8');
}

export function isOrdered(type: FrameType): boolean {
  return kOrdered.has(type);
}

function u32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16)) + bytes[at + 3] * 0x1000000;
}

/**
 * The frame at `at` in a NATS message's `data`, or undefined when there is none (junk: the caller
 * ignores it and whatever follows it).
 */
export function parseFrame(data: Uint8Array, at = 0): Frame | undefined {
  const available = data.byteLength - at;
  if (available < kHeaderSize || data[at] !== kVersion) return undefined;
  const type = data[at + 1];
  if (!kKnown.has(type)) return undefined;
  const high = u32(data, at + 8);
  if (high >= kHighLimit) return undefined;
  const seq = high * 2 ** 32 + u32(data, at + 4);
  const flags = data[at + 2] | (data[at + 3] << 8);
  let chunks = 0;
  let total = 0;
  let offset = kHeaderSize;
  let length = available;
  if (type === FrameType.First) {
    if (available < kFirstHeaderSize || (flags & kPacked) !== 0) return undefined;
    chunks = u32(data, at + 12);
    const totalHigh = u32(data, at + 20);
    if (totalHigh >= kHighLimit) return undefined;
    total = totalHigh * 2 ** 32 + u32(data, at + 16);
    offset = kFirstHeaderSize;
  } else if ((flags & kPacked) !== 0) {
    const payload = u32(data, at + 12);
    if (payload > available - kHeaderSize) return undefined;
    length = kHeaderSize + payload;
  }
  if (isOrdered(type) && seq === 0) return undefined;
  const raw = length === data.byteLength ? data : new Uint8Array(data.buffer, data.byteOffset + at, length);
  return { kind: 'frame', type, flags, seq, chunks, total, offset, raw };
}

/**
 * Writes a header at `at` in `into` (which has room for it). `field` is a First frame's chunk
 * count or a packed frame's payload length.
 */
export function writeHeader(into: Uint8Array, at: number, type: FrameType, seq: number, flags = 0, field = 0, total = 0): void {
  into[at] = kVersion;
  into[at + 1] = type;
  into[at + 2] = flags;
  into[at + 3] = flags >>> 8;
  putU32(into, at + 4, seq >>> 0);
  putU32(into, at + 8, Math.floor(seq / 2 ** 32));
  putU32(into, at + 12, field);
  if (type === FrameType.First) {
    putU32(into, at + 16, total >>> 0);
    putU32(into, at + 20, Math.floor(total / 2 ** 32));
  }
}

function putU32(into: Uint8Array, at: number, value: number): void {
  into[at] = value;
  into[at + 1] = value >>> 8;
  into[at + 2] = value >>> 16;
  into[at + 3] = value >>> 24;
}

/** A frame with a small payload (control frames). */
export function controlFrame(type: FrameType, seq: number, text = ''): Uint8Array {
  const body = Buffer.from(text, 'utf8');
  const frame = Buffer.allocUnsafe(kHeaderSize + body.byteLength);
  writeHeader(frame, 0, type, seq);
  body.copy(frame, kHeaderSize);
  return frame;
}

/** Subject tokens we make and accept: NATS subject characters, no wildcards or spaces. */
const kSubject = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
export const kMaxSubjectLength = 512;

export function isSubject(value: unknown): value is string {
  return typeof value === 'string' && value.length <= kMaxSubjectLength && kSubject.test(value);
}
