// What a fuzzed Start may make a daemon that runs commands as root run: checked with the daemon's own decoder and
// recipe checker before sending. Harmless programs only, files only in the fuzz's temp dir, never a login shell;
// a Start the daemon would refuse is sent as it is, since the refusal is what is tested.

import { existsSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { decodeFields } from '../../protocol/fields.js';
import { decodeStartRequest, type Endpoints, type StartRequest } from '../../protocol/session.js';
import { StartKind } from '../../protocol/wire.js';
import { checkRecipe } from '../../recipes/check.js';

/** Programs a fuzzed Start may run, by any spelling exec would resolve: they ignore stdin and touch no file. */
const HARMLESS_PROGRAMS: ReadonlySet<string> = new Set(['true', 'false', 'echo', '/bin/true', '/usr/bin/true', '/bin/false', '/usr/bin/false', '/bin/echo', '/usr/bin/echo']);
/** In a recipe, cat too: its input is a spool file, a pipe, a label or plumb's stdin, never a named file argument. */
const HARMLESS_RECIPE_PROGRAMS: ReadonlySet<string> = new Set(['true', 'false', 'echo', 'cat']);
/** The search path the daemon gives commands (accept-env keeps clients from changing it). */
const COMMAND_PATH = ['/usr/local/bin', '/usr/bin', '/bin'];
/** Most commands a fuzzed recipe may start: each is a process. */
const MAX_RECIPE_STAGES = 8;

export type Verdict =
  /** The fields do not decode: the daemon drops the connection (NP_BAD_FIELDS) before the session sees them. */
  | 'undecodable'
  /** The daemon refuses the request, or would run only what is allowed here. */
  | 'safe'
  /** The daemon might run something else: never sent. */
  | 'unsafe';

export interface SafetyScope {
  /** The daemon's spool directory (relative names of files, pipes and sockets live there). */
  spoolDir: string;
  /** The fuzz run's temp dir: the only place an absolute path may name. */
  tempDir: string;
}

function insideDir(path: string, dir: string): boolean {
  return normalize(path).startsWith(`${dir}/`);
}

/** A program name without a slash that is not on the command path: the daemon answers "not found". */
function absentProgram(program: string): boolean {
  return !program.includes('/') && program !== '' && program !== '.' && program !== '..' && COMMAND_PATH.every((dir) => !existsSync(join(dir, program)));
}

function endpointsSafe(endpoints: Endpoints, scope: SafetyScope): boolean {
  // Relative paths stay in the spool (the daemon refuses `..` in them); absolute ones only in the temp dir.
  return Object.values(endpoints)
    .flat()
    .every((path: string) => !isAbsolute(path) || insideDir(path, scope.tempDir));
}

function recipeSafe(text: string, source: string, scope: SafetyScope): boolean {
  let plan;
  try {
    plan = checkRecipe(text, { sourceName: source, spoolDir: scope.spoolDir });
  } catch {
    return true;
  }
  if (plan.stages.length > MAX_RECIPE_STAGES) return false;
  return plan.stages.every((stage) => {
    const [program] = stage.argv;
    if (program === undefined || !HARMLESS_RECIPE_PROGRAMS.has(program)) return absentProgram(program ?? '');
    if (program === 'cat' && stage.argv.length > 1) return false;
    return [stage.stdin, stage.stdout, stage.stderr].every((end) => end.kind !== 'file' || insideDir(end.path, scope.spoolDir));
  });
}

function requestSafe(request: StartRequest, scope: SafetyScope): boolean {
  if (!endpointsSafe(request.endpoints, scope)) return false;
  if (request.kind === StartKind.Recipe || request.kind === StartKind.Part) return recipeSafe(request.text, request.source, scope);
  // A forward runs nothing; its endpoints were judged above.
  if (request.kind === StartKind.Forward) return true;
  const [program] = request.argv;
  // No argv with a pty is the account's login shell, which would read the fuzz's stream bytes as commands.
  if (program === undefined) return false;
  return HARMLESS_PROGRAMS.has(program) || absentProgram(program);
}

/** The verdict on a Start payload, as the daemon would decode it. */
export function startVerdict(payload: Buffer, scope: SafetyScope): Verdict {
  let request: StartRequest;
  try {
    const fields = decodeFields(payload);
    try {
      request = decodeStartRequest(fields);
    } catch {
      return 'safe';
    }
  } catch {
    return 'undecodable';
  }
  return requestSafe(request, scope) ? 'safe' : 'unsafe';
}
