// The daemon's Launcher: a Start goes through the start policy, its named pipes and sockets are readied, and the
// runner that fits it is made (a recipe or a plain command through the recipe executor, a terminal through node-pty).
// A MintKey goes through the same policy before its key is made.

import { BadRequestError, NotPermittedError } from '../protocol/errors.js';
import type { PublicIdentity } from '../protocol/keys.js';
import type { ResolvedLimits } from '../protocol/limits.js';
import type { EdgeConnectRequest, EdgeMintRequest, EdgeProgress, EdgeRequest } from '../protocol/multi-host.js';
import { type KeyBinding, type MintedKey, type MintRequest, type StageBytes, type StartRequest } from '../protocol/session.js';
import { StartKind, type EdgeRoute } from '../protocol/wire.js';
import { dialEdge, type EdgeLink } from '../bridges/edge-dial.js';
import { ForwardRunner } from './forward-runner.js';
import { PartRunner, type InboundEdge } from './part-runner.js';
import type { EdgeGrant, PartRegistry } from './parts.js';
import { DaemonEndpoints } from './endpoints.js';
import { checkRealPath } from './gluepots.js';
import type { Logger } from './log.js';
import { PtyRunner } from './pty-runner.js';
import { RecipeRunner } from './recipe-runner.js';
import type { Launch, LaunchContext, Launcher, Runner } from './runner.js';
import { checkRequest, prepareStart, type PreparedStart, type StartGrant } from './start-policy.js';

export interface SessionOptions extends StartGrant {
  killGraceMs: number;
  /** A controller's session: makes a one-time key for a binding already checked here. Absent: MintKey is refused. */
  mint?: (binding: KeyBinding & { user: string }, lifetimeSeconds: number) => MintedKey;
  /** A controller's session: where it holds the parts of recipes across machines, and what its edges need. */
  parts?: { registry: PartRegistry; hostKey: PublicIdentity; limits: ResolvedLimits; connectTimeoutMs: number };
  /** A session authenticated with an edge key: the one edge it may deliver, into the part the registry holds. */
  edge?: { grant: EdgeGrant; registry: PartRegistry };
}

export class SessionLauncher implements Launcher {
  readonly mint: Launcher['mint'];

  constructor(
    private readonly log: Logger,
    private readonly options: SessionOptions,
  ) {
    const minter = options.mint;
    this.mint = minter === undefined ? undefined : (request, cancelled) => this.mintKey(minter, request, cancelled);
  }

  check(request: StartRequest): void {
    if (this.options.edge !== undefined) throw new NotPermittedError('this key delivers one edge of a recipe across machines and starts nothing');
    if (request.kind === StartKind.Part && (this.options.parts === undefined || this.options.mint === undefined)) {
      throw new NotPermittedError('only a controller runs a part of a recipe across machines (its authorized-clients line needs the controller flag)');
    }
    checkRequest(request, this.options);
  }

  async launch(request: StartRequest, context: LaunchContext): Promise<Launch> {
    const prepared = await prepareStart(request, this.options, 'start', context.cancelled);
    const { runAs, spoolDir } = prepared.identity;
    this.log.info('running as', { user: runAs.account.name, uid: runAs.account.uid });
    const { gluepot } = this.options;
    const endpoints = await DaemonEndpoints.prepare(request.endpoints, spoolDir, context.mux, this.log, { identity: runAs, ...(gluepot === undefined ? {} : { gluepot }) });
    try {
      if (context.cancelled()) throw new BadRequestError('connection closed');
      return { runner: await this.runner(request, prepared, context), endpoints };
    } catch (error) {
      endpoints.close();
      throw error;
    }
  }

  private async runner(request: StartRequest, prepared: PreparedStart, context: LaunchContext): Promise<Runner> {
    const { killGraceMs, gluepot } = this.options;
    const spoolDir = prepared.identity.spoolDir;
    // A recipe's redirection files are checked against the gluepot as they are opened.
    const checkFile = gluepot === undefined ? {} : { checkFile: (realPath: string) => checkRealPath(gluepot, realPath, spoolDir, 'redirection file') };
    if (request.kind === StartKind.Part) {
      const parts = this.options.parts;
      if (parts === undefined) throw new NotPermittedError('only a controller runs a part of a recipe across machines');
      const runner = await PartRunner.prepare(request.run, prepared, {
        log: this.log.child({ recipe: request.source, run: request.run }),
        killGraceMs,
        ...checkFile,
        stageEnded: context.stageEnded,
        edgeReport: (report) => context.edgeReport?.(report),
        ...(request.progress === true ? { edgeProgress: (progress: EdgeProgress) => context.edgeProgress?.(progress) } : {}),
        ...this.counting(request, context),
        streamDigest: (digest) => context.streamDigest?.(digest),
      });
      try {
        parts.registry.hold(runner);
      } catch (error) {
        await runner.abort('refused');
        throw error;
      }
      this.partUser = prepared.identity.runAs.account.name;
      return runner;
    }
    if (request.kind === StartKind.Recipe) {
      return RecipeRunner.recipe(request.source, prepared, {
        log: this.log,
        killGraceMs,
        ...checkFile,
        stageEnded: context.stageEnded,
        ...this.counting(request, context),
      });
    }
    if (request.kind === StartKind.Forward) return new ForwardRunner();
    if (request.pty !== undefined) return new PtyRunner(request.argv, request.pty, prepared, this.log, killGraceMs);
    return RecipeRunner.command(request.argv as [string, ...string[]], prepared, { log: this.log, killGraceMs });
  }

  /** Each command's bytes are counted and told when the recipe's Start asks. */
  private counting(request: { countBytes?: boolean }, context: LaunchContext): { stageBytes?: (bytes: StageBytes) => void } {
    return request.countBytes === true ? { stageBytes: (bytes) => context.stageBytes?.(bytes) } : {};
  }

  /** The account a held part runs as: an edge key minted for it is told so. */
  private partUser = '';

  /** Lets go of a part this session held (its keys go with it). */
  release(runner: PartRunner): void {
    this.options.parts?.registry.release(runner);
  }

  /** A key for an edge the held part reads; refused unless this session holds that part. */
  mintEdgeKey(runner: PartRunner, request: EdgeMintRequest): MintedKey {
    const parts = this.options.parts;
    if (parts === undefined || request.run !== runner.runId) throw new BadRequestError('an edge key is minted for the part this connection holds');
    return parts.registry.mintEdgeKey(runner, request.edge, request.lifetimeSeconds, parts.hostKey, this.partUser);
  }

  /** Connects an edge the held part writes to the daemon that reads it. */
  async connectEdge(runner: PartRunner, request: EdgeConnectRequest & { route: EdgeRoute.Direct }): Promise<EdgeLink> {
    const parts = this.options.parts;
    if (parts === undefined) throw new BadRequestError('no part is held on this connection');
    if (!runner.writes(request.edge)) throw new BadRequestError(`edge ${request.edge} is not written on this machine`);
    return dialEdge(runner.runId, request, { limits: parts.limits, connectTimeoutMs: parts.connectTimeoutMs });
  }

  /** An edge session's Start: the one edge its key was minted for, into the part that reads it here. */
  attachEdge(request: EdgeRequest, inbound: InboundEdge): PartRunner {
    const edge = this.options.edge;
    if (edge === undefined) throw new NotPermittedError('an edge is delivered only with the key minted for it');
    if (request.run !== edge.grant.run || request.edge !== edge.grant.edge) {
      throw new NotPermittedError(`this one-time key does not allow that: it is bound to edge ${edge.grant.edge} of another Start`);
    }
    const runner = edge.registry.part(request.run);
    if (runner === undefined || runner !== edge.grant.runner) throw new BadRequestError(`run ${request.run} is not held here (its controller has gone)`);
    runner.attachInbound(request.edge, inbound);
    return runner;
  }

  /**
   * A controller's request for a one-time key: checked as a Start of the same command would be (the account the
   * client's line allows, the gluepot, a recipe's check), so a key can never grant more than its controller has.
   */
  private async mintKey(minter: NonNullable<SessionOptions['mint']>, request: MintRequest, cancelled: () => boolean): Promise<MintedKey> {
    const { binding } = request;
    const prepared = await prepareStart(binding, this.options, 'mint', cancelled);
    return minter({ ...binding, user: prepared.identity.runAs.account.name }, request.lifetimeSeconds);
  }
}
