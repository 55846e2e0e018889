// Writes TAP1 packets onto a transport: header and payload (plain, or sealed with the direction's key) corked into
// one write, each with this direction's next sequence number. It knows no packet meaning; the connection decides.

import type { Duplex } from 'node:stream';
import type { PacketSealer } from './cipher.js';
import { encodeHeader, finishHeader, nextSequence, prepareHeader } from './frame.js';
import { AEAD_TAG_BYTES } from './wire.js';

/** Pause reading while this much is waiting to be written: a peer that does not read cannot grow our buffers. */
const MAX_UNSENT_BYTES = 4 * 1024 * 1024;

export class PacketWriter {
  private sequence = 0;

  constructor(private readonly transport: Duplex) {}

  /** A handshake packet, or an Error before keys exist. */
  writePlain(type: number, payload: Buffer): void {
    const header = encodeHeader(this.sequence, type, [payload]);
    this.sequence = nextSequence(this.sequence);
    this.transport.cork();
    this.transport.write(header);
    this.transport.write(payload);
    this.transport.uncork();
  }

  /** Seals plaintext slices (not copied) under the sealer's current key and writes the packet. */
  writeSealed(sealer: PacketSealer, type: number, pieces: readonly Buffer[], plaintextBytes: number): void {
    const header = prepareHeader(this.sequence, type, plaintextBytes + AEAD_TAG_BYTES);
    const sealed = sealer.seal(header, pieces, plaintextBytes);
    finishHeader(header, sealed);
    this.sequence = nextSequence(this.sequence);
    this.transport.cork();
    this.transport.write(header);
    for (const piece of sealed) this.transport.write(piece);
    this.transport.uncork();
    if (this.transport.writableLength > MAX_UNSENT_BYTES) this.transport.pause();
  }
}
