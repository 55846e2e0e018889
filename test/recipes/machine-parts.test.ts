// Tests for running a recipe that spans machines as one RecipeRun per machine (recipes/execute.ts ownStages, and
// the edge outlets and inlets of recipes/edges.ts): the runs are joined here in one process, each edge by an
// in-memory stream and each stage's end told to the other runs, as the daemons and plumb will join them over the
// network. Real processes and pipes: bytes cross exactly, label pipes gather writers from several machines, the
// recipe's one order holds across machines, digests show a changed byte, and an abort never waits on a machine.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable, Transform, type Writable } from 'node:stream';
import { test } from 'node:test';
import type { StageEnd } from '../../protocol/session.js';
import type { EdgeOutput } from '../../recipes/edges.js';
import { prepareRecipe, type RecipeOutcome, type RecipeRun } from '../../recipes/execute.js';
import type { RecipePlan } from '../../recipes/plan.js';
import { deterministicSha256 } from '../helpers/payloads.js';
import { tempDir } from '../helpers/scope.js';
import { boundedOutcome, collector, openFdCount, planRecipe, recipeEnv, settledFdCount, writeDeterministicFile } from '../helpers/recipes.js';

const TIMEOUT_MS = 120_000;

interface Machines {
  plan: RecipePlan;
  runs: Map<string, RecipeRun>;
  ends: StageEnd[];
  stdout: Map<string, () => string>;
}

/** The machine a stage runs on, '' for plumb's. */
function machineOf(plan: RecipePlan, stage: number): string {
  return plan.stages[stage]?.machine ?? '';
}

/**
 * Readies one run per machine of the recipe, its edges joined through `between` (a pass-through unless a test puts
 * a fault there), every stage's end told to the other machines' runs.
 */
async function prepareMachines(text: string, spoolDir: string, between: (edge: number) => Transform = () => new PassThrough()): Promise<Machines> {
  const plan = planRecipe(text, spoolDir);
  const names = [...new Set(plan.stages.map((stage) => machineOf(plan, stage.index)))];
  const runs = new Map<string, RecipeRun>();
  const ends: StageEnd[] = [];
  for (const name of names) {
    const ownStages = new Set(plan.stages.filter((stage) => machineOf(plan, stage.index) === name).map((stage) => stage.index));
    const run = await prepareRecipe(plan, {
      env: recipeEnv(),
      killGraceMs: 2000,
      ownStages,
      onStageEnd: (end) => {
        ends.push(end);
        for (const other of runs.values()) other.foreignStageEnded(end.stage);
      },
    });
    runs.set(name, run);
  }
  const links = plan.edges.map((edge) => between(edge.index));
  const stdout = new Map<string, () => string>();
  for (const [name, run] of runs) {
    const edgeOutputs = new Map<number, EdgeOutput>();
    const edgeInputs = new Map<number, Readable>();
    for (const edge of plan.edges) {
      const link = links[edge.index] as Transform;
      if (machineOf(plan, edge.fromStage) === name) edgeOutputs.set(edge.index, { stream: link as Writable });
      if (machineOf(plan, edge.toStage) === name) edgeInputs.set(edge.index, link);
    }
    const out = collector();
    stdout.set(name, () => out.text());
    run.start({ stdin: Readable.from([]), stdout: out.stream, stderr: collector().stream, edgeOutputs, edgeInputs });
  }
  return { plan, runs, ends, stdout };
}

async function outcomes(machines: Machines): Promise<Map<string, RecipeOutcome>> {
  const entries = await Promise.all([...machines.runs].map(async ([name, run]) => [name, await boundedOutcome(run)] as const));
  return new Map(entries);
}

test('a | between two machines carries 8 MiB exactly, and both ends of the edge tally the same bytes and digest', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t, 'np-parts-');
  const input = join(spool, 'input');
  await writeDeterministicFile(input, 'edge', 8 * 1024 * 1024);
  const machines = await prepareMachines(`@a cat ${input} |\n@b sha256sum >sum\n`, spool);
  const results = await outcomes(machines);
  assert.deepEqual(results.get('a')?.status, { code: 0 });
  assert.deepEqual(results.get('b')?.status, { code: 0 });
  const expected = deterministicSha256('edge', 8 * 1024 * 1024);
  assert.equal(readFileSync(join(spool, 'sum'), 'utf8').split(' ')[0], expected);
  const sent = results.get('a')?.edges;
  const received = results.get('b')?.edges;
  assert.deepEqual(sent, [{ edge: 0, direction: 'out', bytes: 8 * 1024 * 1024, sha256: expected, complete: true }]);
  assert.deepEqual(received, [{ edge: 0, direction: 'in', bytes: 8 * 1024 * 1024, sha256: expected, complete: true }]);
  // Each machine reports only its own stages.
  assert.deepEqual(results.get('a')?.stages.map((end) => end.stage), [0]);
  assert.deepEqual(results.get('b')?.stages.map((end) => end.stage), [1]);
});

test('a label gathers writers from three machines, its own among them, and its reader sees EOF after the last', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t, 'np-parts-');
  const text = '@a echo one >%sink &\n@b echo two >%sink &\n@c echo three >%sink &\n@c sink: sort\n';
  const machines = await prepareMachines(text, spool);
  const results = await outcomes(machines);
  for (const name of ['a', 'b', 'c']) assert.deepEqual(results.get(name)?.status, { code: 0 }, name);
  assert.equal(machines.stdout.get('c')?.(), 'one\nthree\ntwo\n');
  assert.deepEqual(
    results.get('c')?.edges.map((tally) => [tally.edge, tally.direction, tally.bytes, tally.complete]),
    [
      [0, 'in', 4, true],
      [1, 'in', 4, true],
    ],
  );
});

test("a command waits for another machine's foreground command before it, and one after a background command does not", { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t, 'np-parts-');
  const log = join(spool, 'log');
  const text = [`@a sh -c 'sleep 0.5; echo first >>${log}'`, `@b sh -c 'echo second >>${log}'`, `@a sh -c 'sleep 0.5; echo fourth >>${log}' &`, `@b sh -c 'echo third >>${log}'`, ''].join('\n');
  const results = await outcomes(await prepareMachines(text, spool));
  assert.deepEqual(results.get('a')?.status, { code: 0 });
  assert.deepEqual(results.get('b')?.status, { code: 0 });
  assert.equal(readFileSync(log, 'utf8'), 'first\nsecond\nthird\nfourth\n');
});

test('a byte changed between the machines makes the two digests differ, with the same count', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t, 'np-parts-');
  let flipped = false;
  const fault = (): Transform =>
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        if (!flipped && chunk.length > 0) {
          flipped = true;
          const changed = Buffer.from(chunk);
          changed[0] = (changed[0] as number) ^ 0x01;
          callback(null, changed);
          return;
        }
        callback(null, chunk);
      },
    });
  const results = await outcomes(await prepareMachines('@a echo payload |\n@b cat >copy\n', spool, fault));
  const [sent] = results.get('a')?.edges ?? [];
  const [received] = results.get('b')?.edges ?? [];
  assert.ok(sent !== undefined && received !== undefined);
  assert.equal(sent.bytes, received.bytes);
  assert.notEqual(sent.sha256, received.sha256);
  assert.equal(readFileSync(join(spool, 'copy'), 'utf8'), 'qayload\n');
});

test("an abort ends a run waiting for another machine's command at once, and nothing is left open", { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t, 'np-parts-');
  const before = openFdCount();
  const plan = planRecipe('@a sleep 30\n@b echo never\n', spool);
  const run = await prepareRecipe(plan, { env: recipeEnv(), killGraceMs: 2000, ownStages: new Set([1]) });
  run.start({ stdin: Readable.from([]), stdout: collector().stream, stderr: collector().stream });
  const started = Date.now();
  const outcome = await run.abort('machine a was lost');
  assert.ok(Date.now() - started < 5000);
  assert.deepEqual(outcome.stages, []);
  assert.equal(outcome.abortedBecause, 'machine a was lost');
  assert.ok((await settledFdCount(before)) <= before);
});

test('an edge whose input never comes is closed at the start: its reader sees EOF and the recipe ends', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t, 'np-parts-');
  const before = openFdCount();
  const plan = planRecipe('@a echo lost |\n@b wc -c\n', spool);
  const run = await prepareRecipe(plan, { env: recipeEnv(), killGraceMs: 2000, ownStages: new Set([1]) });
  const out = collector();
  run.start({ stdin: Readable.from([]), stdout: out.stream, stderr: collector().stream });
  const outcome = await boundedOutcome(run);
  assert.deepEqual(outcome.status, { code: 0 });
  assert.equal(out.text().trim(), '0');
  assert.ok((await settledFdCount(before)) <= before);
});

test('a writer whose edge output is absent gets EPIPE, as with a reader that left', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t, 'np-parts-');
  const plan = planRecipe('@a yes |\n@b true\n', spool);
  const run = await prepareRecipe(plan, { env: recipeEnv(), killGraceMs: 2000, ownStages: new Set([0]) });
  run.start({ stdin: Readable.from([]), stdout: collector().stream, stderr: collector().stream });
  const outcome = await boundedOutcome(run);
  assert.deepEqual(outcome.status, { signal: 'SIGPIPE' });
});
