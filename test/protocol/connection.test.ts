// Tests for protocol/connection after the handshake, over an in-memory pair: sealed packets both ways, orderly
// close, each bad packet (unknown type, plaintext type, replay, tampering, truncation, oversize) ending the
// connection with its code, Error packets, packets that arrive before a handler attaches, and keepalive/idle.

import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { CipherLimits } from '../../protocol/cipher.js';
import type { ConnectionHandler, ConnectionOptions } from '../../protocol/connection.js';
import { ErrorCode, RemoteError, TooManyStreamsError, type NetplumbError } from '../../protocol/errors.js';
import { decodeFields, encodeFields } from '../../protocol/fields.js';
import { encodeHeader, joinPayload } from '../../protocol/frame.js';
import { resolveLimits } from '../../protocol/limits.js';
import { Field, HEADER_BYTES, PacketType } from '../../protocol/wire.js';
import { packetTap, securePair, type DuplexPair, type DuplexPairOptions, type SecurePair, type TransitPacket } from '../helpers/duplex-pair.js';

interface Received {
  type: PacketType;
  payload: Buffer;
}

/** A handler that records packets and resolves `ended` with the close reason. */
class Recorder implements ConnectionHandler {
  readonly received: Received[] = [];
  readonly ended: Promise<NetplumbError | undefined>;
  isClosed = false;
  private resolveEnded: (error: NetplumbError | undefined) => void = () => undefined;

  constructor() {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  packet(type: PacketType, payload: readonly Buffer[], payloadBytes: number): void {
    this.received.push({ type, payload: Buffer.from(joinPayload(payload, payloadBytes)) });
  }

  drain(): void {}

  closed(error: NetplumbError | undefined): void {
    assert.equal(this.isClosed, false, 'closed() must be reported once');
    this.isClosed = true;
    this.resolveEnded(error);
  }
}

interface Attached extends SecurePair {
  atClient: Recorder;
  atServer: Recorder;
}

/** A connected, attached pair, torn down when the test ends. */
async function connected(
  t: TestContext,
  options: { pair?: DuplexPairOptions; client?: ConnectionOptions; server?: ConnectionOptions } = {},
): Promise<Attached> {
  const secure = await securePair(options);
  t.after(() => secure.pair.destroy());
  const atClient = new Recorder();
  const atServer = new Recorder();
  secure.client.attach(atClient);
  secure.server.attach(atServer);
  return { ...secure, atClient, atServer };
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until everything the daemon end has written has reached the client end, and a moment more. */
async function deliveredToClient(pair: DuplexPair): Promise<void> {
  await until(() => pair.b.writableLength === 0 && pair.bToA.deliveredBytes > 0, 'delivery to the client');
  await sleep(20);
}

async function closeCode(recorder: Recorder): Promise<string | undefined> {
  return (await recorder.ended)?.code;
}

/** Packets after the two handshake packets of one direction. */
function afterHandshake(packet: TransitPacket): boolean {
  return packet.index >= 2;
}

function flipByte(bytes: Buffer, offset: number): Buffer {
  const copy = Buffer.from(bytes);
  copy.writeUInt8(copy.readUInt8(offset) ^ 0x01, offset);
  return copy;
}

describe('secure connection', () => {
  test('sealed packets arrive in order in both directions', async (t) => {
    const { client, server, atClient, atServer } = await connected(t);
    for (let i = 0; i < 20; i++) {
      client.sendFields(PacketType.Start, [[Field.arg, `to daemon ${i}`]]);
      server.send(PacketType.StreamData, [Buffer.from('to '), Buffer.from(`client ${i}`)]);
    }
    await until(() => atServer.received.length === 20 && atClient.received.length === 20, 'all packets');
    assert.deepEqual(
      atServer.received.map((packet) => decodeFields(packet.payload).require(Field.arg)),
      Array.from({ length: 20 }, (_, i) => `to daemon ${i}`),
    );
    assert.deepEqual(
      atClient.received.map((packet) => [packet.type, packet.payload.toString()]),
      Array.from({ length: 20 }, (_, i) => [PacketType.StreamData, `to client ${i}`]),
    );
  });

  test('no plaintext of a sealed packet is visible in transit', async (t) => {
    const seen: Buffer[] = [];
    const { client, atServer } = await connected(t, {
      pair: {
        aToB: packetTap((packet) => {
          seen.push(packet.bytes);
          return packet.bytes;
        }),
      },
    });
    const secret = Buffer.from('a secret that must not cross in clear');
    client.send(PacketType.StreamData, secret);
    await until(() => atServer.received.length === 1, 'the packet');
    assert.deepEqual(atServer.received[0]?.payload, secret);
    assert.equal(Buffer.concat(seen).includes(secret), false);
  });

  test('close() on one side ends both sides without an error', async (t) => {
    const { client, server, atClient, atServer } = await connected(t);
    client.close();
    assert.equal(await atClient.ended, undefined);
    assert.equal(await atServer.ended, undefined);
    assert.equal(client.isOpen || server.isOpen, false);
  });

  test('sealed packets keep flowing across the sequence number wrap', async (t) => {
    const { client, atServer } = await connected(t);
    const total = 33_000;
    const empty = Buffer.alloc(0);
    for (let sent = 0; sent < total; sent += 1000) {
      client.cork();
      for (let i = sent; i < sent + 1000; i++) client.send(PacketType.StreamData, i === total - 1 ? Buffer.from('last') : empty);
      client.uncork();
      await until(() => atServer.received.length >= sent + 1000 || atServer.isClosed, 'a batch');
    }
    assert.equal(atServer.isClosed, false);
    assert.equal(atServer.received.length, total);
    assert.equal(atServer.received[total - 1]?.payload.toString(), 'last');
  });

  test('a Ping is answered with a Ping reply, not passed to the handler', async (t) => {
    const replies: string[] = [];
    const { client, atClient, atServer } = await connected(t, {
      pair: {
        bToA: packetTap((packet) => {
          if (packet.type === PacketType.Ping) replies.push('reply');
          return packet.bytes;
        }),
      },
    });
    client.sendFields(PacketType.Ping, []);
    await until(() => replies.length === 1, 'the reply');
    await sleep(50);
    assert.equal(replies.length, 1, 'a reply is not answered again');
    assert.equal(atClient.received.length + atServer.received.length, 0);
  });

  test('an unknown packet type after decryption ends the connection with NP_UNKNOWN_TYPE', async (t) => {
    const { client, atServer } = await connected(t);
    client.send(77 as PacketType, Buffer.from('x'));
    assert.equal(await closeCode(atServer), ErrorCode.UnknownType);
    assert.equal(atServer.received.length, 0);
  });

  test('a plaintext packet type after the key exchange ends the connection with NP_UNEXPECTED_PACKET', async (t) => {
    const { client, atServer } = await connected(t, {
      pair: {
        aToB: packetTap((packet) => {
          if (!afterHandshake(packet)) return packet.bytes;
          const hello = encodeFields([[Field.protocol, 'TAP1/1']]);
          return Buffer.concat([encodeHeader(packet.sequence, PacketType.Hello, [hello]), hello]);
        }),
      },
    });
    client.sendFields(PacketType.Start, []);
    assert.equal(await closeCode(atServer), ErrorCode.UnexpectedPacket);
  });

  test('a sealed Hello after the key exchange ends the connection with NP_UNEXPECTED_PACKET', async (t) => {
    const { client, atServer } = await connected(t);
    client.send(PacketType.Hello, encodeFields([]));
    assert.equal(await closeCode(atServer), ErrorCode.UnexpectedPacket);
  });

  test('a replayed sealed packet ends the connection with NP_BAD_SEQUENCE', async (t) => {
    const { client, atServer } = await connected(t, {
      pair: { aToB: packetTap((packet) => (packet.index === 2 ? [packet.bytes, packet.bytes] : packet.bytes)) },
    });
    client.sendFields(PacketType.Start, []);
    assert.equal(await closeCode(atServer), ErrorCode.BadSequence);
    assert.equal(atServer.received.length, 1);
  });

  test('a replayed handshake packet after the key exchange ends the connection with NP_BAD_SEQUENCE', async (t) => {
    let hello: Buffer | undefined;
    const { client, atServer } = await connected(t, {
      pair: {
        aToB: packetTap((packet) => {
          if (packet.index === 0) hello = packet.bytes;
          return packet.index === 2 && hello !== undefined ? hello : packet.bytes;
        }),
      },
    });
    client.sendFields(PacketType.Start, []);
    assert.equal(await closeCode(atServer), ErrorCode.BadSequence);
  });

  test('a sealed packet changed in transit with its CRC fixed up ends the connection with NP_BAD_TAG', async (t) => {
    const { client, atServer } = await connected(t, {
      pair: {
        aToB: packetTap((packet) => {
          if (!afterHandshake(packet)) return packet.bytes;
          const body = flipByte(packet.bytes.subarray(HEADER_BYTES), 0);
          return Buffer.concat([encodeHeader(packet.sequence, packet.type, [body]), body]);
        }),
      },
    });
    client.send(PacketType.StreamData, Buffer.from('payload'));
    assert.equal(await closeCode(atServer), ErrorCode.BadTag);
    assert.equal(atServer.received.length, 0);
  });

  test('a sealed packet whose type is changed in transit ends the connection with NP_BAD_TAG', async (t) => {
    const { client, atServer } = await connected(t, {
      pair: {
        aToB: packetTap((packet) => {
          if (!afterHandshake(packet)) return packet.bytes;
          const body = packet.bytes.subarray(HEADER_BYTES);
          return Buffer.concat([encodeHeader(packet.sequence, PacketType.Start, [body]), body]);
        }),
      },
    });
    client.send(PacketType.StreamData, Buffer.from('payload'));
    assert.equal(await closeCode(atServer), ErrorCode.BadTag);
  });

  test('a corrupted sealed packet ends the connection with NP_BAD_CRC', async (t) => {
    const { client, atServer } = await connected(t, {
      pair: { aToB: packetTap((packet) => (afterHandshake(packet) ? flipByte(packet.bytes, packet.bytes.length - 1) : packet.bytes)) },
    });
    client.send(PacketType.StreamData, Buffer.from('payload'));
    assert.equal(await closeCode(atServer), ErrorCode.BadCrc);
  });

  test('a connection ending inside a packet ends with NP_TRUNCATED', async (t) => {
    const { client, pair, atServer } = await connected(t, {
      pair: { aToB: packetTap((packet) => (afterHandshake(packet) ? packet.bytes.subarray(0, packet.bytes.length - 5) : packet.bytes)) },
    });
    client.send(PacketType.StreamData, Buffer.alloc(100, 1));
    await sleep(50);
    assert.equal(atServer.isClosed, false);
    pair.endTowards('b');
    assert.equal(await closeCode(atServer), ErrorCode.Truncated);
  });

  test('a connection ending right after a packet header ends with NP_TRUNCATED', async (t) => {
    const { client, pair, atServer } = await connected(t, {
      pair: { aToB: packetTap((packet) => (afterHandshake(packet) ? packet.bytes.subarray(0, HEADER_BYTES) : packet.bytes)) },
    });
    client.send(PacketType.StreamData, Buffer.alloc(100, 1));
    await sleep(50);
    pair.endTowards('b');
    assert.equal(await closeCode(atServer), ErrorCode.Truncated);
  });

  test('garbage after the key exchange ends the connection with NP_BAD_MAGIC', async (t) => {
    const { pair, atServer } = await connected(t);
    pair.inject('b', Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'));
    assert.equal(await closeCode(atServer), ErrorCode.BadMagic);
  });

  test('a connection ending between packets without Goodbye ends with NP_CONNECTION_LOST', async (t) => {
    const { pair, atServer } = await connected(t);
    pair.endTowards('b');
    assert.equal(await closeCode(atServer), ErrorCode.ConnectionLost);
  });

  test('a packet larger than maxPacketBytes ends the connection with NP_BAD_SIZE', async (t) => {
    const { client, atServer } = await connected(t, { server: { limits: resolveLimits({ maxPacketBytes: 8192, maxDataPayloadBytes: 4096 }) } });
    client.send(PacketType.StreamData, Buffer.alloc(9000));
    assert.equal(await closeCode(atServer), ErrorCode.BadSize);
  });

  test("the peer's Error packet ends the connection with a RemoteError carrying its code", async (t) => {
    const { server, atClient } = await connected(t);
    server.fail(new TooManyStreamsError('refused'), true);
    const error = await atClient.ended;
    assert.ok(error instanceof RemoteError);
    assert.equal(error.code, ErrorCode.TooManyStreams);
  });

  test('an unknown code in an Error packet is reported as NP_INTERNAL', async (t) => {
    const { server, atClient } = await connected(t);
    server.sendFields(PacketType.Error, [[Field.code, 'NP_NO_SUCH_CODE'], [Field.message, 'x']]);
    assert.equal(await closeCode(atClient), ErrorCode.Internal);
  });

  test("a peer's Error message of 100,000 characters is kept short (it is logged, and may be echoed back)", async (t) => {
    const { server, atClient } = await connected(t);
    server.sendFields(PacketType.Error, [[Field.code, ErrorCode.TooManyStreams], [Field.message, 'x'.repeat(100_000)]]);
    const error = await atClient.ended;
    assert.ok(error instanceof RemoteError);
    assert.equal(error.code, ErrorCode.TooManyStreams);
    assert.ok(error.message.length <= 2048, `${error.message.length} characters`);
  });

  test('packets that arrive before a handler attaches are delivered on attach, in order', async (t) => {
    const { pair, client, server } = await securePair();
    t.after(() => pair.destroy());
    for (let i = 0; i < 5; i++) server.send(PacketType.StreamData, Buffer.from(`early ${i}`));
    await deliveredToClient(pair);
    const atClient = new Recorder();
    client.attach(atClient);
    await until(() => atClient.received.length === 5, 'the early packets');
    assert.deepEqual(
      atClient.received.map((packet) => packet.payload.toString()),
      Array.from({ length: 5 }, (_, i) => `early ${i}`),
    );
  });

  test('packets that arrive before a handler attaches survive a rekey among them', async (t) => {
    const limits: CipherLimits = { rekeyAfterRecords: 3, rekeyAfterBytes: 2 ** 30, rejectAfterRecords: 8, rejectAfterBytes: 2 ** 31 };
    const { pair, client, server } = await securePair({ client: { cipherLimits: limits }, server: { cipherLimits: limits } });
    t.after(() => pair.destroy());
    // Corked, so the packets and the Rekey packets between them reach the client in one chunk.
    server.cork();
    for (let i = 0; i < 10; i++) server.send(PacketType.StreamData, Buffer.from(`early ${i}`));
    server.uncork();
    await deliveredToClient(pair);
    const atClient = new Recorder();
    client.attach(atClient);
    await until(() => atClient.received.length === 10 || !client.isOpen, 'the early packets');
    assert.equal(client.isOpen, true);
    assert.deepEqual(
      atClient.received.map((packet) => packet.payload.toString()),
      Array.from({ length: 10 }, (_, i) => `early ${i}`),
    );
  });

  test('an Error packet that arrives before a handler attaches is reported through closed(), not thrown', async (t) => {
    const { pair, client, server } = await securePair();
    t.after(() => pair.destroy());
    server.sendFields(PacketType.Error, [[Field.code, ErrorCode.TooManyStreams], [Field.message, 'early']]);
    await deliveredToClient(pair);
    const atClient = new Recorder();
    assert.doesNotThrow(() => client.attach(atClient));
    const error = await atClient.ended;
    assert.ok(error instanceof RemoteError);
    assert.equal(error.code, ErrorCode.TooManyStreams);
    assert.equal(client.isOpen, false);
  });

  test('a connection that failed before a handler attaches reports closed() on attach', async (t) => {
    const { pair, client } = await securePair();
    t.after(() => pair.destroy());
    pair.endTowards('a');
    await sleep(50);
    const atClient = new Recorder();
    client.attach(atClient);
    assert.equal(await closeCode(atClient), ErrorCode.ConnectionLost);
  });

  test('two live peers with keepalive stay connected past the idle timeout', async (t) => {
    const limits = resolveLimits({ idleTimeoutMs: 1500, keepaliveIntervalMs: 100 });
    let pings = 0;
    const { client, server, atClient, atServer } = await connected(t, {
      client: { limits },
      server: { limits },
      pair: {
        aToB: packetTap((packet) => {
          if (packet.type === PacketType.Ping) pings++;
          return packet.bytes;
        }),
      },
    });
    await sleep(4000);
    assert.equal(client.isOpen && server.isOpen, true);
    assert.ok(pings >= 5, `only ${pings} pings in 4 s`);
    assert.equal(atClient.received.length + atServer.received.length, 0, 'keepalives are not passed on');
    client.close();
    assert.equal(await atServer.ended, undefined);
  });

  test('a silent peer is dropped with NP_IDLE_TIMEOUT', async (t) => {
    let silent = false;
    const { client, atClient } = await connected(t, {
      client: { limits: resolveLimits({ idleTimeoutMs: 600, keepaliveIntervalMs: 100 }) },
      pair: { bToA: (chunk) => (silent ? null : chunk) },
    });
    silent = true;
    const started = Date.now();
    assert.equal(await closeCode(atClient), ErrorCode.IdleTimeout);
    assert.ok(Date.now() - started >= 500, 'dropped before the idle timeout');
    assert.equal(client.isOpen, false);
  });

  test('sending after close is ignored', async (t) => {
    const { client, atClient } = await connected(t);
    client.close();
    assert.doesNotThrow(() => client.send(PacketType.StreamData, Buffer.from('late')));
    assert.equal(await atClient.ended, undefined);
  });
});
