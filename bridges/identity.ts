// Whose rights a session's commands, and the files and pipes the daemon makes for them, have. The daemon's
// RunAs (daemon/accounts.ts) implements it for another account; OWN_IDENTITY is the process's own.

/** Runs commands, and opens files for them, as some account. */
export interface CommandIdentity {
  /** The program and arguments to spawn so that `program args` runs with this identity. */
  command(program: string, args: readonly string[]): [string, string[]];
  /** Runs synchronous file-system calls with this identity's rights. */
  asUser<T>(open: () => T): T;
}

/** The process's own identity: nothing is wrapped or switched. */
export const OWN_IDENTITY: CommandIdentity = {
  command: (program, args) => [program, [...args]],
  asUser: (open) => open(),
};
