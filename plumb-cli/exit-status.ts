// plumb's exit status when it is not the remote command's own: the shell's 126 and 127 for a command that cannot
// start, 2 for a recipe refused before anything of it ran, 255 for every other failure of plumb or the connection.

import { ErrorCode, type NetplumbError } from '../protocol/errors.js';
import { RecipeError } from '../recipes/errors.js';

/** plumb's status for anything that is not the remote command's own ending. */
export const EXIT_PLUMB_FAILURE = 255;
/** As a shell reports them, so scripts can tell a missing command from one that failed. */
export const EXIT_COMMAND_NOT_FOUND = 127;
export const EXIT_COMMAND_NOT_EXECUTABLE = 126;
/** The recipe was refused by the check, locally or by the daemon, before anything of it ran (as `sh` says 2). */
export const EXIT_RECIPE_REFUSED = 2;

/** Codes with which a daemon refuses a recipe before anything of it ran. */
const RECIPE_REFUSALS = new Set<string>([ErrorCode.RecipeSyntax, ErrorCode.RecipeInvalid, ErrorCode.RecipeTooLarge, ErrorCode.RecipeSetup]);

/** The exit status for a failure before or around the remote command. */
export function failureExitCode(error: NetplumbError): number {
  if (error instanceof RecipeError || RECIPE_REFUSALS.has(error.code)) return EXIT_RECIPE_REFUSED;
  if (error.code === ErrorCode.CommandNotFound) return EXIT_COMMAND_NOT_FOUND;
  if (error.code === ErrorCode.CommandNotExecutable) return EXIT_COMMAND_NOT_EXECUTABLE;
  return EXIT_PLUMB_FAILURE;
}
