// End to end: netplumbd gets SIGTERM while a session runs. A command that ends within the shutdown grace period
// finishes normally, its client getting the status and output however late it reads them; one that does not is
// ended (SIGTERM, then SIGKILL after the kill grace). The daemon exits within those bounds, stops accepting at
// once, and leaves no process of any session behind.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode, startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { killMarkedAtCleanup, processesWithMarker, uniqueMarker, waitUntil, type RunningProcess } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 120_000;
const SHUTDOWN_GRACE_MS = 1500;
const KILL_GRACE_MS = 1000;
/** Room for a loaded machine on top of the configured grace periods. */
const SLACK_MS = 8000;
const GRACE_ARGS = [`-shutdown-grace-ms=${SHUTDOWN_GRACE_MS}`, `-kill-grace-ms=${KILL_GRACE_MS}`];

/** A long-running command; `ignore-term` makes it ignore SIGTERM. argv[1] is a marker to find it by. */
const LINGERER = [
  "if(process.argv[2]==='ignore-term')process.on('SIGTERM',()=>process.stdout.write('ignored-term\\n'));",
  "process.stdout.write('ready\\n');setInterval(()=>{},1000);",
].join('');

test('a command that ends within the grace period finishes normally', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: ['-shutdown-grace-ms=20000'] });
  const run = np.spawnPlumb(['sh', '-c', 'echo started; sleep 1; echo done; exit 3'], { stdin: 'open' });
  await run.waitForStdout(/started\n/);
  np.daemon.kill('SIGTERM');
  const result = await run.result;
  assert.equal(result.code, 3, result.stderr);
  assert.equal(result.stdout.toString(), 'started\ndone\n');
  const exit = await np.daemon.exited;
  assert.equal(exit.code, 0);
});

test('a command still running after the grace period is ended and the daemon exits in time', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: GRACE_ARGS });
  const marker = uniqueMarker('sigterm-running');
  killMarkedAtCleanup(t, marker);
  const run = np.spawnPlumb([process.execPath, '-e', LINGERER, marker], { stdin: 'open' });
  await run.waitForStdout(/ready\n/);
  const started = Date.now();
  np.daemon.kill('SIGTERM');
  const exit = await np.daemon.exited;
  const tookMs = Date.now() - started;
  assert.equal(exit.code, 0);
  assert.ok(tookMs >= SHUTDOWN_GRACE_MS - 100, `daemon ended after ${tookMs} ms, before the grace period`);
  assert.ok(tookMs < SHUTDOWN_GRACE_MS + KILL_GRACE_MS + SLACK_MS, `daemon took ${tookMs} ms`);
  const result = await run.result;
  // The daemon's SIGTERM ended the command, and plumb says so as a local shell would.
  assert.equal(result.code, 128 + 15, result.stderr);
  assert.equal(result.stdout.toString(), 'ready\n');
  assert.deepEqual(processesWithMarker(marker), []);
});

test('a command that ignores SIGTERM is killed after the kill grace period', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: GRACE_ARGS });
  const marker = uniqueMarker('sigterm-ignored');
  killMarkedAtCleanup(t, marker);
  const run = np.spawnPlumb([process.execPath, '-e', LINGERER, marker, 'ignore-term'], { stdin: 'open' });
  await run.waitForStdout(/ready\n/);
  const started = Date.now();
  np.daemon.kill('SIGTERM');
  const exit = await np.daemon.exited;
  const tookMs = Date.now() - started;
  assert.equal(exit.code, 0);
  assert.ok(tookMs < SHUTDOWN_GRACE_MS + KILL_GRACE_MS + SLACK_MS, `daemon took ${tookMs} ms`);
  const result = await run.result;
  assert.equal(result.code, 128 + 9, result.stderr);
  assert.equal(result.stdout.toString(), 'ready\nignored-term\n');
  assert.deepEqual(processesWithMarker(marker), []);
});

test('the daemon stops accepting connections as soon as it gets SIGTERM', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: ['-shutdown-grace-ms=20000'] });
  const marker = uniqueMarker('sigterm-accept');
  killMarkedAtCleanup(t, marker);
  const running = np.spawnPlumb(['sh', '-c', 'echo ready; sleep 2; echo done', marker], { stdin: 'open' });
  await running.waitForStdout(/ready\n/);
  np.daemon.kill('SIGTERM');
  await np.daemon.waitForLog(/shutting down/);
  const late = await np.plumb(['echo', 'should-not-run']);
  assert.equal(late.code, 255);
  assert.ok(
    [ErrorCode.ConnectFailed, ErrorCode.ConnectionLost, ErrorCode.ShuttingDown].includes(reportedCode(late.stderr) as never),
    late.stderr,
  );
  assert.equal(late.stdout.toString(), '');
  const first = await running.result;
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout.toString(), 'ready\ndone\n');
  await waitUntil('the daemon to exit', () => !np.daemon.running, 15_000);
});

/**
 * Runs a command that prints `ready`, waits for the returned file to appear, then prints `done` and exits 0; plumb is
 * stopped (SIGSTOP) before the command ends, so the command's output and Exit wait unread in plumb's socket.
 */
async function commandEndedBehindStoppedPlumb(t: Scope, np: Netplumb): Promise<RunningProcess> {
  const go = join(tempDir(t), 'go');
  const run = np.spawnPlumb(['sh', '-c', 'echo ready; until [ -e "$0" ]; do sleep 0.05; done; echo done', go], { stdin: 'open' });
  await run.waitForStdout(/ready\n/);
  run.child.kill('SIGSTOP');
  writeFileSync(go, '');
  // Logged as the Exit goes out: from here the daemon waits for this plumb's Goodbye.
  await np.daemon.waitForLog(/command ended/);
  return run;
}

test("a command that ended before SIGTERM keeps its session until its client's Goodbye", { timeout: TIMEOUT_MS }, async (t) => {
  const graceMs = 20_000;
  const np = await startNetplumb(t, { daemonArgs: [`-shutdown-grace-ms=${graceMs}`] });
  const running = await commandEndedBehindStoppedPlumb(t, np);
  const started = Date.now();
  np.daemon.kill('SIGTERM');
  await np.daemon.waitForLog(/shutting down/);
  running.child.kill('SIGCONT');
  const result = await running.result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'ready\ndone\n');
  const exit = await np.daemon.exited;
  assert.equal(exit.code, 0);
  // Ended by plumb's Goodbye, not torn down by the daemon, which then did not wait out the grace period.
  assert.doesNotMatch(np.daemon.log(), new RegExp(ErrorCode.ShuttingDown));
  assert.ok(Date.now() - started < graceMs, `daemon took ${Date.now() - started} ms`);
});

test('a client that reads only after the daemon has gone still gets the status and output of a command that ended', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: GRACE_ARGS });
  const running = await commandEndedBehindStoppedPlumb(t, np);
  np.daemon.kill('SIGTERM');
  const exit = await np.daemon.exited;
  assert.equal(exit.code, 0);
  // The daemon gave up waiting for the Goodbye: NP_SHUTTING_DOWN now follows the Exit in plumb's socket.
  assert.match(np.daemon.log(), new RegExp(ErrorCode.ShuttingDown));
  running.child.kill('SIGCONT');
  const result = await running.result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'ready\ndone\n');
});
