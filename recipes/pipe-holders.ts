// Whether any process other than this one still has a pipe open, found among every process's open descriptors in
// /proc. A pipe's writer learns that its readers have gone only by writing; a relay that feeds a command's stdin
// needs to know sooner, so that the writers upstream get SIGPIPE when they would without it. The command's own
// process group is no proof: a process that called setsid() may still be reading.

import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Descriptors looked at in one turn of the event loop, so a process with very many never stalls the daemon. */
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
 * be read (another account's, or one that made itself undumpable) is taken to hold the pipe if it started after the
 * command did: it may have inherited it. Without /proc nothing can be known: the pipe is taken as held.
 */
export async function pipeHolder(pipe: HeldPipe, search: HolderSearch): Promise<string | undefined> {
  let own: string;
  let pids: string[];
  try {
    own = readlinkSync(`/proc/self/fd/${pipe.fd}`);
    pids = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid);
  } catch {
    return 'unknown';
  }
  const { lastHolder } = search;
  if (lastHolder !== undefined && pids.includes(lastHolder)) pids = [lastHolder, ...pids.filter((pid) => pid !== lastHolder)];
  for (const pid of pids) {
    if (search.stop()) return undefined;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && startedAtOrAfter(pid, search.startedSince)) return pid;
      continue;
    }
    for (const [index, fd] of fds.entries()) {
      if (index > 0 && index % FDS_PER_TURN === 0) await nextTurn();
      if (sameOpenFile(`/proc/${pid}/fd/${fd}`, own, pipe)) return pid;
    }
    await nextTurn();
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

function startedAtOrAfter(pid: string, since: number): boolean {
  const ticks = processStartTicks(pid);
  return ticks !== undefined && ticks >= since;
}
