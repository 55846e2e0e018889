// Tests for daemon/session over a real connection and mux on an in-memory pair, with a fake Launcher and Runner:
// the dispatch table, stream claiming, the Start and Exit replies, refusals, signals and the end of the connection.

import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { CommandNotFoundError, ErrorCode, isErrorCode, RequestError } from '../../protocol/errors.js';
import type { FieldList } from '../../protocol/fields.js';
import { Mux, type MuxOptions, type MuxStream, type SessionHandler } from '../../protocol/mux.js';
import { decodeExit, decodeStartReply, encodeSignal, encodeStartRequest, NO_ENDPOINTS, type ExitStatus, type ForwardableSignal, type StartReply } from '../../protocol/session.js';
import { DEFAULT_LIMITS, PacketType, StartKind, StartStatus } from '../../protocol/wire.js';
import { createLogger } from '../../daemon/log.js';
import type { Launch, Launcher, Runner, SessionStreams } from '../../daemon/runner.js';
import { MAX_UNCLAIMED_STREAMS, Session } from '../../daemon/session.js';
import { securePair } from '../helpers/duplex-pair.js';

/** Records the daemon's packets as the client's mux receives them. */
class ClientRecorder implements SessionHandler {
  readonly packets: [PacketType, FieldList][] = [];
  private waiters: (() => void)[] = [];

  packet(type: PacketType, fields: FieldList): void {
    this.packets.push([type, fields]);
    for (const wake of this.waiters.splice(0)) wake();
  }

  streamOpened(stream: MuxStream): void {
    stream.destroy();
  }

  closed(): void {}

  /** The fields of the next packet of this type not yet taken. */
  async next(type: PacketType, taken = 0): Promise<FieldList> {
    for (;;) {
      const found = this.packets.filter(([seen]) => seen === type)[taken];
      if (found !== undefined) return found[1];
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}

/** A runner that runs nothing: it starts (or refuses) as told and ends when the test says so. */
class FakeRunner implements Runner {
  readonly signals: ForwardableSignal[] = [];
  aborted: string | undefined | null = null;
  streams: SessionStreams | undefined;
  private resolveOutcome: (status: ExitStatus) => void = () => undefined;
  readonly outcome: Promise<ExitStatus>;

  constructor(private readonly refusal?: RequestError) {
    this.outcome = new Promise((resolve) => (this.resolveOutcome = resolve));
  }

  start(streams: SessionStreams, started: () => void): Promise<void> {
    if (this.refusal !== undefined) return Promise.reject(this.refusal);
    this.streams = streams;
    started();
    return Promise.resolve();
  }

  signal(signal: ForwardableSignal): void {
    this.signals.push(signal);
  }

  resize(): void {}

  abort(reason?: string): Promise<void> {
    this.aborted = reason;
    return Promise.resolve();
  }

  end(status: ExitStatus): void {
    this.streams?.stdout.end();
    this.streams?.stderr.end();
    this.resolveOutcome(status);
  }
}

class FakeLauncher implements Launcher {
  readonly mint = undefined;
  readonly launches: number[] = [];

  constructor(private readonly runner: FakeRunner) {}

  check(): void {}

  launch(): Promise<Launch> {
    this.launches.push(Date.now());
    return Promise.resolve({ runner: this.runner, endpoints: { route: () => false, flush: () => Promise.resolve(), close: () => undefined } });
  }
}

function muxOptions(side: MuxOptions['side']): MuxOptions {
  return { side, maxStreams: 16, initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes, maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes };
}

interface Setup {
  session: Session;
  runner: FakeRunner;
  launcher: FakeLauncher;
  clientMux: Mux;
  atClient: ClientRecorder;
  sendStart(streams: [number, number, number]): void;
  openStreams(count: number): MuxStream[];
}

/** A client and a daemon Session (with a fake runner) on an in-memory pair, torn down when the test ends. */
async function sessionPair(t: TestContext, runner = new FakeRunner()): Promise<Setup> {
  const { pair, client, server } = await securePair();
  t.after(() => pair.destroy());
  const launcher = new FakeLauncher(runner);
  const session = new Session(createLogger('error', new PassThrough()), launcher);
  const atClient = new ClientRecorder();
  const clientMux = new Mux(client, muxOptions('client'), atClient);
  const serverMux = new Mux(server, muxOptions('daemon'), session);
  session.attach(serverMux);
  client.attach(clientMux);
  server.attach(serverMux);
  const sendStart = ([stdin, stdout, stderr]: [number, number, number]): void =>
    client.sendFields(PacketType.Start, encodeStartRequest({ kind: StartKind.Exec, argv: ['true'], env: [], endpoints: NO_ENDPOINTS, stdin, stdout, stderr }));
  const openStreams = (count: number): MuxStream[] =>
    Array.from({ length: count }, () => clientMux.openStream().on('error', () => undefined));
  return { session, runner, launcher, clientMux, atClient, sendStart, openStreams };
}

function startReply(fields: FieldList): StartReply {
  return decodeStartReply(fields, isErrorCode);
}

test('a Start claiming three open streams is answered Started once the runner runs, and Exit carries its status', async (t) => {
  const { runner, atClient, sendStart, openStreams } = await sessionPair(t);
  const streams = openStreams(3).map((stream) => stream.id) as [number, number, number];
  sendStart(streams);
  assert.deepEqual(startReply(await atClient.next(PacketType.Start)), { status: StartStatus.Started });
  runner.end({ code: 3 });
  assert.deepEqual(decodeExit(await atClient.next(PacketType.Exit)), { code: 3 });
});

test('a Start naming a stream that was never opened is refused and the session waits for another', async (t) => {
  const { atClient, sendStart, openStreams, launcher } = await sessionPair(t);
  sendStart([1, 3, 5]);
  const refused = startReply(await atClient.next(PacketType.Start));
  assert.equal(refused.status, StartStatus.Refused);
  assert.equal(refused.status === StartStatus.Refused && refused.code, ErrorCode.BadRequest);
  assert.equal(launcher.launches.length, 0);
  sendStart(openStreams(3).map((stream) => stream.id) as [number, number, number]);
  assert.deepEqual(startReply(await atClient.next(PacketType.Start, 1)), { status: StartStatus.Started });
});

test('a runner that cannot start has its Start refused with the runner\'s code', async (t) => {
  const { atClient, sendStart, openStreams } = await sessionPair(t, new FakeRunner(new CommandNotFoundError('command not found: nope')));
  sendStart(openStreams(3).map((stream) => stream.id) as [number, number, number]);
  const refused = startReply(await atClient.next(PacketType.Start));
  assert.equal(refused.status === StartStatus.Refused && refused.code, ErrorCode.CommandNotFound);
});

test('a second Start on the same connection is refused', async (t) => {
  const { atClient, sendStart, openStreams } = await sessionPair(t);
  sendStart(openStreams(3).map((stream) => stream.id) as [number, number, number]);
  await atClient.next(PacketType.Start);
  sendStart([1, 3, 5]);
  const refused = startReply(await atClient.next(PacketType.Start, 1));
  assert.equal(refused.status === StartStatus.Refused && refused.code, ErrorCode.BadRequest);
});

test('a Signal is forwarded to the running runner', async (t) => {
  const { runner, clientMux, atClient, sendStart, openStreams } = await sessionPair(t);
  sendStart(openStreams(3).map((stream) => stream.id) as [number, number, number]);
  await atClient.next(PacketType.Start);
  clientMux.connection.sendFields(PacketType.Signal, encodeSignal('SIGINT'));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(runner.signals, ['SIGINT']);
});

test('a packet type the daemon does not expect ends the connection with NP_UNEXPECTED_PACKET', async (t) => {
  const { session, clientMux } = await sessionPair(t);
  clientMux.connection.sendFields(PacketType.Exit, [['code', '0']]);
  await session.done;
  assert.equal(session.closeError?.code, ErrorCode.UnexpectedPacket);
});

test('more streams than a Start can claim end the connection with NP_TOO_MANY_STREAMS', async (t) => {
  const { session, openStreams } = await sessionPair(t);
  openStreams(MAX_UNCLAIMED_STREAMS + 1);
  await session.done;
  assert.equal(session.closeError?.code, ErrorCode.TooManyStreams);
});

test('the connection closing while the command runs aborts the runner and settles done', async (t) => {
  const { session, runner, clientMux, atClient, sendStart, openStreams } = await sessionPair(t);
  sendStart(openStreams(3).map((stream) => stream.id) as [number, number, number]);
  await atClient.next(PacketType.Start);
  assert.equal(session.running, true);
  clientMux.connection.close();
  await session.done;
  assert.equal(runner.aborted, 'connection closed while the command ran');
});
