// End to end: plumb -v ends with one line saying what the connection carried each way on the wire, for how long,
// and with which cipher; without -v, no such line.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';

const TIMEOUT_MS = 60_000;
const SUMMARY = /^plumb: (\d+) bytes sent, (\d+) bytes received in (\d+\.\d\d) s, cipher ([a-z0-9-]+)$/;

test('-v ends with the bytes each way, the time connected and the cipher', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb(['sh', '-c', 'head -c 200000 /dev/zero; wc -c >&2'], { options: ['-v'], stdin: Buffer.alloc(50_000, 1) });
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stderr.trimEnd().split('\n');
  const match = SUMMARY.exec(lines.at(-1) ?? '');
  assert.ok(match !== null, result.stderr);
  const [, sent, received, , cipher] = match;
  // The bytes on the wire: at least the payload each way, framing and encryption on top.
  assert.ok(Number(sent) >= 50_000, `sent ${sent}`);
  assert.ok(Number(received) >= 200_000, `received ${received}`);
  assert.equal(cipher, 'aes-256-gcm');

  const quiet = await np.plumb(['true']);
  assert.doesNotMatch(quiet.stderr, /bytes sent/);
});
