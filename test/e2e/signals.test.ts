// End to end: SIGINT, SIGTERM and SIGHUP sent to plumb reach the remote command, which reports each and exits
// with its own status; a third SIGINT gives up on a command that ignores them, and nothing is left running.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode, startNetplumb } from '../helpers/daemon.js';
import { killMarkedAtCleanup, processesWithMarker, uniqueMarker, waitUntil } from '../helpers/processes.js';

const TIMEOUT_MS = 120_000;

/**
 * A remote command that reports the signals it gets on stdout: SIGINT exits 7, SIGTERM 8, SIGHUP 9, unless
 * argv[2] is `ignore`, in which case it only reports them. Prints `ready` once its handlers are in place.
 * argv[1] is a marker, so the test can find the process.
 */
const REPORTER = [
  "const ignore=process.argv[2]==='ignore';",
  "const codes={SIGINT:7,SIGTERM:8,SIGHUP:9};",
  'for(const [name,code] of Object.entries(codes)){process.on(name,()=>{',
  "process.stdout.write('got-'+name+'\\n',()=>{if(!ignore)process.exit(code)})})}",
  "process.stdout.write('ready\\n');setInterval(()=>{},1000);",
].join('');

function reporter(marker: string, mode: 'exit' | 'ignore' = 'exit'): string[] {
  return [process.execPath, '-e', REPORTER, marker, mode];
}

for (const [signal, code] of [
  ['SIGINT', 7],
  ['SIGTERM', 8],
  ['SIGHUP', 9],
] as const) {
  test(`${signal} sent to plumb reaches the remote command`, { timeout: TIMEOUT_MS }, async (t) => {
    const np = await startNetplumb(t);
    const marker = uniqueMarker('signal');
    killMarkedAtCleanup(t, marker);
    const run = np.spawnPlumb(reporter(marker), { stdin: 'open' });
    await run.waitForStdout(/ready\n/);
    run.child.kill(signal);
    const result = await run.result;
    assert.equal(result.stdout.toString(), `ready\ngot-${signal}\n`);
    assert.equal(result.code, code, result.stderr);
    await waitUntil('the remote command to be gone', () => processesWithMarker(marker).length === 0);
  });
}

test('a signal that kills the remote command makes plumb end with 128+N', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const marker = uniqueMarker('signal-default');
  killMarkedAtCleanup(t, marker);
  // No handler: the default action of SIGTERM ends the command.
  const run = np.spawnPlumb([process.execPath, '-e', "process.stdout.write('ready\\n');setInterval(()=>{},1000)", marker], {
    stdin: 'open',
  });
  await run.waitForStdout(/ready\n/);
  run.child.kill('SIGTERM');
  const result = await run.result;
  assert.equal(result.code, 128 + 15, result.stderr);
});

test('the third SIGINT ends plumb when the remote command ignores them, and the command is ended too', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const marker = uniqueMarker('signal-ignored');
  killMarkedAtCleanup(t, marker);
  const run = np.spawnPlumb(reporter(marker, 'ignore'), { stdin: 'open' });
  await run.waitForStdout(/ready\n/);
  for (let count = 1; count <= 2; count++) {
    run.child.kill('SIGINT');
    await run.waitForStdout(new RegExp(`^ready\\n(got-SIGINT\\n){${count}}$`));
  }
  run.child.kill('SIGINT');
  const result = await run.result;
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.ConnectionLost);
  await waitUntil('the remote command to be gone', () => processesWithMarker(marker).length === 0, 15_000);
  assert.ok(np.daemon.running);
});

test('when plumb is killed outright, the daemon ends the remote command with its whole process group', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const marker = uniqueMarker('plumb-killed');
  killMarkedAtCleanup(t, marker);
  const run = np.spawnPlumb(['sh', '-c', `sh -c 'sleep 300; : ${marker}-background' & echo ready; sleep 300; : ${marker}`], { stdin: 'open' });
  await run.waitForStdout(/ready\n/);
  await waitUntil('the command and its background job to run', () => processesWithMarker(marker).length >= 3, 15_000); // plumb, the command, its background job
  run.child.kill('SIGKILL');
  await run.result;
  await waitUntil('the remote process group to be gone', () => processesWithMarker(marker).length === 0, 15_000);
  assert.ok(np.daemon.running);
});
