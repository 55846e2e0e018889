// The TAP1 frame layer: builds packet headers and parses packets incrementally from a byte stream.
// It checks magic, size (against maxPacketBytes, from the header alone, before any body byte is kept), CRC and
// sequence, and counts a packet only once its authenticate step passed; it never reads packet meaning. Bodies are
// handed on as the slices they arrived in, uncopied.

import { crc32 } from './crc32.js';
import { ByteQueue } from './byte-queue.js';
import { BadCrcError, BadMagicError, BadSequenceError, BadSizeError, UnexpectedPacketError } from './errors.js';
import {
  ASSOCIATED_DATA_BYTES,
  CRC_OFFSET,
  HEADER_BYTES,
  MAGIC,
  SEQUENCE_MODULUS,
  SEQUENCE_OFFSET,
  SIZE_FIELD_BYTES,
  SIZE_OFFSET,
  SIZE_OVERHEAD_BYTES,
  TYPE_OFFSET,
  UNCOUNTED_BYTES,
} from './wire.js';

/** One parsed packet. `payload` is the body after the type byte, as one or more slices of received chunks. */
export interface Frame {
  readonly sequence: number;
  readonly type: number;
  readonly payload: readonly Buffer[];
  readonly payloadBytes: number;
  /** The 17 header bytes; the AEAD binds size, sequence and type from them as associated data. */
  readonly header: Buffer;
}

export function nextSequence(sequence: number): number {
  return (sequence + 1) % SEQUENCE_MODULUS;
}

/**
 * Builds the 17-byte header for a payload given as slices and returns it; the caller writes the header and
 * then the slices, corked. The CRC covers sequence, type and payload.
 */
export function encodeHeader(sequence: number, type: number, payload: readonly Buffer[]): Buffer {
  let payloadBytes = 0;
  for (const piece of payload) payloadBytes += piece.length;
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32BE(payloadBytes + SIZE_OVERHEAD_BYTES, SIZE_OFFSET);
  header.writeUInt32BE(sequence, SEQUENCE_OFFSET);
  header.writeUInt8(type, TYPE_OFFSET);
  let crc = crc32(header.subarray(SEQUENCE_OFFSET, HEADER_BYTES));
  for (const piece of payload) crc = crc32(piece, crc);
  header.writeUInt32BE(crc, CRC_OFFSET);
  return header;
}

/**
 * Header with size, sequence and type filled in but the CRC left for sealPacketHeader: the AEAD needs the
 * header as associated data before the ciphertext (and so the CRC) exists.
 */
export function prepareHeader(sequence: number, type: number, payloadBytes: number): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32BE(payloadBytes + SIZE_OVERHEAD_BYTES, SIZE_OFFSET);
  header.writeUInt32BE(0, CRC_OFFSET);
  header.writeUInt32BE(sequence, SEQUENCE_OFFSET);
  header.writeUInt8(type, TYPE_OFFSET);
  return header;
}

/** Fills in the CRC of a prepared header once the payload slices are final. */
export function finishHeader(header: Buffer, payload: readonly Buffer[]): void {
  let crc = crc32(header.subarray(SEQUENCE_OFFSET, HEADER_BYTES));
  for (const piece of payload) crc = crc32(piece, crc);
  header.writeUInt32BE(crc, CRC_OFFSET);
}

/** The associated data of a packet: size, sequence and type (the CRC is left out: it covers the ciphertext). */
export function associatedData(header: Buffer): Buffer {
  const aad = Buffer.allocUnsafe(ASSOCIATED_DATA_BYTES);
  header.copy(aad, 0, SIZE_OFFSET, SIZE_OFFSET + SIZE_FIELD_BYTES);
  header.copy(aad, SIZE_FIELD_BYTES, SEQUENCE_OFFSET, HEADER_BYTES);
  return aad;
}

const enum ReaderState {
  Header,
  Payload,
  Failed,
}

/**
 * Turns a checked packet into the one handed on (for a sealed packet: verifies the AEAD tag and decrypts), or
 * throws. Until it returns, the reader's sequence counter has not moved (authenticate first, then count).
 */
export type Authenticate = (frame: Frame) => Frame;

/** The authenticate step of plaintext packets: the handshake authenticates them by its signatures instead. */
const asReceived: Authenticate = (frame) => frame;

/**
 * Incremental packet parser. push() takes chunks as they arrive and calls onFrame for each complete packet, in
 * order, once authenticate has passed it. The first failed check throws a PacketError and the reader refuses all
 * further input.
 */
export class FrameReader {
  private state = ReaderState.Header;
  private readonly received = new ByteQueue();
  private expectedSequence = 0;
  private header: Buffer | undefined;
  private payloadBytes = 0;

  constructor(
    private readonly maxPacketBytes: number,
    private readonly onFrame: (frame: Frame) => void,
    private readonly authenticate: Authenticate = asReceived,
  ) {}

  /** The sequence number the next packet must carry. */
  get nextExpectedSequence(): number {
    return this.expectedSequence;
  }

  /** Bytes held for an incomplete packet: never more than maxPacketBytes. */
  get pendingBytes(): number {
    return this.received.length;
  }

  /** True while the reader holds part of a packet (a close now means a truncated packet). */
  get midPacket(): boolean {
    return this.received.length > 0 || this.state === ReaderState.Payload;
  }

  push(chunk: Buffer): void {
    if (this.state === ReaderState.Failed) throw new UnexpectedPacketError('data after a failed packet');
    if (chunk.length === 0) return;
    this.received.push(chunk);
    try {
      this.drain();
    } catch (error) {
      this.state = ReaderState.Failed;
      this.received.takeAll();
      throw error;
    }
  }

  private drain(): void {
    for (;;) {
      if (this.state === ReaderState.Header) {
        this.checkMagicPrefix();
        if (this.received.length < HEADER_BYTES) return;
        this.acceptHeader(Buffer.concat(this.received.take(HEADER_BYTES), HEADER_BYTES));
      }
      if (this.received.length < this.payloadBytes) return;
      this.emit(this.received.take(this.payloadBytes));
    }
  }

  /** Checks the magic against however many bytes have arrived, so garbage is refused at its first byte. */
  private checkMagicPrefix(): void {
    const prefix = this.received.peek(MAGIC.length);
    for (let i = 0; i < prefix.length; i++) {
      if (prefix[i] !== MAGIC[i]) throw new BadMagicError('packet does not start with TAP1');
    }
  }

  private acceptHeader(header: Buffer): void {
    const size = header.readUInt32BE(SIZE_OFFSET);
    if (size < SIZE_OVERHEAD_BYTES) throw new BadSizeError(`packet size ${size} below the minimum`);
    if (size + UNCOUNTED_BYTES > this.maxPacketBytes) {
      throw new BadSizeError(`packet of ${size + UNCOUNTED_BYTES} bytes exceeds maxPacketBytes ${this.maxPacketBytes}`);
    }
    this.header = header;
    this.payloadBytes = size - SIZE_OVERHEAD_BYTES;
    this.state = ReaderState.Payload;
  }

  /**
   * CRC and sequence are compared first, touching no state; the packet is counted only after authenticate passed
   * it, so a forged packet moves nothing (PROTOCOL.md, "Authenticate first, then count").
   */
  private emit(payload: Buffer[]): void {
    const header = this.header as Buffer;
    let crc = crc32(header.subarray(SEQUENCE_OFFSET, HEADER_BYTES));
    for (const piece of payload) crc = crc32(piece, crc);
    if (crc !== header.readUInt32BE(CRC_OFFSET)) throw new BadCrcError('packet CRC mismatch');
    const sequence = header.readUInt32BE(SEQUENCE_OFFSET);
    if (sequence !== this.expectedSequence) {
      throw new BadSequenceError(`sequence ${sequence}, expected ${this.expectedSequence}`);
    }
    this.state = ReaderState.Header;
    this.header = undefined;
    const frame = this.authenticate({ sequence, type: header.readUInt8(TYPE_OFFSET), payload, payloadBytes: this.payloadBytes, header });
    this.expectedSequence = nextSequence(sequence);
    this.onFrame(frame);
  }

}

/** Joins payload slices into one Buffer (copying only when there is more than one). */
export function joinPayload(payload: readonly Buffer[], payloadBytes: number): Buffer {
  if (payload.length === 1) return payload[0] as Buffer;
  return Buffer.concat(payload as Buffer[], payloadBytes);
}
