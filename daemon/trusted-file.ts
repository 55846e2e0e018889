// Reading the files that decide who may do what on this host: the config file, the authorized clients and the
// gluepots. A file another account could write would let that account grant itself what the daemon grants, so such
// a file is refused, as sshd's StrictModes refuses a user's authorized_keys that others may write.

import { closeSync, constants as fs, fstatSync, openSync, readFileSync } from 'node:fs';
import { BadConfigError } from '../protocol/errors.js';

/**
 * The text of a file the daemon trusts, refused (NP_CONFIG) when it cannot be read, is not a regular file, belongs
 * to an account other than root or the daemon's own, or group or others may write it. What is checked is the file
 * that was opened (a symlink to it is fine: the checks are on what it leads to).
 */
export function readTrustedFile(path: string, what: string): string {
  let fd: number;
  try {
    fd = openSync(path, fs.O_RDONLY | fs.O_NONBLOCK);
  } catch (error) {
    throw new BadConfigError(`cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new BadConfigError(`${what} ${path} is not a regular file`);
    const owners = new Set([0, process.geteuid?.() ?? 0]);
    if (!owners.has(stat.uid)) throw new BadConfigError(`${what} ${path} belongs to uid ${stat.uid}, not to root or the daemon's account: chown it`);
    if ((stat.mode & 0o022) !== 0) {
      throw new BadConfigError(`${what} ${path} may be written by group or others (mode 0${(stat.mode & 0o777).toString(8)}): chmod go-w it`);
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}
