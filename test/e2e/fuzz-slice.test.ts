// End to end: a short seeded slice of the fuzz suite (scripts/fuzz/, `npm run fuzz` in full). A real netplumbd gets
// mutated packets for a few seconds before authentication and a few after; it must not crash, must answer only
// with well-formed packets and known error codes, and must still serve a real plumb afterwards.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isErrorCode } from '../../protocol/errors.js';
import { formatReport } from '../../scripts/fuzz/report.js';
import { DEFAULT_FUZZ_OPTIONS, runFuzz } from '../../scripts/fuzz/run.js';

/** Each fuzzer runs this long; the whole test takes about twice that plus a daemon start and a plumb run. */
const SECONDS_PER_FUZZER = 12;
const TIMEOUT_MS = 240_000;
const SEED = 2026;

/** The codes of `status:CODE` replies (and of Error packets) that are not among the project's error codes. */
function unknownCodes(counts: Readonly<Record<string, number>>): string[] {
  return Object.keys(counts)
    .map((key) => key.split(':')[1] ?? key)
    .filter((code) => code.startsWith('NP_') && !isErrorCode(code));
}

test('a seeded fuzz slice leaves netplumbd running and serving plumb', { timeout: TIMEOUT_MS }, async () => {
  const report = await runFuzz({ ...DEFAULT_FUZZ_OPTIONS, seed: SEED, seconds: SECONDS_PER_FUZZER });
  const details = formatReport(report);
  assert.equal(report.daemon.crashes, 0, details);
  assert.ok(report.pre.inputs > 0 && report.post.inputs > 0, details);
  assert.ok(report.post.fatalClosed > 0, details);
  assert.equal(report.pre.badReplies, 0, details);
  assert.equal(report.pre.stuck, 0, details);
  assert.equal(report.post.replyTimeouts, 0, details);
  assert.deepEqual(report.post.unknownCodes, {}, details);
  assert.deepEqual(unknownCodes(report.post.startReplies), [], details);
  assert.deepEqual(unknownCodes(report.post.mintReplies), [], details);
  assert.deepEqual(unknownCodes(report.pre.errorCodes), [], details);
  assert.equal(report.daemon.log.internalErrors, 0, details);
  assert.ok(report.finalPlumb.ran, details);
  assert.equal(report.finalPlumb.code, 0, details);
  assert.equal(report.daemon.stopped?.code, 0, details);
});
