// A command on a pseudo-terminal (plumb -t): spawned through node-pty in its own session (so its process group is
// its pid), output as raw bytes, input written as it comes, window size changes applied. Knows nothing of streams.

import { readdirSync, readFileSync } from 'node:fs';
import { constants as os } from 'node:os';
import { spawn as spawnPty, type IPty } from 'node-pty';
import type { ExitStatus, PtyRequest } from '../protocol/session.js';

export interface PtyCommand {
  /** The command's pid, also its process group (node-pty starts it in a new session). */
  pid: number;
  write(data: Buffer): void;
  /** Input written but not yet taken by the pty, in bytes (0 when node-pty does not tell). */
  queuedInputBytes(): number;
  resize(cols: number, rows: number): void;
  /** Stops reading output until resume(), so a slow client holds the command back. */
  pause(): void;
  resume(): void;
}

/**
 * The process groups of a session (the pty command leads its session). A shell with job control puts each job in a
 * group of its own, so ending the leader's group is not enough; /proc names them all.
 */
export function sessionGroups(sessionId: number): number[] {
  const groups = new Set<number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [sessionId];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses, so split after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[3]) === sessionId) groups.add(Number(fields[2]));
    } catch {
      // Gone meanwhile.
    }
  }
  return [...groups];
}

/** node-pty's write queue, which it keeps private: what it holds tells how far input is ahead of the pty. */
interface WriteQueueInternals {
  _writeStream?: { _writeQueue?: { buffer: Buffer; offset: number }[] };
}

/**
 * Bytes queued in node-pty for the pty, read from its internals (node-pty offers no backpressure of its own). A
 * node-pty without them reads as 0: input then flows unthrottled, as node-pty itself would take it.
 */
function queuedInput(terminal: IPty): number {
  const queue = (terminal as unknown as WriteQueueInternals)._writeStream?._writeQueue;
  if (!Array.isArray(queue)) return 0;
  let bytes = 0;
  for (const task of queue) bytes += task.buffer.length - task.offset;
  return bytes;
}

/** Signal number to name, for an exit by signal. */
function signalName(number: number): string {
  const entry = Object.entries(os.signals).find(([, value]) => value === number);
  return entry?.[0] ?? `SIG${number}`;
}

/**
 * Spawns argv on a new pty; output goes to onOutput as bytes; onExit gets how it ended. Output may still come for a
 * moment after onExit (node-pty reads the rest for up to 200 ms), so the caller must not hold the pty paused then.
 * argv[0] is a program file found beforehand (bridges/programs.ts): node-pty reports a failed exec only as output
 * and exit status 1, so a missing or non-executable program must be refused before it comes here.
 */
export function spawnOnPty(
  argv: readonly string[],
  pty: PtyRequest,
  options: { env: Record<string, string>; cwd: string; onOutput: (data: Buffer) => void; onExit: (status: ExitStatus) => void },
): PtyCommand {
  const [file, ...args] = argv as [string, ...string[]];
  const terminal: IPty = spawnPty(file, args, {
    name: pty.term,
    cols: pty.cols,
    rows: pty.rows,
    cwd: options.cwd,
    env: { ...options.env, TERM: pty.term },
    // Raw bytes: a character cut between two reads must not be decoded (and mangled) here.
    encoding: null,
  });
  terminal.onData((data: string | Buffer) => options.onOutput(typeof data === 'string' ? Buffer.from(data) : data));
  terminal.onExit(({ exitCode, signal }) => options.onExit(signal !== undefined && signal !== 0 ? { signal: signalName(signal) } : { code: exitCode }));
  return {
    pid: terminal.pid,
    write: (data) => terminal.write(data),
    queuedInputBytes: () => queuedInput(terminal),
    resize: (cols, rows) => {
      try {
        terminal.resize(cols, rows);
      } catch {
        // The pty is closing (its command ended): a late size change has nothing to apply to.
      }
    },
    pause: () => terminal.pause(),
    resume: () => terminal.resume(),
  };
}
