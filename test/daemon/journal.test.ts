// The daemon's lines when stderr is systemd's journal: JOURNAL_STREAM names the stream (device:inode), and then every
// line, `listening on`, the fatal error and a usage error included, starts with its syslog priority (<3> error, <4> warn, <6> info)
// so `journalctl -p warning` can filter; when JOURNAL_STREAM names another stream, the lines stay as on a terminal.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { baseDaemonConfig, BIN, writeKeyPair } from '../helpers/daemon.js';
import { waitUntil } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';

const TIMEOUT_MS = 60_000;

/** Runs netplumbd with stderr into a file, JOURNAL_STREAM set as `journal` says; stops it once it listens. */
async function daemonLines(dir: string, journal: 'this-stream' | 'another-stream', extraArgs: readonly string[] = []): Promise<{ lines: string[]; code: number | null }> {
  const hostKey = writeKeyPair(dir, `host_key-${journal}`);
  // A client line without a gluepot: the daemon warns of it, which shows a <4> line.
  const client = writeKeyPair(dir, `identity-${journal}`);
  const clientsFile = join(dir, `clients-${journal}`);
  writeFileSync(clientsFile, `${client.publicLine}\n`);
  const configFile = join(dir, `netplumbd-${journal}.conf`);
  writeFileSync(configFile, baseDaemonConfig(dir));
  const logFile = join(dir, `stderr-${journal}`);
  const fd = openSync(logFile, 'w');
  const stat = fstatSync(fd);
  const stream = journal === 'this-stream' ? `${stat.dev}:${stat.ino}` : `${stat.dev}:${stat.ino + 1}`;
  const child = spawn(process.execPath, [BIN.netplumbd, `-config=${configFile}`, '-listen=127.0.0.1:0', `-hostkey=${hostKey.privateFile}`, `-clients=${clientsFile}`, ...extraArgs], {
    stdio: ['ignore', 'ignore', fd],
    env: { ...process.env, JOURNAL_STREAM: stream },
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  await waitUntil('the daemon listening, or gone', () => done || /listening on/.test(readFileSync(logFile, 'utf8')), 20_000);
  if (!done) child.kill('SIGTERM');
  const code = await exited;
  return { lines: readFileSync(logFile, 'utf8').split('\n').filter((line) => line !== ''), code };
}

test('on the journal every line carries its syslog priority, `listening on` included', { timeout: TIMEOUT_MS }, async (t) => {
  const { lines } = await daemonLines(tempDir(t, 'netplumb-journal-'), 'this-stream');
  assert.ok(lines.length >= 3, lines.join('\n'));
  for (const line of lines) assert.match(line, /^<[3467]>(error|warn|info|debug) /, line);
  assert.ok(lines.some((line) => /^<6>info listening on 127\.0\.0\.1:\d+$/.test(line)), lines.join('\n'));
  assert.ok(lines.some((line) => line.startsWith('<4>warn client may run any command')), lines.join('\n'));
  assert.ok(lines.some((line) => line.startsWith('<6>info stopped')), lines.join('\n'));
});

test('a fatal error on the journal is a <3> line', { timeout: TIMEOUT_MS }, async (t) => {
  const { lines, code } = await daemonLines(tempDir(t, 'netplumb-journal-'), 'this-stream', ['-spool=relative/spool']);
  assert.notEqual(code, 0);
  assert.ok(lines.some((line) => /^<3>error netplumbd: .*\(NP_CONFIG\)$/.test(line)), lines.join('\n'));
});

test('a usage error on the journal is a <3> line too, in the single-dash spelling', { timeout: TIMEOUT_MS }, async (t) => {
  for (const [args, message] of [
    [['-bogus'], /^<3>error netplumbd: unknown option '-bogus' \(NP_USAGE\)$/],
    [['-listen'], /^<3>error netplumbd: option '-listen <host:port>' argument missing \(NP_USAGE\)$/],
  ] as const) {
    const { lines, code } = await daemonLines(tempDir(t, 'netplumb-journal-'), 'this-stream', args);
    assert.equal(code, 2);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0] as string, message);
  }
});

test('JOURNAL_STREAM naming another stream (inherited, not ours) leaves the lines as they are on a terminal', { timeout: TIMEOUT_MS }, async (t) => {
  const { lines } = await daemonLines(tempDir(t, 'netplumb-journal-'), 'another-stream');
  for (const line of lines) assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z (error|warn|info|debug) /, line);
  assert.ok(lines.some((line) => / info listening on 127\.0\.0\.1:\d+$/.test(line)), lines.join('\n'));
});
