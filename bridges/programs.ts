// Finding the program a command's argv[0] names, as exec would (a name with a slash as it is, otherwise the search
// path), with the rights of the account that will run it: a check made here learns nothing the account could not
// see itself.

import { realpathSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { ErrorCode, RequestError } from '../protocol/errors.js';
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
    if (denied) throw new RequestError(ErrorCode.CommandNotExecutable, `permission denied: ${program}`);
    throw new RequestError(ErrorCode.CommandNotFound, `command not found: ${program}`);
  });
}
