// Tests that a packet is counted only after it authenticated (PROTOCOL.md, "Authenticate first, then count"): the
// frame reader's sequence counter stays put for a packet its authenticate step refuses, and a connection ends the
// same silent way whether the CRC, the sequence or the AEAD tag gave a forgery away.

import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { ConnectionHandler } from '../../protocol/connection.js';
import { BadTagError, ErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { FrameReader, encodeHeader, type Frame } from '../../protocol/frame.js';
import { HEADER_BYTES, PacketType } from '../../protocol/wire.js';
import { packetTap, securePair, type TransitPacket } from '../helpers/duplex-pair.js';

function packet(sequence: number, type: number, payload: Buffer): Buffer {
  return Buffer.concat([encodeHeader(sequence, type, [payload]), payload]);
}

describe('frame reader: authenticate first, then count', () => {
  test('the authenticate step sees the sequence counter not yet moved past its packet', () => {
    const countedBefore: number[] = [];
    const reader = new FrameReader(
      4096,
      () => undefined,
      (frame) => {
        countedBefore.push(reader.nextExpectedSequence);
        return frame;
      },
    );
    reader.push(Buffer.concat([packet(0, 1, Buffer.from('a')), packet(1, 1, Buffer.from('b'))]));
    assert.deepEqual(countedBefore, [0, 1]);
    assert.equal(reader.nextExpectedSequence, 2);
  });

  test('a packet the authenticate step refuses does not advance the expected sequence', () => {
    const delivered: Frame[] = [];
    const reader = new FrameReader(
      4096,
      (frame) => delivered.push(frame),
      (frame) => {
        if (frame.sequence === 1) throw new BadTagError('forged');
        return frame;
      },
    );
    reader.push(packet(0, 1, Buffer.from('good')));
    assert.throws(() => reader.push(packet(1, 1, Buffer.from('forged'))), { code: ErrorCode.BadTag });
    assert.equal(reader.nextExpectedSequence, 1);
    assert.deepEqual(delivered.map((frame) => frame.sequence), [0]);
  });
});

/** Ends with the connection's close reason. */
class Ending implements ConnectionHandler {
  readonly ended: Promise<NetplumbError | undefined>;
  private resolve: (error: NetplumbError | undefined) => void = () => undefined;
  constructor() {
    this.ended = new Promise((resolve) => (this.resolve = resolve));
  }
  packet(): void {}
  drain(): void {}
  closed(error: NetplumbError | undefined): void {
    this.resolve(error);
  }
}

/** Alters the first sealed packet from the client (the two before it are the handshake's). */
async function forgedFromClient(t: TestContext, forge: (packet: TransitPacket) => Buffer): Promise<{ daemon: string | undefined; client: string | undefined }> {
  const { pair, client, server } = await securePair({ pair: { aToB: packetTap((packet) => (packet.index === 2 ? forge(packet) : packet.bytes)) } });
  t.after(() => pair.destroy());
  const atClient = new Ending();
  const atServer = new Ending();
  client.attach(atClient);
  server.attach(atServer);
  client.send(PacketType.StreamData, Buffer.from('payload'));
  return { daemon: (await atServer.ended)?.code, client: (await atClient.ended)?.code };
}

function withBody(packet: TransitPacket, body: Buffer, sequence = packet.sequence): Buffer {
  return Buffer.concat([encodeHeader(sequence, packet.type, [body]), body]);
}

describe('connection: a forgery ends it the same way whichever check catches it', () => {
  const forgeries: [string, ErrorCode, (packet: TransitPacket) => Buffer][] = [
    ['a flipped byte (CRC)', ErrorCode.BadCrc, (packet) => Buffer.concat([packet.bytes.subarray(0, -1), Buffer.from([(packet.bytes.at(-1) as number) ^ 1])])],
    ['a skipped sequence number', ErrorCode.BadSequence, (packet) => withBody(packet, packet.bytes.subarray(HEADER_BYTES), packet.sequence + 1)],
    ['a changed ciphertext with its CRC fixed up (tag)', ErrorCode.BadTag, (packet) => {
      const body = Buffer.from(packet.bytes.subarray(HEADER_BYTES));
      body[0] = (body[0] as number) ^ 1;
      return withBody(packet, body);
    }],
  ];
  for (const [what, code, forge] of forgeries) {
    test(`${what}: the daemon ends with ${code} and tells the client nothing`, async (t) => {
      const ending = await forgedFromClient(t, forge);
      assert.deepEqual(ending, { daemon: code, client: ErrorCode.ConnectionLost });
    });
  }
});
