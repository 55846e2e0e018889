// One machine's part of a recipe across machines (PROTOCOL.md 7.8), as the daemon runs it for its controller: the
// recipe executor on the stages placed here (recipes/execute.ts ownStages), readied at Start and held until Go;
// the edges its commands write, each carried on a connection this daemon opened to the reader's daemon, or relayed
// through the controller (EdgeLink),
// and the edges they read, each arriving on an edge session of its own; every edge end reported to the controller
// with its count and digest, and, where it was read, the verdict against the writer's digest.

import { Transform, type Readable } from 'node:stream';
import { BadRequestError } from '../protocol/errors.js';
import { edgeVerdict, type EdgeDigest, type EdgeProgress, type EdgeReport, type StreamDigest } from '../protocol/multi-host.js';
import type { ExitStatus, ForwardableSignal, StageBytes, StageEnd } from '../protocol/session.js';
import type { MuxStream } from '../protocol/mux.js';
import type { PathCheck } from '../bridges/checked-open.js';
import type { EdgeLink } from '../bridges/edge-dial.js';
import type { EdgeOutput, EdgeTally } from '../recipes/edges.js';
import { prepareRecipe, type RecipeOutcome, type RecipeRun } from '../recipes/execute.js';
import { readsPlumbStdin, type RecipePlan } from '../recipes/plan.js';
import type { Logger } from './log.js';
import type { Runner, SessionStreams } from './runner.js';
import type { PreparedStart } from './start-policy.js';

/**
 * Set to 1 in netplumbd's environment, this daemon flips one bit of the first byte of every edge that arrives here,
 * after it left the connection and before it reaches the reading command: a test's way to show that the digest
 * catches what the AEAD tag cannot see. Never set it on a daemon that carries real data.
 */
export const CORRUPT_EDGES_ENV = 'NETPLUMBD_TEST_CORRUPT_EDGES';

/** An edge this machine reads: its stream from the writer's daemon, and the edge session to tell at the end. */
export interface InboundEdge {
  stream: MuxStream;
  /** The writer's EdgeDigest, once it came. */
  digest?: EdgeDigest;
  /** Told once every byte is in the reader's pipe (or the edge was cut short), with the verdict. */
  delivered(report: EdgeReport & { direction: 'in' }): void;
}

export interface PartRunnerOptions {
  log: Logger;
  killGraceMs: number;
  checkFile?: PathCheck;
  stageEnded: (end: StageEnd) => void;
  /** Given: each command's bytes are counted, and told here once known (before the part's end). */
  stageBytes?: (bytes: StageBytes) => void;
  /** Each edge end's report, to the controller, as the end is done. */
  edgeReport: (report: EdgeReport) => void;
  /** The count and digest of plumb's stdout as sent and its stdin as delivered, to the controller, before the end. */
  streamDigest: (digest: StreamDigest) => void;
  /** When the controller shows progress: each edge read here, as its bytes arrive, every EDGE_PROGRESS_MS. */
  edgeProgress?: (progress: EdgeProgress) => void;
}

/** How often a part tells a controller showing progress what its edges have brought (only counts that moved). */
export const EDGE_PROGRESS_MS = 1000;

export class PartRunner implements Runner {
  private run: RecipeRun | undefined;
  private readonly inbound = new Map<number, InboundEdge>();
  private readonly outbound = new Map<number, EdgeLink>();
  /** Edges written here whose connection is being made: each is dialled once. */
  private readonly dialling = new Set<number>();
  /** Edges join a part only while it is readied and held: after Go (or the end) nothing is attached. */
  private held = true;
  private resolveOutcome: (status: ExitStatus) => void = () => undefined;
  readonly outcome: Promise<ExitStatus>;
  private progressTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly runId: string,
    readonly plan: RecipePlan,
    readonly ownStages: ReadonlySet<number>,
    private readonly options: PartRunnerOptions,
  ) {
    this.outcome = new Promise((resolve) => (this.resolveOutcome = resolve));
  }

  /** The part's pipes made and opened (its own stages only); nothing runs before start(). */
  static async prepare(runId: string, prepared: PreparedStart, options: PartRunnerOptions): Promise<PartRunner> {
    const plan = prepared.plan as RecipePlan;
    const ownStages = prepared.ownStages ?? new Set<number>();
    const runner = new PartRunner(runId, plan, ownStages, options);
    runner.run = await prepareRecipe(plan, {
      ...(prepared.programs === undefined ? {} : { programs: prepared.programs }),
      ...(options.checkFile === undefined ? {} : { checkFile: options.checkFile }),
      identity: prepared.identity.runAs,
      env: prepared.env,
      killGraceMs: options.killGraceMs,
      ownStages,
      onStageEnd: (end) => options.stageEnded(end),
      ...(options.stageBytes === undefined ? {} : { countBytes: true, onStageBytes: options.stageBytes }),
      onEdgeEnd: (tally) => runner.edgeEnded(tally),
      digestStdio: true,
    });
    return runner;
  }

  /** Whether this part reads edge `edge` (its reader runs here). */
  reads(edge: number): boolean {
    const found = this.plan.edges[edge];
    return found !== undefined && this.ownStages.has(found.toStage);
  }

  /** Whether this part writes edge `edge`. */
  writes(edge: number): boolean {
    const found = this.plan.edges[edge];
    return found !== undefined && this.ownStages.has(found.fromStage);
  }

  /** Whether an edge read here has arrived already (no key is minted for it any more). */
  arrived(edge: number): boolean {
    return this.inbound.has(edge);
  }

  /** An edge's stream arrived from its writer's daemon; each edge read here arrives once, before Go. */
  attachInbound(edge: number, inbound: InboundEdge): void {
    if (!this.held) throw new BadRequestError(`run ${this.runId} has started: edge ${edge} comes too late`);
    if (!this.reads(edge)) throw new BadRequestError(`edge ${edge} is not read on this machine`);
    if (this.inbound.has(edge)) throw new BadRequestError(`edge ${edge} has arrived already`);
    this.inbound.set(edge, inbound);
  }

  /**
   * Claims an edge written here for one connection, before it is dialled: a second EdgeConnect for it, or one after
   * Go, is refused, so a controller makes this daemon dial at most once per edge of its part.
   */
  claimOutbound(edge: number): void {
    if (!this.held) throw new BadRequestError(`run ${this.runId} has started: edge ${edge} is connected too late`);
    if (!this.writes(edge)) throw new BadRequestError(`edge ${edge} is not written on this machine`);
    if (this.dialling.has(edge) || this.outbound.has(edge)) throw new BadRequestError(`edge ${edge} is connected already`);
    this.dialling.add(edge);
  }

  /** The connection of a claimed edge is made; false (and the caller closes it) when the part has moved on. */
  addOutbound(edge: number, link: EdgeLink): boolean {
    this.dialling.delete(edge);
    if (!this.held) return false;
    this.outbound.set(edge, link);
    return true;
  }

  /** The dial of a claimed edge failed: it may be tried again. */
  dialFailed(edge: number): void {
    this.dialling.delete(edge);
  }

  /** Go: the commands start, the edges joined to the pipes as they stand (an edge missing is an empty one). */
  start(streams: SessionStreams, started: () => void): Promise<void> {
    const run = this.run as RecipeRun;
    this.held = false;
    void run.outcome.then((outcome) => this.ended(outcome));
    const corrupt = process.env[CORRUPT_EDGES_ENV] === '1';
    const edgeInputs = new Map<number, Readable>([...this.inbound].map(([edge, inbound]) => [edge, corrupt ? inbound.stream.pipe(flipFirstBit()) : inbound.stream]));
    const edgeOutputs = new Map<number, EdgeOutput>(
      [...this.outbound].map(([edge, link]) => [edge, { stream: link.stream, readAll: (tally: EdgeTally) => link.sendDigest({ bytes: tally.bytes, sha256: tally.sha256 }) }]),
    );
    this.options.log.info('recipe part started', { run: this.runId, commands: this.ownStages.size, edgesIn: edgeInputs.size, edgesOut: edgeOutputs.size });
    started();
    const { stdin, stdout, stderr } = streams;
    stdin.end();
    const readsStdin = readsPlumbStdin(this.plan, this.ownStages);
    if (!readsStdin) stdin.destroy();
    stdout.resume();
    stderr.resume();
    // plumb's stdin arrives from another machine too: the test fault reaches it as it reaches the edges.
    const input = corrupt && readsStdin ? stdin.pipe(flipFirstBit()) : stdin;
    run.start({ stdin: input, stdout, stderr, edgeInputs, edgeOutputs });
    this.startProgress();
    return Promise.resolve();
  }

  /** The edges' streams count what arrives on them: their counters are read, nothing is added per byte. */
  private startProgress(): void {
    const report = this.options.edgeProgress;
    if (report === undefined || this.inbound.size === 0) return;
    const told = new Map<number, number>();
    this.progressTimer = setInterval(() => {
      for (const [edge, inbound] of this.inbound) {
        const bytes = inbound.stream.bytesReceived;
        if (told.get(edge) === bytes) continue;
        told.set(edge, bytes);
        report({ edge, bytes });
      }
    }, EDGE_PROGRESS_MS);
    this.progressTimer.unref();
  }

  /** A command on another machine has ended: ours after it in the recipe's order may go on. Others are ignored. */
  foreignStageEnded(stage: number): void {
    if (stage >= this.plan.stages.length || this.ownStages.has(stage)) return;
    this.run?.foreignStageEnded(stage);
  }

  signal(signal: ForwardableSignal): void {
    this.run?.signal(signal);
  }

  resize(): void {
    // No terminal.
  }

  async abort(reason?: string): Promise<void> {
    this.held = false;
    clearInterval(this.progressTimer);
    for (const link of this.outbound.values()) link.close();
    for (const inbound of this.inbound.values()) inbound.stream.destroy();
    await this.run?.abort(reason ?? 'session ended');
  }

  private edgeEnded(tally: EdgeTally): void {
    if (tally.direction === 'out') {
      this.options.edgeReport({ edge: tally.edge, direction: 'out', bytes: tally.bytes, sha256: tally.sha256 });
      return;
    }
    const inbound = this.inbound.get(tally.edge);
    const sent = inbound?.digest;
    const status = edgeVerdict(tally, sent);
    const report: EdgeReport & { direction: 'in' } = { edge: tally.edge, direction: 'in', bytes: tally.bytes, sha256: tally.sha256, status, ...(sent === undefined ? {} : { sent }) };
    this.options.log[status === 'intact' ? 'info' : 'warn']('edge delivered', { run: this.runId, edge: tally.edge, bytes: tally.bytes, status });
    inbound?.delivered(report);
    this.options.edgeReport(report);
  }

  private ended(outcome: RecipeOutcome): void {
    clearInterval(this.progressTimer);
    for (const link of this.outbound.values()) link.finish();
    // stdout is told by every part; stdin only by the part whose command read it (the only one that has it).
    for (const digest of outcome.stdio ?? []) this.options.streamDigest(digest);
    if (outcome.abortedBecause !== undefined) this.options.log.info('recipe part aborted', { run: this.runId, reason: outcome.abortedBecause, ...outcome.status });
    else this.options.log.info('recipe part ended', { run: this.runId, ...outcome.status });
    this.resolveOutcome(outcome.status);
  }
}

/** The test-only fault of CORRUPT_EDGES_ENV: the first byte's lowest bit flipped, the rest as it came. */
function flipFirstBit(): Transform {
  let flipped = false;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (flipped || chunk.length === 0) {
        callback(null, chunk);
        return;
      }
      flipped = true;
      const changed = Buffer.from(chunk);
      changed[0] = (changed[0] as number) ^ 0x01;
      callback(null, changed);
    },
  });
}
