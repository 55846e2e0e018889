// Tests for daemon/gluepots: every line form of a gluepot file and every way a line is refused (with its line
// number), the glob patterns, program resolution as exec does it (PATH order, symlinks), the command check and the
// path check (spool directory, `path` lines, `..`, symlinked directories). Real files in a temp dir. As root, the
// same checks made with another account's rights (the fixture accounts of test/helpers/accounts.ts).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { lookupAccount, RunAs } from '../../daemon/accounts.js';
import { checkCommand, checkPath, globToRegExp, loadGluepot, parseGluepot, resolveProgram, type Gluepot } from '../../daemon/gluepots.js';
import { ErrorCode, NetplumbError } from '../../protocol/errors.js';
import { ensureFixtureAccounts, FIXTURE_GROUP, NEEDS_ROOT, OTHER, RUNAS } from '../helpers/accounts.js';

const dir = realpathSync(mkdtempSync(join(tmpdir(), 'netplumb-gluepots-')));
after(() => rmSync(dir, { recursive: true, force: true }));

const SOURCE = '/etc/netplumb/gluepots/test';
const SH = realpathSync('/bin/sh');
const TRUE = realpathSync('/bin/true');
const TAR = realpathSync('/usr/bin/tar');
const ENV = realpathSync('/usr/bin/env');

let counter = 0;
/** A fresh directory under the test's temp dir. */
function freshDir(name: string): string {
  const path = join(dir, `${name}-${++counter}`);
  mkdirSync(path, { recursive: true });
  return path;
}

/** An executable script (or, with mode, a file of that mode). */
function writeProgram(path: string, mode = 0o755): string {
  writeFileSync(path, '#!/bin/sh\nexit 0\n');
  chmodSync(path, mode);
  return path;
}

function parse(text: string): Gluepot {
  return parseGluepot(text, 'test', SOURCE);
}

/** Runs fn, expects a NetplumbError with the code, and returns its message. */
function refusal(fn: () => unknown, code: ErrorCode): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof NetplumbError, `not a NetplumbError: ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error.message;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

describe('parseGluepot', () => {
  test('comments, blank lines and CRLF line ends are skipped', () => {
    const gluepot = parse('# a comment\n\n   \n  # indented comment\r\n/bin/true\r\n');
    assert.equal(gluepot.name, 'test');
    assert.equal(gluepot.rules.length, 1);
    assert.deepEqual(gluepot.paths, []);
  });

  test('a program alone allows any arguments', () => {
    const [rule] = parse('/bin/true\n').rules;
    assert.equal(rule?.written, '/bin/true');
    assert.equal(rule?.program, TRUE);
    assert.equal(rule?.args, undefined);
    assert.equal(rule?.moreArgs, false);
    assert.equal(rule?.line, 1);
  });

  test('a program with patterns takes one pattern per argument', () => {
    const [rule] = parse('# tar\n/usr/bin/tar -cf - /srv/*\n').rules;
    assert.equal(rule?.program, TAR);
    assert.equal(rule?.args?.length, 3);
    assert.equal(rule?.moreArgs, false);
    assert.equal(rule?.line, 2);
  });

  test('a final ... allows further arguments', () => {
    const [rule] = parse('/usr/bin/tar -c ...\n').rules;
    assert.equal(rule?.args?.length, 1);
    assert.equal(rule?.moreArgs, true);
  });

  test('a program followed by ... alone allows any arguments', () => {
    const [rule] = parse('/usr/bin/tar ...\n').rules;
    assert.deepEqual(rule?.args, []);
    assert.equal(rule?.moreArgs, true);
  });

  test('a program written through a symlink is kept as written and resolved to its target', () => {
    const link = join(freshDir('load-link'), 'tar');
    symlinkSync('/bin/sh', link);
    const [rule] = parse(`${link}\n`).rules;
    assert.equal(rule?.written, link);
    assert.equal(rule?.program, SH);
  });

  test('a path line holds a normalised absolute glob', () => {
    const gluepot = parse('path /srv//backup/../data/*\npath /tmp/x?.log\n');
    assert.deepEqual(
      gluepot.paths.map((entry) => entry.pattern),
      ['/srv/data/*', '/tmp/x?.log'],
    );
    assert.equal(gluepot.paths[0]?.matcher.test('/srv/data/a/b'), true);
    assert.equal(gluepot.rules.length, 0);
  });

  test('rules and path lines can be mixed, each kept in its list', () => {
    const gluepot = parse('/bin/true\npath /srv/*\n/usr/bin/tar -x\n');
    assert.deepEqual(
      gluepot.rules.map((rule) => rule.line),
      [1, 3],
    );
    assert.equal(gluepot.paths.length, 1);
  });

  for (const [title, line] of [
    ['path without a glob', 'path'],
    ['path with a relative glob', 'path srv/*'],
    ['path with two globs', 'path /srv/a /srv/b'],
    ['a relative program', 'tar -cf -'],
    ['a program named without a slash through PATH', 'true'],
    ['a missing program', '/nonexistent/netplumb-test-program'],
    ['... before the last pattern', '/bin/echo ... x'],
  ] as const) {
    test(`refuses ${title} with NP_CONFIG naming the file and line`, () => {
      const message = refusal(() => parse(`# first\n/bin/true\n${line}\n`), ErrorCode.Config);
      assert.ok(message.includes(`${SOURCE}:3`), message);
    });
  }

  test('one bad line refuses the whole file, good lines before and after included', () => {
    const message = refusal(() => parse('/bin/true\n/usr/bin/env\npath relative\n/usr/bin/tar\n'), ErrorCode.Config);
    assert.ok(message.includes(`${SOURCE}:3`), message);
  });
});

describe('loadGluepot', () => {
  test('reads the file named after the gluepot in the directory', () => {
    const gluepots = freshDir('load');
    writeFileSync(join(gluepots, 'backup'), '/usr/bin/tar -c ...\npath /srv/backup/*\n');
    const gluepot = loadGluepot(gluepots, 'backup');
    assert.equal(gluepot.name, 'backup');
    assert.equal(gluepot.rules[0]?.program, TAR);
    assert.equal(gluepot.paths[0]?.pattern, '/srv/backup/*');
  });

  test('a missing gluepot file is NP_CONFIG naming the gluepot', () => {
    const message = refusal(() => loadGluepot(freshDir('load-missing'), 'nothing-here'), ErrorCode.Config);
    assert.ok(message.includes('nothing-here'), message);
  });

  test('a bad line names the file and line', () => {
    const gluepots = freshDir('load-bad');
    writeFileSync(join(gluepots, 'bad'), '/bin/true\n\nsh -c\n');
    const message = refusal(() => loadGluepot(gluepots, 'bad'), ErrorCode.Config);
    assert.ok(message.includes(`${join(gluepots, 'bad')}:3`), message);
  });
});

describe('globToRegExp', () => {
  test('* matches any run of characters, / and the empty run included', () => {
    const glob = globToRegExp('/srv/*');
    for (const path of ['/srv/', '/srv/a', '/srv/a/b/c', '/srv/.hidden']) assert.equal(glob.test(path), true, path);
    assert.equal(glob.test('/srv'), false);
    assert.equal(glob.test('/srvx/a'), false);
  });

  test('? matches exactly one character', () => {
    const glob = globToRegExp('/tmp/x?.log');
    assert.equal(glob.test('/tmp/x1.log'), true);
    assert.equal(glob.test('/tmp/x/.log'), true);
    assert.equal(glob.test('/tmp/x.log'), false);
    assert.equal(glob.test('/tmp/x12.log'), false);
  });

  test('characters special in a RegExp are literal', () => {
    const glob = globToRegExp('a.b+c(d)[e]$f^g|h\\i{2}');
    assert.equal(glob.test('a.b+c(d)[e]$f^g|h\\i{2}'), true);
    assert.equal(glob.test('aXb+c(d)[e]$f^g|h\\i{2}'), false);
    assert.equal(globToRegExp('-c').test('-c'), true);
  });

  test('the whole string must match', () => {
    const glob = globToRegExp('-v');
    assert.equal(glob.test('-v'), true);
    assert.equal(glob.test('-vv'), false);
    assert.equal(glob.test('x-v'), false);
  });
});

describe('resolveProgram', () => {
  test('takes the first directory of the search path that has the program', () => {
    const first = freshDir('path-first');
    const second = freshDir('path-second');
    writeProgram(join(first, 'prog'));
    writeProgram(join(second, 'prog'));
    assert.equal(resolveProgram('prog', `${first}:${second}`, '/'), join(first, 'prog'));
    assert.equal(resolveProgram('prog', `${second}:${first}`, '/'), join(second, 'prog'));
  });

  test('skips a file that is not executable and a directory of that name, as exec does', () => {
    const plain = freshDir('path-plain');
    const withDir = freshDir('path-dir');
    const good = freshDir('path-good');
    writeProgram(join(plain, 'prog'), 0o644);
    mkdirSync(join(withDir, 'prog'));
    writeProgram(join(good, 'prog'));
    assert.equal(resolveProgram('prog', `${plain}:${withDir}:${good}`, '/'), join(good, 'prog'));
  });

  test('empty search path entries are skipped', () => {
    const good = freshDir('path-empty');
    writeProgram(join(good, 'prog'));
    assert.equal(resolveProgram('prog', `::${good}:`, '/'), join(good, 'prog'));
  });

  test('resolves every symlink to the file that would run', () => {
    const bin = freshDir('path-link');
    symlinkSync('/bin/sh', join(bin, 'tar'));
    assert.equal(resolveProgram('tar', bin, '/'), SH);
  });

  test('a name with a slash is not looked up in the search path; a relative one is taken from cwd', () => {
    const cwd = freshDir('path-cwd');
    mkdirSync(join(cwd, 'bin'));
    writeProgram(join(cwd, 'bin', 'prog'));
    const elsewhere = freshDir('path-elsewhere');
    writeProgram(join(elsewhere, 'prog'));
    assert.equal(resolveProgram('bin/prog', elsewhere, cwd), join(cwd, 'bin', 'prog'));
    assert.equal(resolveProgram('./bin/prog', elsewhere, cwd), join(cwd, 'bin', 'prog'));
    assert.equal(resolveProgram(join(elsewhere, 'prog'), '', cwd), join(elsewhere, 'prog'));
  });

  test('a relative search path entry is taken from the command working directory, as exec in it would', () => {
    const cwd = freshDir('path-relative-entry');
    mkdirSync(join(cwd, 'tools'));
    writeProgram(join(cwd, 'tools', 'np-gluepot-relative-prog'));
    assert.equal(resolveProgram('np-gluepot-relative-prog', 'tools', cwd), join(cwd, 'tools', 'np-gluepot-relative-prog'));
  });

  test('a program found nowhere is NP_COMMAND_NOT_FOUND', () => {
    refusal(() => resolveProgram('np-no-such-program', freshDir('path-none'), '/'), ErrorCode.CommandNotFound);
    refusal(() => resolveProgram('/nonexistent/prog', '/usr/bin', '/'), ErrorCode.CommandNotFound);
  });
});

describe('checkCommand', () => {
  const SEARCH = '/usr/local/bin:/usr/bin:/bin';

  test('an allowed program runs as the file checked, whatever name reached it', () => {
    const gluepot = parse('/bin/true\n');
    assert.equal(checkCommand(gluepot, ['true'], SEARCH, '/'), TRUE);
    assert.equal(checkCommand(gluepot, ['/usr/bin/true', 'any', 'args'], SEARCH, '/'), TRUE);
  });

  test('a program the gluepot does not list is NP_NOT_PERMITTED naming the command and the gluepot', () => {
    const message = refusal(() => checkCommand(parse('/bin/true\n'), ['env'], SEARCH, '/'), ErrorCode.NotPermitted);
    assert.ok(message.includes('env'), message);
    assert.ok(message.includes(ENV), message);
    assert.ok(message.includes('gluepot test'), message);
  });

  test('an empty gluepot allows nothing', () => {
    refusal(() => checkCommand(parse('# nothing\n'), ['true'], SEARCH, '/'), ErrorCode.NotPermitted);
  });

  test('argument patterns: one per argument, exactly as many arguments', () => {
    const gluepot = parse('/usr/bin/tar -cf - /srv/*\n');
    assert.equal(checkCommand(gluepot, ['tar', '-cf', '-', '/srv/a/b'], SEARCH, '/'), TAR);
    for (const argv of [
      ['tar'],
      ['tar', '-cf', '-'],
      ['tar', '-xf', '-', '/srv/a'],
      ['tar', '-cf', '-', '/etc/passwd'],
      ['tar', '-cf', '-', '/srv/a', '/etc/passwd'],
    ]) {
      const message = refusal(() => checkCommand(gluepot, argv, SEARCH, '/'), ErrorCode.NotPermitted);
      assert.ok(message.includes('arguments'), message);
    }
  });

  test('a final ... allows further arguments but not fewer', () => {
    const gluepot = parse('/usr/bin/tar -c ...\n');
    assert.equal(checkCommand(gluepot, ['tar', '-c'], SEARCH, '/'), TAR);
    assert.equal(checkCommand(gluepot, ['tar', '-c', '-f', '-', '/srv'], SEARCH, '/'), TAR);
    refusal(() => checkCommand(gluepot, ['tar'], SEARCH, '/'), ErrorCode.NotPermitted);
    refusal(() => checkCommand(gluepot, ['tar', '-x', '-f', '-'], SEARCH, '/'), ErrorCode.NotPermitted);
  });

  test('any one of several rules for the program is enough', () => {
    const gluepot = parse('/usr/bin/tar -c\n/usr/bin/tar -t ...\n');
    assert.equal(checkCommand(gluepot, ['tar', '-c'], SEARCH, '/'), TAR);
    assert.equal(checkCommand(gluepot, ['tar', '-t', '-v'], SEARCH, '/'), TAR);
    refusal(() => checkCommand(gluepot, ['tar', '-x'], SEARCH, '/'), ErrorCode.NotPermitted);
  });

  test('sh -c is refused unless sh is listed', () => {
    refusal(() => checkCommand(parse('/usr/bin/tar\n'), ['sh', '-c', 'tar -cf - /'], SEARCH, '/'), ErrorCode.NotPermitted);
    assert.equal(checkCommand(parse('/bin/sh -c *\n'), ['sh', '-c', 'echo hi'], SEARCH, '/'), SH);
  });

  test('a symlink named like a listed program but pointing elsewhere is checked as its target and refused', () => {
    const bin = freshDir('check-link');
    symlinkSync('/bin/sh', join(bin, 'tar'));
    const message = refusal(() => checkCommand(parse('/usr/bin/tar\n'), ['tar', '-c', 'id'], `${bin}:${SEARCH}`, '/'), ErrorCode.NotPermitted);
    assert.ok(message.includes(SH), `the message names what tar resolved to: ${message}`);
  });

  test('a missing program is NP_COMMAND_NOT_FOUND, not a refusal', () => {
    refusal(() => checkCommand(parse('/bin/true\n'), ['np-no-such-program'], SEARCH, '/'), ErrorCode.CommandNotFound);
  });
});

describe('checkPath', () => {
  /** A spool directory and an outside directory, side by side. */
  function layout(): { spool: string; outside: string } {
    const base = freshDir('paths');
    const spool = join(base, 'spool');
    const outside = join(base, 'outside');
    mkdirSync(spool);
    mkdirSync(outside);
    return { spool, outside };
  }

  test('a path inside the spool directory is allowed, existing or not, even before the spool directory exists', () => {
    const { spool } = layout();
    const gluepot = parse('# nothing outside\n');
    writeFileSync(join(spool, 'there'), '');
    checkPath(gluepot, join(spool, 'there'), spool, 'file');
    checkPath(gluepot, join(spool, 'not-yet'), spool, 'file');
    checkPath(gluepot, join(spool, 'a', 'b', 'c'), spool, 'file');
    checkPath(gluepot, join(spool, 'missing-spool', 'x'), join(spool, 'missing-spool'), 'file');
  });

  test('a path outside the spool directory without a path line is NP_NOT_PERMITTED naming it and the gluepot', () => {
    const { spool, outside } = layout();
    const message = refusal(() => checkPath(parse('/bin/true\n'), join(outside, 'x'), spool, 'file of line 1'), ErrorCode.NotPermitted);
    assert.ok(message.includes(join(outside, 'x')), message);
    assert.ok(message.includes('gluepot test'), message);
    assert.ok(message.includes('file of line 1'), message);
  });

  test('a path outside the spool directory matching a path line is allowed; one not matching is refused', () => {
    const { spool, outside } = layout();
    const gluepot = parse(`path ${outside}/allowed/*\npath ${outside}/one?.log\n`);
    checkPath(gluepot, join(outside, 'allowed', 'x'), spool, 'file');
    checkPath(gluepot, join(outside, 'allowed', 'deeper', 'x'), spool, 'file');
    checkPath(gluepot, join(outside, 'one1.log'), spool, 'file');
    refusal(() => checkPath(gluepot, join(outside, 'allowed-not', 'x'), spool, 'file'), ErrorCode.NotPermitted);
    refusal(() => checkPath(gluepot, join(outside, 'one12.log'), spool, 'file'), ErrorCode.NotPermitted);
    refusal(() => checkPath(gluepot, join(outside, 'x'), spool, 'file'), ErrorCode.NotPermitted);
  });

  test('.. is normalised before the comparison: it cannot climb out of the spool or an allowed directory', () => {
    const { spool, outside } = layout();
    mkdirSync(join(spool, 'a'));
    mkdirSync(join(outside, 'allowed', 'sub'), { recursive: true });
    const gluepot = parse(`path ${outside}/allowed/*\n`);
    refusal(() => checkPath(gluepot, `${spool}/../outside/x`, spool, 'file'), ErrorCode.NotPermitted);
    refusal(() => checkPath(gluepot, `${spool}/a/../../outside/x`, spool, 'file'), ErrorCode.NotPermitted);
    refusal(() => checkPath(gluepot, `${outside}/allowed/../x`, spool, 'file'), ErrorCode.NotPermitted);
    checkPath(gluepot, `${outside}/allowed/sub/../x`, spool, 'file');
    checkPath(gluepot, `${spool}/a/../x`, spool, 'file');
  });

  test('a symlinked directory in the spool pointing outside is refused, for existing and new files under it', () => {
    const { spool, outside } = layout();
    writeFileSync(join(outside, 'secret'), 'secret\n');
    symlinkSync(outside, join(spool, 'link'));
    const gluepot = parse('# nothing outside\n');
    refusal(() => checkPath(gluepot, join(spool, 'link', 'secret'), spool, 'file'), ErrorCode.NotPermitted);
    refusal(() => checkPath(gluepot, join(spool, 'link', 'new-file'), spool, 'file'), ErrorCode.NotPermitted);
    refusal(() => checkPath(gluepot, join(spool, 'link', 'new-dir', 'new-file'), spool, 'file'), ErrorCode.NotPermitted);
  });

  test('a symlink in the spool to an existing file outside is refused', () => {
    const { spool, outside } = layout();
    writeFileSync(join(outside, 'secret'), 'secret\n');
    symlinkSync(join(outside, 'secret'), join(spool, 'file-link'));
    refusal(() => checkPath(parse('# nothing outside\n'), join(spool, 'file-link'), spool, 'file'), ErrorCode.NotPermitted);
  });

  test('a spool directory reached through a symlink still holds its own paths', () => {
    const { spool } = layout();
    const spoolLink = `${spool}-link`;
    symlinkSync(spool, spoolLink);
    const gluepot = parse('# nothing outside\n');
    checkPath(gluepot, join(spool, 'x'), spoolLink, 'file');
    checkPath(gluepot, join(spoolLink, 'x'), spool, 'file');
  });

  test('.. after a symlinked directory is taken as the system takes it: from the link target, so outside is refused', () => {
    // spool/link -> outside/sub: the system opens spool/link/../x as outside/x, not spool/x.
    const { spool, outside } = layout();
    mkdirSync(join(outside, 'sub'));
    symlinkSync(join(outside, 'sub'), join(spool, 'link'));
    refusal(() => checkPath(parse('# nothing outside\n'), `${spool}/link/../x`, spool, 'file'), ErrorCode.NotPermitted);
  });
});

describe('with the rights of the account the command runs as', { skip: NEEDS_ROOT }, () => {
  const SEARCH = '/usr/local/bin:/usr/bin:/bin';
  let runAs: RunAs;
  let other: RunAs;
  /** A directory every account may pass, and one in it only root may enter. */
  let visible: string;
  let hidden: string;

  before(async () => {
    ensureFixtureAccounts();
    runAs = new RunAs(await lookupAccount(RUNAS));
    other = new RunAs(await lookupAccount(OTHER));
    // The test's own temp dir is root's 0700: let the accounts through to what they are meant to see.
    chmodSync(dir, 0o711);
    visible = freshDir('visible');
    chmodSync(visible, 0o755);
    hidden = freshDir('hidden');
    chmodSync(hidden, 0o700);
  });

  /** Runs fn, expects a NetplumbError, and returns its code and message. */
  function failure(fn: () => unknown): { code: string; message: string } {
    try {
      fn();
    } catch (error) {
      assert.ok(error instanceof NetplumbError, `not a NetplumbError: ${String(error)}`);
      return { code: error.code, message: error.message };
    }
    assert.fail('expected a refusal, nothing was thrown');
  }

  test('a program in a directory the account cannot enter is answered as a missing one there would be', () => {
    writeProgram(join(hidden, 'tool'));
    const there = failure(() => resolveProgram(join(hidden, 'tool'), SEARCH, '/', runAs));
    const missing = failure(() => resolveProgram(join(hidden, 'missing'), SEARCH, '/', runAs));
    assert.equal(there.code, missing.code, `${there.message} / ${missing.message}`);
    assert.equal(there.message.replace('tool', 'missing'), missing.message);
    // As the daemon's own account (root) the program is there.
    assert.equal(resolveProgram(join(hidden, 'tool'), SEARCH, '/'), join(hidden, 'tool'));
  });

  test('checkCommand: a program in a directory the account cannot enter is not "not in gluepot", but what a missing one gets', () => {
    writeProgram(join(hidden, 'unlisted'));
    const gluepot = parse('/bin/true\n');
    const there = failure(() => checkCommand(gluepot, [join(hidden, 'unlisted')], SEARCH, '/', runAs));
    const missing = failure(() => checkCommand(gluepot, [join(hidden, 'nothing-here')], SEARCH, '/', runAs));
    assert.equal(there.code, missing.code, `${there.message} / ${missing.message}`);
    assert.doesNotMatch(there.message, /gluepot test/);
  });

  test('checkCommand: the target of a symlink in a directory the account cannot enter is never named', () => {
    const target = writeProgram(join(visible, 'secret-target-of-link'));
    symlinkSync(target, join(hidden, 'link'));
    const refused = failure(() => checkCommand(parse('/bin/true\n'), [join(hidden, 'link')], SEARCH, '/', runAs));
    assert.doesNotMatch(refused.message, /secret-target/);
    // The daemon's own account sees through it, and may be told.
    assert.match(failure(() => checkCommand(parse('/bin/true\n'), [join(hidden, 'link')], SEARCH, '/')).message, /secret-target/);
  });

  test('execute permission is the account\'s, from the mode bits as the kernel reads them, not root\'s', () => {
    const extra = Number(execFileSync('getent', ['group', FIXTURE_GROUP], { encoding: 'utf8' }).split(':')[2]);
    const rootOnly = writeProgram(join(visible, 'root-only'), 0o700);
    const groupOnly = writeProgram(join(visible, 'group-only'), 0o750);
    chownSync(groupOnly, 0, extra);
    // The group's bits decide for a member, even where the other bits would allow.
    const notTheGroup = writeProgram(join(visible, 'not-the-group'), 0o701);
    chownSync(notTheGroup, 0, extra);
    const own = writeProgram(join(visible, 'owners'), 0o744);
    chownSync(own, runAs.account.uid, 0);
    assert.equal(failure(() => resolveProgram(rootOnly, SEARCH, '/', runAs)).code, ErrorCode.CommandNotExecutable);
    assert.equal(resolveProgram(rootOnly, SEARCH, '/'), rootOnly, 'root may');
    assert.equal(resolveProgram(groupOnly, SEARCH, '/', runAs), groupOnly, `${RUNAS} is in ${FIXTURE_GROUP}`);
    assert.equal(failure(() => resolveProgram(groupOnly, SEARCH, '/', other)).code, ErrorCode.CommandNotExecutable, `${OTHER} is not`);
    assert.equal(failure(() => resolveProgram(notTheGroup, SEARCH, '/', runAs)).code, ErrorCode.CommandNotExecutable);
    assert.equal(resolveProgram(notTheGroup, SEARCH, '/', other), notTheGroup);
    assert.equal(resolveProgram(own, SEARCH, '/', runAs), own);
    assert.equal(failure(() => resolveProgram(own, SEARCH, '/', other)).code, ErrorCode.CommandNotExecutable);
  });

  test('the search path skips what the account may not execute, as exec does, and finds the next', () => {
    const first = freshDir('search-first');
    const second = freshDir('search-second');
    chmodSync(first, 0o755);
    chmodSync(second, 0o755);
    writeProgram(join(first, 'np-gluepot-account-prog'), 0o700);
    writeProgram(join(second, 'np-gluepot-account-prog'));
    assert.equal(resolveProgram('np-gluepot-account-prog', `${first}:${second}`, '/', runAs), join(second, 'np-gluepot-account-prog'));
    assert.equal(failure(() => resolveProgram('np-gluepot-account-prog', first, '/', runAs)).code, ErrorCode.CommandNotExecutable);
  });

  test('checkPath: a symlinked directory the account cannot enter does not show where it leads', () => {
    const spool = freshDir('account-spool');
    const secret = freshDir('secret-link-target');
    chmodSync(secret, 0o755);
    symlinkSync(secret, join(hidden, 'dir-link'));
    const path = join(hidden, 'dir-link', 'file');
    const refused = failure(() => checkPath(parse('# nothing outside\n'), path, spool, 'file', runAs));
    assert.equal(refused.code, ErrorCode.NotPermitted);
    assert.doesNotMatch(refused.message, /secret-link-target/);
    assert.ok(refused.message.includes(path), refused.message);
    assert.match(failure(() => checkPath(parse('# nothing outside\n'), path, spool, 'file')).message, /secret-link-target/);
  });
});
