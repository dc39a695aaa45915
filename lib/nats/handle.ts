// NatsPortHandle: a PortHandle (lib/native.ts) whose channel end is a pair of NATS subjects, so
// that the MessagePort facade (lib/port.ts), its events and its errors are the same for a remote
// port as for a local one. It reproduces what the addon's handle does for lib (native/port.cc):
// delivery in batches through the same hooks, start/stop, ref/unref, the owner hold, 'close'
// after everything posted before it, 'drain'.
//
// The wire (frame.ts): each direction numbers its ordered frames from 1. The receiver accepts
// frames in that order only: an earlier number (a duplicate or a replay) is dropped, a later one
// waits in a bounded reorder buffer for the frames before it. A gap that stays open for
// `timeoutMs` (messages lost: a server restart, a slow consumer cut off) is never silent: the port
// gets 'messageerror' with ERR_CROSSPORT_NATS_MESSAGES_LOST, then 'close', and so does its peer.
// Heartbeats go out on a port that sent nothing for `heartbeatMs`; a port that heard nothing
// from its peer for `timeoutMs` closes.
//
// A transferred remote port moves (moveOut / adopt): its new owner subscribes a new subject and
// says so to the old owner (Ready); the old owner then tells the peer (Moved, in its sequence),
// forwards what it still receives on the old subject to the new one, and stops when the peer
// answers (MoveAck): traffic then goes directly between the peer and the new owner.
import { dataCloneError, nodeError } from '../errors';
import { native, type PortHandle } from '../native';
import { createPort, handOffBridged, portHooks, type MessagePort } from '../port';
import {
  bodyLength, bodyOf, bodyText, controlFrame, FrameType, isOrdered, kFirstHeaderSize, kHasExtras, kHeaderSize,
  kPacked, parseFrame, writeHeader, type Frame,
} from './frame';
import { decodeMessage, encodeExtras, type PortDescriptor } from './message';
import { newToken, tickMsOf, type Session, type Settings, type Ticked } from './session';

const enum State {
  Open,
  /** Transferred: waiting for the new owner's Ready, holding what arrives. */
  Moving,
  /** Forwarding what arrives to the new owner until the peer's MoveAck. */
  Forwarding,
  Closed,
}

type Entry =
  | Frame  // a message in one frame
  | { kind: 'message'; frames: Frame[]; total: number }
  | { kind: 'close'; frame?: Frame }
  | { kind: 'error'; error: unknown; frames: Frame[] };

// Messages delivered per turn of the event loop before other I/O gets a chance (as native/port.cc).
const kDispatchBatch = 1000;
// How far ahead of the next expected frame a frame may be and still wait for the ones before it.
const kReorderWindow = 1 << 16;
const kMaxReorderBytes = 64 * 1024 * 1024;

function forged(): Error {
  return nodeError(Error, 'ERR_CROSSPORT_NATS_FORGED',
    'A frame in the peer\'s name did not come from the peer (two different frames with one sequence number); the port is closed');
}

/**
 * Fingerprints of the last frames taken (length and FNV-1a of the first 256 bytes), to tell a
 * replay (the same frame again: ignored) from a forgery (another frame under a number taken).
 */
class RecentFrames {
  static readonly kSize = 256;
  // Per slot: the sequence number, the length, the fingerprint (6 KiB per port).
  readonly #slots = new Float64Array(RecentFrames.kSize * 3);

  note(frame: Frame): void {
    const at = (frame.seq % RecentFrames.kSize) * 3;
    this.#slots[at] = frame.seq;
    this.#slots[at + 1] = frame.raw.byteLength;
    this.#slots[at + 2] = fingerprint(frame.raw);
  }

  differs(frame: Frame): boolean {
    const at = (frame.seq % RecentFrames.kSize) * 3;
    if (this.#slots[at] !== frame.seq) return false;  // too old to tell: ignored
    return this.#slots[at + 1] !== frame.raw.byteLength || this.#slots[at + 2] !== fingerprint(frame.raw);
  }
}

function fingerprint(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  const end = Math.min(bytes.byteLength, 256);
  for (let i = 0; i < end; i++) hash = Math.imul(hash ^ bytes[i], 0x01000193);
  return hash >>> 0;
}

const kNone: never[] = [];

// Small messages are serialized into slabs of this size, each used once, one after the other:
// the NATS client keeps a view of what it was given until it has written it out (or, while
// disconnected, until it reconnects), so a slab is never reused. Each message is written as a
// whole frame, its header in front; the frames one port posts one after the other in a slab go
// out as one NATS message (see #pack).
const kSlabSize = 64 * 1024;
const kSlabMin = 4096;
let slab = Buffer.allocUnsafeSlow(0);
let slabUsed = 0;
function newSlab(): void {
  slab = Buffer.allocUnsafeSlow(kSlabSize);
  slabUsed = 0;
}

// While remote ports deliver a batch of messages (one task), what ports post is published when the
// batch is done, not at each microtask checkpoint between two messages: as the NATS client, which
// writes what its subscriptions' callbacks published once their whole batch is done. Answers to a
// batch of requests then go out together.
let delivering = 0;
let flushAfterDelivery: NatsPortHandle[] = [];

const ownerRegistry = new FinalizationRegistry<NatsPortHandle>((handle) => handle.collected());

function unreadable(): DOMException {
  return dataCloneError('Unable to deserialize cloned data.');
}

/** The subject's prefix: everything before its last token. */
function prefixOf(subject: string): string {
  return subject.slice(0, subject.lastIndexOf('.'));
}

export interface EndpointInit {
  /** The port's timing and limits (its listen()/connect() options'). */
  settings: Settings;
  inbox: string;
  /** null: not known yet (connect() before the listener answered); frames wait for it. */
  peer: string | null;
  nextOut: number;
  nextIn: number;
}

export class NatsPortHandle implements PortHandle, Ticked {
  readonly session: Session;
  readonly settings: Settings;
  readonly tickMs: number;
  #state = State.Open;
  #inbox: string;
  #subscription: { unsubscribe(): void } | undefined;
  #peer: string | null;
  #waiting: Uint8Array[] = [];  // frames posted before the peer was known
  // Packed frames not yet published: slab[#packStart, #packEnd) of #packSlab (see #pack).
  #packSlab: Buffer | undefined;
  #packStart = 0;
  #packEnd = 0;
  #flushQueued = false;
  #nextOut: number;
  #nextIn: number;
  // Received, accepted in order, not yet delivered (a deque: #queue[#head] is next).
  #queue: Entry[] = [];
  #head = 0;
  #reorder = new Map<number, Frame>();
  #reorderBytes = 0;
  #recent = new RecentFrames();
  #assembling: { frames: Frame[]; got: number; total: number; chunks: number } | undefined;
  #discarding = false;  // dropping the rest of a message that failed
  #inputEnded = false;
  #lastHeard = Date.now();
  #lastSent = Date.now();
  #peerLastSent = 0;
  #stalledSince = 0;
  #started = false;
  #refed = false;
  #watched = false;
  #drainListened = false;
  #holdingLoop = false;  // see #updateLoopHold
  #drainAtEnd = false;
  #released = false;
  #owner: WeakRef<object> | undefined;
  #heldOwner: object | undefined;
  #pendingClose = false;
  #closeEmitted = false;
  #pendingDrain = false;
  #immediate: NodeJS.Immediate | undefined;
  #budget = 0;
  /** What this end published in the session's current epoch (Session.publish keeps them). */
  epoch = -1;
  held = 0;
  // While moving / forwarding.
  #movedTo = '';
  #movedSeq = 0;
  #backlog: Uint8Array[] = [];
  #movedAt = 0;

  constructor(session: Session, init: EndpointInit) {
    this.session = session;
    this.settings = init.settings;
    this.tickMs = tickMsOf(init.settings);
    this.#inbox = init.inbox;
    this.#peer = init.peer;
    this.#nextOut = init.nextOut;
    this.#nextIn = init.nextIn;
    session.retain(this);
    this.#subscription = session.subscribe(this.#inbox, (data) => this.#onData(data));
  }

  get inbox(): string {
    return this.#inbox;
  }

  /** The listener answered connect(): frames can go out. */
  setPeer(peer: string): void {
    this.#peer = peer;
    this.#lastHeard = Date.now();
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const frame of waiting) this.session.publish(peer, frame, this);
  }

  // --- PortHandle -----------------------------------------------------------------------------

  setOwner(port: object): void {
    // A new owner (a bridge's relay takes over a port) is held, or not, afresh.
    if (this.#owner !== undefined) ownerRegistry.unregister(this);
    this.#owner = new WeakRef(port);
    this.#heldOwner = undefined;
    ownerRegistry.register(port, this, this);
    this.#updateHold();
  }

  post(value: unknown, objects?: object[], ports?: PortHandle[], handles?: number[], detach?: ArrayBuffer[]): boolean {
    if (this.#state !== State.Open) return false;
    if (handles !== undefined && handles.length > 0) {
      throw dataCloneError('An OS handle cannot be sent to another host');
    }
    const moved = (ports ?? kNone) as NatsPortHandle[];
    if (slab.byteLength - slabUsed < kSlabMin) newSlab();
    const at = slabUsed;
    const serialized = native.serializeToBytes(value, objects ?? kNone, detach ?? kNone, detach ?? kNone, kHeaderSize,
      slab, at);
    if (typeof serialized === 'number') {
      // Small and without sections: written into the slab, header room first.
      slabUsed += serialized;
      if (moved.length === 0 && serialized <= this.session.maxPayload) {
        this.#pack(at, serialized);
        return true;
      }
      return this.#sendWithExtras([slab.subarray(at, at + serialized)], moved);
    }
    return this.#sendWithExtras(serialized, moved);
  }

  /**
   * Sends the frame of a small message written at `at` in the slab: it joins the frames this port
   * wrote just before it, if nothing else was written between, and they go out as one NATS
   * message at the next microtask checkpoint (or, while remote ports deliver a batch, once the
   * batch is done) — as the NATS client writes what it was given, so that a lone message waits no
   * longer than it did before. Each packed frame has its own sequence number; together they never
   * exceed the server's max_payload.
   */
  #pack(at: number, length: number): void {
    writeHeader(slab, at, FrameType.Data, this.#nextOut++, kPacked, length - kHeaderSize);
    if (this.#packSlab === slab && this.#packEnd === at && at + length - this.#packStart <= this.session.maxPayload) {
      this.#packEnd = at + length;
      return;
    }
    this.#flushPacked();
    this.#packSlab = slab;
    this.#packStart = at;
    this.#packEnd = at + length;
    this.#scheduleFlush();
    if (this.#drainListened && !this.#holdingLoop) this.#updateLoopHold();
  }

  #scheduleFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    if (delivering > 0) flushAfterDelivery.push(this);
    else queueMicrotask(this.#flushBound);
  }

  readonly #flushBound = () => this.flushQueued();

  /** The flush #scheduleFlush asked for. */
  flushQueued(): void {
    this.#flushQueued = false;
    this.#flushPacked();
  }

  /** Publishes the packed frames not yet published (before any later frame of this port). */
  #flushPacked(): void {
    const packed = this.#packSlab;
    if (packed === undefined) return;
    this.#packSlab = undefined;
    this.#send(packed.subarray(this.#packStart, this.#packEnd));
  }

  #sendWithExtras([bytes, ...sections]: Buffer[], moved: NatsPortHandle[]): true {
    if (moved.length === 0 && sections.length === 0) {
      this.#sendMessage(bytes, 0);
      return true;
    }
    // Nothing can fail from here: the serializer accepted the value and detached the buffers.
    const extras = encodeExtras({
      ports: moved.map((handle) => handle.moveOut()),
      sections: sections.map((section) => section.byteLength),
    });
    this.#sendMessage(Buffer.concat([bytes, ...sections, extras]), kHasExtras);
    return true;
  }

  receive(): unknown {
    if (this.#state !== State.Open) return portHooks.empty;
    const entry = this.#peek();
    if (entry === undefined) return portHooks.empty;
    if (entry.kind === 'close') {
      this.#finish();
      return portHooks.empty;
    }
    this.#head++;
    if (entry.kind === 'error') throw entry.error;
    const { data, error } = this.#decode(entry);
    if (error !== undefined) throw error;
    return data;
  }

  next(): unknown {
    if (this.#state !== State.Open || !this.#started || this.#budget <= 0) return portHooks.empty;
    const entry = this.#peek();
    if (entry === undefined) return portHooks.empty;
    if (entry.kind === 'close') {
      this.#finish();
      return portHooks.empty;
    }
    this.#budget--;
    this.#head++;
    const owner = this.#ownerObject();
    if (entry.kind === 'error') {
      if (owner !== undefined) portHooks.messageerror(owner, entry.error);
      return portHooks.handled;
    }
    if (entry.kind === 'frame' && (entry.flags & kHasExtras) === 0) {
      // The common case: a message in one frame, with no ports or sections.
      try {
        return native.deserializeFromBytes(entry.raw, kNone, kNone, entry.offset);
      } catch (error) {
        if (owner !== undefined) portHooks.messageerror(owner, error);
        return portHooks.handled;
      }
    }
    const { data, ports, error } = this.#decode(entry);
    if (error !== undefined) {
      if (owner !== undefined) portHooks.messageerror(owner, error);
      return portHooks.handled;
    }
    if (ports === undefined) return data;
    if (owner !== undefined) portHooks.message(owner, data, ports);
    return portHooks.handled;
  }

  start(): void {
    this.#setStarted(true);
  }

  stop(): void {
    this.#setStarted(false);
  }

  watch(listened: boolean, drainListened: boolean): void {
    this.#watched = listened;
    this.#drainListened = drainListened;
    this.#updateHold();
    // A listener that comes after the bytes were published ('drain' awaited once bufferedAmount
    // is over a limit) is told too.
    if (drainListened && this.#state === State.Open && this.bufferedAmount() > 0) this.session.awaitDrain(this);
    this.#updateLoopHold();
  }

  ref(): void {
    if (this.#state !== State.Open || this.#refed) return;
    this.#refed = true;
    this.session.ref();
  }

  unref(): void {
    if (!this.#refed) return;
    this.#refed = false;
    this.session.unref();
  }

  hasRef(): boolean {
    return this.#refed;
  }

  bufferedAmount(): number {
    if (this.#state !== State.Open) return 0;
    const packed = this.#packSlab === undefined ? 0 : this.#packEnd - this.#packStart;
    return this.session.heldBy(this) + packed;
  }

  close(): void {
    if (this.#state !== State.Open) return;
    // Behind every message posted before it (one publisher, one subject: NATS keeps the order).
    this.#sendControl(FrameType.Close);
    this.#finish();
  }

  exportFds(): [number, number, number] {
    throw nodeError(Error, 'ERR_CROSSPORT_REMOTE_PORT', 'A remote port has no file descriptors');
  }

  dispose(): void {
    this.#packSlab = undefined;
    if (this.#state === State.Open) this.#end(false);
  }

  // A thread of this process has no NATS connection of its own: it gets a local channel, which
  // this thread relays to the remote port (lib/bridge.ts), as for a port posted to a local child.
  handOff(): number {
    const owner = this.#ownerObject();
    if (this.#state !== State.Open || owner === undefined) throw new Error('The port is closed');
    return handOffBridged(owner as MessagePort);
  }

  // A remote port moves over this carrier when its new owner can reach its subjects: both use
  // one connection, or connections to one server (the same account assumed: see docs/nats.md).
  // Others are bridged (lib/bridge.ts).
  canCarry(handle: PortHandle): boolean {
    if (!(handle instanceof NatsPortHandle)) return false;
    if (handle.session === this.session) return true;
    const mine = this.session.nc.info?.server_id;
    return mine !== undefined && mine === handle.session.nc.info?.server_id;
  }

  createChannel(): [PortHandle, PortHandle] {
    const prefix = prefixOf(this.#inbox);
    const first = `${prefix}.${newToken()}`;
    const second = `${prefix}.${newToken()}`;
    const { settings } = this;
    return [
      new NatsPortHandle(this.session, { settings, inbox: first, peer: second, nextOut: 1, nextIn: 1 }),
      new NatsPortHandle(this.session, { settings, inbox: second, peer: first, nextOut: 1, nextIn: 1 }),
    ];
  }

  /** For a relay: the peer gets 'messageerror' where a message could not be read here. */
  postUndeliverable(): void {
    if (this.#state === State.Open) this.#sendControl(FrameType.Undeliverable);
  }

  /** Frames the old owner received but did not deliver (checked as any frame is). */
  takeQueued(queued: string[]): void {
    for (const text of queued) {
      const frame = parseFrame(Buffer.from(text, 'base64'));
      if (frame !== undefined && isOrdered(frame.type)) this.#accept(frame);
    }
    this.#received();
  }

  // --- Sending --------------------------------------------------------------------------------

  /** `bytes` has kHeaderSize bytes of room at its start. */
  #sendMessage(bytes: Buffer, flags: number): void {
    const max = this.session.maxPayload;
    if (bytes.byteLength <= max) {
      this.#flushPacked();
      writeHeader(bytes, 0, FrameType.Data, this.#nextOut++, flags);
      this.#send(bytes);
      return;
    }
    // Larger than the server takes: chunks, each a frame of its own.
    const message = bytes.subarray(kHeaderSize);
    const part = max - kFirstHeaderSize;
    const chunks = Math.ceil(message.byteLength / part);
    this.#flushPacked();
    for (let i = 0; i < chunks; i++) {
      const piece = message.subarray(i * part, (i + 1) * part);
      const header = i === 0 ? kFirstHeaderSize : kHeaderSize;
      const frame = Buffer.allocUnsafe(header + piece.byteLength);
      writeHeader(frame, 0, i === 0 ? FrameType.First : FrameType.More, this.#nextOut++, flags, i === 0 ? chunks : 0,
        message.byteLength);
      frame.set(piece, header);
      this.#send(frame);
    }
  }

  /** Sends a control frame with the next number (after the frames that have theirs already). */
  #sendControl(type: FrameType, text?: string): void {
    this.#flushPacked();
    this.#send(controlFrame(type, this.#nextOut++, text));
  }

  /** Publishes frames whose numbers were taken in order (packed ones are published first). */
  #send(frames: Uint8Array): void {
    this.#lastSent = Date.now();
    if (this.#peer === null) {
      this.#waiting.push(frames);
    } else {
      this.session.publish(this.#peer, frames, this);
    }
    if (this.#drainListened && !this.#holdingLoop) this.#updateLoopHold();
  }

  wantsDrain(): boolean {
    return this.#drainListened;
  }

  /** Called by the session: the client holds nothing this port published any more. */
  drained(): void {
    if (this.#state === State.Open && this.#drainListened) {
      this.#pendingDrain = true;
      this.#schedule();
    }
  }

  // --- Receiving ------------------------------------------------------------------------------

  #onData(data: Uint8Array): void {
    const now = Date.now();
    for (let at = 0; at < data.byteLength;) {
      const frame = parseFrame(data, at);
      if (frame === undefined) break;  // not ours: ignored, and what follows it too
      at += frame.raw.byteLength;
      this.#onFrame(frame, now);
    }
    this.#received();
  }

  #onFrame(frame: Frame, now: number): void {
    if (this.#state === State.Moving || this.#state === State.Forwarding) return this.#forward(frame);
    if (this.#state !== State.Open || this.#inputEnded) return;
    if (frame.type === FrameType.Ready) return;  // only a moving port waits for one
    this.#lastHeard = now;
    if (frame.type === FrameType.Heartbeat) {
      if (frame.seq < this.#nextIn + kReorderWindow) this.#peerLastSent = Math.max(this.#peerLastSent, frame.seq);
      return;
    }
    if (frame.seq < this.#nextIn) {
      // A replay, or a frame taken before: ignored. A different frame under a number already
      // taken means someone else used the peer's numbers (a publisher that is not the peer):
      // what we delivered cannot be trusted, and the peer's frames would be dropped from here.
      if (this.#recent.differs(frame)) this.#endInput(forged());
      return;
    }
    if (frame.seq > this.#nextIn) {
      if (this.#reorder.has(frame.seq)) return;
      if (frame.seq - this.#nextIn >= kReorderWindow || this.#reorderBytes + frame.raw.byteLength > kMaxReorderBytes) return;
      this.#reorder.set(frame.seq, frame);
      this.#reorderBytes += frame.raw.byteLength;
      return;
    }
    this.#recent.note(frame);
    this.#accept(frame);
    this.#nextIn++;
    // (The reorder buffer holds only numbers after the next one.)
    while (this.#reorder.size > 0) {
      const next = this.#reorder.get(this.#nextIn);
      if (next === undefined) break;
      this.#reorder.delete(this.#nextIn);
      this.#reorderBytes -= next.raw.byteLength;
      this.#recent.note(next);
      this.#accept(next);
      this.#nextIn++;
    }
    this.#stalledSince = 0;
  }

  /** Takes the next frame in order (checked against the limits before anything is kept). */
  #accept(frame: Frame): void {
    const type = frame.type;
    if (this.#discarding && type !== FrameType.More) this.#discarding = false;
    if (this.#assembling !== undefined && type !== FrameType.More) {
      // A message's chunks were cut short by another frame.
      this.#push({ kind: 'error', error: unreadable(), frames: this.#assembling.frames });
      this.#assembling = undefined;
    }
    switch (type) {
      case FrameType.Data:
        this.#push(bodyLength(frame) > this.settings.maxMessageSize ? { kind: 'error', error: unreadable(), frames: [frame] } : frame);
        return;
      case FrameType.First: {
        const { chunks, total } = frame;
        if (total > this.settings.maxMessageSize || chunks < 2 || chunks > total ||
            bodyLength(frame) > total) {
          this.#push({ kind: 'error', error: unreadable(), frames: [frame] });
          this.#discarding = true;
          return;
        }
        this.#assembling = { frames: [frame], got: bodyLength(frame), total, chunks };
        return;
      }
      case FrameType.More: {
        const assembling = this.#assembling;
        if (assembling === undefined) {
          if (!this.#discarding) this.#push({ kind: 'error', error: unreadable(), frames: [frame] });
          this.#discarding = true;
          return;
        }
        assembling.frames.push(frame);
        assembling.got += bodyLength(frame);
        const complete = assembling.frames.length === assembling.chunks;
        if (assembling.got > assembling.total || (complete && assembling.got !== assembling.total)) {
          this.#push({ kind: 'error', error: unreadable(), frames: assembling.frames });
          this.#assembling = undefined;
          this.#discarding = !complete;
        } else if (complete) {
          this.#push({ kind: 'message', frames: assembling.frames, total: assembling.total });
          this.#assembling = undefined;
        }
        return;
      }
      case FrameType.Close:
        this.#push({ kind: 'close', frame });
        this.#inputEnded = true;
        this.#unsubscribe();
        // Answered, so that a close forged in the peer's name ends the peer's end too.
        if (this.#peer !== null) this.#sendControl(FrameType.Close);
        return;
      case FrameType.Undeliverable:
        this.#push({ kind: 'error', error: unreadable(), frames: [frame] });
        return;
      case FrameType.Moved: {
        const to = bodyText(frame);
        if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(to) || this.#peer === null) return;
        const from = this.#peer;
        this.#flushPacked();  // what this end posted so far goes where it was posted to
        this.#peer = to;
        // Nothing more goes to the old subject: its forwarder may stop after this.
        this.session.publish(from, controlFrame(FrameType.MoveAck, this.#nextOut++, from), this);
        return;
      }
      case FrameType.MoveAck:
        return;  // for a forwarder; here a late one, already done with
    }
  }

  #push(entry: Entry): void {
    this.#queue.push(entry);
  }

  #peek(): Entry | undefined {
    if (this.#head >= this.#queue.length) {
      if (this.#head > 0) {
        this.#queue = [];
        this.#head = 0;
      }
      return undefined;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return this.#queue[this.#head];
  }

  /** New entries may wait: deliver them (or, stopped, see whether a close is all that waits). */
  #received(): void {
    if (this.#peek() !== undefined) this.#schedule();
  }

  #decode(entry: Frame | { frames: Frame[]; total: number }): { data?: unknown; ports?: object[]; error?: unknown } {
    const first = 'frames' in entry ? entry.frames[0] : entry;
    if ((first.flags & kHasExtras) === 0 && first === entry) {
      try {
        return { data: native.deserializeFromBytes(first.raw, kNone, kNone, first.offset) };
      } catch (error) {
        return { error };
      }
    }
    const bytes = 'frames' in entry ? Buffer.concat(entry.frames.map(bodyOf), entry.total) : bodyOf(entry);
    if ((first.flags & kHasExtras) === 0) {
      try {
        return { data: native.deserializeFromBytes(bytes, kNone, kNone) };
      } catch (error) {
        return { error };
      }
    }
    const message = decodeMessage(bytes);
    if (message === undefined) return { error: unreadable() };
    const sections = message.sections.map((section) => {
      const buffer = Buffer.allocUnsafeSlow(section.byteLength);
      buffer.set(section);
      return buffer.buffer as ArrayBuffer;
    });
    const handles: NatsPortHandle[] = [];
    const ports: object[] = [];
    for (const descriptor of message.ports) {
      const handle = adopt(this.session, this.settings, descriptor);
      handles.push(handle);
      ports.push(createPort(handle));
    }
    try {
      const data = native.deserializeFromBytes(message.body, ports, sections);
      return { data, ports: ports.length > 0 ? ports : undefined };
    } catch (error) {
      // Nobody will see these ports: close them, so their peers learn it at once.
      for (const handle of handles) handle.close();
      return { error };
    }
  }

  // --- Moving ---------------------------------------------------------------------------------

  /** Transfers this end: the descriptor its new owner adopts. The port here is neutered. */
  moveOut(): PortDescriptor {
    this.#flushPacked();  // what it posted goes before its Moved
    const queued: string[] = [];
    for (let i = this.#head; i < this.#queue.length; i++) {
      const entry = this.#queue[i];
      if (entry.kind === 'frame') {
        queued.push(Buffer.from(entry.raw).toString('base64'));
      } else if (entry.kind === 'close') {
        if (entry.frame) queued.push(Buffer.from(entry.frame.raw).toString('base64'));
      } else {
        for (const frame of entry.frames) queued.push(Buffer.from(frame.raw).toString('base64'));
      }
    }
    for (const frame of this.#assembling?.frames ?? []) queued.push(Buffer.from(frame.raw).toString('base64'));
    const descriptor: PortDescriptor = {
      inbox: `${prefixOf(this.#inbox)}.${newToken()}`,
      peer: this.#peer!,
      ready: this.#inbox,
      out: this.#nextOut + 1,
      in: this.#nextIn,
      queued,
    };
    this.#movedSeq = this.#nextOut++;
    this.#movedTo = descriptor.inbox;
    this.#movedAt = Date.now();
    this.#backlog = [...this.#reorder.keys()].sort((a, b) => a - b).map((seq) => this.#reorder.get(seq)!.raw);
    this.#reorder.clear();
    this.#queue = [];
    this.#head = 0;
    this.#assembling = undefined;
    this.#end(true, State.Moving);
    return descriptor;
  }

  #forward(frame: Frame): void {
    this.#lastHeard = Date.now();
    if (this.#state === State.Moving) {
      if (frame.type === FrameType.Ready && bodyText(frame) === this.#movedTo) {
        // The new owner listens: tell the peer, and pass on what waited.
        this.session.publish(this.#peer!, controlFrame(FrameType.Moved, this.#movedSeq, this.#movedTo));
        this.#state = State.Forwarding;
        for (const raw of this.#backlog) this.session.publish(this.#movedTo, raw);
        this.#backlog = [];
      } else if (frame.type !== FrameType.Ready) {
        this.#backlog.push(Buffer.from(frame.raw));
      }
      return;
    }
    if (frame.type === FrameType.Ready) return;
    this.session.publish(this.#movedTo, frame.raw);
    if (frame.type === FrameType.MoveAck && bodyText(frame) === this.#inbox) {
      this.#release();  // the peer sends nothing more here
    }
  }

  /** Done with the session: unsubscribed, no longer ticked, the session's user count down. */
  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#state = State.Closed;
    this.#unsubscribe();
    this.session.release(this);
  }

  // --- Liveness (called by the session's timer) -------------------------------------------------

  tick(now: number): void {
    const { heartbeatMs, timeoutMs } = this.settings;
    if (this.#state === State.Moving || this.#state === State.Forwarding) {
      // The new owner never answered (it or its process is gone), or the peer went quiet: stop.
      if (now - Math.max(this.#movedAt, this.#lastHeard) > timeoutMs) {
        if (this.#state === State.Moving && this.#peer !== null) {
          this.session.publish(this.#peer, controlFrame(FrameType.Close, this.#movedSeq));
        }
        this.#release();
      }
      return;
    }
    if (this.#state !== State.Open || this.#inputEnded) return;
    if (this.#peer !== null && now - this.#lastSent >= heartbeatMs) {
      this.#flushPacked();
      this.#lastSent = now;
      this.session.publish(this.#peer, controlFrame(FrameType.Heartbeat, this.#nextOut - 1));
    }
    if (now - this.#lastHeard > timeoutMs) {
      // The peer's process is gone, or the network between us is.
      this.#endInput(undefined);
      return;
    }
    const stalled = this.#reorder.size > 0 || this.#peerLastSent >= this.#nextIn;
    if (!stalled) {
      this.#stalledSince = 0;
    } else if (this.#stalledSince === 0) {
      this.#stalledSince = now;
    } else if (now - this.#stalledSince > timeoutMs) {
      const lost = nodeError(Error, 'ERR_CROSSPORT_NATS_MESSAGES_LOST',
        `Messages from the peer were lost (frame ${this.#nextIn} never arrived; the peer had sent up to ` +
          `${Math.max(this.#peerLastSent, ...this.#reorder.keys())}); the port is closed`);
      this.#endInput(lost);
    }
  }

  farewell(): void {
    if (this.#state === State.Open && !this.#inputEnded && this.#peer !== null) {
      this.#sendControl(FrameType.Close);
    }
  }

  connectionClosed(): void {
    if (this.#state === State.Open) {
      this.#endInput(undefined);
    } else {
      this.#release();
    }
  }

  /** No more input: what was received is delivered, then (after `error`, if any) 'close'. */
  #endInput(error: unknown): void {
    if (this.#inputEnded) return;
    if (this.#peer !== null) this.#sendControl(FrameType.Close);
    if (error !== undefined) this.#push({ kind: 'error', error, frames: [] });
    this.#push({ kind: 'close' });
    this.#inputEnded = true;
    this.#unsubscribe();
    this.#received();
  }

  // --- Delivery -------------------------------------------------------------------------------

  #setStarted(started: boolean): void {
    if (this.#started === started || this.#state !== State.Open) return;
    this.#started = started;
    this.#updateHold();
    this.#schedule();
  }

  #schedule(): void {
    // A pending 'close' keeps the process alive until it is emitted; a dispatch only while the
    // port itself is referenced.
    const keepAlive = this.#pendingClose || this.#refed;
    if (this.#immediate === undefined) {
      this.#immediate = setImmediate(this.#runBound);
      if (!keepAlive) this.#immediate.unref();
    } else if (keepAlive !== this.#immediate.hasRef()) {
      if (keepAlive) this.#immediate.ref();
      else this.#immediate.unref();
    }
  }

  readonly #runBound = () => this.#run();

  #run(): void {
    this.#immediate = undefined;
    if (this.#state === State.Open) {
      if (this.#started) this.#dispatch();
      else if (this.#peek()?.kind === 'close') this.#finish();  // nothing waits before the close
    }
    if (this.#pendingDrain) {
      this.#pendingDrain = false;
      this.#updateLoopHold();
      const owner = this.#ownerObject();
      if (this.#state === State.Open && owner !== undefined) portHooks.drain(owner);
    }
    if (this.#pendingClose && this.#immediate === undefined) {
      const owner = this.#ownerObject();
      if (this.#drainAtEnd) {
        // What it held is gone with the channel (or moved with the port): bufferedAmount is 0,
        // and a producer awaiting 'drain' gets it, then 'close' on the next turn (as a local port).
        this.#drainAtEnd = false;
        this.#schedule();
        if (owner !== undefined) portHooks.drain(owner);
        return;
      }
      this.#pendingClose = false;
      if (!this.#closeEmitted && owner !== undefined) {
        this.#closeEmitted = true;
        portHooks.close(owner);
      }
      this.#updateHold();
    }
  }

  #dispatch(): void {
    const owner = this.#ownerObject();
    if (owner === undefined) return;
    this.#budget = kDispatchBatch;
    // lib's deliver() pulls with next() until it is empty, running nextTicks and microtasks
    // between two messages.
    delivering++;
    try {
      while (this.#budget > 0 && this.#state === State.Open && this.#started && this.#peek() !== undefined) {
        portHooks.deliver(owner);
      }
    } finally {
      if (--delivering === 0) flushDelivered();
    }
    if (this.#state === State.Open && this.#peek() !== undefined && this.#started) this.#schedule();
  }

  #finish(): void {
    if (this.#state !== State.Open) return;
    this.#end(true, State.Closed);
  }

  /** Leaves the open state (closed, or moved away), owing a 'close' event if `emitClose`. */
  #end(emitClose: boolean, next: State = State.Closed): void {
    // It holds bytes, or owes the 'drain' for bytes the client just wrote out.
    this.#drainAtEnd = this.#state === State.Open &&
      (this.bufferedAmount() > 0 || this.#pendingDrain || this.session.awaitsDrain(this));
    this.#state = next;
    this.#started = false;
    this.unref();
    if (next === State.Closed) this.#release();
    this.#pendingClose = this.#pendingClose || emitClose;
    this.#updateHold();
    this.#updateLoopHold();
    if (emitClose) this.#schedule();
  }

  // As native/port.cc UpdateLoopHold: a producer awaiting 'drain' (`await once(port, 'drain')`)
  // must not see its process exit meanwhile, as a socket's pending writes keep it alive: while
  // this port has bytes the client still holds, or owes 'drain', and someone listens for it.
  // (When the port ends, its 'close', with the 'drain' before it, keeps the process alive itself.)
  #updateLoopHold(): void {
    const hold = this.#state === State.Open && this.#drainListened && (this.#pendingDrain || this.bufferedAmount() > 0);
    if (hold === this.#holdingLoop) return;
    this.#holdingLoop = hold;
    if (hold) this.session.ref();
    else this.session.unref();
  }

  #unsubscribe(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
  }

  #ownerObject(): object | undefined {
    return this.#heldOwner ?? this.#owner?.deref();
  }

  // As native/port.cc UpdateOwnerHold: the port object is kept while anything it does can still
  // be observed (it listens, it owes 'close'); otherwise it may be collected, which closes it.
  #updateHold(): void {
    const hold = this.#pendingClose || (this.#state === State.Open && (this.#started || this.#watched));
    if (hold) this.#heldOwner ??= this.#owner?.deref();
    else this.#heldOwner = undefined;
  }

  /** The port object was collected while open: close, so the peer learns it. */
  collected(): void {
    this.close();
  }
}

/** Publishes what ports posted while remote ports delivered messages. */
function flushDelivered(): void {
  const handles = flushAfterDelivery;
  flushAfterDelivery = [];
  for (const handle of handles) handle.flushQueued();
}

/** The new owner's end of a moved port (see moveOut). */
export function adopt(session: Session, settings: Settings, descriptor: PortDescriptor): NatsPortHandle {
  const handle = new NatsPortHandle(session, {
    settings,
    inbox: descriptor.inbox,
    peer: descriptor.peer,
    nextOut: descriptor.out,
    nextIn: descriptor.in,
  });
  handle.takeQueued(descriptor.queued);
  session.publish(descriptor.ready, controlFrame(FrameType.Ready, 0, descriptor.inbox));
  return handle;
}
