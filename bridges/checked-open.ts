// Opening a path a client named so that what is opened is what was checked. A check of the path's text followed
// by open(2) leaves a gap: a command the client runs can swap a directory for a symlink in between. Here the
// directory is opened first, its real path is read back from the descriptor (/proc/self/fd), the check sees that,
// and the last component is opened inside that very directory, never through a symlink.

import { closeSync, constants as fs, openSync, readlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * open(2)'s O_PATH (Linux; the value on x86-64, arm64 and the other common architectures), which Node does not
 * export: the directory is held without being read, so one that may be entered but not listed (0711, 0733) works,
 * as it does for a shell's redirection.
 */
const O_PATH = 0o10000000;

/** Throws when a real path (every symlink resolved) may not be used; returns otherwise. */
export type PathCheck = (realPath: string) => void;

/** The real path of an open descriptor, as the kernel knows it. */
export function realPathOfFd(fd: number): string {
  return readlinkSync(`/proc/self/fd/${fd}`);
}

/**
 * open(2) of `path` with `flags` (O_NOFOLLOW added) where `check` sees the real path the file will have. The
 * path's directory must exist; `.` or `..` as the last component is refused (they would name a directory).
 */
export function openChecked(path: string, flags: number, mode: number, check: PathCheck | undefined): number {
  const name = basename(path);
  if (name === '' || name === '.' || name === '..' || path.endsWith('/')) {
    throw Object.assign(new Error(`${path} names a directory`), { code: 'EISDIR' });
  }
  const directory = openSync(dirname(path), O_PATH | fs.O_DIRECTORY);
  try {
    check?.(join(realPathOfFd(directory), name));
    return openSync(`/proc/self/fd/${directory}/${name}`, flags | fs.O_NOFOLLOW, mode);
  } finally {
    closeSync(directory);
  }
}
