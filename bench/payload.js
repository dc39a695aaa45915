'use strict';
// What the benchmark sends and how the receiving side checks it; shared by case.js and peer.js,
// so both ends agree on every case's payload and flow control.
//
// Case names (the <case> argument of case.js and peer.js):
//   small                  the small object { id, op, args: [1, 2, 3], tag }, pipelined one way
//   pingpong               the small object, one in flight, echoed back (round-trip latency)
//   u8-<size>-<mode>       a Uint8Array of 4k | 64k | 1m bytes, pipelined one way,
//                          mode clone (postMessage(u8)) or transfer (postMessage(u8, [u8.buffer]))
//   channels               the small object round-robin over CHANNELS channels between the two sides
//   idle                   <count> idle channels (both ends listening): memory and fds per channel
//   small-load, pingpong-load   small and pingpong while as many busy processes as CPUs run beside
//                          (bench/run.js starts them; the case itself is the same)
//   big-<size>-<mode>      one Uint8Array of 64m | 512m | 1g bytes transferred at a time, the receiver
//                          answering with its length: mode transfer (a new ArrayBuffer) or alloc (from
//                          crossport's allocateTransferable(); the same transfer elsewhere)

const SIZES = { '4k': 4096, '64k': 65536, '1m': 1 << 20, '64m': 64 << 20, '512m': 512 << 20, '1g': 1 << 30 };
const CHANNELS = 100;
// The small object serialized by V8 is about this long; used only to size chunks and the window.
const SMALL_BYTES = 64;

function parseCase(name) {
  if (name === 'small' || name === 'pingpong' || name === 'idle') return { name, kind: name };
  const loaded = /^(small|pingpong)-load$/.exec(name || '');
  if (loaded) return { name, kind: loaded[1], load: true };
  const big = /^big-(64m|512m|1g)-(transfer|alloc)$/.exec(name || '');
  if (big) return { name, kind: 'large', size: SIZES[big[1]], mode: big[2] };
  if (name === 'channels') return { name, kind: 'channels', channels: CHANNELS };
  const match = /^u8-(4k|64k|1m)-(clone|transfer)$/.exec(name || '');
  if (match) return { name, kind: 'bytes', size: SIZES[match[1]], mode: match[2] };
  throw new Error(`unknown case ${name}`);
}

// Flow control for the pipelined cases: the receiver acknowledges every `ackEvery` messages and the
// sender keeps at most `window` unacknowledged, so that no transport buffers without bound (a 1 MiB
// case would otherwise queue hundreds of MiB in the sender). The window is 16 MiB of payload
// (at most 20,000 small messages), far more than any ring or socket buffer, so it only bites when the
// receiver really is behind. `chunk` messages are posted per event-loop turn.
function flowControl(kase) {
  const bytes = kase.kind === 'bytes' ? kase.size : SMALL_BYTES;
  const ackEvery = Math.max(1, Math.min(5000, Math.floor((4 << 20) / bytes)));
  return { ackEvery, window: 4 * ackEvery, chunk: Math.max(1, Math.min(1000, Math.floor((1 << 20) / bytes))) };
}

function smallMessage(id) {
  return { id, op: 'add', args: [1, 2, 3], tag: 'bench' };
}

/** null when `message` is the small object with this id, else what is wrong. */
function checkSmall(message, id) {
  if (
    message !== null &&
    typeof message === 'object' &&
    message.id === id &&
    message.op === 'add' &&
    message.tag === 'bench' &&
    Array.isArray(message.args) &&
    message.args.length === 3 &&
    message.args[0] === 1 &&
    message.args[1] === 2 &&
    message.args[2] === 3
  ) {
    return null;
  }
  return `expected small object #${id}, got ${describe(message)}`;
}

// A byte payload is filled with a byte derived from its id, and the id is stamped in its first four
// bytes (little-endian), so the receiver can check order and length, and the fill at a byte in every
// 4093 (a prime stride: every page, at shifting offsets) and at the last byte — cheap enough not to
// weigh on the figures, thorough enough that a lost or stale page cannot pass.
function fillByte(id) {
  return (id * 31 + 7) & 255;
}

function writeBytes(u8, id) {
  u8.fill(fillByte(id));
  u8[0] = id & 255;
  u8[1] = (id >>> 8) & 255;
  u8[2] = (id >>> 16) & 255;
  u8[3] = (id >>> 24) & 255;
}

/**
 * null when `u8` is the byte payload with this id and size, else what is wrong. Checked at its
 * stamp, its last byte and (by default) a byte in every 4093; `sampled`: at 64 places spread over
 * it instead (a large buffer's receiver must not touch every page: worker_threads' does not).
 */
function checkBytes(u8, id, size, sampled = false) {
  if (!(u8 instanceof Uint8Array)) return `expected a Uint8Array #${id}, got ${describe(u8)}`;
  if (u8.byteLength !== size) return `Uint8Array #${id} has ${u8.byteLength} bytes, expected ${size}`;
  const stamped = (u8[0] | (u8[1] << 8) | (u8[2] << 16) | (u8[3] << 24)) >>> 0;
  if (stamped !== id) return `expected Uint8Array #${id}, got #${stamped}`;
  const fill = fillByte(id);
  const stride = sampled ? Math.max(4093, Math.floor(size / 64)) : 4093;
  for (let at = 4; at < size; at += stride) {
    if (u8[at] !== fill) return `Uint8Array #${id}: byte ${at} is ${u8[at]}, expected ${fill}`;
  }
  if (u8[size - 1] !== fill) return `Uint8Array #${id}: last byte is ${u8[size - 1]}, expected ${fill}`;
  return null;
}

// child_process IPC with serialization 'json' cannot carry bytes (a Uint8Array would arrive as an
// object with one key per byte); the harness sends base64 text and the receiver decodes it, as a user
// of JSON IPC would.
function toBase64(u8) {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('base64');
}

function fromBase64(text) {
  return typeof text === 'string' ? Buffer.from(text, 'base64') : text;
}

function describe(value) {
  if (value instanceof Uint8Array) return `Uint8Array(${value.byteLength})`;
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text.length > 200 ? `${text.slice(0, 200)}…` : text;
  } catch {
    return String(value);
  }
}

module.exports = {
  CHANNELS,
  SIZES,
  parseCase,
  flowControl,
  smallMessage,
  checkSmall,
  writeBytes,
  checkBytes,
  toBase64,
  fromBase64,
  describe,
};
