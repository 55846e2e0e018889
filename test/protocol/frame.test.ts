// Tests for protocol/frame: header encoding and the incremental FrameReader, by round trip, by the same bytes
// cut at random boundaries, and by each malformed header, which must be refused as early as its bytes allow.

import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { describe, test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { FrameReader, encodeHeader, finishHeader, joinPayload, nextSequence, prepareHeader, type Frame } from '../../protocol/frame.js';
import { CRC_OFFSET, HEADER_BYTES, SEQUENCE_MODULUS, SEQUENCE_OFFSET, SIZE_OFFSET, SIZE_OVERHEAD_BYTES, TYPE_OFFSET } from '../../protocol/wire.js';

const MAX_PACKET_BYTES = 64 * 1024;

function withCode(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: unknown }).code, code);
    return true;
  };
}

/** A deterministic generator (mulberry32), so a failing seed can be replayed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function packet(sequence: number, type: number, payload: Buffer): Buffer {
  return Buffer.concat([encodeHeader(sequence, type, [payload]), payload]);
}

interface Seen {
  sequence: number;
  type: number;
  payload: Buffer;
}

function collectingReader(maxPacketBytes = MAX_PACKET_BYTES): { reader: FrameReader; seen: Seen[] } {
  const seen: Seen[] = [];
  const reader = new FrameReader(maxPacketBytes, (frame: Frame) => {
    seen.push({ sequence: frame.sequence, type: frame.type, payload: Buffer.from(joinPayload(frame.payload, frame.payloadBytes)) });
  });
  return { reader, seen };
}

/** A header claiming `size`, with a CRC that matches no body (the size checks come first). */
function headerWithSize(size: number): Buffer {
  const header = encodeHeader(0, 1, []);
  header.writeUInt32BE(size, SIZE_OFFSET);
  return header;
}

describe('frame codec', () => {
  test('a packet round-trips through encodeHeader and FrameReader', () => {
    const { reader, seen } = collectingReader();
    const payload = Buffer.from('name=value\0\0');
    reader.push(packet(0, 1, payload));
    assert.deepEqual(seen, [{ sequence: 0, type: 1, payload }]);
    assert.equal(reader.pendingBytes, 0);
    assert.equal(reader.midPacket, false);
  });

  test('a packet with an empty payload round-trips', () => {
    const { reader, seen } = collectingReader();
    reader.push(packet(0, 23, Buffer.alloc(0)));
    assert.deepEqual(seen, [{ sequence: 0, type: 23, payload: Buffer.alloc(0) }]);
  });

  test('the header carries magic, size, CRC, sequence and type at their offsets', () => {
    const payload = Buffer.from([1, 2, 3, 4, 5]);
    const header = encodeHeader(7, 31, [payload.subarray(0, 2), payload.subarray(2)]);
    assert.equal(header.length, HEADER_BYTES);
    assert.equal(header.toString('ascii', 0, 4), 'TAP1');
    assert.equal(header.readUInt32BE(SIZE_OFFSET), payload.length + SIZE_OVERHEAD_BYTES);
    assert.equal(header.readUInt32BE(SEQUENCE_OFFSET), 7);
    assert.equal(header.readUInt8(TYPE_OFFSET), 31);
    const expected = crc32(payload, crc32(header.subarray(SEQUENCE_OFFSET, HEADER_BYTES)));
    assert.equal(header.readUInt32BE(CRC_OFFSET), expected);
  });

  test('prepareHeader followed by finishHeader gives the same header as encodeHeader', () => {
    const payload = [Buffer.from('abc'), Buffer.from('defg')];
    const prepared = prepareHeader(12, 40, 7);
    finishHeader(prepared, payload);
    assert.deepEqual(prepared, encodeHeader(12, 40, payload));
  });

  test('a packet body split over several chunks arrives as its slices, uncopied', () => {
    const seen: Frame[] = [];
    const reader = new FrameReader(MAX_PACKET_BYTES, (frame) => seen.push(frame));
    const payload = Buffer.from('0123456789');
    const bytes = packet(0, 31, payload);
    const tail = bytes.subarray(HEADER_BYTES + 4);
    reader.push(bytes.subarray(0, HEADER_BYTES + 4));
    reader.push(tail);
    const frame = seen[0];
    assert.ok(frame !== undefined);
    assert.equal(frame.payload.length, 2);
    assert.equal(frame.payload[1]?.buffer, tail.buffer);
    assert.deepEqual(joinPayload(frame.payload, frame.payloadBytes), payload);
  });

  for (const seed of [1, 7, 42, 1234, 99991]) {
    test(`many packets cut at random boundaries decode identically (seed ${seed})`, () => {
      const random = seededRandom(seed);
      const sent: Seen[] = [];
      const parts: Buffer[] = [];
      for (let sequence = 0; sequence < 200; sequence++) {
        const length = random() < 0.1 ? 0 : Math.floor(random() * 3000);
        const payload = Buffer.alloc(length);
        for (let i = 0; i < length; i++) payload[i] = Math.floor(random() * 256);
        const type = 1 + Math.floor(random() * 98);
        sent.push({ sequence, type, payload });
        parts.push(packet(sequence, type, payload));
      }
      const stream = Buffer.concat(parts);
      const { reader, seen } = collectingReader();
      let offset = 0;
      let pushes = 0;
      while (offset < stream.length) {
        assert.ok(pushes++ < stream.length, 'the cutting loop must end');
        // Mostly small cuts (inside headers too), sometimes large ones spanning several packets.
        const cut = random() < 0.8 ? 1 + Math.floor(random() * 40) : 1 + Math.floor(random() * 20_000);
        reader.push(stream.subarray(offset, offset + cut));
        offset += cut;
        assert.ok(reader.pendingBytes <= MAX_PACKET_BYTES);
      }
      assert.deepEqual(seen, sent);
      assert.equal(reader.pendingBytes, 0);
    });
  }

  test('a stream fed one byte at a time decodes identically', () => {
    const sent = [packet(0, 1, Buffer.from('hello')), packet(1, 10, Buffer.alloc(0)), packet(2, 31, Buffer.alloc(300, 7))];
    const stream = Buffer.concat(sent);
    const { reader, seen } = collectingReader();
    for (let i = 0; i < stream.length; i++) reader.push(stream.subarray(i, i + 1));
    assert.deepEqual(
      seen.map((frame) => [frame.sequence, frame.type, frame.payload.length]),
      [
        [0, 1, 5],
        [1, 10, 0],
        [2, 31, 300],
      ],
    );
  });

  for (let position = 0; position < 4; position++) {
    test(`refuses a wrong magic at its first wrong byte (byte ${position})`, () => {
      const { reader } = collectingReader();
      const bytes = packet(0, 1, Buffer.from('x'));
      for (let i = 0; i < position; i++) reader.push(bytes.subarray(i, i + 1));
      assert.equal(reader.pendingBytes, position);
      const wrong = Buffer.from([bytes[position] === 0x58 ? 0x59 : 0x58]);
      assert.throws(() => reader.push(wrong), withCode(ErrorCode.BadMagic));
    });
  }

  test('refuses garbage at its first byte even in a large chunk', () => {
    const { reader } = collectingReader();
    assert.throws(() => reader.push(Buffer.from('GET / HTTP/1.1\r\n')), withCode(ErrorCode.BadMagic));
    assert.equal(reader.pendingBytes, 0);
  });

  test('refuses a wrong magic in a later packet', () => {
    const { reader, seen } = collectingReader();
    const second = packet(1, 1, Buffer.from('b'));
    second[2] = 0;
    assert.throws(() => reader.push(Buffer.concat([packet(0, 1, Buffer.from('a')), second])), withCode(ErrorCode.BadMagic));
    assert.equal(seen.length, 1);
  });

  test('refuses a size below the minimum', () => {
    const { reader } = collectingReader();
    assert.throws(() => reader.push(headerWithSize(SIZE_OVERHEAD_BYTES - 1)), withCode(ErrorCode.BadSize));
  });

  test('refuses a size of zero', () => {
    const { reader } = collectingReader();
    assert.throws(() => reader.push(headerWithSize(0)), withCode(ErrorCode.BadSize));
  });

  test('refuses a packet longer than maxPacketBytes from the header, before any body byte arrives', () => {
    const { reader } = collectingReader(4096);
    const header = headerWithSize(4096 - 8 + 1);
    reader.push(header.subarray(0, HEADER_BYTES - 1));
    assert.equal(reader.pendingBytes, HEADER_BYTES - 1);
    assert.throws(() => reader.push(header.subarray(HEADER_BYTES - 1)), withCode(ErrorCode.BadSize));
    assert.equal(reader.pendingBytes, 0);
  });

  test('refuses a header claiming 4 GiB without buffering anything', () => {
    const { reader } = collectingReader();
    assert.throws(() => reader.push(headerWithSize(0xffff_ffff)), withCode(ErrorCode.BadSize));
    assert.equal(reader.pendingBytes, 0);
  });

  test('accepts a packet of exactly maxPacketBytes', () => {
    const { reader, seen } = collectingReader(4096);
    reader.push(packet(0, 31, Buffer.alloc(4096 - HEADER_BYTES)));
    assert.equal(seen.length, 1);
  });

  test('keeps no more than the packet while its body is incomplete', () => {
    const { reader } = collectingReader(4096);
    const bytes = packet(0, 31, Buffer.alloc(1000, 1));
    reader.push(bytes.subarray(0, 600));
    assert.ok(reader.pendingBytes > 0 && reader.pendingBytes <= 600, `holds ${reader.pendingBytes} bytes`);
    assert.equal(reader.midPacket, true);
  });

  test('counts a packet whose header arrived but no body byte yet as incomplete', () => {
    const { reader } = collectingReader(4096);
    reader.push(packet(0, 31, Buffer.alloc(100, 1)).subarray(0, HEADER_BYTES));
    assert.equal(reader.midPacket, true);
  });

  test('is not mid-packet between packets', () => {
    const { reader } = collectingReader(4096);
    reader.push(packet(0, 31, Buffer.alloc(100, 1)));
    assert.equal(reader.midPacket, false);
  });

  test('refuses a packet whose body does not match its CRC', () => {
    const { reader, seen } = collectingReader();
    const bytes = packet(0, 1, Buffer.from('payload'));
    bytes.writeUInt8(bytes.readUInt8(HEADER_BYTES + 2) ^ 0x01, HEADER_BYTES + 2);
    assert.throws(() => reader.push(bytes), withCode(ErrorCode.BadCrc));
    assert.equal(seen.length, 0);
  });

  test('refuses a packet whose type byte does not match its CRC', () => {
    const { reader } = collectingReader();
    const bytes = packet(0, 1, Buffer.from('payload'));
    bytes[TYPE_OFFSET] = 2;
    assert.throws(() => reader.push(bytes), withCode(ErrorCode.BadCrc));
  });

  test('refuses a first packet whose sequence number is not 0', () => {
    const { reader } = collectingReader();
    assert.throws(() => reader.push(packet(1, 1, Buffer.from('x'))), withCode(ErrorCode.BadSequence));
  });

  test('refuses a repeated sequence number', () => {
    const { reader, seen } = collectingReader();
    const first = packet(0, 1, Buffer.from('x'));
    reader.push(first);
    assert.throws(() => reader.push(first), withCode(ErrorCode.BadSequence));
    assert.equal(seen.length, 1);
  });

  test('refuses all input after a failed packet', () => {
    const { reader } = collectingReader();
    assert.throws(() => reader.push(packet(5, 1, Buffer.from('x'))), withCode(ErrorCode.BadSequence));
    assert.throws(() => reader.push(packet(0, 1, Buffer.from('x'))), withCode(ErrorCode.UnexpectedPacket));
  });

  test('nextSequence wraps from 32767 to 0', () => {
    assert.equal(nextSequence(0), 1);
    assert.equal(nextSequence(SEQUENCE_MODULUS - 2), SEQUENCE_MODULUS - 1);
    assert.equal(nextSequence(SEQUENCE_MODULUS - 1), 0);
  });

  test('sequence numbers roll over 32766, 32767, 0, 1', () => {
    const { reader, seen } = collectingReader();
    const empty = Buffer.alloc(0);
    let sequence = 0;
    for (let i = 0; i < SEQUENCE_MODULUS - 2; i++) {
      reader.push(packet(sequence, 22, empty));
      sequence = nextSequence(sequence);
    }
    assert.equal(sequence, 32766);
    const tail = [32766, 32767, 0, 1].map((number) => packet(number, 31, Buffer.from(String(number))));
    reader.push(Buffer.concat(tail));
    assert.deepEqual(
      seen.slice(-4).map((frame) => frame.sequence),
      [32766, 32767, 0, 1],
    );
    assert.equal(seen.length, SEQUENCE_MODULUS + 2);
  });

  test('refuses sequence 32768 where 32767 rolls over to 0', () => {
    const { reader } = collectingReader();
    const empty = Buffer.alloc(0);
    for (let sequence = 0; sequence < SEQUENCE_MODULUS; sequence++) reader.push(packet(sequence, 22, empty));
    assert.throws(() => reader.push(packet(SEQUENCE_MODULUS, 22, empty)), withCode(ErrorCode.BadSequence));
  });
});
