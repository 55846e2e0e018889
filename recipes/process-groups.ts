// Process groups, the unit in which netplumbd starts and ends commands: each command leads its own group, so a
// signal reaches whatever it started too.

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
