// The files that decide who may do what are refused when another account could have written them: writable by group
// or others, owned by someone else, or not a regular file; the daemon refuses to start on such a file.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadAuthorizedClients } from '../../daemon/authorized-clients.js';
import { readConfigFile } from '../../daemon/config.js';
import { loadGluepot } from '../../daemon/gluepots.js';
import { readTrustedFile } from '../../daemon/trusted-file.js';
import { ErrorCode } from '../../protocol/errors.js';
import { BIN, reportedCode, writeKeyPair } from '../helpers/daemon.js';
import { runProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';

function scratch(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'netplumb-trusted-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function refusedWith(pattern: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: string }).code, ErrorCode.Config);
    assert.match((error as Error).message, pattern);
    return true;
  };
}

test('a file only its owner may write is read', (t) => {
  const file = join(scratch(t), 'clients');
  writeFileSync(file, 'text\n', { mode: 0o644 });
  assert.equal(readTrustedFile(file, 'authorized clients'), 'text\n');
});

test('a file group or others may write is refused, naming its mode', (t) => {
  const dir = scratch(t);
  for (const mode of [0o664, 0o646, 0o666]) {
    const file = join(dir, `clients-${mode.toString(8)}`);
    writeFileSync(file, 'text\n');
    chmodSync(file, mode);
    assert.throws(() => readTrustedFile(file, 'authorized clients'), refusedWith(new RegExp(`mode 0${mode.toString(8)}`)));
  }
});

test("a file of another account is refused, even one only it may write", { skip: process.geteuid?.() !== 0 ? 'needs root to give a file away' : false }, (t) => {
  const file = join(scratch(t), 'clients');
  writeFileSync(file, 'text\n', { mode: 0o600 });
  chownSync(file, 65534, 65534);
  assert.throws(() => readTrustedFile(file, 'authorized clients'), refusedWith(/belongs to uid 65534/));
});

test('a directory or a FIFO in its place is refused, and a symlink is judged by what it leads to', (t) => {
  const dir = scratch(t);
  assert.throws(() => readTrustedFile(dir, 'config file'), refusedWith(/not a regular file/));
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  // Opened without waiting for a writer: the daemon must not hang on a pipe put in a file's place.
  assert.throws(() => readTrustedFile(fifo, 'config file'), refusedWith(/not a regular file/));
  const loose = join(dir, 'loose');
  writeFileSync(loose, 'text\n');
  chmodSync(loose, 0o666);
  const link = join(dir, 'link');
  symlinkSync(loose, link);
  assert.throws(() => readTrustedFile(link, 'config file'), refusedWith(/may be written by group or others/));
  chmodSync(loose, 0o644);
  assert.equal(readTrustedFile(link, 'config file'), 'text\n');
});

test('a missing file is NP_CONFIG naming the file', (t) => {
  assert.throws(() => readTrustedFile(join(scratch(t), 'absent'), 'gluepot backup'), refusedWith(/cannot read gluepot backup .*absent: ENOENT/));
});

test('the config file, the authorized clients and every gluepot are read this way', (t) => {
  const dir = scratch(t);
  for (const name of ['netplumbd.conf', 'clients', 'backup']) {
    writeFileSync(join(dir, name), '');
    chmodSync(join(dir, name), 0o666);
  }
  assert.throws(() => readConfigFile(join(dir, 'netplumbd.conf')), refusedWith(/config file/));
  assert.throws(() => loadAuthorizedClients(join(dir, 'clients')), refusedWith(/authorized clients/));
  assert.throws(() => loadGluepot(dir, 'backup'), refusedWith(/gluepot backup/));
});

test('netplumbd refuses to start with an authorized clients file others may write', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const hostKey = writeKeyPair(dir, 'host_key');
  const clients = join(dir, 'clients');
  writeFileSync(clients, `${writeKeyPair(dir, 'client').publicLine}\n`);
  chmodSync(clients, 0o666);
  const config = join(dir, 'netplumbd.conf');
  writeFileSync(config, `run-as root\none-time-keys ${join(dir, 'otk')}\n`);
  const result = await runProcess(t, [process.execPath, BIN.netplumbd, `-config=${config}`, '-listen=127.0.0.1:0', `-hostkey=${hostKey.privateFile}`, `-clients=${clients}`], { timeoutMs: 30_000 });
  assert.notEqual(result.code, 0);
  assert.equal(reportedCode(result.stderr), ErrorCode.Config, result.stderr);
  assert.match(result.stderr, /may be written by group or others/);
});
