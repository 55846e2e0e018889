// End to end: the remote command's stderr arrives on plumb's stderr and its stdout on plumb's stdout, never
// mixed, also when both carry a lot at once and when stderr goes on after stdout has been closed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { deterministicSha256, GENERATOR_SCRIPT, hashStream } from '../helpers/payloads.js';

const TIMEOUT_MS = 120_000;

/** Removes plumb's own notes (the -accept-new line) so only the remote command's stderr is left. */
function remoteStderr(stderr: string): string {
  return stderr
    .split('\n')
    .filter((line) => !line.startsWith('plumb: '))
    .join('\n');
}

test('stdout and stderr of the remote command stay apart', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'echo to-out; echo to-err >&2; echo more-out; echo more-err >&2']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'to-out\nmore-out\n');
  assert.equal(remoteStderr(result.stderr), 'to-err\nmore-err\n');
});

test('large volumes on stdout and stderr at once each arrive whole on their own stream', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // Pin the host key first, so plumb itself writes nothing to stderr in the run that counts.
  assert.equal((await np.plumb(['true'])).code, 0);
  const bytes = 8 * 1024 * 1024;
  // Two generators at once: one stream to stdout, another to stderr.
  const generate = '"$0" -e "$1" out "$2" & "$0" -e "$1" err "$2" >&2; wait';
  const run = np.spawnPlumb(['sh', '-c', generate, process.execPath, GENERATOR_SCRIPT, String(bytes)], {
    acceptNew: false,
    stdout: 'stream',
    stderr: 'stream',
  });
  const [out, err, result] = await Promise.all([hashStream(run.child.stdout!), hashStream(run.child.stderr!), run.result]);
  assert.equal(result.code, 0);
  assert.equal(out.bytes, bytes);
  assert.equal(out.sha256, deterministicSha256('out', bytes));
  assert.equal(err.bytes, bytes);
  assert.equal(err.sha256, deterministicSha256('err', bytes));
});

test('stderr written after stdout was closed still arrives', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'echo last-out; exec 1>&-; sleep 0.3; echo late-err >&2; exit 6']);
  assert.equal(result.code, 6, result.stderr);
  assert.equal(result.stdout.toString(), 'last-out\n');
  assert.equal(remoteStderr(result.stderr), 'late-err\n');
});

test('stdout written after stderr was closed still arrives', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'echo first-err >&2; exec 2>&-; sleep 0.3; echo late-out']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'late-out\n');
  assert.equal(remoteStderr(result.stderr), 'first-err\n');
});
