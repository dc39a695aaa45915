// The frames a remote port's two ends exchange on their NATS subjects. Every frame starts with a
// 16-byte header (little-endian):
//
//   0  u8   version (1)
//   1  u8   type (FrameType)
//   2  u16  flags (kHasExtras: the message carries ports or sections, see message.ts)
//   4  u32  sequence number, low 32 bits   } ordered frames: this frame's number in its direction
//   8  u32  sequence number, high 21 bits  } (from 1); a heartbeat: the last number sent
//   12 u32  a First frame: the number of chunks; otherwise 0
//
// A First frame adds the message's total length (u32 low, u32 high) before its part. Nothing in a
// frame is trusted: parseFrame checks the header, and the receiver checks every count and length
// against what it has and what its limits allow before it uses them.

export const kVersion = 1;
export const kHeaderSize = 16;
export const kFirstHeaderSize = 24;
export const kHasExtras = 1;

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
  type: FrameType;
  flags: number;
  seq: number;
  /** A First frame's chunk count. */
  chunks: number;
  /** A First frame's total message length. */
  total: number;
  /** The frame's payload (a view of `raw`). */
  body: Uint8Array;
  /** The whole frame as received (a forwarder passes it on unchanged). */
  raw: Uint8Array;
}

export function isOrdered(type: FrameType): boolean {
  return kOrdered.has(type);
}

/** The frame in `raw`, or undefined when it is not one (junk is ignored by the caller). */
export function parseFrame(raw: Uint8Array): Frame | undefined {
  if (raw.byteLength < kHeaderSize) return undefined;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (view.getUint8(0) !== kVersion) return undefined;
  const type = view.getUint8(1);
  if (!kKnown.has(type)) return undefined;
  const high = view.getUint32(8, true);
  if (high >= kHighLimit) return undefined;
  const seq = high * 2 ** 32 + view.getUint32(4, true);
  const flags = view.getUint16(2, true);
  let chunks = 0;
  let total = 0;
  let offset = kHeaderSize;
  if (type === FrameType.First) {
    if (raw.byteLength < kFirstHeaderSize) return undefined;
    chunks = view.getUint32(12, true);
    const totalHigh = view.getUint32(20, true);
    if (totalHigh >= kHighLimit) return undefined;
    total = totalHigh * 2 ** 32 + view.getUint32(16, true);
    offset = kFirstHeaderSize;
  }
  if (isOrdered(type) && seq === 0) return undefined;
  return { type, flags, seq, chunks, total, body: raw.subarray(offset), raw };
}

/** Writes a header at the start of `into` (which has room for it). */
export function writeHeader(into: Uint8Array, type: FrameType, seq: number, flags = 0, chunks = 0, total = 0): void {
  const view = new DataView(into.buffer, into.byteOffset, into.byteLength);
  view.setUint8(0, kVersion);
  view.setUint8(1, type);
  view.setUint16(2, flags, true);
  view.setUint32(4, seq >>> 0, true);
  view.setUint32(8, Math.floor(seq / 2 ** 32), true);
  view.setUint32(12, chunks, true);
  if (type === FrameType.First) {
    view.setUint32(16, total >>> 0, true);
    view.setUint32(20, Math.floor(total / 2 ** 32), true);
  }
}

/** A frame with a small payload (control frames). */
export function controlFrame(type: FrameType, seq: number, text = ''): Uint8Array {
  const body = Buffer.from(text, 'utf8');
  const frame = Buffer.allocUnsafe(kHeaderSize + body.byteLength);
  writeHeader(frame, type, seq);
  body.copy(frame, kHeaderSize);
  return frame;
}

/** Subject tokens we make and accept: NATS subject characters, no wildcards or spaces. */
const kSubject = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
export const kMaxSubjectLength = 512;

export function isSubject(value: unknown): value is string {
  return typeof value === 'string' && value.length <= kMaxSubjectLength && kSubject.test(value);
}
