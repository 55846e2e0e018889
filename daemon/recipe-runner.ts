// Runs a checked recipe, or a plain command as the one-stage plan it is (recipes/plan.ts commandPlan), through the
// recipe executor: one spawn, kill loop and stdio wiring for both. A recipe answers Started once its pipes are
// ready and tells each command's end; a command answers Started only once its process runs, else its Start is refused.

import { errorFor, RequestError, SpawnFailedError } from '../protocol/errors.js';
import type { ExitStatus, ForwardableSignal, StageBytes, StageEnd } from '../protocol/session.js';
import type { PathCheck } from '../bridges/checked-open.js';
import { prepareRecipe, type RecipeOutcome, type RecipeRun, type RecipeRunOptions } from '../recipes/execute.js';
import { commandPlan, type RecipePlan } from '../recipes/plan.js';
import { groupAlive } from '../recipes/process-groups.js';
import type { Logger } from './log.js';
import type { Runner, SessionStreams } from './runner.js';
import type { PreparedStart } from './start-policy.js';

export interface RecipeRunnerOptions {
  log: Logger;
  killGraceMs: number;
  /** Checks the real path of every file a recipe redirects to (the gluepot); absent: any. */
  checkFile?: PathCheck;
  /** A recipe command's end, as it happens. */
  stageEnded?: (end: StageEnd) => void;
  /** Given: each recipe command's bytes are counted, and told here once known. */
  stageBytes?: (bytes: StageBytes) => void;
}

type Mode = { kind: 'recipe'; source: string } | { kind: 'command'; argv: readonly [string, ...string[]] };

export class RecipeRunner implements Runner {
  private run: RecipeRun | undefined;
  /** The command's process (and group) once it runs. */
  private pid: number | undefined;
  private whenStarted: { started: () => void; streams: SessionStreams; reject: (error: RequestError) => void } | undefined;
  private resolveOutcome: (status: ExitStatus) => void = () => undefined;
  readonly outcome: Promise<ExitStatus>;

  private constructor(
    private readonly mode: Mode,
    private readonly plan: RecipePlan,
    private readonly log: Logger,
  ) {
    this.outcome = new Promise((resolve) => (this.resolveOutcome = resolve));
  }

  /** A recipe with its pipes made and opened (recipes/execute.ts prepareRecipe), ready to start. */
  static async recipe(source: string, prepared: PreparedStart, options: RecipeRunnerOptions): Promise<RecipeRunner> {
    const plan = prepared.plan as RecipePlan;
    const runner = new RecipeRunner({ kind: 'recipe', source }, plan, options.log.child({ recipe: source }));
    runner.run = await prepareRecipe(plan, runner.runOptions(prepared, options));
    return runner;
  }

  /** A plain command, run in the account's home as its one-stage plan; its pipes made, ready to start. */
  static async command(argv: readonly [string, ...string[]], prepared: PreparedStart, options: RecipeRunnerOptions): Promise<RecipeRunner> {
    const runner = new RecipeRunner({ kind: 'command', argv }, commandPlan(argv, prepared.cwd), options.log);
    try {
      runner.run = await prepareRecipe(runner.plan, runner.runOptions(prepared, options));
    } catch (error) {
      // The executor's words are about a recipe's pipes: the command's refusal names its own.
      const reason = error instanceof Error && error.cause instanceof Error ? error.cause : (error as Error);
      throw new SpawnFailedError(`cannot make pipes for ${argv[0]}: ${reason.message}`, { cause: error });
    }
    return runner;
  }

  start(streams: SessionStreams, started: () => void): Promise<void> {
    const run = this.run as RecipeRun;
    void run.outcome.then((outcome) => this.ended(outcome));
    if (this.mode.kind === 'command') {
      // Started only once the process runs: a command that cannot start leaves the streams alone and is refused.
      return new Promise((resolve, reject) => {
        const startedNow = (): void => {
          started();
          resolve();
        };
        this.whenStarted = { started: startedNow, streams, reject };
        run.start(streams, 'once-started');
      });
    }
    this.log.info('recipe started', { commands: this.plan.stages.length, spool: this.plan.spoolDir });
    started();
    const { stdin, stdout, stderr } = streams;
    // The daemon never writes to the stdin stream nor reads the output streams; a recipe that does not read
    // plumb's stdin drops it at once, so plumb stops sending.
    stdin.end();
    if (!this.plan.readsPlumbStdin) stdin.destroy();
    stdout.resume();
    stderr.resume();
    run.start(streams);
    return Promise.resolve();
  }

  signal(signal: ForwardableSignal): void {
    if (this.mode.kind === 'recipe') this.log.info('forwarding signal to the recipe', { signal });
    else this.log.info('forwarding signal', { signal, pgid: this.pid });
    this.run?.signal(signal);
  }

  resize(): void {
    // No terminal: nothing to resize.
  }

  abort(reason?: string): Promise<void> {
    const run = this.run;
    if (run === undefined) return Promise.resolve();
    if (this.mode.kind === 'command' && reason !== undefined && this.pid !== undefined && groupAlive(this.pid)) {
      this.log.info('ending process group', { pgid: this.pid, reason });
    }
    return run.abort(reason ?? 'session ended').then(() => undefined);
  }

  private runOptions(prepared: PreparedStart, options: RecipeRunnerOptions): RecipeRunOptions {
    const { checkFile, stageEnded, stageBytes } = options;
    return {
      ...(stageBytes === undefined ? {} : { countBytes: true, onStageBytes: stageBytes }),
      ...(prepared.programs === undefined ? {} : { programs: prepared.programs }),
      ...(checkFile === undefined ? {} : { checkFile }),
      identity: prepared.identity.runAs,
      env: prepared.env,
      killGraceMs: options.killGraceMs,
      onStageStart: (_stage, pid) => this.stageStarted(pid),
      onStageEnd: (end) => {
        if (this.mode.kind === 'command') {
          this.commandNotStarted(end);
          return;
        }
        const { status } = end;
        // `message` would become the log line's own text: the reason goes under its own key.
        const how = 'error' in status ? { code: status.code, error: status.error, reason: status.message } : status;
        this.log.info('recipe command ended', { stage: end.stage, name: end.name, ...how });
        stageEnded?.(end);
      },
    };
  }

  private stageStarted(pid: number): void {
    const pending = this.whenStarted;
    if (pending === undefined) return;
    this.whenStarted = undefined;
    this.pid = pid;
    if (this.mode.kind === 'command') this.log.info('command started', { pid, argv: this.mode.argv });
    pending.started();
    const { stdin, stdout, stderr } = pending.streams;
    // The daemon never writes to the command's stdin stream nor reads its output streams: say so at once.
    stdin.end();
    stdout.resume();
    stderr.resume();
  }

  /** The command's end before it ever ran: the reason its Start is refused. */
  private commandNotStarted(end: StageEnd): void {
    const pending = this.whenStarted;
    if (pending === undefined || !('error' in end.status)) return;
    this.whenStarted = undefined;
    pending.reject(errorFor(end.status.error, end.status.message));
  }

  private ended(outcome: RecipeOutcome): void {
    if (this.whenStarted !== undefined || (this.mode.kind === 'command' && this.pid === undefined)) return;
    if (this.mode.kind === 'command') this.log.info('command ended', outcome.status);
    else if (outcome.abortedBecause !== undefined) this.log.info('recipe aborted', { reason: outcome.abortedBecause, ...outcome.status });
    else this.log.info('recipe ended', outcome.status);
    this.resolveOutcome(outcome.status);
  }
}
