// End to end: the end of plumb's stdin reaches the remote command as EOF (a half close: its output still flows
// afterwards), and a remote command that does not read stdin does not keep plumb waiting for local EOF.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { deterministicBytes } from '../helpers/payloads.js';

const TIMEOUT_MS = 120_000;

test('an empty stdin reaches the remote command as EOF at once', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['wc', '-c']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString().trim(), '0');
});

test('the remote command keeps writing after it has seen EOF on stdin', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'cat; sleep 0.2; echo after-eof; echo on-stderr >&2'], { stdin: 'some input\n' });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'some input\nafter-eof\n');
  assert.match(result.stderr, /on-stderr\n/);
});

test('every byte of stdin arrives before EOF', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const input = deterministicBytes('stdin-eof', 5 * 1024 * 1024 + 123);
  const result = await np.plumb(['wc', '-c'], { stdin: input });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString().trim(), String(input.length));
});

test('EOF arrives when stdin ends later, after the command has been waiting', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const run = np.spawnPlumb(['sh', '-c', 'echo started; cat; echo saw-eof'], { stdin: 'open' });
  await run.waitForStdout(/started\n/);
  run.child.stdin?.write('late line\n');
  await run.waitForStdout(/late line\n/);
  run.child.stdin?.end();
  const result = await run.result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'started\nlate line\nsaw-eof\n');
});

test('a command that never reads stdin ends plumb while local stdin stays open', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const run = np.spawnPlumb(['sh', '-c', 'echo no-read; exit 5'], { stdin: 'open', timeoutMs: 30_000 });
  const result = await run.result;
  assert.equal(result.code, 5, result.stderr);
  assert.equal(result.stdout.toString(), 'no-read\n');
});

test('a command that closes its stdin early still ends normally while input keeps coming', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const run = np.spawnPlumb(['sh', '-c', 'exec 0<&-; sleep 0.3; echo closed-early'], { stdin: 'open', timeoutMs: 30_000 });
  const stdin = run.child.stdin!;
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  // Keep input flowing, bounded, until plumb ends.
  const feeder = setInterval(() => {
    if (stdin.writable && stdin.writableLength < 1024 * 1024) stdin.write(chunk);
  }, 5);
  t.after(() => clearInterval(feeder));
  const result = await run.result;
  clearInterval(feeder);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'closed-early\n');
});
