// Receive-window growth over real loopback sockets: on a path with a long round trip (a proxy that holds every
// chunk for a while) a bulk stream's window grows, because the window and not the reader limits it; on plain
// loopback it stays at the initial size, so little waits ahead of interactive bytes.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { SecureConnection } from '../../protocol/connection.js';
import type { NetplumbError } from '../../protocol/errors.js';
import type { FieldList } from '../../protocol/fields.js';
import { Mux, WINDOW_GROWTH_MIN_RTT_MS, type MuxStream, type SessionHandler } from '../../protocol/mux.js';
import { resolveLimits } from '../../protocol/limits.js';
import { DEFAULT_LIMITS, Field, type PacketType } from '../../protocol/wire.js';
import { allowListServerTrust, pinnedClientTrust, throwawayIdentity } from '../helpers/keys.js';

const INITIAL_WINDOW_BYTES = 256 * 1024;
const MAX_WINDOW_BYTES = 8 * 1024 * 1024;
const BULK_BYTES = 24 * 1024 * 1024;

class StreamCatcher implements SessionHandler {
  private resolve: (stream: MuxStream) => void = () => undefined;
  readonly next: Promise<MuxStream> = new Promise((resolve) => (this.resolve = resolve));

  packet(_type: PacketType, _fields: FieldList): void {}

  streamOpened(stream: MuxStream): void {
    stream.on('error', () => undefined);
    this.resolve(stream);
  }

  closed(_error: NetplumbError | undefined): void {}
}

/**
 * A TCP relay on 127.0.0.1 that holds each chunk for delayMs in each direction, keeping the order; the first
 * quickBytes of each direction pass at once (a path quick during the handshake, slow once data queues on it).
 */
async function delayingRelay(t: TestContext, targetPort: number, delayMs: number, quickBytes = 0): Promise<number> {
  const sockets: Socket[] = [];
  const relay: Server = createServer((inbound) => {
    const outbound = connect(targetPort, '127.0.0.1');
    sockets.push(inbound, outbound);
    for (const [from, to] of [
      [inbound, outbound],
      [outbound, inbound],
    ] as const) {
      let relayed = 0;
      let held = Promise.resolve();
      from.on('data', (chunk: Buffer) => {
        relayed += chunk.length;
        const wait = relayed <= quickBytes ? 0 : delayMs;
        // Chained, so a quick chunk never overtakes a held one.
        held = held.then(() => new Promise<void>((resolve) => setTimeout(() => {
          to.write(chunk);
          resolve();
        }, wait)));
      });
      from.on('end', () => setTimeout(() => to.end(), delayMs));
      from.on('error', () => to.destroy());
    }
  });
  relay.listen(0, '127.0.0.1');
  await once(relay, 'listening');
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    relay.close();
  });
  return (relay.address() as { port: number }).port;
}

/** A client and a daemon connection with muxes, the client reaching the daemon through relayDelayMs (0: direct). */
async function connectedMuxes(t: TestContext, relayDelayMs: number, quickBytes = 0): Promise<{ server: Promise<SecureConnection>; clientMux: Mux; atServer: StreamCatcher }> {
  const clientKey = throwawayIdentity('ed25519', 'client');
  const hostKey = throwawayIdentity('ed25519', 'host');
  const atServer = new StreamCatcher();
  const limits = resolveLimits({ initialWindowBytes: INITIAL_WINDOW_BYTES, maxWindowBytes: MAX_WINDOW_BYTES });
  const muxOptions = { maxStreams: 8, initialWindowBytes: INITIAL_WINDOW_BYTES, maxWindowBytes: MAX_WINDOW_BYTES, maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes };
  let accepted: (connection: SecureConnection) => void = () => undefined;
  const serverConnection = new Promise<SecureConnection>((resolve) => (accepted = resolve));
  const server = createServer((socket) => {
    t.after(() => socket.destroy());
    void SecureConnection.accept(socket, allowListServerTrust(hostKey, [clientKey.publicIdentity]), { limits }).then((connection) => {
      connection.attach(new Mux(connection, { side: 'daemon', ...muxOptions }, atServer));
      accepted(connection);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const daemonPort = (server.address() as { port: number }).port;
  const port = relayDelayMs > 0 ? await delayingRelay(t, daemonPort, relayDelayMs, quickBytes) : daemonPort;
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  t.after(() => socket.destroy());
  const client: SecureConnection = await SecureConnection.connect(socket, pinnedClientTrust(clientKey, hostKey.publicIdentity), { limits });
  const clientMux = new Mux(client, { side: 'client', ...muxOptions }, { packet: () => undefined, streamOpened: (stream) => stream.destroy(), closed: () => undefined });
  client.attach(clientMux);
  return { server: serverConnection, clientMux, atServer };
}

/** Sends BULK_BYTES client to daemon on one stream; resolves with the daemon-side stream and the SHA-256 both ways. */
async function sendBulk(clientMux: Mux, atServer: StreamCatcher): Promise<{ remote: MuxStream; sent: string; received: string }> {
  const local = clientMux.openStream([[Field.purpose, 'bulk']]);
  local.on('error', () => undefined);
  const remote = await atServer.next;
  const data = randomBytes(BULK_BYTES);
  const received = createHash('sha256');
  remote.on('data', (chunk: Buffer) => received.update(chunk));
  const ended = once(remote, 'end');
  local.end(data);
  await ended;
  return { remote, sent: createHash('sha256').update(data).digest('hex'), received: received.digest('hex') };
}

test('a bulk stream on a path with a long round trip grows its window beyond the initial one', { timeout: 120_000 }, async (t) => {
  const { server, clientMux, atServer } = await connectedMuxes(t, 10);
  const { remote, sent, received } = await sendBulk(clientMux, atServer);
  assert.equal(received, sent);
  const rtt = (await server).rttMs;
  assert.ok((rtt ?? 0) >= WINDOW_GROWTH_MIN_RTT_MS, `round trip through the relay measured ${rtt} ms`);
  assert.ok(remote.windowBytes > INITIAL_WINDOW_BYTES, `window stayed at ${remote.windowBytes} bytes`);
  assert.ok(remote.windowBytes <= MAX_WINDOW_BYTES, `window grew past its maximum: ${remote.windowBytes}`);
});

test('on plain loopback a bulk stream keeps the initial window', { timeout: 120_000 }, async (t) => {
  const { server, clientMux, atServer } = await connectedMuxes(t, 0);
  const { remote, sent, received } = await sendBulk(clientMux, atServer);
  assert.equal(received, sent);
  const rtt = (await server).rttMs;
  assert.ok(rtt !== undefined, 'no round trip was timed while data flowed');
  // The rule is about the measured round trip; a machine so loaded that loopback takes longer proves nothing here.
  if (rtt < WINDOW_GROWTH_MIN_RTT_MS) assert.equal(remote.windowBytes, INITIAL_WINDOW_BYTES);
});

test('a path quick during the handshake keeps the initial window when Pings later wait behind data', { timeout: 120_000 }, async (t) => {
  // Every chunk after the handshake waits 10 ms, as a Ping queued behind bulk bytes would: the Pings alone would
  // measure a long path and grow the window, lengthening the very queue they measured.
  const { server, clientMux, atServer } = await connectedMuxes(t, 10, 8 * 1024);
  const { remote, sent, received } = await sendBulk(clientMux, atServer);
  assert.equal(received, sent);
  const rtt = (await server).rttMs;
  // A Ping's round trip here is at least the 10 ms every chunk waits: less means the handshake's was kept.
  assert.ok(rtt !== undefined && rtt < 10, `the handshake's round trip was not kept: ${rtt} ms`);
  // As above, a machine so loaded that the handshake itself took longer than the growth threshold proves nothing.
  if (rtt < WINDOW_GROWTH_MIN_RTT_MS) assert.equal(remote.windowBytes, INITIAL_WINDOW_BYTES);
});
