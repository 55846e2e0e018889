// End to end: however a recipe run is cut short, nothing of it is left on the daemon's machine. SIGTERM to plumb
// is forwarded to every command; a plumb killed outright drops the connection and the daemon aborts the recipe;
// a daemon shut down mid-recipe ends its commands. Each time: no process (found by a marker), no named pipe left.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { RecipeReportJson } from '../../plumb-cli/recipe-report.js';
import { killMarkedAtCleanup, processesWithMarker, uniqueMarker, waitUntil } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';
import { fifosIn, markedSleep, plumbLines, startRecipeNetplumb } from '../helpers/recipes.js';

const TIMEOUT_MS = 120_000;
const KILL_GRACE_MS = 1000;
const SHUTDOWN_GRACE_MS = 1000;

/**
 * A recipe of long sleeps, all started at once: a background one, one with a grandchild, a writer and a reader
 * of a named pipe, a writer into a label and its reader, and a last one in the foreground. `sleeps` of its
 * processes carry the marker.
 */
function sleepyRecipe(sleep: string): { text: string; processes: number; stages: string[] } {
  const text = [
    'fifo hold',
    `bg: ${sleep} 60 &`,
    `family: sh -c '"$0" 60 & wait' ${sleep} &`,
    `writer: ${sleep} 60 >@hold &`,
    `reader: ${sleep} 60 <@hold &`,
    `talker: ${sleep} 60 2>%listener &`,
    `listener: ${sleep} 60 &`,
    `last: ${sleep} 60`,
    'never: echo never reached',
    '',
  ].join('\n');
  return { text, processes: 8, stages: ['bg', 'family', 'writer', 'reader', 'talker', 'listener', 'last'] };
}

async function sleepyRun(scope: Scope, daemonArgs: readonly string[] = []) {
  const setup = await startRecipeNetplumb(scope, [`-kill-grace-ms=${KILL_GRACE_MS}`, ...daemonArgs]);
  const marker = uniqueMarker('recipe-cleanup');
  killMarkedAtCleanup(scope, marker);
  const sleep = markedSleep(tempDir(scope, 'netplumb-bin-'), marker);
  const recipe = sleepyRecipe(sleep);
  const file = setup.writeRecipe('sleepy.rcp', recipe.text);
  return { ...setup, marker, recipe, file };
}

test('SIGTERM to plumb reaches every command of the recipe; all end and the named pipe is removed', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, marker, recipe, file } = await sleepyRun(t);
  const run = np.spawnPlumb([`-recipe=${file}`], { stdin: 'open' });
  await waitUntil('every command to run', () => processesWithMarker(marker).length === recipe.processes, 20_000);
  assert.deepEqual(fifosIn(spool), ['hold']);
  run.child.kill('SIGTERM');
  const result = await run.result;
  // Every command was killed by the forwarded SIGTERM; then the last line ran, as a shell would go on.
  assert.equal(result.code, 128 + 15, result.stderr);
  assert.equal(result.stdout.toString(), 'never reached\n');
  const lines = plumbLines(result.stderr);
  for (const name of recipe.stages) assert.ok(lines.some((line) => line.startsWith(`plumb: ${name} (${file}:`) && line.endsWith('killed by SIGTERM')), `${name}: ${result.stderr}`);
  assert.deepEqual(processesWithMarker(marker), []);
  assert.deepEqual(fifosIn(spool), []);
  await np.daemon.waitForLog(/recipe ended .*signal=SIGTERM/);
  await np.daemon.waitForLog(/forwarding signal to the recipe .*signal=SIGTERM/);
});

test('a plumb killed outright: the daemon aborts the recipe, leaves no process and no pipe, and serves the next plumb', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, marker, recipe, file, writeRecipe } = await sleepyRun(t);
  const run = np.spawnPlumb([`-recipe=${file}`], { stdin: 'open' });
  await waitUntil('every command to run', () => processesWithMarker(marker).length === recipe.processes, 20_000);
  run.child.kill('SIGKILL');
  await run.result;
  await waitUntil('the recipe to be ended', () => processesWithMarker(marker).length === 0, 15_000);
  await waitUntil('the named pipe to be removed', () => fifosIn(spool).length === 0, 15_000);
  await np.daemon.waitForLog(/recipe aborted .*reason="connection closed while the command ran"/);
  assert.doesNotMatch(np.daemon.log(), /recipe command ended .*name=never/);
  assert.ok(np.daemon.running);
  const next = await np.plumb([`-recipe=${writeRecipe('next.rcp', 'fifo hold\necho again >@hold &\ncat <@hold\n')}`]);
  assert.equal(next.code, 0, next.stderr);
  assert.equal(next.stdout.toString(), 'again\n');
  assert.deepEqual(fifosIn(spool), []);
});

test('a plumb killed outright while a command ignores SIGTERM: the daemon kills it after the grace period', { timeout: TIMEOUT_MS }, async (t) => {
  const setup = await startRecipeNetplumb(t, [`-kill-grace-ms=${KILL_GRACE_MS}`]);
  const marker = uniqueMarker('recipe-cleanup-stubborn');
  killMarkedAtCleanup(t, marker);
  const sleep = markedSleep(tempDir(t, 'netplumb-bin-'), marker);
  const file = setup.writeRecipe('stubborn.rcp', `fifo f\nsh -c 'trap "" TERM; "$0" 60' ${sleep} >@f &\n${sleep} 60 <@f\n`);
  const run = setup.np.spawnPlumb([`-recipe=${file}`], { stdin: 'open' });
  // The shell and its sleep, and the reader.
  await waitUntil('every command to run', () => processesWithMarker(marker).length === 3, 20_000);
  run.child.kill('SIGKILL');
  await run.result;
  await waitUntil('the recipe to be ended', () => processesWithMarker(marker).length === 0, 15_000);
  await waitUntil('the named pipe to be removed', () => fifosIn(setup.spool).length === 0, 15_000);
  await setup.np.daemon.waitForLog(/recipe aborted/);
});

test('a daemon shut down while a recipe runs ends every command and removes the pipe; plumb reports the end', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, marker, recipe, file, recipeDir } = await sleepyRun(t, [`-shutdown-grace-ms=${SHUTDOWN_GRACE_MS}`]);
  const reportFile = join(recipeDir, 'report.json');
  const run = np.spawnPlumb([`-recipe=${file}`, `-json=${reportFile}`], { stdin: 'open' });
  await waitUntil('every command to run', () => processesWithMarker(marker).length === recipe.processes, 20_000);
  np.daemon.kill('SIGTERM');
  const exit = await np.daemon.exited;
  assert.equal(exit.code, 0, np.daemon.log());
  assert.deepEqual(processesWithMarker(marker), [], 'no orphan');
  assert.deepEqual(fifosIn(spool), []);
  assert.match(np.daemon.log(), /recipe aborted .*reason="daemon shutting down"/);
  const result = await run.result;
  assert.equal(result.code, 128 + 15, result.stderr);
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as RecipeReportJson;
  assert.equal(report.exitStatus, 128 + 15);
  assert.equal(report.failure, undefined);
  assert.deepEqual(
    report.stages.map((stage) => [stage.name, stage.outcome, stage.signal]),
    [...recipe.stages.map((name) => [name, 'killed', 'SIGTERM']), ['never', 'not-run', undefined]],
  );
});

test('a process a recipe command leaves in its process group is ended with the session, as for a single command', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t, [`-kill-grace-ms=${KILL_GRACE_MS}`]);
  const marker = uniqueMarker('recipe-leftover');
  killMarkedAtCleanup(t, marker);
  const sleep = markedSleep(tempDir(t, 'netplumb-bin-'), marker);
  const leaveBehind = `"$0" 60 >/dev/null 2>&1 &`;
  // A single command first: what it leaves in its group goes when the session ends.
  const single = await np.plumb(['sh', '-c', leaveBehind, sleep]);
  assert.equal(single.code, 0, single.stderr);
  await waitUntil("the single command's leftover to be ended", () => processesWithMarker(marker).length === 0, 10_000);
  const recipe = writeRecipe('leftover.rcp', `sh -c '${leaveBehind}' ${sleep}\necho done\n`);
  const result = await np.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'done\n');
  await waitUntil("the recipe command's leftover to be ended", () => processesWithMarker(marker).length === 0, 10_000);
});

test('a third SIGINT gives up on a recipe that ignores them: plumb fails, the JSON report says so, nothing is left', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, recipeDir, writeRecipe } = await startRecipeNetplumb(t, [`-kill-grace-ms=${KILL_GRACE_MS}`]);
  const marker = uniqueMarker('recipe-sigint');
  killMarkedAtCleanup(t, marker);
  const sleep = markedSleep(tempDir(t, 'netplumb-bin-'), marker);
  const file = writeRecipe('deaf.rcp', `fifo f\nfirst: true\n${sleep} 60 >@f &\ndeaf: sh -c 'trap "" INT; "$0" 60' ${sleep} <@f\nnever: true\n`);
  const reportFile = join(recipeDir, 'deaf.json');
  const run = np.spawnPlumb([`-recipe=${file}`, `-json=${reportFile}`], { stdin: 'open' });
  await waitUntil('every command to run', () => processesWithMarker(marker).length === 3, 20_000);
  run.child.kill('SIGINT');
  // The writer does not ignore SIGINT: it ends, and plumb says so, before the next SIGINT.
  await run.waitForStderr(/killed by SIGINT\n/);
  run.child.kill('SIGINT');
  await np.daemon.waitForLog(/forwarding signal to the recipe (.|\n)*forwarding signal to the recipe/);
  run.child.kill('SIGINT');
  const result = await run.result;
  assert.equal(result.code, 255, result.stderr);
  assert.match(result.stderr, /\(NP_CONNECTION_LOST\)\n$/);
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as RecipeReportJson;
  assert.equal(report.exitStatus, null);
  assert.equal(report.failure?.code, 'NP_CONNECTION_LOST');
  assert.deepEqual(
    report.stages.map((stage) => [stage.name, stage.outcome]),
    [
      ['first', 'ended'],
      ['line 3', 'killed'],
      ['deaf', 'not-run'],
      ['never', 'not-run'],
    ],
  );
  await waitUntil('the recipe to be ended', () => processesWithMarker(marker).length === 0, 15_000);
  await waitUntil('the named pipe to be removed', () => fifosIn(spool).length === 0, 15_000);
  await np.daemon.waitForLog(/recipe aborted/);
});
