// End to end: rsync with plumb as its remote shell (rsync -e plumb), as the README shows it: a tree pushed to a
// machine with --delete (a stale file there removed), pulled back, a remote path with a space and a quote (rsync's
// -s, since plumb runs an argv and no shell parses rsync's escaping), and user@machine: reaching plumb as -l.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { treeDigest } from '../helpers/payloads.js';
import { BIN, startNetplumb } from '../helpers/daemon.js';
import { runProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';

const TIMEOUT_MS = 90_000;

test('rsync -e plumb pushes with --delete, pulls back, takes a remote path with a space under -s, and user@machine as -l', { timeout: TIMEOUT_MS }, async (t) => {
  const account = userInfo().username;
  const np = await startNetplumb(t, { clientOptions: `user=${account}` });
  const pinned = await np.plumb(['true']);
  assert.equal(pinned.code, 0, pinned.stderr);
  writeFileSync(join(np.home, 'hosts'), `backup ${np.daemon.address}\n`);
  const remoteShell = `${process.execPath} ${BIN.plumb} -identity=${np.client.privateFile}`;
  const rsync = async (...args: string[]): Promise<void> => {
    const result = await runProcess(t, ['rsync', '-e', remoteShell, ...args], { env: np.plumbEnv() });
    assert.equal(result.code, 0, `rsync ${args.join(' ')}: ${result.stderr}`);
  };

  const work = tempDir(t, 'netplumb-rsync-');
  const source = join(work, 'source');
  mkdirSync(join(source, 'etc', 'with space'), { recursive: true });
  writeFileSync(join(source, 'etc', 'hosts'), '127.0.0.1 localhost\n');
  writeFileSync(join(source, 'etc', 'with space', "it's here"), 'quoted\n');
  writeFileSync(join(source, 'blob.bin'), Buffer.from(Array.from({ length: 500_000 }, (_, index) => (index * 31) % 251)));
  const target = join(work, 'target');
  mkdirSync(target);
  writeFileSync(join(target, 'stale'), 'gone after --delete\n');

  await rsync('-a', '--delete', `${source}/`, `backup:${target}/`);
  assert.deepEqual(treeDigest(target), treeDigest(source));
  assert.equal(existsSync(join(target, 'stale')), false);

  const pulled = join(work, 'pulled');
  await rsync('-a', `backup:${source}/`, `${pulled}/`);
  assert.deepEqual(treeDigest(pulled), treeDigest(source));

  // A remote path with a space and a quote: -s sends the names inside rsync's protocol, not on the command line.
  const awkward = join(work, "odd dir's");
  await rsync('-a', '-s', `${source}/`, `backup:${awkward}/`);
  assert.deepEqual(treeDigest(awkward), treeDigest(source));

  // A mistyped long option is not an account for -l: `-limit=1M` is refused, never sent as the account `imit=1M`.
  const typo = await np.plumb(['true'], { options: ['-limit=1M'] });
  assert.equal(typo.code, 255, typo.stderr);
  assert.match(typo.stderr, /is not an account name .*\(NP_USAGE\)/);

  // account@machine: rsync runs `plumb -l account machine rsync --server ...`.
  const asAccount = join(work, 'as-account');
  await rsync('-a', `${source}/etc/`, `${account}@backup:${asAccount}/`);
  assert.deepEqual(treeDigest(asAccount), treeDigest(join(source, 'etc')));
});
