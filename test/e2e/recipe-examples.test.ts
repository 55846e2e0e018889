// End to end: every recipe in recipes/examples runs through a real daemon (a fresh spool directory each) with
// status 0 and does what its header comment promises: its output, and the files it leaves in the spool directory.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkRecipe } from '../../recipes/check.js';
import { runProcess, type ProcessResult } from '../helpers/processes.js';
import { type Scope } from '../helpers/scope.js';
import { fifosIn, startRecipeNetplumb } from '../helpers/recipes.js';

const TIMEOUT_MS = 120_000;
/** recipes/examples in the source tree; this file runs as build/test/e2e/recipe-examples.test.js. */
const EXAMPLES_DIR = fileURLToPath(new URL('../../../recipes/examples/', import.meta.url));
/** What an example that reads <%stdin is given. */
const EXAMPLE_STDIN = 'some input\nfor the example\n';

interface Run {
  result: ProcessResult;
  spool: string;
  scope: Scope;
  /** UTC dates (YYYY-MM-DD) at the start and the end of the run. */
  dates: [string, string];
}

/** What an example promises, checked after it ran with status 0. */
type Promise_ = (run: Run) => void | Promise<void>;

function stdoutIs(expected: string): Promise_ {
  return ({ result }) => {
    assert.equal(result.stdout.toString(), expected);
    assert.equal(result.stderr, '');
  };
}

function spoolFile(run: Run, name: string): string {
  return readFileSync(join(run.spool, name), 'utf8');
}

const PROMISES: Record<string, Promise_> = {
  'append.rcp': (run) => {
    stdoutIs('start\none\ntwo\n')(run);
    assert.equal(spoolFile(run, 'append.txt'), 'start\none\ntwo\n');
  },
  'backup.rcp': async (run) => {
    assert.equal(run.result.stdout.length, 0);
    assert.equal(run.result.stderr, '');
    for (const name of ['common-licenses.tar.gz', 'common-licenses.tar.gz.sha256', 'backup.log']) {
      assert.ok(existsSync(join(run.spool, name)), `${name} is in the spool directory`);
    }
    assert.ok(statSync(join(run.spool, 'common-licenses.tar.gz')).size > 1000);
    assert.match(spoolFile(run, 'common-licenses.tar.gz.sha256'), /^[0-9a-f]{64} {2}common-licenses\.tar\.gz\n$/);
    const verify = await runProcess(run.scope, ['sh', '-c', 'cd "$0" && sha256sum -c common-licenses.tar.gz.sha256', run.spool]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.equal(verify.stdout.toString(), 'common-licenses.tar.gz: OK\n');
    const listing = await runProcess(run.scope, ['tar', '-tzf', join(run.spool, 'common-licenses.tar.gz')]);
    assert.equal(listing.code, 0, listing.stderr);
    const archived = listing.stdout.toString().split('\n').filter((line) => line !== '' && !line.endsWith('/'));
    const expected = readdirSync('/usr/share/common-licenses').map((name) => `common-licenses/${name}`);
    assert.deepEqual(archived.sort(), expected.sort());
    assert.equal(spoolFile(run, 'backup.log'), '', 'no stage complained');
  },
  'fifo.rcp': (run) => {
    stdoutIs('1+2+3+4+5\n')(run);
  },
  'file-out.rcp': (run) => {
    const out = run.result.stdout.toString();
    assert.ok(run.dates.map((date) => `${date}\n`).includes(out), out);
    assert.equal(spoolFile(run, 'file-out.txt'), out);
  },
  'label-stderr.rcp': ({ result }) => {
    const lines = result.stdout.toString().split('\n');
    assert.equal(lines.pop(), '');
    assert.deepEqual([...lines].sort(), ['first to stdout', 'second to stdout', 'stderr: first to stderr', 'stderr: second to stderr']);
    assert.ok(lines.indexOf('first to stdout') < lines.indexOf('second to stdout'));
    assert.ok(lines.indexOf('stderr: first to stderr') < lines.indexOf('stderr: second to stderr'));
    assert.equal(result.stderr, '');
  },
  'label-stdout.rcp': stdoutIs('HELLO\nWORLD\n'),
  'pipe.rcp': stdoutIs('apple\nfig\n'),
  'plumb-stdin.rcp': stdoutIs(EXAMPLE_STDIN.toUpperCase()),
  'quoting.rcp': stdoutIs('single $HOME *\ndouble "quoted" $HOME ~\nback slashed spaces\n*.txt\n'),
  'stderr-to-stdout.rcp': (run) => {
    // cat <both.txt shows both streams; then the second command's stderr reaches plumb's stdout.
    stdoutIs('out\nerr\nerr\n')(run);
    assert.equal(spoolFile(run, 'both.txt'), 'out\nerr\n');
    assert.equal(spoolFile(run, 'stdout-only.txt'), 'out\n');
  },
  'stdin-file.rcp': (run) => {
    stdoutIs('1\n2\n3\n')(run);
    assert.equal(spoolFile(run, 'numbers.txt'), '3\n1\n2\n');
  },
  'stdout-to-stderr.rcp': ({ result }) => {
    assert.equal(result.stdout.length, 0);
    assert.equal(result.stderr, 'this line goes to stderr\n');
  },
};

const examples = readdirSync(EXAMPLES_DIR)
  .filter((name) => name.endsWith('.rcp'))
  .sort();

function utcDate(): string {
  return new Date().toISOString().slice(0, 10);
}

test('there are examples, and each has its promise checked here', () => {
  assert.ok(examples.length > 0);
  assert.deepEqual(examples, Object.keys(PROMISES).sort());
});

for (const name of examples) {
  test(`example ${name} runs with status 0 and does what it says`, { timeout: TIMEOUT_MS }, async (t) => {
    const file = join(EXAMPLES_DIR, name);
    const text = readFileSync(file, 'utf8');
    const { np, spool } = await startRecipeNetplumb(t);
    const readsStdin = checkRecipe(text, { sourceName: name, spoolDir: spool }).readsPlumbStdin;
    const before = utcDate();
    const result = await np.plumb([`-recipe=${file}`], readsStdin ? { stdin: EXAMPLE_STDIN } : {});
    const run: Run = { result, spool, scope: t, dates: [before, utcDate()] };
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(fifosIn(spool), [], 'its named pipes are removed');
    const promise = PROMISES[name];
    assert.ok(promise !== undefined, `no promise of ${name} is checked: add it to PROMISES`);
    await promise(run);
  });
}
