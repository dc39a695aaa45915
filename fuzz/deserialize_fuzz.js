// Fuzzes what a receiving port does with the bytes of a message a peer wrote: the message head,
// sections and handles (PortHandle::Decode), and V8's ValueDeserializer with crossport's delegate
// (serializer.cc: host objects, views, views written by V8 inside them). V8 needs a live isolate,
// so this runs in Node, against the addon the tests use (scripts/fuzz.sh gives it the ASan +
// UBSan build).
//
// One process, synchronously: port1 of a channel posts a real message (values of every kind,
// ports, FileDescriptors, views over shared buffers, sections); before port2 reads it, bytes of
// its record in the shared segment are changed through a second mapping (test/fixtures/
// raw-link.js), as a peer could; then receiveMessageOnPort(port2) must return a message or throw
// what 'messageerror' would carry (an Error), never crash or hang. After each case a plain
// message must still arrive, and at the end no fd may be left open.
//
// Usage: node fuzz/deserialize_fuzz.js <seconds> [regressions dir] [--collect]
// Regressions (JSON {seed, payload}) run first; with --collect, the first case of each distinct
// outcome is written there. A crash or hang leaves the case in build/fuzz/deserialize-crash.json.
'use strict';
const childProcess = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const out = path.join(root, 'build', 'fuzz');
const current = path.join(out, 'deserialize-current.json');

if (process.argv[2] !== '--child') {
  // The supervisor: runs the fuzzer in a child and reports how it ended.
  fs.mkdirSync(out, { recursive: true });
  const child = childProcess.spawn(process.execPath, [__filename, '--child', ...process.argv.slice(2)], { stdio: 'inherit' });
  let lastChange = Date.now();
  let lastSize = -1;
  const watchdog = setInterval(() => {
    const size = fs.existsSync(current) ? fs.statSync(current).mtimeMs : 0;
    if (size !== lastSize) {
      lastSize = size;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > 20000) {
      console.error('deserialize fuzz: no progress for 20 s (a hang)');
      child.kill('SIGKILL');
    }
  }, 1000);
  child.on('exit', (code, signal) => {
    clearInterval(watchdog);
    if (code === 0) return;
    const crash = path.join(out, 'deserialize-crash.json');
    if (fs.existsSync(current)) fs.copyFileSync(current, crash);
    console.error(`deserialize fuzz: the receiver died (exit ${code}, ${signal}); the case is in ${path.relative(root, crash)}`);
    process.exit(1);
  });
  return;
}

const v8 = require('node:v8');
const vm = require('node:vm');
const { MessageChannel, MessagePort, FileDescriptor, receiveMessageOnPort } = require('../dist/index.js');
const { closeHandle, describeHandle } = require('../dist/handles.js');
const { RawLink, RecordType } = require('../test/fixtures/raw-link.js');
const values = require('../test/fixtures/values.js');

const [, , , secondsText, regressions, collectFlag] = process.argv;
const seconds = Number(secondsText ?? 30);
const collect = collectFlag === '--collect';
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const openFds = () => fs.readdirSync('/proc/self/fd').length;
const describeFds = () => fs.readdirSync('/proc/self/fd').map((fd) => {
  try {
    return `${fd} -> ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`;
  } catch {
    return `${fd} -> ?`;
  }
});

// The values posted, each with what its transfer list needs (made afresh for each case).
function seeds() {
  const list = values.map(([name, make]) => [name, () => ({ value: make(), transfer: [] })]);
  list.push(
    ['ports', () => {
      const channels = [new MessageChannel(), new MessageChannel()];
      const ports = channels.map((c) => c.port2);
      return { value: { ports, again: ports[0], list: [1, ports[1]] }, transfer: ports, close: channels.map((c) => c.port1) };
    }],
    ['file descriptors', () => {
      const fds = [new FileDescriptor(fs.openSync('/dev/null', 'r')), new FileDescriptor(fs.openSync('/dev/null', 'r'))];
      return { value: { fds, map: new Map([['fd', fds[0]]]) }, transfer: fds };
    }],
    ['transferred buffers', () => {
      const small = new Uint8Array([1, 2, 3]).buffer;
      const section = new Uint8Array(20000).fill(7).buffer;
      return { value: { small, section, view: new Uint16Array(section, 2, 10) }, transfer: [small, section] };
    }],
    ['sections and views', () => {
      const buffer = new ArrayBuffer(40000);
      return { value: [new Uint8Array(buffer), new Float64Array(buffer, 8, 100), new DataView(buffer, 5, 7), buffer, Buffer.alloc(17000, 3)], transfer: [] };
    }],
    ['views V8 writes itself', () => {
      const resizable = new ArrayBuffer(16, { maxByteLength: 64 });
      return { value: { tracking: new Uint8Array(resizable), fixed: new Int32Array(resizable, 4, 2), shared: new Uint8Array(new SharedArrayBuffer(4)) }, transfer: [] };
    }],
  );
  return list;
}
const seedList = seeds();
const seedByName = new Map(seedList);

let channel;
let raw;
function newChannel() {
  if (channel) {
    channel.port1.close();
    channel.port2.close();
  }
  channel = new MessageChannel();
  const [segment, socket] = require('../dist/port.js').handleOf(channel.port1).exportFds();
  if (raw) {
    fs.closeSync(raw.segmentFd);
    fs.closeSync(raw.socketFd);
  }
  raw = new RawLink(segment, socket, 0);
  rawIdentity = identity();
}

// Our fds must stay ours: a receiver that closes an fd twice can close one of them meanwhile.
let rawIdentity;
const identity = () => [raw.segmentFd, raw.socketFd].map((fd) => {
  const { dev, ino } = fs.fstatSync(fd);
  return `${dev}:${ino}`;
}).join(' ');

// Posts the seed on port1 and returns where its record's payload is in the segment (null when
// it did not go into the small ring as one record, e.g. a large message).
function post(seed) {
  const made = seed();
  const before = raw.writePos;
  channel.port1.postMessage(made.value, made.transfer);
  for (const port of made.close ?? []) port.close();
  const after = raw.writePos;
  let at = before % BigInt(raw.capacity);
  let header = readHeader(at);
  if (header.type === RecordType.padding) {
    at = 0n;
    header = readHeader(at);
  }
  // (kFds records go ahead of a record with many fds: skip them.)
  while (header.type === 6) {
    at += 8n;
    header = readHeader(at);
  }
  if (header.type !== RecordType.message || after === before) return null;
  return { offset: raw.data + Number(at) + 8, length: header.length };
}

function readHeader(at) {
  const bytes = Buffer.alloc(8);
  fs.readSync(raw.segmentFd, bytes, 0, 8, raw.data + Number(at));
  return { length: bytes.readUInt32LE(0), type: bytes.readUInt16LE(4), fdCount: bytes.readUInt16LE(6) };
}

// Closes the ports and OS handles a received value holds (wherever they are in it): changed
// bytes can turn one kind of handle into another.
function release(value, seen = new Set()) {
  if (typeof value !== 'object' || value === null || seen.has(value)) return;
  seen.add(value);
  if (value instanceof MessagePort) return value.close();
  if (isHandle(value)) return closeHandle(value);
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return;
  if (value instanceof Map) {
    for (const [key, entry] of value) {
      release(key, seen);
      release(entry, seen);
    }
    return;
  }
  if (value instanceof Set) {
    for (const entry of value) release(entry, seen);
    return;
  }
  for (const key of Reflect.ownKeys(value)) {
    const descriptor = Object.getOwnPropertyDescriptor(value, key);
    if (descriptor && 'value' in descriptor) release(descriptor.value, seen);
  }
}

function isHandle(value) {
  try {
    return describeHandle(value) !== undefined;
  } catch {
    return true;  // (a handle, but one that could not be sent: closed all the same)
  }
}

let random = Math.random;
const int = (n) => Math.floor(random() * n);
// Bytes V8's format gives meaning to (tags, varint edges), and sizes.
const interesting = [0, 1, 0x7f, 0x80, 0xff, 0x22, 0x27, 0x41, 0x42, 0x3d, 0x3f, 0x44, 0x49, 0x4e, 0x52,
  0x53, 0x5c, 0x5e, 0x61, 0x62, 0x6f, 0x72, 0x73, 0x7b, 0x7d, 0x24, 0x40, 0x3b, 0x3a, 0x56, 0x6d, 0x14, 0x0f];

// Changes `payload` in place (its length stays: the record's does).
function mutate(payload) {
  const head = 32;
  const bodyOffset = payload.length >= head ? payload.readUInt32LE(8) : 0;
  for (let n = 1 + int(6); n > 0; n--) {
    // Mostly V8's bytes; sometimes the head.
    const inBody = bodyOffset < payload.length && random() < 0.85;
    const at = inBody ? bodyOffset + int(payload.length - bodyOffset) : int(payload.length);
    switch (int(5)) {
      case 0: payload[at] ^= 1 << int(8); break;
      case 1: payload[at] = interesting[int(interesting.length)]; break;
      case 2: payload[at] = int(256); break;
      case 3: { // a run of bytes copied from elsewhere in the payload
        const from = int(payload.length);
        const length = Math.min(1 + int(16), payload.length - Math.max(at, from));
        payload.copy(payload, at, from, from + length);
        break;
      }
      case 4: { // a field of the head a little off
        if (payload.length < head) break;
        const field = [0, 4, 8, 12, 16, 24][int(6)];
        payload.writeUInt32LE((payload.readUInt32LE(field) + int(5) - 2) >>> 0, field);
        break;
      }
    }
  }
}

let lastCase = null;
// Runs one case: the seed posted, its payload replaced, the message read. Returns the outcome.
function runCase(name, payload) {
  const place = post(seedByName.get(name));
  if (place === null || place.length !== payload.length) {  // (another V8 wrote it)
    drain();
    return null;
  }
  const thisCase = { seed: name, payload: payload.toString('base64') };
  fs.writeFileSync(current, JSON.stringify({ ...thisCase, previous: lastCase }));
  lastCase = thisCase;
  fs.writeSync(raw.segmentFd, payload, 0, payload.length, place.offset);
  let outcome;
  try {
    const received = receiveMessageOnPort(channel.port2);
    outcome = received === undefined ? 'nothing' : `message ${typeof received.message} ${received.message?.constructor?.name}`;
    if (received !== undefined) release(received.message);
  } catch (error) {
    if (!(error instanceof Error) && !(error instanceof DOMException)) throw new Error(`threw a non-error: ${error}`);
    // (Messages that quote the value, as a bad regular expression's do, count as one.)
    outcome = `${error.name}: ${error.message.replace(/: .*/s, '')}`;
  }
  if (identity() !== rawIdentity) throw new Error(`an fd of ours was closed by the receiver (${outcome})`);
  // The channel goes on (unless the bytes broke the link itself: then a new one).
  channel.port1.postMessage('after');
  const after = receiveMessageOnPort(channel.port2);
  if (after?.message !== 'after') {
    if (after !== undefined) throw new Error(`the next message came out as ${String(after.message)}`);
    newChannel();
    outcome += ' (link closed)';
  }
  return outcome;
}

// Reads what waits on port2.
function drain() {
  for (;;) {
    try {
      const received = receiveMessageOnPort(channel.port2);
      if (received === undefined) return;
      release(received.message);
    } catch {
      // (an unchanged message that gives 'messageerror': a SharedArrayBuffer)
    }
  }
}

function original(name) {
  const place = post(seedByName.get(name));
  if (place === null) {
    drain();
    return null;
  }
  const payload = Buffer.alloc(place.length);
  fs.readSync(raw.segmentFd, payload, 0, payload.length, place.offset);
  try {
    const received = receiveMessageOnPort(channel.port2);
    if (received !== undefined) release(received.message);
  } catch {
    // (a SharedArrayBuffer: 'messageerror' even unchanged)
  }
  return payload;
}

async function main() {
// FileHandles: a message holding one waits until lib/ has learned to make them (asynchronously);
// learn it now, so that every case is decided synchronously.
const fileHandle = await fs.promises.open('/dev/null', 'r');
describeHandle(fileHandle);  // (lib/ learns the FileHandle class from the first one it meets)
await fileHandle.close();
newChannel();
// Each seed once, unchanged (their bytes are what the cases change); this also warms up
// whatever Node opens lazily, before the fds are counted.
const originals = seedList.map(([name]) => [name, original(name)]).filter(([, payload]) => payload !== null);
await new Promise((resolve) => setTimeout(resolve, 200));  // (ports and handles close asynchronously)
// (Node opens a /dev/null of its own the first time it writes to a piped stdout: do that first.)
console.log(`deserialize fuzz: ${originals.length} seeds`);
const fdsBefore = openFds();
const fdListBefore = describeFds();
const outcomes = new Map();
let cases = 0;
if (regressions && fs.existsSync(regressions)) {
  for (const file of fs.readdirSync(regressions).filter((f) => f.endsWith('.json')).sort()) {
    const { seed, payload } = JSON.parse(fs.readFileSync(path.join(regressions, file), 'utf8'));
    if (!seedByName.has(seed)) continue;
    const outcome = runCase(seed, Buffer.from(payload, 'base64'));
    if (outcome !== null) cases++;
    if (outcome !== null) outcomes.set(outcome, file);
  }
  console.log(`deserialize fuzz: ${cases} regression cases passed`);
}
const until = Date.now() + seconds * 1000;
let collected = 0;
while (Date.now() < until) {
  for (let i = 0; i < 200; i++) {
    const [name, payload] = originals[int(originals.length)];
    const mutated = Buffer.from(payload);
    mutate(mutated);
    const outcome = runCase(name, mutated);
    if (outcome === null) continue;
    cases++;
    if (!outcomes.has(outcome)) {
      outcomes.set(outcome, name);
      if (collect && regressions) {
        fs.mkdirSync(regressions, { recursive: true });
        const file = path.join(regressions, `${String(outcomes.size).padStart(3, '0')}.json`);
        fs.writeFileSync(file, `${JSON.stringify({ seed: name, outcome, payload: mutated.toString('base64') })}\n`);
        collected++;
      }
    }
  }
  gc();
  // (Closed ports and handles let go of their fds on a later turn of the loop.)
  await new Promise((resolve) => setImmediate(resolve));
}
channel.port1.close();
channel.port2.close();
fs.closeSync(raw.segmentFd);
fs.closeSync(raw.socketFd);
// Sockets, FileHandles and ports close asynchronously: what is still open after a second of
// turns of the loop was left open.
let leaked = 0;
for (let wait = 0; wait < 10; wait++) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  gc();
  leaked = openFds() - (fdsBefore - 6);
  if (leaked <= 0) break;
}
console.log(`deserialize fuzz: ${cases} cases in ${seconds} s, ${outcomes.size} distinct outcomes` +
  `${collect ? `, ${collected} collected` : ''}, fds left open: ${Math.max(leaked, 0)}`);
fs.rmSync(current, { force: true });
if (leaked > 0) {
  console.error('deserialize fuzz: fds were left open; before:', fdListBefore.join(', '), '\nafter:', describeFds().join(', '));
  process.exit(1);
}
}
main();
