// plumb -check -recipe=FILE: the recipe read and checked here as the daemon would check it, its plan printed;
// nothing runs and no machine is needed. loadRecipe is the same reading for a recipe that is sent to run.

import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { UsageError } from '../protocol/errors.js';
import { checkRecipe } from '../recipes/check.js';
import { formatPlan, type RecipePlan } from '../recipes/plan.js';

export interface LoadedRecipe {
  /** The file as named on the command line. */
  file: string;
  text: string;
  plan: RecipePlan;
}

/**
 * Reads and checks a recipe file; the daemon checks it again, but a refusal here needs no connection. Throws
 * NetplumbError(Usage) for a file that cannot be read, RecipeError for a recipe the check refuses.
 */
export function loadRecipe(file: string, spoolDir: string): LoadedRecipe {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new UsageError(`cannot read recipe ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return checkedRecipe(bytes, file, spoolDir);
}

/** A recipe given as text (by the library), checked as loadRecipe checks a file; `source` names it in errors. */
export function loadRecipeText(text: string, source: string, spoolDir: string): LoadedRecipe {
  return checkedRecipe(Buffer.from(text, 'utf8'), source, spoolDir);
}

function checkedRecipe(bytes: Buffer, file: string, spoolDir: string): LoadedRecipe {
  // Checked as bytes, so that what is not UTF-8 is reported with its place; once it passed, the text is exact.
  const plan = checkRecipe(bytes, { sourceName: file, spoolDir });
  return { file, text: bytes.toString('utf8'), plan };
}

/**
 * Prints the plan of a recipe that passes the check, its spool directory line saying `spoolWhy` (given, or which
 * one was assumed); returns plumb's exit status.
 */
export function checkCommand(file: string, spoolDir: string, output: Writable = process.stdout, spoolWhy?: string): number {
  const plan = formatPlan(loadRecipe(file, spoolDir).plan);
  output.write(spoolWhy === undefined ? plan : plan.replace(/^(spool directory: .*)$/m, `$1 (${spoolWhy})`));
  return 0;
}
