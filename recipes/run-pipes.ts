// The pipes of a recipe run: one RecipePipe per pipe (the daemon holds each end until the last command that needs it
// has started), opened without ever blocking the daemon, and the daemon's own ends of plumb's three streams.

import { closeSync, constants as fs, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { removeMadeFile, type MadeFile } from '../bridges/checked-open.js';
import type { CommandIdentity } from '../bridges/identity.js';
import { openFifo, type FifoOpener } from '../bridges/fifo.js';

/**
 * One pipe the run owns. The daemon holds a blocking read end and a blocking write end for the commands until
 * the last command that uses each end has been started; then it closes its copy, so a reader sees EOF exactly
 * when every writing command has ended.
 */
export class RecipePipe {
  readFd: number | undefined;
  writeFd: number | undefined;
  private readersLeft = 0;
  private writersLeft = 0;

  constructor(readonly path: string) {}

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
 * Opens both ends of a FIFO without ever blocking: a non-blocking read end first (so the write open finds a
 * reader), then the blocking write end, then a blocking read end (which finds the writer). Commands get blocking
 * ends: O_NONBLOCK belongs to the open file, and a command reading a non-blocking stdin would fail with EAGAIN.
 */
export function openBothEnds(pipe: RecipePipe, open: FifoOpener = openFifo): void {
  const probe = open(pipe.path, fs.O_RDONLY | fs.O_NONBLOCK);
  try {
    pipe.writeFd = open(pipe.path, fs.O_WRONLY);
    pipe.readFd = open(pipe.path, fs.O_RDONLY);
  } finally {
    closeSync(probe);
  }
}

/** The daemon's own ends of plumb's three streams: it reads stdout and stderr, writes stdin. */
export interface IoSockets {
  stdinWriter: Socket | undefined;
  stdoutReader: Socket | undefined;
  stderrReader: Socket | undefined;
}

/**
 * Opens plumb's three pipes: the daemon reads stdout and stderr through non-blocking ends and writes stdin (when a
 * stage reads it) through one; the commands get blocking ends.
 */
export function openPlumbEnds(io: { stdin: RecipePipe; stdout: RecipePipe; stderr: RecipePipe }, readsStdin: boolean): IoSockets {
  // Until the sockets own them, these descriptors are closed here if a later open fails.
  const loose: number[] = [];
  const openLoose = (path: string, flags: number): number => {
    const fd = openSync(path, flags);
    loose.push(fd);
    return fd;
  };
  let stdoutReadFd: number;
  let stderrReadFd: number;
  let stdinWriteFd: number | undefined;
  try {
    stdoutReadFd = openLoose(io.stdout.path, fs.O_RDONLY | fs.O_NONBLOCK);
    io.stdout.writeFd = openSync(io.stdout.path, fs.O_WRONLY);
    stderrReadFd = openLoose(io.stderr.path, fs.O_RDONLY | fs.O_NONBLOCK);
    io.stderr.writeFd = openSync(io.stderr.path, fs.O_WRONLY);
    if (readsStdin) {
      const probe = openLoose(io.stdin.path, fs.O_RDONLY | fs.O_NONBLOCK);
      stdinWriteFd = openLoose(io.stdin.path, fs.O_WRONLY | fs.O_NONBLOCK);
      io.stdin.readFd = openSync(io.stdin.path, fs.O_RDONLY);
      closeSync(probe);
      loose.splice(loose.indexOf(probe), 1);
    }
  } catch (error) {
    for (const fd of loose) closeSync(fd);
    throw error;
  }
  const sockets: IoSockets = {
    stdinWriter: stdinWriteFd === undefined ? undefined : new Socket({ fd: stdinWriteFd, readable: false, writable: true }),
    stdoutReader: new Socket({ fd: stdoutReadFd, readable: true, writable: false }),
    stderrReader: new Socket({ fd: stderrReadFd, readable: true, writable: false }),
  };
  return sockets;
}

export function mkfifoReason(error: unknown): string {
  const stderr = (error as { stderr?: unknown }).stderr;
  const text = typeof stderr === 'string' ? stderr.trim().replace(/^mkfifo: /, '') : '';
  return text !== '' ? text : (error as Error).message;
}

/** Removes the declared named pipes the run made, with the commands' rights, and only those very files. */
export function removeMadeFifos(made: readonly MadeFile[], identity: CommandIdentity): void {
  for (const fifo of made) identity.asUser(() => removeMadeFile(fifo));
}
