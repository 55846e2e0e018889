// The bench's worker process: the rows that run many sessions through the project's client code from one Node
// process (the load generator, another session's echo beside recipe checks) run here rather than in the bench
// itself, so that a client that hangs can be killed by the bench (workers.ts) instead of freezing it.
//   node worker.js load PORT HOME SESSIONS CONCURRENCY
//   node worker.js recipe-echo PORT HOME ROUNDS
// It prints `progress N` lines as work ends, then `result JSON`.

import { generateLoad } from './load-generator.js';
import { echoBesideRecipeChecks } from './recipe-echo.js';

async function main(): Promise<void> {
  const [mode, port, home, ...numbers] = process.argv.slice(2);
  if (port === undefined || home === undefined) throw new Error('usage: worker.js load|recipe-echo PORT HOME ...');
  const progress = (done: number): void => void process.stdout.write(`progress ${done}\n`);
  const [first, second] = numbers.map(Number);
  let result: unknown;
  if (mode === 'load' && first !== undefined && second !== undefined) result = await generateLoad(Number(port), home, first, second, progress);
  else if (mode === 'recipe-echo' && first !== undefined) result = await echoBesideRecipeChecks(Number(port), home, first, progress);
  else throw new Error(`unknown worker mode ${mode ?? ''}`);
  process.stdout.write(`result ${JSON.stringify(result)}\n`);
}

main().then(
  // Sessions given up on may leave sockets behind: the result is out, so the worker goes now.
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench worker: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
