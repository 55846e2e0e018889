// Tests for bridges/checked-open.ts on a real file system: the check sees the path a file really gets (symlinked
// directories resolved), a symlink as the last component is never followed, a refusing check leaves nothing
// behind, and a directory swapped for a symlink after a check of the path's text cannot lead the open outside.

import assert from 'node:assert/strict';
import { closeSync, constants as fs, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { atCheckedPath, openChecked, realPathOfFd, type PathCheck } from '../../bridges/checked-open.js';
import { tempDir, type Scope } from '../helpers/scope.js';

const CREATE = fs.O_WRONLY | fs.O_CREAT | fs.O_TRUNC;

/** A spool directory to stay inside and an outside directory a client must not reach; both real paths. */
function layout(scope: Scope): { spool: string; outside: string } {
  const root = realpathSync(tempDir(scope, 'netplumb-checked-open-'));
  const spool = join(root, 'spool');
  const outside = join(root, 'outside');
  mkdirSync(spool);
  mkdirSync(outside);
  return { spool, outside };
}

/** The check a daemon would make: the real path must lie inside `root`. Records what it was shown. */
function insideOnly(root: string): { check: PathCheck; seen: string[] } {
  const seen: string[] = [];
  const check: PathCheck = (realPath) => {
    seen.push(realPath);
    const rel = relative(root, realPath);
    if (rel === '' || rel.startsWith('..')) throw Object.assign(new Error(`${realPath} is outside ${root}`), { code: 'OUTSIDE' });
  };
  return { check, seen };
}

function writeAndClose(fd: number, text: string): void {
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

describe('openChecked', () => {
  test('a plain path is opened and the check sees its real path', (t) => {
    const { spool } = layout(t);
    const { check, seen } = insideOnly(spool);
    writeAndClose(openChecked(join(spool, 'plain'), CREATE, 0o600, check), 'hello');
    assert.deepEqual(seen, [join(spool, 'plain')]);
    assert.equal(readFileSync(join(spool, 'plain'), 'utf8'), 'hello');
  });

  test('without a check the file is still opened without following a final symlink', (t) => {
    const { spool } = layout(t);
    writeAndClose(openChecked(join(spool, 'unchecked'), CREATE, 0o600, undefined), 'x');
    assert.equal(readFileSync(join(spool, 'unchecked'), 'utf8'), 'x');
    symlinkSync(join(spool, 'unchecked'), join(spool, 'link'));
    assert.throws(() => openChecked(join(spool, 'link'), fs.O_RDONLY, 0, undefined), { code: 'ELOOP' });
  });

  test('the check sees the real path when a directory component is a symlink', (t) => {
    const { spool, outside } = layout(t);
    symlinkSync(outside, join(spool, 'escape'));
    const { check, seen } = insideOnly(spool);
    assert.throws(() => openChecked(join(spool, 'escape', 'file'), CREATE, 0o600, check), { code: 'OUTSIDE' });
    assert.deepEqual(seen, [join(outside, 'file')]);
    assert.deepEqual(readdirSync(outside), [], 'nothing was made outside');

    // A symlink that stays inside is resolved the same way, and allowed.
    mkdirSync(join(spool, 'real'));
    symlinkSync('real', join(spool, 'alias'));
    const inside = insideOnly(spool);
    writeAndClose(openChecked(join(spool, 'alias', 'file'), CREATE, 0o600, inside.check), 'through alias');
    assert.deepEqual(inside.seen, [join(spool, 'real', 'file')]);
    assert.equal(readFileSync(join(spool, 'real', 'file'), 'utf8'), 'through alias');
  });

  test('the check sees through `..` and chains of symlinked directories', (t) => {
    const { spool, outside } = layout(t);
    mkdirSync(join(spool, 'a'));
    symlinkSync(join(spool, 'a'), join(spool, 'first'));
    symlinkSync('../../outside', join(spool, 'a', 'second'));
    const { check, seen } = insideOnly(spool);
    assert.throws(() => openChecked(join(spool, 'first', 'second', 'file'), CREATE, 0o600, check), { code: 'OUTSIDE' });
    assert.deepEqual(seen, [join(outside, 'file')]);
    assert.throws(() => openChecked(join(spool, 'a', '..', '..', 'outside', 'file'), CREATE, 0o600, check), { code: 'OUTSIDE' });
    assert.deepEqual(readdirSync(outside), []);
  });

  test('a final-component symlink is never followed (ELOOP), whatever the flags and wherever it points', (t) => {
    const { spool, outside } = layout(t);
    writeFileSync(join(spool, 'target'), 'original');
    symlinkSync(join(spool, 'target'), join(spool, 'to-inside'));
    symlinkSync(join(outside, 'planted'), join(spool, 'dangling-outside'));
    const { check } = insideOnly(spool);
    for (const flags of [fs.O_RDONLY, CREATE, fs.O_WRONLY | fs.O_APPEND | fs.O_CREAT, fs.O_RDWR]) {
      assert.throws(() => openChecked(join(spool, 'to-inside'), flags, 0o600, check), { code: 'ELOOP' }, `flags ${flags}`);
      assert.throws(() => openChecked(join(spool, 'dangling-outside'), flags, 0o600, check), { code: 'ELOOP' }, `flags ${flags}`);
    }
    assert.equal(readFileSync(join(spool, 'target'), 'utf8'), 'original', 'the target was not truncated');
    assert.deepEqual(readdirSync(outside), [], 'a dangling symlink did not create its target');
  });

  test('a check that throws prevents creation: no file is made', (t) => {
    const { spool } = layout(t);
    const refuse: PathCheck = () => {
      throw Object.assign(new Error('no'), { code: 'REFUSED' });
    };
    assert.throws(() => openChecked(join(spool, 'never'), CREATE, 0o600, refuse), { code: 'REFUSED' });
    assert.throws(() => openChecked(join(spool, 'never-excl'), CREATE | fs.O_EXCL, 0o600, refuse), { code: 'REFUSED' });
    assert.deepEqual(readdirSync(spool), []);
  });

  test('a check that throws leaves an existing file untouched, not truncated', (t) => {
    const { spool } = layout(t);
    writeFileSync(join(spool, 'kept'), 'contents');
    assert.throws(() => openChecked(join(spool, 'kept'), CREATE, 0o600, () => {
      throw new Error('refused');
    }));
    assert.equal(readFileSync(join(spool, 'kept'), 'utf8'), 'contents');
  });

  for (const [what, suffix] of [
    ['`.` as the last component', '.'],
    ['`..` as the last component', '..'],
    ['a trailing slash', 'sub/'],
    ['a trailing slash after `..`', '../'],
  ] as const) {
    test(`${what} is refused as naming a directory, before the check runs`, (t) => {
      const { spool } = layout(t);
      mkdirSync(join(spool, 'sub'));
      const { check, seen } = insideOnly(spool);
      assert.throws(() => openChecked(`${spool}/${suffix}`, CREATE, 0o600, check), { code: 'EISDIR' });
      assert.deepEqual(seen, []);
    });
  }

  test('an empty path and a missing directory are refused', (t) => {
    const { spool } = layout(t);
    assert.throws(() => openChecked('', CREATE, 0o600, undefined), { code: 'EISDIR' });
    assert.throws(() => openChecked(join(spool, 'missing', 'file'), CREATE, 0o600, undefined), { code: 'ENOENT' });
    assert.deepEqual(readdirSync(spool), []);
  });

  test('a directory swapped for a symlink after a check of the text is caught: the check runs on the real path', (t) => {
    const { spool, outside } = layout(t);
    const work = join(spool, 'work');
    mkdirSync(work);
    const path = join(work, 'result');
    // A check of the text alone passes: `work/result` lies inside the spool.
    assert.ok(!relative(spool, path).startsWith('..'));
    // Then a command the client runs swaps the directory for a symlink to outside.
    renameSync(work, join(spool, 'work.old'));
    symlinkSync(outside, work);
    const { check, seen } = insideOnly(spool);
    assert.throws(() => openChecked(path, CREATE, 0o600, check), { code: 'OUTSIDE' });
    assert.deepEqual(seen, [join(outside, 'result')]);
    assert.deepEqual(readdirSync(outside), []);
  });

  test('a swap made while the check runs cannot redirect the open: the file lands in the directory checked', (t) => {
    const { spool, outside } = layout(t);
    const work = join(spool, 'work');
    mkdirSync(work);
    const { check: inside, seen } = insideOnly(spool);
    const swapDuringCheck: PathCheck = (realPath) => {
      inside(realPath);
      // The race a text check followed by open(2) loses: between the check and the open.
      renameSync(work, join(spool, 'work.old'));
      symlinkSync(outside, work);
    };
    writeAndClose(openChecked(join(work, 'result'), CREATE, 0o600, swapDuringCheck), 'checked');
    assert.deepEqual(seen, [join(work, 'result')]);
    assert.deepEqual(readdirSync(outside), [], 'nothing reached the symlink target');
    assert.equal(readFileSync(join(spool, 'work.old', 'result'), 'utf8'), 'checked');
  });

  test('realPathOfFd names the directory an open descriptor really is, even after a rename', (t) => {
    const { spool } = layout(t);
    mkdirSync(join(spool, 'before'));
    const fd = openChecked(join(spool, 'before', 'f'), CREATE, 0o600, undefined);
    try {
      assert.equal(realPathOfFd(fd), join(spool, 'before', 'f'));
      renameSync(join(spool, 'before'), join(spool, 'after'));
      assert.equal(realPathOfFd(fd), join(spool, 'after', 'f'));
    } finally {
      closeSync(fd);
    }
    assert.ok(existsSync(join(spool, 'after', 'f')));
  });
});

describe('errors name the path given', () => {
  /** Expects fn to fail with `code`, in words that start with `path` and never show the descriptor's name. */
  function failsNaming(fn: () => unknown, code: string, path: string): void {
    assert.throws(fn, (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, code, error.message);
      assert.ok(error.message.startsWith(`${path}: `), error.message);
      assert.doesNotMatch(error.message, /\/proc\/self\/fd/);
      assert.equal(error.path, path);
      return true;
    });
  }

  test('a failed open says the path it was given and why, as a shell would, never /proc/self/fd/N', (t) => {
    const { spool } = layout(t);
    writeFileSync(join(spool, 'target'), 'x');
    symlinkSync(join(spool, 'target'), join(spool, 'link'));
    mkdirSync(join(spool, 'sub'));
    failsNaming(() => openChecked(join(spool, 'link'), fs.O_RDONLY, 0, undefined), 'ELOOP', join(spool, 'link'));
    failsNaming(() => openChecked(join(spool, 'missing.txt'), fs.O_RDONLY, 0, undefined), 'ENOENT', join(spool, 'missing.txt'));
    failsNaming(() => openChecked(join(spool, 'sub'), fs.O_WRONLY, 0, undefined), 'EISDIR', join(spool, 'sub'));
    failsNaming(() => openChecked(join(spool, 'target'), fs.O_WRONLY | fs.O_CREAT | fs.O_EXCL, 0o600, undefined), 'EEXIST', join(spool, 'target'));
    // A directory that is not there: the file's path, not only its directory's.
    failsNaming(() => openChecked(join(spool, 'no-dir', 'file'), CREATE, 0o600, undefined), 'ENOENT', join(spool, 'no-dir', 'file'));
  });

  test('whatever fails by the pinned name in atCheckedPath is told with the path given', (t) => {
    const { spool } = layout(t);
    failsNaming(() => atCheckedPath(join(spool, 'gone'), undefined, (pinned) => lstatSync(pinned)), 'ENOENT', join(spool, 'gone'));
  });
});
