// The daemon's session alone, over an in-memory connection pair with a fake runner: packet dispatch, stream
// claiming, the start policy's refusals, the state machine and the end of the connection, with no process started.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { daemonAccount } from '../../daemon/accounts.js';
import { createLogger } from '../../daemon/log.js';
import type { Runner } from '../../daemon/runner.js';
import { MAX_UNCLAIMED_STREAMS, SESSION_TRANSITIONS, Session, type SessionOptions } from '../../daemon/session.js';
import type { PreparedStart } from '../../daemon/start-policy.js';
import { CommandNotFoundError, ErrorCode, isErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { decodeFields, encodeFields, type Entry, type FieldList } from '../../protocol/fields.js';
import { Mux, type MuxStream } from '../../protocol/mux.js';
import { NO_ENDPOINTS, decodeExit, decodeStartReply, encodeResize, encodeSignal, encodeStartRequest, type ExitStatus } from '../../protocol/session.js';
import { StateMachine } from '../../protocol/state-machine.js';
import { DEFAULT_LIMITS, Field, PacketType, StartKind, StartStatus } from '../../protocol/wire.js';
import { securePair } from '../helpers/duplex-pair.js';

/** A runner that starts nothing: it records what the session asks and ends when the test says. */
class FakeRunner implements Runner {
  readonly calls: string[] = [];
  private resolveOutcome: (status: ExitStatus) => void = () => undefined;
  readonly outcome: Promise<ExitStatus> = new Promise((resolve) => (this.resolveOutcome = resolve));
  constructor(
    readonly prepared: PreparedStart,
    private readonly failure?: NetplumbError,
  ) {}
  start(): Promise<void> {
    this.calls.push('start');
    return this.failure === undefined ? Promise.resolve() : Promise.reject(this.failure);
  }
  attach(): void {
    this.calls.push('attach');
  }
  signal(signal: string): void {
    this.calls.push(`signal ${signal}`);
  }
  resize(cols: number, rows: number): void {
    this.calls.push(`resize ${cols}x${rows}`);
  }
  abort(reason?: string): Promise<void> {
    this.calls.push(`abort ${reason ?? ''}`);
    this.resolveOutcome({ signal: 'SIGTERM' });
    return Promise.resolve();
  }
  end(status: ExitStatus): void {
    this.resolveOutcome(status);
  }
}

interface Harness {
  session: Session;
  runners: FakeRunner[];
  client: Mux;
  received: { type: PacketType; fields: FieldList }[];
  next(type: PacketType): Promise<FieldList>;
  logged: string[];
  clientClosed: Promise<NetplumbError | undefined>;
  start(argv?: string[]): void;
  closeClient(): void;
}

async function harness(t: TestContext, options: Partial<SessionOptions> & { failStart?: NetplumbError } = {}): Promise<Harness> {
  const spoolDir = mkdtempSync(join(tmpdir(), 'netplumb-session-'));
  t.after(() => rmSync(spoolDir, { recursive: true, force: true }));
  const logged: string[] = [];
  const log = createLogger('debug', new Writable({ write: (chunk: Buffer, _encoding, done) => (logged.push(chunk.toString()), done()) }));
  const runners: FakeRunner[] = [];
  const session = new Session(log, {
    killGraceMs: 1000,
    spoolDir,
    acceptEnv: [],
    accounts: { allowed: undefined, configured: daemonAccount().name },
    runners: (prepared) => {
      const runner = new FakeRunner(prepared, options.failStart);
      runners.push(runner);
      return runner;
    },
    ...options,
  });
  const { client, server, pair } = await securePair();
  t.after(() => pair.destroy());
  const muxOptions = { maxStreams: 16, initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes, maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes };
  const daemonMux = new Mux(server, { side: 'daemon', ...muxOptions }, session);
  session.attach(daemonMux);
  server.attach(daemonMux);
  const received: { type: PacketType; fields: FieldList }[] = [];
  let settleClosed: (error: NetplumbError | undefined) => void = () => undefined;
  const clientClosed = new Promise<NetplumbError | undefined>((resolve) => (settleClosed = resolve));
  const waiters: { type: PacketType; resolve: (fields: FieldList) => void }[] = [];
  const clientMux = new Mux(client, { side: 'client', ...muxOptions }, {
    packet: (type, fields) => {
      received.push({ type, fields });
      const waiter = waiters.findIndex((w) => w.type === type);
      if (waiter >= 0) waiters.splice(waiter, 1)[0]?.resolve(fields);
    },
    streamOpened: (stream: MuxStream) => stream.destroy(),
    closed: (error) => settleClosed(error),
  });
  client.attach(clientMux);
  const next = (type: PacketType): Promise<FieldList> => new Promise((resolve) => waiters.push({ type, resolve }));
  const start = (argv = ['true']): void => {
    const streams = ['stdin', 'stdout', 'stderr'].map((purpose) => clientMux.openStream([[Field.purpose, purpose]]));
    for (const stream of streams) stream.on('error', () => undefined);
    const [stdin, stdout, stderr] = streams.map((stream) => stream.id) as [number, number, number];
    client.sendFields(PacketType.Start, encodeStartRequest({ kind: StartKind.Exec, argv, env: [], endpoints: NO_ENDPOINTS, stdin, stdout, stderr }));
  };
  return { session, runners, client: clientMux, received, next, logged, clientClosed, start, closeClient: () => client.close() };
}

const fieldList = (entries: Entry[]): FieldList => decodeFields(encodeFields(entries));
const reply = (fields: FieldList) => decodeStartReply(fields, isErrorCode);

test('a Start is prepared by the policy, answered Started, and its Exit carries what the runner reports', async (t) => {
  const h = await harness(t);
  const started = h.next(PacketType.Start);
  h.start(['sh', '-c', 'exit 3']);
  assert.equal(reply(await started).status, StartStatus.Started);
  assert.equal(h.session.running, true);
  const runner = h.runners[0] as FakeRunner;
  assert.deepEqual(runner.calls, ['start', 'attach']);
  assert.equal(runner.prepared.identity.runAs.account.name, daemonAccount().name);
  assert.equal(runner.prepared.env['NETPLUMB_SPOOL'], runner.prepared.identity.spoolDir);
  const exit = h.next(PacketType.Exit);
  runner.end({ code: 3 });
  assert.deepEqual(decodeExit(await exit), { code: 3 });
  assert.equal(h.session.exitSent, true);
});

test('a runner that cannot start refuses the Start with its code, and the session takes another', async (t) => {
  const h = await harness(t, { failStart: new CommandNotFoundError('command not found: nosuch') });
  const refused = h.next(PacketType.Start);
  h.start(['nosuch']);
  const first = reply(await refused);
  assert.equal(first.status, StartStatus.Refused);
  assert.equal(first.status === StartStatus.Refused && first.code, ErrorCode.CommandNotFound);
  assert.equal(h.session.running, false);
  const again = h.next(PacketType.Start);
  h.start(['nosuch']);
  assert.equal(reply(await again).status, StartStatus.Refused);
  assert.equal(h.runners.length, 2);
});

test('an exported variable the daemon does not accept is refused before any runner is made', async (t) => {
  const h = await harness(t);
  const refused = h.next(PacketType.Start);
  const streams = ['stdin', 'stdout', 'stderr'].map(() => h.client.openStream());
  const [stdin, stdout, stderr] = streams.map((stream) => stream.id) as [number, number, number];
  h.client.connection.sendFields(PacketType.Start, encodeStartRequest({ kind: StartKind.Exec, argv: ['true'], env: [['SECRET', 'x']], endpoints: NO_ENDPOINTS, stdin, stdout, stderr }));
  const answer = reply(await refused);
  assert.equal(answer.status === StartStatus.Refused && answer.code, ErrorCode.EnvRefused);
  assert.equal(h.runners.length, 0);
});

test('a second Start while one runs is refused as a bad request', async (t) => {
  const h = await harness(t);
  const started = h.next(PacketType.Start);
  h.start();
  await started;
  const second = h.next(PacketType.Start);
  h.start();
  const answer = reply(await second);
  assert.equal(answer.status === StartStatus.Refused && answer.code, ErrorCode.BadRequest);
  assert.equal(h.runners.length, 1);
});

test('signals and window sizes reach the runner only while it runs', async (t) => {
  const h = await harness(t);
  const started = h.next(PacketType.Start);
  h.start();
  await started;
  h.session.packet(PacketType.Signal, fieldList(encodeSignal('SIGINT')));
  h.session.packet(PacketType.Resize, fieldList(encodeResize({ cols: 100, rows: 40 })));
  assert.deepEqual((h.runners[0] as FakeRunner).calls.slice(2), ['signal SIGINT', 'resize 100x40']);
});

test('a packet type the session does not handle fails with NP_UNEXPECTED_PACKET', async (t) => {
  const h = await harness(t);
  assert.throws(() => h.session.packet(PacketType.Exit, fieldList([])), { code: ErrorCode.UnexpectedPacket });
});

test(`more than ${MAX_UNCLAIMED_STREAMS} streams before a Start fail with NP_TOO_MANY_STREAMS`, async (t) => {
  const h = await harness(t);
  for (let i = 0; i <= MAX_UNCLAIMED_STREAMS; i++) h.client.openStream().on('error', () => undefined);
  await h.clientClosed;
  await h.session.done;
  assert.equal(h.session.closeError?.code, ErrorCode.TooManyStreams);
});

test('the connection closing while a command runs aborts its runner and settles done', async (t) => {
  const h = await harness(t);
  const started = h.next(PacketType.Start);
  h.start();
  await started;
  h.closeClient();
  await h.session.done;
  assert.deepEqual((h.runners[0] as FakeRunner).calls, ['start', 'attach', 'abort connection closed while the command ran']);
  assert.equal(h.session.running, false);
});

test('the session table refuses an illegal move and says so', () => {
  const reported: string[] = [];
  const machine = new StateMachine('session', 'exited', SESSION_TRANSITIONS, (name, from, to) => reported.push(`${name} ${from}->${to}`));
  assert.equal(machine.move('running'), false);
  assert.equal(machine.state, 'exited');
  assert.deepEqual(reported, ['session exited->running']);
  assert.equal(machine.move('closed'), true);
  assert.deepEqual(SESSION_TRANSITIONS.closed, []);
});
