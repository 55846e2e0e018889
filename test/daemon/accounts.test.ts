// Tests for daemon/accounts.ts against the real user database and kernel: which account a session gets, looking
// accounts up, RunAs really switching (files made with the account's ids, the daemon's own ids back afterwards,
// commands run through setpriv with the account's uid and groups), and the per-account spool directory refusing
// anything it did not make itself. Cases that need to switch ids are skipped unless the tests run as root.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, realpathSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { chooseAccountName, daemonAccount, lookupAccount, RunAs, SETPRIV, userSpoolDir, type Account } from '../../daemon/accounts.js';
import { ErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { tempDir, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 30_000;
const IS_ROOT = process.geteuid?.() === 0;
const NEEDS_ROOT = IS_ROOT ? false : 'needs root: only root can switch to another account or give it files';

function refused(code: string, words: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as NetplumbError).code, code, String(error));
    assert.match((error as Error).message, words);
    return true;
  };
}

/** The ids this process runs with, to compare before and after a switch. */
function processIds(): { uid: number; euid: number; gid: number; egid: number; groups: number[] } {
  return {
    uid: process.getuid?.() ?? -1,
    euid: process.geteuid?.() ?? -1,
    gid: process.getgid?.() ?? -1,
    egid: process.getegid?.() ?? -1,
    groups: [...(process.getgroups?.() ?? [])].sort((a, b) => a - b),
  };
}

/** A directory root owns that others may pass but not write, with `name` inside owned by `owner`. */
function dirOwnedBy(scope: Scope, owner: Account, name: string): { root: string; owned: string } {
  const root = realpathSync(tempDir(scope, 'netplumb-accounts-'));
  chmodSync(root, 0o711);
  const owned = join(root, name);
  mkdirSync(owned, { mode: 0o700 });
  chownSync(owned, owner.uid, owner.gid);
  return { root, owned };
}

describe('chooseAccountName', () => {
  test('an asked account among the allowed ones is given', () => {
    assert.equal(chooseAccountName('deploy', ['root', 'deploy'], 'svc'), 'deploy');
    assert.equal(chooseAccountName('root', ['root', 'deploy'], 'svc'), 'root');
  });

  test('an asked account not among the allowed ones is refused with NP_NOT_PERMITTED naming both', () => {
    assert.throws(() => chooseAccountName('root', ['deploy', 'builder'], 'svc'), refused(ErrorCode.NotPermitted, /may not run commands as root.*deploy, builder/));
    // Not even the configured account: a user= list replaces it.
    assert.throws(() => chooseAccountName('svc', ['deploy'], 'svc'), refused(ErrorCode.NotPermitted, /svc/));
    // An empty list allows nothing.
    assert.throws(() => chooseAccountName('deploy', [], 'svc'), refused(ErrorCode.NotPermitted, /deploy/));
  });

  test('names are compared exactly: no case folding, no prefixes', () => {
    for (const asked of ['Deploy', 'deplo', 'deploy ', 'deploy,root']) {
      assert.throws(() => chooseAccountName(asked, ['deploy'], 'svc'), refused(ErrorCode.NotPermitted, /may not run commands/), JSON.stringify(asked));
    }
  });

  test('without a user= list, asking for the configured account is allowed and any other is refused', () => {
    assert.equal(chooseAccountName('svc', undefined, 'svc'), 'svc');
    assert.throws(() => chooseAccountName('root', undefined, 'svc'), refused(ErrorCode.NotPermitted, /root \(no user= on its line\)/));
  });

  test('without asking: the first allowed account, else the configured one', () => {
    assert.equal(chooseAccountName(undefined, ['deploy', 'root'], 'svc'), 'deploy');
    assert.equal(chooseAccountName(undefined, undefined, 'svc'), 'svc');
  });
});

describe('lookupAccount', () => {
  test('root is uid 0, gid 0, with its home, shell and group 0', { timeout: TIMEOUT_MS }, async () => {
    const root = await lookupAccount('root');
    assert.equal(root.name, 'root');
    assert.equal(root.uid, 0);
    assert.equal(root.gid, 0);
    assert.equal(root.home, '/root');
    assert.ok(root.shell.startsWith('/'), root.shell);
    assert.ok(root.groups.includes(0), String(root.groups));
  });

  test('nobody has the ids and groups the system database gives it', { timeout: TIMEOUT_MS }, async () => {
    const [, , uid, gid, , home, shell] = spawnSync('getent', ['passwd', 'nobody'], { encoding: 'utf8' }).stdout.trim().split(':');
    const nobody = await lookupAccount('nobody');
    assert.deepEqual(
      { uid: nobody.uid, gid: nobody.gid, home: nobody.home, shell: nobody.shell },
      { uid: Number(uid), gid: Number(gid), home, shell },
    );
    const groups = spawnSync('id', ['-G', 'nobody'], { encoding: 'utf8' }).stdout.trim().split(/\s+/).map(Number);
    assert.deepEqual(nobody.groups, groups);
    assert.ok(!nobody.groups.includes(0), 'nobody is not in root\'s group');
  });

  test('a name that does not exist is refused with NP_NOT_PERMITTED, naming it', { timeout: TIMEOUT_MS }, async () => {
    await assert.rejects(lookupAccount('np-no-such-user-7f3a'), refused(ErrorCode.NotPermitted, /np-no-such-user-7f3a/));
  });

  test('a numeric id, an empty name and option-like names are refused, never taken as some account', { timeout: TIMEOUT_MS }, async () => {
    // getent answers `passwd 0` with root's entry; the name in the entry must be the one asked for.
    for (const name of ['0', '65534', '', '--help', '-s', 'root:x']) {
      await assert.rejects(lookupAccount(name), refused(ErrorCode.NotPermitted, /user/), JSON.stringify(name));
    }
  });

  test('daemonAccount is the account this process runs as', { timeout: TIMEOUT_MS }, async () => {
    const own = await daemonAccount();
    assert.equal(own.uid, process.geteuid?.());
  });
});

describe('RunAs', () => {
  test('the daemon\'s own account is not switching: commands and opens are left as they are', { timeout: TIMEOUT_MS }, async () => {
    const runAs = new RunAs(await daemonAccount());
    assert.equal(runAs.switches, false);
    assert.deepEqual(runAs.command('id', ['-u']), ['id', ['-u']]);
    const before = processIds();
    assert.equal(runAs.asUser(() => process.geteuid?.()), before.euid);
  });

  test('RunAs for root is not switching when the daemon is root', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async () => {
    const runAs = new RunAs(await lookupAccount('root'));
    assert.equal(runAs.switches, false);
    assert.deepEqual(runAs.command('/bin/true', []), ['/bin/true', []]);
  });

  test('another account is switching; environment() gives its HOME, USER, LOGNAME and SHELL', { timeout: TIMEOUT_MS }, async () => {
    const nobody = await lookupAccount('nobody');
    const runAs = new RunAs(nobody);
    assert.equal(runAs.switches, process.geteuid?.() !== nobody.uid);
    assert.deepEqual(runAs.environment(), { HOME: nobody.home, USER: 'nobody', LOGNAME: 'nobody', SHELL: nobody.shell });
  });

  test('asUser(open) creates a file owned by nobody, and the process ids are the originals afterwards', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async (t) => {
    const nobody = await lookupAccount('nobody');
    const { owned } = dirOwnedBy(t, nobody, 'nobody-dir');
    const file = join(owned, 'made-as-nobody');
    const before = processIds();
    let inside: ReturnType<typeof processIds> | undefined;
    new RunAs(nobody).asUser(() => {
      inside = processIds();
      closeSync(openSync(file, 'wx'));
    });
    const stat = statSync(file);
    assert.equal(stat.uid, nobody.uid);
    assert.equal(stat.gid, nobody.gid);
    assert.deepEqual(inside, { ...before, euid: nobody.uid, egid: nobody.gid, groups: [...nobody.groups].sort((a, b) => a - b) });
    assert.deepEqual(processIds(), before);
  });

  test('asUser has the account\'s rights only: a directory root may write is refused (EACCES)', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async (t) => {
    const nobody = await lookupAccount('nobody');
    const { root } = dirOwnedBy(t, nobody, 'nobody-dir');
    const before = processIds();
    assert.throws(() => new RunAs(nobody).asUser(() => openSync(join(root, 'not-nobodys'), 'wx')), { code: 'EACCES' });
    assert.ok(!existsSync(join(root, 'not-nobodys')));
    assert.deepEqual(processIds(), before, 'ids restored after the kernel refused');
    closeSync(openSync(join(root, 'roots-own'), 'wx')); // root can again
  });

  test('asUser restores the ids when the callback throws', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async () => {
    const nobody = await lookupAccount('nobody');
    const before = processIds();
    const failure = new Error('callback failed');
    assert.throws(
      () =>
        new RunAs(nobody).asUser(() => {
          assert.equal(process.geteuid?.(), nobody.uid);
          throw failure;
        }),
      (error) => error === failure,
    );
    assert.deepEqual(processIds(), before);
  });

  test('asUser keeps a root daemon\'s other supplementary groups intact across a switch', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async () => {
    const nobody = await lookupAccount('nobody');
    const original = process.getgroups?.() ?? [];
    const extra = [...new Set([...original, 4242, 4343])];
    process.setgroups?.(extra);
    try {
      new RunAs(nobody).asUser(() => assert.deepEqual(process.getgroups?.(), nobody.groups));
      assert.deepEqual([...(process.getgroups?.() ?? [])].sort((a, b) => a - b), [...extra].sort((a, b) => a - b));
    } finally {
      process.setgroups?.(original);
    }
  });

  test('command() wraps in setpriv, and the wrapped command really runs with the account\'s uid, gid and groups', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async () => {
    const nobody = await lookupAccount('nobody');
    const runAs = new RunAs(nobody);
    const [program, args] = runAs.command('id', ['-u']);
    assert.equal(program, SETPRIV);
    assert.equal(SETPRIV, '/usr/bin/setpriv');
    assert.deepEqual(args.slice(-3), ['--', 'id', '-u']);
    const run = (option: string): string => {
      const [file, argv] = runAs.command('id', [option]);
      const result = spawnSync(file, argv, { encoding: 'utf8', timeout: 10_000 });
      assert.equal(result.status, 0, result.stderr);
      return result.stdout.trim();
    };
    assert.equal(run('-u'), String(nobody.uid));
    assert.equal(run('-ru'), String(nobody.uid), 'the real uid too, so the command cannot switch back');
    assert.equal(run('-g'), String(nobody.gid));
    assert.equal(run('-rg'), String(nobody.gid));
    assert.deepEqual(run('-G').split(/\s+/).map(Number).sort((a, b) => a - b), [...nobody.groups].sort((a, b) => a - b));
  });

  test('command() passes arguments through untouched, options and spaces included', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async () => {
    const runAs = new RunAs(await lookupAccount('nobody'));
    const words = ['--reuid=0', 'two words', '', '-c', '$HOME'];
    const [file, argv] = runAs.command('/usr/bin/printf', ['%s|', ...words]);
    const result = spawnSync(file, argv, { encoding: 'utf8', timeout: 10_000 });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, words.map((word) => `${word}|`).join(''));
  });
});

describe('userSpoolDir', () => {
  test('makes users/NAME owned by the account, mode 0700, under a root-owned users/ and returns it again later', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async (t) => {
    const nobody = await lookupAccount('nobody');
    const spool = realpathSync(tempDir(t, 'netplumb-spool-'));
    chmodSync(spool, 0o711);
    const dir = userSpoolDir(spool, nobody);
    assert.equal(dir, join(spool, 'users', 'nobody'));
    const stat = lstatSync(dir);
    assert.ok(stat.isDirectory());
    assert.equal(stat.uid, nobody.uid);
    assert.equal(stat.gid, nobody.gid);
    assert.equal(stat.mode & 0o777, 0o700);
    const users = lstatSync(join(spool, 'users'));
    assert.equal(users.uid, 0);
    assert.equal(users.mode & 0o022, 0, 'nobody else may write in users/');
    writeFileSync(join(dir, 'kept'), 'x');
    assert.equal(userSpoolDir(spool, nobody), dir);
    assert.ok(existsSync(join(dir, 'kept')), 'an existing spool is used as it is');
  });

  test('refuses when users/NAME is a symlink, even to a directory the account owns', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async (t) => {
    const nobody = await lookupAccount('nobody');
    const spool = realpathSync(tempDir(t, 'netplumb-spool-'));
    chmodSync(spool, 0o711);
    const elsewhere = join(spool, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o700 });
    chownSync(elsewhere, nobody.uid, nobody.gid);
    mkdirSync(join(spool, 'users'), { mode: 0o711 });
    symlinkSync(elsewhere, join(spool, 'users', 'nobody'));
    assert.throws(() => userSpoolDir(spool, nobody), refused(ErrorCode.SpawnFailed, /users\/nobody.*nobody's own/));
  });

  test('refuses when users/NAME belongs to someone else or is not a directory', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async (t) => {
    const nobody = await lookupAccount('nobody');
    const spool = realpathSync(tempDir(t, 'netplumb-spool-'));
    chmodSync(spool, 0o711);
    mkdirSync(join(spool, 'users', 'nobody'), { recursive: true, mode: 0o700 });
    assert.throws(() => userSpoolDir(spool, nobody), refused(ErrorCode.SpawnFailed, /nobody's own/));
    assert.equal(lstatSync(join(spool, 'users', 'nobody')).uid, 0, 'not handed over either');

    const other = realpathSync(tempDir(t, 'netplumb-spool-'));
    chmodSync(other, 0o711);
    mkdirSync(join(other, 'users'), { mode: 0o711 });
    writeFileSync(join(other, 'users', 'nobody'), '');
    chownSync(join(other, 'users', 'nobody'), nobody.uid, nobody.gid);
    assert.throws(() => userSpoolDir(other, nobody), refused(ErrorCode.SpawnFailed, /nobody's own/));
  });

  test('refuses when users/ is not the daemon\'s own or others may write to it: an account spool could be swapped there', { skip: NEEDS_ROOT, timeout: TIMEOUT_MS }, async (t) => {
    const nobody = await lookupAccount('nobody');
    const spool = realpathSync(tempDir(t, 'netplumb-spool-'));
    chmodSync(spool, 0o711);
    const users = join(spool, 'users');
    mkdirSync(users, { mode: 0o711 });
    chmodSync(users, 0o777);
    assert.throws(() => userSpoolDir(spool, nobody), refused(ErrorCode.SpawnFailed, /group and others cannot write/));
    chmodSync(users, 0o711);
    chownSync(users, nobody.uid, nobody.gid);
    assert.throws(() => userSpoolDir(spool, nobody), refused(ErrorCode.SpawnFailed, /daemon's own/));
    assert.ok(!existsSync(join(users, 'nobody')), 'no account spool was made');
  });

  test('refuses when the spool root does not let others pass (no o+x), and makes no account spool', { timeout: TIMEOUT_MS }, async (t) => {
    const account = IS_ROOT ? await lookupAccount('nobody') : await daemonAccount();
    const spool = realpathSync(tempDir(t, 'netplumb-spool-'));
    for (const mode of [0o700, 0o750, 0o776]) {
      chmodSync(spool, mode);
      assert.throws(() => userSpoolDir(spool, account), refused(ErrorCode.SpawnFailed, /o\+x/), mode.toString(8));
      assert.ok(!existsSync(join(spool, 'users', account.name)));
    }
  });
});
