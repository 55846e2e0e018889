// Property tests for the recipe check: random text, random bytes, recipes built from the language's own tokens and
// mutations of the examples (byte flips, inserted operators, cuts, deleted ranges) either check, giving a plan that
// holds together, or are refused with a RecipeError whose location points into the text. Nothing else is thrown.
// RecipeSource.locate() counts columns as Array.from() does, whatever order places are asked for in.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { ErrorCode, RecipeError } from '../../protocol/errors.js';
import { checkRecipe, type CheckOptions } from '../../recipes/check.js';
import { RecipeSource } from '../../recipes/errors.js';
import type { RecipeLimits } from '../../recipes/limits.js';
import { parseRecipe } from '../../recipes/parse.js';
import type { RecipePlan } from '../../recipes/plan.js';

const here = dirname(fileURLToPath(import.meta.url));
const EXAMPLES = join(here, '../../../recipes/examples');
const SPOOL = '/spool';
const RUNS = 400;
const RECIPE_CODES = new Set<string>([ErrorCode.RecipeSyntax, ErrorCode.RecipeInvalid, ErrorCode.RecipeTooLarge]);

const examples = readdirSync(EXAMPLES)
  .filter((name) => name.endsWith('.rcp'))
  .sort()
  .map((name) => readFileSync(join(EXAMPLES, name)));

/** Pieces of the language and of what it refuses, so that random recipes get past the first character. */
const TOKENS = [
  'echo', 'cat', 'tr', 'a', 'f.txt', 'sub/f', '../up', '/abs', '.', '$HOME', '*', '~', 'é', '😀', ' ', '  ', '\t', '\n',
  '\n', '\r\n', '\\\n', "'", '"', '\\', '#', '|', '&', ';', '<', '>', '>>', '2>', '2>>', '2>&1', '>&2', '3>', '<<',
  '&&', '||', '%', '%log', '%stdin', '%p', '@', '@p', '@q', 'fifo', 'fifo p', 'fifo q', 'log:', 'p:', 'stdin:', ':',
  '2', '\u0000', '\u001b', '\ufeff', '\u0085', '\ud800',
];

const OPERATORS = ['|', '&', '>', '>>', '2>', '2>&1', '>&2', '<', '>%log', '2>%log', '<%stdin', '>@p', '<@p', "'", '"', '\\', '#', '\n', 'fifo p\n', 'log: ', ';'];

/** What a mutation does to the bytes of a recipe. */
type Mutation =
  | { kind: 'flip'; at: number; byte: number }
  | { kind: 'insert'; at: number; text: string }
  | { kind: 'cut'; at: number }
  | { kind: 'delete'; at: number; length: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.constantFrom(...OPERATORS) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }),
);

function mutate(bytes: Buffer, change: Mutation): Buffer {
  const at = bytes.length === 0 ? 0 : change.at % (bytes.length + 1);
  switch (change.kind) {
    case 'flip': {
      if (bytes.length === 0) return bytes;
      const copy = Buffer.from(bytes);
      copy.writeUInt8(change.byte, at % bytes.length);
      return copy;
    }
    case 'insert':
      return Buffer.concat([bytes.subarray(0, at), Buffer.from(change.text), bytes.subarray(at)]);
    case 'cut':
      return bytes.subarray(0, at);
    case 'delete':
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + change.length)]);
  }
}

/** The text as the check sees it, for comparing an error's line with the real one. */
function textOf(input: string | Uint8Array): string {
  return typeof input === 'string' ? input : new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(input);
}

function assertValidRefusal(error: unknown, input: string | Uint8Array): void {
  if (!(error instanceof RecipeError)) throw new Error(`not a RecipeError: ${String(error)}`, { cause: error });
  assert.ok(RECIPE_CODES.has(error.code), error.code);
  assert.ok(error.location, 'a located recipe error');
  const { source, line, column } = error.location;
  assert.equal(source, 'p.rcp');
  const lines = textOf(input).split('\n');
  assert.ok(Number.isInteger(line) && line >= 1 && line <= lines.length, `line ${line} of ${lines.length}`);
  assert.equal(error.lineText, (lines[line - 1] ?? '').replace(/\r$/, ''));
  assert.ok(Number.isInteger(column) && column >= 1 && column <= Array.from(error.lineText).length + 1, `column ${column}`);
  const rendered = error.render().split('\n');
  assert.equal(rendered.length, 3);
  assert.ok(rendered[0]?.startsWith(`p.rcp:${line}:${column}: `));
  assert.ok(rendered[2]?.endsWith('^'));
}

/** What every plan must hold, whatever recipe gave it. */
function assertCoherentPlan(plan: RecipePlan): void {
  assert.ok(plan.stages.length >= 1);
  const plumbReaders = plan.stages.filter((stage) => stage.stdin.kind === 'plumb-stdin');
  assert.ok(plumbReaders.length <= 1);
  assert.equal(plan.readsPlumbStdin, plumbReaders.length === 1);
  plan.stages.forEach((stage, index) => {
    assert.equal(stage.index, index);
    assert.ok(stage.argv.length >= 1 && stage.argv[0] !== '');
    for (const output of [stage.stdout, stage.stderr]) {
      if (output.kind === 'pipe') {
        assert.equal(output.toStage, index + 1);
        assert.deepEqual(plan.stages[index + 1]?.stdin, { kind: 'pipe', fromStage: index });
        assert.equal(stage.background, true);
      }
      if (output.kind === 'file') assert.ok(output.path.startsWith('/'));
      if (output.kind === 'label') assert.ok(plan.labels.some((pipe) => pipe.label === output.label && pipe.writerStages.includes(index)));
      if (output.kind === 'fifo') assert.equal(output.path, `${SPOOL}/${output.name}`);
    }
    if (stage.stdin.kind === 'file') assert.ok(stage.stdin.path.startsWith('/'));
  });
  for (const pipe of plan.labels) {
    assert.deepEqual(plan.stages[pipe.readerStage]?.stdin, { kind: 'label', label: pipe.label });
    assert.ok(pipe.writerStages.length >= 1 && !pipe.writerStages.includes(pipe.readerStage));
  }
  for (const fifo of plan.fifos) {
    assert.ok(plan.stages.some((stage) => stage.stdin.kind === 'fifo' && stage.stdin.name === fifo.name));
    assert.ok(plan.stages.some((stage) => [stage.stdout, stage.stderr].some((output) => output.kind === 'fifo' && output.name === fifo.name)));
  }
}

function checkOrRefuse(input: string | Uint8Array, limits?: Partial<RecipeLimits>): void {
  const options: CheckOptions = { sourceName: 'p.rcp', spoolDir: SPOOL };
  if (limits !== undefined) options.limits = limits;
  let plan: RecipePlan;
  try {
    plan = checkRecipe(input, options);
  } catch (error) {
    assertValidRefusal(error, input);
    return;
  }
  assertCoherentPlan(plan);
  assert.deepEqual(checkRecipe(input, options), plan);
}

describe('recipe check, property tests', () => {
  test('random text is checked or refused with a located RecipeError', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => checkOrRefuse(text)),
      { numRuns: RUNS },
    );
  });

  test('random bytes are checked or refused with a located RecipeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => checkOrRefuse(bytes)),
      { numRuns: RUNS },
    );
  });

  test('recipes made of language tokens are checked or refused with a located RecipeError', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...TOKENS), { maxLength: 80 }), (tokens) => checkOrRefuse(tokens.join(''))),
      { numRuns: RUNS * 3 },
    );
  });

  test('recipes made of language tokens parse or fail with NP_RECIPE_SYNTAX', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...TOKENS), { maxLength: 80 }), (tokens) => {
        try {
          parseRecipe(tokens.join(''), 'p.rcp');
        } catch (error) {
          if (!(error instanceof RecipeError)) throw error;
          assert.equal(error.code, ErrorCode.RecipeSyntax);
        }
      }),
      { numRuns: RUNS },
    );
  });

  test('mutated examples are checked or refused with a located RecipeError', () => {
    fc.assert(
      fc.property(fc.constantFrom(...examples), fc.array(mutation, { minLength: 1, maxLength: 4 }), (example, changes) => {
        checkOrRefuse(changes.reduce(mutate, example));
      }),
      { numRuns: RUNS * 3 },
    );
  });

  test('mutated examples under small limits are checked or refused with a located RecipeError', () => {
    const limits = fc.record(
      {
        maxRecipeBytes: fc.integer({ min: 1, max: 600 }),
        maxRecipeCommands: fc.integer({ min: 1, max: 6 }),
        maxArgsPerCommand: fc.integer({ min: 1, max: 6 }),
        maxArgBytes: fc.integer({ min: 1, max: 30 }),
        maxPathBytes: fc.integer({ min: 1, max: 40 }),
        maxNameBytes: fc.integer({ min: 1, max: 6 }),
        maxFifos: fc.integer({ min: 1, max: 2 }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.constantFrom(...examples), fc.array(mutation, { maxLength: 2 }), limits, (example, changes, chosen) => {
        checkOrRefuse(changes.reduce(mutate, example), chosen);
      }),
      { numRuns: RUNS },
    );
  });

  test('locate() gives the line and the column Array.from counts, whatever order places are asked for in', () => {
    const piece = fc.constantFrom('a', ' ', '\t', '\n', '\r', '\r\n', 'é', '😀', '\ud83d', '\ude00');
    const expected = (text: string, offset: number): [number, number] => {
      const clamped = Math.min(Math.max(offset, 0), text.length);
      const before = text.slice(0, clamped);
      const start = before.lastIndexOf('\n') + 1;
      const end = text[clamped] === '\n' && text[clamped - 1] === '\r' && clamped - 1 >= start ? clamped - 1 : clamped;
      return [before.split('\n').length, Array.from(text.slice(start, end)).length + 1];
    };
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 40 }), fc.array(fc.integer({ min: -2, max: 90 }), { maxLength: 12 }), (pieces, offsets) => {
        const text = pieces.join('');
        const source = new RecipeSource(text, 'p.rcp');
        // In increasing order first (as the check asks), then as drawn.
        for (const offset of [...[...offsets].sort((a, b) => a - b), ...offsets]) {
          const { line, column } = source.locate(offset);
          assert.deepEqual([line, column], expected(text, offset), `offset ${offset} of ${JSON.stringify(text)}`);
        }
      }),
      { numRuns: RUNS * 3 },
    );
  });
});
