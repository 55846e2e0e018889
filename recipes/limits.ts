// The size limits of a recipe, each named with its unit. checkRecipe() enforces them before and after parsing and
// refuses with NP_RECIPE_TOO_LARGE, located at the first thing past the limit.

import { BadConfigError } from '../protocol/errors.js';

export interface RecipeLimits {
  /** Largest recipe, in bytes of UTF-8 text. Checked first, before any other look at the text. */
  maxRecipeBytes: number;
  /** Most commands in one recipe (fifo declarations, comments and blank lines do not count). */
  maxRecipeCommands: number;
  /** Most words (argv[0] included) in one command; redirections do not count. */
  maxArgsPerCommand: number;
  /** Longest argv word or file name as written, in bytes of UTF-8. */
  maxArgBytes: number;
  /** Longest file path after resolution against the spool directory, in bytes (Linux PATH_MAX less the NUL). */
  maxPathBytes: number;
  /** Longest label or fifo name, in bytes. */
  maxNameBytes: number;
  /** Most named pipes one recipe may declare. */
  maxFifos: number;
}

export const DEFAULT_RECIPE_LIMITS: Readonly<RecipeLimits> = Object.freeze({
  maxRecipeBytes: 65_536,
  maxRecipeCommands: 256,
  maxArgsPerCommand: 1_024,
  maxArgBytes: 4_096,
  maxPathBytes: 4_095,
  maxNameBytes: 64,
  maxFifos: 64,
});

/** The names of the limits, in a stable order (for documentation and tests). */
export const RECIPE_LIMIT_NAMES: readonly (keyof RecipeLimits)[] = Object.freeze(
  Object.keys(DEFAULT_RECIPE_LIMITS) as (keyof RecipeLimits)[],
);

/**
 * The defaults with `overrides` applied, validated once: every limit must be a positive safe integer.
 * Throws ConfigError (NP_CONFIG) otherwise; a limit is a setting, not a property of the recipe.
 */
export function resolveRecipeLimits(overrides: Partial<RecipeLimits> = {}): RecipeLimits {
  const limits: RecipeLimits = { ...DEFAULT_RECIPE_LIMITS };
  for (const name of RECIPE_LIMIT_NAMES) {
    const value = overrides[name];
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new BadConfigError(`recipe limit ${name} must be a positive integer, not ${String(value)}`);
    }
    limits[name] = value;
  }
  return limits;
}
