// End to end: a replicated named pipe whose far reader is slow holds its writer back instead of buffering: the
// resident memory of netplumbd and plumb stays bounded while 256 MiB go through a late, slow reader, in each
// direction. And a stalled -outfifo reader never stalls the command's stdout.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { deterministicSha256, GENERATOR_SCRIPT } from '../helpers/payloads.js';
import { spawnProcess, waitUntil } from '../helpers/processes.js';
import { HASH_READER, hashFrom, mkfifo, parseHashLine, startEndpointNetplumb, watchRss, writeSeedInto } from '../helpers/endpoints.js';

const BYTES = 256 * 1024 * 1024;
/** Far above what the windows and buffers need, far below the 256 MiB that would show up if a side buffered. */
const RSS_LIMIT_BYTES = 200 * 1024 * 1024;
const TIMEOUT_MS = 300_000;
const RUN_TIMEOUT_MS = 240_000;

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

test('-outfifo: a late, slow local reader holds the remote writer back; daemon and plumb memory stay bounded', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const seed = 'outfifo-slow-256';
  mkfifo(join(env.local, 'out'));
  const run = env.spawnPlumb(['sh', '-c', '"$0" -e "$1" "$2" "$3" > "$NETPLUMB_SPOOL/out"', process.execPath, GENERATOR_SCRIPT, seed, String(BYTES)], {
    options: ['-outfifo=out'],
    timeoutMs: RUN_TIMEOUT_MS,
  });
  const rss = watchRss({ daemon: env.np.daemon.pid, plumb: run.child.pid as number });
  // Nobody reads for 3 s, then 64 KiB chunks with a pause after each.
  const reader = hashFrom(t, join(env.local, 'out'), { startDelayMs: 3000, pauseMs: 1, timeoutMs: RUN_TIMEOUT_MS });
  const [result, read] = await Promise.all([run.result, reader.result]);
  const peaks = rss.stop();
  t.diagnostic(`peak RSS: netplumbd ${mib(peaks['daemon'] ?? 0)}, plumb ${mib(peaks['plumb'] ?? 0)}`);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(parseHashLine(read.stdout), { bytes: BYTES, sha256: deterministicSha256(seed, BYTES) });
  assert.ok((peaks['daemon'] ?? 0) > 0 && (peaks['plumb'] ?? 0) > 0, 'memory was sampled');
  assert.ok((peaks['daemon'] ?? 0) < RSS_LIMIT_BYTES, `netplumbd peaked at ${mib(peaks['daemon'] ?? 0)}`);
  assert.ok((peaks['plumb'] ?? 0) < RSS_LIMIT_BYTES, `plumb peaked at ${mib(peaks['plumb'] ?? 0)}`);
});

test('-infifo: a slow remote reader holds the local writer back; daemon and plumb memory stay bounded', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const seed = 'infifo-slow-256';
  mkfifo(join(env.local, 'in'));
  const writer = writeSeedInto(t, join(env.local, 'in'), seed, BYTES, RUN_TIMEOUT_MS);
  const run = env.spawnPlumb(['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/in" 1 3000', process.execPath, HASH_READER], {
    options: ['-infifo=in'],
    timeoutMs: RUN_TIMEOUT_MS,
  });
  const rss = watchRss({ daemon: env.np.daemon.pid, plumb: run.child.pid as number });
  const [result, written] = await Promise.all([run.result, writer.result]);
  const peaks = rss.stop();
  t.diagnostic(`peak RSS: netplumbd ${mib(peaks['daemon'] ?? 0)}, plumb ${mib(peaks['plumb'] ?? 0)}`);
  assert.equal(written.code, 0, written.stderr);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(parseHashLine(result.stdout), { bytes: BYTES, sha256: deterministicSha256(seed, BYTES) });
  assert.ok((peaks['daemon'] ?? 0) < RSS_LIMIT_BYTES, `netplumbd peaked at ${mib(peaks['daemon'] ?? 0)}`);
  assert.ok((peaks['plumb'] ?? 0) < RSS_LIMIT_BYTES, `plumb peaked at ${mib(peaks['plumb'] ?? 0)}`);
});

test('stdout keeps flowing while the local reader of an -outfifo is stalled', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const fifo = join(env.local, 'out');
  mkfifo(fifo);
  const fifoBytes = 64 * 1024 * 1024;
  const stdoutBytes = 32 * 1024 * 1024;
  // A reader that opens the FIFO and reads nothing until it is told to, then counts what it gets.
  const reader = spawnProcess(t, ['sh', '-c', 'exec 3<"$0"; read go; wc -c <&3', fifo], { stdin: 'open', timeoutMs: RUN_TIMEOUT_MS });
  const script = '"$0" -e "$1" fifo-side "$2" > "$NETPLUMB_SPOOL/out" & "$0" -e "$1" stdout-side "$3"; echo stdout-done >&2; wait';
  const run = env.spawnPlumb(['sh', '-c', script, process.execPath, GENERATOR_SCRIPT, String(fifoBytes), String(stdoutBytes)], {
    options: ['-outfifo=out'],
    stdout: 'stream',
    timeoutMs: RUN_TIMEOUT_MS,
  });
  const hash = createHash('sha256');
  let received = 0;
  const stdoutEnded = new Promise<void>((resolve) => {
    run.child.stdout?.on('data', (chunk: Buffer) => {
      received += chunk.length;
      hash.update(chunk);
    });
    run.child.stdout?.once('end', () => resolve());
  });
  await run.waitForStderr(/stdout-done/, 60_000);
  // Everything the command printed arrives while the FIFO round is still held back.
  await waitUntil('all of stdout', () => received === stdoutBytes, 30_000);
  assert.equal(run.child.exitCode, null, 'plumb waits for the FIFO round');
  assert.equal(reader.child.exitCode, null);
  reader.child.stdin?.end('go\n');
  const [result, read] = await Promise.all([run.result, reader.result, stdoutEnded]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(received, stdoutBytes);
  assert.equal(hash.digest('hex'), deterministicSha256('stdout-side', stdoutBytes));
  assert.equal(read.stdout.toString().trim(), String(fifoBytes));
});
