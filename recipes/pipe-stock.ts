// Real pipes for the runs, made ahead of need. A run's private pipes (label pipes, | pipes and the pipes to plumb's
// streams) must be pipes: child_process 'pipe' gives socket pairs, where a writer whose reader went away with data
// unread gets ECONNRESET instead of SIGPIPE (`yes` fails with an error where a local pipe ends it quietly), and a
// command cannot open /dev/stdin or /dev/stdout. Node cannot make an anonymous pipe, so each is a FIFO made by
// mkfifo, opened at both ends and unlinked at once, which leaves nothing but the pipe. Made for each run, that was
// a process forked from the daemon for every session; made here in batches, a run takes its pipes without one, and
// one mkfifo makes the pipes of many sessions, in the background, before the stock runs out.

import { execFile } from 'node:child_process';
import { closeSync, constants as fs, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/**
 * Pipes one mkfifo makes: the pipes of 16 plain commands. Each held pipe is two descriptors, and pipes count
 * towards their owner's pipe-user-pages limit even while empty, so the stock stays small.
 */
export const PIPE_BATCH = 48;

/** One pipe, both ends open; whoever takes it owns both descriptors. */
export interface StockedPipe {
  /** Opened with O_NONBLOCK (so the open did not wait for a writer); a command's stdin is made blocking by libuv. */
  readFd: number;
  writeFd: number;
}

/**
 * Pipes ready to be taken. Below half a batch, a new batch is made in the background; a run that needs more than
 * are left waits for the batch being made (one that needs more than a batch gets a batch of its own size).
 */
export class PipeStock {
  private readonly pipes: StockedPipe[] = [];
  private making: Promise<void> | undefined;

  constructor(private readonly batch = PIPE_BATCH) {}

  /** How many pipes are ready now. */
  get size(): number {
    return this.pipes.length;
  }

  /** The descriptors the stock holds (two per pipe), so that a count of a process's descriptors can leave them out. */
  get heldFds(): number {
    return this.pipes.length * 2;
  }

  /** `count` pipes, both ends open; rejects when they cannot be made. */
  async take(count: number): Promise<StockedPipe[]> {
    while (this.pipes.length < count) await this.refill(count - this.pipes.length);
    const taken = this.pipes.splice(0, count);
    if (this.pipes.length < this.batch / 2) this.refill(0).catch(() => undefined);
    return taken;
  }

  /** Makes sure a batch is on its way (the first, at a daemon's start), so the first runs do not wait for it. */
  warm(): void {
    if (this.pipes.length < this.batch / 2) this.refill(0).catch(() => undefined);
  }

  /** Closes every pipe the stock holds (a test's or a daemon's end); a batch still being made joins the stock. */
  drain(): void {
    for (const pipe of this.pipes.splice(0)) closePipe(pipe);
  }

  /** The batch being made, or a new one: a batch, or `wanted` pipes when that is more. */
  private refill(wanted: number): Promise<void> {
    this.making ??= makePipes(Math.max(this.batch, wanted))
      .then((made) => {
        this.pipes.push(...made);
      })
      .finally(() => {
        this.making = undefined;
      });
    return this.making;
  }
}

/** Makes `count` pipes with one mkfifo, in a new directory of mode 0700; every name is gone when it resolves. */
async function makePipes(count: number): Promise<StockedPipe[]> {
  const dir = mkdtempSync(join(tmpdir(), 'netplumbd-pipes-'));
  const made: StockedPipe[] = [];
  try {
    const paths = Array.from({ length: count }, (_, index) => join(dir, String(index)));
    await execFileAsync('mkfifo', ['-m', '600', ...paths]);
    for (const path of paths) {
      // The reader first, without waiting for a writer; then the writer, which finds it.
      const readFd = openSync(path, fs.O_RDONLY | fs.O_NONBLOCK);
      try {
        made.push({ readFd, writeFd: openSync(path, fs.O_WRONLY) });
      } catch (error) {
        closeSync(readFd);
        throw error;
      }
    }
    return made;
  } catch (error) {
    for (const pipe of made) closePipe(pipe);
    throw error;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function closePipe(pipe: StockedPipe): void {
  closeSync(pipe.readFd);
  closeSync(pipe.writeFd);
}

/** The stock every run of this process takes its private pipes from. */
export const pipeStock = new PipeStock();
