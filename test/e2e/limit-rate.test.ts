// End to end: -limit-rate holds a connection to its byte rate each way, as rsync --bwlimit does: a download and an
// upload of a few MiB at 1 MiB/s take (at least) their share of seconds, and arrive whole. Only a lower bound is
// asserted: a busy machine can make a run slower, never faster than the rate allows.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reportedCode, startNetplumb } from '../helpers/daemon.js';

const TIMEOUT_MS = 120_000;
const MIB = 1024 * 1024;

test('a download at -limit-rate=1M takes its share of seconds and arrives whole', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const started = performance.now();
  const result = await np.plumb(['head', '-c', String(3 * MIB), '/dev/zero'], { options: ['-limit-rate=1M'] });
  const seconds = (performance.now() - started) / 1000;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.length, 3 * MIB);
  // 3 MiB at 1 MiB/s: 3 s, less the 50 ms burst and some slack for the packets' framing counted with the bytes.
  assert.ok(seconds >= 2.5, `3 MiB took ${seconds.toFixed(2)} s at 1 MiB/s`);
});

test('an upload at -limit-rate=1M takes its share of seconds and arrives whole', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const started = performance.now();
  const result = await np.plumb(['wc', '-c'], { options: ['-limit-rate=1M'], stdin: Buffer.alloc(2 * MIB, 7) });
  const seconds = (performance.now() - started) / 1000;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString().trim(), String(2 * MIB));
  assert.ok(seconds >= 1.6, `2 MiB took ${seconds.toFixed(2)} s at 1 MiB/s`);
});

test('a rate that is no number of bytes per second, or below 1K, is a usage error', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  for (const value of ['0', '10X', 'fast', '512', '-1M', '']) {
    const result = await np.plumb(['true'], { options: [`-limit-rate=${value}`] });
    assert.equal(result.code, 255, `${value}: ${result.stderr}`);
    assert.equal(reportedCode(result.stderr), 'NP_USAGE', value);
  }
});
