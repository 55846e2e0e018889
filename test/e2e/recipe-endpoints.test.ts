// End to end: replicated named pipes and exported variables work for a recipe as for a single command. The recipe's
// commands run in the spool directory, where the daemon made the relative -infifo and -outfifo, and see -export.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { killGroup } from '../helpers/processes.js';
import { startRecipeNetplumb } from '../helpers/recipes.js';

test('a recipe reads an -infifo, writes an -outfifo and sees an exported variable', { timeout: 60_000 }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t, ['-accept-env=GREETING']);
  const here = join(np.dir, 'here');
  mkdirSync(here);
  for (const name of ['in.fifo', 'out.fifo']) execFileSync('mkfifo', [join(here, name)]);
  const recipe = writeRecipe(
    'endpoints.rcp',
    ['# In through one replicated pipe, out through the other; the variable comes from plumb.', 'cat in.fifo |', 'tr a-z A-Z |', 'tee out.fifo', 'sh -c \'echo "greeting=$GREETING"\'', ''].join('\n'),
  );
  // Local programs on the other ends of the two pipes, each in its own group so cleanup finds them.
  const writer = spawn('sh', ['-c', 'printf "hello through pipes\\n" > in.fifo'], { cwd: here, detached: true, stdio: 'ignore' });
  const reader = spawn('cat', ['out.fifo'], { cwd: here, detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => {
    killGroup(writer.pid as number, 'SIGKILL');
    killGroup(reader.pid as number, 'SIGKILL');
  });
  let fromPipe = '';
  reader.stdout.setEncoding('utf8').on('data', (text: string) => (fromPipe += text));
  const readerDone = new Promise((resolve) => reader.once('close', resolve));
  const result = await np.plumb([], {
    options: [`-recipe=${recipe}`, '-infifo=in.fifo', '-outfifo=out.fifo', '-export=GREETING'],
    cwd: here,
    env: { ...np.plumbEnv(), GREETING: 'hi there' },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'HELLO THROUGH PIPES\ngreeting=hi there\n');
  await readerDone;
  assert.equal(fromPipe, 'HELLO THROUGH PIPES\n');
});
