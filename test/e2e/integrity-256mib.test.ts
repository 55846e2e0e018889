// End to end: 256 MiB cross plumb byte-exact in each direction, checked by SHA-256: uploaded into a remote
// sha256sum, downloaded from a remote `head -c` of a deterministic stream, and round-tripped through remote cat.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { deterministicSha256, deterministicStream, GENERATOR_SCRIPT, hashStream } from '../helpers/payloads.js';

const BYTES = 256 * 1024 * 1024;
const TIMEOUT_MS = 300_000;
const RUN_TIMEOUT_MS = 240_000;

test('uploads 256 MiB byte-exact into a remote sha256sum', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const seed = 'upload-256';
  const result = await np.plumb(['sha256sum'], { stdin: deterministicStream(seed, BYTES), timeoutMs: RUN_TIMEOUT_MS });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), `${deterministicSha256(seed, BYTES)}  -\n`);
});

test('downloads 256 MiB byte-exact from a remote head -c of a deterministic stream', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const seed = 'download-256';
  const run = np.spawnPlumb(['sh', '-c', '"$0" -e "$1" "$2" | head -c "$3"', process.execPath, GENERATOR_SCRIPT, seed, String(BYTES)], {
    stdout: 'stream',
    timeoutMs: RUN_TIMEOUT_MS,
  });
  const [received, result] = await Promise.all([hashStream(run.child.stdout!), run.result]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(received.bytes, BYTES);
  assert.equal(received.sha256, deterministicSha256(seed, BYTES));
});

test('round-trips 256 MiB byte-exact through a remote cat', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const seed = 'round-trip-256';
  const run = np.spawnPlumb(['cat'], { stdin: deterministicStream(seed, BYTES), stdout: 'stream', timeoutMs: RUN_TIMEOUT_MS });
  const [received, result] = await Promise.all([hashStream(run.child.stdout!), run.result]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(received.bytes, BYTES);
  assert.equal(received.sha256, deterministicSha256(seed, BYTES));
});
