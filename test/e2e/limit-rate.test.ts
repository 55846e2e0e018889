// End to end: -limit-rate holds a connection to its byte rate each way, as rsync --bwlimit does: a download and an
// upload of a few MiB at 1 MiB/s take (at least) their share of seconds, and arrive whole; so does an edge of a
// recipe across machines, which goes from daemon to daemon; 0 lifts a limit the config file sets. Only a lower bound is
// asserted: a busy machine can make a run slower, never faster than the rate allows.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { reportedCode, startNetplumb } from '../helpers/daemon.js';
import { startMachines } from '../helpers/machines.js';

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

test('an edge from daemon to daemon is held to the rate too, though it never passes plumb', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  // The 3 MiB go from a to b only; plumb's own connections carry a few bytes.
  const recipe = m.recipe('edge.rcp', [`@a head -c ${3 * MIB} /dev/zero |`, '@b wc -c', ''].join('\n'));
  const started = performance.now();
  const result = await m.plumb([`-recipe=${recipe}`, '-limit-rate=1M']);
  const seconds = (performance.now() - started) / 1000;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString().trim(), String(3 * MIB));
  assert.ok(seconds >= 2.5, `the 3 MiB edge took ${seconds.toFixed(2)} s at 1 MiB/s`);
});

test("-limit-rate=0 lifts the config file's LimitRate, as rsync's --bwlimit=0", { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  mkdirSync(np.home, { recursive: true, mode: 0o700 });
  writeFileSync(join(np.home, 'config'), 'Host *\n  LimitRate 1K\n', { mode: 0o600 });
  const started = performance.now();
  const result = await np.plumb(['head', '-c', String(MIB), '/dev/zero'], { options: ['-limit-rate=0'] });
  const seconds = (performance.now() - started) / 1000;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.length, MIB);
  // At the config's 1 KiB/s this would take 17 minutes.
  assert.ok(seconds < 60, `1 MiB took ${seconds.toFixed(2)} s with the limit lifted`);
});

test('a rate that is no number of bytes per second, or below 1K (0 aside), is a usage error', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  for (const value of ['10X', 'fast', '512', '0.5K', '-1M', '']) {
    const result = await np.plumb(['true'], { options: [`-limit-rate=${value}`] });
    assert.equal(result.code, 255, `${value}: ${result.stderr}`);
    assert.equal(reportedCode(result.stderr), 'NP_USAGE', value);
  }
});
