// The one interface a session drives whatever way a Start runs: a plain command on pipes (command-runner.ts), a
// command on a pseudo-terminal (pty-runner.ts), or a recipe (recipe-runner.ts). A runner knows processes and the
// three client streams it is given; it never sees packets, and the session never sees a process.
//
//   start() ──ready──> attach(streams) ──> outcome (exit status, output drained)
//      └──rejects: the Start's refusal, nothing left        abort() at any point after start() resolved

import { finished } from 'node:stream/promises';
import type { MuxStream } from '../protocol/mux.js';
import type { ExitStatus, ForwardableSignal } from '../protocol/session.js';
import { findProgram, programToStart } from '../bridges/programs.js';
import { signalGroup } from '../recipes/process-groups.js';
import type { Logger } from './log.js';
import type { PreparedStart } from './start-policy.js';

/** The three streams the client opened for a Start: the command's (or the recipe's) stdin, stdout and stderr. */
export interface SessionStreams {
  stdin: MuxStream;
  stdout: MuxStream;
  stderr: MuxStream;
}

export interface Runner {
  /**
   * Readies the run: pipes made and the process spawned (a command), or every pipe of a recipe made and opened.
   * Rejects with the NetplumbError that refuses the Start; nothing of the run is left then.
   */
  start(): Promise<void>;
  /** Joins the run to the client's streams, once the Start reply is out; the run goes from here. Call once. */
  attach(streams: SessionStreams): void;
  /** Settles, after attach(), with how the run ended once its output is out; never rejects. */
  readonly outcome: Promise<ExitStatus>;
  signal(signal: ForwardableSignal): void;
  /** A terminal's new size; ignored by runners without one. */
  resize(cols: number, rows: number): void;
  /**
   * Ends every process the run started (SIGTERM, SIGKILL after the grace period) and what they left in their
   * process groups; resolves when none is left. Safe to call more than once, and after the run ended. The reason,
   * when given, is logged.
   */
  abort(reason?: string): Promise<void>;
}

/** What every runner is made with: the accepted Start, and how long a process may take to go after SIGTERM. */
export interface RunnerOptions {
  prepared: PreparedStart;
  killGraceMs: number;
}

/**
 * What to start for argv[0] of a command: the program the gluepot check resolved, else the one the account finds,
 * found the same way for every account (bridges/programs.ts says what remains); a RequestError when there is none.
 */
export function programToRun(prepared: PreparedStart, program: string, cwd: string): string {
  const { runAs } = prepared.identity;
  return prepared.programs?.[0] ?? programToStart(findProgram(program, prepared.env['PATH'] ?? '', cwd, runAs), runAs);
}

/** Resolves when a stream has finished or was destroyed, whichever comes first; never rejects. */
export function settled(stream: MuxStream): Promise<void> {
  return finished(stream, { readable: false }).then(
    () => undefined,
    () => undefined,
  );
}

/**
 * What the command and pty runners share: one leading process whose group receives forwarded signals, an outcome
 * settled once, and an abort that ends the groups once however often it is asked.
 */
export abstract class LeaderRunner {
  private ending: Promise<void> | undefined;
  private resolveOutcome: (status: ExitStatus) => void = () => undefined;
  readonly outcome: Promise<ExitStatus> = new Promise((resolve) => (this.resolveOutcome = resolve));

  constructor(
    protected readonly log: Logger,
    protected readonly options: RunnerOptions,
  ) {}

  /** The leading process, also its process group; undefined until it has started. */
  protected abstract get leader(): number | undefined;

  /** Ends the groups of a started leader; called at most once. */
  protected abstract endGroups(leader: number, reason: string | undefined): Promise<void>;

  signal(signal: ForwardableSignal): void {
    const pgid = this.leader;
    if (pgid === undefined) return;
    this.log.info('forwarding signal', { signal, pgid });
    signalGroup(pgid, signal);
  }

  abort(reason?: string): Promise<void> {
    const leader = this.leader;
    this.ending ??= leader === undefined ? Promise.resolve() : this.endGroups(leader, reason);
    return this.ending;
  }

  protected ended(status: ExitStatus): void {
    this.log.info('command ended', status);
    this.resolveOutcome(status);
  }
}
