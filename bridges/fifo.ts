// Named pipes replicated over mux streams, the same way at both ends. A FIFO's life is a series of rounds: a round
// starts when the first writer opens it and ends when the last writer closes it (the reader's EOF). Each round
// travels as one stream: FifoSource reads rounds from a local FIFO and sends each as a new stream; FifoSink writes
// each stream it is given, in order, as one round into a local FIFO, opening it only once a reader is there.
// Backpressure is the stream's window: a sink with no reader takes nothing, so the far writer is held back.

import { closeSync, constants as fs, fstatSync, lstatSync, openSync } from 'node:fs';
import { holdDirectory, reasonFor, toldAsPath, type HeldDirectory, type MadeFile, type PathCheck } from './checked-open.js';
import { OWN_IDENTITY, type CommandIdentity } from './identity.js';
import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { EndpointError, NetplumbError } from '../protocol/errors.js';
import { StateMachine, type IllegalMoveReporter, type TransitionTable } from '../protocol/state-machine.js';
import { copiesWrittenBytes, PooledFdReader } from './pooled-reader.js';

/** How often a sink retries opening its FIFO while no reader has it open (open fails with ENXIO until then). */
export const FIFO_READER_POLL_MS = 20;

/**
 * After the far side drops a round, the source keeps no reader open this long, so a writer of that round still
 * writing gets EPIPE (as with a local reader that went away); a new writer meanwhile just waits in open().
 */
export const DROPPED_ROUND_GRACE_MS = 100;

/**
 * Makes sure a FIFO exists at path: an existing FIFO is used as it is (unless mustCreate: then it is refused); a
 * missing one is created with mode 0600 and `created` says so (the caller removes what it created, and only that).
 * Anything else at path is refused. It is made as `identity`, the account that will use it, in the directory
 * `check` saw (its real path): mkfifo gets that directory, held open, as its descriptor 3.
 */
export async function ensureFifo(path: string, mustCreate = false, identity: CommandIdentity = OWN_IDENTITY, check?: PathCheck): Promise<{ created: false } | { created: true; made: MadeFile }> {
  try {
    const stat = lstatSync(path);
    if (!stat.isFIFO()) throw new EndpointError(`${path} exists and is not a named pipe`);
    if (mustCreate) throw new EndpointError(`${path} exists already (in use by another session?)`);
    return { created: false };
  } catch (error) {
    if (error instanceof EndpointError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new EndpointError(`cannot use ${path}: ${(error as Error).message}`, { cause: error });
  }
  let directory: HeldDirectory;
  try {
    directory = identity.asUser(() => holdDirectory(path, check));
  } catch (error) {
    if (error instanceof NetplumbError) throw error;
    throw new EndpointError(`cannot make named pipe ${path}: ${reasonFor(error, path)}`, { cause: error });
  }
  try {
    const inHeldDirectory = `/proc/self/fd/3/${basename(path)}`;
    const failure = await runWithDirectory(identity.command('mkfifo', ['-m', '600', inHeldDirectory]), directory.fd);
    if (failure !== undefined) {
      throw new EndpointError(`cannot make named pipe ${path}: ${failure.replace(/^mkfifo: /, '').split(inHeldDirectory).join(path)}`);
    }
    // Known by what was made in the held directory, not by what the path may lead to by now.
    let made: { dev: number; ino: number };
    try {
      made = lstatSync(directory.pinned);
    } catch (error) {
      throw new EndpointError(`cannot make named pipe ${path}: ${reasonFor(toldAsPath(error, path), path)}`, { cause: error });
    }
    return { created: true, made: { path, dev: made.dev, ino: made.ino } };
  } finally {
    directory.release();
  }
}

/** Runs a short command with `fd` as its descriptor 3; resolves with its stderr when it fails, undefined when not. */
function runWithDirectory([program, args]: [string, string[]], fd: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', (error) => resolve(error.message));
    child.once('close', (code) => resolve(code === 0 ? undefined : stderr.trim() || `exit status ${String(code)}`));
  });
}

/** Opens one end of a FIFO; the daemon's opens it with the account's rights and its gluepot's check. */
export type FifoOpener = (path: string, flags: number) => number;

/**
 * open(2) of a FIFO by path, as `open` does it: never through a symlink, and only a FIFO. A command may replace its
 * named pipe between rounds; whatever it puts there instead (a link to another pipe, a file, a terminal) is refused,
 * never read or written.
 */
export function openFifo(path: string, flags: number, open: (path: string, flags: number) => number = openSync): number {
  const fd = open(path, flags | fs.O_NOFOLLOW);
  if (!fstatSync(fd).isFIFO()) {
    closeSync(fd);
    throw Object.assign(new Error(`${path} is no longer a named pipe`), { code: 'ENOTFIFO' });
  }
  return fd;
}

/**
 * A source's life. `reading` has the FIFO open for reading (a round may be on its way); `finishing` is reading the
 * last round, ended by finish(); `dropped` keeps no reader open for DROPPED_ROUND_GRACE_MS after the far side
 * dropped a round. `stopped` is final: after stop(), an error, or the last round.
 *
 *   created --> reading --(finish)--> finishing --> stopped
 *                 ^   |                                ^
 *     (grace over)|   +--(round dropped)--> dropped ---+   (and every live state --(stop, error)--> stopped)
 */
export type FifoSourceState = 'created' | 'reading' | 'finishing' | 'dropped' | 'stopped';

/** The legal moves of a FifoSource; `reading` re-enters itself when one round ends and the next reader opens. */
export const FIFO_SOURCE_MOVES: TransitionTable<FifoSourceState> = {
  created: ['reading', 'stopped'],
  reading: ['reading', 'finishing', 'dropped', 'stopped'],
  finishing: ['stopped'],
  dropped: ['reading', 'stopped'],
  stopped: [],
};

/**
 * Reads rounds from a local FIFO; each round becomes a stream from openStream(), ended (EOF) when the round ends.
 * A round's stream is opened at its first byte (or at its EOF, for a writer that wrote nothing), so an idle FIFO
 * costs no stream.
 */
export class FifoSource {
  private readonly machine: StateMachine<FifoSourceState>;
  /** The FIFO's read end; set exactly while reading or finishing. */
  private socket: Socket | undefined;
  /** The current round's stream, from its first byte until the round ends. */
  private stream: Duplex | undefined;
  private roundsDone = 0;
  private roundEndWaiters: (() => void)[] = [];
  private finishWaiters: (() => void)[] = [];
  private graceTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly path: string,
    private readonly openStream: (round: number) => Duplex,
    private readonly onError: (error: EndpointError) => void,
    private readonly open: FifoOpener = openFifo,
    reportIllegalMove?: IllegalMoveReporter<FifoSourceState>,
  ) {
    this.machine = new StateMachine(`named pipe source ${path}`, 'created', FIFO_SOURCE_MOVES, reportIllegalMove);
  }

  get state(): FifoSourceState {
    return this.machine.state;
  }

  start(): void {
    this.nextRound();
  }

  /** True while a round's bytes are on their way (its stream is open and not yet ended). */
  get inRound(): boolean {
    return this.stream !== undefined;
  }

  /** Resolves when no round is in progress (at once when none is). */
  idle(): Promise<void> {
    if (this.stream === undefined) return Promise.resolve();
    return new Promise((resolve) => this.roundEndWaiters.push(resolve));
  }

  /**
   * Ends the source once everything written so far has been sent: opens the FIFO for writing and closes it at once,
   * so the reader sees the end of what is buffered, or of the round a writer that is still there holds open.
   * Resolves when that round's stream has ended (no stream is sent for a round without bytes). A source that is not
   * reading (not started, stopped, or between rounds after a dropped one) resolves at once.
   */
  finish(): Promise<void> {
    if (this.machine.is('finishing')) return new Promise((resolve) => this.finishWaiters.push(resolve));
    if (!this.machine.is('reading')) return Promise.resolve();
    return new Promise((resolve) => {
      this.finishWaiters.push(resolve);
      this.machine.move('finishing');
      try {
        closeSync(this.open(this.path, fs.O_WRONLY | fs.O_NONBLOCK));
      } catch {
        // Our own reader is gone: nothing more can come.
        this.shutDown();
      }
    });
  }

  /** Stops reading; a round in progress is cut off (its stream destroyed). */
  stop(): void {
    this.shutDown();
  }

  /**
   * The one way a source ends: the reader and an unfinished round's stream are destroyed, every waiter is
   * released, and `error` is reported unless the source had already stopped.
   */
  private shutDown(error?: EndpointError): void {
    const wasLive = this.machine.move('stopped');
    clearTimeout(this.graceTimer);
    settle(this.finishWaiters);
    this.socket?.destroy();
    this.socket = undefined;
    this.stream?.destroy();
    this.endRound();
    if (wasLive && error !== undefined) this.onError(error);
  }

  private nextRound(): void {
    if (!this.machine.canMove('reading')) return;
    let fd: number;
    try {
      // Non-blocking, so no thread waits in open(); a reader opened this way sees EOF only after a writer came and went.
      fd = this.open(this.path, fs.O_RDONLY | fs.O_NONBLOCK);
    } catch (error) {
      this.shutDown(new EndpointError(`cannot open named pipe ${this.path}: ${reasonFor(error, this.path)}`, { cause: error }));
      return;
    }
    // Into reused buffers (bridges/pooled-reader.ts): this is the path of an -outfifo or -infifo transfer.
    const reader = new PooledFdReader(fd, (chunk, giveBack) => {
      const stream = this.roundStream();
      if (stream === undefined) {
        giveBack();
        return;
      }
      let more: boolean;
      if (copiesWrittenBytes(stream)) {
        more = stream.write(chunk, giveBack);
      } else {
        // A stream that may keep what it is given gets bytes of its own.
        more = stream.write(Buffer.from(chunk));
        giveBack();
      }
      if (!more) {
        reader.pause();
        stream.once('drain', () => reader.resume());
      }
    });
    const socket = reader.socket;
    this.socket = socket;
    this.machine.move('reading');
    socket.on('end', () => {
      const last = this.machine.is('finishing');
      // The last round is sent only if it has bytes; any other round is sent even empty.
      if (!last || this.stream !== undefined) this.roundStream()?.end();
      socket.destroy();
      this.socket = undefined;
      this.endRound();
      if (last) this.shutDown();
      else this.nextRound();
    });
    socket.on('error', (error) => {
      this.socket = undefined;
      this.shutDown(new EndpointError(`reading named pipe ${this.path}: ${error.message}`, { cause: error }));
    });
  }

  /**
   * After a dropped round no reader is kept open for DROPPED_ROUND_GRACE_MS, so its writers fail with EPIPE; then
   * rounds start again. A writer of the dropped round that wrote nothing in the grace and writes later is read as a
   * new round: from outside, nothing tells it from a new writer.
   */
  private awaitDroppedWriters(): void {
    if (!this.machine.move('dropped')) return;
    this.graceTimer = setTimeout(() => this.nextRound(), DROPPED_ROUND_GRACE_MS);
  }

  /** The current round's stream, opened at its first byte; undefined when no stream can be opened (reported). */
  private roundStream(): Duplex | undefined {
    if (this.stream !== undefined) return this.stream;
    let stream: Duplex;
    try {
      stream = this.openStream(this.roundsDone);
    } catch (error) {
      // No stream for this round (the connection's stream limit, or it is closing): the writer is cut off.
      this.shutDown(new EndpointError(`named pipe ${this.path}: cannot send a round: ${(error as Error).message}`, { cause: error }));
      return undefined;
    }
    this.stream = stream;
    stream.on('error', () => undefined);
    // The far side sends nothing back; taking its EOF lets the stream end both ways and be forgotten.
    stream.resume();
    // The far side dropped the round (its reader went away): stop taking bytes, so the local writer gets EPIPE.
    stream.on('close', () => {
      if (this.stream === stream && !stream.writableFinished) {
        this.socket?.destroy();
        this.socket = undefined;
        this.endRound();
        // A source being finished ends here: no writer will come back to end another round.
        if (this.machine.is('finishing')) this.shutDown();
        else this.awaitDroppedWriters();
      }
    });
    return stream;
  }

  private endRound(): void {
    if (this.stream !== undefined) this.roundsDone++;
    this.stream = undefined;
    settle(this.roundEndWaiters);
  }
}

/**
 * A sink's life: `idle` has no round in hand; `awaiting-reader` holds the next round until some process opens the
 * FIFO for reading; `writing` copies that round in. `stopped` is final.
 *
 *   idle --> awaiting-reader --> writing --> idle      (awaiting-reader --> idle: the round was dropped or refused)
 */
export type FifoSinkState = 'idle' | 'awaiting-reader' | 'writing' | 'stopped';

/** The legal moves of a FifoSink. */
export const FIFO_SINK_MOVES: TransitionTable<FifoSinkState> = {
  idle: ['awaiting-reader', 'stopped'],
  'awaiting-reader': ['writing', 'idle', 'stopped'],
  writing: ['idle', 'stopped'],
  stopped: [],
};

/**
 * Writes streams into a local FIFO, one round per stream, in the order they were given. A round waits until some
 * process has the FIFO open for reading; until then its stream is not read, so the far writer is held back.
 */
export class FifoSink {
  private readonly machine: StateMachine<FifoSinkState>;
  private readonly queue: Duplex[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  /** The round in hand (awaiting a reader or being written) and, once a reader came, the FIFO's write end. */
  private current: { stream: Duplex; socket: Socket | undefined } | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly path: string,
    private readonly onError: (error: EndpointError) => void,
    private readonly open: FifoOpener = openFifo,
    reportIllegalMove?: IllegalMoveReporter<FifoSinkState>,
  ) {
    this.machine = new StateMachine(`named pipe sink ${path}`, 'idle', FIFO_SINK_MOVES, reportIllegalMove);
  }

  get state(): FifoSinkState {
    return this.machine.state;
  }

  /**
   * Queues a round. Rounds the far side dropped while they waited are forgotten here: while no reader comes, a peer
   * opening and dropping rounds must not make the queue grow (the live ones are bounded by the stream limit).
   */
  add(stream: Duplex): void {
    if (this.machine.is('stopped')) {
      stream.destroy();
      return;
    }
    stream.on('error', () => undefined);
    // This end only reads a round: its own direction ends at once, so the stream is done when the round is.
    stream.end();
    let kept = 0;
    for (const queued of this.queue) if (!queued.destroyed) this.queue[kept++] = queued;
    this.queue.length = kept;
    this.queue.push(stream);
    this.pump();
  }

  /** Rounds waiting for their turn (the one being written not counted). */
  get queuedRounds(): number {
    return this.queue.length;
  }

  /** Resolves once every queued round has been written (at once when none is). */
  idle(): Promise<void> {
    if (this.roundsLeft()) return new Promise((resolve) => this.idleWaiters.push(resolve));
    return Promise.resolve();
  }

  /** Gives up: the round being written and every queued one are dropped. */
  stop(): void {
    this.machine.move('stopped');
    clearTimeout(this.pollTimer);
    this.current?.socket?.destroy();
    this.current?.stream.destroy();
    for (const stream of this.queue.splice(0)) stream.destroy();
    this.current = undefined;
    this.settleIdle();
  }

  private pump(): void {
    if (!this.machine.is('idle')) return;
    const stream = this.queue.shift();
    if (stream === undefined) {
      this.settleIdle();
      return;
    }
    this.machine.move('awaiting-reader');
    this.current = { stream, socket: undefined };
    this.openWhenRead(stream);
  }

  private openWhenRead(stream: Duplex): void {
    if (!this.machine.is('awaiting-reader')) return;
    // Dropped by the far side before a reader came: there is nothing to write, and its 'close' has passed.
    if (stream.destroyed) {
      this.roundDone();
      return;
    }
    let fd: number;
    try {
      fd = this.open(this.path, fs.O_WRONLY | fs.O_NONBLOCK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENXIO') {
        // Nobody reads the FIFO yet: look again shortly (a round dropped meanwhile is let go then).
        this.pollTimer = setTimeout(() => this.openWhenRead(stream), FIFO_READER_POLL_MS);
        return;
      }
      stream.destroy();
      this.roundDone();
      this.onError(new EndpointError(`cannot open named pipe ${this.path}: ${reasonFor(error, this.path)}`, { cause: error }));
      return;
    }
    const socket = new Socket({ fd, readable: false, writable: true });
    if (this.current !== undefined) this.current.socket = socket;
    this.machine.move('writing');
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      this.roundDone();
    };
    socket.on('error', () => {
      // The local reader went away (EPIPE): drop the round, so the far writer is stopped too.
      stream.unpipe(socket);
      stream.destroy();
      socket.destroy();
      finish();
    });
    socket.on('close', finish);
    stream.on('close', () => {
      if (!stream.readableEnded) socket.destroy();
    });
    stream.pipe(socket);
  }

  /** The round in hand is over (written, dropped or refused): the next one may start. A stopped sink stays stopped. */
  private roundDone(): void {
    if (this.machine.is('stopped')) return;
    this.current = undefined;
    this.machine.move('idle');
    this.pump();
  }

  private roundsLeft(): boolean {
    return this.machine.is('awaiting-reader', 'writing') || this.queue.length > 0;
  }

  private settleIdle(): void {
    if (!this.roundsLeft()) settle(this.idleWaiters);
  }
}

/** Calls and forgets every waiter in the list. */
function settle(waiters: (() => void)[]): void {
  for (const resolve of waiters.splice(0)) resolve();
}
