// Tests for a recipe that spans machines: `@MACHINE` at the start of a command, the machines and the streams between
// them (edges) that the check derives, every refusal of a misplaced or malformed machine with its location, and the
// plan listing `plumb -check` prints for such a recipe.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, RecipeError } from '../../protocol/errors.js';
import { checkRecipe } from '../../recipes/check.js';
import { formatPlan, type RecipePlan } from '../../recipes/plan.js';

function check(text: string): RecipePlan {
  return checkRecipe(text, { sourceName: 'm.rcp', spoolDir: '/spool' });
}

function refused(text: string, code: string, line: number, column: number, message: RegExp): void {
  assert.throws(
    () => check(text),
    (error: unknown) => {
      assert.ok(error instanceof RecipeError, String(error));
      assert.equal(error.code, code, error.render());
      assert.deepEqual(error.location, { source: 'm.rcp', line, column }, error.render());
      assert.match(error.message, message);
      return true;
    },
  );
}

const OFFSITE = `@db1    tar -cf - /etc |
@db1    gzip -c 2>%log |
@vault:7021  tee etc.tar.gz |
@vault:7021  sha256sum >etc.tar.gz.sha256
@vault:7021 log: cat >>offsite.log &
`;

describe('placement: machines and the streams between them', () => {
  test('each command keeps its machine as written; unplaced commands have none', () => {
    const plan = check('@db1 echo a |\n@[::1]:7020 cat |\ncat\n');
    assert.deepEqual(
      plan.stages.map((stage) => stage.machine),
      ['db1', '[::1]:7020', undefined],
    );
    assert.deepEqual(plan.machines, ['db1', '[::1]:7020']);
    assert.deepEqual(plan.stages[0]?.location, { source: 'm.rcp', line: 1, column: 1 });
  });

  test('a | and a label crossing machines are edges; streams within a machine are not', () => {
    const plan = check(OFFSITE);
    assert.deepEqual(plan.machines, ['db1', 'vault:7021']);
    assert.deepEqual(plan.edges, [
      { index: 0, fromStage: 1, streams: ['stdout'], toStage: 2, pipe: 'stage:1' },
      { index: 1, fromStage: 1, streams: ['stderr'], toStage: 4, pipe: 'label:log' },
    ]);
  });

  test('fan-in from two machines into one label gives one edge per remote writer', () => {
    const plan = check('@a echo one >%sink &\n@b echo two >%sink &\n@c echo three >%sink &\n@c sink: cat\n');
    assert.deepEqual(
      plan.edges.map((edge) => [edge.fromStage, edge.toStage, edge.pipe]),
      [
        [0, 3, 'label:sink'],
        [1, 3, 'label:sink'],
      ],
    );
    assert.deepEqual(plan.labels, [{ label: 'sink', readerStage: 3, writerStages: [0, 1, 2] }]);
  });

  test('2>&1 into a pipe that crosses machines sends both streams down one edge', () => {
    const plan = check('@a make 2>&1 |\n@b cat\n');
    assert.deepEqual(plan.edges, [{ index: 0, fromStage: 0, streams: ['stdout', 'stderr'], toStage: 1, pipe: 'stage:0' }]);
  });

  test('an unplaced command and a placed one are on different machines', () => {
    const plan = check('echo a |\n@b cat\n');
    assert.deepEqual(plan.edges, [{ index: 0, fromStage: 0, streams: ['stdout'], toStage: 1, pipe: 'stage:0' }]);
  });

  test('a recipe with no machine has no machines and no edges', () => {
    const plan = check('echo a |\ncat\n');
    assert.deepEqual(plan.machines, []);
    assert.deepEqual(plan.edges, []);
  });

  test('named pipes and files stay on their machine: a fifo used on one machine only is accepted', () => {
    const plan = check('fifo f\n@a cat <@f &\n@a echo x >@f\n');
    assert.deepEqual(plan.edges, []);
    assert.equal(plan.fifos.length, 1);
  });

  test('a quoted word starting with @ is still a program', () => {
    const plan = check("'@tool' arg\n");
    assert.deepEqual(plan.stages[0]?.argv, ['@tool', 'arg']);
    assert.equal(plan.stages[0]?.machine, undefined);
  });

  test('@ inside a word and as a fifo target keep their meaning', () => {
    const plan = check('fifo f\n@a cat <@f &\n@a echo user@host >@f\n');
    assert.deepEqual(plan.stages[1]?.argv, ['echo', 'user@host']);
  });

  test('a second machine on one command is refused', () => {
    refused('@a @b echo\n', ErrorCode.RecipeSyntax, 1, 4, /a command has one machine/);
  });
});

describe('placement: refusals', () => {
  test('a fifo written on one machine and read on another', () => {
    refused('fifo f\n@a cat <@f &\n@b echo x >@f\n', ErrorCode.RecipeInvalid, 3, 11, /fifo f is written on @b and read on @a: a named pipe stays on its machine/);
  });

  test('a machine that is not a name, an address or a bracketed IPv6 address', () => {
    refused('@-x echo\n', ErrorCode.RecipeSyntax, 1, 1, /@ at the start of a command names the machine/);
    refused('@ echo\n', ErrorCode.RecipeSyntax, 1, 1, /@ at the start of a command names the machine/);
    refused('@a>b echo\n', ErrorCode.RecipeSyntax, 1, 1, /@NAME, @NAME:PORT or @\[IPv6\]:PORT/);
  });

  test('a port out of range', () => {
    refused('@db1:0 echo\n', ErrorCode.RecipeInvalid, 1, 1, /the port must be a number from 1 to 65535/);
    refused('@db1:65536 echo\n', ErrorCode.RecipeInvalid, 1, 1, /the port must be a number from 1 to 65535/);
  });

  test('a machine with no command', () => {
    refused('@db1\n', ErrorCode.RecipeSyntax, 1, 1, /a machine \(@NAME\) must be followed by its command/);
    refused('@db1 log:\n', ErrorCode.RecipeSyntax, 1, 1, /a label must be followed by its command/);
  });

  test('a machine after the label', () => {
    refused('log: @vault cat\n', ErrorCode.RecipeSyntax, 1, 6, /the machine comes before the label/);
  });

  test('a machine on a fifo declaration', () => {
    refused('@a fifo f\n', ErrorCode.RecipeSyntax, 1, 4, /a fifo declaration has no machine/);
  });

  test('an operator right after the machine', () => {
    refused('@a |\n', ErrorCode.RecipeSyntax, 1, 4, /there is no command before this \|/);
  });

  test('a machine name over the name limit', () => {
    assert.throws(
      () => checkRecipe(`@${'a'.repeat(40)} echo\n`, { sourceName: 'm.rcp', spoolDir: '/spool', limits: { maxNameBytes: 32 } }),
      (error: unknown) => error instanceof RecipeError && error.code === ErrorCode.RecipeTooLarge,
    );
  });
});

describe('placement: the plan listing', () => {
  test('lists the commands of each machine and every edge, and each command with its machine', () => {
    const text = formatPlan(check(OFFSITE));
    assert.match(text, /^recipe m\.rcp: 5 commands on 2 machines$/m);
    assert.match(text, /^machines:\n {2}@db1: \[0\] line 1, \[1\] line 2\n {2}@vault:7021: \[2\] line 3, \[3\] line 4, \[4\] log$/m);
    assert.match(text, /^ {2}edge 0: @db1 \[1\] line 2 stdout -> \| -> @vault:7021 \[2\] line 3$/m);
    assert.match(text, /^ {2}edge 1: @db1 \[1\] line 2 stderr -> %log -> @vault:7021 \[4\] log$/m);
    assert.match(text, /^ {2}\/spool\/offsite\.log on @vault:7021$/m);
    assert.match(text, /^ {2}\[3\] line 4 on @vault:7021 \(4:1, next waits for it to end\): sha256sum$/m);
  });

  test("names plumb's machine for the commands that have none", () => {
    const text = formatPlan(check('echo a |\n@b cat\n'));
    assert.match(text, /^ {2}plumb's machine: \[0\] line 1$/m);
    assert.match(text, /^ {2}edge 0: plumb's machine \[0\] line 1 stdout -> \| -> @b \[1\] line 2$/m);
  });

  test('a recipe on one machine lists neither machines nor edges', () => {
    const text = formatPlan(check('echo a |\ncat\n'));
    assert.doesNotMatch(text, /machines|edge/);
  });
});
