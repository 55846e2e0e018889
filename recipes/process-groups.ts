// Process groups, the unit in which netplumbd starts and ends commands: each command leads its own group, so a
// signal reaches whatever it started too. Also how a command that could not start is reported, as a shell would.

import { ErrorCode, NetplumbError } from '../protocol/errors.js';
import type { StageStatus } from '../protocol/session.js';

/** As a shell reports a command it could not run: not found, not executable, a redirection that failed. */
export const STAGE_NOT_FOUND_CODE = 127;
export const STAGE_NOT_EXECUTABLE_CODE = 126;
export const STAGE_REDIRECTION_FAILED_CODE = 1;

/** How often groups being ended are looked at again, in milliseconds. */
const GROUP_POLL_MS = 50;

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

/**
 * Ends process groups: `firstSignals` (SIGTERM; a terminal's session is hung up first) to each group now, SIGKILL to
 * those left once graceMs is over. `groups` is asked again at every look, so groups made meanwhile go too.
 * Resolves once none is left (at once when none was).
 */
export function endGroups(groups: () => readonly number[], graceMs: number, firstSignals: readonly NodeJS.Signals[] = ['SIGTERM']): Promise<void> {
  const alive = (): number[] => groups().filter(groupAlive);
  const now = alive();
  if (now.length === 0) return Promise.resolve();
  for (const group of now) for (const signal of firstSignals) signalGroup(group, signal);
  const deadline = Date.now() + graceMs;
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

/** A program spawn() could not start, as a shell reports it: 127 when not found, 126 otherwise. */
export function spawnFailure(program: string, error: NodeJS.ErrnoException): StageStatus {
  if (error.code === 'ENOENT') return { error: ErrorCode.CommandNotFound, message: `command not found: ${program}`, code: STAGE_NOT_FOUND_CODE };
  if (error.code === 'EACCES') return { error: ErrorCode.CommandNotExecutable, message: `permission denied: ${program}`, code: STAGE_NOT_EXECUTABLE_CODE };
  return { error: ErrorCode.SpawnFailed, message: `cannot run ${program}: ${error.message}`, code: STAGE_NOT_EXECUTABLE_CODE };
}

/** A program the look-up did not find or may not run, reported as spawnFailure reports the same from spawn. */
export function notStarted(program: string, error: unknown): StageStatus {
  if (!(error instanceof NetplumbError)) return { error: ErrorCode.SpawnFailed, message: `cannot run ${program}: ${error instanceof Error ? error.message : String(error)}`, code: STAGE_NOT_EXECUTABLE_CODE };
  const code = error.code === ErrorCode.CommandNotFound ? STAGE_NOT_FOUND_CODE : STAGE_NOT_EXECUTABLE_CODE;
  return { error: error.code, message: error.message, code };
}
