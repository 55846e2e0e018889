// End to end: the run-as account the README's two-host setup makes, made by the README's own useradd line and
// used as written: a command runs as it and writes in its home, and `plumb host` on a terminal starts its login
// shell. Debian's `backup` account, the setup's earlier suggestion, is shown refusing that shell. Needs root, as
// the setup does; the account is left in place, as the other fixture accounts are.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { accountExists, NEEDS_ROOT } from '../helpers/accounts.js';
import { startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { startOnTerminal } from '../helpers/endpoints.js';
import { tempDir, type Scope } from '../helpers/scope.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TIMEOUT_MS = 90_000;

/** A daemon that runs commands as `account`, with a spool other accounts can pass through (as /var/lib/netplumbd is). */
async function startRunAs(t: Scope, account: string): Promise<Netplumb> {
  const spool = tempDir(t, 'netplumb-account-spool-');
  chmodSync(spool, 0o711);
  return startNetplumb(t, { daemonArgs: [`-run-as=${account}`, `-spool=${spool}`] });
}

/** The README's useradd line of "Setting up two hosts", as argv, and the account it makes. */
function readmeUseradd(): { argv: string[]; account: string } {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const line = readme.slice(readme.indexOf('## Setting up two hosts')).split('\n').find((text) => text.startsWith('useradd '));
  assert.ok(line !== undefined, 'the two-host setup makes its account with useradd');
  const argv = line.trim().split(/\s+/);
  return { argv, account: argv.at(-1) as string };
}

function passwdEntry(account: string): string[] {
  return execFileSync('getent', ['passwd', account], { encoding: 'utf8' }).trim().split(':');
}

test("the README's run-as account runs commands, writes in its home, and gives plumb host a login shell", { timeout: TIMEOUT_MS, skip: NEEDS_ROOT }, async (t) => {
  const { argv, account } = readmeUseradd();
  if (!accountExists(account)) execFileSync(argv[0] as string, argv.slice(1), { stdio: 'pipe' });
  const [, , , , , home, shell] = passwdEntry(account);
  assert.equal(shell, '/bin/bash');

  const np = await startRunAs(t, account);
  const ran = await np.plumb(['sh', '-c', 'id -un; pwd; touch probe && rm probe && echo wrote']);
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stdout.toString(), `${account}\n${home}\nwrote\n`);

  const term = startOnTerminal(t, np.plumbArgv([]), { cols: 80, rows: 24, env: np.plumbEnv() });
  term.type('echo "shell of $(id -un): $((6 * 7))"; exit\r');
  await term.waitFor(new RegExp(`shell of ${account}: 42`));
  assert.equal((await term.exit()).exitCode, 0);
  assert.doesNotMatch(term.screen(), /currently not available/);
});

test("Debian's backup account, the earlier suggestion, cannot give plumb host a shell", { timeout: TIMEOUT_MS, skip: NEEDS_ROOT || (accountExists('backup') ? false : 'no backup account on this system') }, async (t) => {
  assert.match(passwdEntry('backup')[6] as string, /nologin$/);
  const np = await startRunAs(t, 'backup');
  const term = startOnTerminal(t, np.plumbArgv([]), { cols: 80, rows: 24, env: np.plumbEnv() });
  await term.waitFor(/This account is currently not available/);
  assert.notEqual((await term.exit()).exitCode, 0);
});
