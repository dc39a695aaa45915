// A remote port's message, once its chunks are put together:
//
//   V8's bytes | section 0 | section 1 | ... | extras (JSON) | u32 length of the extras
//
// The extras and the u32 are there only when the first frame has kHasExtras: ports that travel
// with the message (PortDescriptor) and the lengths of the sections (ArrayBuffers the serializer
// carries beside its bytes, see native/serializer.h). Decoding checks every length and field.
import { isSubject } from './frame';

/** A remote port on its way to a new owner (see handle.ts, moveOut/adopt). */
export interface PortDescriptor {
  /** The subject the new owner listens on. */
  inbox: string;
  /** Where the new owner sends: the other end's subject. */
  peer: string;
  /** Where the new owner announces that it listens (the old owner waits for that). */
  ready: string;
  /** The next sequence numbers, out and in. */
  out: number;
  in: number;
  /** Frames the old owner had received but not delivered (base64), in order. */
  queued: string[];
}

export interface Extras {
  ports: PortDescriptor[];
  sections: number[];
}

const kMaxPorts = 1024;
const kMaxSections = 1 << 16;
const kMaxQueued = 1 << 20;

export function encodeExtras(extras: Extras): Buffer {
  const json = Buffer.from(JSON.stringify({ p: extras.ports, s: extras.sections }), 'utf8');
  const out = Buffer.allocUnsafe(json.byteLength + 4);
  json.copy(out, 0);
  out.writeUInt32LE(json.byteLength, json.byteLength);
  return out;
}

/** Splits a message with extras; undefined when it is malformed. */
export function decodeMessage(bytes: Uint8Array): { body: Uint8Array; sections: Uint8Array[]; ports: PortDescriptor[] } | undefined {
  if (bytes.byteLength < 4) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLength = view.getUint32(bytes.byteLength - 4, true);
  if (jsonLength > bytes.byteLength - 4) return undefined;
  const jsonStart = bytes.byteLength - 4 - jsonLength;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + jsonStart, jsonLength).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { p, s } = parsed as { p?: unknown; s?: unknown };
  if (!Array.isArray(p) || p.length > kMaxPorts || !p.every(isDescriptor)) return undefined;
  if (!Array.isArray(s) || s.length > kMaxSections) return undefined;
  let sectionBytes = 0;
  for (const length of s) {
    if (!Number.isSafeInteger(length) || length < 0) return undefined;
    sectionBytes += length;
  }
  if (sectionBytes > jsonStart) return undefined;
  let at = jsonStart - sectionBytes;
  const body = bytes.subarray(0, at);
  const sections: Uint8Array[] = [];
  for (const length of s as number[]) {
    sections.push(bytes.subarray(at, at + length));
    at += length;
  }
  return { body, sections, ports: p };
}

function isSequence(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 1;
}

function isDescriptor(value: unknown): value is PortDescriptor {
  if (typeof value !== 'object' || value === null) return false;
  const d = value as Partial<PortDescriptor>;
  return isSubject(d.inbox) && isSubject(d.peer) && isSubject(d.ready) && isSequence(d.out) &&
    isSequence(d.in) && Array.isArray(d.queued) && d.queued.length <= kMaxQueued &&
    d.queued.every((frame) => typeof frame === 'string');
}
