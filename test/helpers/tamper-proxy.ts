// A TCP proxy on 127.0.0.1 between plumb and netplumbd that records the bytes of each direction and can flip one
// byte at a chosen offset of one direction, optionally recomputing that TAP1 packet's CRC so the CRC check passes
// and only the AEAD tag (or the sequence check) can catch the change. Backpressure is kept in both directions.

import { createServer, connect, type Server, type Socket } from 'node:net';
import { crc32 } from 'node:zlib';
import { ByteQueue } from '../../protocol/byte-queue.js';
import type { Scope } from './scope.js';
import { onCleanup } from './scope.js';

/** toDaemon: bytes plumb sends; toClient: bytes the daemon sends. */
export type Direction = 'toDaemon' | 'toClient';

// TAP1 packet layout, as the proxy needs it (the spec is protocol/wire.ts; kept apart so a bug there shows here).
const SIZE_OFFSET = 4;
const CRC_OFFSET = 8;
const CRC_COVERED_FROM = 12;
const TYPE_OFFSET = 16;
const HEADER_BYTES = 17;
/** Size field value plus these bytes is the whole packet. */
const SIZE_FIELD_END = 8;
/** A size beyond this is not a packet a real peer sends: the proxy stops parsing and passes bytes on as they are. */
const MAX_PARSED_PACKET_BYTES = 64 * 1024 * 1024;

export interface TamperRule {
  direction: Direction;
  /** Zero-based offset, in that direction's byte stream, of the byte to change. */
  offset: number;
  /**
   * When set, the byte changed is this one (negative: counted from the packet's end, -1 = last) of the first
   * packet that starts at or after `offset`: a way to hit a chosen header field or the tag inside bulk data.
   */
  offsetInPacket?: number;
  /** XOR mask applied to the byte (non-zero); default 0x01. */
  xor?: number;
  /** Recompute the CRC of the altered packet (when the byte lies in the part the CRC covers). */
  fixCrc?: boolean;
  /** Which accepted connection (0-based) to alter; default 0. */
  connection?: number;
}

/** Where a flipped byte fell. */
export type PacketField = 'magic' | 'size' | 'crc' | 'sequence' | 'type' | 'payload';

export interface TamperReport {
  connection: number;
  direction: Direction;
  /** Offset of the altered byte in the direction's stream. */
  offset: number;
  /** Offset of the altered packet's first byte in the direction's stream. */
  packetStart: number;
  offsetInPacket: number;
  field: PacketField;
  packetType: number;
  crcRecomputed: boolean;
}

export interface ProxyOptions {
  /** The daemon's port on 127.0.0.1. */
  targetPort: number;
  /** Keep every byte of every connection (for small transfers only). */
  record?: boolean;
  tamper?: TamperRule;
}

export class ProxiedConnection {
  readonly bytes: Record<Direction, number> = { toDaemon: 0, toClient: 0 };
  private readonly recorded: Record<Direction, Buffer[]> = { toDaemon: [], toClient: [] };
  readonly closed: Promise<void>;

  constructor(
    readonly index: number,
    private readonly record: boolean,
    closed: Promise<void>,
  ) {
    this.closed = closed;
  }

  /** Everything that went through in one direction (after any alteration), when recording. */
  recordedBytes(direction: Direction): Buffer {
    return Buffer.concat(this.recorded[direction]);
  }

  passed(direction: Direction, chunk: Buffer): void {
    this.bytes[direction] += chunk.length;
    if (this.record) this.recorded[direction].push(Buffer.from(chunk));
  }
}

function fieldAt(offsetInPacket: number): PacketField {
  if (offsetInPacket < SIZE_OFFSET) return 'magic';
  if (offsetInPacket < CRC_OFFSET) return 'size';
  if (offsetInPacket < CRC_COVERED_FROM) return 'crc';
  if (offsetInPacket < TYPE_OFFSET) return 'sequence';
  if (offsetInPacket === TYPE_OFFSET) return 'type';
  return 'payload';
}

/**
 * The tampering direction of one connection: passes whole packets on, altering the one that holds the target
 * offset; once that is done, or when the stream does not parse as packets, bytes pass on as they come.
 */
class PacketTamperer {
  private readonly pending = new ByteQueue();
  /** Stream offset of the first pending byte. */
  private position = 0;
  private passThrough = false;

  constructor(
    private readonly rule: TamperRule,
    private readonly connection: number,
    private readonly report: (report: TamperReport) => void,
  ) {}

  /** Takes a chunk; returns what may be forwarded now. */
  push(chunk: Buffer): Buffer[] {
    if (this.passThrough) return [chunk];
    this.pending.push(chunk);
    const out: Buffer[] = [];
    while (!this.passThrough && this.pending.length >= HEADER_BYTES) {
      const head = this.pending.peek(HEADER_BYTES);
      const packetBytes = head.readUInt32BE(SIZE_OFFSET) + SIZE_FIELD_END;
      if (packetBytes < HEADER_BYTES || packetBytes > MAX_PARSED_PACKET_BYTES) {
        this.passThrough = true;
        break;
      }
      const target = this.targetIn(packetBytes);
      if (target === undefined) {
        // Not the packet to alter: forward it as soon as it is all here, untouched.
        if (this.pending.length < packetBytes) break;
        out.push(...this.take(packetBytes));
        continue;
      }
      if (this.pending.length < packetBytes) break;
      out.push(this.alter(Buffer.concat(this.take(packetBytes)), target));
      this.passThrough = true;
    }
    if (this.passThrough) out.push(...this.pending.takeAll());
    return out;
  }

  /** Offset of the byte to alter within the packet starting at the current position, if it is in this one. */
  private targetIn(packetBytes: number): number | undefined {
    const { offset, offsetInPacket } = this.rule;
    if (offsetInPacket === undefined) {
      const target = offset - this.position;
      return target < packetBytes ? target : undefined;
    }
    if (this.position < offset) return undefined;
    const target = offsetInPacket < 0 ? packetBytes + offsetInPacket : offsetInPacket;
    return target >= 0 && target < packetBytes ? target : undefined;
  }

  private alter(packet: Buffer, offsetInPacket: number): Buffer {
    const packetStart = this.position - packet.length;
    packet[offsetInPacket] = (packet[offsetInPacket] as number) ^ (this.rule.xor ?? 0x01);
    const field = fieldAt(offsetInPacket);
    const crcRecomputed = this.rule.fixCrc === true && offsetInPacket >= CRC_COVERED_FROM;
    if (crcRecomputed) packet.writeUInt32BE(crc32(packet.subarray(CRC_COVERED_FROM)), CRC_OFFSET);
    this.report({
      connection: this.connection,
      direction: this.rule.direction,
      offset: packetStart + offsetInPacket,
      packetStart,
      offsetInPacket,
      field,
      packetType: packet.readUInt8(TYPE_OFFSET),
      crcRecomputed,
    });
    return packet;
  }

  private take(count: number): Buffer[] {
    this.position += count;
    return this.pending.take(count);
  }
}

export interface TamperProxy {
  port: number;
  /** `127.0.0.1:PORT`, as plumb's machine argument. */
  address: string;
  connections: ProxiedConnection[];
  /** Set once the rule's byte has been altered. */
  readonly tampered: TamperReport | undefined;
  close(): Promise<void>;
}

/** Starts the proxy on 127.0.0.1 (random port); it is closed, with all its connections, at cleanup. */
export async function startTamperProxy(scope: Scope, options: ProxyOptions): Promise<TamperProxy> {
  const connections: ProxiedConnection[] = [];
  const sockets = new Set<Socket>();
  let tampered: TamperReport | undefined;

  const server: Server = createServer((client) => {
    const index = connections.length;
    const daemon = connect({ host: '127.0.0.1', port: options.targetPort });
    sockets.add(client);
    sockets.add(daemon);
    let closedCount = 0;
    let resolveClosed: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
    const connection = new ProxiedConnection(index, options.record === true, closed);
    connections.push(connection);
    for (const socket of [client, daemon]) {
      socket.setNoDelay(true);
      socket.on('error', () => {
        client.destroy();
        daemon.destroy();
      });
      socket.once('close', () => {
        sockets.delete(socket);
        // A reset on one side is passed on as a reset; an orderly end was already passed on as an end.
        if (!socket.readableEnded) (socket === client ? daemon : client).destroy();
        if (++closedCount === 2) resolveClosed();
      });
    }
    const rule = options.tamper;
    const wanted = (direction: Direction): PacketTamperer | undefined =>
      rule !== undefined && rule.direction === direction && (rule.connection ?? 0) === index
        ? new PacketTamperer(rule, index, (report) => (tampered = report))
        : undefined;
    relay(client, daemon, 'toDaemon', connection, wanted('toDaemon'));
    relay(daemon, client, 'toClient', connection, wanted('toClient'));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no address');

  const close = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  onCleanup(scope, close);
  return {
    port: address.port,
    address: `127.0.0.1:${address.port}`,
    connections,
    get tampered() {
      return tampered;
    },
    close,
  };
}

/** Copies source to sink with backpressure, through the tamperer when there is one; end is passed on as end. */
function relay(source: Socket, sink: Socket, direction: Direction, connection: ProxiedConnection, tamperer: PacketTamperer | undefined): void {
  source.on('data', (chunk: Buffer) => {
    const pieces = tamperer === undefined ? [chunk] : tamperer.push(chunk);
    let ok = true;
    for (const piece of pieces) {
      connection.passed(direction, piece);
      ok = sink.write(piece) && ok;
    }
    if (!ok) {
      source.pause();
      sink.once('drain', () => source.resume());
    }
  });
  source.once('end', () => sink.end());
}
