// Whether any process other than this one still has a pipe open, found among every process's open descriptors in
// /proc. A pipe's writer learns that its readers have gone only by writing; a relay that feeds a command's stdin
// needs to know sooner, so that the writers upstream get SIGPIPE when they would without it. The command's own
// process group is no proof: a process that called setsid() may still be reading.

import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { opendir } from 'node:fs/promises';

/** Descriptors read from a process's fd directory at a time, between turns of the event loop. */
const FDS_PER_TURN = 256;

/** A pipe as this process holds it: its descriptor here, and its device and inode (as fstat gives them). */
export interface HeldPipe {
  fd: number;
  dev: number;
  ino: number;
}

export interface HolderSearch {
  /** Processes started before this (in clock ticks since boot, /proc/PID/stat) cannot have inherited the pipe. */
  startedSince: number;
  /** Looked at first: the holder the last search found. */
  lastHolder?: string;
  /** Checked between processes: true ends the search (its answer is then of no use). */
  stop: () => boolean;
}

/**
 * The pid of a process other than this one that holds the pipe, or undefined when none does. Each descriptor's link
 * is compared as text with this process's own link to the pipe (readlink never touches the file it names, so a hung
 * network mount cannot block it), and a match is confirmed by device and inode. A process whose descriptors cannot
 * be read is taken to hold the pipe if it runs as this process's account (one of the commands' that made itself
 * undumpable, or a setuid program it ran) and started after the command did: it may have inherited it. Another
 * account's, or a kernel thread, cannot have, and is passed over. Each process's descriptors are read a batch at a
 * time, off the event loop. Without /proc nothing can be known: the pipe is taken as held.
 */
export async function pipeHolder(pipe: HeldPipe, search: HolderSearch): Promise<string | undefined> {
  let own: string;
  let pids: string[];
  try {
    own = readlinkSync(`/proc/self/fd/${pipe.fd}`);
    // This process as /proc numbers it, which is not process.pid when /proc is another pid namespace's.
    const self = readlinkSync('/proc/self');
    pids = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry) && entry !== self);
  } catch {
    return 'unknown';
  }
  const { lastHolder } = search;
  if (lastHolder !== undefined && pids.includes(lastHolder)) pids = [lastHolder, ...pids.filter((pid) => pid !== lastHolder)];
  for (const pid of pids) {
    if (search.stop()) return undefined;
    let fds: AsyncIterable<{ name: string }>;
    try {
      // Read as it is walked, never whole at once: a process may have a million descriptors.
      fds = await opendir(`/proc/${pid}/fd`, { bufferSize: FDS_PER_TURN });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && mayHaveInherited(pid, search.startedSince)) return pid;
      continue;
    }
    try {
      for await (const fd of fds) {
        if (sameOpenFile(`/proc/${pid}/fd/${fd.name}`, own, pipe)) return pid;
      }
    } catch {
      // The process ended while it was read.
    }
  }
  return undefined;
}

function sameOpenFile(link: string, own: string, pipe: HeldPipe): boolean {
  try {
    if (readlinkSync(link) !== own) return false;
    const open = statSync(link);
    return open.dev === pipe.dev && open.ino === pipe.ino;
  } catch {
    // Closed, or the process gone, meanwhile.
    return false;
  }
}

/** When a process started, in clock ticks since boot (field 22 of /proc/PID/stat); undefined if it is gone. */
export function processStartTicks(pid: number | string): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) may hold spaces and parentheses: the fields after it start at the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a process whose descriptors cannot be read may hold a command's pipe: this account's, started since. */
function mayHaveInherited(pid: string, since: number): boolean {
  const ticks = processStartTicks(pid);
  if (ticks === undefined || ticks < since) return false;
  try {
    // Real, effective, saved and filesystem uid: any of them this process's.
    const uids = /^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1]?.split(/\s+/) ?? [];
    return uids.includes(String(process.getuid?.() ?? -1));
  } catch {
    return false;
  }
}
