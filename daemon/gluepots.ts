// Gluepots: the commands (and paths outside the spool directory) a client may use, one file per gluepot in the
// daemon's gluepot directory. Every program a client asks for is resolved the way exec would find it (PATH, then
// every symlink), with the rights of the account it will run as, and compared with the programs the gluepot lists,
// resolved the same way when the file is loaded. Paths are resolved with that account's rights too.
//
//   # what backup clients may run
//   /usr/bin/tar -cf - *          (patterns, one per argument; `*` and `?` as in a shell glob)
//   /usr/bin/gzip ...             (`...` as the last word: any further arguments; a program alone: any arguments)
//   path /srv/backup/*            (absolute paths a redirection, named pipe or socket may use outside the spool)

import { realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { OWN_IDENTITY, type CommandIdentity } from '../bridges/identity.js';
import { findProgram } from '../bridges/programs.js';
import { BadConfigError, NotPermittedError } from '../protocol/errors.js';
import { readTrustedFile } from './trusted-file.js';

/** One allowed program, with argument patterns (undefined: any arguments). */
export interface GluepotRule {
  /** The program as written in the gluepot. */
  written: string;
  /** The program with every symlink resolved. */
  program: string;
  args: RegExp[] | undefined;
  /** `...` ended the patterns: any further arguments. */
  moreArgs: boolean;
  line: number;
}

export interface Gluepot {
  name: string;
  rules: GluepotRule[];
  /** Absolute paths outside the spool directory the client may name. */
  paths: { pattern: string; matcher: RegExp }[];
}

const MORE_ARGUMENTS = '...';

/** A shell-style glob (`*` any run of characters, `/` included; `?` one character) as an anchored RegExp. */
export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (const char of glob) {
    if (char === '*') source += '[\\s\\S]*';
    else if (char === '?') source += '[\\s\\S]';
    else source += char.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/** Parses one gluepot file; any bad line refuses the whole file (a half-understood allowlist is worse than none). */
export function parseGluepot(text: string, name: string, source: string): Gluepot {
  const problems: BadConfigError[] = [];
  const gluepot = parseGluepotLines(text, name, source, problems);
  if (problems[0] !== undefined) throw problems[0];
  return gluepot;
}

/** Every bad line of a gluepot file, each with its file:line (for netplumbd -check-config); none: it is good. */
export function gluepotProblems(dir: string, name: string): BadConfigError[] {
  const { text, path } = readGluepot(dir, name);
  const problems: BadConfigError[] = [];
  parseGluepotLines(text, name, path, problems);
  return problems;
}

/** The gluepot's good lines; each bad one goes to `problems`. */
function parseGluepotLines(text: string, name: string, source: string, problems: BadConfigError[]): Gluepot {
  const gluepot: Gluepot = { name, rules: [], paths: [] };
  for (const [index, raw] of text.split('\n').entries()) {
    const line = index + 1;
    const words = raw.trim().split(/\s+/).filter((word) => word !== '');
    const [first, ...rest] = words;
    if (first === undefined || first.startsWith('#')) continue;
    const where = `${source}:${line}`;
    const bad = (message: string, cause?: unknown): void => void problems.push(new BadConfigError(`${where}: ${message}`, cause === undefined ? undefined : { cause }));
    if (first === 'path') {
      if (rest.length !== 1 || !isAbsolute(rest[0] as string)) {
        bad('expected "path /ABSOLUTE/GLOB"');
        continue;
      }
      const pattern = normalize(rest[0] as string);
      gluepot.paths.push({ pattern, matcher: globToRegExp(pattern) });
      continue;
    }
    if (!isAbsolute(first)) {
      bad(`a program must be an absolute path, not ${first}`);
      continue;
    }
    let program: string;
    try {
      program = realpathSync.native(first);
    } catch (error) {
      bad(`${first}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, error);
      continue;
    }
    const moreArgs = rest.at(-1) === MORE_ARGUMENTS;
    const patterns = moreArgs ? rest.slice(0, -1) : rest;
    if (patterns.includes(MORE_ARGUMENTS)) {
      bad(`${MORE_ARGUMENTS} may only end a line`);
      continue;
    }
    gluepot.rules.push({
      written: first,
      program,
      args: rest.length === 0 ? undefined : patterns.map(globToRegExp),
      moreArgs,
      line,
    });
  }
  return gluepot;
}

/** A gluepot name is a file name in the gluepot directory (the authorized-clients parser checks its characters). */
export function loadGluepot(dir: string, name: string): Gluepot {
  const { text, path } = readGluepot(dir, name);
  return parseGluepot(text, name, path);
}

/** A gluepot file's text and path, read as a trusted file (readTrustedFile). */
function readGluepot(dir: string, name: string): { text: string; path: string } {
  const path = join(dir, name);
  return { text: readTrustedFile(path, `gluepot ${name}`), path };
}

/**
 * The program exec would run for argv[0], with every symlink resolved, found with the identity's rights
 * (bridges/programs.ts): what the gluepot compares and what then runs.
 */
export function resolveProgram(program: string, searchPath: string, cwd: string, identity: CommandIdentity = OWN_IDENTITY): string {
  return findProgram(program, searchPath, cwd, identity).real;
}

function argumentsAllowed(rule: GluepotRule, args: readonly string[]): boolean {
  if (rule.args === undefined) return true;
  if (args.length < rule.args.length || (!rule.moreArgs && args.length > rule.args.length)) return false;
  return rule.args.every((pattern, index) => pattern.test(args[index] as string));
}

/**
 * Checks one command against the gluepot and returns the resolved program to run (so what runs is what was
 * checked). The program is found as `identity` would find it, so a refusal names the command, what it resolved to
 * (only ever what that account can see) and the gluepot; a program the account cannot reach is answered as
 * findProgram answers it, whether the gluepot lists it or not.
 */
export function checkCommand(gluepot: Gluepot, argv: readonly string[], searchPath: string, cwd: string, identity: CommandIdentity = OWN_IDENTITY): string {
  const [program, ...args] = argv as [string, ...string[]];
  const { real } = findProgram(program, searchPath, cwd, identity);
  const rules = gluepot.rules.filter((rule) => rule.program === real);
  if (rules.some((rule) => argumentsAllowed(rule, args))) return real;
  const shown = real === program ? program : `${program} (${real})`;
  const why = rules.length === 0 ? 'is not in' : 'has arguments not allowed by';
  throw new NotPermittedError(`command ${shown} ${why} gluepot ${gluepot.name}`);
}

/**
 * The path as the system will open it: the symlinks of its existing part resolved by realpath(3), `..` after a
 * symlink taken from where the link points (Node's own realpathSync would settle `..` in the text first); the part
 * not made yet as written. So a symlinked directory cannot carry a path out of where it seems to be.
 */
function resolveExisting(path: string): string {
  // Not normalised first: `link/..` must be settled as the system settles it, from where the link points.
  const normalised = normalize(path);
  const missing: string[] = [];
  let existing = path;
  for (;;) {
    try {
      return join(realpathSync.native(existing), ...missing.reverse());
    } catch {
      if (existing === dirname(existing)) return normalised;
      missing.push(basename(existing));
      existing = dirname(existing);
    }
  }
}

/**
 * An absolute path outside the spool directory must match one of the gluepot's `path` lines. Its symlinks are
 * resolved with `identity`'s rights: a refusal never names where a link the account cannot reach leads (the part
 * behind it is taken as written; the open, made as the account, fails there anyway).
 */
export function checkPath(gluepot: Gluepot, path: string, spoolDir: string, what: string, identity: CommandIdentity = OWN_IDENTITY): void {
  identity.asUser(() => checkRealPath(gluepot, resolveExisting(path), spoolDir, what));
}

/**
 * The same check of a path already resolved by the kernel (bridges/checked-open.ts reads it back from the open
 * directory), made again at the moment of opening: what a command did to the file system since the first check
 * cannot carry the open elsewhere.
 */
export function checkRealPath(gluepot: Gluepot, realPath: string, spoolDir: string, what: string): void {
  const spool = resolveExisting(spoolDir);
  if (realPath === spool || realPath.startsWith(`${spool}/`)) return;
  if (gluepot.paths.some(({ matcher }) => matcher.test(realPath))) return;
  throw new NotPermittedError(`${what} ${realPath} is outside the spool directory and not allowed by gluepot ${gluepot.name}`);
}
