// Whose rights a session's commands, and the files and pipes the daemon makes for them, have. The daemon's
// RunAs (daemon/accounts.ts) implements it for another account; OWN_IDENTITY is the process's own.

import { accessSync, constants as fs } from 'node:fs';

/** Runs commands, and opens files for them, as some account. */
export interface CommandIdentity {
  /**
   * True when commands start through a wrapper that takes on the identity (setpriv) and execs the program itself:
   * the name given to command() is then the program's argv[0] too.
   */
  readonly switches: boolean;
  /** The program and arguments to spawn so that `program args` runs with this identity. */
  command(program: string, args: readonly string[]): [string, string[]];
  /** Runs synchronous file-system calls with this identity's rights. */
  asUser<T>(open: () => T): T;
  /** Whether this identity may execute the file at path (a synchronous check, made inside asUser). */
  mayExecute(path: string): boolean;
}

/** access(2) for execution, as the process's real ids: the daemon's own, which asUser never changes. */
export function processMayExecute(path: string): boolean {
  try {
    accessSync(path, fs.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The process's own identity: nothing is wrapped or switched. */
export const OWN_IDENTITY: CommandIdentity = {
  switches: false,
  command: (program, args) => [program, [...args]],
  asUser: (open) => open(),
  mayExecute: processMayExecute,
};
