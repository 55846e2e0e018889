// End to end: plumb ends with the remote command's exit status, 128+N when a signal killed it, 127 when the
// command does not exist and 126 when it cannot be executed, each with the daemon and plumb as real processes.

import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { spawnSync } from 'node:child_process';
import { BIN, reportedCode, startNetplumb } from '../helpers/daemon.js';

const TIMEOUT_MS = 120_000;

test('passes on exit status 0 with the command output', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'echo fine']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'fine\n');
});

test('passes on a non-zero exit status such as 3', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'exit 3']);
  assert.equal(result.code, 3, result.stderr);
  assert.equal(reportedCode(result.stderr), undefined);
});

test('passes on exit status 255 of the command itself without a failure report', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'echo before; exit 255']);
  assert.equal(result.code, 255);
  assert.equal(result.stdout.toString(), 'before\n');
  assert.equal(reportedCode(result.stderr), undefined, result.stderr);
});

test('ends with 128+9 when the remote command is killed by SIGKILL', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'kill -KILL $$']);
  assert.equal(result.code, 128 + 9, result.stderr);
});

test('ends with 128+15 when the remote command is killed by SIGTERM', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'kill -TERM $$']);
  assert.equal(result.code, 128 + 15, result.stderr);
});

test('ends with 127 and NP_COMMAND_NOT_FOUND when the command does not exist', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['no-such-command-np-e2e', 'arg']);
  assert.equal(result.code, 127);
  assert.equal(reportedCode(result.stderr), ErrorCode.CommandNotFound);
  assert.equal(result.stdout.length, 0);
});

test('ends with 126 and NP_COMMAND_NOT_EXECUTABLE when the file cannot be executed', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const script = join(np.dir, 'not-executable.sh');
  writeFileSync(script, '#!/bin/sh\necho should not run\n');
  chmodSync(script, 0o644);
  const result = await np.plumb([script]);
  assert.equal(result.code, 126, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.CommandNotExecutable);
  assert.equal(result.stdout.length, 0);
});

test('keeps serving after a command that was not found', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const missing = await np.plumb(['no-such-command-np-e2e']);
  assert.equal(missing.code, 127);
  const next = await np.plumb(['sh', '-c', 'exit 4']);
  assert.equal(next.code, 4, next.stderr);
  assert.ok(np.daemon.running);
});

test('a command line larger than the daemon accepts in one packet is refused locally with NP_USAGE', { timeout: 120_000 }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: ['-max-packet-bytes=65536', '-max-data-payload-bytes=32768'] });
  const result = await np.plumb(['echo', 'x'.repeat(100_000)]);
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.Usage, result.stderr);
});

test('ordinary runs end without the daemon logging a lost connection', { timeout: 120_000 }, async (t) => {
  const np = await startNetplumb(t);
  for (let run = 0; run < 5; run++) {
    const result = await np.plumb(['true']);
    assert.equal(result.code, 0, result.stderr);
  }
  await np.plumb(['echo', 'last']);
  assert.ok(!np.daemon.log().includes(ErrorCode.ConnectionLost), np.daemon.log());
});

test('an unknown option is one plumb line with NP_USAGE and exit 255, as is one for netplumbd with exit 2', { timeout: 60_000 }, async () => {
  const plumb = spawnSync(process.execPath, [BIN.plumb, '-no-such-option', '127.0.0.1', 'true'], { encoding: 'utf8' });
  assert.equal(plumb.status, 255);
  assert.match(plumb.stderr, /^plumb: .+ \(NP_USAGE\)\n$/);
  const daemon = spawnSync(process.execPath, [BIN.netplumbd, '--no-such-option'], { encoding: 'utf8' });
  assert.equal(daemon.status, 2);
  assert.match(daemon.stderr, /^netplumbd: .+ \(NP_USAGE\)\n$/);
});
