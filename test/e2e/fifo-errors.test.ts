// End to end: named pipe paths that cannot be used fail with NP_ENDPOINT and one clear line (here before connecting,
// or as the daemon's refusal of Start), and no FIFO or socket plumb or the daemon made is left behind: after a
// normal end, a refused start, SIGTERM to plumb, or plumb killed outright (the daemon's side then).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode } from '../helpers/daemon.js';
import { waitUntil } from '../helpers/processes.js';
import { specialFilesIn, startEndpointNetplumb, type EndpointNetplumb } from '../helpers/endpoints.js';

const TIMEOUT_MS = 120_000;

/** Runs plumb, expects it to fail with NP_ENDPOINT in one line naming `mentions`, and returns that line. */
async function expectEndpointFailure(env: EndpointNetplumb, options: string[], mentions: string): Promise<string> {
  const result = await env.spawnPlumb(['true'], { options }).result;
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.Endpoint, result.stderr);
  // The first connection pins the daemon's key and says so; the failure is the line after that.
  const lines = result.stderr
    .trimEnd()
    .split('\n')
    .filter((line) => !line.startsWith('plumb: Permanently added'));
  assert.equal(lines.length, 1, `one line: ${result.stderr}`);
  assert.match(lines[0] ?? '', /^plumb: /);
  assert.ok(result.stderr.includes(mentions), `the message names ${mentions}: ${result.stderr}`);
  return lines[0] ?? '';
}

function assertNothingLeft(env: EndpointNetplumb): void {
  assert.deepEqual(specialFilesIn(env.local), [], 'left behind here');
  assert.deepEqual(specialFilesIn(env.spool), [], 'left behind in the spool directory');
}

test('a local -infifo or -outfifo path that cannot be used fails before connecting, with NP_ENDPOINT', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  writeFileSync(join(env.local, 'plain'), 'a regular file\n');
  const line = await expectEndpointFailure(env, ['-infifo=plain'], 'plain');
  assert.match(line, /not a named pipe/);
  assert.equal(readFileSync(join(env.local, 'plain'), 'utf8'), 'a regular file\n', 'the file is left as it was');
  await expectEndpointFailure(env, ['-outfifo=missing-dir/out'], 'missing-dir/out');
  // A path under a regular file (ENOTDIR): as root, permissions would not stop anything.
  await expectEndpointFailure(env, ['-outfifo=/etc/passwd/x'], '/etc/passwd/x');
  await expectEndpointFailure(env, ['-infifo=in', '-outfifo=plain/x'], 'plain/x');
  assert.equal(env.np.daemon.log().includes('start refused'), false, 'nothing reached the daemon');
  assertNothingLeft(env);
});

test('a remote path that cannot be used: Start refused with NP_ENDPOINT, and the local FIFOs plumb made are removed', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  // Each name works here (plumb's side) but not in the daemon's spool directory.
  writeFileSync(join(env.spool, 'plain'), 'a regular file in the spool\n');
  await expectEndpointFailure(env, ['-infifo=plain'], 'plain');
  assert.equal(readFileSync(join(env.spool, 'plain'), 'utf8'), 'a regular file in the spool\n');
  mkdirSync(join(env.local, 'sub'));
  await expectEndpointFailure(env, ['-outfifo=sub/out'], 'sub/out');
  writeFileSync(join(env.spool, 'file'), '');
  mkdirSync(join(env.local, 'file'));
  await expectEndpointFailure(env, ['-infifo=in', '-outfifo=file/out'], 'file/out');
  // A relative path may not leave the spool directory on the daemon's host.
  await expectEndpointFailure(env, ['-infifo=../escape'], '../escape');
  assert.equal(existsSync(join(env.local, '..', 'escape')), false, 'the FIFO plumb made for it is gone');
  assertNothingLeft(env);
});

test('nothing is left behind after a normal end or a refused start', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const options = ['-infifo=in', '-outfifo=out', `-socket=r.sock:${join(env.local, 'svc.sock')}`, `-local-socket=${join(env.local, 'l.sock')}:svc.sock`];
  const normal = await env.spawnPlumb(['sh', '-c', 'ls -a "$NETPLUMB_SPOOL"'], { options }).result;
  assert.equal(normal.code, 0, normal.stderr);
  // While the command ran, its FIFOs and the listening socket were there.
  assert.match(normal.stdout.toString(), /^in$/m);
  assert.match(normal.stdout.toString(), /^out$/m);
  assert.match(normal.stdout.toString(), /^r\.sock$/m);
  assertNothingLeft(env);
  const refused = await env.spawnPlumb(['no-such-command-anywhere'], { options }).result;
  assert.equal(refused.code, 127, refused.stderr);
  assertNothingLeft(env);
});

test('nothing is left behind after SIGTERM to plumb', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const options = ['-infifo=in', '-outfifo=out', `-socket=r.sock:${join(env.local, 'svc.sock')}`, `-local-socket=${join(env.local, 'l.sock')}:svc.sock`];
  const run = env.spawnPlumb(['sh', '-c', 'echo running; exec sleep 30'], { options, stdin: 'open' });
  await run.waitForStdout(/running/);
  await waitUntil('the local socket', () => existsSync(join(env.local, 'l.sock')));
  run.child.kill('SIGTERM');
  const result = await run.result;
  assert.equal(result.code, 128 + 15, result.stderr);
  await waitUntil('the daemon to clean up', () => specialFilesIn(env.spool).length === 0);
  assertNothingLeft(env);
});

test('the daemon removes what it made when plumb is killed outright', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const run = env.spawnPlumb(['sh', '-c', 'echo running; exec sleep 30'], { options: ['-infifo=in', '-outfifo=out', `-socket=r.sock:${join(env.local, 'svc.sock')}`], stdin: 'open' });
  await run.waitForStdout(/running/);
  assert.equal(specialFilesIn(env.spool).length, 3);
  run.child.kill('SIGKILL');
  await run.result;
  await waitUntil('the daemon to clean up', () => specialFilesIn(env.spool).length === 0);
});
