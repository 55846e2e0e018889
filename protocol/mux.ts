// Streams over one SecureConnection: ids, per-direction flow-control windows, EOF apart from close, and a fair
// round-robin scheduler. It knows stream packets only; every other packet goes to the session's handler.
// Clients open odd stream ids, daemons even ones; ids are never reused within a connection.
//
// Each stream has a read half and a write half, each its own machine (EOF is not close, as in OpenSSH's nchan.c):
//   read:  open --peer's StreamEof--> eof-received --> closed     A stream is done when both halves have seen EOF or
//   write: open --our StreamEof-----> eof-sent ------> closed     either side sent StreamClose (both halves closed);
//          \__________ StreamClose, either way ________/          then it is forgotten and later packets ignored.

import { Duplex } from 'node:stream';
import type { ConnectionHandler, SecureConnection } from './connection.js';
import {
  asNetplumbError,
  BadFieldsError,
  ConnectionLostError,
  ErrorCode,
  isErrorCode,
  NetplumbError,
  RemoteError,
  TooManyStreamsError,
  UnexpectedPacketError,
  WindowExceededError,
} from './errors.js';
import { decodeFields, type Entry, type FieldList } from './fields.js';
import { joinPayload } from './frame.js';
import { StateMachine, type TransitionTable } from './state-machine.js';
import { Field, MAX_ANNOUNCED_BYTES, MAX_STREAM_ID, PACKET_ROOM_BYTES, PacketType, STREAM_ID_BYTES } from './wire.js';

/** Gets the packets the mux does not own, and streams the peer opens. */
export interface SessionHandler {
  packet(type: PacketType, fields: FieldList): void;
  /** A peer-opened stream; the fields are those of its StreamOpen (purpose and the like). */
  streamOpened(stream: MuxStream, fields: FieldList): void;
  closed(error: NetplumbError | undefined): void;
}

export type Side = 'client' | 'daemon';

interface PendingWrite {
  chunk: Buffer;
  offset: number;
  done: (error?: Error | null) => void;
}

const noop = (): void => undefined;

/** Returned by a stream's scheduler turn. */
const enum Turn {
  /** Sent a packet and has more to send. */
  More,
  /** Nothing to send, or no window credit: waits for a write or a Window packet. */
  Idle,
}

export type ReadHalfState = 'open' | 'eof-received' | 'closed';
export type WriteHalfState = 'open' | 'eof-sent' | 'closed';
export type MuxState = 'open' | 'closed';

export const READ_HALF_MOVES: TransitionTable<ReadHalfState> = { open: ['eof-received', 'closed'], 'eof-received': ['closed'], closed: [] };
export const WRITE_HALF_MOVES: TransitionTable<WriteHalfState> = { open: ['eof-sent', 'closed'], 'eof-sent': ['closed'], closed: [] };
const MUX_MOVES: TransitionTable<MuxState> = { open: ['closed'], closed: [] };

/** Round trips (ms) below which a window does not grow; see MuxStream.windowGrowth. */
export const WINDOW_GROWTH_MIN_RTT_MS = 5;

/** Readable high-water mark of a stream: bytes pushed here are already credited back to the sender. */
const STREAM_READ_BUFFER_BYTES = 64 * 1024;

/**
 * One stream, as a Node Duplex. Writes are sent as StreamData within the peer's window; end() sends StreamEof;
 * destroy() sends StreamClose. Reading returns window credit as the consumer takes the bytes.
 */
export class MuxStream extends Duplex {
  readonly idBytes: Buffer;
  private sendCredit: number;
  private readonly sendQueue: PendingWrite[] = [];
  private finalCallback: ((error?: Error | null) => void) | undefined;
  private readonly readHalf: StateMachine<ReadHalfState>;
  private readonly writeHalf: StateMachine<WriteHalfState>;
  private readonly receiveQueue: Buffer[] = [];
  private receiveWindow: number;
  /** The window this side grants now: starts at ownWindowBytes and grows while it is what limits the stream. */
  private grantedWindowBytes: number;
  /** When the last credit went out (performance.now()). */
  private lastCreditAt = performance.now();
  private consumedSinceCredit = 0;
  private readWanted = false;
  private endPushed = false;
  /**
   * Carries keystrokes or a terminal's output: the scheduler sends it before bulk streams. Set by whoever knows
   * (plumb -t for its input, the daemon for a terminal's output); the peer is not told, each side orders its own sends.
   */
  interactive = false;
  /** A chunk's bytes are sealed into a packet before its write callback, and not read after: see bridges/pooled-reader.ts. */
  readonly copiesWrittenBytes = true;
  /** The stream's bytes sent and received so far (StreamData payloads, the stream id excluded): for progress and reports. */
  bytesSent = 0;
  bytesReceived = 0;
  /** When the stream was opened, in milliseconds since 1970-01-01 UTC. */
  readonly openedAt = Date.now();

  constructor(
    private readonly mux: Mux,
    readonly id: number,
    peerWindowBytes: number,
    ownWindowBytes: number,
  ) {
    super({ readableHighWaterMark: STREAM_READ_BUFFER_BYTES, writableHighWaterMark: STREAM_READ_BUFFER_BYTES, allowHalfOpen: true });
    this.idBytes = Buffer.alloc(STREAM_ID_BYTES);
    this.idBytes.writeUInt32BE(id, 0);
    this.sendCredit = peerWindowBytes;
    this.receiveWindow = ownWindowBytes;
    this.grantedWindowBytes = ownWindowBytes;
    const report = mux.connection.reportIllegalMove;
    this.readHalf = new StateMachine<ReadHalfState>(`stream ${id} read half`, 'open', READ_HALF_MOVES, report);
    this.writeHalf = new StateMachine<WriteHalfState>(`stream ${id} write half`, 'open', WRITE_HALF_MOVES, report);
  }

  /** Whether the peer may still send bytes: open, or after its StreamEof, or closed. */
  get readState(): ReadHalfState {
    return this.readHalf.state;
  }

  /** Whether this side may still send bytes: open, or after its StreamEof, or closed. */
  get writeState(): WriteHalfState {
    return this.writeHalf.state;
  }

  /** The receive window this side grants the stream now, in bytes (the initial one, or more once grown). */
  get windowBytes(): number {
    return this.grantedWindowBytes;
  }

  /** Bytes received but not yet taken by the reader (bounded by the window). */
  get queuedReceiveBytes(): number {
    let total = 0;
    for (const piece of this.receiveQueue) total += piece.length;
    return total;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.writeHalf.is('closed')) {
      done(new ConnectionLostError('stream closed'));
      return;
    }
    this.sendQueue.push({ chunk, offset: 0, done });
    this.mux.schedule(this);
  }

  /**
   * The writes buffered while the previous ones were in flight, queued together: a source writing small chunks
   * (a pipe read as soon as a few KiB arrive) then fills packets instead of sending one each.
   */
  override _writev(chunks: Array<{ chunk: Buffer }>, done: (error?: Error | null) => void): void {
    if (this.writeHalf.is('closed')) {
      done(new ConnectionLostError('stream closed'));
      return;
    }
    const last = chunks.length - 1;
    chunks.forEach(({ chunk }, index) => this.sendQueue.push({ chunk, offset: 0, done: index === last ? done : noop }));
    this.mux.schedule(this);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.finalCallback = done;
    this.mux.schedule(this);
  }

  override _read(): void {
    this.readWanted = true;
    this.flushReceived();
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    for (const pending of this.sendQueue.splice(0)) pending.done(error ?? new ConnectionLostError('stream closed'));
    this.receiveQueue.length = 0;
    if (!this.writeHalf.is('closed')) {
      this.closeHalves();
      this.mux.streamDropped(this, true);
    }
    done(error);
  }

  /** One scheduler turn: at most one packet. */
  sendTurn(maxPayloadBytes: number): Turn {
    if (this.sendQueue.length > 0) {
      const budget = Math.min(this.sendCredit, maxPayloadBytes);
      if (budget === 0) return Turn.Idle;
      // One packet carries as many queued chunks (or parts of them) as the budget allows, uncopied.
      const pieces: Buffer[] = [this.idBytes];
      const finished: PendingWrite[] = [];
      let length = 0;
      for (const pending of this.sendQueue) {
        const take = Math.min(pending.chunk.length - pending.offset, budget - length);
        pieces.push(pending.offset === 0 && take === pending.chunk.length ? pending.chunk : pending.chunk.subarray(pending.offset, pending.offset + take));
        pending.offset += take;
        length += take;
        if (pending.offset === pending.chunk.length) finished.push(pending);
        if (length === budget) break;
      }
      // Empty writes finish without a packet: a StreamData of no bytes tells the peer nothing.
      if (length > 0) this.mux.connection.send(PacketType.StreamData, pieces);
      this.sendCredit -= length;
      this.bytesSent += length;
      this.sendQueue.splice(0, finished.length);
      for (const pending of finished) pending.done();
      return this.sendQueue.length > 0 || this.finalCallback !== undefined ? Turn.More : Turn.Idle;
    }
    if (this.finalCallback !== undefined && this.writeHalf.is('open')) {
      this.writeHalf.move('eof-sent');
      this.mux.connection.sendFields(PacketType.StreamEof, [[Field.stream, String(this.id)]]);
      const done = this.finalCallback;
      this.finalCallback = undefined;
      done();
      this.mux.maybeForget(this);
    }
    return Turn.Idle;
  }

  /** True while the scheduler should give this stream turns. */
  get wantsTurn(): boolean {
    if (this.sendQueue.length > 0) return this.sendCredit > 0;
    return this.finalCallback !== undefined && this.writeHalf.is('open');
  }

  /** Both halves have seen EOF, or the stream was dropped. */
  get finished(): boolean {
    return (this.writeHalf.is('eof-sent') && this.readHalf.is('eof-received')) || this.writeHalf.is('closed');
  }

  /** A StreamClose went one way or the other: neither half carries anything more. */
  private closeHalves(): void {
    this.readHalf.move('closed');
    this.writeHalf.move('closed');
  }

  /** Stream bytes from a StreamData packet; more than the window allows fails the connection. */
  receiveData(pieces: readonly Buffer[], length: number): void {
    if (!this.readHalf.is('open')) throw new UnexpectedPacketError(`data after EOF on stream ${this.id}`);
    if (length > this.receiveWindow) throw new WindowExceededError(`stream ${this.id} exceeded its window`);
    this.receiveWindow -= length;
    this.bytesReceived += length;
    for (const piece of pieces) if (piece.length > 0) this.receiveQueue.push(piece);
    this.flushReceived();
  }

  receiveCredit(bytes: number): void {
    this.sendCredit += bytes;
    if (this.wantsTurn) this.mux.schedule(this);
  }

  receiveEof(): void {
    if (!this.readHalf.is('open')) throw new UnexpectedPacketError(`second EOF on stream ${this.id}`);
    this.readHalf.move('eof-received');
    this.flushReceived();
    this.mux.maybeForget(this);
  }

  /** The peer dropped the stream: nothing more is sent or delivered. A code says why it refused the stream. */
  receiveClose(code: string | undefined): void {
    this.closeHalves();
    this.mux.streamDropped(this, false);
    if (code === undefined) this.destroy();
    else this.destroy(new RemoteError(isErrorCode(code) ? code : ErrorCode.Internal, `peer refused stream ${this.id}`));
  }

  /**
   * Bytes by which the window grows now (0 or the current window). Half the window was taken since the last credit;
   * if that took less than one round trip, the sender can only have a window per round trip in flight, so the window
   * and not the consumer limits the stream: it doubles, up to maxWindowBytes. A small window otherwise keeps what
   * waits ahead of an interactive stream's bytes short. Below WINDOW_GROWTH_MIN_RTT_MS the window never grows: the
   * initial one already carries hundreds of MB/s there, and a round trip that short is mostly the peers' own event
   * loops, which a bigger window would not shorten.
   */
  private windowGrowth(): number {
    const now = performance.now();
    const sinceLast = now - this.lastCreditAt;
    this.lastCreditAt = now;
    const rtt = this.mux.connection.rttMs;
    this.mux.connection.sampleRtt();
    if (rtt === undefined || rtt < WINDOW_GROWTH_MIN_RTT_MS || sinceLast >= rtt) return 0;
    const growth = Math.min(this.grantedWindowBytes, this.mux.maxWindowBytes - this.grantedWindowBytes);
    if (growth <= 0) return 0;
    this.grantedWindowBytes += growth;
    return growth;
  }

  private flushReceived(): void {
    while (this.readWanted && this.receiveQueue.length > 0) {
      const piece = this.receiveQueue.shift() as Buffer;
      this.consumedSinceCredit += piece.length;
      this.readWanted = this.push(piece);
    }
    if (this.consumedSinceCredit > 0 && this.consumedSinceCredit >= this.grantedWindowBytes / 2 && this.readHalf.is('open')) {
      const credit = this.consumedSinceCredit + this.windowGrowth();
      this.receiveWindow += credit;
      this.mux.connection.sendFields(PacketType.StreamWindow, [
        [Field.stream, String(this.id)],
        [Field.credit, String(credit)],
      ]);
      this.consumedSinceCredit = 0;
    }
    if (this.readHalf.is('eof-received') && this.receiveQueue.length === 0 && !this.endPushed) {
      this.endPushed = true;
      this.push(null);
    }
  }
}

export interface MuxOptions {
  side: Side;
  maxStreams: number;
  /** Window this side grants each stream it receives on. */
  initialWindowBytes: number;
  /** Most a stream's window grows to while the window, not the consumer, limits it (default: no growth). */
  maxWindowBytes?: number;
  /** Largest StreamData payload this side sends. */
  maxDataPayloadBytes: number;
  /** Told of every stream as it opens (this side's or the peer's), with the fields it was opened with: for counting. */
  observeStream?: (stream: MuxStream, fields: readonly Entry[]) => void;
}

/** The stream layer of one connection. Attach it with connection.attach(mux). */
export class Mux implements ConnectionHandler {
  private readonly streams = new Map<number, MuxStream>();
  private readonly ready = new Set<MuxStream>();
  /** The ready streams marked interactive: served before the others. */
  private readonly readyInteractive = new Set<MuxStream>();
  private nextOwnId: number;
  private highestPeerId = 0;
  private pumping = false;
  private closedError: NetplumbError | undefined;
  private readonly state: StateMachine<MuxState>;
  private readonly maxPayloadBytes: number;
  readonly maxWindowBytes: number;

  constructor(
    readonly connection: SecureConnection,
    private readonly options: MuxOptions,
    private readonly session: SessionHandler,
  ) {
    this.nextOwnId = options.side === 'client' ? 1 : 2;
    const peerMax = connection.peerLimits.maxPacketBytes - PACKET_ROOM_BYTES;
    this.maxPayloadBytes = Math.max(1, Math.min(options.maxDataPayloadBytes, peerMax));
    this.maxWindowBytes = Math.max(options.maxWindowBytes ?? 0, options.initialWindowBytes);
    this.state = new StateMachine<MuxState>('mux', 'open', MUX_MOVES, connection.reportIllegalMove);
  }

  get openStreams(): number {
    return this.streams.size;
  }

  get isConnectionClosed(): boolean {
    return this.state.is('closed');
  }

  /** Opens a stream towards the peer, announcing it with the given fields (purpose and the like). */
  openStream(fields: readonly Entry[] = []): MuxStream {
    if (this.state.is('closed')) throw this.closedError ?? new ConnectionLostError('connection closed');
    if (this.streams.size >= this.options.maxStreams) throw new TooManyStreamsError('too many streams');
    const id = this.nextOwnId;
    if (id > MAX_STREAM_ID) throw new TooManyStreamsError('stream ids exhausted');
    this.nextOwnId += 2;
    const stream = this.createStream(id);
    this.connection.sendFields(PacketType.StreamOpen, [[Field.stream, String(id)], ...fields]);
    this.options.observeStream?.(stream, fields);
    return stream;
  }

  /** Lets a stream take part in scheduling; sends at once when the connection can take it. */
  schedule(stream: MuxStream): void {
    if (!stream.wantsTurn) return;
    (stream.interactive ? this.readyInteractive : this.ready).add(stream);
    this.pump();
  }

  /**
   * Round robin: one packet per ready stream per round, while the transport takes more; interactive streams first,
   * and ahead of the rest of a round once they have something, so a keystroke never waits for a round of bulk.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    this.connection.cork();
    try {
      while ((this.ready.size > 0 || this.readyInteractive.size > 0) && this.connection.writable) {
        this.serveRound(this.readyInteractive);
        if (this.readyInteractive.size === 0) this.serveRound(this.ready);
      }
    } finally {
      this.connection.uncork();
      this.pumping = false;
    }
  }

  /** One packet for each stream of the set, in order; stops early when the transport is full or an interactive stream waits. */
  private serveRound(ready: Set<MuxStream>): void {
    for (const stream of [...ready]) {
      ready.delete(stream);
      if (stream.sendTurn(this.maxPayloadBytes) === Turn.More && stream.wantsTurn) ready.add(stream);
      if (!this.connection.writable || (ready !== this.readyInteractive && this.readyInteractive.size > 0)) return;
    }
  }

  drain(): void {
    this.pump();
  }

  packet(type: PacketType, payload: readonly Buffer[], payloadBytes: number): void {
    switch (type) {
      case PacketType.StreamData:
        this.data(payload, payloadBytes);
        return;
      case PacketType.StreamOpen:
        this.peerOpened(decodeFields(joinPayload(payload, payloadBytes)));
        return;
      case PacketType.StreamWindow: {
        const fields = decodeFields(joinPayload(payload, payloadBytes));
        const stream = this.lookup(fields.requireInt(Field.stream, 1, MAX_STREAM_ID));
        stream?.receiveCredit(fields.requireInt(Field.credit, 1, MAX_ANNOUNCED_BYTES));
        return;
      }
      case PacketType.StreamEof: {
        const fields = decodeFields(joinPayload(payload, payloadBytes));
        this.lookup(fields.requireInt(Field.stream, 1, MAX_STREAM_ID))?.receiveEof();
        return;
      }
      case PacketType.StreamClose: {
        const fields = decodeFields(joinPayload(payload, payloadBytes));
        this.lookup(fields.requireInt(Field.stream, 1, MAX_STREAM_ID))?.receiveClose(fields.optional(Field.code));
        return;
      }
      default:
        this.session.packet(type, decodeFields(joinPayload(payload, payloadBytes)));
    }
  }

  closed(error: NetplumbError | undefined): void {
    this.state.move('closed');
    this.closedError = error;
    const failure = error ?? new ConnectionLostError('connection closed');
    for (const stream of [...this.streams.values()]) {
      this.streams.delete(stream.id);
      stream.destroy(stream.finished ? undefined : failure);
    }
    this.session.closed(error);
  }

  /** Called when a stream was destroyed locally (sendClose) or has been dropped by the peer. */
  streamDropped(stream: MuxStream, sendClose: boolean): void {
    if (!this.streams.has(stream.id)) return;
    this.streams.delete(stream.id);
    this.ready.delete(stream);
    this.readyInteractive.delete(stream);
    if (sendClose && this.state.is('open')) {
      try {
        this.connection.sendFields(PacketType.StreamClose, [[Field.stream, String(stream.id)]]);
      } catch (error) {
        this.connection.fail(asNetplumbError(error));
      }
    }
  }

  /** Forgets a stream whose both directions have ended. */
  maybeForget(stream: MuxStream): void {
    if (stream.finished) {
      this.streams.delete(stream.id);
      this.ready.delete(stream);
      this.readyInteractive.delete(stream);
    }
  }

  private createStream(id: number): MuxStream {
    const stream = new MuxStream(this, id, this.connection.peerLimits.initialWindowBytes, this.options.initialWindowBytes);
    this.streams.set(id, stream);
    return stream;
  }

  private peerOpened(fields: FieldList): void {
    const id = fields.requireInt(Field.stream, 1, MAX_STREAM_ID);
    const peerParity = this.options.side === 'client' ? 0 : 1;
    if (id % 2 !== peerParity || id <= this.highestPeerId) {
      throw new UnexpectedPacketError(`peer opened stream ${id} out of order`);
    }
    this.highestPeerId = id;
    if (this.streams.size >= this.options.maxStreams) {
      this.connection.sendFields(PacketType.StreamClose, [
        [Field.stream, String(id)],
        [Field.code, ErrorCode.TooManyStreams],
      ]);
      return;
    }
    const stream = this.createStream(id);
    this.options.observeStream?.(stream, fields.entries);
    this.session.streamOpened(stream, fields);
  }

  private data(payload: readonly Buffer[], payloadBytes: number): void {
    if (payloadBytes < STREAM_ID_BYTES) throw new BadFieldsError('stream data without stream id');
    let pieces = payload;
    if ((pieces[0]?.length ?? 0) < STREAM_ID_BYTES) pieces = [joinPayload(payload, payloadBytes)];
    const first = pieces[0] as Buffer;
    const id = first.readUInt32BE(0);
    const stream = this.lookup(id);
    if (stream === undefined) return;
    const rest = [first.subarray(STREAM_ID_BYTES), ...pieces.slice(1)];
    stream.receiveData(rest, payloadBytes - STREAM_ID_BYTES);
  }

  /**
   * A live stream, or undefined for one that existed and is gone (late packets after a close are ignored);
   * an id that never existed is a protocol error.
   */
  private lookup(id: number): MuxStream | undefined {
    const stream = this.streams.get(id);
    if (stream !== undefined) return stream;
    const ownParity = this.options.side === 'client' ? 1 : 0;
    const seen = id % 2 === ownParity ? id < this.nextOwnId : id <= this.highestPeerId;
    if (!seen) throw new UnexpectedPacketError(`packet for unknown stream ${id}`);
    return undefined;
  }
}
