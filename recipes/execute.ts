// Runs a checked recipe (a RecipePlan) as real processes: every pipe, label pipe and named pipe is made and opened
// before the first command starts, commands start in recipe order (the next one waits unless this one ended in &
// or |), each command's end is reported as it happens, and whatever way the run ends, no process, fd or pipe is
// left. It knows processes and pipes only: the session that owns it joins plumb's streams to RecipeIo.
//
// A recipe that spans machines runs as one RecipeRun per machine, each given the stages it owns (ownStages). It
// readies only the pipes its own commands use, holds an outlet for each edge its commands write into and an inlet
// for each edge its commands read from (edges.ts), and keeps the recipe's one order: before a command that follows
// another machine's foreground command it waits until foreignStageEnded() says that command has ended.
//
// Asked to count (countBytes, for plumb -json), it gives each command taps in place of its pipes, through the
// counting relays of stage-meter.ts, and tells each command's bytes in and out as they are known.
//
//   prepareRecipe ──> Prepared ──start()──> Running ──every stage ended, outputs read──> Finished
//                                              └──abort()──> Aborting ──every process gone──> Finished

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fs, fstatSync, ftruncateSync, mkdirSync } from 'node:fs';
import { openChecked, type MadeFile, type PathCheck } from '../bridges/checked-open.js';
import { OWN_IDENTITY, type CommandIdentity } from '../bridges/identity.js';
import { findProgram, programToStart } from '../bridges/programs.js';
import { openFifo } from '../bridges/fifo.js';
import { RunningDigest } from '../bridges/running-digest.js';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { ErrorCode, InternalError, NetplumbError, RecipeSetupError, SpawnFailedError } from '../protocol/errors.js';
import type { ExitStatus, StageBytes, StageEnd, StageStatus } from '../protocol/session.js';
import { readsPlumbStdin, recipeStatus, type RecipePlan, type RecipeStage, type StageOutput } from './plan.js';
import { endGroups, groupAlive, notStarted, signalGroup, spawnFailure, STAGE_REDIRECTION_FAILED_CODE } from './process-groups.js';
import { inputPipeKey, outputPipeKey, type PipeKey } from './stage-io.js';
import { StageMeter, tapsNeeded, type OutputSlot } from './stage-meter.js';
import { closePipe, pipeStock, type StockedPipe } from './pipe-stock.js';
import { EdgeOutlet, openEdgeInlet, type EdgeInlet, type EdgeOutput, type EdgeTally } from './edges.js';
import { makeDeclaredFifos, openBothEnds, plumbPipes, RecipePipe, removeMadeFifos, type IoSockets } from './run-pipes.js';

export { STAGE_NOT_EXECUTABLE_CODE, STAGE_NOT_FOUND_CODE, STAGE_REDIRECTION_FAILED_CODE } from './process-groups.js';
export { recipeStatus } from './plan.js';

/** Mode of files a recipe creates with > and >> (before the umask). */
const OUTPUT_FILE_MODE = 0o644;

export interface RecipeRunOptions {
  /** The environment every command starts with. */
  env: Record<string, string>;
  /** Time between SIGTERM and SIGKILL when a run is aborted. */
  killGraceMs: number;
  /** Called as each command ends (or fails to start), in the order that happens. */
  onStageEnd?: (end: StageEnd) => void;
  /** Called as each command has been started, with the process (and group) id. */
  onStageStart?: (stage: RecipeStage, pid: number) => void;
  /** The program file to run for each stage, already resolved (and checked) by the caller; argv[0] stays as written. */
  programs?: readonly string[];
  /** Called with the real path of every redirection's file as it is opened; throws to refuse it. */
  checkFile?: PathCheck;
  /** Whose rights the commands, and the files opened for them, have; absent: the daemon's own. */
  identity?: CommandIdentity;
  /** The stages this machine runs, for a recipe that spans machines; absent: every stage. */
  ownStages?: ReadonlySet<number>;
  /** Called as each edge end this machine holds is done, with what passed it. */
  onEdgeEnd?: (tally: EdgeTally) => void;
  /** Count and hash (SHA-256) plumb's stdout as it is read here and plumb's stdin as it is delivered (outcome.stdio). */
  digestStdio?: boolean;
  /** Count what each command takes in and gives out (stage-meter.ts), told to onStageBytes and in outcome.bytes. */
  countBytes?: boolean;
  /** With countBytes: a command's counts, once it has exited and its output is all in (after its onStageEnd). */
  onStageBytes?: (bytes: StageBytes) => void;
}

/** The count and SHA-256 of the bytes one of plumb's streams carried at this end. */
export interface StdioDigest {
  stream: 'stdin' | 'stdout';
  bytes: number;
  sha256: string;
}

/** Where the recipe's unclaimed output goes and where `<%stdin` reads from. */
export interface RecipeIo {
  /** Read only when a stage reads `<%stdin`; otherwise left alone (the caller may drop it). */
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  /** For each edge leaving this machine, by its index in plan.edges: where its bytes go. Absent: nowhere (EPIPE). */
  edgeOutputs?: ReadonlyMap<number, EdgeOutput>;
  /** For each edge arriving here: the bytes to deliver to its reader. Absent: the reader sees no bytes from it. */
  edgeInputs?: ReadonlyMap<number, Readable>;
}

/** How a run ended: every stage's end in recipe order, the recipe's status, and why it was cut short if it was. */
export interface RecipeOutcome {
  /** The ends of this machine's own stages. */
  stages: StageEnd[];
  /** What passed each end of an edge this machine holds, outlets and inlets, in edge order. */
  edges: EdgeTally[];
  /** With digestStdio: plumb's stdout as read here, and its stdin as delivered when a command here read it. */
  stdio?: StdioDigest[];
  /** With countBytes: the counts of each command that ran here, in the order they were told. */
  bytes?: StageBytes[];
  status: ExitStatus;
  /** Set when abort() ended the run; stages not reached have no entry. */
  abortedBecause?: string;
}

/**
 * When start() joins plumb's streams: at once, or only once a command has started (a plain command that cannot
 * start then leaves them untouched, for its caller to refuse the request instead).
 */
export type JoinIo = 'at-once' | 'once-started';

const enum State {
  Prepared,
  Running,
  Aborting,
  Finished,
}

/** A recipe whose pipes exist and are open; start() runs it, abort() ends it. Made by prepareRecipe(). */
export class RecipeRun {
  private state = State.Prepared;
  private readonly ends: (StageEnd | undefined)[];
  private readonly live = new Map<number, ChildProcess>();
  /** When each stage's command started (ms since the epoch), for its end's report. */
  private readonly startedAt = new Map<number, number>();
  /** Every process group the run started, alive or not: a leader's children may outlive it. */
  private readonly groups: number[] = [];
  private abortReason: string | undefined;
  /** Set while an abort (or the end of leftovers) is ending the groups; resolves when none is left. */
  private ending: Promise<void> | undefined;
  /** The join of plumb's streams, while it waits for a command to start. */
  private joinPending: (() => void) | undefined;
  private resolveOutcome: (outcome: RecipeOutcome) => void = () => undefined;
  /** Settles once every started command has ended, every output has been read and every pipe is gone. */
  readonly outcome: Promise<RecipeOutcome>;
  /** Other machines' stages that have ended, as foreignStageEnded() was told; waited for by the stage order. */
  private readonly foreignEnds = new Map<number, { ended: Promise<void>; end: () => void }>();
  private readonly tallies: EdgeTally[] = [];
  /** plumb's streams as counted and hashed here (digestStdio). */
  private readonly stdioDigests = new Map<'stdin' | 'stdout', RunningDigest>();
  /** Resolves when the run stops starting commands (abort or finish), so no wait for another machine outlives it. */
  private stopStarting: () => void = () => undefined;
  private readonly stoppedStarting = new Promise<void>((resolve) => (this.stopStarting = resolve));
  /** With countBytes: the counts told so far. */
  private readonly counted: StageBytes[] = [];

  constructor(
    readonly plan: RecipePlan,
    private readonly options: RecipeRunOptions,
    /** Every pipe of the run, plumb's three included, by the key stage-io.ts gives it. */
    private readonly pipes: Map<PipeKey, RecipePipe>,
    private readonly io: IoSockets,
    /** The declared named pipes, as made: removed when the run is over. */
    private readonly madeFifos: readonly MadeFile[],
    /** The ends this machine holds of edges: outlets of those its commands write, inlets of those they read. */
    private readonly edgeEnds: { outlets: readonly EdgeOutlet[]; inlets: readonly EdgeInlet[] } = { outlets: [], inlets: [] },
    /** With countBytes: the taps and relays each command's streams pass, in place of the pipes. */
    private readonly meter?: StageMeter,
  ) {
    this.ends = plan.stages.map(() => undefined);
    this.outcome = new Promise((resolve) => (this.resolveOutcome = resolve));
    meter?.listen((bytes) => this.stageCounted(bytes));
  }

  /** Whether this machine runs the stage. */
  owns(stage: number): boolean {
    return this.options.ownStages?.has(stage) ?? true;
  }

  /** Another machine's stage has ended: a command of this machine waiting for it in the recipe's order may start. */
  foreignStageEnded(stage: number): void {
    if (this.owns(stage)) return;
    this.foreignEnd(stage).end();
  }

  private foreignEnd(stage: number): { ended: Promise<void>; end: () => void } {
    let entry = this.foreignEnds.get(stage);
    if (entry === undefined) {
      let end: () => void = () => undefined;
      const ended = new Promise<void>((resolve) => (end = resolve));
      entry = { ended, end };
      this.foreignEnds.set(stage, entry);
    }
    return entry;
  }

  /** Starts the commands in order, joining plumb's streams as `join` says; the outcome promise tells how it went. Call once. */
  start(io: RecipeIo, join: JoinIo = 'at-once'): void {
    if (this.state !== State.Prepared) throw new InternalError('recipe started twice');
    this.state = State.Running;
    let outputsRead: Promise<unknown> = Promise.resolve();
    this.joinPending = () => {
      outputsRead = this.joinIo(io);
    };
    if (join === 'at-once') this.joinNow();
    void this.runStages()
      .then(() => this.allExited())
      .then(() => outputsRead)
      .then(() => this.finish());
  }

  /** Sends a signal to the process group of every command started so far. */
  signal(signal: NodeJS.Signals): void {
    // Only groups still there: a number that was freed may belong to someone else by now.
    for (const group of this.groups.filter(groupAlive)) signalGroup(group, signal);
  }

  /** Stops starting commands, ends every running one (SIGTERM, then SIGKILL after the grace period) and cleans up. */
  abort(reason: string): Promise<RecipeOutcome> {
    if (this.state === State.Finished) {
      // Processes the commands left behind in their groups (`sleep 60 &` in a command's shell) end with the session.
      return this.endAllGroups().then(() => this.outcome);
    }
    if (this.state === State.Prepared) {
      this.abortReason = reason;
      this.finish();
      return this.outcome;
    }
    if (this.state === State.Aborting) return this.outcome;
    this.state = State.Aborting;
    this.abortReason = reason;
    this.stopStarting();
    // Nothing more will be started: pipes the daemon still holds must not keep anyone waiting.
    this.closeAllPipes();
    void this.endAllGroups().then(() => this.finish());
    return this.outcome;
  }

  /** Every group the run started: SIGTERM now, SIGKILL after the grace period; resolves when none is left. */
  private endAllGroups(): Promise<void> {
    this.ending ??= endGroups(() => this.groups, this.options.killGraceMs);
    return this.ending;
  }

  private joinNow(): void {
    const join = this.joinPending;
    this.joinPending = undefined;
    join?.();
  }

  /** A tap that counts and hashes one of plumb's streams, when the run digests them. */
  private stdioTap(stream: 'stdin' | 'stdout'): ((chunk: Buffer) => void) | undefined {
    if (this.options.digestStdio !== true) return undefined;
    const digest = new RunningDigest();
    this.stdioDigests.set(stream, digest);
    return digest.add;
  }

  private joinIo(io: RecipeIo): Promise<unknown> {
    const { stdinWriter, stdoutReader, stderrReader } = this.io;
    if (stdinWriter !== undefined) {
      const tap = this.stdioTap('stdin');
      if (tap !== undefined) io.stdin.on('data', tap);
      // A command that stops reading its stdin ends plumb's stdin stream too, so the client stops sending.
      stdinWriter.on('error', () => io.stdin.destroy());
      io.stdin.on('error', () => stdinWriter.destroy());
      io.stdin.pipe(stdinWriter);
    }
    const reads: Promise<unknown>[] = [];
    for (const [source, sink] of [
      [stdoutReader, io.stdout],
      [stderrReader, io.stderr],
    ] as const) {
      if (source === undefined) {
        sink.end();
        continue;
      }
      const key = sink === io.stdout ? 'plumb:stdout' : 'plumb:stderr';
      source.pipeTo(sink, sink === io.stdout ? this.stdioTap('stdout') : undefined);
      // plumb dropped this output: the commands' next write fails with EPIPE or SIGPIPE, as with a local pipe.
      const dropped = (): void => {
        source.destroy();
        this.meter?.readerGone(key);
      };
      sink.on('close', () => {
        if (!sink.writableFinished) dropped();
      });
      sink.on('error', dropped);
      reads.push(finished(sink, { readable: false }).catch(() => undefined));
    }
    for (const outlet of this.edgeEnds.outlets) {
      const output = io.edgeOutputs?.get(outlet.edge);
      if (output === undefined) {
        outlet.destroy();
        continue;
      }
      reads.push(
        outlet.pipeTo(output).then((tally) => {
          // Cut short, the edge reads no more: its writers here learn it as they would from the pipe.
          if (!tally.complete) this.meter?.readerGone(`edge:${outlet.edge}`);
          this.edgeEnded(tally);
        }),
      );
    }
    for (const inlet of this.edgeEnds.inlets) {
      const input = io.edgeInputs?.get(inlet.edge);
      if (input === undefined) {
        inlet.destroy();
        continue;
      }
      reads.push(inlet.deliver(input).then((tally) => this.edgeEnded(tally)));
    }
    return Promise.all(reads);
  }

  private edgeEnded(tally: EdgeTally): void {
    this.tallies.push(tally);
    this.options.onEdgeEnd?.(tally);
  }

  private async runStages(): Promise<void> {
    for (const stage of this.plan.stages) {
      if (this.state !== State.Running) return;
      if (!this.owns(stage.index)) {
        // Another machine's command: ours after it wait for its end as they would for one of our own.
        const oursFollow = this.plan.stages.some((later) => later.index > stage.index && this.owns(later.index));
        if (!stage.background && oursFollow) await Promise.race([this.foreignEnd(stage.index).ended, this.stoppedStarting]);
        continue;
      }
      const child = this.startStage(stage);
      if (child !== undefined && !stage.background) await exited(child);
    }
  }

  /** Spawns one command with its redirections; a command that cannot start is reported like a shell would. */
  private startStage(stage: RecipeStage): ChildProcess | undefined {
    const opened: number[] = [];
    // With counting, the file each redirection opened, by stream: kept, to be counted by its position, once it runs.
    const files: RedirectionFiles = {};
    let child: ChildProcess | undefined;
    try {
      let stdio: [number | 'ignore', number, number];
      try {
        const stdin = this.inputFd(stage, opened, files);
        const stdout = this.outputFd(stage, 'stdout', opened, files);
        const stderr = stage.stderr === stage.stdout ? stdout : this.outputFd(stage, 'stderr', opened, files);
        stdio = [stdin, stdout, stderr];
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        this.report(stage, { error: ErrorCode.SpawnFailed, message: `redirection failed: ${message}`, code: STAGE_REDIRECTION_FAILED_CODE });
        return undefined;
      }
      const [program, ...args] = stage.argv as [string, ...string[]];
      const identity = this.options.identity ?? OWN_IDENTITY;
      let named: string;
      try {
        // Found when the command starts (an earlier one may have made it), as its account finds it: the same answer
        // for every account, where setpriv would otherwise speak for it (bridges/programs.ts says what remains).
        named = this.options.programs?.[stage.index] ?? programToStart(findProgram(program, this.options.env['PATH'] ?? '', this.plan.spoolDir, identity), identity);
      } catch (error) {
        this.report(stage, notStarted(program, error));
        return undefined;
      }
      const [file, fileArgs] = identity.command(named, args);
      try {
        child = spawn(file, fileArgs, { argv0: program, stdio, detached: true, env: this.options.env, cwd: this.plan.spoolDir });
      } catch (error) {
        // Node throws at once for some failures (ENOTDIR, E2BIG, ...) and reports others as 'error' later.
        this.report(stage, spawnFailure(program, error as NodeJS.ErrnoException));
        return undefined;
      }
      const started = child;
      started.once('error', (error: NodeJS.ErrnoException) => {
        if (started.pid !== undefined) return;
        this.report(stage, spawnFailure(program, error));
      });
      if (started.pid === undefined) return started;
      if (this.meter !== undefined) {
        this.meter.started(stage.index, started.pid);
        this.countFiles(stage, files, opened);
      }
      this.live.set(stage.index, started);
      this.startedAt.set(stage.index, Date.now());
      this.groups.push(started.pid);
      this.options.onStageStart?.(stage, started.pid);
      this.joinNow();
      started.once('exit', (code, signal) => {
        this.live.delete(stage.index);
        this.report(stage, signal !== null ? { signal } : { code: code ?? 0 });
      });
      return started;
    } finally {
      for (const fd of opened) closeSync(fd);
      this.handOver(stage);
    }
  }

  private inputFd(stage: RecipeStage, opened: number[], files: RedirectionFiles): number | 'ignore' {
    const input = stage.stdin;
    if (input.kind === 'null') return 'ignore';
    if (input.kind === 'file') {
      const fd = this.openRedirection(input.path, fs.O_RDONLY, opened);
      if (this.meter !== undefined) files.stdin = { fd, base: 0 };
      return fd;
    }
    return this.heldFd(this.inputPipe(stage)?.readFd);
  }

  private outputFd(stage: RecipeStage, slot: OutputSlot, opened: number[], files: RedirectionFiles): number {
    const output = stage[slot];
    if (output.kind === 'file') {
      const fd = this.openRedirection(output.path, fs.O_WRONLY | fs.O_CREAT | (output.append ? fs.O_APPEND : fs.O_TRUNC), opened);
      // Counted by its position: an appended file's size now, before the command can write, is not the command's.
      if (this.meter !== undefined) files[slot] = { fd, base: output.append ? fstatSync(fd).size : 0 };
      // Counted, /dev/null is written through the stream's tap (and dropped), once opening it passed the checks.
      const tap = this.meter?.outputTap(stage.index, slot);
      return tap === undefined ? fd : this.heldFd(tap.writeFd);
    }
    return this.heldFd(this.outputPipe(stage, slot)?.writeFd);
  }

  /** The files a started stage's redirections opened are kept open, to be counted by the position it leaves. */
  private countFiles(stage: RecipeStage, files: RedirectionFiles, opened: number[]): void {
    const meter = this.meter as StageMeter;
    for (const stream of ['stdin', 'stdout', 'stderr'] as const) {
      const file = files[stream];
      if (file !== undefined && meter.keepFile(stage.index, stream, file.fd, file.base)) opened.splice(opened.indexOf(file.fd), 1);
    }
  }

  /** An end the run must still hold; its absence is a bug in the plan's bookkeeping, never the user's doing. */
  private heldFd(fd: number | undefined): number {
    if (fd === undefined) throw new InternalError('pipe end already closed');
    return fd;
  }

  /** After a stage was started (or could not be), the pipe ends it took are released. */
  private handOver(stage: RecipeStage): void {
    for (const [pipe, end] of this.pipeEndsOf(stage)) pipe.handedOver(end);
  }

  /** The run's pipes (or, counted, taps) a stage uses, with the end it uses; stdout and stderr into one count once. */
  pipeEndsOf(stage: RecipeStage): [RecipePipe, 'read' | 'write'][] {
    const uses: [RecipePipe, 'read' | 'write'][] = [];
    const input = this.inputPipe(stage);
    if (input !== undefined) uses.push([input, 'read']);
    const outputs = new Set<RecipePipe>();
    for (const slot of ['stdout', 'stderr'] as const) {
      const pipe = this.outputPipe(stage, slot);
      if (pipe !== undefined) outputs.add(pipe);
    }
    for (const pipe of outputs) uses.push([pipe, 'write']);
    return uses;
  }

  /** The pipe a stage reads: its tap when counted. */
  private inputPipe(stage: RecipeStage): RecipePipe | undefined {
    const tap = this.meter?.inputTap(stage.index);
    if (tap !== undefined) return tap;
    const key = inputPipeKey(stage.stdin);
    return key === undefined ? undefined : this.pipes.get(key);
  }

  /** The pipe a stage's output goes into here: its tap when counted, else the pipe it is bound for. */
  private outputPipe(stage: RecipeStage, slot: OutputSlot): RecipePipe | undefined {
    const tap = this.meter?.outputTap(stage.index, slot);
    if (tap !== undefined) return tap;
    const key = outputKeyOf(this.plan, stage, stage[slot]);
    return key === undefined ? undefined : this.pipes.get(key);
  }

  private report(stage: RecipeStage, status: StageStatus): void {
    if (this.ends[stage.index] !== undefined) return;
    const end: StageEnd = { stage: stage.index, name: stage.name, line: stage.location.line, status };
    const startedAt = this.startedAt.get(stage.index);
    if (startedAt !== undefined) Object.assign(end, { startedAt, endedAt: Date.now() });
    this.ends[stage.index] = end;
    this.options.onStageEnd?.(end);
    if (startedAt === undefined) this.meter?.neverRan(stage.index);
    else this.meter?.exited(stage.index);
  }

  /** A command's counts, told as they are final. */
  private stageCounted(bytes: StageBytes): void {
    this.counted.push(bytes);
    this.options.onStageBytes?.(bytes);
  }

  private async allExited(): Promise<void> {
    await Promise.all([...this.live.values()].map((child) => exited(child)));
  }

  private closeAllPipes(): void {
    for (const pipe of this.pipes.values()) pipe.close();
    this.meter?.closeTaps();
  }

  private finish(): void {
    if (this.state === State.Finished) return;
    // An abort's ending of the groups goes on: the leaders are gone, but what they left in their groups goes too.
    this.state = State.Finished;
    this.stopStarting();
    this.closeAllPipes();
    this.io.stdinWriter?.destroy();
    this.io.stdoutReader?.destroy();
    this.io.stderrReader?.destroy();
    for (const end of [...this.edgeEnds.outlets, ...this.edgeEnds.inlets]) end.destroy();
    // Before the outcome: a command's counts are told before the run's end.
    this.meter?.close();
    removeMadeFifos(this.madeFifos, this.options.identity ?? OWN_IDENTITY);
    const stages = this.ends.filter((end): end is StageEnd => end !== undefined);
    const edges = [...this.tallies].sort((a, b) => a.edge - b.edge || (a.direction < b.direction ? -1 : 1));
    const outcome: RecipeOutcome = { stages, edges, status: recipeStatus(stages, this.abortReason !== undefined) };
    if (this.options.digestStdio === true) {
      outcome.stdio = [...this.stdioDigests].map(([stream, digest]) => ({ stream, bytes: digest.bytes, sha256: digest.digest() }));
    }
    if (this.meter !== undefined) outcome.bytes = [...this.counted];
    if (this.abortReason !== undefined) outcome.abortedBecause = this.abortReason;
    this.resolveOutcome(outcome);
  }

  /**
   * Opens a redirection's file for a command, with the command's rights. What is opened is what was checked
   * (bridges/checked-open.ts): never through a symlink, and the real path of its directory, as the kernel has it at
   * the moment of opening, goes to checkFile. Never blocking the daemon: O_NONBLOCK, then only a regular file or a
   * character device (/dev/null, a tape) is accepted; a FIFO or socket that is not one of the recipe's own named
   * pipes is refused. The command still gets a blocking descriptor: libuv clears O_NONBLOCK on a child's stdin,
   * stdout and stderr. Under a gluepot a file with other hard links is refused: the check knows one of its names only.
   */
  private openRedirection(path: string, flags: number, opened: number[]): number {
    const identity = this.options.identity ?? OWN_IDENTITY;
    // `>` truncates only once the file is known to be one it may: never a file refused below.
    const truncate = (flags & fs.O_TRUNC) !== 0;
    const fd = identity.asUser(() => openChecked(path, (flags & ~fs.O_TRUNC) | fs.O_NOCTTY | fs.O_NONBLOCK, OUTPUT_FILE_MODE, this.options.checkFile));
    opened.push(fd);
    const stat = fstatSync(fd);
    if (stat.isFile()) {
      if (this.options.checkFile !== undefined && stat.nlink > 1) throw new SpawnFailedError(`${path} has other names (hard links) the gluepot check cannot see`);
      if (truncate) ftruncateSync(fd);
      return fd;
    }
    if (!stat.isCharacterDevice()) throw new SpawnFailedError(`${path} is not a regular file (declare a named pipe with fifo)`);
    return fd;
  }
}

/**
 * Readies every pipe of a checked plan: creates the spool directory if missing, the declared named pipes there
 * (an existing file of that name is refused, never reused), takes the label pipes, `|` pipes and plumb's streams
 * from the pipe stock, and opens the named pipes. Nothing runs yet. On failure everything made so far is removed.
 */
export async function prepareRecipe(plan: RecipePlan, options: RecipeRunOptions): Promise<RecipeRun> {
  try {
    mkdirSync(plan.spoolDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new RecipeSetupError(`cannot make the spool directory ${plan.spoolDir}: ${(error as Error).message}`, { cause: error });
  }
  const identity = options.identity ?? OWN_IDENTITY;
  const owns = (stage: number): boolean => options.ownStages?.has(stage) ?? true;
  const ownStages = plan.stages.filter((stage) => owns(stage.index));
  const pipes: RecipePipe[] = [];
  const made: MadeFile[] = [];
  const outlets: EdgeOutlet[] = [];
  const inlets: EdgeInlet[] = [];
  // Taken from the stock and not yet a RecipePipe's or a socket's: closed here if the setup fails.
  let loose: StockedPipe[] = [];
  let meter: StageMeter | undefined;
  let io: ReturnType<typeof plumbPipes> | undefined;
  try {
    // Pipes live with their reader: a label or | pipe read here, a named pipe used here (the check keeps both of its
    // ends on one machine), plumb's stdin if a command here reads it; an edge read elsewhere is a pipe of its own.
    const fifos = plan.fifos.filter((fifo) => ownStages.some((stage) => usesFifo(stage, fifo.name)));
    const labels = plan.labels.filter((label) => owns(label.readerStage));
    const pipedStages = plan.stages.filter((stage) => (stage.stdout.kind === 'pipe' || stage.stderr.kind === 'pipe') && owns(stage.index + 1));
    const edgesOut = plan.edges.filter((edge) => owns(edge.fromStage));
    const edgesIn = plan.edges.filter((edge) => owns(edge.toStage));
    const readsStdin = readsPlumbStdin(plan, options.ownStages);
    made.push(...(await makeDeclaredFifos(fifos, plan.spoolDir, identity)));
    const outputKey = (stage: RecipeStage, output: StageOutput): PipeKey | undefined => outputKeyOf(plan, stage, output);
    const taps = options.countBytes === true ? ownStages.reduce((sum, stage) => sum + tapsNeeded(stage, outputKey), 0) : 0;
    loose = await pipeStock.take(labels.length + pipedStages.length + edgesOut.length + (readsStdin ? 3 : 2) + taps);
    const fromStock = (): RecipePipe => {
      const { readFd, writeFd } = loose.shift() as StockedPipe;
      const pipe = new RecipePipe(readFd, writeFd);
      pipes.push(pipe);
      return pipe;
    };
    const labelPipes = labels.map((label) => [`label:${label.label}`, fromStock()] as const);
    const stagePipes = pipedStages.map((stage) => [`stage:${stage.index}`, fromStock()] as const);
    const edgePipes = edgesOut.map((edge) => {
      const pipe = fromStock();
      // The daemon is the edge pipe's only reader: its read end becomes the outlet's.
      outlets.push(new EdgeOutlet(edge.index, pipe.readFd as number));
      pipe.readFd = undefined;
      return [`edge:${edge.index}`, pipe] as const;
    });
    // The declared named pipes are in the spool, where the account's other sessions may be at work: opened with its
    // rights, never through a symlink, and only as the FIFOs just made.
    const fifoPipes = fifos.map((fifo) => {
      const pipe = openBothEnds(fifo.path, (path, flags) => identity.asUser(() => openFifo(path, flags)));
      pipes.push(pipe);
      return [`fifo:${fifo.name}`, pipe] as const;
    });
    const [stdout, stderr, stdin] = loose.splice(0, readsStdin ? 3 : 2) as [StockedPipe, StockedPipe, StockedPipe | undefined];
    io = plumbPipes(stdout, stderr, stdin);
    pipes.push(io.stdin, io.stdout, io.stderr);
    const byKey = new Map<PipeKey, RecipePipe>([
      ...labelPipes,
      ...stagePipes,
      ...edgePipes,
      ...fifoPipes,
      ['plumb:stdin', io.stdin],
      ['plumb:stdout', io.stdout],
      ['plumb:stderr', io.stderr],
    ]);
    // Each incoming edge writes through an end of its own, opened while the pipe's write end is still held.
    for (const edge of edgesIn) {
      const target = byKey.get(edge.pipe)?.writeFd;
      if (target === undefined) throw new InternalError(`no pipe here for edge ${edge.index} (${edge.pipe})`);
      inlets.push(openEdgeInlet(edge.index, target));
    }
    if (options.countBytes === true) {
      meter = new StageMeter();
      meter.build(ownStages, loose, byKey, outputKey);
    }
    const run = new RecipeRun(plan, options, byKey, io.sockets, made, { outlets, inlets }, meter);
    for (const stage of ownStages) for (const [pipe, end] of run.pipeEndsOf(stage)) pipe.expect(end);
    for (const pipe of [...pipes, ...(meter?.taps ?? [])]) pipe.closeUnclaimed();
    return run;
  } catch (error) {
    meter?.close();
    for (const pipe of loose) closePipe(pipe);
    for (const pipe of pipes) pipe.close();
    io?.sockets.stdinWriter?.destroy();
    io?.sockets.stdoutReader?.destroy();
    io?.sockets.stderrReader?.destroy();
    for (const end of [...outlets, ...inlets]) end.destroy();
    removeMadeFifos(made, identity);
    if (error instanceof NetplumbError) throw error;
    throw new RecipeSetupError(`cannot ready the recipe's pipes: ${(error as Error).message}`, { cause: error });
  }
}

/** The key of the pipe a stage's output goes into here: the edge's own pipe when its reader runs on another machine. */
function outputKeyOf(plan: RecipePlan, stage: RecipeStage, output: StageOutput): PipeKey | undefined {
  const key = outputPipeKey(output);
  if (key === undefined) return undefined;
  const edge = plan.edges.find((candidate) => candidate.fromStage === stage.index && candidate.pipe === key);
  return edge === undefined ? key : `edge:${edge.index}`;
}

/** With counting, the files a stage's redirections opened, by stream, with what of each is not the command's. */
type RedirectionFiles = Partial<Record<'stdin' | OutputSlot, { fd: number; base: number }>>;

/** Whether a stage reads or writes the named pipe. */
function usesFifo(stage: RecipeStage, name: string): boolean {
  return [stage.stdin, stage.stdout, stage.stderr].some((end) => end.kind === 'fifo' && end.name === name);
}

/**
 * Resolves when the process has exited (at once if it already has), or, for one that could not start, once its
 * spawn error has been reported: Node emits that error a tick after spawn(), and the next command must not start
 * (and end, and be reported) before it.
 */
function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  if (child.pid === undefined) return new Promise((resolve) => child.once('error', () => resolve()));
  return new Promise((resolve) => child.once('exit', () => resolve()));
}
