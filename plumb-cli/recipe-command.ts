// plumb machine -recipe=FILE: sends the checked recipe to run on the machine, says each command that failed on
// stderr as it ends, and with -json writes the report of every command's end; the report never changes the status.

import { writeFileSync } from 'node:fs';
import { ErrorCode, asNetplumbError } from '../protocol/errors.js';
import type { ExportedEnv } from '../protocol/session.js';
import { StartKind } from '../protocol/wire.js';
import type { LoadedRecipe } from './check-command.js';
import { RecipeReport } from './recipe-report.js';
import { runOnMachine, type RunArguments } from './run-command.js';
import type { RemoteJob } from './run.js';

export interface RecipeArguments extends RunArguments {
  /** true: the JSON report on stderr; a string: into that file; false: no report. */
  json: boolean | string;
  /** -reach: for a recipe across machines, where the other daemons reach a machine (as the recipe names it). */
  reach?: ReadonlyMap<string, { host: string; port: number }>;
  /** -relay: an edge whose writing daemon cannot reach the reading one is carried through plumb instead of refused. */
  relay?: boolean;
}

/** The Start request's job for a recipe. */
export function recipeJob(recipe: LoadedRecipe, user: string | undefined): Extract<RemoteJob, { kind: StartKind.Recipe }> {
  return { kind: StartKind.Recipe, text: recipe.text, source: recipe.file, ...(user === undefined ? {} : { user }) };
}

/** Runs the recipe; resolves with plumb's exit status, the recipe's own when it ran to its end. */
export async function recipeCommand(args: RecipeArguments, recipe: LoadedRecipe, env: ExportedEnv): Promise<number> {
  const report = new RecipeReport(recipe.file, args.machine as string, recipe.plan);
  try {
    // With a report, the daemon counts each command's bytes: they pass through it, which only a report pays for.
    const status = await runOnMachine(
      args,
      { ...recipeJob(recipe, args.user), ...(args.json === false ? {} : { countBytes: true }) },
      env,
      {
        onStageEnd: (end) => {
          const line = report.stageEnded(end);
          if (line !== undefined) process.stderr.write(`plumb: ${line}\n`);
        },
        onStageBytes: (bytes) => report.stageCounted(bytes),
      },
      (streams) => report.streams(streams),
    );
    report.finished(status);
    return status;
  } catch (error) {
    report.failed(asNetplumbError(error));
    throw error;
  } finally {
    if (args.json !== false) writeJsonReport(report.toJSON(), args.json);
  }
}

/** Writes the JSON report; a file that cannot be written is said on stderr and never changes the exit status. */
export function writeJsonReport(report: object, destination: true | string): void {
  const text = `${JSON.stringify(report)}\n`;
  if (destination === true) {
    process.stderr.write(text);
    return;
  }
  try {
    writeFileSync(destination, text, { mode: 0o600 });
  } catch (error) {
    process.stderr.write(`plumb: cannot write the JSON report to ${destination}: ${(error as Error).message} (${ErrorCode.Usage})\n`);
  }
}
