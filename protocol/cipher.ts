// Per-direction packet encryption: AES-256-GCM or ChaCha20-Poly1305 with a 64-bit record counter as nonce and
// the header's size, sequence and type as associated data. Each direction ratchets its own key (Rekey packet)
// before the safety limits in wire.ts; a key past the hard limit is refused. Old key bytes are zeroed.

import { createCipheriv, createDecipheriv, hkdfSync, type CipherGCM, type DecipherGCM } from 'node:crypto';
import { BadTagError, CipherLimitError, InternalError } from './errors.js';
import { associatedData } from './frame.js';
import {
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  type CipherAlgorithm,
  REJECT_AFTER_BYTES,
  REJECT_AFTER_RECORDS,
  REKEY_AFTER_BYTES,
  REKEY_AFTER_RECORDS,
  SESSION_KEY_BYTES,
} from './wire.js';

/** When a key must be replaced (soft) and when it may no longer be used at all (hard). */
export interface CipherLimits {
  rekeyAfterBytes: number;
  rekeyAfterRecords: number;
  rejectAfterBytes: number;
  rejectAfterRecords: number;
}

export const SPEC_CIPHER_LIMITS: Readonly<CipherLimits> = Object.freeze({
  rekeyAfterBytes: REKEY_AFTER_BYTES,
  rekeyAfterRecords: REKEY_AFTER_RECORDS,
  rejectAfterBytes: REJECT_AFTER_BYTES,
  rejectAfterRecords: REJECT_AFTER_RECORDS,
});

const REKEY_INFO = Buffer.from('netplumb TAP1 rekey', 'ascii');

/** The next key of a direction's ratchet; the caller zeroes the old one. */
export function ratchetKey(key: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), REKEY_INFO, SESSION_KEY_BYTES));
}

// Both AEADs expose the same GCM-shaped interface; the switch only picks the overload node:crypto types want.
function createSealCipher(algorithm: CipherAlgorithm, key: Buffer, nonce: Buffer): CipherGCM {
  const options = { authTagLength: AEAD_TAG_BYTES };
  switch (algorithm) {
    case 'aes-256-gcm':
      return createCipheriv(algorithm, key, nonce, options);
    case 'chacha20-poly1305':
      return createCipheriv(algorithm, key, nonce, options) as unknown as CipherGCM;
  }
}

function createOpenCipher(algorithm: CipherAlgorithm, key: Buffer, nonce: Buffer): DecipherGCM {
  const options = { authTagLength: AEAD_TAG_BYTES };
  switch (algorithm) {
    case 'aes-256-gcm':
      return createDecipheriv(algorithm, key, nonce, options);
    case 'chacha20-poly1305':
      return createDecipheriv(algorithm, key, nonce, options) as unknown as DecipherGCM;
  }
}

/** Shared state of one direction: the key, the record counter (the nonce) and what the key has sealed. */
abstract class DirectionKey {
  protected key: Buffer;
  protected records = 0;
  protected bytes = 0;
  private readonly nonce = Buffer.alloc(AEAD_NONCE_BYTES);
  /** How many times this direction has ratcheted. */
  generation = 0;

  constructor(
    readonly algorithm: CipherAlgorithm,
    key: Buffer,
    protected readonly limits: CipherLimits = SPEC_CIPHER_LIMITS,
  ) {
    if (key.length !== SESSION_KEY_BYTES) throw new InternalError('session key must be 32 bytes');
    this.key = Buffer.from(key);
  }

  /** Replaces the key by the next one of the ratchet and restarts the counter. */
  rekey(): void {
    const next = ratchetKey(this.key);
    this.key.fill(0);
    this.key = next;
    this.records = 0;
    this.bytes = 0;
    this.generation++;
  }

  /** Zeroes the key; the object is unusable afterwards. */
  destroy(): void {
    this.key.fill(0);
  }

  protected nextNonce(): Buffer {
    this.nonce.writeUInt32BE(0, 0);
    this.nonce.writeUInt32BE(Math.floor(this.records / 2 ** 32), 4);
    this.nonce.writeUInt32BE(this.records % 2 ** 32, 8);
    return this.nonce;
  }

  protected pastHardLimit(plaintextBytes: number): boolean {
    return this.records >= this.limits.rejectAfterRecords || this.bytes + plaintextBytes > this.limits.rejectAfterBytes;
  }
}

/** Seals the packets of the sending direction. */
export class PacketSealer extends DirectionKey {
  /** True once the key has sealed enough that the sender should ratchet before the next packet. */
  get needsRekey(): boolean {
    return this.records >= this.limits.rekeyAfterRecords || this.bytes >= this.limits.rekeyAfterBytes;
  }

  /**
   * Encrypts plaintext slices for a prepared header (see frame.prepareHeader, whose size must already count the
   * tag) and returns ciphertext slices followed by the tag.
   */
  seal(header: Buffer, plaintext: readonly Buffer[], plaintextBytes: number): Buffer[] {
    if (this.pastHardLimit(plaintextBytes)) throw new CipherLimitError('key used past its limit without rekey');
    const cipher = createSealCipher(this.algorithm, this.key, this.nextNonce());
    cipher.setAAD(associatedData(header));
    const out: Buffer[] = [];
    for (const piece of plaintext) {
      const sealed = cipher.update(piece);
      if (sealed.length > 0) out.push(sealed);
    }
    const rest = cipher.final();
    if (rest.length > 0) out.push(rest);
    out.push(cipher.getAuthTag());
    this.records++;
    this.bytes += plaintextBytes;
    return out;
  }
}

/** Opens the packets of the receiving direction. */
export class PacketOpener extends DirectionKey {
  /**
   * Authenticates and decrypts a payload given as slices (ciphertext then tag). Plaintext is returned only
   * after the tag has verified; any failure is PacketError(NP_BAD_TAG).
   */
  open(header: Buffer, payload: readonly Buffer[], payloadBytes: number): Buffer[] {
    const ciphertextBytes = payloadBytes - AEAD_TAG_BYTES;
    if (ciphertextBytes < 0) throw new BadTagError('encrypted packet shorter than its tag');
    if (this.pastHardLimit(ciphertextBytes)) throw new CipherLimitError('peer used a key past its limit');
    const decipher = createOpenCipher(this.algorithm, this.key, this.nextNonce());
    decipher.setAAD(associatedData(header));
    const { body, tag } = splitTag(payload, ciphertextBytes);
    decipher.setAuthTag(tag);
    const out: Buffer[] = [];
    for (const piece of body) {
      const opened = decipher.update(piece);
      if (opened.length > 0) out.push(opened);
    }
    try {
      const rest = decipher.final();
      if (rest.length > 0) out.push(rest);
    } catch (error) {
      throw new BadTagError('packet failed authentication', { cause: error });
    }
    this.records++;
    this.bytes += ciphertextBytes;
    return out;
  }
}

/** Splits slices at byte offset `at` into the body slices before it and the tag after it. */
function splitTag(payload: readonly Buffer[], at: number): { body: Buffer[]; tag: Buffer } {
  const body: Buffer[] = [];
  const tagPieces: Buffer[] = [];
  let offset = 0;
  for (const piece of payload) {
    const end = offset + piece.length;
    if (end <= at) body.push(piece);
    else if (offset >= at) tagPieces.push(piece);
    else {
      body.push(piece.subarray(0, at - offset));
      tagPieces.push(piece.subarray(at - offset));
    }
    offset = end;
  }
  const tag = tagPieces.length === 1 ? (tagPieces[0] as Buffer) : Buffer.concat(tagPieces);
  return { body, tag };
}
