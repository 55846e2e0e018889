// End to end: pipes that break early on either side. A remote reader that stops reading ends plumb with the
// remote status while local input is endless; a local reader that goes away makes the remote writer get
// EPIPE/SIGPIPE. Nothing hangs and no remote process is left behind.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { killMarkedAtCleanup, processesWithMarker, runProcess, uniqueMarker, waitUntil } from '../helpers/processes.js';

const TIMEOUT_MS = 120_000;
const RUN_TIMEOUT_MS = 60_000;
const SIGPIPE = 13;

/** Runs `sh -c SCRIPT` with plumb's argv as "$@"; plumb's own status is reported on stderr as plumb-status=N. */
function pipeline(script: string, plumbArgv: string[]): string[] {
  return ['sh', '-c', script, ...plumbArgv];
}

function plumbStatus(stderr: string): number | undefined {
  const match = /plumb-status=(\d+)/.exec(stderr);
  return match === null ? undefined : Number(match[1]);
}

test('yes | plumb host head -c 10 ends with the remote status and does not hang', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const [shell, ...argv] = np.plumbArgv(['head', '-c', '10']);
  const result = await runProcess(t, pipeline('yes | "$0" "$@"; echo "plumb-status=$?" >&2', [shell as string, ...argv]), {
    env: np.plumbEnv(),
    timeoutMs: RUN_TIMEOUT_MS,
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(plumbStatus(result.stderr), 0, result.stderr);
  assert.equal(result.stdout.toString(), 'y\ny\ny\ny\ny\n');
});

test('a remote reader that exits early with a status passes that status on', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const [shell, ...argv] = np.plumbArgv(['sh', '-c', 'head -c 4; exit 4']);
  const result = await runProcess(t, pipeline('yes | "$0" "$@"; echo "plumb-status=$?" >&2', [shell as string, ...argv]), {
    env: np.plumbEnv(),
    timeoutMs: RUN_TIMEOUT_MS,
  });
  assert.equal(plumbStatus(result.stderr), 4, result.stderr);
  assert.equal(result.stdout.toString(), 'y\ny\n');
});

test('plumb host yes | head -c 100: the remote writer gets SIGPIPE and nothing is left', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const marker = uniqueMarker('broken-pipe');
  killMarkedAtCleanup(t, marker);
  const [shell, ...argv] = np.plumbArgv(['yes', marker]);
  const result = await runProcess(t, pipeline('{ "$0" "$@"; echo "plumb-status=$?" >&2; } | head -c 100', [shell as string, ...argv]), {
    env: np.plumbEnv(),
    timeoutMs: RUN_TIMEOUT_MS,
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.length, 100);
  assert.ok(result.stdout.toString().startsWith(`${marker}\n`));
  // As with a local `yes | head`: the writer was ended by SIGPIPE.
  assert.equal(plumbStatus(result.stderr), 128 + SIGPIPE, result.stderr);
  await waitUntil('the remote yes to be gone', () => processesWithMarker(marker).length === 0);
});

test('plumb stdout closed by the test: plumb ends and the remote writer is gone', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const marker = uniqueMarker('closed-stdout');
  killMarkedAtCleanup(t, marker);
  const run = np.spawnPlumb(['yes', marker], { stdout: 'stream', stdin: 'open', timeoutMs: RUN_TIMEOUT_MS });
  const stdout = run.child.stdout!;
  await new Promise<void>((resolve) => stdout.once('data', () => resolve()));
  await waitUntil('the remote yes to run', () => processesWithMarker(marker).length > 0);
  stdout.destroy();
  const result = await run.result;
  assert.notEqual(result.code, 0);
  assert.notEqual(result.code, null, 'plumb must exit by itself, not be killed');
  await waitUntil('the remote yes to be gone', () => processesWithMarker(marker).length === 0);
  assert.ok(np.daemon.running);
});
