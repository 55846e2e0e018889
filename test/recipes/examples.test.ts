// The recipes in recipes/examples: each opens with a comment saying what it shows, each passes the check, there is
// one for every redirection form, and backup.rcp has the plan its comments describe.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkRecipe } from '../../recipes/check.js';
import type { RecipePlan } from '../../recipes/plan.js';

const here = dirname(fileURLToPath(import.meta.url));
const EXAMPLES = join(here, '../../../recipes/examples');
const SPOOL = '/srv/spool';

const files = readdirSync(EXAMPLES)
  .filter((name) => name.endsWith('.rcp'))
  .sort();

function plan(name: string): RecipePlan {
  return checkRecipe(readFileSync(join(EXAMPLES, name)), { sourceName: name, spoolDir: SPOOL });
}

describe('recipes/examples', () => {
  test('holds an example for each redirection form', () => {
    const expected = [
      'append.rcp',
      'backup.rcp',
      'fifo.rcp',
      'file-out.rcp',
      'label-stderr.rcp',
      'label-stdout.rcp',
      'pipe.rcp',
      'plumb-stdin.rcp',
      'quoting.rcp',
      'stderr-to-stdout.rcp',
      'stdin-file.rcp',
      'stdout-to-stderr.rcp',
    ];
    assert.deepEqual(
      expected.filter((name) => !files.includes(name)),
      [],
    );
  });

  for (const name of files) {
    test(`${name} opens with a comment and passes the check`, () => {
      assert.match(readFileSync(join(EXAMPLES, name), 'utf8'), /^# \S/);
      assert.ok(plan(name).stages.length > 0);
    });
  }

  test('backup.rcp archives a directory every Debian system has, into the spool directory', () => {
    const backup = plan('backup.rcp');
    const tar = backup.stages.find((stage) => stage.argv[0] === 'tar');
    assert.ok(tar !== undefined);
    const at = tar.argv.indexOf('-C');
    const directory = join(tar.argv[at + 1] ?? '', tar.argv[at + 2] ?? '');
    assert.ok(existsSync(directory), `${directory} does not exist here`);
    const written = backup.stages.flatMap((stage) => (stage.stdout.kind === 'file' ? [stage.stdout.path] : []));
    assert.deepEqual(written.sort(), [`${SPOOL}/backup.log`, `${SPOOL}/common-licenses.tar.gz`, `${SPOOL}/common-licenses.tar.gz.sha256`]);
  });

  test("backup.rcp gathers every other stage's stderr through the log label", () => {
    const backup = plan('backup.rcp');
    const log = backup.stages.find((stage) => stage.label === 'log');
    assert.ok(log !== undefined);
    const others = backup.stages.filter((stage) => stage !== log);
    assert.deepEqual(
      others.map((stage) => stage.stderr),
      others.map(() => ({ kind: 'label', label: 'log' })),
    );
    assert.deepEqual(backup.labels, [{ label: 'log', readerStage: log.index, writerStages: others.map((stage) => stage.index) }]);
    assert.deepEqual(
      backup.stages.map((stage) => stage.argv[0]),
      ['cat', 'tar', 'gzip', 'sha256sum', 'sed'],
    );
  });
});
