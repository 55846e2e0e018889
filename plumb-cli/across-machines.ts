// plumb -recipe=FILE for a recipe whose commands name machines (PROTOCOL.md 7.8): plumb is the controller. It
// connects to every machine, sends each its part (Start kind=part) and waits until all are ready; for each stream
// between machines (edge) it mints a one-time key on the reading machine and hands it, with that machine's host
// key, to the writing machine's daemon, which connects there itself: the bytes never pass through plumb. Only when
// every part is ready and every edge connected does it send Go everywhere. It relays each command's end to the other
// machines (the recipe's one order), and its status is the first failing command in recipe order across machines.
// A machine that fails or goes away ends every part everywhere; nothing has started anywhere unless all was accepted.
// With -relay, an edge whose writing daemon cannot reach the reading one is carried through plumb instead: the writer
// sends it on its part's connection, and plumb delivers it to the reader with the edge's key, digest and all.

import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { dialEdge, type EdgeLink } from '../bridges/edge-dial.js';
import { RunningDigest } from '../bridges/running-digest.js';
import { finished } from 'node:stream/promises';
import type { SecureConnection } from '../protocol/connection.js';
import { ConnectionLostError, DigestMismatchError, ErrorCode, isErrorCode, NetplumbError, RemoteError, UnexpectedPacketError, UsageError, asNetplumbError } from '../protocol/errors.js';
import { encodeFields, type FieldList } from '../protocol/fields.js';
import { resolveLimits } from '../protocol/limits.js';
import { formatPublicKeyLine } from '../protocol/keys.js';
import {
  decodeEdgeConnectReply,
  decodeEdgeDigest,
  decodeEdgeProgress,
  decodeEdgeReport,
  encodeEdgeConnect,
  encodeEdgeMintRequest,
  decodeStreamDigest,
  edgeVerdict,
  encodeRemoteStageEnd,
  type EdgeConnectReply,
  type EdgeDigest,
  type EdgeProgress,
  type EdgeReport,
  type StreamDigest,
} from '../protocol/multi-host.js';
import { Mux, type MuxOptions, type MuxStream, type SessionHandler } from '../protocol/mux.js';
import {
  decodeExit,
  decodeMintReply,
  decodeStageBytes,
  decodeStageEnd,
  decodeStartReply,
  encodeStartRequest,
  NO_ENDPOINTS,
  type ExitStatus,
  type ExportedEnv,
  type MintReply,
  type StageBytes,
  type StageEnd,
  type StartReply,
} from '../protocol/session.js';
import { DEFAULT_LIMITS, EdgeConnectStatus, EdgeRoute, EdgeStatus, Field, MAX_EDGE_RATE, MintStatus, PacketType, StartKind, StartStatus, StreamPurpose } from '../protocol/wire.js';
import { placementName, readsPlumbStdin, recipeStatus, type RecipePlan } from '../recipes/plan.js';
import type { LoadedRecipe } from './check-command.js';
import { placeEndpoints } from './endpoint-placement.js';
import { ClientEndpoints, joinEndpointOptions, NO_ENDPOINT_OPTIONS, type EndpointOptions } from './endpoints.js';
import { ProgressLine } from './progress.js';
import { StreamMeter, type StreamTotals } from './stream-meter.js';
import { exitStatusCode } from './exit-status.js';
import { connectToMachine, sayConnectionSummary, sayRunSummary } from './machine.js';
import { resolveMachine, type MachineSettings } from './host-config.js';
import { clientPaths, type Target } from './paths.js';
import { writeJsonReport, type RecipeArguments } from './recipe-command.js';
import { RecipeReport } from './recipe-report.js';

/** How long an edge key stays good at most: a run whose edges are not connected by then is refused anyway. */
const EDGE_KEY_SECONDS = 300;
/** How long plumb waits for a reading daemon's TCP connection when it relays an edge, as for its own connections. */
const RELAY_CONNECT_TIMEOUT_MS = 10_000;

/** plumb's stdin or stdout to one machine, as both ends counted it: `sent` by the sender, `received` by the other. */
export interface StdioCheck {
  stream: 'stdin' | 'stdout';
  machine: string;
  sent: { bytes: number; sha256: string } | undefined;
  received: { bytes: number; sha256: string } | undefined;
  status: EdgeStatus;
}

/** One machine of the run: the placements that name it, its connection and what its daemon has said. */
class MachinePart implements SessionHandler {
  mux: Mux | undefined;
  streams: { stdin: MuxStream; stdout: MuxStream; stderr: MuxStream } | undefined;
  private readonly waiting = { start: [] as Array<(reply: StartReply) => void>, mint: [] as Array<(reply: MintReply) => void> };
  private readonly edgeReplies = new Map<number, (reply: EdgeConnectReply) => void>();
  /** Edges this part's daemon sends through plumb (-relay): each stream as it opens, and the writer's digest. */
  private readonly relayStreams = new Map<number, (stream: MuxStream) => void>();
  /** The edges relayed from this part whose digest may still come: each takes one, before its stream ends. */
  private readonly relaying = new Set<number>();
  readonly relayDigests = new Map<number, EdgeDigest>();
  /** The named pipes and sockets replicated between plumb's machine and this one (-infifo, ... that attach here). */
  endpoints: ClientEndpoints | undefined;
  /** The daemon's count and digest of plumb's stdout it sent and of plumb's stdin it delivered. */
  readonly streamDigests = new Map<'stdin' | 'stdout', StreamDigest>();
  /** plumb's own count and digest of what it received on this part's stdout and sent on its stdin. */
  readonly local = { stdout: new RunningDigest(), stdin: new RunningDigest() };
  private resolveExit: (status: ExitStatus) => void = () => undefined;
  readonly exit: Promise<ExitStatus>;
  private resolveGone: (error: NetplumbError) => void = () => undefined;
  /** Settles with the reason when the connection ends before the part's Exit. */
  readonly gone: Promise<NetplumbError>;
  exited = false;

  constructor(
    readonly label: string,
    readonly target: Target,
    /** Where the other daemons reach this machine: where plumb does, unless -reach says otherwise. */
    readonly reachAt: { host: string; port: number },
    readonly placements: string[],
    /** The named pipes and sockets to replicate with this machine, as the options gave them. */
    readonly endpointOptions: EndpointOptions,
    /** The account its part runs as (-user, else the config's User); undefined: the daemon's choice. */
    readonly user: string | undefined,
    /** Bytes per second each way on the edges this machine writes (-limit-rate, else its LimitRate); undefined: none. */
    readonly limitRate: number | undefined,
    readonly connection: SecureConnection,
    private readonly events: {
      stageEnded: (part: MachinePart, end: StageEnd) => void;
      stageCounted: (bytes: StageBytes) => void;
      edgeReport: (part: MachinePart, report: EdgeReport) => void;
      /** Told of each stream of the part as it opens, for -progress. */
      observeStream?: MuxOptions['observeStream'];
      /** How much of an edge the part's daemon reads has arrived (-progress). */
      edgeProgress?: (part: MachinePart, progress: EdgeProgress) => void;
    },
  ) {
    this.exit = new Promise((resolve) => (this.resolveExit = resolve));
    this.gone = new Promise((resolve) => (this.resolveGone = resolve));
  }

  packet(type: PacketType, fields: FieldList): void {
    switch (type) {
      case PacketType.Start:
        this.waiting.start.shift()?.(decodeStartReply(fields, isErrorCode));
        return;
      case PacketType.MintKey:
        this.waiting.mint.shift()?.(decodeMintReply(fields, isErrorCode));
        return;
      case PacketType.EdgeConnect: {
        const reply = decodeEdgeConnectReply(fields, isErrorCode);
        this.edgeReplies.get(reply.edge)?.(reply);
        this.edgeReplies.delete(reply.edge);
        return;
      }
      case PacketType.StageEnd:
        this.events.stageEnded(this, decodeStageEnd(fields, isErrorCode));
        return;
      case PacketType.StageBytes:
        // As a StageEnd, only while the part runs; asked for only with a report, but unasked it still only tells counts.
        if (this.exited) throw new UnexpectedPacketError(`${this.label} sent StageBytes after its Exit`);
        this.events.stageCounted(decodeStageBytes(fields));
        return;
      case PacketType.EdgeDigest: {
        const digest = decodeEdgeDigest(fields);
        // Only for an edge plumb relays from this part, once, before its stream ends: nothing else is held.
        if (digest.edge === undefined || !this.relaying.delete(digest.edge)) throw new UnexpectedPacketError(`${this.label} sent an EdgeDigest for no edge plumb relays from it`);
        this.relayDigests.set(digest.edge, digest);
        return;
      }
      case PacketType.EdgeReport:
        this.events.edgeReport(this, decodeEdgeReport(fields));
        return;
      case PacketType.EdgeProgress:
        // Asked for only with -progress; a daemon that sends it unasked is still only telling a count.
        this.events.edgeProgress?.(this, decodeEdgeProgress(fields));
        return;
      case PacketType.StreamDigest: {
        const digest = decodeStreamDigest(fields);
        this.streamDigests.set(digest.stream, digest);
        return;
      }
      case PacketType.Exit:
        this.exited = true;
        this.resolveExit(decodeExit(fields));
        return;
      default:
        throw new UnexpectedPacketError(`packet type ${type} not expected from ${this.label}`);
    }
  }

  streamOpened(stream: MuxStream, fields: FieldList): void {
    stream.on('error', () => undefined);
    const edge = fields.optional(Field.purpose) === StreamPurpose.Edge ? fields.optionalInt(Field.edge, 0, 2 ** 31) : undefined;
    const waiting = edge === undefined ? undefined : this.relayStreams.get(edge);
    if (edge === undefined || waiting === undefined) {
      if (this.endpoints?.route(stream, fields) !== true) stream.destroy();
      return;
    }
    this.relayStreams.delete(edge);
    // plumb never writes on it.
    stream.end();
    waiting(stream);
  }

  closed(error: NetplumbError | undefined): void {
    this.resolveGone(error ?? new ConnectionLostError(`${this.label} closed the connection before its part ended`));
  }

  /** A reply to the request just sent, or the reason the connection went first. */
  private async replyTo<T>(queue: Array<(reply: T) => void>): Promise<T> {
    const reply = new Promise<T>((resolve) => queue.push(resolve));
    return Promise.race([reply, this.gone.then((error) => Promise.reject(error))]);
  }

  async startPart(job: { run: string; source: string; text: string; user?: string; env: ExportedEnv; progress?: boolean; countBytes?: boolean }): Promise<void> {
    const mux = new Mux(
      this.connection,
      {
        side: 'client',
        maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
        initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
        maxWindowBytes: DEFAULT_LIMITS.maxWindowBytes,
        maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
        ...(this.events.observeStream === undefined ? {} : { observeStream: this.events.observeStream }),
      },
      this,
    );
    this.mux = mux;
    this.connection.attach(mux);
    const open = (purpose: string): MuxStream => {
      const stream = mux.openStream([[Field.purpose, purpose]]);
      stream.on('error', () => undefined);
      return stream;
    };
    const streams = { stdin: open('stdin'), stdout: open('stdout'), stderr: open('stderr') };
    this.streams = streams;
    const request = encodeStartRequest({
      kind: StartKind.Part,
      ...job,
      machines: this.placements,
      endpoints: this.endpoints?.remote ?? NO_ENDPOINTS,
      stdin: streams.stdin.id,
      stdout: streams.stdout.id,
      stderr: streams.stderr.id,
    });
    const reply = this.replyTo(this.waiting.start);
    this.connection.send(PacketType.Start, encodeFields(request));
    streams.stdout.end();
    streams.stderr.end();
    const answer = await reply;
    if (answer.status === StartStatus.Refused) throw new RemoteError(answer.code, `${this.label}: ${answer.message}`);
    if (answer.status !== StartStatus.Ready) throw new UnexpectedPacketError(`${this.label} answered its part with ${answer.status}`);
  }

  async mintEdgeKey(run: string, edge: number): Promise<{ privateKeyPem: string }> {
    const reply = this.replyTo(this.waiting.mint);
    this.connection.sendFields(PacketType.MintKey, encodeEdgeMintRequest({ run, edge, lifetimeSeconds: EDGE_KEY_SECONDS }));
    const answer = await reply;
    if (answer.status === MintStatus.Refused) throw new RemoteError(answer.code, `${this.label} minted no key for edge ${edge}: ${answer.message}`);
    return answer.key;
  }

  async connectEdge(edge: number, reader: MachinePart, key: string): Promise<void> {
    const reply = new Promise<EdgeConnectReply>((resolve) => this.edgeReplies.set(edge, resolve));
    this.connection.sendFields(PacketType.EdgeConnect, encodeEdgeConnect({
        edge,
        route: EdgeRoute.Direct,
        host: reader.reachAt.host,
        port: reader.reachAt.port,
        hostKey: formatPublicKeyLine(reader.connection.peer.peer),
        key,
        ...(this.limitRate === undefined ? {} : { limitRate: Math.min(this.limitRate, MAX_EDGE_RATE) }),
      }));
    const answer = await Promise.race([reply, this.gone.then((error) => Promise.reject(error))]);
    if (answer.status === EdgeConnectStatus.Refused) {
      const hint = reader.reachAt === reader.target ? `; if ${this.label} reaches it at another address, say where with -reach=${reader.placements[0] ?? ''}=HOST[:PORT]` : '';
      throw new RemoteError(answer.code, `${this.label} cannot reach ${reader.label} (${reader.reachAt.host} port ${reader.reachAt.port}) for edge ${edge}: ${answer.message}${hint}`);
    }
  }

  /**
   * Asks this part's daemon to send edge `edge` to plumb; resolves with the stream it opened for it. The daemon
   * opens the stream before it replies, on the same connection: a `connected` with no stream is a broken daemon.
   */
  async relayEdge(edge: number): Promise<MuxStream> {
    let stream: MuxStream | undefined;
    this.relayStreams.set(edge, (opened) => (stream = opened));
    const reply = new Promise<EdgeConnectReply>((resolve) => this.edgeReplies.set(edge, resolve));
    this.relaying.add(edge);
    this.connection.sendFields(PacketType.EdgeConnect, encodeEdgeConnect({ edge, route: EdgeRoute.Controller }));
    const answer = await Promise.race([reply, this.gone.then((error) => Promise.reject(error))]);
    this.relayStreams.delete(edge);
    if (answer.status === EdgeConnectStatus.Refused) {
      this.relaying.delete(edge);
      throw new RemoteError(answer.code, `${this.label} cannot send edge ${edge} to plumb: ${answer.message}`);
    }
    if (stream === undefined) throw new UnexpectedPacketError(`${this.label} said edge ${edge} is connected without opening its stream`);
    return stream;
  }
}

/** One edge relayed through plumb (-relay). */
interface RelayedEdge {
  edge: number;
  from: string;
  to: string;
  /** Why the writer could not reach the reader. */
  reason: string;
}

/**
 * Carries edge `edge` through plumb: the writing daemon is told to send it on its part's connection, and plumb
 * connects to the reading daemon itself with a key minted for that edge, as the writer would have. The writer's
 * digest goes on with the bytes, so the reader checks the edge end to end as it does any other.
 */
async function relayEdge(run: string, edge: number, writer: MachinePart, reader: MachinePart, relays: Relays): Promise<void> {
  const key = await reader.mintEdgeKey(run, edge);
  const link = await dialEdge(
    run,
    // plumb's connection to the reader, held to that machine's rate as every connection to it is.
    {
      edge,
      host: reader.target.host,
      port: reader.target.port,
      hostKey: formatPublicKeyLine(reader.connection.peer.peer),
      key: key.privateKeyPem,
      ...(reader.limitRate === undefined ? {} : { limitRate: reader.limitRate }),
    },
    { limits: resolveLimits(), connectTimeoutMs: RELAY_CONNECT_TIMEOUT_MS },
  );
  if (relays.closed) {
    // The run ended while this edge was dialled: nothing will carry it.
    link.close();
    throw new ConnectionLostError(`the run ended before edge ${edge} was relayed`);
  }
  relays.links.push(link);
  const from = await writer.relayEdge(edge);
  from.pipe(link.stream, { end: false });
  from.once('end', () => {
    const digest = writer.relayDigests.get(edge);
    if (digest !== undefined) link.sendDigest({ bytes: digest.bytes, sha256: digest.sha256 });
    link.stream.end();
    link.finish();
  });
  // Cut short at the writer: the reader's stream is cut too, and it reports the edge incomplete.
  from.once('close', () => {
    if (!from.readableEnded) link.close();
  });
  // The reader stopped early, or plumb's connection to it went: the writer's stream goes too, so its command gets
  // EPIPE as with a direct edge, rather than waiting for ever on a stream nobody reads.
  link.stream.once('close', () => {
    if (!from.readableEnded) from.destroy();
  });
}

/** The connections plumb opened to relay edges; once closed, an edge still being dialled is dropped. */
interface Relays {
  links: EdgeLink[];
  closed: boolean;
}

/** The machines of the run: each placement resolved, those that reach one daemon grouped as one part. */
interface MachineGroup {
  label: string;
  target: Target;
  reachAt: { host: string; port: number };
  placements: string[];
  machine: string;
  /** The named pipes and sockets that attach to this machine. */
  endpoints: EndpointOptions;
  /** What plumb connects to it with, and the account its part runs as. */
  settings: MachineSettings;
}

function machinesOf(plan: RecipePlan, args: RecipeArguments): MachineGroup[] {
  const paths = clientPaths();
  const groups = new Map<string, MachineGroup>();
  const endpoints = placeEndpoints(plan, args.endpoints, args.endpointMachines);
  const unknown = [...(args.reach?.keys() ?? [])].filter((name) => !plan.stages.some((stage) => stage.machine === name));
  if (unknown.length > 0) throw new UsageError(`-reach names ${unknown.join(', ')}, which no command of ${plan.source} is placed on`);
  for (const placement of [...new Set(plan.stages.map((stage) => stage.machine ?? ''))]) {
    const machine = placement === '' ? args.machine : placement;
    if (machine === undefined) throw new UsageError(`${plan.source}: some commands name no machine (@NAME) and no machine is given on the command line`);
    const settings = resolveMachine(machine, { ...args, port: placement === '' ? args.port : undefined }, paths);
    const { target } = settings;
    const key = `${target.host}\0${target.port}`;
    const group = groups.get(key);
    const reach = args.reach?.get(placement);
    const attached = endpoints.get(placement) ?? NO_ENDPOINT_OPTIONS;
    const one = { label: placementName(placement), target, reachAt: reach ?? target, placements: [placement], machine, endpoints: attached, settings };
    if (group === undefined) groups.set(key, one);
    else joinGroup(group, one);
  }
  return [...groups.values()];
}

/**
 * Makes `other`'s placements, endpoints and -reach address `group`'s: the two are one machine. A daemon runs one part
 * of a run, as one account: placements the config file gives different accounts cannot share it.
 */
function joinGroup(group: MachineGroup, other: MachineGroup): void {
  if (group.settings.user !== other.settings.user) {
    const account = (user: string | undefined): string => (user === undefined ? "the daemon's default account" : `account ${user}`);
    throw new UsageError(`${group.label} and ${other.label} reach one daemon, yet the config gives them ${account(group.settings.user)} and ${account(other.settings.user)}; a machine runs its part as one account`);
  }
  group.placements.push(...other.placements);
  if (other.reachAt !== other.target) group.reachAt = other.reachAt;
  group.endpoints = joinEndpointOptions(group.endpoints, other.endpoints);
}

/** The addresses a host name stands for, IPv4-mapped IPv6 ones as IPv4; the name itself if it does not resolve. */
async function addressesOf(host: string): Promise<Set<string>> {
  const plain = (address: string): string => address.toLowerCase().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  try {
    return new Set((await lookup(host, { all: true })).map(({ address }) => plain(address)));
  } catch {
    return new Set([plain(host)]);
  }
}

/**
 * The connected machines, those that turned out to be one daemon joined: two spellings of a machine (@localhost and
 * @127.0.0.1) reach the same address and port and find the same host key there, and a daemon holds one part of a
 * run. (The same host key alone is not enough: cloned hosts may share one.) The extra connection is closed at once.
 */
async function distinctMachines(connected: Array<{ machine: MachineGroup; connection: SecureConnection }>): Promise<Array<{ machine: MachineGroup; connection: SecureConnection }>> {
  const distinct: Array<{ machine: MachineGroup; connection: SecureConnection; addresses: Set<string> }> = [];
  for (const entry of connected) {
    const addresses = await addressesOf(entry.machine.target.host);
    const same = distinct.find(
      (kept) =>
        kept.machine.target.port === entry.machine.target.port &&
        kept.connection.peer.peer.fingerprint === entry.connection.peer.peer.fingerprint &&
        [...addresses].some((address) => kept.addresses.has(address)),
    );
    if (same === undefined) {
      distinct.push({ ...entry, addresses });
      continue;
    }
    try {
      joinGroup(same.machine, entry.machine);
    } catch (error) {
      for (const open of connected) void open.connection.close().catch(() => undefined);
      throw error;
    }
    void entry.connection.close().catch(() => undefined);
  }
  return distinct;
}

/** Runs a recipe whose commands name machines; resolves with plumb's exit status. */
export async function acrossMachinesCommand(args: RecipeArguments, recipe: LoadedRecipe, env: ExportedEnv): Promise<number> {
  const { plan } = recipe;
  const machines = machinesOf(plan, args);
  const report = new RecipeReport(recipe.file, machines.map((machine) => machine.label).join(' '), plan);
  const ends: StageEnd[] = [];
  const edgeReports: EdgeReport[] = [];
  /** When each edge report reached plumb, and when Go let the edges flow: the edges' times in the JSON report. */
  const edgeReportedAt = new Map<EdgeReport, number>();
  let goAt: number | undefined;
  const parts: MachinePart[] = [];
  const partOf = new Map<number, MachinePart>();
  const stdioChecks: StdioCheck[] = [];
  const relayed: RelayedEdge[] = [];
  const relays: Relays = { links: [], closed: false };
  let stdinPart: MachinePart | undefined;
  let connectedAt = 0;
  // plumb's streams with each machine, named after it, for -progress and the report; the edges' bytes, counted by
  // the daemons, come at the end.
  const meters = new PartMeters();
  const progress = ProgressLine.forMode(args.progress, process.stderr, () => [...meters.totals(), ...meters.edgeTotals()]);
  progress?.start();
  try {
    connectedAt = performance.now();
    const connections = await Promise.allSettled(machines.map((machine) => connectToMachine({ ...args, machine: machine.machine, settings: machine.settings })));
    const failedConnect = connections.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    const connected = connections.flatMap((result, index) => (result.status === 'fulfilled' ? [{ machine: machines[index] as MachineGroup, connection: result.value }] : []));
    for (const { machine, connection } of await distinctMachines(connected)) {
      const part = new MachinePart(machine.label, machine.target, machine.reachAt, machine.placements, machine.endpoints, machine.settings.user, machine.settings.limitRate, connection, {
        stageEnded: (from, end) => {
          ends.push(end);
          const line = report.stageEnded(end);
          if (line !== undefined) {
            progress?.clearLine();
            process.stderr.write(`plumb: ${line} on ${from.label}\n`);
          }
          for (const other of parts) if (other !== from && !other.exited) other.connection.sendFields(PacketType.RemoteStageEnd, encodeRemoteStageEnd(end.stage));
        },
        stageCounted: (bytes) => report.stageCounted(bytes),
        edgeReport: (_from, edgeReport) => {
          edgeReports.push(edgeReport);
          edgeReportedAt.set(edgeReport, Date.now());
          if (edgeReport.direction === 'in') meters.edgeEnded(edgeReport.edge, edgeReport.bytes);
        },
        edgeProgress: (_from, edgeProgress) => meters.edgeArrived(edgeProgress.edge, edgeProgress.bytes),
        observeStream: meters.add(machine.label, machine.endpoints),
      });
      parts.push(part);
      for (const stage of plan.stages) if (machine.placements.includes(stage.machine ?? '')) partOf.set(stage.index, part);
    }
    if (failedConnect !== undefined) throw failedConnect.reason;
    // Every connection is a part now, closed however the run ends. A local named pipe or socket that fails while
    // the recipe runs is said at once; the recipe goes on.
    for (const part of parts) {
      part.endpoints = await ClientEndpoints.prepare(part.endpointOptions, (error) => process.stderr.write(`plumb: ${error.message} (${error.code}) on ${part.label}\n`));
    }

    // 1. Every part checked and readied; nothing runs yet.
    const run = randomBytes(16).toString('hex');
    // With -progress each daemon tells how much of the edges it reads has arrived, as it arrives.
    // With a report, each daemon counts its commands' bytes (StageBytes).
    const job = { run, source: recipe.file, text: recipe.text, env, ...(progress === undefined ? {} : { progress: true }), ...(args.json === false ? {} : { countBytes: true }) };
    await Promise.all(parts.map((part) => part.startPart({ ...job, ...(part.user === undefined ? {} : { user: part.user }) })));
    // 2. Every edge connected daemon to daemon, on a key minted by its reader for it alone.
    await Promise.all(
      plan.edges.map(async (edge) => {
        const writer = partOf.get(edge.fromStage);
        const reader = partOf.get(edge.toStage);
        if (writer === undefined || reader === undefined) throw new UsageError(`edge ${edge.index} has no machine`);
        const key = await reader.mintEdgeKey(run, edge.index);
        try {
          await writer.connectEdge(edge.index, reader, key.privateKeyPem);
        } catch (error) {
          // Only a reader the writer could not reach at all is relayed: a wrong host key or a refusal stays fatal.
          if (args.relay !== true || !(error instanceof NetplumbError) || error.code !== ErrorCode.ConnectFailed) throw error;
          process.stderr.write(`plumb: ${error.message}; relaying edge ${edge.index} through plumb (-relay)\n`);
          await relayEdge(run, edge.index, writer, reader, relays);
          relayed.push({ edge: edge.index, from: writer.label, to: reader.label, reason: error.message });
        }
      }),
    );
    // 3. Go, everywhere.
    goAt = Date.now();
    for (const part of parts) {
      part.connection.sendFields(PacketType.Go, []);
      const streams = part.streams;
      if (streams === undefined) continue;
      const readsStdin = readsPlumbStdin(plan, new Set(plan.stages.filter((stage) => partOf.get(stage.index) === part).map((stage) => stage.index)));
      if (readsStdin) {
        // Counted as the stream takes it: what comes after the part stopped reading (its stream gone) never left.
        process.stdin.on('data', (chunk: Buffer) => {
          if (!streams.stdin.destroyed && !streams.stdin.writableEnded) part.local.stdin.add(chunk);
        });
        process.stdin.pipe(streams.stdin);
        stdinPart = part;
      } else {
        streams.stdin.end();
      }
      streams.stdout.on('data', part.local.stdout.add);
      streams.stdout.pipe(progress?.interleave(process.stdout) ?? process.stdout, { end: false });
      streams.stderr.pipe(progress?.interleave(process.stderr) ?? process.stderr, { end: false });
    }
    for (const part of parts) if (part.mux !== undefined) await part.endpoints?.start(part.mux);
    // A part that has said Exit may close when it likes: only a part still running is lost by going.
    const anyGone = Promise.race(parts.map((part) => part.gone.then((error) => (part.exited ? new Promise<never>(() => undefined) : { part, error }))));
    // A part is over when its Exit came and its stdout has ended: only then are both counts of it complete.
    const allExited = Promise.all(parts.map((part) => Promise.all([part.exit, part.streams === undefined ? undefined : finished(part.streams.stdout, { writable: false }).catch(() => undefined)])));
    const first = await Promise.race([allExited.then(() => undefined), anyGone]);
    if (first !== undefined) throw new ConnectionLostError(`${first.part.label} went away while the recipe ran: ${first.error.message}`);
    // Out-FIFO rounds and -local-socket connections may go on after a part's Exit: they reach the local readers
    // before plumb goes, and a connection that ends first fails the run.
    await Promise.all(
      parts.map((part) => (part.endpoints?.outliveExit === true ? Promise.race([part.endpoints.delivered(), part.gone.then((error) => Promise.reject(error))]) : undefined)),
    );
    process.stdin.unpipe();
    const status = exitStatusCode(recipeStatus(ends));
    stdioChecks.push(...checkStdio(parts, stdinPart));
    const badStdio = stdioChecks.find((check) => check.status === EdgeStatus.Mismatch);
    if (badStdio !== undefined) {
      throw new DigestMismatchError(
        `plumb's ${badStdio.stream} ${badStdio.stream === 'stdin' ? 'to' : 'from'} ${badStdio.machine} arrived other than it left: ${badStdio.received?.bytes ?? '?'} bytes with SHA-256 ${badStdio.received?.sha256 ?? '?'} received, ${badStdio.sent?.bytes ?? '?'} bytes with SHA-256 ${badStdio.sent?.sha256 ?? '?'} sent`,
      );
    }
    const verdicts = edgeVerdicts(plan, edgeReports);
    const mismatch = verdicts.find((verdict) => verdict.status === EdgeStatus.Mismatch);
    if (mismatch !== undefined) {
      const { report: edgeReport } = mismatch;
      throw new DigestMismatchError(
        `edge ${mismatch.edge} arrived other than it left: ${edgeReport?.bytes ?? '?'} bytes with SHA-256 ${edgeReport?.sha256 ?? '?'} delivered, ${edgeReport?.sent?.bytes ?? '?'} bytes with SHA-256 ${edgeReport?.sent?.sha256 ?? '?'} sent`,
      );
    }
    // Every command succeeded, yet a stream between machines or plumb's stdout was cut short: bytes may be missing,
    // and a backup must not say it is whole.
    const cut = verdicts.find((verdict) => verdict.status === EdgeStatus.Incomplete);
    const cutStdout = stdioChecks.find((check) => check.stream === 'stdout' && check.status === EdgeStatus.Incomplete);
    if (status === 0 && cut !== undefined) {
      throw new ConnectionLostError(`edge ${cut.edge} was cut short: ${cut.report?.bytes ?? 0} bytes delivered${cut.report?.sent === undefined ? ', its writer\'s count never came' : ` of ${cut.report.sent.bytes} sent`}`);
    }
    if (status === 0 && cutStdout !== undefined) throw new ConnectionLostError(`plumb's stdout from ${cutStdout.machine} was cut short`);
    report.finished(status);
    return status;
  } catch (error) {
    report.failed(asNetplumbError(error));
    throw error;
  } finally {
    process.stdin.unpipe();
    // Whatever happened, no part is left anywhere: a daemon ends its part when its controller's connection goes.
    relays.closed = true;
    for (const link of relays.links) link.close();
    for (const part of parts) part.endpoints?.close();
    await Promise.all(parts.map((part) => part.connection.close().catch(() => undefined)));
    meters.settle();
    report.streams(meters.totals());
    progress?.finish();
    for (const part of parts) sayConnectionSummary(args, part.connection, connectedAt, `${part.label}: `);
    const delivered = edgeReports.filter((edgeReport) => edgeReport.direction === 'in');
    sayRunSummary(args, parts.map((part) => part.connection), connectedAt, { count: plan.edges.length, bytes: delivered.reduce((sum, edgeReport) => sum + edgeReport.bytes, 0) });
    if (args.json !== false) {
      // Times as plumb saw them: the edges flow from Go, and an end is done when its daemon's report arrives.
      const edges = edgeReports.map((edgeReport) => ({
        ...edgeReport,
        ...(goAt === undefined ? {} : { startedAt: new Date(goAt).toISOString() }),
        endedAt: new Date(edgeReportedAt.get(edgeReport) ?? Date.now()).toISOString(),
      }));
      writeJsonReport({ ...report.toJSON(), edges, relayed, stdio: stdioChecks }, args.json);
    }
  }
}

/**
 * One StreamMeter per machine, its streams named after the machine (`@db1 stdout`), read together; and the edges
 * between machines, as their reading daemons count them (EdgeProgress while they run, EdgeReport at their end).
 */
class PartMeters {
  private readonly meters: StreamMeter[] = [];
  private readonly edges = new Map<number, StreamTotals>();

  add(label: string, endpoints: EndpointOptions): NonNullable<MuxOptions['observeStream']> {
    const meter = new StreamMeter(endpoints, `${label} `);
    this.meters.push(meter);
    return meter.observe;
  }

  totals(): StreamTotals[] {
    return this.meters.flatMap((meter) => meter.totals());
  }

  settle(): void {
    for (const meter of this.meters) meter.settle();
  }

  edgeArrived(edge: number, bytes: number): void {
    const tally = this.edge(edge);
    if (tally.endedAt === undefined) tally.bytesIn = bytes;
  }

  edgeEnded(edge: number, bytes: number): void {
    const tally = this.edge(edge);
    tally.bytesIn = bytes;
    tally.open = 0;
    tally.endedAt = Date.now();
  }

  edgeTotals(): StreamTotals[] {
    return [...this.edges.values()].map((tally) => ({ ...tally }));
  }

  /** The edge's tally, open from when the controller first heard of it (the edges' own start is the daemons'). */
  private edge(edge: number): StreamTotals {
    let tally = this.edges.get(edge);
    if (tally === undefined) {
      tally = { name: `edge ${edge}`, bytesOut: 0, bytesIn: 0, streams: 1, open: 1, startedAt: Date.now() };
      this.edges.set(edge, tally);
    }
    return tally;
  }
}

/** Each edge of the plan with the report of its reading end, and the verdict: a missing report is incomplete. */
function edgeVerdicts(plan: RecipePlan, reports: readonly EdgeReport[]): Array<{ edge: number; status: EdgeStatus; report: (EdgeReport & { direction: 'in' }) | undefined }> {
  return plan.edges.map((edge) => {
    const report = reports.find((candidate): candidate is EdgeReport & { direction: 'in' } => candidate.edge === edge.index && candidate.direction === 'in');
    return { edge: edge.index, status: report?.status ?? EdgeStatus.Incomplete, report };
  });
}

/**
 * plumb's own streams, each checked as an edge is: every part's stdout as its daemon sent it and as plumb received
 * it, and the stdin of the part that read it as plumb sent it and as that daemon delivered it.
 */
function checkStdio(parts: readonly MachinePart[], stdinPart: MachinePart | undefined): StdioCheck[] {
  const checks: StdioCheck[] = [];
  const compare = (stream: 'stdin' | 'stdout', part: MachinePart, sent: StdioCheck['sent'], received: StdioCheck['received'], complete: boolean): void => {
    const status = received === undefined ? EdgeStatus.Incomplete : edgeVerdict({ ...received, complete }, sent);
    checks.push({ stream, machine: part.label, sent, received, status });
  };
  const ours = (tally: RunningDigest): { bytes: number; sha256: string } => ({ bytes: tally.bytes, sha256: tally.digest() });
  const theirs = (part: MachinePart, stream: 'stdin' | 'stdout'): StdioCheck['sent'] => {
    const digest = part.streamDigests.get(stream);
    return digest === undefined ? undefined : { bytes: digest.bytes, sha256: digest.sha256 };
  };
  for (const part of parts) compare('stdout', part, theirs(part, 'stdout'), ours(part.local.stdout), part.streams?.stdout.readableEnded === true);
  // plumb's stdin is compared only when all of it went: a command that stopped reading early cut it, as a pipe would.
  const stdinSent = stdinPart?.streams?.stdin.writableFinished === true;
  if (stdinPart !== undefined) compare('stdin', stdinPart, ours(stdinPart.local.stdin), theirs(stdinPart, 'stdin'), stdinSent);
  return checks;
}
