// What each command of a recipe run took in and gave out, counted by the daemon when the run is asked to (plumb
// -json): every stream of every command, whatever it is joined to. Pipes pass counting relays (counting-relay.ts):
// a command's stdout and stderr go into taps of its own, relayed on to where they were bound, and a command reading
// a pipe reads a tap fed from it. A file is never relayed: a command may seek in it or ask its size, it must be
// complete when the command ends, and a write error there is the command's to see. Its count is the position the
// command left in the open file it shares with the daemon, read from /proc/self/fdinfo once the command has ended
// (for >>, less the file's size when it was opened). Output to /dev/null is relayed and dropped, since writing there
// moves no position. Another device (a tape, whose records are the command's own writes) is left alone, uncounted.
//
// A writer must learn that its reader has gone when it would without the relays. Once a command that reads a tap has
// exited, the meter looks for any process still holding the tap (pipe-holders.ts), again at growing intervals while
// one does; when none is left, the feed is cut, which cuts the relay into the label or | pipe it read (nothing else
// can read those), which closes the writers' taps. A named pipe may have readers that opened it by its name: there
// the writers learn by their relay's next write. A command's counts are told once it has exited and each of its
// output taps has reached EOF (so what it wrote last is in), or when the run ends.

import { closeSync, constants as fs, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { InternalError } from '../protocol/errors.js';
import type { StageBytes } from '../protocol/session.js';
import { CountingRelay, type RelaySink, type RelaySource } from './counting-relay.js';
import { pipeHolder, processStartTicks, type HeldPipe } from './pipe-holders.js';
import type { RecipeStage, StageOutput } from './plan.js';
import type { StockedPipe } from './pipe-stock.js';
import { RecipePipe } from './run-pipes.js';
import { inputPipeKey, type PipeKey } from './stage-io.js';

/** How soon, and at most how often, an exited command's tap is looked for in other processes while one holds it. */
const FIRST_HOLDER_WAIT_MS = 250;
const LAST_HOLDER_WAIT_MS = 4000;

/** The one device whose output is relayed (and dropped) rather than left uncounted. */
const DEV_NULL = '/dev/null';

/** A command's output streams as counted: stdout (with stderr where both go to one place), and stderr alone. */
export type OutputSlot = 'stdout' | 'stderr';

/** A tap a command reads: its feed, and the tap as the feed holds it, to find who else still does. */
type InputCount = { kind: 'none' } | { kind: 'tap'; feed: CountingRelay; pipe: HeldPipe } | { kind: 'file'; fd: number };
/** A file's count is its position less `base`: for >>, the file's size when it was opened. */
type OutputCount = { kind: 'tap'; source: RelaySource } | { kind: 'file'; fd: number; base: number };

/** What one command is counted by. */
interface StageCounts {
  stage: number;
  input: InputCount | undefined;
  outputs: Map<OutputSlot, OutputCount>;
  /** When its command started, in clock ticks since boot: no older process can hold its taps. */
  startTicks: number;
  exited: boolean;
  told: boolean;
}

/** Where a stage's output stream is relayed to: a pipe of the run, or /dev/null; undefined: a file, by its position. */
type RelayTarget = PipeKey | typeof DEV_NULL;

/** How a stage's outputs are tapped: stderr has a slot of its own only where it goes elsewhere than stdout. */
interface OutputPlan {
  stdout: RelayTarget | undefined;
  /** Absent: stderr goes where stdout goes (2>&1, >%x 2>%x), into the same tap or file. */
  stderr?: RelayTarget | undefined;
}

/** Resolves where a stage's output goes among the run's pipes (an edge's own pipe where its reader is elsewhere). */
export type OutputKey = (stage: RecipeStage, output: StageOutput) => PipeKey | undefined;

function outputPlan(stage: RecipeStage, outputKey: OutputKey): OutputPlan {
  const target = (output: StageOutput): RelayTarget | undefined => {
    if (output.kind !== 'file') return outputKey(stage, output);
    return posix.normalize(output.path) === DEV_NULL ? DEV_NULL : undefined;
  };
  const stdout = target(stage.stdout);
  if (stage.stderr === stage.stdout) return { stdout };
  const stderr = target(stage.stderr);
  // Two writes into one pipe are one tap; two redirections to files (>f 2>f) are two opens, counted apart.
  const samePipe = stderr !== undefined && stderr !== DEV_NULL && stderr === stdout;
  return samePipe ? { stdout } : { stdout, stderr };
}

/** How many taps a stage needs: one per pipe or /dev/null it writes to, and one for a pipe it reads. */
export function tapsNeeded(stage: RecipeStage, outputKey: OutputKey): number {
  const plan = outputPlan(stage, outputKey);
  const outputs = [plan.stdout, plan.stderr].filter((target) => target !== undefined).length;
  return outputs + (inputPipeKey(stage.stdin) === undefined ? 0 : 1);
}

/**
 * The taps, relays and kept files of one run's counting. Built while the run's pipes are readied (with every pipe's
 * ends still held, so the relays open ends of their own); the run then gives each command its taps in place of the
 * pipes, hands over the files it opened, and says how each command ended.
 */
export class StageMeter {
  private readonly outputTaps = new Map<`${number}:${OutputSlot}`, RecipePipe>();
  private readonly inputTaps = new Map<number, RecipePipe>();
  /** Every tap, as a pipe of the run: the daemon holds a command's end of each until that command has started. */
  readonly taps: RecipePipe[] = [];
  /** The relay into each pipe of the run that commands here write. */
  private readonly merges = new Map<PipeKey, CountingRelay>();
  private readonly relays: CountingRelay[] = [];
  /** Set by close(): no more looking for a tap's holders. */
  private closed = false;
  private readonly counts = new Map<number, StageCounts>();
  private tell: (bytes: StageBytes) => void = () => undefined;

  /** Who is told each command's counts. */
  listen(tell: (bytes: StageBytes) => void): void {
    this.tell = tell;
  }

  /**
   * Makes the stages' taps and relays: `fresh` are new pipes (tapsNeeded of each stage, in all), taken as they are
   * used; `pipes` are the run's pipes by key, both ends still held. On a failure, close() closes what was made.
   */
  build(stages: readonly RecipeStage[], fresh: StockedPipe[], pipes: ReadonlyMap<PipeKey, RecipePipe>, outputKey: OutputKey): void {
    const take = (): StockedPipe => {
      const tap = fresh.shift();
      if (tap === undefined) throw new InternalError('fewer taps than the stages need');
      return tap;
    };
    // The taps bound for each pipe or /dev/null, still holding their read ends until the target's relay takes them.
    const bound = new Map<PipeKey | typeof DEV_NULL, { taps: RecipePipe[]; counts: [StageCounts, OutputSlot][] }>();
    const feeds: [CountingRelay, PipeKey][] = [];
    for (const stage of stages) {
      const counts: StageCounts = { stage: stage.index, input: undefined, outputs: new Map(), startTicks: 0, exited: false, told: false };
      this.counts.set(stage.index, counts);
      const plan = outputPlan(stage, outputKey);
      for (const slot of ['stdout', 'stderr'] as const) {
        const target = plan[slot];
        if (target === undefined) continue;
        const tap = take();
        // The relay reads the tap; the command gets its write end, held here until it has started.
        const pipe = new RecipePipe(tap.readFd, tap.writeFd);
        this.taps.push(pipe);
        this.outputTaps.set(`${stage.index}:${slot}`, pipe);
        if (slot === 'stdout' && !('stderr' in plan)) this.outputTaps.set(`${stage.index}:stderr`, pipe);
        const sources = bound.get(target) ?? { taps: [], counts: [] };
        sources.taps.push(pipe);
        sources.counts.push([counts, slot]);
        bound.set(target, sources);
      }
      if (stage.stdin.kind === 'null') counts.input = { kind: 'none' };
      const inputKey = inputPipeKey(stage.stdin);
      if (inputKey === undefined) continue;
      const tap = take();
      const pipe = new RecipePipe(tap.readFd, tap.writeFd);
      this.taps.push(pipe);
      this.inputTaps.set(stage.index, pipe);
      // An end of its own to read the pipe by: the run's end closes once no command is to take it.
      const source = openSync(`/proc/self/fd/${heldEnd(pipes.get(inputKey)?.readFd, inputKey)}`, fs.O_RDONLY | fs.O_NONBLOCK);
      const { dev, ino } = fstatSync(tap.writeFd);
      // Written in pieces that are wholly in the tap or not at all: what the command was given is known exactly.
      const feed = new CountingRelay([source], { pipe: tap.writeFd }, { exactWritten: true });
      counts.input = { kind: 'tap', feed, pipe: { fd: tap.writeFd, dev, ino } };
      pipe.writeFd = undefined;
      this.relays.push(feed);
      // The reader of a label or | pipe is this command alone: once its feed is cut, the pipe's writers learn at once.
      if (inputKey.startsWith('label:') || inputKey.startsWith('stage:')) feeds.push([feed, inputKey]);
    }
    for (const [target, { taps, counts }] of bound) {
      // An end of its own to write by, so the pipe's reader sees EOF only once this relay has closed it too.
      const sink: RelaySink = target === DEV_NULL ? 'discard' : { pipe: openSync(`/proc/self/fd/${heldEnd(pipes.get(target)?.writeFd, target)}`, fs.O_WRONLY | fs.O_NONBLOCK) };
      const relay = new CountingRelay(
        taps.map((tap) => heldEnd(tap.readFd, target)),
        sink,
      );
      for (const tap of taps) tap.readFd = undefined;
      this.relays.push(relay);
      if (target !== DEV_NULL) this.merges.set(target, relay);
      for (const [index, [stageCounts, slot]] of counts.entries()) this.countOutput(stageCounts, slot, relay.sources[index] as RelaySource);
    }
    for (const [feed, inputKey] of feeds) feed.whenCut(() => this.readerGone(inputKey));
  }

  private countOutput(counts: StageCounts, slot: OutputSlot, source: RelaySource): void {
    counts.outputs.set(slot, { kind: 'tap', source });
    void source.ended.then(() => this.tellWhenDone(counts));
  }

  /** The tap a stage writes an output stream into, if it is counted through one. */
  outputTap(stage: number, slot: OutputSlot): RecipePipe | undefined {
    return this.outputTaps.get(`${stage}:${slot}`);
  }

  /** The tap a stage reads its stdin from, if it reads a pipe. */
  inputTap(stage: number): RecipePipe | undefined {
    return this.inputTaps.get(stage);
  }

  /** A pipe's reader has gone (a command, or the daemon's own reader of plumb's stdout, stderr or an edge). */
  readerGone(key: PipeKey): void {
    this.merges.get(key)?.cut();
  }

  /** The stage's command has started, as process `pid`: what started before it cannot hold its taps. */
  started(stage: number, pid: number): void {
    const counts = this.counts.get(stage);
    if (counts !== undefined) counts.startTicks = processStartTicks(pid) ?? 0;
  }

  /**
   * A file the daemon opened for a started stage's redirection: kept open until the stage is counted, when its
   * position, less `base` (for >>, its size when opened, taken before the command started), is what the command read
   * or wrote. Returns false for what is not counted by position, a device (the caller closes it).
   */
  keepFile(stage: number, stream: 'stdin' | OutputSlot, fd: number, base: number): boolean {
    const counts = this.counts.get(stage);
    if (counts === undefined || counts.told) return false;
    const stat = fstatSync(fd);
    if (stream === 'stdin') {
      // /dev/null gives nothing: 0, though it keeps no position.
      if (stat.isCharacterDevice() && isDevNull(stat.rdev)) counts.input = { kind: 'none' };
      if (!stat.isFile()) return false;
      counts.input = { kind: 'file', fd };
      return true;
    }
    if (!stat.isFile()) return false;
    counts.outputs.set(stream, { kind: 'file', fd, base });
    return true;
  }

  /** The stage's command has exited: its counts go once its output taps are done. */
  exited(stage: number): void {
    const counts = this.counts.get(stage);
    if (counts === undefined) return;
    counts.exited = true;
    // A search that fails leaves the feed to learn by writing, as a relay does anyway: never a daemon's crash.
    if (counts.input?.kind === 'tap') this.cutWhenUnread(counts.input.feed, counts.input.pipe, counts.startTicks).catch(() => undefined);
    this.tellWhenDone(counts);
  }

  /**
   * Cuts the feed of an exited command's tap once no process holds the tap: at once if none does, else after
   * growing waits (what holds it may read on, or end). Stops when the feed is done or the run is over.
   */
  private async cutWhenUnread(feed: CountingRelay, pipe: HeldPipe, startedSince: number): Promise<void> {
    const over = (): boolean => this.closed || feed.finished;
    let lastHolder: string | undefined;
    for (let waitMs = FIRST_HOLDER_WAIT_MS; ; waitMs = Math.min(waitMs * 2, LAST_HOLDER_WAIT_MS)) {
      if (over()) return;
      lastHolder = await pipeHolder(pipe, { startedSince, stop: over, ...(lastHolder === undefined ? {} : { lastHolder }) });
      if (over()) return;
      if (lastHolder === undefined) {
        feed.cut();
        return;
      }
      // Unreferenced: a run that is over never waits for this.
      await delay(waitMs, undefined, { ref: false });
    }
  }

  /** The stage could not start: nothing will ever read its tap. */
  neverRan(stage: number): void {
    const input = this.counts.get(stage)?.input;
    if (input?.kind === 'tap') input.feed.cut();
  }

  /** The run is over: each command that ran and is not told yet is told as it stands; then all is closed. */
  close(): void {
    for (const counts of this.counts.values()) {
      if (counts.exited) this.tellNow(counts);
      else closeKept(counts);
    }
    this.counts.clear();
    this.closed = true;
    for (const relay of this.relays.splice(0)) relay.cut();
    this.closeTaps();
  }

  /** Closes the daemon's ends of the taps (a run cut short: nothing more will start to take them). */
  closeTaps(): void {
    for (const tap of this.taps) tap.close();
  }

  private tellWhenDone(counts: StageCounts): void {
    if (!counts.exited || counts.told) return;
    for (const output of counts.outputs.values()) if (output.kind === 'tap' && !output.source.socket.destroyed) return;
    this.tellNow(counts);
  }

  private tellNow(counts: StageCounts): void {
    if (counts.told) return;
    counts.told = true;
    const bytes: StageBytes = { stage: counts.stage };
    const { input } = counts;
    const taken = input === undefined ? undefined : input.kind === 'none' ? 0 : input.kind === 'tap' ? input.feed.written : filePosition(input.fd);
    if (taken !== undefined) bytes.bytesIn = taken;
    for (const [slot, output] of counts.outputs) {
      const given = output.kind === 'tap' ? output.source.bytes : subtract(filePosition(output.fd), output.base);
      if (given === undefined) continue;
      if (slot === 'stdout') bytes.bytesOut = given;
      else bytes.bytesErr = given;
    }
    closeKept(counts);
    this.tell(bytes);
  }
}

function subtract(position: number | undefined, base: number): number | undefined {
  return position === undefined ? undefined : Math.max(0, position - base);
}

/** Closes the files kept for a stage's count (once, however often called). */
function closeKept(counts: StageCounts): void {
  if (counts.input?.kind === 'file') {
    closeSync(counts.input.fd);
    counts.input = undefined;
  }
  for (const [slot, output] of counts.outputs) {
    if (output.kind !== 'file') continue;
    closeSync(output.fd);
    counts.outputs.delete(slot);
  }
}

/** A pipe end the run still holds while the relays are made; its absence is a bug in the bookkeeping. */
function heldEnd(fd: number | undefined, key: string): number {
  if (fd === undefined) throw new InternalError(`no end of ${key} held for its relay`);
  return fd;
}

let devNullRdev: number | undefined;

function isDevNull(rdev: number): boolean {
  devNullRdev ??= statSync(DEV_NULL).rdev;
  return rdev === devNullRdev;
}

/** The position of an open file, from /proc/self/fdinfo; undefined where it cannot be read. */
function filePosition(fd: number): number | undefined {
  try {
    const match = /^pos:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'));
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}
