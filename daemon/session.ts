// One client's session on the daemon: takes its packets (a dispatch table; anything else is a protocol error),
// keeps the streams a Start will claim, and drives the Runner the Launcher readies, answering Start, StageEnd and
// Exit through a narrow channel. It never touches processes or wire bytes. When the connection goes, so does all.
//
//   waiting --Start--> preparing --readied--> starting --runs--> running --ended, outputs out--> exited
//      ^                  |       \              |                 ^
//      +---- refused -----+--------\-------------+                 |
//                                   +--part readied--> ready --Go--+   (any state) --connection closed--> closed
//
// A part of a recipe across machines (Start kind=part, PROTOCOL.md 7.8) waits in `ready` for its controller's Go,
// taking EdgeConnect and MintKey kind=edge meanwhile. A session on an edge key takes one Start kind=edge, whose
// stream it hands to the part that reads the edge, and its EdgeDigest.

import {
  asNetplumbError,
  BadRequestError,
  NotPermittedError,
  RequestError,
  TooManyStreamsError,
  UnexpectedPacketError,
  type NetplumbError,
} from '../protocol/errors.js';
import {
  decodeEdgeConnect,
  decodeEdgeDigest,
  decodeEdgeMintRequest,
  decodeEdgeRequest,
  decodeRemoteStageEnd,
  encodeEdgeConnectReply,
  encodeEdgeDigest,
  encodeEdgeProgress,
  encodeEdgeReport,
  encodeStreamDigest,
  type EdgeProgress,
  type EdgeReport,
  type StreamDigest,
} from '../protocol/multi-host.js';
import type { Entry, FieldList } from '../protocol/fields.js';
import type { Mux, MuxStream, SessionHandler } from '../protocol/mux.js';
import {
  decodeMintRequest,
  decodeResize,
  decodeSignal,
  decodeStartRequest,
  encodeExit,
  encodeMintReply,
  encodeStageBytes,
  encodeStageEnd,
  encodeStartReply,
  type ExitStatus,
  type ForwardableSignal,
  type MintRequest,
  type StageBytes,
  type StageEnd,
  type StartRequest,
} from '../protocol/session.js';
import { StateMachine, type TransitionTable } from '../protocol/state-machine.js';
import { EdgeConnectStatus, EdgeRoute, EdgeStatus, Field, MintStatus, PacketType, StartKind, StartStatus, StreamPurpose } from '../protocol/wire.js';
import type { EdgeLink } from '../bridges/edge-dial.js';
import { PartRunner, type InboundEdge } from './part-runner.js';
import type { SessionLauncher } from './session-launcher.js';
import type { Logger } from './log.js';
import type { Launch, Launcher, SessionStreams } from './runner.js';
import { errorReply } from '../protocol/error-reply.js';

/**
 * Streams a session keeps open before its Start claims them: the three a Start names (stdin, stdout, stderr). plumb
 * opens exactly those; a client opening more before its Start is not plumb.
 */
export const MAX_UNCLAIMED_STREAMS = 3;

/** All a session says to its client: packets of fields. */
export interface SessionChannel {
  sendFields(type: PacketType, entries: Iterable<Entry>): void;
}

/** The channel of a connection's mux. */
export function muxChannel(mux: Mux): SessionChannel {
  return { sendFields: (type, entries) => mux.connection.sendFields(type, entries) };
}

export type SessionState = 'waiting' | 'preparing' | 'ready' | 'starting' | 'running' | 'exited' | 'closed';

const SESSION_MOVES: TransitionTable<SessionState> = {
  waiting: ['preparing', 'closed'],
  preparing: ['waiting', 'ready', 'starting', 'closed'],
  ready: ['starting', 'closed'],
  starting: ['waiting', 'running', 'closed'],
  running: ['exited', 'closed'],
  exited: ['closed'],
  closed: [],
};

export class Session implements SessionHandler {
  private readonly state: StateMachine<SessionState>;
  private mux: Mux | undefined;
  private channel: SessionChannel | undefined;
  private readonly pendingStreams = new Map<number, MuxStream>();
  /** What the accepted Start readied, from the end of preparing on. */
  private launched: Launch | undefined;
  private readonly handlers = new Map<PacketType, (fields: FieldList) => void>([
    [PacketType.Start, (fields) => this.start(fields)],
    [PacketType.Signal, (fields) => this.forwardSignal(fields)],
    [PacketType.Resize, (fields) => this.resize(fields)],
    [PacketType.MintKey, (fields) => this.mintKey(fields)],
    [PacketType.Go, () => this.go()],
    [PacketType.RemoteStageEnd, (fields) => this.remoteStageEnd(fields)],
    [PacketType.EdgeConnect, (fields) => this.edgeConnect(fields)],
    [PacketType.EdgeDigest, (fields) => this.edgeDigest(fields)],
  ]);
  /** A part readied and held for Go: its streams wait here. */
  private held: { launch: Launch; streams: SessionStreams } | undefined;
  /** An edge session's edge, once its Start was taken. */
  private inbound: InboundEdge | undefined;
  private resolveDone: () => void = () => undefined;
  /** How the connection ended: undefined after an orderly Goodbye. */
  closeError: NetplumbError | undefined;
  /** Settles once the connection has closed and no process of the session is left. */
  readonly done: Promise<void>;

  constructor(
    private readonly log: Logger,
    private readonly launcher: Launcher,
  ) {
    this.state = new StateMachine('session', 'waiting', SESSION_MOVES, (machine, from, to) => log.warn('illegal state move refused', { machine, from, to }));
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  attach(mux: Mux, channel: SessionChannel = muxChannel(mux)): void {
    this.mux = mux;
    this.channel = channel;
  }

  /** A Start is being readied or its command runs. */
  get running(): boolean {
    return this.state.is('preparing', 'ready', 'starting', 'running');
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
    if (this.state.is('running') && this.launched?.endpoints.route(stream, fields) === true) return;
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
    const handler = this.handlers.get(type);
    if (handler === undefined) throw new UnexpectedPacketError(`packet type ${type} not expected by the daemon`);
    handler(fields);
  }

  closed(error: NetplumbError | undefined): void {
    this.closeError = error;
    const wasRunning = this.running;
    // While a Start is readied, its end (launched or failed) lets go of what it made.
    const wasPreparing = this.state.is('preparing');
    this.state.move('closed');
    this.launched?.endpoints.close();
    for (const stream of this.pendingStreams.values()) stream.destroy();
    this.pendingStreams.clear();
    if (error !== undefined) this.log.info('connection closed', { code: error.code, reason: error.message });
    const runner = this.launched?.runner;
    if (runner instanceof PartRunner) (this.launcher as SessionLauncher).release(runner);
    // An edge's stream is left alone: one that arrived whole drains into its pipe; the mux has ended any other.
    if (!wasPreparing) this.endRun(wasRunning ? 'connection closed while the command ran' : undefined);
  }

  /** Ends what the Start runs (SIGTERM, SIGKILL after the grace period), as at shutdown; nothing while it is readied. */
  endProcessGroup(reason: string | undefined): void {
    if (!this.state.is('preparing')) this.endRun(reason);
  }

  private endRun(reason: string | undefined): void {
    const runner = this.launched?.runner;
    if (runner === undefined) {
      this.resolveDone();
      return;
    }
    void runner.abort(reason).then(() => this.resolveDone());
  }

  private start(fields: FieldList): void {
    if (fields.optional(Field.kind) === StartKind.Edge) {
      this.startEdge(fields);
      return;
    }
    let request: StartRequest;
    let streams: SessionStreams | undefined;
    try {
      if (!this.state.is('waiting')) throw new BadRequestError('one command per connection');
      request = decodeStartRequest(fields);
      streams = this.claimStreams(request);
      this.launcher.check(request);
    } catch (error) {
      // Streams the refused request named (those it could claim) are of no more use.
      for (const stream of Object.values(streams ?? {})) stream.destroy();
      this.refuse(asNetplumbError(error));
      return;
    }
    // Preparing from here on, so a second Start is refused while the account, pipes and sockets are readied.
    this.state.move('preparing');
    const claimed = streams;
    const context = {
      mux: this.mux as Mux,
      cancelled: () => this.state.is('closed'),
      stageEnded: (end: StageEnd) => this.stageEnded(end),
      stageBytes: (bytes: StageBytes) => {
        if (this.state.is('running')) this.channel?.sendFields(PacketType.StageBytes, encodeStageBytes(bytes));
      },
      edgeReport: (report: EdgeReport) => this.edgeReport(report),
      edgeProgress: (progress: EdgeProgress) => {
        if (this.state.is('running')) this.channel?.sendFields(PacketType.EdgeProgress, encodeEdgeProgress(progress));
      },
      streamDigest: (digest: StreamDigest) => {
        if (this.state.is('running')) this.channel?.sendFields(PacketType.StreamDigest, encodeStreamDigest(digest));
      },
    };
    this.launcher.launch(request, context).then(
      (launch) => this.run(launch, claimed),
      (error: unknown) => this.startFailed(asNetplumbError(error), claimed),
    );
  }

  private run(launch: Launch, streams: SessionStreams): void {
    this.launched = launch;
    if (this.state.is('closed')) {
      // The connection went while the Start was readied: a part it held is let go, with its keys.
      if (launch.runner instanceof PartRunner) (this.launcher as SessionLauncher).release(launch.runner);
      launch.endpoints.close();
      for (const stream of Object.values(streams)) stream.destroy();
      void launch.runner.abort('connection closed during start').then(() => this.resolveDone());
      return;
    }
    if (launch.runner instanceof PartRunner) {
      // A part is readied and held: nothing runs before the controller's Go.
      this.state.move('ready');
      this.held = { launch, streams };
      this.channel?.sendFields(PacketType.Start, encodeStartReply({ status: StartStatus.Ready }));
      return;
    }
    this.state.move('starting');
    const started = (): void => {
      if (this.state.is('closed')) return;
      this.state.move('running');
      this.channel?.sendFields(PacketType.Start, encodeStartReply({ status: StartStatus.Started }));
    };
    this.startRunner(launch, streams, started);
  }

  /** Starts what the Start readied; its end is the session's Exit, its refusal the Start's. */
  private startRunner(launch: Launch, streams: SessionStreams, started: () => void): void {
    launch.runner.start(streams, started).then(
      () => void launch.runner.outcome.then((status) => this.exited(status, streams.stdin)),
      (error: unknown) => this.startFailed(asNetplumbError(error), streams),
    );
  }

  /** Pipes, sockets or a process could not be made: the Start is refused and the session waits for another. */
  private startFailed(error: NetplumbError, streams: SessionStreams): void {
    this.launched?.endpoints.close();
    this.launched = undefined;
    for (const stream of Object.values(streams)) stream.destroy();
    if (this.state.is('closed')) {
      this.resolveDone();
      return;
    }
    this.state.move('waiting');
    this.refuse(error);
  }

  /** The controller's Go: the held part's commands start. */
  private go(): void {
    const held = this.held;
    if (!this.state.is('ready') || held === undefined) throw new UnexpectedPacketError('Go without a part ready');
    this.held = undefined;
    this.state.move('starting');
    this.startRunner(held.launch, held.streams, () => this.state.move('running'));
  }

  private remoteStageEnd(fields: FieldList): void {
    const stage = decodeRemoteStageEnd(fields);
    const runner = this.launched?.runner;
    if (!(runner instanceof PartRunner)) throw new UnexpectedPacketError('RemoteStageEnd without a part');
    runner.foreignStageEnded(stage);
  }

  /** The controller's EdgeConnect: this daemon connects an edge its commands write to the daemon that reads it. */
  private edgeConnect(fields: FieldList): void {
    const request = decodeEdgeConnect(fields);
    const runner = this.launched?.runner;
    if (!this.state.is('ready') || !(runner instanceof PartRunner)) throw new UnexpectedPacketError('EdgeConnect without a part ready');
    const reply = (entries: Entry[]): void => {
      if (!this.state.is('closed')) this.channel?.sendFields(PacketType.EdgeConnect, entries);
    };
    const to = request.route === EdgeRoute.Direct ? `${request.host}:${request.port}` : 'the controller';
    const refused = (error: unknown): void => {
      const failure = asNetplumbError(error);
      this.log.warn('edge not connected', { edge: request.edge, to, code: failure.code, reason: failure.message });
      reply(encodeEdgeConnectReply({ edge: request.edge, status: EdgeConnectStatus.Refused, ...errorReply(failure, 'request') }));
    };
    try {
      runner.claimOutbound(request.edge);
    } catch (error) {
      refused(error);
      return;
    }
    let link: Promise<EdgeLink>;
    try {
      link = request.route === EdgeRoute.Controller ? Promise.resolve(this.relayedEdgeLink(request.edge)) : (this.launcher as SessionLauncher).connectEdge(runner, request);
    } catch (error) {
      // The relay's stream could not be opened (too many streams): refused, and the edge may be tried again.
      runner.dialFailed(request.edge);
      refused(error);
      return;
    }
    link.then(
      (link) => {
        if (this.state.is('closed') || !runner.addOutbound(request.edge, link)) {
          link.close();
          refused(new BadRequestError(`edge ${request.edge} was connected after its part moved on`));
          return;
        }
        this.log.info('edge connected', { edge: request.edge, to });
        reply(encodeEdgeConnectReply({ edge: request.edge, status: EdgeConnectStatus.Connected }));
      },
      (error: unknown) => {
        runner.dialFailed(request.edge);
        refused(error);
      },
    );
  }

  /**
   * An edge relayed through the controller (EdgeRoute.Controller): its bytes go on a stream this daemon opens on the
   * part's own connection, and its digest as an EdgeDigest there; the controller carries both on to the reader.
   */
  private relayedEdgeLink(edge: number): EdgeLink {
    const stream = (this.mux as Mux).openStream([
      [Field.purpose, StreamPurpose.Edge],
      [Field.edge, String(edge)],
    ]);
    stream.on('error', () => undefined);
    // The controller never writes on it.
    stream.resume();
    return {
      stream,
      sendDigest: (digest) => {
        if (!this.state.is('closed')) this.channel?.sendFields(PacketType.EdgeDigest, encodeEdgeDigest({ ...digest, edge }));
      },
      // The stream's end is the edge's end: the connection is the part's own and stays.
      finish: () => undefined,
      close: () => stream.destroy(),
    };
  }

  /** Start kind=edge on an edge key's session: its stream goes to the part that reads the edge here. */
  private startEdge(fields: FieldList): void {
    let stream: MuxStream | undefined;
    try {
      if (!this.state.is('waiting')) throw new BadRequestError('one edge per connection');
      const request = decodeEdgeRequest(fields);
      const found = this.pendingStreams.get(request.stdin);
      if (found === undefined || found.destroyed) throw new BadRequestError(`stream ${request.stdin} was not opened, or is closed`);
      stream = found;
      this.pendingStreams.delete(found.id);
      const inbound: InboundEdge = {
        stream: found,
        delivered: (report) => this.edgeDelivered(report),
      };
      (this.launcher as SessionLauncher).attachEdge(request, inbound);
      this.inbound = inbound;
    } catch (error) {
      stream?.destroy();
      this.refuse(asNetplumbError(error));
      return;
    }
    this.state.move('preparing');
    this.state.move('starting');
    this.state.move('running');
    // The edge's stream carries bytes one way: this end never writes.
    stream.end();
    this.channel?.sendFields(PacketType.Start, encodeStartReply({ status: StartStatus.Started }));
  }

  /** The writer's count and digest of the edge this session delivers. */
  private edgeDigest(fields: FieldList): void {
    const digest = decodeEdgeDigest(fields);
    if (this.inbound === undefined) throw new UnexpectedPacketError('EdgeDigest outside an edge');
    this.inbound.digest = digest;
  }

  /** Every byte of the edge is in its reader's pipe (or it was cut short): the writer may close. */
  private edgeDelivered(report: EdgeReport & { direction: 'in' }): void {
    if (!this.state.is('running')) return;
    this.state.move('exited');
    this.channel?.sendFields(PacketType.Exit, encodeExit({ code: report.status === EdgeStatus.Intact ? 0 : 1 }));
  }

  /** A part's edge end, told to its controller. */
  private edgeReport(report: EdgeReport): void {
    if (this.state.is('running', 'starting', 'ready')) this.channel?.sendFields(PacketType.EdgeReport, encodeEdgeReport(report));
  }

  private stageEnded(end: StageEnd): void {
    if (this.state.is('running')) this.channel?.sendFields(PacketType.StageEnd, encodeStageEnd(end));
  }

  /** The command (or recipe) has ended and its output is out: once its out-FIFOs are flushed too, Exit goes. */
  private exited(status: ExitStatus, stdin: MuxStream): void {
    if (!this.state.is('running')) return;
    void (this.launched?.endpoints.flush() ?? Promise.resolve()).then(() => {
      if (!this.state.is('running')) return;
      this.state.move('exited');
      this.launched?.endpoints.close();
      if (!stdin.destroyed) stdin.destroy();
      this.channel?.sendFields(PacketType.Exit, encodeExit(status));
    });
  }

  /** A signal the daemon does not forward is a refused request, logged; the connection stays up. */
  private forwardSignal(fields: FieldList): void {
    let signal: ForwardableSignal;
    try {
      signal = decodeSignal(fields);
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      this.log.warn('signal refused', { code: error.code, reason: error.message });
      return;
    }
    if (this.state.is('running')) this.launched?.runner.signal(signal);
  }

  private resize(fields: FieldList): void {
    const { cols, rows } = decodeResize(fields);
    if (this.state.is('running')) this.launched?.runner.resize(cols, rows);
  }

  /** A controller's request for a one-time key, before any command starts; the launcher's policy decides. */
  private mintKey(fields: FieldList): void {
    const reply = (entries: Entry[]): void => this.channel?.sendFields(PacketType.MintKey, entries);
    const refuse = (error: unknown): void => {
      const failure = asNetplumbError(error);
      this.log.info('one-time key not minted', { code: failure.code, reason: failure.message });
      reply(encodeMintReply({ status: MintStatus.Refused, ...errorReply(failure, 'request') }));
    };
    if (fields.optional(Field.kind) === StartKind.Edge) {
      const runner = this.launched?.runner;
      try {
        if (!this.state.is('ready') || !(runner instanceof PartRunner)) throw new BadRequestError('an edge key is minted for a part readied on this connection');
        const key = (this.launcher as SessionLauncher).mintEdgeKey(runner, decodeEdgeMintRequest(fields));
        this.log.info('edge key minted', { run: runner.runId, key: key.fingerprint });
        reply(encodeMintReply({ status: MintStatus.Minted, key }));
      } catch (error) {
        refuse(error);
      }
      return;
    }
    const mint = this.launcher.mint;
    let request: MintRequest;
    try {
      if (mint === undefined) {
        throw new NotPermittedError('only a controller may mint one-time keys (its authorized-clients line needs the controller flag)');
      }
      if (!this.state.is('waiting')) throw new BadRequestError('a one-time key is minted before any command starts');
      request = decodeMintRequest(fields);
    } catch (error) {
      refuse(error);
      return;
    }
    mint(request, () => this.state.is('closed')).then((key) => reply(encodeMintReply({ status: MintStatus.Minted, key })), refuse);
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
    this.channel?.sendFields(PacketType.Start, encodeStartReply({ status: StartStatus.Refused, ...errorReply(error, 'request') }));
  }
}
