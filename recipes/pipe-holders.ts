// Whether any process other than this one still has a pipe open, found by its device and inode among every
// process's open descriptors in /proc (by stat, not by the link's text: a pipe made as a FIFO and unlinked, as the
// pipe stock's are, shows its old path there, not pipe:[inode]). A pipe's writer learns that its readers have gone only by writing; a relay that feeds a
// command's stdin needs to know sooner, so that the writers upstream get SIGPIPE when they would without it. The
// command's own process group is no proof: a process that called setsid() may still be reading.

import { readdirSync, statSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * True when a process other than this one holds a descriptor of the pipe with `dev` and `ino` (as fstat gives them). Processes whose
 * descriptors cannot be read (another account's, seen by a daemon that is not root) are taken not to hold it: a
 * command's processes are its own account's, which a root daemon can always read. One process is read at a time,
 * with a turn of the event loop between, so a host with many processes never stalls the daemon.
 */
export async function pipeHeldElsewhere(pipe: { dev: number; ino: number }): Promise<boolean> {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid);
  } catch {
    // No /proc: nothing can be known, so the pipe is taken as held (the relay then learns by writing, as before).
    return true;
  }
  for (const pid of pids) {
    if (holds(pid, pipe)) return true;
    await nextTurn();
  }
  return false;
}

function holds(pid: string, pipe: { dev: number; ino: number }): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      const open = statSync(`/proc/${pid}/fd/${fd}`);
      if (open.ino === pipe.ino && open.dev === pipe.dev) return true;
    } catch {
      // Closed meanwhile.
    }
  }
  return false;
}
