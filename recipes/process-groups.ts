// Process groups, the unit in which netplumbd starts and ends commands: each command leads its own group, so a
// signal reaches whatever it started too. Ending groups and reading spawn failures is the same for a single
// command (daemon/) and a recipe's stages, and written once here.

import { ErrorCode } from '../protocol/errors.js';

/** Sends a signal to every process of a group; a group that is already gone is fine. */
export function signalGroup(group: number | undefined, signal: NodeJS.Signals): void {
  if (group === undefined) return;
  try {
    process.kill(-group, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** True while any process of the group is left (signal 0 only asks). */
export function groupAlive(group: number): boolean {
  try {
    process.kill(-group, 0);
    return true;
  } catch {
    // ESRCH: none left. EPERM cannot happen for a group the daemon started (it is root or their owner).
    return false;
  }
}

/** How often endGroups looks whether the groups are gone. */
const GROUP_POLL_MS = 50;

export interface GroupEnding {
  /** How long after SIGTERM what is left gets SIGKILL. */
  graceMs: number;
  /** A terminal's session: SIGHUP before SIGTERM, as a closing terminal would. */
  hangUpFirst?: boolean;
}

/**
 * Ends every group `liveGroups()` names: SIGTERM now (SIGHUP first for a terminal's session), SIGKILL to whatever
 * is left after the grace period. Resolves once no group is left. `liveGroups` is asked again at every look, so it
 * may filter with groupAlive and pick up groups that appear meanwhile (a job a terminal's shell starts).
 */
export function endGroups(liveGroups: () => number[], ending: GroupEnding): Promise<void> {
  const alive = (): number[] => liveGroups().filter(groupAlive);
  const first = alive();
  if (first.length === 0) return Promise.resolve();
  for (const group of first) {
    if (ending.hangUpFirst === true) signalGroup(group, 'SIGHUP');
    signalGroup(group, 'SIGTERM');
  }
  const deadline = Date.now() + ending.graceMs;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      const left = alive();
      if (left.length === 0) {
        clearInterval(timer);
        resolve();
      } else if (Date.now() >= deadline) {
        for (const group of left) signalGroup(group, 'SIGKILL');
      }
    }, GROUP_POLL_MS);
  });
}

/** Why a program did not start, as its failure code and the line that says so; the same for a command and a stage. */
export function spawnFailure(program: string, error: NodeJS.ErrnoException): { code: ErrorCode; message: string } {
  if (error.code === 'ENOENT') return { code: ErrorCode.CommandNotFound, message: `command not found: ${program}` };
  if (error.code === 'EACCES') return { code: ErrorCode.CommandNotExecutable, message: `permission denied: ${program}` };
  return { code: ErrorCode.SpawnFailed, message: `cannot run ${program}: ${error.message}` };
}
