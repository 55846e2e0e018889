// The README's library example, run as written: the first ```js block under "Using it from Node", saved inside the
// package (so that `import ... from 'netplumb'` resolves to it, as in a project that installed it) and run with
// node against a real daemon, with the identity and known_hosts in $NETPLUMB_HOME as its comment says.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { runProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function readmeExample(): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Using it from Node'));
  const block = /```js\n([\s\S]*?)```/.exec(section);
  assert.ok(block?.[1] !== undefined, 'the README has a ```js block under "Using it from Node"');
  return block[1];
}

test("the README's library example runs as written: a machine's directory comes out as a tar stream", { timeout: 60_000 }, async (t) => {
  const np = await startNetplumb(t);
  // The user's setup: the identity in $NETPLUMB_HOME, the daemon's host key pinned there by a first plumb -accept-new.
  const pinned = await np.plumb(['true']);
  assert.equal(pinned.code, 0, pinned.stderr);
  copyFileSync(np.client.privateFile, join(np.home, 'identity'));
  const source = join(tempDir(t, 'netplumb-readme-'), 'data');
  mkdirSync(join(source, 'sub'), { recursive: true });
  writeFileSync(join(source, 'sub', 'notes.txt'), 'kept\n');

  const scratch = mkdtempSync(join(REPO_ROOT, 'build', 'readme-example-'));
  t.after(() => rmSync(scratch, { recursive: true, force: true }));
  const script = join(scratch, 'tar-from.mjs');
  writeFileSync(script, readmeExample());
  const result = await runProcess(t, [process.execPath, script, np.daemon.address, source], { env: np.plumbEnv() });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
  const archive = join(scratch, 'dir.tar');
  writeFileSync(archive, result.stdout);
  assert.match(execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }), /^\.\/sub\/notes\.txt$/m);
  assert.equal(execFileSync('tar', ['-xOf', archive, './sub/notes.txt'], { encoding: 'utf8' }), 'kept\n');
});
