// Opening (or connecting to) a path a client named so that what is used is what was checked. A check of the path's text followed
// by open(2) leaves a gap: a command the client runs can swap a directory for a symlink in between. Here the
// directory is opened first, its real path is read back from the descriptor (/proc/self/fd), the check sees that,
// and the last component is opened inside that very directory, never through a symlink. A failure is told by the
// path the client gave, never by the /proc/self/fd name the call went by.

import { closeSync, constants as fs, lstatSync, openSync, readlinkSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { getSystemErrorMap } from 'node:util';

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

/** A directory held open, and a name in it that reaches it through the descriptor, whatever is renamed meanwhile. */
export interface HeldDirectory {
  /** `/proc/self/fd/N/NAME`: good until release(). */
  pinned: string;
  /** N: the descriptor, to hand to a child process. */
  fd: number;
  release(): void;
}

/**
 * A system error of a call made for `path` (by its pinned name, or its directory's), told as a shell tells it:
 * `PATH: permission denied`. Node words it `EACCES: permission denied, open '/proc/self/fd/22/NAME'`, a name of
 * the daemon's own that means nothing to the client. code, errno and syscall stay; anything else (a refusal of the
 * check) is left as it was thrown.
 */
export function toldAsPath(error: unknown, path: string): unknown {
  if (!(error instanceof Error)) return error;
  const { code, errno, syscall } = error as NodeJS.ErrnoException;
  if (typeof code !== 'string' || syscall === undefined) return error;
  const words = errno === undefined ? undefined : getSystemErrorMap().get(errno)?.[1];
  return Object.assign(new Error(`${path}: ${words ?? code}`, { cause: error }), { code, errno, syscall, path });
}

/** What went wrong, for a message that names `path` already: without the `PATH: ` toldAsPath put in front. */
export function reasonFor(error: unknown, path: string): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.startsWith(`${path}: `) ? message.slice(path.length + 2) : message;
}

/**
 * Opens the directory of `path` (O_PATH: it need not be listable) and lets `check` see the real path `path` stands
 * for. Whatever is done by the pinned name (open(2), connect(2), bind(2), unlink(2)) reaches the directory that was
 * checked. The directory must exist; `.` or `..` as the last component is refused (they would name a directory).
 */
export function holdDirectory(path: string, check: PathCheck | undefined): HeldDirectory {
  const name = basename(path);
  if (name === '' || name === '.' || name === '..' || path.endsWith('/')) {
    throw Object.assign(new Error(`${path} names a directory`), { code: 'EISDIR' });
  }
  let directory: number;
  try {
    directory = openSync(dirname(path), O_PATH | fs.O_DIRECTORY);
  } catch (error) {
    throw toldAsPath(error, path);
  }
  try {
    check?.(join(realPathOfFd(directory), name));
  } catch (error) {
    closeSync(directory);
    throw toldAsPath(error, path);
  }
  return { pinned: `/proc/self/fd/${directory}/${name}`, fd: directory, release: () => closeSync(directory) };
}

/**
 * Calls `use` with the pinned name of `path` (holdDirectory), for synchronous use only; then lets the directory go.
 * A system error `use` throws is told by `path` (toldAsPath).
 */
export function atCheckedPath<T>(path: string, check: PathCheck | undefined, use: (pinned: string) => T): T {
  const held = holdDirectory(path, check);
  try {
    return use(held.pinned);
  } catch (error) {
    throw toldAsPath(error, path);
  } finally {
    held.release();
  }
}

/** open(2) of `path` with `flags` (O_NOFOLLOW added) where `check` sees the real path the file will have. */
export function openChecked(path: string, flags: number, mode: number, check: PathCheck | undefined): number {
  return atCheckedPath(path, check, (pinned) => openSync(pinned, flags | fs.O_NOFOLLOW, mode));
}

/** A file this side made, known by its device and inode: the name alone may come to hold another file. */
export interface MadeFile {
  path: string;
  dev: number;
  ino: number;
}

/** Records the file now at `path` (never following a symlink there) as one this side made. */
export function madeFile(path: string): MadeFile {
  const { dev, ino } = lstatSync(path);
  return { path, dev, ino };
}

/**
 * Removes a file this side made, if its name still holds that very file: never another file put in its place, and
 * never through a directory swapped for a symlink since (the name is looked up in the directory held open). A file
 * already gone is fine.
 */
export function removeMadeFile(file: MadeFile): void {
  try {
    atCheckedPath(file.path, undefined, (pinned) => {
      const now = lstatSync(pinned);
      if (now.dev === file.dev && now.ino === file.ino) unlinkSync(pinned);
    });
  } catch {
    // Gone already, or its directory is.
  }
}
