// End to end: netplumbd SIGKILLed while a command runs. plumb must end with 255 and a failure code, never 0,
// whether data was flowing to it, from it, or not at all; a command that was moving data ends with its pipes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reportedCode, startNetplumb } from '../helpers/daemon.js';
import { deterministicStream, generatorCommand } from '../helpers/payloads.js';
import { killMarkedAtCleanup, processesWithMarker, uniqueMarker, waitUntil } from '../helpers/processes.js';

const TIMEOUT_MS = 120_000;
/** Failures plumb may report when the daemon vanishes (between packets, or inside one). */
const LOST_CODES = ['NP_CONNECTION_LOST', 'NP_TRUNCATED'];

test('plumb exits 255 when the daemon is killed during a download', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const marker = uniqueMarker('killed-download');
  killMarkedAtCleanup(t, marker);
  const run = np.spawnPlumb([...generatorCommand(marker)], { stdout: 'stream', stdin: 'open' });
  let received = 0;
  run.child.stdout?.on('data', (chunk: Buffer) => (received += chunk.length));
  await waitUntil('1 MiB to arrive', () => received >= 1024 * 1024, 30_000);
  np.daemon.kill('SIGKILL');
  const result = await run.result;
  assert.equal(result.code, 255, result.stderr);
  assert.ok(LOST_CODES.includes(reportedCode(result.stderr) ?? ''), result.stderr);
  await waitUntil('the orphaned generator to be gone', () => processesWithMarker(marker).length === 0, 15_000);
});

test('plumb exits 255 when the daemon is killed during an upload', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const marker = uniqueMarker('killed-upload');
  killMarkedAtCleanup(t, marker);
  // More than can flow before the kill; the stream is dropped when plumb ends.
  const input = deterministicStream('killed-upload', 8 * 1024 * 1024 * 1024);
  let sent = 0;
  input.on('data', (chunk: Buffer) => (sent += chunk.length));
  const run = np.spawnPlumb(['sh', '-c', 'cat >/dev/null; echo finished', marker], { stdin: input });
  await waitUntil('4 MiB to be sent', () => sent >= 4 * 1024 * 1024, 30_000);
  np.daemon.kill('SIGKILL');
  const result = await run.result;
  assert.equal(result.code, 255, result.stderr);
  assert.ok(LOST_CODES.includes(reportedCode(result.stderr) ?? ''), result.stderr);
  assert.equal(result.stdout.toString(), '');
  await waitUntil('the orphaned reader to be gone', () => processesWithMarker(marker).length === 0, 15_000);
});

test('plumb exits 255 when the daemon is killed while the command is quiet', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const marker = uniqueMarker('killed-quiet');
  killMarkedAtCleanup(t, marker);
  const run = np.spawnPlumb(['sh', '-c', 'echo ready; exec sleep 60', marker], { stdin: 'open' });
  await run.waitForStdout(/ready\n/);
  np.daemon.kill('SIGKILL');
  const result = await run.result;
  assert.equal(result.code, 255, result.stderr);
  assert.ok(LOST_CODES.includes(reportedCode(result.stderr) ?? ''), result.stderr);
});
