// Tests of the connection's and the streams' state machines: the states an orderly life passes through, the read
// and write halves of a stream apart (EOF is not close), no illegal move reported in ordinary use, and the tables
// refusing the moves they do not list.

import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { CONNECTION_MOVES, type ConnectionHandler, type ConnectionState, type SecureConnection } from '../../protocol/connection.js';
import { ErrorCode, TooManyStreamsError, type NetplumbError } from '../../protocol/errors.js';
import { Mux, READ_HALF_MOVES, WRITE_HALF_MOVES, type MuxStream, type ReadHalfState, type SessionHandler, type WriteHalfState } from '../../protocol/mux.js';
import { StateMachine } from '../../protocol/state-machine.js';
import { DEFAULT_LIMITS, Field, PacketType } from '../../protocol/wire.js';
import { securePair } from '../helpers/duplex-pair.js';

type Move = [machine: string, from: string, to: string];

/** Ends with the connection's close reason. */
class Ending implements ConnectionHandler, SessionHandler {
  readonly ended: Promise<NetplumbError | undefined>;
  readonly opened: MuxStream[] = [];
  private resolve: (error: NetplumbError | undefined) => void = () => undefined;
  constructor() {
    this.ended = new Promise((resolve) => (this.resolve = resolve));
  }
  packet(): void {}
  drain(): void {}
  streamOpened(stream: MuxStream): void {
    stream.on('error', () => undefined);
    this.opened.push(stream);
  }
  closed(error: NetplumbError | undefined): void {
    this.resolve(error);
  }
}

/** A connected pair whose illegal moves, on either side, land in `moves`. */
async function watchedPair(t: TestContext): Promise<{ client: SecureConnection; server: SecureConnection; moves: Move[] }> {
  const moves: Move[] = [];
  const reportIllegalMove = (machine: string, from: string, to: string): void => void moves.push([machine, from, to]);
  const { pair, client, server } = await securePair({ client: { reportIllegalMove }, server: { reportIllegalMove } });
  t.after(() => pair.destroy());
  return { client, server, moves };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function muxOn(connection: SecureConnection, side: 'client' | 'daemon', session: Ending): Mux {
  const options = { side, maxStreams: 16, initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes, maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes };
  const mux = new Mux(connection, options, session);
  connection.attach(mux);
  return mux;
}

describe('connection states', () => {
  test('an orderly close takes the closing side through goodbye-sent and the other through goodbye-received to closed', async (t) => {
    const { client, server, moves } = await watchedPair(t);
    const atClient = new Ending();
    const atServer = new Ending();
    client.attach(atClient);
    server.attach(atServer);
    assert.deepEqual([client.connectionState, server.connectionState], ['open', 'open']);
    void client.close();
    assert.equal(client.connectionState, 'goodbye-sent');
    await until(() => server.connectionState !== 'open', "the daemon's answer");
    assert.ok((['goodbye-received', 'closed'] as ConnectionState[]).includes(server.connectionState));
    assert.deepEqual(await Promise.all([atClient.ended, atServer.ended]), [undefined, undefined]);
    assert.deepEqual([client.connectionState, server.connectionState], ['closed', 'closed']);
    assert.deepEqual(moves, []);
  });

  test('a failure closes both sides and reports no illegal move', async (t) => {
    const { client, server, moves } = await watchedPair(t);
    const atClient = new Ending();
    const atServer = new Ending();
    client.attach(atClient);
    server.attach(atServer);
    server.fail(new TooManyStreamsError('refused'), true);
    assert.equal((await atClient.ended)?.code, ErrorCode.TooManyStreams);
    client.fail(new TooManyStreamsError('again'));
    assert.deepEqual([client.connectionState, server.connectionState], ['closed', 'closed']);
    assert.deepEqual(moves, []);
  });

  test('the table refuses to leave closed or to go back to handshaking, and reports the attempt', () => {
    const moves: Move[] = [];
    const machine = new StateMachine<ConnectionState>('connection', 'open', CONNECTION_MOVES, (name, from, to) => void moves.push([name, from, to]));
    assert.equal(machine.move('handshaking'), false);
    assert.equal(machine.move('closed'), true);
    assert.equal(machine.move('open'), false);
    assert.equal(machine.state, 'closed');
    assert.deepEqual(moves, [['connection', 'open', 'handshaking'], ['connection', 'closed', 'open']]);
  });
});

describe('stream halves', () => {
  test('a stream that sent its EOF still reads: its write half is eof-sent and its read half open', async (t) => {
    const { client, server, moves } = await watchedPair(t);
    const clientMux = muxOn(client, 'client', new Ending());
    const atServer = new Ending();
    muxOn(server, 'daemon', atServer);
    const local = clientMux.openStream([[Field.purpose, 'test']]);
    local.end();
    await until(() => atServer.opened.length === 1 && atServer.opened[0]?.readState === 'eof-received', "the daemon's read half at EOF");
    assert.deepEqual([local.readState, local.writeState], ['open', 'eof-sent']);
    const remote = atServer.opened[0] as MuxStream;
    assert.equal(remote.writeState, 'open');
    remote.end(Buffer.from('reply after EOF'));
    const chunks: Buffer[] = [];
    for await (const chunk of local) chunks.push(chunk as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'reply after EOF');
    // Both halves at EOF: the stream is done, and Node's autoDestroy has closed it.
    assert.deepEqual([local.readState, local.writeState], ['closed', 'closed']);
    assert.deepEqual(moves, []);
  });

  test('a StreamClose from the peer closes both halves at once', async (t) => {
    const { client, server, moves } = await watchedPair(t);
    const clientMux = muxOn(client, 'client', new Ending());
    const atServer = new Ending();
    muxOn(server, 'daemon', atServer);
    const local = clientMux.openStream();
    local.on('error', () => undefined);
    await until(() => atServer.opened.length === 1, 'the stream at the daemon');
    atServer.opened[0]?.destroy();
    await until(() => local.writeState === 'closed', 'the StreamClose');
    assert.deepEqual([local.readState, local.writeState], ['closed', 'closed']);
    assert.deepEqual(moves, []);
  });

  test("a peer's second StreamEof is refused with NP_UNEXPECTED_PACKET and reports no illegal move", async (t) => {
    const { client, server, moves } = await watchedPair(t);
    client.attach(new Ending());
    const atServer = new Ending();
    muxOn(server, 'daemon', atServer);
    client.sendFields(PacketType.StreamOpen, [[Field.stream, '1']]);
    client.sendFields(PacketType.StreamEof, [[Field.stream, '1']]);
    client.sendFields(PacketType.StreamEof, [[Field.stream, '1']]);
    assert.equal((await atServer.ended)?.code, ErrorCode.UnexpectedPacket);
    assert.deepEqual(moves, []);
  });

  test('a half never reopens: after EOF or close the tables refuse open, and the refusal is reported', () => {
    const moves: Move[] = [];
    const report = (name: string, from: string, to: string): void => void moves.push([name, from, to]);
    const read = new StateMachine<ReadHalfState>('read half', 'open', READ_HALF_MOVES, report);
    const write = new StateMachine<WriteHalfState>('write half', 'open', WRITE_HALF_MOVES, report);
    assert.equal(read.move('eof-received'), true);
    assert.equal(read.move('open'), false);
    assert.equal(write.move('closed'), true);
    assert.equal(write.move('eof-sent'), false);
    assert.deepEqual(moves, [['read half', 'eof-received', 'open'], ['write half', 'closed', 'eof-sent']]);
  });

  test('a closed mux refuses new streams', async (t) => {
    const { client, server } = await watchedPair(t);
    const atClient = new Ending();
    const clientMux = muxOn(client, 'client', atClient);
    muxOn(server, 'daemon', new Ending());
    void client.close();
    await atClient.ended;
    assert.equal(clientMux.isConnectionClosed, true);
    assert.throws(() => clientMux.openStream(), { code: ErrorCode.ConnectionLost });
  });
});
