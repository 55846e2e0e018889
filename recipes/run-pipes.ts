// The pipes of a recipe run: one RecipePipe per pipe (the daemon holds each end until the last command that needs it
// has started), the daemon's own ends of plumb's three streams, and the declared named pipes, made in the spool with
// one mkfifo for all of them and opened without ever blocking the daemon. The private pipes come ready-made from
// the pipe stock (pipe-stock.ts).

import { execFile } from 'node:child_process';
import { closeSync, constants as fs, linkSync, lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { madeFile, reasonFor, removeMadeFile, toldAsPath, type MadeFile } from '../bridges/checked-open.js';
import type { CommandIdentity } from '../bridges/identity.js';
import { openFifo, type FifoOpener } from '../bridges/fifo.js';
import { copiesWrittenBytes, pipeFdPooled } from '../bridges/pooled-reader.js';
import { RecipeSetupError } from '../protocol/errors.js';
import type { StockedPipe } from './pipe-stock.js';
import type { RecipeFifo } from './plan.js';

const execFileAsync = promisify(execFile);

/**
 * One pipe the run owns. The daemon holds a read end and a write end for the commands until the last command that
 * uses each end has been started; then it closes its copy, so a reader sees EOF exactly when every writing command
 * has ended. An end no command will use is undefined, or closed at once (closeUnclaimed).
 */
export class RecipePipe {
  private readersLeft = 0;
  private writersLeft = 0;

  constructor(
    public readFd: number | undefined,
    public writeFd: number | undefined,
  ) {}

  /** Counts a command that will get one of the ends. */
  expect(end: 'read' | 'write'): void {
    if (end === 'read') this.readersLeft++;
    else this.writersLeft++;
  }

  /** A command that was to use the end has been started (or will never be): close our copy after the last one. */
  handedOver(end: 'read' | 'write'): void {
    if (end === 'read' && --this.readersLeft === 0) this.closeEnd('read');
    if (end === 'write' && --this.writersLeft === 0) this.closeEnd('write');
  }

  /** Ends no command is waiting for are closed at once, so an unread pipe does not hold a writer. */
  closeUnclaimed(): void {
    if (this.readersLeft === 0) this.closeEnd('read');
    if (this.writersLeft === 0) this.closeEnd('write');
  }

  closeEnd(end: 'read' | 'write'): void {
    const fd = end === 'read' ? this.readFd : this.writeFd;
    if (fd === undefined) return;
    if (end === 'read') this.readFd = undefined;
    else this.writeFd = undefined;
    closeSync(fd);
  }

  close(): void {
    this.closeEnd('read');
    this.closeEnd('write');
  }
}

/**
 * Opens both ends of a named pipe without ever blocking: a non-blocking read end first (so the write open finds a
 * reader), then the blocking write end, then a blocking read end (which finds the writer). Commands get blocking
 * ends: O_NONBLOCK belongs to the open file, and a command reading a non-blocking stdin would fail with EAGAIN.
 */
export function openBothEnds(path: string, open: FifoOpener = openFifo): RecipePipe {
  const probe = open(path, fs.O_RDONLY | fs.O_NONBLOCK);
  try {
    const writeFd = open(path, fs.O_WRONLY);
    try {
      return new RecipePipe(open(path, fs.O_RDONLY), writeFd);
    } catch (error) {
      closeSync(writeFd);
      throw error;
    }
  } finally {
    closeSync(probe);
  }
}

/**
 * The daemon's reading end of one of plumb's output pipes, read once its stream is known: into a ring of reused
 * buffers (bridges/pooled-reader.ts), since this is the path a bulk download takes.
 */
export class OutputReader {
  private socket: Socket | undefined;
  private closed = false;

  constructor(private readonly fd: number) {}

  /**
   * Reads the pipe into `sink` until EOF, then ends it; a read error destroys it. Reused buffers only for a sink
   * that copies what it is given (a mux stream); any other gets a buffer of its own per read.
   */
  pipeTo(sink: Writable, tap?: (chunk: Buffer) => void): void {
    if (this.closed || this.socket !== undefined) return;
    if (copiesWrittenBytes(sink)) {
      this.socket = pipeFdPooled(this.fd, sink, tap).socket;
      return;
    }
    this.socket = new Socket({ fd: this.fd, readable: true, writable: false });
    if (tap !== undefined) this.socket.on('data', tap);
    this.socket.pipe(sink);
  }

  /** Stops reading (the commands' next write gets EPIPE or SIGPIPE once no one else holds the pipe). */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.socket !== undefined) this.socket.destroy();
    else closeSync(this.fd);
  }
}

/** The daemon's own ends of plumb's three streams: it reads stdout and stderr, writes stdin. */
export interface IoSockets {
  stdinWriter: Socket | undefined;
  stdoutReader: OutputReader | undefined;
  stderrReader: OutputReader | undefined;
}

/** Plumb's three pipes: the commands' ends, and the daemon's (IoSockets). */
export interface PlumbPipes {
  stdin: RecipePipe;
  stdout: RecipePipe;
  stderr: RecipePipe;
  sockets: IoSockets;
}

/**
 * Splits plumb's pipes between the commands and the daemon: the daemon reads stdout and stderr and writes stdin
 * (only when a stage reads it: `stdin` is then given) through sockets, which make their ends non-blocking; the
 * commands get the other ends, which libuv makes blocking in a command's stdin, stdout and stderr.
 */
export function plumbPipes(stdout: StockedPipe, stderr: StockedPipe, stdin: StockedPipe | undefined): PlumbPipes {
  return {
    stdin: new RecipePipe(stdin?.readFd, undefined),
    stdout: new RecipePipe(undefined, stdout.writeFd),
    stderr: new RecipePipe(undefined, stderr.writeFd),
    sockets: {
      stdinWriter: stdin === undefined ? undefined : new Socket({ fd: stdin.writeFd, readable: false, writable: true }),
      stdoutReader: new OutputReader(stdout.readFd),
      stderrReader: new OutputReader(stderr.readFd),
    },
  };
}

/** Why mkfifo failed to make `staged`, told by `path`: the line of its stderr about it, else all it said. */
function mkfifoReason(error: unknown, staged: string, path: string): string {
  const stderr = (error as { stderr?: unknown }).stderr;
  const lines = typeof stderr === 'string' ? stderr.trim().split('\n') : [];
  const text = (lines.find((line) => line.includes(staged)) ?? lines.join('\n')).replace(/^mkfifo: /, '');
  return text === '' ? (error as Error).message : text.split(staged).join(path);
}

/**
 * Makes the recipe's declared named pipes in the spool directory, mode 0600, as whoever runs the commands (the
 * pipes are theirs, made with their rights), with one mkfifo for them all: a process forked from the daemon per
 * pipe cost more than the rest of a run's setup. mkfifo makes them in a new directory of the account's inside the
 * spool, and each is then linked to its name in declaration order, with the account's rights: link(2) never
 * replaces a file, so a name that exists refuses that pipe alone, told by its name, the pipes before it made and
 * those after it not, and what was made is known exactly (nothing else can be in the new directory). The caller
 * removes the returned pipes when the run is over; on a refusal, those made so far are removed here.
 */
export async function makeDeclaredFifos(fifos: readonly RecipeFifo[], spoolDir: string, identity: CommandIdentity): Promise<MadeFile[]> {
  const [first] = fifos;
  if (first === undefined) return [];
  const refusal = (fifo: RecipeFifo, reason: string, cause: unknown): RecipeSetupError =>
    new RecipeSetupError(`cannot make named pipe ${fifo.path} (${fifo.location.source}:${fifo.location.line}): ${reason}`, { cause });
  let staging: string;
  try {
    // A name no fifo can have: fifo names start with a letter, a digit or _.
    staging = identity.asUser(() => mkdtempSync(join(spoolDir, '.netplumbd-fifos-')));
  } catch (error) {
    throw refusal(first, reasonFor(toldAsPath(error, spoolDir), spoolDir), error);
  }
  const made: MadeFile[] = [];
  try {
    const staged = fifos.map((fifo) => join(staging, fifo.name));
    try {
      await execFileAsync(...identity.command('mkfifo', ['-m', '600', ...staged]));
    } catch (error) {
      // mkfifo goes on after a failure: the first pipe it did not make is the one to tell.
      const failed = fifos.findIndex((_, index) => !identity.asUser(() => isFifo(staged[index] as string)));
      const fifo = fifos[Math.max(failed, 0)] as RecipeFifo;
      throw refusal(fifo, mkfifoReason(error, join(staging, fifo.name), fifo.path), error);
    }
    for (const [index, fifo] of fifos.entries()) {
      const stagedPath = staged[index] as string;
      try {
        // Known by the pipe mkfifo made, not by whatever the name may hold by the time it is looked at.
        const { dev, ino } = madeFile(stagedPath);
        identity.asUser(() => linkSync(stagedPath, fifo.path));
        made.push({ path: fifo.path, dev, ino });
      } catch (error) {
        throw refusal(fifo, reasonFor(toldAsPath(error, fifo.path), fifo.path), error);
      }
    }
    return made;
  } catch (error) {
    removeMadeFifos(made, identity);
    throw error;
  } finally {
    try {
      identity.asUser(() => rmSync(staging, { recursive: true, force: true }));
    } catch {
      // Left behind, it holds nothing anyone uses: the pipes that count were linked out of it.
    }
  }
}

function isFifo(path: string): boolean {
  try {
    return lstatSync(path).isFIFO();
  } catch {
    return false;
  }
}

/** Removes the declared named pipes the run made, with the commands' rights, and only those very files. */
export function removeMadeFifos(made: readonly MadeFile[], identity: CommandIdentity): void {
  for (const fifo of made) identity.asUser(() => removeMadeFile(fifo));
}
