// Tests for protocol/mux over a SecureConnection on an in-memory pair: byte-exact streams, flow control that
// stops a sender at the peer's window and resumes it when the reader reads, EOF per direction apart from
// StreamClose, a peer that breaks the window or the stream rules, the stream limit, and round-robin fairness.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { describe, test, type TestContext } from 'node:test';
import type { ConnectionHandler, SecureConnection } from '../../protocol/connection.js';
import { ErrorCode, RemoteError, type NetplumbError } from '../../protocol/errors.js';
import type { FieldList } from '../../protocol/fields.js';
import { Mux, type MuxOptions, type MuxStream, type SessionHandler } from '../../protocol/mux.js';
import { resolveLimits } from '../../protocol/limits.js';
import { DEFAULT_LIMITS, Field, PacketType, STREAM_ID_BYTES } from '../../protocol/wire.js';
import { securePair, type DuplexPair } from '../helpers/duplex-pair.js';

/** Records what the mux hands to the session: peer-opened streams, other packets and the close. */
class SessionRecorder implements SessionHandler {
  readonly opened: MuxStream[] = [];
  readonly openFields: FieldList[] = [];
  readonly packets: [PacketType, FieldList][] = [];
  readonly ended: Promise<NetplumbError | undefined>;
  private resolveEnded: (error: NetplumbError | undefined) => void = () => undefined;
  private waiters: ((stream: MuxStream) => void)[] = [];

  constructor() {
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  packet(type: PacketType, fields: FieldList): void {
    this.packets.push([type, fields]);
  }

  streamOpened(stream: MuxStream, fields: FieldList): void {
    // A test that does not take a stream still must not leave an unhandled 'error' behind.
    stream.on('error', () => undefined);
    this.opened.push(stream);
    this.openFields.push(fields);
    this.waiters.shift()?.(stream);
  }

  closed(error: NetplumbError | undefined): void {
    this.resolveEnded(error);
  }

  /** The next stream the peer opens (or the first not yet taken). */
  nextOpened(taken: number): Promise<MuxStream> {
    const ready = this.opened[taken];
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

interface MuxPair {
  pair: DuplexPair;
  client: SecureConnection;
  server: SecureConnection;
  clientMux: Mux;
  serverMux: Mux;
  atClient: SessionRecorder;
  atServer: SessionRecorder;
}

interface MuxPairOptions {
  clientWindowBytes?: number;
  serverWindowBytes?: number;
  clientMaxStreams?: number;
  serverMaxStreams?: number;
}

function muxOptions(side: MuxOptions['side'], windowBytes: number, maxStreams: number): MuxOptions {
  return { side, maxStreams, initialWindowBytes: windowBytes, maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes };
}

/** A client and a daemon, each with a Mux attached, torn down when the test ends. */
async function muxPair(t: TestContext, options: MuxPairOptions = {}): Promise<MuxPair> {
  const clientWindow = options.clientWindowBytes ?? DEFAULT_LIMITS.initialWindowBytes;
  const serverWindow = options.serverWindowBytes ?? DEFAULT_LIMITS.initialWindowBytes;
  const { pair, client, server } = await securePair({
    client: { limits: resolveLimits({ initialWindowBytes: clientWindow }) },
    server: { limits: resolveLimits({ initialWindowBytes: serverWindow }) },
  });
  t.after(() => pair.destroy());
  const atClient = new SessionRecorder();
  const atServer = new SessionRecorder();
  const clientMux = new Mux(client, muxOptions('client', clientWindow, options.clientMaxStreams ?? 16), atClient);
  const serverMux = new Mux(server, muxOptions('daemon', serverWindow, options.serverMaxStreams ?? 16), atServer);
  client.attach(clientMux);
  server.attach(serverMux);
  return { pair, client, server, clientMux, serverMux, atClient, atServer };
}

/** Opens a stream from the client and returns both ends of it. */
async function clientStream(pair: MuxPair, purpose = 'test'): Promise<{ local: MuxStream; remote: MuxStream }> {
  const taken = pair.atServer.opened.length;
  const local = ignoreErrors(pair.clientMux.openStream([[Field.purpose, purpose]]));
  return { local, remote: await pair.atServer.nextOpened(taken) };
}

/**
 * Streams still open when a test's connection is torn down fail with NP_CONNECTION_LOST; a test that checks
 * errors listens itself, the others must not crash the runner with an unhandled 'error'.
 */
function ignoreErrors(stream: MuxStream): MuxStream {
  stream.on('error', () => undefined);
  return stream;
}

/** Everything a stream delivers until its end. */
async function readAll(stream: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(stream, 'end');
  return Buffer.concat(chunks);
}

interface WriteProgress {
  writtenBytes: number;
  waitingForDrain: boolean;
  maxWritableLength: number;
}

/** Writes data in chunks, honouring write()'s return value, then ends the stream. */
async function writeAll(stream: MuxStream, data: Buffer, chunkBytes: number, progress?: WriteProgress): Promise<void> {
  for (let offset = 0; offset < data.length; offset += chunkBytes) {
    const more = stream.write(data.subarray(offset, offset + chunkBytes));
    if (progress !== undefined) {
      progress.writtenBytes = Math.min(data.length, offset + chunkBytes);
      progress.maxWritableLength = Math.max(progress.maxWritableLength, stream.writableLength);
    }
    if (!more) {
      if (progress !== undefined) progress.waitingForDrain = true;
      await once(stream, 'drain');
      if (progress !== undefined) progress.waitingForDrain = false;
    }
  }
  stream.end();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Waits until a counter has stopped moving: unchanged over many consecutive samples and for a while, so a
 * process that was merely descheduled for a moment is not taken for a stalled flow.
 */
async function untilSteady(read: () => number, what: string): Promise<number> {
  let last = -1;
  let sameSamples = 0;
  let steadySince = Date.now();
  const deadline = Date.now() + 10_000;
  for (;;) {
    const now = read();
    if (now !== last) {
      last = now;
      sameSamples = 0;
      steadySince = Date.now();
    } else if (++sameSamples >= 20 && Date.now() - steadySince >= 200) {
      return now;
    }
    if (Date.now() > deadline) assert.fail(`${what} never stalled`);
    await sleep(10);
  }
}

function codeOf(error: unknown): string | undefined {
  return (error as { code?: string } | undefined)?.code;
}

function streamIdBytes(id: number): Buffer {
  const bytes = Buffer.alloc(STREAM_ID_BYTES);
  bytes.writeUInt32BE(id, 0);
  return bytes;
}

describe('stream multiplexer', () => {
  test('bytes cross a stream in both directions exactly as written', async (t) => {
    const pair = await muxPair(t);
    const { local, remote } = await clientStream(pair);
    const up = randomBytes(3 * 1024 * 1024 + 17);
    const down = randomBytes(1024 * 1024 + 5);
    const [atServer, atClient] = await Promise.all([readAll(remote), readAll(local), writeAll(local, up, 10_000), writeAll(remote, down, 65_537)]);
    assert.ok(atServer.equals(up), 'client to daemon bytes differ');
    assert.ok(atClient.equals(down), 'daemon to client bytes differ');
  });

  test('the fields of StreamOpen reach the peer, and ids are odd from the client and even from the daemon', async (t) => {
    const pair = await muxPair(t);
    const first = await clientStream(pair, 'stdin');
    const second = await clientStream(pair, 'stdout');
    assert.deepEqual([first.local.id, second.local.id], [1, 3]);
    assert.deepEqual([first.remote.id, second.remote.id], [1, 3]);
    assert.deepEqual(
      pair.atServer.openFields.map((fields) => fields.require(Field.purpose)),
      ['stdin', 'stdout'],
    );
    const fromDaemon = ignoreErrors(pair.serverMux.openStream([[Field.purpose, 'stderr']]));
    const atClient = await pair.atClient.nextOpened(0);
    assert.equal(fromDaemon.id, 2);
    assert.equal(atClient.id, 2);
  });

  test('a sender stops at the peer window while the reader does not read, and resumes when it reads', async (t) => {
    const windowBytes = 64 * 1024;
    const pair = await muxPair(t, { serverWindowBytes: windowBytes });
    const { local, remote } = await clientStream(pair);
    const data = randomBytes(2 * 1024 * 1024);
    const progress: WriteProgress = { writtenBytes: 0, waitingForDrain: false, maxWritableLength: 0 };
    const writing = writeAll(local, data, 16 * 1024, progress);
    const inTransit = await untilSteady(() => pair.pair.aToB.deliveredBytes, 'the sender');
    assert.equal(progress.waitingForDrain, true, 'the writer must be told to wait');
    const acceptedBound = windowBytes + local.writableHighWaterMark + 16 * 1024;
    assert.ok(progress.writtenBytes <= acceptedBound, `the writer got ${progress.writtenBytes} bytes accepted`);
    assert.ok(progress.maxWritableLength <= local.writableHighWaterMark + 16 * 1024, `sender queued ${progress.maxWritableLength} bytes`);
    assert.ok(remote.queuedReceiveBytes <= windowBytes, `receiver holds ${remote.queuedReceiveBytes} bytes`);
    assert.ok(inTransit <= windowBytes + 64 * 1024, `${inTransit} bytes crossed while the reader slept`);
    const received = readAll(remote);
    await writing;
    assert.ok((await received).equals(data));
  });

  test('with the smallest window and readers taking 100 bytes at a time, both directions arrive exactly', async (t) => {
    const windowBytes = 4096;
    const pair = await muxPair(t, { clientWindowBytes: windowBytes, serverWindowBytes: windowBytes });
    const { local, remote } = await clientStream(pair);
    const slowRead = async (stream: MuxStream): Promise<Buffer> => {
      const parts: Buffer[] = [];
      stream.on('readable', () => {
        for (let part = stream.read(100) as Buffer | null; part !== null; part = stream.read(Math.min(100, stream.readableLength)) as Buffer | null) {
          parts.push(part);
        }
      });
      await once(stream, 'end');
      return Buffer.concat(parts);
    };
    const up = randomBytes(300_000);
    const down = randomBytes(250_000);
    const [atServer, atClient] = await Promise.all([slowRead(remote), slowRead(local), writeAll(local, up, 7000), writeAll(remote, down, 5000)]);
    assert.ok(atServer.equals(up), 'client to daemon bytes differ');
    assert.ok(atClient.equals(down), 'daemon to client bytes differ');
  });

  test('many streams carry their own bytes at once', async (t) => {
    const pair = await muxPair(t);
    const streams = [];
    for (let i = 0; i < 8; i++) streams.push(await clientStream(pair, `s${i}`));
    const payloads = streams.map(() => randomBytes(200_000));
    const received = await Promise.all([
      ...streams.map(({ remote }) => readAll(remote)),
      ...streams.map(({ local }, i) => writeAll(local, payloads[i] as Buffer, 9000)),
    ]);
    streams.forEach((_, i) => assert.ok((received[i] as Buffer).equals(payloads[i] as Buffer), `stream ${i} differs`));
  });

  test('EOF in one direction leaves the other direction flowing', async (t) => {
    const pair = await muxPair(t);
    const { local, remote } = await clientStream(pair);
    local.end(Buffer.from('request'));
    assert.equal((await readAll(remote)).toString(), 'request');
    assert.equal(remote.writable, true, 'the daemon can still write after the client EOF');
    const reply = readAll(local);
    for (let i = 0; i < 10; i++) remote.write(Buffer.from(`reply ${i};`));
    remote.end();
    assert.equal((await reply).toString(), Array.from({ length: 10 }, (_, i) => `reply ${i};`).join(''));
    await until(() => pair.clientMux.openStreams === 0 && pair.serverMux.openStreams === 0, 'both sides to forget the stream');
  });

  test('StreamClose drops the stream on both sides, unlike EOF', async (t) => {
    const pair = await muxPair(t);
    const { local, remote } = await clientStream(pair);
    local.write(Buffer.from('partial'));
    let remoteEnded = false;
    remote.on('end', () => (remoteEnded = true));
    const remoteClosed = once(remote, 'close');
    await until(() => remote.queuedReceiveBytes > 0 || remote.readableLength > 0, 'the first bytes');
    local.destroy();
    await remoteClosed;
    assert.equal(remote.destroyed, true);
    assert.equal(remoteEnded, false, 'a dropped stream does not look like a clean EOF');
    assert.equal(pair.clientMux.openStreams, 0);
    assert.equal(pair.serverMux.openStreams, 0);
    assert.equal(pair.client.isOpen && pair.server.isOpen, true, 'the connection stays up');
  });

  test('a write to a stream the peer dropped fails, and the connection stays up', async (t) => {
    const pair = await muxPair(t);
    const { local, remote } = await clientStream(pair);
    remote.destroy();
    await once(local, 'close');
    assert.equal(local.destroyed, true);
    const next = await clientStream(pair);
    next.local.end(Buffer.from('still works'));
    assert.equal((await readAll(next.remote)).toString(), 'still works');
  });

  test('a peer that sends more than the window fails the connection with NP_WINDOW_EXCEEDED', async (t) => {
    const windowBytes = 4096;
    const { pair, client, server } = await securePair({ server: { limits: resolveLimits({ initialWindowBytes: windowBytes }) } });
    t.after(() => pair.destroy());
    const atServer = new SessionRecorder();
    server.attach(new Mux(server, muxOptions('daemon', windowBytes, 16), atServer));
    client.attach(quietHandler());
    client.sendFields(PacketType.StreamOpen, [[Field.stream, '1']]);
    client.send(PacketType.StreamData, [streamIdBytes(1), Buffer.alloc(windowBytes - 100)]);
    client.send(PacketType.StreamData, [streamIdBytes(1), Buffer.alloc(101)]);
    assert.equal(codeOf(await atServer.ended), ErrorCode.WindowExceeded);
    assert.equal(atServer.opened[0]?.queuedReceiveBytes ?? 0, 0);
  });

  test('a peer that opens a stream with the wrong parity fails the connection with NP_UNEXPECTED_PACKET', async (t) => {
    const { pair, client, server } = await securePair();
    t.after(() => pair.destroy());
    const atServer = new SessionRecorder();
    server.attach(new Mux(server, muxOptions('daemon', DEFAULT_LIMITS.initialWindowBytes, 16), atServer));
    client.attach(quietHandler());
    client.sendFields(PacketType.StreamOpen, [[Field.stream, '2']]);
    assert.equal(codeOf(await atServer.ended), ErrorCode.UnexpectedPacket);
  });

  test('a peer that reuses a stream id fails the connection with NP_UNEXPECTED_PACKET', async (t) => {
    const { pair, client, server } = await securePair();
    t.after(() => pair.destroy());
    const atServer = new SessionRecorder();
    server.attach(new Mux(server, muxOptions('daemon', DEFAULT_LIMITS.initialWindowBytes, 16), atServer));
    client.attach(quietHandler());
    client.sendFields(PacketType.StreamOpen, [[Field.stream, '3']]);
    client.sendFields(PacketType.StreamOpen, [[Field.stream, '1']]);
    assert.equal(codeOf(await atServer.ended), ErrorCode.UnexpectedPacket);
    assert.equal(atServer.opened.length, 1);
  });

  test('data for a stream that was never opened fails the connection with NP_UNEXPECTED_PACKET', async (t) => {
    const { pair, client, server } = await securePair();
    t.after(() => pair.destroy());
    const atServer = new SessionRecorder();
    server.attach(new Mux(server, muxOptions('daemon', DEFAULT_LIMITS.initialWindowBytes, 16), atServer));
    client.attach(quietHandler());
    client.send(PacketType.StreamData, [streamIdBytes(5), Buffer.from('x')]);
    assert.equal(codeOf(await atServer.ended), ErrorCode.UnexpectedPacket);
  });

  test('data after EOF on a stream fails the connection with NP_UNEXPECTED_PACKET', async (t) => {
    const { pair, client, server } = await securePair();
    t.after(() => pair.destroy());
    const atServer = new SessionRecorder();
    server.attach(new Mux(server, muxOptions('daemon', DEFAULT_LIMITS.initialWindowBytes, 16), atServer));
    client.attach(quietHandler());
    client.sendFields(PacketType.StreamOpen, [[Field.stream, '1']]);
    client.sendFields(PacketType.StreamEof, [[Field.stream, '1']]);
    client.send(PacketType.StreamData, [streamIdBytes(1), Buffer.from('late')]);
    assert.equal(codeOf(await atServer.ended), ErrorCode.UnexpectedPacket);
  });

  test('opening more streams than maxStreams is refused locally with NP_TOO_MANY_STREAMS', async (t) => {
    const pair = await muxPair(t, { clientMaxStreams: 2 });
    ignoreErrors(pair.clientMux.openStream());
    ignoreErrors(pair.clientMux.openStream());
    assert.throws(() => pair.clientMux.openStream(), (error) => codeOf(error) === ErrorCode.TooManyStreams);
  });

  test('a stream beyond the peer maxStreams is refused with NP_TOO_MANY_STREAMS and the others keep working', async (t) => {
    const pair = await muxPair(t, { serverMaxStreams: 2 });
    const first = await clientStream(pair);
    await clientStream(pair);
    const refused = pair.clientMux.openStream();
    const [error] = (await once(refused, 'error')) as [unknown];
    assert.ok(error instanceof RemoteError);
    assert.equal(error.code, ErrorCode.TooManyStreams);
    assert.equal(pair.atServer.opened.length, 2);
    first.local.end(Buffer.from('still here'));
    assert.equal((await readAll(first.remote)).toString(), 'still here');
  });

  test('a closed stream frees its place under maxStreams', async (t) => {
    const pair = await muxPair(t, { serverMaxStreams: 1, clientMaxStreams: 1 });
    const first = await clientStream(pair);
    first.local.destroy();
    await once(first.remote, 'close');
    const second = await clientStream(pair);
    second.local.end(Buffer.from('second'));
    assert.equal((await readAll(second.remote)).toString(), 'second');
  });

  test('a small message on one stream overtakes a flood on another', async (t) => {
    const pair = await muxPair(t);
    const flood = await clientStream(pair, 'flood');
    const small = await clientStream(pair, 'small');
    const floodBytes = 16 * 1024 * 1024;
    let floodReceived = 0;
    let floodAtMessage = -1;
    flood.remote.on('data', (chunk: Buffer) => (floodReceived += chunk.length));
    const floodEnded = once(flood.remote, 'end');
    small.remote.on('data', () => {
      if (floodAtMessage < 0) floodAtMessage = floodReceived;
    });
    const writing = writeAll(flood.local, Buffer.alloc(floodBytes, 0x5a), 256 * 1024);
    await until(() => floodReceived >= 256 * 1024, 'the flood to start');
    small.local.write(Buffer.from('ping'));
    await until(() => floodAtMessage >= 0, 'the small message');
    await writing;
    await floodEnded;
    assert.equal(floodReceived, floodBytes);
    assert.ok(floodAtMessage < floodBytes / 2, `the message waited for ${floodAtMessage} flood bytes`);
  });

  test('small writes buffered while one is in flight leave together in one packet, in order', async (t) => {
    const pair = await muxPair(t);
    const { local, remote } = await clientStream(pair);
    let dataPackets = 0;
    const deliver = pair.serverMux.packet.bind(pair.serverMux);
    pair.serverMux.packet = (type, payload, payloadBytes) => {
      if (type === PacketType.StreamData) dataPackets++;
      deliver(type, payload, payloadBytes);
    };
    const received = readAll(remote);
    const data = randomBytes(64 * 1024);
    // One synchronous burst: each write that finds one in flight waits in the stream's buffer, and those waiting
    // are queued together (one packet each would make 64).
    for (let offset = 0; offset < data.length; offset += 1024) local.write(data.subarray(offset, offset + 1024));
    local.end();
    assert.deepEqual(await received, data);
    assert.ok(dataPackets <= 32, `64 writes of 1 KiB took ${dataPackets} packets`);
  });

  test('an interactive stream is sent ahead of bulk streams that wait with full windows', async (t) => {
    const pair = await muxPair(t, { serverWindowBytes: 4 * 1024 * 1024 });
    const bulk = await Promise.all(Array.from({ length: 6 }, () => clientStream(pair, 'bulk')));
    const keys = await clientStream(pair, 'keys');
    keys.local.interactive = true;
    const sentIds: number[] = [];
    const send = pair.client.send.bind(pair.client);
    pair.client.send = (type, payload) => {
      if (type === PacketType.StreamData) sentIds.push((Array.isArray(payload) ? (payload[0] as Buffer) : (payload as Buffer)).readUInt32BE(0));
      send(type, payload);
    };
    for (const { remote } of bulk) remote.resume();
    const writing = bulk.map(({ local }) => writeAll(local, Buffer.alloc(2 * 1024 * 1024, 0x42), 256 * 1024));
    await until(() => sentIds.length >= 12, 'the bulk streams to flow');
    const keyArrived = once(keys.remote, 'data');
    const sentBefore = sentIds.length;
    keys.local.write(Buffer.from('k'));
    await keyArrived;
    const bulkAhead = sentIds.slice(sentBefore, sentIds.indexOf(keys.local.id, sentBefore)).length;
    assert.equal(bulkAhead, 0, `${bulkAhead} bulk packets left between the key and its packet`);
    await Promise.all(writing);
  });

  test('non-stream packets go to the session handler with their fields', async (t) => {
    const pair = await muxPair(t);
    pair.client.sendFields(PacketType.Signal, [[Field.signal, 'SIGINT']]);
    await until(() => pair.atServer.packets.length === 1, 'the packet');
    const [type, fields] = pair.atServer.packets[0] as [PacketType, FieldList];
    assert.equal(type, PacketType.Signal);
    assert.equal(fields.require(Field.signal), 'SIGINT');
  });

  test('a connection that ends destroys its open streams with the reason', async (t) => {
    const pair = await muxPair(t);
    const { local } = await clientStream(pair);
    const failed = once(local, 'error');
    pair.pair.endTowards('a');
    const [error] = (await failed) as [unknown];
    assert.equal(codeOf(error), ErrorCode.ConnectionLost);
    assert.equal(codeOf(await pair.atClient.ended), ErrorCode.ConnectionLost);
    assert.throws(() => pair.clientMux.openStream(), (thrown) => codeOf(thrown) === ErrorCode.ConnectionLost);
  });
});

function quietHandler(): ConnectionHandler {
  return { packet: () => undefined, drain: () => undefined, closed: () => undefined };
}
