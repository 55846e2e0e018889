// Tests for daemon/accounts.ts and daemon/account-files.ts against fixture account files and the real user database
// and kernel: which account a session gets, parsing passwd and group text as the files' own parser does, the parse
// kept until a file changes, looking accounts up in the files (the same answer as getent and id) or, for a name the
// files do not give, in the user database, RunAs really switching (files made with the account's ids, the daemon's own ids back afterwards,
// commands run through setpriv with the account's uid and groups), and the per-account spool directory refusing
// anything it did not make itself. Cases that need to switch ids are skipped unless the tests run as root.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, realpathSync, renameSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AccountFiles, ParsedFile, parseGroup, parsePasswd, supplementaryGroups } from '../../daemon/account-files.js';
import { accountKnown, chooseAccountName, daemonAccount, lookupAccount, RunAs, SETPRIV, userSpoolDir, type Account } from '../../daemon/accounts.js';
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

/** A passwd file and a group file with this text in a fresh temp dir. */
function accountFiles(scope: Scope, passwd: string, group: string): { passwd: string; group: string; files: AccountFiles } {
  const dir = tempDir(scope, 'netplumb-accounts-');
  const paths = { passwd: join(dir, 'passwd'), group: join(dir, 'group') };
  writeFileSync(paths.passwd, passwd);
  writeFileSync(paths.group, group);
  return { ...paths, files: new AccountFiles(paths.passwd, paths.group) };
}

const FIXTURE_PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'alice:x:1000:1000:Alice,,,:/home/alice:/bin/zsh',
  'bob:x:1001:1001::/home/bob:',
  'alice2:x:1002:1000::/home/alice2:/bin/sh',
  '',
].join('\n');

const FIXTURE_GROUP = [
  'root:x:0:',
  'alice:x:1000:',
  'bob:x:1001:',
  'wheel:x:10:bob,alice',
  'audio:x:29:alice2',
  'staff:x:50:alice',
  'again:x:1000:alice',
  '',
].join('\n');

describe('account files', () => {
  test('passwd lines give name, uid, gid, home and shell (empty when none is named)', () => {
    const entries = parsePasswd(FIXTURE_PASSWD);
    assert.deepEqual([...entries.keys()], ['root', 'alice', 'bob', 'alice2']);
    assert.deepEqual(entries.get('alice'), { name: 'alice', uid: 1000, gid: 1000, home: '/home/alice', shell: '/bin/zsh' });
    assert.deepEqual(entries.get('bob'), { name: 'bob', uid: 1001, gid: 1001, home: '/home/bob', shell: '' });
  });

  test('malformed passwd lines are skipped, the lines around them kept; the first line of a name wins', () => {
    const text = [
      '# a comment:x:1:1::/:/bin/sh',
      'short:x:5:5',
      'toolong:x:6:6:::/bin/sh:extra',
      'letters:x:1a:7::/:/bin/sh',
      'negative:x:-1:7::/:/bin/sh',
      'huge:x:4294967295:7::/:/bin/sh',
      'nogid:x:8:::/:/bin/sh',
      ':x:9:9::/:/bin/sh',
      '+nis::::::',
      '-blocked::::::',
      '   indented:x:11:11::/home/indented:/bin/sh',
      'carol:x:12:12::/home/carol:/bin/sh',
      'carol:x:13:13::/elsewhere:/bin/sh',
      'no newline at the end',
    ].join('\n');
    const entries = parsePasswd(text);
    assert.deepEqual([...entries.keys()], ['indented', 'carol']);
    assert.equal(entries.get('carol')?.uid, 12);
  });

  test('group lines give their members; malformed ones are skipped', () => {
    const groups = parseGroup(`${FIXTURE_GROUP}# comment:x:3:alice\nbad:x:x:alice\nfew:x:4\nmany:x:5:alice:more\nempty:x:6:,,alice,\n`);
    assert.deepEqual(
      groups.map(({ name, gid, members }) => [name, gid, members]),
      [
        ['root', 0, []],
        ['alice', 1000, []],
        ['bob', 1001, []],
        ['wheel', 10, ['bob', 'alice']],
        ['audio', 29, ['alice2']],
        ['staff', 50, ['alice']],
        ['again', 1000, ['alice']],
        ['empty', 6, ['alice']],
      ],
    );
  });

  test('supplementary groups: the primary first, then each group naming the account, in file order, each once', () => {
    const groups = parseGroup(FIXTURE_GROUP);
    assert.deepEqual(supplementaryGroups('alice', 1000, groups), [1000, 10, 50]);
    assert.deepEqual(supplementaryGroups('bob', 1001, groups), [1001, 10]);
    // Names are compared whole: alice is no member of alice2's groups, nor alice2 of alice's.
    assert.deepEqual(supplementaryGroups('alice2', 1000, groups), [1000, 29]);
    assert.deepEqual(supplementaryGroups('root', 0, groups), [0]);
    // A primary group no group line names is still the first.
    assert.deepEqual(supplementaryGroups('alice', 4242, groups), [4242, 10, 50, 1000]);
  });

  test('AccountFiles finds an account with its groups; a name not in the passwd file is not found', (t) => {
    const { files } = accountFiles(t, FIXTURE_PASSWD, FIXTURE_GROUP);
    assert.deepEqual(files.find('alice'), { name: 'alice', uid: 1000, gid: 1000, home: '/home/alice', shell: '/bin/zsh', groups: [1000, 10, 50] });
    assert.equal(files.find('wheel'), undefined, 'a group is no account');
    assert.equal(files.find('nobody-here'), undefined);
    assert.equal(files.has('bob'), true);
    assert.equal(files.has('nobody-here'), false);
  });

  test('missing files give no account, and are read once they exist', (t) => {
    const dir = tempDir(t, 'netplumb-accounts-');
    const files = new AccountFiles(join(dir, 'passwd'), join(dir, 'group'));
    assert.equal(files.find('alice'), undefined);
    writeFileSync(join(dir, 'passwd'), FIXTURE_PASSWD);
    assert.deepEqual(files.find('alice')?.groups, [1000], 'no group file: the primary group only');
    writeFileSync(join(dir, 'group'), FIXTURE_GROUP);
    assert.deepEqual(files.find('alice')?.groups, [1000, 10, 50]);
  });

  test('a file is parsed again only when it changed: in place, with the same size, or replaced by another file', (t) => {
    const dir = tempDir(t, 'netplumb-accounts-');
    const path = join(dir, 'passwd');
    writeFileSync(path, 'dave:x:2000:2000::/home/dave:/bin/sh\n');
    let parses = 0;
    const file = new ParsedFile(path, (text) => {
      parses++;
      return parsePasswd(text);
    });
    assert.equal(file.current()?.get('dave')?.uid, 2000);
    for (let i = 0; i < 5; i++) file.current();
    assert.equal(parses, 1, 'unchanged: parsed once');

    // The same size, the mtime set back as it was: the ctime still tells.
    const { atime, mtime } = statSync(path);
    writeFileSync(path, 'dave:x:2001:2000::/home/dave:/bin/sh\n');
    utimesSync(path, atime, mtime);
    assert.equal(file.current()?.get('dave')?.uid, 2001);
    assert.equal(parses, 2);

    // Replaced by rename, as useradd and vipw do.
    writeFileSync(join(dir, 'passwd.new'), 'dave:x:2001:2000::/home/dave:/bin/sh\nerin:x:2002:2002::/:/bin/sh\n');
    renameSync(join(dir, 'passwd.new'), path);
    assert.equal(file.current()?.get('erin')?.uid, 2002);
    assert.equal(parses, 3);
    file.current();
    assert.equal(parses, 3);
  });

  test('AccountFiles sees a changed group file at the next lookup', (t) => {
    const { group, files } = accountFiles(t, FIXTURE_PASSWD, FIXTURE_GROUP);
    assert.deepEqual(files.find('bob')?.groups, [1001, 10]);
    writeFileSync(group, `${FIXTURE_GROUP}docker:x:998:bob\n`);
    assert.deepEqual(files.find('bob')?.groups, [1001, 10, 998]);
  });
});

describe('lookupAccount', () => {
  test('an account the files give comes from them, with no user database asked (getent does not know it)', { timeout: TIMEOUT_MS }, async (t) => {
    const { files } = accountFiles(t, 'np-fixture-7f3a:x:4321:4322:Fixture:/home/np-fixture:/bin/dash\nnp-noshell-7f3a:x:4323:4322::/:\n', 'np-g:x:4322:\nnp-h:x:4324:np-fixture-7f3a\n');
    assert.deepEqual(await lookupAccount('np-fixture-7f3a', files), {
      name: 'np-fixture-7f3a',
      uid: 4321,
      gid: 4322,
      groups: [4322, 4324],
      home: '/home/np-fixture',
      shell: '/bin/dash',
    });
    assert.equal((await lookupAccount('np-noshell-7f3a', files)).shell, '/bin/sh', 'no shell named: /bin/sh');
    assert.equal(accountKnown('np-fixture-7f3a', files), true);
  });

  test('a name the files do not give is looked up in the user database; one it does not know either is refused', { timeout: TIMEOUT_MS }, async (t) => {
    const { files } = accountFiles(t, FIXTURE_PASSWD.replace(/^root:.*\n/, ''), FIXTURE_GROUP);
    const root = await lookupAccount('root', files);
    assert.deepEqual({ uid: root.uid, gid: root.gid, home: root.home }, { uid: 0, gid: 0, home: '/root' });
    assert.equal(accountKnown('root', files), true);
    await assert.rejects(lookupAccount('np-no-such-user-7f3a', files), refused(ErrorCode.NotPermitted, /^no such user np-no-such-user-7f3a on this host$/));
    assert.equal(accountKnown('np-no-such-user-7f3a', files), false);
  });

  test('every account of this host\'s /etc/passwd is what getent passwd and id -G say of it, the current user\'s too', { timeout: TIMEOUT_MS }, async () => {
    const names = [...parsePasswd(readFileSync('/etc/passwd', 'utf8')).keys()];
    const own = userInfo().username;
    assert.ok(names.includes(own), `${own} is in /etc/passwd`);
    for (const name of names) {
      const [, , uid, gid, , home, shell] = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim().split(':');
      const groups = execFileSync('id', ['-G', name], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
      assert.deepEqual(await lookupAccount(name), { name, uid: Number(uid), gid: Number(gid), groups, home, shell: shell === '' ? '/bin/sh' : shell }, name);
    }
  });


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
