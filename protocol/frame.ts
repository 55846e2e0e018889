// The TAP1 frame layer: builds packet headers and parses packets incrementally from a byte stream.
// It checks magic, size (against maxPacketBytes, from the header alone, before any body byte is kept), CRC and
// sequence; it never reads packet meaning. Bodies are handed on as the slices they arrived in, uncopied.

import { crc32 } from 'node:zlib';
import { BadCrcError, BadMagicError, BadSequenceError, BadSizeError, UnexpectedPacketError } from './errors.js';
import {
  CRC_OFFSET,
  HEADER_BYTES,
  MAGIC,
  SEQUENCE_MODULUS,
  SEQUENCE_OFFSET,
  SIZE_OFFSET,
  SIZE_OVERHEAD_BYTES,
  TYPE_OFFSET,
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
  const aad = Buffer.allocUnsafe(9);
  header.copy(aad, 0, SIZE_OFFSET, SIZE_OFFSET + 4);
  header.copy(aad, 4, SEQUENCE_OFFSET, HEADER_BYTES);
  return aad;
}

const enum ReaderState {
  Header,
  Payload,
  Failed,
}

/**
 * Incremental packet parser. push() takes chunks as they arrive and calls onFrame for each complete packet, in
 * order. The first failed check throws a PacketError and the reader refuses all further input.
 */
export class FrameReader {
  private state = ReaderState.Header;
  private readonly chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private expectedSequence = 0;
  private header: Buffer | undefined;
  private payloadBytes = 0;

  constructor(
    private readonly maxPacketBytes: number,
    private readonly onFrame: (frame: Frame) => void,
  ) {}

  /** Bytes held for an incomplete packet: never more than maxPacketBytes. */
  get pendingBytes(): number {
    return this.bufferedBytes;
  }

  /** True while the reader holds part of a packet (a close now means a truncated packet). */
  get midPacket(): boolean {
    return this.bufferedBytes > 0 || this.state === ReaderState.Payload;
  }

  push(chunk: Buffer): void {
    if (this.state === ReaderState.Failed) throw new UnexpectedPacketError('data after a failed packet');
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    try {
      this.drain();
    } catch (error) {
      this.state = ReaderState.Failed;
      this.chunks.length = 0;
      this.bufferedBytes = 0;
      throw error;
    }
  }

  private drain(): void {
    for (;;) {
      if (this.state === ReaderState.Header) {
        if (!this.checkMagicPrefix() || this.bufferedBytes < HEADER_BYTES) return;
        const header = this.take(HEADER_BYTES);
        this.acceptHeader(Buffer.concat(header, HEADER_BYTES));
      }
      if (this.bufferedBytes < this.payloadBytes) return;
      this.emit(this.take(this.payloadBytes));
    }
  }

  /** Checks the magic against however many bytes have arrived, so garbage is refused at its first byte. */
  private checkMagicPrefix(): boolean {
    let checked = 0;
    for (const chunk of this.chunks) {
      for (let i = 0; i < chunk.length && checked < MAGIC.length; i++, checked++) {
        if (chunk[i] !== MAGIC[checked]) throw new BadMagicError('packet does not start with TAP1');
      }
      if (checked === MAGIC.length) break;
    }
    return true;
  }

  private acceptHeader(header: Buffer): void {
    const size = header.readUInt32BE(SIZE_OFFSET);
    if (size < SIZE_OVERHEAD_BYTES) throw new BadSizeError(`packet size ${size} below the minimum`);
    if (size + 8 > this.maxPacketBytes) {
      throw new BadSizeError(`packet of ${size + 8} bytes exceeds maxPacketBytes ${this.maxPacketBytes}`);
    }
    this.header = header;
    this.payloadBytes = size - SIZE_OVERHEAD_BYTES;
    this.state = ReaderState.Payload;
  }

  private emit(payload: Buffer[]): void {
    const header = this.header as Buffer;
    let crc = crc32(header.subarray(SEQUENCE_OFFSET, HEADER_BYTES));
    for (const piece of payload) crc = crc32(piece, crc);
    if (crc !== header.readUInt32BE(CRC_OFFSET)) throw new BadCrcError('packet CRC mismatch');
    const sequence = header.readUInt32BE(SEQUENCE_OFFSET);
    if (sequence !== this.expectedSequence) {
      throw new BadSequenceError(`sequence ${sequence}, expected ${this.expectedSequence}`);
    }
    this.expectedSequence = nextSequence(sequence);
    this.state = ReaderState.Header;
    this.header = undefined;
    this.onFrame({
      sequence,
      type: header.readUInt8(TYPE_OFFSET),
      payload,
      payloadBytes: this.payloadBytes,
      header,
    });
  }

  /** Removes count bytes from the front of the buffered chunks, as slices (no copy). */
  private take(count: number): Buffer[] {
    const out: Buffer[] = [];
    let remaining = count;
    while (remaining > 0) {
      const chunk = this.chunks[0] as Buffer;
      if (chunk.length <= remaining) {
        out.push(chunk);
        this.chunks.shift();
        remaining -= chunk.length;
      } else {
        out.push(chunk.subarray(0, remaining));
        this.chunks[0] = chunk.subarray(remaining);
        remaining = 0;
      }
    }
    this.bufferedBytes -= count;
    return out;
  }
}

/** Joins payload slices into one Buffer (copying only when there is more than one). */
export function joinPayload(payload: readonly Buffer[], payloadBytes: number): Buffer {
  if (payload.length === 1) return payload[0] as Buffer;
  return Buffer.concat(payload as Buffer[], payloadBytes);
}
