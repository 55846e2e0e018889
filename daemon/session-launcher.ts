// The daemon's Launcher: a Start goes through the start policy, its named pipes and sockets are readied, and the
// runner that fits it is made (a recipe or a plain command through the recipe executor, a terminal through node-pty).
// A MintKey goes through the same policy before its key is made.

import { BadRequestError } from '../protocol/errors.js';
import type { KeyBinding, MintedKey, MintRequest, StartRequest } from '../protocol/session.js';
import { StartKind } from '../protocol/wire.js';
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
    if (request.kind === StartKind.Recipe) {
      const spoolDir = prepared.identity.spoolDir;
      return RecipeRunner.recipe(request.source, prepared, {
        log: this.log,
        killGraceMs,
        ...(gluepot === undefined ? {} : { checkFile: (realPath: string) => checkRealPath(gluepot, realPath, spoolDir, 'redirection file') }),
        stageEnded: context.stageEnded,
      });
    }
    if (request.pty !== undefined) return new PtyRunner(request.argv, request.pty, prepared, this.log, killGraceMs);
    return RecipeRunner.command(request.argv as [string, ...string[]], prepared, { log: this.log, killGraceMs });
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
