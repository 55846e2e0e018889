// One client's session on the daemon: maps its packets to what they ask (a dispatch table whose default is a
// protocol error), keeps the streams a Start will claim, asks the start policy whether a Start may run, hands it to
// a runner and reports how it ended. It never touches wire bytes nor a process; when the connection goes, every
// process of the session goes with it.
//
//   waiting ──Start──> preparing ──started──> running ──exit, outputs and out-FIFOs drained──> exited
//      ^                   │ refused                                                               │
//      └───────────────────┘              (any state) ──connection closed──> closed <──────────────┘

import {
  asNetplumbError,
  BadRequestError,
  NetplumbError,
  NotPermittedError,
  RequestError,
  TooManyStreamsError,
  UnexpectedPacketError,
} from '../protocol/errors.js';
import type { Entry, FieldList } from '../protocol/fields.js';
import type { Mux, MuxStream, SessionHandler } from '../protocol/mux.js';
import {
  decodeMintRequest,
  decodeResize,
  decodeSignal,
  decodeStartRequest,
  encodeExit,
  encodeMintReply,
  encodeStageEnd,
  encodeStartReply,
  type ExitStatus,
  type ForwardableSignal,
  type KeyBinding,
  type MintedKey,
  type MintRequest,
  type StageEnd,
  type StartRequest,
} from '../protocol/session.js';
import { StateMachine, type TransitionTable } from '../protocol/state-machine.js';
import { MintStatus, PacketType, StartKind, StartStatus } from '../protocol/wire.js';
import { CommandRunner } from './command-runner.js';
import { DaemonEndpoints } from './endpoints.js';
import type { Logger } from './log.js';
import { PtyRunner } from './pty-runner.js';
import { RecipeRunner } from './recipe-runner.js';
import type { Runner, SessionStreams } from './runner.js';
import type { Gluepot } from './gluepots.js';
import { checkRequest, prepareStart, type PreparedStart, type StartGrant } from './start-policy.js';
import { errorReply } from '../protocol/error-reply.js';

export type SessionState = 'waiting' | 'preparing' | 'running' | 'exited' | 'closed';

/** The session's legal moves; any other is refused and logged. */
export const SESSION_TRANSITIONS: TransitionTable<SessionState> = {
  waiting: ['preparing', 'closed'],
  preparing: ['waiting', 'running', 'closed'],
  running: ['exited', 'closed'],
  exited: ['closed'],
  closed: [],
};

/**
 * Streams a session keeps open before its Start claims them: the three a Start names (stdin, stdout, stderr). plumb
 * opens exactly those; a client opening more before its Start is not plumb.
 */
export const MAX_UNCLAIMED_STREAMS = 3;

/** Makes the runner for an accepted Start; `stageEnded` passes a recipe command's end on to the client. */
export type RunnerFactory = (prepared: PreparedStart, context: { log: Logger; killGraceMs: number; gluepot: Gluepot | undefined; stageEnded: (end: StageEnd) => void }) => Runner;

/** The runner each way of running needs: a recipe's, a terminal's, or a plain command's. */
export const defaultRunners: RunnerFactory = (prepared, { log, killGraceMs, gluepot, stageEnded }) => {
  const { request } = prepared;
  if (request.kind === StartKind.Recipe) return new RecipeRunner(log, { prepared, killGraceMs, gluepot, stageEnded });
  if (request.pty !== undefined) return new PtyRunner(log, { prepared, killGraceMs }, request.pty);
  return new CommandRunner(log, { prepared, killGraceMs });
};

export interface SessionOptions extends StartGrant {
  killGraceMs: number;
  /** How an accepted Start is run; the default runs real processes. */
  runners?: RunnerFactory;
  /** A controller's session: makes a one-time key for a binding already checked here. Absent: MintKey is refused. */
  mint?: (binding: KeyBinding & { user: string }, lifetimeSeconds: number) => MintedKey;
}

/** All a session says to its client: its own packets, nothing else of the connection. */
export interface SessionChannel {
  send(type: PacketType, entries: Entry[]): void;
}

/** The channel of a mux's connection. */
export function muxChannel(mux: Mux): SessionChannel {
  return { send: (type, entries) => mux.connection.sendFields(type, entries) };
}

type PacketHandler = (session: Session, fields: FieldList) => void;

/** What each packet a client may send asks of the session; a type not listed ends the connection. */
const DISPATCH: ReadonlyMap<PacketType, PacketHandler> = new Map<PacketType, PacketHandler>([
  [PacketType.Start, (session, fields) => session.start(fields)],
  [PacketType.Signal, (session, fields) => session.forwardSignal(fields)],
  [PacketType.Resize, (session, fields) => session.resize(fields)],
  [PacketType.MintKey, (session, fields) => session.mintKey(fields)],
]);

export class Session implements SessionHandler {
  private readonly state: StateMachine<SessionState>;
  private mux: Mux | undefined;
  private channel: SessionChannel = { send: () => undefined };
  private readonly pendingStreams = new Map<number, MuxStream>();
  private runner: Runner | undefined;
  private endpoints: DaemonEndpoints | undefined;
  private resolveDone: () => void = () => undefined;
  /** How the connection ended: undefined after an orderly Goodbye. */
  closeError: NetplumbError | undefined;
  /** Settles once the connection has closed and no process of the session is left. */
  readonly done: Promise<void>;

  constructor(
    private readonly log: Logger,
    private readonly options: SessionOptions,
  ) {
    this.state = new StateMachine('session', 'waiting', SESSION_TRANSITIONS, (machine, from, to) => log.warn('illegal state change refused', { machine, from, to }));
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  attach(mux: Mux, channel: SessionChannel = muxChannel(mux)): void {
    this.mux = mux;
    this.channel = channel;
  }

  /** A Start has been taken and its command (or recipe) has not ended yet. */
  get running(): boolean {
    return this.state.is('preparing', 'running');
  }

  /**
   * The command (or recipe) has ended and Exit has gone out, but the connection is still up: its client may still be
   * taking the rest of the out-FIFO rounds, and says Goodbye when it has everything.
   */
  get exitSent(): boolean {
    return this.state.is('exited');
  }

  /**
   * A stream the client opened: a round of an -infifo or a connection to a -local-socket's service once the command
   * runs, else one a Start will claim. Only a session waiting for its Start keeps unclaimed streams, at most
   * MAX_UNCLAIMED_STREAMS, each forgotten as soon as it closes: a client opening more loses its connection, and
   * one opening and closing streams in a loop holds nothing.
   */
  streamOpened(stream: MuxStream, fields: FieldList): void {
    stream.on('error', () => undefined);
    if (this.state.is('running') && this.endpoints?.route(stream, fields) === true) return;
    if (!this.state.is('waiting')) {
      // Nothing will ever claim it: a Start has been taken already (or the connection is going).
      stream.destroy();
      return;
    }
    // A stream the client closed is destroyed at once but says 'close' only a tick later, after the rest of the
    // packets that came with it: it is forgotten here, by its state.
    for (const [id, pending] of this.pendingStreams) if (pending.destroyed) this.pendingStreams.delete(id);
    if (this.pendingStreams.size >= MAX_UNCLAIMED_STREAMS) {
      stream.destroy();
      throw new TooManyStreamsError(`more than ${MAX_UNCLAIMED_STREAMS} streams opened and not claimed by a Start`);
    }
    this.pendingStreams.set(stream.id, stream);
  }

  packet(type: PacketType, fields: FieldList): void {
    const handle = DISPATCH.get(type);
    if (handle === undefined) throw new UnexpectedPacketError(`packet type ${type} not expected by the daemon`);
    handle(this, fields);
  }

  closed(error: NetplumbError | undefined): void {
    this.closeError = error;
    const wasRunning = this.running;
    const wasPreparing = this.state.is('preparing');
    this.state.move('closed');
    this.endpoints?.close();
    for (const stream of this.pendingStreams.values()) stream.destroy();
    this.pendingStreams.clear();
    if (error !== undefined) this.log.info('connection closed', { code: error.code, reason: error.message });
    // A Start being prepared sees the close at its next step, and lets go of what it made then.
    if (wasPreparing) return;
    if (this.runner === undefined) {
      this.resolveDone();
      return;
    }
    void this.runner.abort(wasRunning ? 'connection closed while the command ran' : undefined).then(() => this.resolveDone());
  }

  /** SIGTERM to every process of the running command (or recipe), SIGKILL after the grace period if any is left. */
  endProcesses(reason: string): void {
    if (this.state.is('running')) void this.runner?.abort(reason);
  }

  start(fields: FieldList): void {
    let request: StartRequest;
    let streams: SessionStreams | undefined;
    try {
      if (!this.state.is('waiting')) throw new BadRequestError('one command per connection');
      request = decodeStartRequest(fields);
      streams = this.claimStreams(request);
      checkRequest(request, this.options);
    } catch (error) {
      // Streams the refused request named (those it could claim) are of no more use.
      for (const stream of Object.values(streams ?? {})) stream.destroy();
      this.refuse(asNetplumbError(error));
      return;
    }
    // Preparing from here on, so a second Start is refused while the account, pipes and sockets are readied.
    this.state.move('preparing');
    void this.launch(request, streams);
  }

  /** The start policy, then the endpoints, then the runner; a failure at any step refuses the Start. */
  private async launch(request: StartRequest, streams: SessionStreams): Promise<void> {
    const abandoned = (): boolean => this.state.is('closed');
    let runner: Runner | undefined;
    try {
      const prepared = await prepareStart(request, this.options, abandoned);
      if (abandoned()) throw new BadRequestError('connection closed');
      this.log.info('running as', { user: prepared.identity.runAs.account.name, uid: prepared.identity.runAs.account.uid });
      const { gluepot } = this.options;
      this.endpoints = await DaemonEndpoints.prepare(request.endpoints, prepared.identity.spoolDir, this.mux as Mux, this.log, {
        identity: prepared.identity.runAs,
        ...(gluepot === undefined ? {} : { gluepot }),
      });
      if (abandoned()) throw new BadRequestError('connection closed');
      const makeRunner = this.options.runners ?? defaultRunners;
      runner = makeRunner(prepared, { log: this.log, killGraceMs: this.options.killGraceMs, gluepot: this.options.gluepot, stageEnded: (end) => this.stageEnded(end) });
      await runner.start();
    } catch (error) {
      this.endpoints?.close();
      this.endpoints = undefined;
      for (const stream of Object.values(streams)) stream.destroy();
      if (abandoned()) this.resolveDone();
      else {
        this.state.move('waiting');
        this.refuse(asNetplumbError(error));
      }
      return;
    }
    this.runner = runner;
    if (abandoned()) {
      // The connection went while the process (or the recipe's pipes) was being made.
      void runner.abort('connection closed during start').then(() => this.resolveDone());
      return;
    }
    this.state.move('running');
    this.channel.send(PacketType.Start, encodeStartReply({ status: StartStatus.Started }));
    runner.attach(streams);
    void runner.outcome.then((status) => this.exited(status, streams.stdin));
  }

  private stageEnded(end: StageEnd): void {
    if (this.state.is('running')) this.channel.send(PacketType.StageEnd, encodeStageEnd(end));
  }

  /** The command (or recipe) has ended and its output is out: once its out-FIFOs are flushed too, Exit goes. */
  private exited(status: ExitStatus, stdin: MuxStream): void {
    if (!this.state.is('running')) return;
    void (this.endpoints?.flush() ?? Promise.resolve()).then(() => {
      if (!this.state.is('running')) return;
      this.state.move('exited');
      this.endpoints?.close();
      if (!stdin.destroyed) stdin.destroy();
      this.channel.send(PacketType.Exit, encodeExit(status));
    });
  }

  /**
   * A controller's request for a one-time key: checked by the same start policy as a Start of the same command
   * (the account the client's line allows, a recipe's check, the gluepot), so a key never grants more than its
   * controller has.
   */
  mintKey(fields: FieldList): void {
    const reply = (entries: Entry[]): void => this.channel.send(PacketType.MintKey, entries);
    const refuse = (error: unknown): void => {
      const failure = asNetplumbError(error);
      this.log.info('one-time key not minted', { code: failure.code, reason: failure.message });
      reply(encodeMintReply({ status: MintStatus.Refused, ...errorReply(failure, 'request') }));
    };
    let request: MintRequest;
    try {
      if (this.options.mint === undefined) {
        throw new NotPermittedError('only a controller may mint one-time keys (its authorized-clients line needs the controller flag)');
      }
      if (!this.state.is('waiting')) throw new BadRequestError('a one-time key is minted before any command starts');
      request = decodeMintRequest(fields);
    } catch (error) {
      refuse(error);
      return;
    }
    const { binding } = request;
    const mint = this.options.mint;
    // The Start the key stands for, as its node will send it: no exported variables, streams not yet named.
    const asStart: StartRequest = { ...binding, env: [], stdin: 0, stdout: 0, stderr: 0 };
    prepareStart(asStart, this.options, () => this.state.is('closed')).then((prepared) => {
      const key = mint({ ...binding, user: prepared.identity.runAs.account.name }, request.lifetimeSeconds);
      reply(encodeMintReply({ status: MintStatus.Minted, key }));
    }, refuse);
  }

  resize(fields: FieldList): void {
    const { cols, rows } = decodeResize(fields);
    if (this.state.is('running')) this.runner?.resize(cols, rows);
  }

  /** A signal the daemon does not forward is a refused request, logged; the connection stays up. */
  forwardSignal(fields: FieldList): void {
    let signal: ForwardableSignal;
    try {
      signal = decodeSignal(fields);
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      this.log.warn('signal refused', { code: error.code, reason: error.message });
      return;
    }
    if (this.state.is('running')) this.runner?.signal(signal);
  }

  /** The three streams a Start names, taken all or none: a Start naming one it cannot have leaves the others. */
  private claimStreams(request: { stdin: number; stdout: number; stderr: number }): SessionStreams {
    const find = (id: number): MuxStream => {
      const stream = this.pendingStreams.get(id);
      if (stream === undefined || stream.destroyed) throw new BadRequestError(`stream ${id} was not opened, or is closed`);
      return stream;
    };
    const streams = { stdin: find(request.stdin), stdout: find(request.stdout), stderr: find(request.stderr) };
    if (new Set(Object.values(streams)).size !== 3) throw new BadRequestError('a Start names three different streams');
    for (const stream of Object.values(streams)) this.pendingStreams.delete(stream.id);
    return streams;
  }

  private refuse(error: NetplumbError): void {
    this.log.info('start refused', { code: error.code, reason: error.message });
    this.channel.send(PacketType.Start, encodeStartReply({ status: StartStatus.Refused, ...errorReply(error, 'request') }));
  }
}

