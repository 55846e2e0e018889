// The host accounts the run-as and one-time-key tests run commands as. They need root: switching accounts, chowning
// and useradd all do. The accounts are made once, when missing, and left in place (harmless fixtures without a
// home or password); a test run on another machine makes them again.

import { execFileSync } from 'node:child_process';

/** A test account, and a member of FIXTURE_GROUP besides its own group. */
export const RUNAS = 'np-runas';
/** A second test account, in no extra group. */
export const OTHER = 'np-other';
/** The supplementary group of RUNAS. */
export const FIXTURE_GROUP = 'np-extra';

/** false as root; otherwise why tests that need root are skipped. */
export const NEEDS_ROOT: string | false = process.getuid?.() === 0 ? false : 'needs root: run-as switches accounts and the fixtures are made with useradd';

function succeeds(argv: readonly string[]): boolean {
  try {
    execFileSync(argv[0] as string, argv.slice(1), { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Creates something only when missing; another test file may create it at the same moment, which is as good. */
function ensure(what: string, exists: () => boolean, create: readonly string[]): void {
  if (exists()) return;
  try {
    execFileSync(create[0] as string, create.slice(1), { stdio: 'pipe' });
  } catch (error) {
    if (!exists()) throw new Error(`cannot create the fixture ${what}: ${String((error as { stderr?: unknown }).stderr ?? error)}`);
  }
}

export function accountExists(name: string): boolean {
  return succeeds(['getent', 'passwd', name]);
}

function memberOf(user: string, group: string): boolean {
  try {
    return execFileSync('id', ['-nG', user], { encoding: 'utf8' }).trim().split(/\s+/).includes(group);
  } catch {
    return false;
  }
}

/** Makes FIXTURE_GROUP, RUNAS (a member of it) and OTHER when they are missing. Root only. */
export function ensureFixtureAccounts(): void {
  ensure(`group ${FIXTURE_GROUP}`, () => succeeds(['getent', 'group', FIXTURE_GROUP]), ['groupadd', FIXTURE_GROUP]);
  ensure(`user ${RUNAS}`, () => accountExists(RUNAS), ['useradd', '-M', '-s', '/bin/sh', '-G', FIXTURE_GROUP, RUNAS]);
  ensure(`membership of ${RUNAS} in ${FIXTURE_GROUP}`, () => memberOf(RUNAS, FIXTURE_GROUP), ['usermod', '-a', '-G', FIXTURE_GROUP, RUNAS]);
  ensure(`user ${OTHER}`, () => accountExists(OTHER), ['useradd', '-M', '-s', '/bin/sh', OTHER]);
}
