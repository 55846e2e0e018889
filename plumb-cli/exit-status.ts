// plumb's exit status: the remote command's or recipe's own status when it ran, and the one mapping from any other
// failure to a status (127 and 126 as a shell reports them, 2 for a refused recipe, 255 for everything else).

import { constants } from 'node:os';
import { CommanderError } from 'commander';
import { asNetplumbError, ErrorCode, RecipeError } from '../protocol/errors.js';
import type { ExitStatus } from '../protocol/session.js';

/** plumb's status for anything that is not the remote command's own ending. */
export const EXIT_PLUMB_FAILURE = 255;
/** As a shell reports them, so scripts can tell a missing command from one that failed. */
export const EXIT_COMMAND_NOT_FOUND = 127;
export const EXIT_COMMAND_NOT_EXECUTABLE = 126;
/** The recipe was refused by the check, locally or by the daemon, before anything of it ran (as `sh` says 2). */
export const EXIT_RECIPE_REFUSED = 2;

/** Codes with which a daemon refuses a recipe before anything of it ran. */
const RECIPE_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([ErrorCode.RecipeSyntax, ErrorCode.RecipeInvalid, ErrorCode.RecipeTooLarge, ErrorCode.RecipeSetup]);

/** The status plumb exits with when the remote command or recipe ended this way: its code, or 128+N for signal N. */
export function exitStatusCode(status: ExitStatus): number {
  if ('code' in status) return status.code;
  const number = (constants.signals as Record<string, number | undefined>)[status.signal];
  return number === undefined ? EXIT_PLUMB_FAILURE : 128 + number;
}

/**
 * The status for a failure before or around the remote command: a refused recipe, a command the daemon could not
 * find or run, or anything else (a command line that asked only for help exits 0).
 */
export function failureExitStatus(error: unknown): number {
  if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_PLUMB_FAILURE;
  const failure = asNetplumbError(error);
  if (failure instanceof RecipeError || RECIPE_REFUSALS.has(failure.code)) return EXIT_RECIPE_REFUSED;
  if (failure.code === ErrorCode.CommandNotFound) return EXIT_COMMAND_NOT_FOUND;
  if (failure.code === ErrorCode.CommandNotExecutable) return EXIT_COMMAND_NOT_EXECUTABLE;
  return EXIT_PLUMB_FAILURE;
}
