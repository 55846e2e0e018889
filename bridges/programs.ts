// Finding the program a command's argv[0] names, as exec would (a name with a slash as it is, otherwise the search
// path), with the rights of the account that will run it: a missing or non-executable program is answered before
// anything starts, alike for every account, and a check made here learns nothing the account could not see itself.

import { realpathSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { CommandNotExecutableError, CommandNotFoundError } from '../protocol/errors.js';
import { OWN_IDENTITY, type CommandIdentity } from './identity.js';

/** A program as found for argv[0]. */
export interface FoundProgram {
  /** argv[0] as the client wrote it. */
  written: string;
  /** The file exec would be given: absolute, symlinks left as they are. */
  path: string;
  /** That file with every symlink resolved: what a gluepot compares. */
  real: string;
}

/**
 * Finds argv[0] as exec would, inside `identity.asUser`: every lookup, symlink and permission is the account's. A
 * name with a slash is taken from cwd; a bare name from the first entry of searchPath holding a file the account
 * may execute (a relative entry from cwd; empty entries skipped). As a shell answers: nowhere is
 * NP_COMMAND_NOT_FOUND, a file that is there but may not be executed (or a path the account cannot reach) is
 * NP_COMMAND_NOT_EXECUTABLE, so a program in a directory the account cannot enter gets the same answer whether it
 * exists or not. A search-path directory the account cannot enter is passed over, as bash does.
 */
export function findProgram(program: string, searchPath: string, cwd: string, identity: CommandIdentity = OWN_IDENTITY): FoundProgram {
  const named = program.includes('/');
  const candidates = named
    ? [isAbsolute(program) ? program : join(cwd, program)]
    : searchPath
        .split(delimiter)
        .filter((dir) => dir !== '')
        .map((dir) => (isAbsolute(dir) ? join(dir, program) : join(cwd, dir, program)));
  return identity.asUser(() => {
    let denied = false;
    for (const candidate of candidates) {
      try {
        // A directory or device is not run either: exec refuses it with EACCES.
        if (statSync(candidate).isFile() && identity.mayExecute(candidate)) {
          return { written: program, path: candidate, real: realpathSync.native(candidate) };
        }
        denied = true;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        if (named || code !== 'EACCES') denied = true;
      }
    }
    if (denied) throw new CommandNotExecutableError(`permission denied: ${program}`);
    throw new CommandNotFoundError(`command not found: ${program}`);
  });
}

/**
 * The name to hand to `identity.command()` for a program found by findProgram, when no gluepot check chose the
 * file already (that check's file runs, every symlink resolved). For the daemon's own account, the file found:
 * spawn keeps argv[0] apart (its argv0 option), so what was found is what runs. Through setpriv, the word as
 * written: setpriv execs its first argument as argv[0] too, and the file found would replace the command's argv[0]
 * (`/usr/bin/unxz` for `unxz`, a path in every message the program prints); setpriv's execvp searches the same PATH
 * from the same directory with the same rights, so it finds that same file.
 *
 * What remains is the window between finding and exec: a program removed (or made not executable) meanwhile fails
 * in exec. For the daemon's own account the spawn error is then answered as here (a refused Start, or a recipe
 * command's 127 / 126), but on a pty node-pty has the Start accepted and prints `execvp(3) failed.` with status 1;
 * through setpriv the Start is already accepted, and the user sees setpriv's own words on the command's stderr (or
 * terminal), `NAME: failed to execute NAME: ...`, and status 127 (126 for other failures). The same holds for what
 * the check here leaves out (see RunAs.mayExecute): ACLs, a noexec mount, a security module.
 */
export function programToStart(found: FoundProgram, identity: CommandIdentity): string {
  return identity.switches ? found.written : found.path;
}
