// End to end: requests that once could bring down or freeze the whole daemon are refused or reported as the one
// request's failure, and the daemon goes on serving: a program path that makes spawn() throw, a recipe redirecting
// from a named pipe it did not declare (whose blocking open would freeze the daemon), and a relative -outfifo that
// another session's FIFO already occupies.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { reportedCode } from '../helpers/daemon.js';
import { plumbLines, startRecipeNetplumb } from '../helpers/recipes.js';

const TIMEOUT_MS = 60_000;

test('a program path that makes spawn throw (ENOTDIR) fails that command only', { timeout: TIMEOUT_MS }, async (t) => {
  const { np } = await startRecipeNetplumb(t);
  const result = await np.plumb(['/etc/passwd/x']);
  assert.notEqual(result.code, 0);
  assert.ok(reportedCode(result.stderr)?.startsWith('NP_'), result.stderr);
  assert.ok(np.daemon.running, 'the daemon died');
  assert.equal((await np.plumb(['echo', 'served'])).stdout.toString(), 'served\n');
});

test('a recipe stage whose program path makes spawn throw is reported as not started', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('throw.rcp', '/etc/passwd/x\necho after\n');
  const result = await np.plumb([], { options: [`-recipe=${recipe}`] });
  assert.equal(result.stdout.toString(), 'after\n');
  assert.ok(result.code === 126 || result.code === 127, `status ${result.code}: ${result.stderr}`);
  assert.match(plumbLines(result.stderr).join('\n'), /did not start/);
  assert.equal((await np.plumb(['echo', 'served'])).stdout.toString(), 'served\n');
});

test('a redirection from a named pipe the recipe did not declare fails the stage without freezing the daemon', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, writeRecipe } = await startRecipeNetplumb(t);
  // A FIFO nobody writes: a blocking open of it for reading would never return.
  execFileSync('mkfifo', [join(spool, 'stray.fifo')]);
  const recipe = writeRecipe('stray.rcp', 'cat <stray.fifo\n');
  const started = Date.now();
  const [result, other] = await Promise.all([np.plumb([], { options: [`-recipe=${recipe}`] }), np.plumb(['echo', 'meanwhile'])]);
  assert.equal(other.stdout.toString(), 'meanwhile\n');
  assert.equal(result.code, 1, result.stderr);
  assert.match(plumbLines(result.stderr).join('\n'), /not a regular file/);
  assert.ok(Date.now() - started < 30_000);
});

test('a relative -outfifo that already exists in the spool is refused, never shared', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool } = await startRecipeNetplumb(t);
  execFileSync('mkfifo', [join(spool, 'taken.fifo')]);
  const here = join(np.dir, 'here');
  execFileSync('mkdir', ['-p', here]);
  const result = await np.plumb(['true'], { options: ['-outfifo=taken.fifo'], cwd: here });
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), 'NP_ENDPOINT');
  assert.match(result.stderr, /exists already/);
});
