// A recipe as a session's run: every pipe readied by recipes/execute.ts before the Start is answered, the
// commands started once the client's streams are joined, each command's end passed on as it happens, and the
// recipe's status (pipefail) as the outcome.

import type { ExitStatus, ForwardableSignal, RecipeRequest, StageEnd } from '../protocol/session.js';
import { prepareRecipe, type RecipeOutcome, type RecipeRun } from '../recipes/execute.js';
import type { RecipePlan } from '../recipes/plan.js';
import { checkRealPath, type Gluepot } from './gluepots.js';
import type { Logger } from './log.js';
import type { Runner, RunnerOptions, SessionStreams } from './runner.js';

export interface RecipeRunnerOptions extends RunnerOptions {
  /** With a gluepot, every redirection file is checked again at the moment it is opened. */
  gluepot: Gluepot | undefined;
  /** Each command's end, as it happens (the session sends it as a StageEnd). */
  stageEnded: (end: StageEnd) => void;
}

export class RecipeRunner implements Runner {
  private run: RecipeRun | undefined;
  private resolveOutcome: (status: ExitStatus) => void = () => undefined;
  readonly outcome: Promise<ExitStatus> = new Promise((resolve) => (this.resolveOutcome = resolve));
  private readonly log: Logger;

  constructor(
    log: Logger,
    private readonly options: RecipeRunnerOptions,
  ) {
    this.log = log.child({ recipe: (options.prepared.request as RecipeRequest).source });
  }

  private get plan(): RecipePlan {
    return this.options.prepared.plan as RecipePlan;
  }

  async start(): Promise<void> {
    const { prepared, gluepot } = this.options;
    const { identity, programs } = prepared;
    this.run = await prepareRecipe(this.plan, {
      ...(programs === undefined ? {} : { programs }),
      ...(gluepot === undefined ? {} : { checkFile: (realPath: string) => checkRealPath(gluepot, realPath, identity.spoolDir, 'redirection file') }),
      identity: identity.runAs,
      env: prepared.env,
      killGraceMs: this.options.killGraceMs,
      onStageEnd: (end) => this.stageEnded(end),
    });
  }

  attach(streams: SessionStreams): void {
    const run = this.run as RecipeRun;
    this.log.info('recipe started', { commands: this.plan.stages.length, spool: this.plan.spoolDir });
    const { stdin, stdout, stderr } = streams;
    // The daemon never writes to the stdin stream nor reads the output streams; a recipe that does not read
    // plumb's stdin drops it at once, so plumb stops sending.
    stdin.end();
    if (!this.plan.readsPlumbStdin) stdin.destroy();
    stdout.resume();
    stderr.resume();
    run.start({ stdin, stdout, stderr });
    void run.outcome.then((outcome) => this.ended(outcome));
  }

  signal(signal: ForwardableSignal): void {
    this.log.info('forwarding signal to the recipe', { signal });
    this.run?.signal(signal);
  }

  resize(): void {
    // A recipe has no terminal.
  }

  async abort(reason?: string): Promise<void> {
    await this.run?.abort(reason ?? 'session ended');
  }

  private stageEnded(end: StageEnd): void {
    const { status } = end;
    // `message` would become the log line's own text: the reason goes under its own key.
    const how = 'error' in status ? { code: status.code, error: status.error, reason: status.message } : status;
    this.log.info('recipe command ended', { stage: end.stage, name: end.name, ...how });
    this.options.stageEnded(end);
  }

  private ended(outcome: RecipeOutcome): void {
    if (outcome.abortedBecause !== undefined) this.log.info('recipe aborted', { reason: outcome.abortedBecause, ...outcome.status });
    else this.log.info('recipe ended', outcome.status);
    this.resolveOutcome(outcome.status);
  }
}
