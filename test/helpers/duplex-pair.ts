// An in-memory connected pair of Duplex streams standing in for a socket, with backpressure, half close, and a
// hook per direction that sees every chunk in transit and may pass, drop, replace or add bytes. packetTap turns
// such a hook into one that sees whole TAP1 packets; securePair runs a client and a daemon handshake over a pair.

import { Duplex } from 'node:stream';
import { ByteQueue } from '../../protocol/byte-queue.js';
import { SecureConnection, type ClientTrust, type ConnectionOptions, type ServerTrust } from '../../protocol/connection.js';
import type { PrivateIdentity } from '../../protocol/keys.js';
import { HEADER_BYTES, MAGIC, SEQUENCE_OFFSET, SIZE_OFFSET, TYPE_OFFSET, UNCOUNTED_BYTES } from '../../protocol/wire.js';
import { allowListServerTrust, pinnedClientTrust, throwawayIdentity } from './keys.js';

/** What a hook returns: the bytes to deliver in place of the chunk (null or [] drops it). */
export type TapResult = Buffer | readonly Buffer[] | null;

/** Sees each chunk written in one direction, before the other end receives it. */
export type Tap = (chunk: Buffer) => TapResult;

export interface DuplexPairOptions {
  /** Bytes written on `a`, on their way to `b`. */
  aToB?: Tap;
  /** Bytes written on `b`, on their way to `a`. */
  bToA?: Tap;
  /** Readable and writable high-water mark of both ends, in bytes (16 KiB, as a socket's default). */
  highWaterMarkBytes?: number;
}

export interface Transit {
  /** Bytes delivered so far in this direction (after the hook). */
  deliveredBytes: number;
}

export interface DuplexPair {
  readonly a: Duplex;
  readonly b: Duplex;
  readonly aToB: Transit;
  readonly bToA: Transit;
  /** Delivers bytes to `to` as if its peer had written them (they bypass the hook). */
  inject(to: 'a' | 'b', bytes: Buffer): void;
  /** Ends the bytes flowing towards `to` as a peer's FIN would, whatever the peer end does. */
  endTowards(to: 'a' | 'b'): void;
  /** Destroys both ends (for after hooks). */
  destroy(): void;
}

class PairEnd extends Duplex {
  peer: PairEnd | undefined;
  tap: Tap | undefined;
  transit: Transit = { deliveredBytes: 0 };
  /** The peer's write whose bytes overfilled this end: its callback waits until this end is read again. */
  private blocked: (() => void) | undefined;
  private inboundEnded = false;

  constructor(highWaterMark: number) {
    super({ highWaterMark, allowHalfOpen: false });
  }

  /** Takes bytes from the peer's direction into this end's readable side; false once it is full. */
  deliver(bytes: Buffer): boolean {
    if (this.inboundEnded || this.destroyed || bytes.length === 0) return true;
    return this.push(bytes);
  }

  endInbound(): void {
    if (this.inboundEnded) return;
    this.inboundEnded = true;
    if (!this.destroyed) this.push(null);
  }

  /** Runs outgoing bytes through the hook and hands them to the peer one tick later, as a socket would. */
  private send(chunk: Buffer, done: (error?: Error | null) => void): void {
    setImmediate(() => {
      const peer = this.peer;
      if (peer === undefined || peer.destroyed || peer.inboundEnded) {
        done();
        return;
      }
      const result = this.tap === undefined ? chunk : this.tap(chunk);
      const pieces = result === null ? [] : Buffer.isBuffer(result) ? [result] : result;
      let room = true;
      for (const piece of pieces) {
        this.transit.deliveredBytes += piece.length;
        room = peer.deliver(piece) && room;
      }
      if (room) done();
      else peer.blocked = chainWaiter(peer.blocked, () => done());
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.send(chunk, done);
  }

  override _writev(chunks: { chunk: Buffer }[], done: (error?: Error | null) => void): void {
    this.send(Buffer.concat(chunks.map(({ chunk }) => chunk)), done);
  }

  override _final(done: (error?: Error | null) => void): void {
    // Runs after every earlier write has been handed over, so the FIN follows the data.
    setImmediate(() => {
      this.peer?.endInbound();
      done();
    });
  }

  override _read(): void {
    const waiting = this.blocked;
    this.blocked = undefined;
    waiting?.();
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    const waiting = this.blocked;
    this.blocked = undefined;
    waiting?.();
    // A torn-down socket looks like a FIN to the other side; its later writes go nowhere.
    const peer = this.peer;
    if (peer !== undefined) setImmediate(() => peer.endInbound());
    done(error);
  }
}

function chainWaiter(first: (() => void) | undefined, second: () => void): () => void {
  return first === undefined ? second : () => {
    first();
    second();
  };
}

export function duplexPair(options: DuplexPairOptions = {}): DuplexPair {
  const highWaterMark = options.highWaterMarkBytes ?? 16 * 1024;
  const a = new PairEnd(highWaterMark);
  const b = new PairEnd(highWaterMark);
  a.peer = b;
  b.peer = a;
  a.tap = options.aToB;
  b.tap = options.bToA;
  // An open socket keeps the event loop alive; without this, a test waiting only on unref'd protocol timers
  // (keepalive, idle) would see the loop end under it. Released once both ends have closed.
  const alive = setInterval(() => undefined, 60_000);
  let open = 2;
  const released = (): void => {
    if (--open === 0) clearInterval(alive);
  };
  a.once('close', released);
  b.once('close', released);
  const end = (to: 'a' | 'b'): PairEnd => (to === 'a' ? a : b);
  return {
    a,
    b,
    aToB: a.transit,
    bToA: b.transit,
    inject(to, bytes) {
      end(to).deliver(bytes);
    },
    endTowards(to) {
      end(to).endInbound();
    },
    destroy() {
      a.destroy();
      b.destroy();
    },
  };
}

/** One packet seen in transit: its bytes and its place in that direction (0 for the first). */
export interface TransitPacket {
  readonly bytes: Buffer;
  readonly index: number;
  readonly sequence: number;
  readonly type: number;
}

/**
 * A hook that regroups a direction's bytes into whole packets (by the size field) and asks onPacket what to
 * deliver for each. Bytes that do not start with the magic are passed on untouched, so the receiver sees them.
 */
export function packetTap(onPacket: (packet: TransitPacket) => TapResult): Tap {
  const pending = new ByteQueue();
  let index = 0;
  let passThrough = false;
  return (chunk) => {
    if (passThrough) return chunk;
    pending.push(chunk);
    const out: Buffer[] = [];
    while (pending.length >= HEADER_BYTES) {
      const head = pending.peek(HEADER_BYTES);
      if (!head.subarray(0, MAGIC.length).equals(MAGIC)) {
        passThrough = true;
        out.push(...pending.takeAll());
        break;
      }
      const total = head.readUInt32BE(SIZE_OFFSET) + UNCOUNTED_BYTES;
      if (pending.length < total) break;
      const bytes = Buffer.concat(pending.take(total), total);
      const result = onPacket({ bytes, index: index++, sequence: bytes.readUInt32BE(SEQUENCE_OFFSET), type: bytes.readUInt8(TYPE_OFFSET) });
      if (result === null) continue;
      if (Buffer.isBuffer(result)) out.push(result);
      else out.push(...result);
    }
    return out;
  };
}

export interface SecurePairOptions {
  pair?: DuplexPairOptions;
  client?: ConnectionOptions;
  server?: ConnectionOptions;
  clientKey?: PrivateIdentity;
  hostKey?: PrivateIdentity;
}

export interface SettledHandshake {
  readonly pair: DuplexPair;
  readonly client: PromiseSettledResult<SecureConnection>;
  readonly server: PromiseSettledResult<SecureConnection>;
}

/**
 * Runs a client (on pair.a) and a daemon (on pair.b) handshake and waits until both have settled, so a test can
 * look at each side's outcome. By default each side trusts the other's throwaway key.
 */
export async function settleHandshake(
  options: SecurePairOptions & { clientTrust?: ClientTrust; serverTrust?: ServerTrust } = {},
): Promise<SettledHandshake> {
  const pair = duplexPair(options.pair);
  const clientKey = options.clientKey ?? throwawayIdentity('ed25519', 'client');
  const hostKey = options.hostKey ?? throwawayIdentity('ed25519', 'host');
  const [client, server] = await Promise.allSettled([
    SecureConnection.connect(pair.a, options.clientTrust ?? pinnedClientTrust(clientKey, hostKey.publicIdentity), options.client),
    SecureConnection.accept(pair.b, options.serverTrust ?? allowListServerTrust(hostKey, [clientKey.publicIdentity]), options.server),
  ]);
  return { pair, client, server };
}

export interface SecurePair {
  readonly pair: DuplexPair;
  /** The client side, over pair.a. */
  readonly client: SecureConnection;
  /** The daemon side, over pair.b. */
  readonly server: SecureConnection;
}

/**
 * Connects a client (on pair.a) and a daemon (on pair.b) that trust each other. If either handshake fails it
 * tears the pair down and rejects with the client's error (or else the daemon's).
 */
export async function securePair(options: SecurePairOptions = {}): Promise<SecurePair> {
  const { pair, client, server } = await settleHandshake(options);
  if (client.status === 'fulfilled' && server.status === 'fulfilled') return { pair, client: client.value, server: server.value };
  pair.destroy();
  throw client.status === 'rejected' ? client.reason : (server as PromiseRejectedResult).reason;
}
