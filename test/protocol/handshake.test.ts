// Tests for protocol/handshake, alone and driven by SecureConnection over an in-memory pair: both key types,
// trust refusals on each side, a tampered, replayed or reordered handshake packet, a stalled peer and
// algorithm negotiation. Each failure is checked by its code on the side that must detect it.

import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { SecureConnection } from '../../protocol/connection.js';
import { ErrorCode, HandshakeError, HostKeyChangedError, RemoteError } from '../../protocol/errors.js';
import { decodeFields, encodeFields } from '../../protocol/fields.js';
import { FrameReader, encodeHeader, joinPayload, type Frame } from '../../protocol/frame.js';
import { ClientHandshake, ServerHandshake, type AnnouncedLimits } from '../../protocol/handshake.js';
import type { KeyAlgorithm, PrivateIdentity } from '../../protocol/keys.js';
import { resolveLimits } from '../../protocol/limits.js';
import { DEFAULT_LIMITS, Field, HEADER_BYTES, PacketType } from '../../protocol/wire.js';
import { duplexPair, packetTap, settleHandshake, type SettledHandshake, type TransitPacket } from '../helpers/duplex-pair.js';
import { allowListServerTrust, pinnedClientTrust, throwawayIdentity } from '../helpers/keys.js';

const LIMITS: AnnouncedLimits = { maxPacketBytes: DEFAULT_LIMITS.maxPacketBytes, initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes };
const SHORT_HANDSHAKE = { limits: resolveLimits({ handshakeTimeoutMs: 300 }) };

function codeOf(result: PromiseSettledResult<unknown>): string | undefined {
  assert.equal(result.status, 'rejected', 'the handshake was expected to fail');
  return ((result as PromiseRejectedResult).reason as { code?: string }).code;
}

function withCode(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: unknown }).code, code);
    return true;
  };
}

/** Runs a handshake and tears its pair down when the test ends. */
async function settle(t: TestContext, options: Parameters<typeof settleHandshake>[0] = {}): Promise<SettledHandshake> {
  const settled = await settleHandshake(options);
  t.after(() => settled.pair.destroy());
  return settled;
}

/** A packet with the same sequence number and type but another payload, its CRC made right again. */
function repack(packet: TransitPacket, payload: Buffer, type = packet.type): Buffer {
  return Buffer.concat([encodeHeader(packet.sequence, type, [payload]), payload]);
}

function payloadOf(packet: TransitPacket): Buffer {
  return packet.bytes.subarray(HEADER_BYTES);
}

/** The payload with one field's value changed, re-encoded byte-exactly otherwise. */
function editField(payload: Buffer, name: string, edit: (value: string) => string): Buffer {
  const entries = decodeFields(payload).entries.map(([entryName, value]) => [entryName, entryName === name ? edit(value) : value] as const);
  return encodeFields(entries);
}

/** Changes the first character of a value to another one of the same alphabet (hex or base64). */
function changeFirstChar(value: string): string {
  return (value.startsWith('a') ? 'b' : 'a') + value.slice(1);
}

describe('handshake over a SecureConnection', () => {
  const pairsOfKeys: [KeyAlgorithm, KeyAlgorithm][] = [
    ['ed25519', 'ed25519'],
    ['rsa', 'rsa'],
    ['ed25519', 'rsa'],
    ['rsa', 'ed25519'],
  ];
  for (const [clientType, hostType] of pairsOfKeys) {
    test(`a ${clientType} client and a ${hostType} daemon agree on keys and learn each other's identity`, async (t) => {
      const clientKey = throwawayIdentity(clientType, 'client');
      const hostKey = throwawayIdentity(hostType, 'host');
      const { client, server } = await settle(t, { clientKey, hostKey });
      assert.equal(client.status, 'fulfilled');
      assert.equal(server.status, 'fulfilled');
      const clientSide = (client as PromiseFulfilledResult<SecureConnection>).value;
      const serverSide = (server as PromiseFulfilledResult<SecureConnection>).value;
      assert.equal(clientSide.peer.peer.line, hostKey.publicIdentity.line);
      assert.equal(serverSide.peer.peer.line, clientKey.publicIdentity.line);
      assert.equal(serverSide.presentedIdentity?.line, clientKey.publicIdentity.line);
      assert.deepEqual(clientSide.peer.sessionId, serverSide.peer.sessionId);
      assert.equal(clientSide.peer.cipher, 'aes-256-gcm');
      assert.equal(serverSide.peer.cipher, 'aes-256-gcm');
      assert.equal(clientSide.isOpen && serverSide.isOpen, true);
    });
  }

  test('the daemon picks the first cipher of the client that it allows', async (t) => {
    const { client } = await settle(t, {
      client: { ciphers: ['chacha20-poly1305', 'aes-256-gcm'] },
      server: { ciphers: ['aes-256-gcm', 'chacha20-poly1305'] },
    });
    assert.equal(client.status, 'fulfilled');
    assert.equal((client as PromiseFulfilledResult<SecureConnection>).value.peer.cipher, 'chacha20-poly1305');
  });

  test('each connection gets its own session id', async (t) => {
    const first = await settle(t);
    const second = await settle(t);
    assert.ok(first.client.status === 'fulfilled' && second.client.status === 'fulfilled');
    assert.notDeepEqual(first.client.value.peer.sessionId, second.client.value.peer.sessionId);
  });

  test('an unknown client is refused and learns NP_NOT_AUTHORIZED as a RemoteError', async (t) => {
    const hostKey = throwawayIdentity('ed25519', 'host');
    const stranger = throwawayIdentity('ed25519', 'stranger');
    const { client, server } = await settle(t, {
      clientKey: stranger,
      hostKey,
      serverTrust: allowListServerTrust(hostKey, [throwawayIdentity('ed25519', 'client').publicIdentity]),
    });
    assert.equal(codeOf(client), ErrorCode.NotAuthorized);
    assert.ok((client as PromiseRejectedResult).reason instanceof RemoteError);
    assert.equal(codeOf(server), ErrorCode.NotAuthorized);
  });

  test('a client refuses a host key it does not know, before sending its key exchange, and says so', async (t) => {
    const clientKey = throwawayIdentity('ed25519', 'client');
    const sentByClient: number[] = [];
    const { client } = await settle(t, {
      clientKey,
      clientTrust: pinnedClientTrust(clientKey, throwawayIdentity('ed25519', 'other host').publicIdentity),
      pair: {
        aToB: packetTap((packet) => {
          sentByClient.push(packet.type);
          return packet.bytes;
        }),
      },
    });
    assert.equal(codeOf(client), ErrorCode.HostKeyUnknown);
    // No key exchange: only its Hello, then the Error that tells the daemon why it left.
    assert.deepEqual(sentByClient, [PacketType.Hello, PacketType.Error]);
  });

  test("the error thrown by verifyHostKey is the client's error", async (t) => {
    const clientKey = throwawayIdentity('ed25519', 'client');
    const { client } = await settle(t, {
      clientKey,
      clientTrust: {
        identity: clientKey,
        verifyHostKey: () => {
          throw new HostKeyChangedError('pinned key differs');
        },
      },
    });
    assert.equal(codeOf(client), ErrorCode.HostKeyChanged);
  });

  test('a host key swapped in transit is refused by the client', async (t) => {
    const impostor = throwawayIdentity('ed25519', 'impostor');
    const { client } = await settle(t, {
      pair: {
        bToA: packetTap((packet) => {
          if (packet.index !== 0) return packet.bytes;
          return repack(packet, editField(payloadOf(packet), Field.hostKey, () => impostor.publicIdentity.line));
        }),
      },
    });
    assert.equal(codeOf(client), ErrorCode.HostKeyUnknown);
  });

  test("a byte of the daemon's Hello changed in transit (CRC fixed up) fails the daemon's signature check", async (t) => {
    const { client, server } = await settle(t, {
      pair: {
        bToA: packetTap((packet) => (packet.index === 0 ? repack(packet, editField(payloadOf(packet), Field.nonce, changeFirstChar)) : packet.bytes)),
      },
    });
    assert.equal(codeOf(server), ErrorCode.BadSignature);
    assert.equal(client.status, 'rejected');
  });

  test("a bit of the daemon's Hello flipped in transit is refused as a corrupt packet", async (t) => {
    const { client } = await settle(t, {
      pair: {
        bToA: packetTap((packet) => {
          if (packet.index !== 0) return packet.bytes;
          const bytes = Buffer.from(packet.bytes);
          bytes.writeUInt8(bytes.readUInt8(HEADER_BYTES + 10) ^ 0x01, HEADER_BYTES + 10);
          return bytes;
        }),
      },
    });
    assert.equal(codeOf(client), ErrorCode.BadCrc);
  });

  test("a byte of the daemon's KeyExchange changed in transit fails the client's signature check", async (t) => {
    const { client } = await settle(t, {
      pair: {
        bToA: packetTap((packet) =>
          packet.type === PacketType.KeyExchange ? repack(packet, editField(payloadOf(packet), Field.ephemeral, changeFirstChar)) : packet.bytes,
        ),
      },
    });
    assert.equal(codeOf(client), ErrorCode.BadSignature);
  });

  test("a byte of the client's KeyExchange changed in transit fails the daemon's signature check", async (t) => {
    const { server } = await settle(t, {
      pair: {
        aToB: packetTap((packet) =>
          packet.type === PacketType.KeyExchange ? repack(packet, editField(payloadOf(packet), Field.ephemeral, changeFirstChar)) : packet.bytes,
        ),
      },
    });
    assert.equal(codeOf(server), ErrorCode.BadSignature);
  });

  test("a cipher list reordered in the client's Hello (a downgrade) fails the daemon's signature check", async (t) => {
    const { server } = await settle(t, {
      pair: {
        aToB: packetTap((packet) =>
          packet.index === 0 ? repack(packet, editField(payloadOf(packet), Field.ciphers, (value) => value.split(',').reverse().join(','))) : packet.bytes,
        ),
      },
    });
    assert.equal(codeOf(server), ErrorCode.BadSignature);
  });

  test("a replayed daemon Hello is refused with NP_BAD_SEQUENCE", async (t) => {
    const { client } = await settle(t, {
      pair: { bToA: packetTap((packet) => (packet.index === 0 ? [packet.bytes, packet.bytes] : packet.bytes)) },
    });
    assert.equal(codeOf(client), ErrorCode.BadSequence);
  });

  test("a replayed client Hello is refused with NP_BAD_SEQUENCE", async (t) => {
    const { server } = await settle(t, {
      pair: { aToB: packetTap((packet) => (packet.index === 0 ? [packet.bytes, packet.bytes] : packet.bytes)) },
    });
    assert.equal(codeOf(server), ErrorCode.BadSequence);
  });

  test('a KeyExchange where the Hello belongs is refused with NP_UNEXPECTED_PACKET', async (t) => {
    const { client } = await settle(t, {
      pair: { bToA: packetTap((packet) => (packet.index === 0 ? repack(packet, payloadOf(packet), PacketType.KeyExchange) : packet.bytes)) },
    });
    assert.equal(codeOf(client), ErrorCode.UnexpectedPacket);
  });

  test('a daemon refuses a client whose first packet is a KeyExchange', async (t) => {
    const pair = duplexPair();
    t.after(() => pair.destroy());
    const accepted = SecureConnection.accept(pair.b, allowListServerTrust(throwawayIdentity('ed25519', 'host'), []));
    const payload = encodeFields([[Field.ephemeral, 'x']]);
    pair.a.write(Buffer.concat([encodeHeader(0, PacketType.KeyExchange, [payload]), payload]));
    await assert.rejects(accepted, withCode(ErrorCode.UnexpectedPacket));
  });

  test('a daemon refuses a second Hello from the client', async (t) => {
    const pair = duplexPair();
    t.after(() => pair.destroy());
    const accepted = SecureConnection.accept(pair.b, allowListServerTrust(throwawayIdentity('ed25519', 'host'), []));
    const hello = new ClientHandshake(throwawayIdentity('ed25519', 'client'), LIMITS).createHello();
    pair.a.write(Buffer.concat([encodeHeader(0, PacketType.Hello, [hello]), hello, encodeHeader(1, PacketType.Hello, [hello]), hello]));
    await assert.rejects(accepted, withCode(ErrorCode.UnexpectedPacket));
  });

  test('a daemon refuses an encrypted packet type during the handshake', async (t) => {
    const pair = duplexPair();
    t.after(() => pair.destroy());
    const accepted = SecureConnection.accept(pair.b, allowListServerTrust(throwawayIdentity('ed25519', 'host'), []));
    const payload = Buffer.alloc(32);
    pair.a.write(Buffer.concat([encodeHeader(0, PacketType.Start, [payload]), payload]));
    await assert.rejects(accepted, withCode(ErrorCode.UnexpectedPacket));
  });

  test('a client that stalls after its Hello is dropped with NP_HANDSHAKE_TIMEOUT', async (t) => {
    const pair = duplexPair();
    t.after(() => pair.destroy());
    pair.a.resume();
    const started = Date.now();
    const accepted = SecureConnection.accept(pair.b, allowListServerTrust(throwawayIdentity('ed25519', 'host'), []), SHORT_HANDSHAKE);
    const hello = new ClientHandshake(throwawayIdentity('ed25519', 'client'), LIMITS).createHello();
    pair.a.write(Buffer.concat([encodeHeader(0, PacketType.Hello, [hello]), hello]));
    await assert.rejects(accepted, withCode(ErrorCode.HandshakeTimeout));
    assert.ok(Date.now() - started >= 250, 'the timeout must not fire early');
  });

  test('a daemon that stalls after its Hello is dropped by the client with NP_HANDSHAKE_TIMEOUT', async (t) => {
    const pair = duplexPair();
    t.after(() => pair.destroy());
    const hostKey = throwawayIdentity('ed25519', 'host');
    const clientKey = throwawayIdentity('ed25519', 'client');
    const daemon = new ServerHandshake(hostKey, LIMITS);
    const received: number[] = [];
    const reader = new FrameReader(LIMITS.maxPacketBytes, (frame: Frame) => {
      received.push(frame.type);
      if (frame.type !== PacketType.Hello) return;
      const reply = daemon.consumeHelloAndReply(joinPayload(frame.payload, frame.payloadBytes));
      pair.b.write(Buffer.concat([encodeHeader(0, PacketType.Hello, [reply]), reply]));
    });
    pair.b.on('data', (chunk: Buffer) => reader.push(chunk));
    const started = Date.now();
    const connected = SecureConnection.connect(pair.a, pinnedClientTrust(clientKey, hostKey.publicIdentity), SHORT_HANDSHAKE);
    await assert.rejects(connected, withCode(ErrorCode.HandshakeTimeout));
    assert.ok(Date.now() - started >= 250, 'the timeout must not fire early');
    assert.deepEqual(received, [PacketType.Hello, PacketType.KeyExchange]);
  });

  test('a client whose daemon never answers gives up with NP_HANDSHAKE_TIMEOUT', async (t) => {
    const { client } = await settle(t, { client: SHORT_HANDSHAKE, pair: { bToA: () => null } });
    assert.equal(codeOf(client), ErrorCode.HandshakeTimeout);
  });

  test('no common cipher is refused with NP_NO_COMMON_ALGORITHM, and the client is told', async (t) => {
    const { client, server } = await settle(t, {
      client: { ciphers: ['chacha20-poly1305'] },
      server: { ciphers: ['aes-256-gcm'] },
    });
    assert.equal(codeOf(server), ErrorCode.NoCommonAlgorithm);
    assert.equal(codeOf(client), ErrorCode.NoCommonAlgorithm);
    assert.ok((client as PromiseRejectedResult).reason instanceof RemoteError);
  });

  test('a daemon that dies during the handshake ends it with NP_CONNECTION_LOST', async (t) => {
    const pair = duplexPair();
    t.after(() => pair.destroy());
    pair.b.resume();
    const hostKey = throwawayIdentity('ed25519', 'host');
    const connected = SecureConnection.connect(pair.a, pinnedClientTrust(throwawayIdentity('ed25519', 'client'), hostKey.publicIdentity));
    pair.b.destroy();
    await assert.rejects(connected, withCode(ErrorCode.ConnectionLost));
  });
});

describe('handshake state machines', () => {
  const hostKey = (): PrivateIdentity => throwawayIdentity('ed25519', 'host');
  const clientKey = (): PrivateIdentity => throwawayIdentity('ed25519', 'client');

  test('client and daemon derive crossed keys and the same session id', () => {
    const client = new ClientHandshake(clientKey(), LIMITS);
    const daemon = new ServerHandshake(hostKey(), LIMITS);
    const presented = client.consumeHello(daemon.consumeHelloAndReply(client.createHello()));
    assert.equal(presented.line, hostKey().publicIdentity.line);
    assert.equal(daemon.consumeKeyExchange(client.createKeyExchange()).line, clientKey().publicIdentity.line);
    const { payload, keys: daemonKeys } = daemon.createKeyExchange();
    const clientKeys = client.consumeKeyExchange(payload);
    assert.deepEqual(clientKeys.clientToServer, daemonKeys.clientToServer);
    assert.deepEqual(clientKeys.serverToClient, daemonKeys.serverToClient);
    assert.notDeepEqual(clientKeys.clientToServer, clientKeys.serverToClient);
    assert.deepEqual(clientKeys.sessionId, daemonKeys.sessionId);
    assert.equal(clientKeys.peerMaxPacketBytes, LIMITS.maxPacketBytes);
    assert.equal(daemonKeys.peerInitialWindowBytes, LIMITS.initialWindowBytes);
  });

  test('a client step out of order throws NP_UNEXPECTED_PACKET', () => {
    const client = new ClientHandshake(clientKey(), LIMITS);
    assert.throws(() => client.createKeyExchange(), withCode(ErrorCode.UnexpectedPacket));
    assert.throws(() => client.createHello(), withCode(ErrorCode.UnexpectedPacket));
  });

  test('a daemon step out of order throws NP_UNEXPECTED_PACKET', () => {
    const daemon = new ServerHandshake(hostKey(), LIMITS);
    assert.throws(() => daemon.createKeyExchange(), withCode(ErrorCode.UnexpectedPacket));
    const client = new ClientHandshake(clientKey(), LIMITS);
    assert.throws(() => daemon.consumeHelloAndReply(client.createHello()), withCode(ErrorCode.UnexpectedPacket));
  });

  test('a client key exchange made for another daemon is refused with NP_BAD_SIGNATURE', () => {
    const client = new ClientHandshake(clientKey(), LIMITS);
    const hello = client.createHello();
    const intended = new ServerHandshake(hostKey(), LIMITS);
    client.consumeHello(intended.consumeHelloAndReply(hello));
    const relayedTo = new ServerHandshake(throwawayIdentity('ed25519', 'other host'), LIMITS);
    relayedTo.consumeHelloAndReply(hello);
    assert.throws(() => relayedTo.consumeKeyExchange(client.createKeyExchange()), withCode(ErrorCode.BadSignature));
  });

  test('a daemon key exchange addressed to another client is refused with NP_BAD_SIGNATURE', () => {
    const client = new ClientHandshake(clientKey(), LIMITS);
    const daemon = new ServerHandshake(hostKey(), LIMITS);
    client.consumeHello(daemon.consumeHelloAndReply(client.createHello()));
    daemon.consumeKeyExchange(client.createKeyExchange());
    const { payload } = daemon.createKeyExchange();
    const readdressed = editField(payload, Field.recipient, () => throwawayIdentity('ed25519', 'stranger').publicIdentity.line);
    assert.throws(() => client.consumeKeyExchange(readdressed), withCode(ErrorCode.BadSignature));
  });

  test('a signature that is not the last field is refused with NP_BAD_FIELDS', () => {
    const client = new ClientHandshake(clientKey(), LIMITS);
    const daemon = new ServerHandshake(hostKey(), LIMITS);
    client.consumeHello(daemon.consumeHelloAndReply(client.createHello()));
    const entries = [...decodeFields(client.createKeyExchange()).entries];
    const moved = encodeFields([entries[entries.length - 1] as readonly [string, string], ...entries.slice(0, -1)]);
    assert.throws(() => daemon.consumeKeyExchange(moved), withCode(ErrorCode.BadFields));
  });

  test('another protocol version is refused with NP_NO_COMMON_ALGORITHM', () => {
    const hello = editField(new ClientHandshake(clientKey(), LIMITS).createHello(), Field.protocol, () => 'TAP2/1');
    assert.throws(() => new ServerHandshake(hostKey(), LIMITS).consumeHelloAndReply(hello), withCode(ErrorCode.NoCommonAlgorithm));
  });

  test('a protocol version thousands of characters long is refused with an error that fits the smallest packet', () => {
    const hello = editField(new ClientHandshake(clientKey(), LIMITS).createHello(), Field.protocol, () => `TAP1/${'9'.repeat(5000)}`);
    assert.throws(
      () => new ServerHandshake(hostKey(), LIMITS).consumeHelloAndReply(hello),
      (error: unknown) => {
        assert.equal((error as HandshakeError).code, ErrorCode.NoCommonAlgorithm);
        // The Error packet the daemon sends back: header, code and this message.
        const payload = encodeFields([[Field.code, ErrorCode.NoCommonAlgorithm], [Field.message, (error as HandshakeError).message]]);
        assert.ok(HEADER_BYTES + payload.length <= 4096, `${payload.length} bytes`);
        return true;
      },
    );
  });

  test('a Hello without a usable nonce is refused with NP_BAD_FIELDS', () => {
    const hello = editField(new ClientHandshake(clientKey(), LIMITS).createHello(), Field.nonce, () => 'short');
    assert.throws(() => new ServerHandshake(hostKey(), LIMITS).consumeHelloAndReply(hello), withCode(ErrorCode.BadFields));
  });

  test('a Hello announcing a window below 4096 bytes is refused with NP_BAD_FIELDS', () => {
    const hello = editField(new ClientHandshake(clientKey(), LIMITS).createHello(), Field.initialWindowBytes, () => '100');
    assert.throws(() => new ServerHandshake(hostKey(), LIMITS).consumeHelloAndReply(hello), withCode(ErrorCode.BadFields));
  });

  test('a daemon that chooses a cipher the client did not offer is refused with NP_NO_COMMON_ALGORITHM', () => {
    const client = new ClientHandshake(clientKey(), LIMITS, ['aes-256-gcm']);
    const reply = new ServerHandshake(hostKey(), LIMITS).consumeHelloAndReply(client.createHello());
    const forced = editField(reply, Field.cipher, () => 'chacha20-poly1305');
    assert.throws(() => client.consumeHello(forced), withCode(ErrorCode.NoCommonAlgorithm));
  });

});
