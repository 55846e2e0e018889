// Tests for protocol/cipher: seal/open round trips with both AEADs, authentication of ciphertext, tag and
// associated data (NP_BAD_TAG), the ratchet, and the soft (needsRekey) and hard (NP_CIPHER_LIMIT) counter limits,
// directly and over a SecureConnection whose small limits force several rekeys.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { PacketOpener, PacketSealer, ratchetKey, type CipherLimits } from '../../protocol/cipher.js';
import type { ConnectionHandler } from '../../protocol/connection.js';
import { ErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { joinPayload, prepareHeader } from '../../protocol/frame.js';
import { AEAD_TAG_BYTES, CIPHER_ALGORITHMS, CRC_OFFSET, PacketType, SESSION_KEY_BYTES, SEQUENCE_OFFSET, SIZE_OFFSET, TYPE_OFFSET } from '../../protocol/wire.js';
import { packetTap, securePair } from '../helpers/duplex-pair.js';

function withCode(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: unknown }).code, code);
    return true;
  };
}

function flipBit(bytes: Buffer, offset: number, mask: number): void {
  bytes.writeUInt8(bytes.readUInt8(offset) ^ mask, offset);
}

interface Sealed {
  header: Buffer;
  payload: Buffer[];
  payloadBytes: number;
}

function seal(sealer: PacketSealer, sequence: number, plaintext: Buffer, type = PacketType.StreamData): Sealed {
  const header = prepareHeader(sequence, type, plaintext.length + AEAD_TAG_BYTES);
  const payload = sealer.seal(header, [plaintext], plaintext.length);
  return { header, payload, payloadBytes: plaintext.length + AEAD_TAG_BYTES };
}

function open(opener: PacketOpener, sealed: Sealed): Buffer {
  const plain = opener.open(sealed.header, sealed.payload, sealed.payloadBytes);
  return Buffer.concat(plain);
}

/** The sealed payload as one buffer, copied, so a test can flip bits without touching the original. */
function flat(sealed: Sealed): Buffer {
  return Buffer.from(joinPayload(sealed.payload, sealed.payloadBytes));
}

const LOOSE: CipherLimits = { rekeyAfterBytes: 2 ** 40, rekeyAfterRecords: 2 ** 40, rejectAfterBytes: 2 ** 41, rejectAfterRecords: 2 ** 41 };

for (const algorithm of CIPHER_ALGORITHMS) {
  describe(`packet cipher ${algorithm}`, () => {
    const key = randomBytes(SESSION_KEY_BYTES);

    test('sealed packets open to the same plaintext, in order', () => {
      const sealer = new PacketSealer(algorithm, key);
      const opener = new PacketOpener(algorithm, key);
      for (let sequence = 0; sequence < 5; sequence++) {
        const plaintext = randomBytes(sequence * 100);
        const sealed = seal(sealer, sequence, plaintext);
        assert.equal(sealed.payloadBytes, plaintext.length + AEAD_TAG_BYTES);
        assert.deepEqual(open(opener, sealed), plaintext);
      }
    });

    test('plaintext given as several slices and ciphertext opened from other slices round-trip', () => {
      const sealer = new PacketSealer(algorithm, key);
      const opener = new PacketOpener(algorithm, key);
      const parts = [randomBytes(5), randomBytes(0), randomBytes(300)];
      const header = prepareHeader(0, PacketType.StreamData, 305 + AEAD_TAG_BYTES);
      const sealed = Buffer.concat(sealer.seal(header, parts, 305));
      // Cut inside the tag, so the opener must join the tag from two slices.
      const slices = [sealed.subarray(0, 100), sealed.subarray(100, 310), sealed.subarray(310)];
      assert.deepEqual(Buffer.concat(opener.open(header, slices, sealed.length)), Buffer.concat(parts));
    });

    test('ciphertext does not contain the plaintext', () => {
      const sealer = new PacketSealer(algorithm, key);
      const plaintext = Buffer.alloc(64, 0x41);
      assert.equal(flat(seal(sealer, 0, plaintext)).includes(plaintext.subarray(0, 16)), false);
    });

    test('the same plaintext seals differently on the next record (the counter is the nonce)', () => {
      const sealer = new PacketSealer(algorithm, key);
      const plaintext = Buffer.from('same bytes');
      const first = seal(sealer, 0, plaintext);
      const second = seal(sealer, 0, plaintext);
      assert.notDeepEqual(flat(first), flat(second));
    });

    test('a flipped ciphertext bit fails with NP_BAD_TAG', () => {
      const sealed = seal(new PacketSealer(algorithm, key), 0, Buffer.from('authentic data'));
      const bytes = flat(sealed);
      flipBit(bytes, 3, 0x01);
      const opener = new PacketOpener(algorithm, key);
      assert.throws(() => opener.open(sealed.header, [bytes], bytes.length), withCode(ErrorCode.BadTag));
    });

    test('a flipped tag bit fails with NP_BAD_TAG', () => {
      const sealed = seal(new PacketSealer(algorithm, key), 0, Buffer.from('authentic data'));
      const bytes = flat(sealed);
      flipBit(bytes, bytes.length - 1, 0x80);
      const opener = new PacketOpener(algorithm, key);
      assert.throws(() => opener.open(sealed.header, [bytes], bytes.length), withCode(ErrorCode.BadTag));
    });

    for (const [field, offset] of [
      ['size', SIZE_OFFSET + 3],
      ['sequence', SEQUENCE_OFFSET + 3],
      ['type', TYPE_OFFSET],
    ] as const) {
      test(`a flipped bit of the ${field} in the associated data fails with NP_BAD_TAG`, () => {
        const sealed = seal(new PacketSealer(algorithm, key), 0, Buffer.from('authentic data'));
        const header = Buffer.from(sealed.header);
        flipBit(header, offset, 0x01);
        const opener = new PacketOpener(algorithm, key);
        assert.throws(() => opener.open(header, sealed.payload, sealed.payloadBytes), withCode(ErrorCode.BadTag));
      });
    }

    test('the CRC field is not associated data', () => {
      const sealed = seal(new PacketSealer(algorithm, key), 0, Buffer.from('data'));
      const header = Buffer.from(sealed.header);
      header.writeUInt32BE(0xdeadbeef, CRC_OFFSET);
      assert.deepEqual(open(new PacketOpener(algorithm, key), { ...sealed, header }), Buffer.from('data'));
    });

    test('a packet shorter than its tag fails with NP_BAD_TAG', () => {
      const opener = new PacketOpener(algorithm, key);
      const header = prepareHeader(0, PacketType.StreamData, AEAD_TAG_BYTES - 1);
      assert.throws(() => opener.open(header, [Buffer.alloc(AEAD_TAG_BYTES - 1)], AEAD_TAG_BYTES - 1), withCode(ErrorCode.BadTag));
    });

    test('a skipped record fails with NP_BAD_TAG (the receiver counter must match)', () => {
      const sealer = new PacketSealer(algorithm, key);
      seal(sealer, 0, Buffer.from('lost'));
      const second = seal(sealer, 1, Buffer.from('second'));
      assert.throws(() => open(new PacketOpener(algorithm, key), second), withCode(ErrorCode.BadTag));
    });

    test('a packet sealed under another key fails with NP_BAD_TAG', () => {
      const sealed = seal(new PacketSealer(algorithm, randomBytes(SESSION_KEY_BYTES)), 0, Buffer.from('data'));
      assert.throws(() => open(new PacketOpener(algorithm, key), sealed), withCode(ErrorCode.BadTag));
    });

    test('sealer and opener ratchet to the same next key', () => {
      const sealer = new PacketSealer(algorithm, key);
      const opener = new PacketOpener(algorithm, key);
      assert.deepEqual(open(opener, seal(sealer, 0, Buffer.from('before'))), Buffer.from('before'));
      sealer.rekey();
      opener.rekey();
      assert.equal(sealer.generation, 1);
      assert.deepEqual(open(opener, seal(sealer, 1, Buffer.from('after'))), Buffer.from('after'));
    });

    test('a packet sealed after a ratchet does not open under the old key', () => {
      const sealer = new PacketSealer(algorithm, key);
      sealer.rekey();
      assert.throws(() => open(new PacketOpener(algorithm, key), seal(sealer, 0, Buffer.from('x'))), withCode(ErrorCode.BadTag));
    });

    test('the sealer reports needsRekey once the record limit is reached', () => {
      const limits: CipherLimits = { ...LOOSE, rekeyAfterRecords: 3, rejectAfterRecords: 5 };
      const sealer = new PacketSealer(algorithm, key, limits);
      for (let i = 0; i < 3; i++) {
        assert.equal(sealer.needsRekey, false);
        seal(sealer, i, Buffer.from('x'));
      }
      assert.equal(sealer.needsRekey, true);
      sealer.rekey();
      assert.equal(sealer.needsRekey, false);
    });

    test('the sealer reports needsRekey once the byte limit is reached', () => {
      const limits: CipherLimits = { ...LOOSE, rekeyAfterBytes: 1000, rejectAfterBytes: 4000 };
      const sealer = new PacketSealer(algorithm, key, limits);
      seal(sealer, 0, Buffer.alloc(999));
      assert.equal(sealer.needsRekey, false);
      seal(sealer, 1, Buffer.alloc(1));
      assert.equal(sealer.needsRekey, true);
    });

    test('sealing past the hard record limit throws NP_CIPHER_LIMIT', () => {
      const limits: CipherLimits = { ...LOOSE, rekeyAfterRecords: 3, rejectAfterRecords: 5 };
      const sealer = new PacketSealer(algorithm, key, limits);
      for (let i = 0; i < 5; i++) seal(sealer, i, Buffer.from('x'));
      assert.throws(() => seal(sealer, 5, Buffer.from('x')), withCode(ErrorCode.CipherLimit));
      sealer.rekey();
      assert.doesNotThrow(() => seal(sealer, 5, Buffer.from('x')));
    });

    test('sealing past the hard byte limit throws NP_CIPHER_LIMIT', () => {
      const limits: CipherLimits = { ...LOOSE, rekeyAfterBytes: 100, rejectAfterBytes: 200 };
      const sealer = new PacketSealer(algorithm, key, limits);
      seal(sealer, 0, Buffer.alloc(150));
      assert.throws(() => seal(sealer, 1, Buffer.alloc(51)), withCode(ErrorCode.CipherLimit));
    });

    test('opening past the hard record limit throws NP_CIPHER_LIMIT', () => {
      const sealer = new PacketSealer(algorithm, key, LOOSE);
      const opener = new PacketOpener(algorithm, key, { ...LOOSE, rekeyAfterRecords: 1, rejectAfterRecords: 2 });
      open(opener, seal(sealer, 0, Buffer.from('a')));
      open(opener, seal(sealer, 1, Buffer.from('b')));
      assert.throws(() => open(opener, seal(sealer, 2, Buffer.from('c'))), withCode(ErrorCode.CipherLimit));
    });
  });
}

test('the ratchet is deterministic and never returns its input', () => {
  const key = randomBytes(SESSION_KEY_BYTES);
  const next = ratchetKey(key);
  assert.equal(next.length, SESSION_KEY_BYTES);
  assert.deepEqual(ratchetKey(key), next);
  assert.notDeepEqual(next, key);
});

test('a session key of the wrong length is refused', () => {
  assert.throws(() => new PacketSealer('aes-256-gcm', Buffer.alloc(16)), withCode(ErrorCode.Internal));
});

/** Collects the payloads of one packet type and the close reason. */
function recorder(type: PacketType): { handler: ConnectionHandler; received: Buffer[]; closed: Promise<NetplumbError | undefined> } {
  const received: Buffer[] = [];
  let resolveClosed: (error: NetplumbError | undefined) => void = () => undefined;
  const closed = new Promise<NetplumbError | undefined>((resolve) => (resolveClosed = resolve));
  return {
    received,
    closed,
    handler: {
      packet(packetType, payload, payloadBytes) {
        if (packetType === type) received.push(Buffer.from(joinPayload(payload, payloadBytes)));
      },
      drain() {},
      closed: (error) => resolveClosed(error),
    },
  };
}

for (const algorithm of CIPHER_ALGORITHMS) {
  test(`data keeps flowing across several rekeys over a SecureConnection (${algorithm})`, async (t) => {
    const limits: CipherLimits = { rekeyAfterRecords: 4, rekeyAfterBytes: 4096, rejectAfterRecords: 6, rejectAfterBytes: 16384 };
    const rekeys = { toServer: 0, toClient: 0 };
    const { pair, client, server } = await securePair({
      client: { cipherLimits: limits, ciphers: [algorithm] },
      server: { cipherLimits: limits, ciphers: [algorithm] },
      pair: {
        aToB: packetTap((packet) => {
          if (packet.type === PacketType.Rekey) rekeys.toServer++;
          return packet.bytes;
        }),
        bToA: packetTap((packet) => {
          if (packet.type === PacketType.Rekey) rekeys.toClient++;
          return packet.bytes;
        }),
      },
    });
    t.after(() => pair.destroy());
    assert.equal(client.peer.cipher, algorithm);
    const atServer = recorder(PacketType.StreamData);
    const atClient = recorder(PacketType.StreamData);
    server.attach(atServer.handler);
    client.attach(atClient.handler);
    const sent: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const payload = randomBytes(1 + ((i * 37) % 900));
      sent.push(payload);
      client.send(PacketType.StreamData, payload);
      server.send(PacketType.StreamData, payload);
    }
    const deadline = Date.now() + 10_000;
    while ((atServer.received.length < sent.length || atClient.received.length < sent.length) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(atServer.received, sent);
    assert.deepEqual(atClient.received, sent);
    assert.ok(rekeys.toServer >= 5, `client ratcheted ${rekeys.toServer} times`);
    assert.ok(rekeys.toClient >= 5, `daemon ratcheted ${rekeys.toClient} times`);
    assert.equal(client.isOpen && server.isOpen, true);
    client.close();
    assert.equal(await atClient.closed, undefined);
    assert.equal(await atServer.closed, undefined);
  });
}
