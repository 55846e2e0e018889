// End to end: `plumb host cmd | slow-reader` delivers every byte. When the command ends while plumb's stdout pipe
// is full, plumb must wait until its last output has been written before it exits.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { deterministicSha256, GENERATOR_SCRIPT } from '../helpers/payloads.js';
import { runProcess } from '../helpers/processes.js';

const TIMEOUT_MS = 120_000;

/** A remote `head -c` of the seed's stream: head's small writes leave a short last chunk, the case that got lost. */
function headOfStream(seed: string, bytes: number): string[] {
  return ['sh', '-c', '"$0" -e "$1" "$2" | head -c "$3"', process.execPath, GENERATOR_SCRIPT, seed, String(bytes)];
}

/**
 * `node -e SLOW_READER PAUSE_MS START_DELAY_MS` reads stdin, pausing after every chunk, and prints
 * `BYTES SHA256` at its end.
 */
const SLOW_READER = [
  "const h=require('crypto').createHash('sha256');let n=0;",
  'const pause=Number(process.argv[1]),start=Number(process.argv[2]);',
  "process.stdin.pause();setTimeout(()=>{process.stdin.on('data',(c)=>{n+=c.length;h.update(c);",
  'process.stdin.pause();setTimeout(()=>process.stdin.resume(),pause)});process.stdin.resume()},start);',
  "process.stdin.on('end',()=>console.log(n+' '+h.digest('hex')));",
].join('');

/** Runs `plumb ... | slow reader` through sh (a real pipe, as a user's shell makes it); returns plumb's status too. */
async function throughSlowReader(
  t: { after(fn: () => unknown): void },
  np: Netplumb,
  command: string[],
  pauseMs: number,
  startDelayMs: number,
): Promise<{ plumbStatus: number; bytes: number; sha256: string }> {
  const script = '{ "$@"; echo "plumb-status=$?" >&2; } | "$0" -e "$SLOW_READER" "$PAUSE_MS" "$START_DELAY_MS"';
  const result = await runProcess(t, ['sh', '-c', script, process.execPath, ...np.plumbArgv(command)], {
    env: { ...np.plumbEnv(), SLOW_READER, PAUSE_MS: String(pauseMs), START_DELAY_MS: String(startDelayMs) },
  });
  assert.equal(result.code, 0, result.stderr);
  const status = /plumb-status=(\d+)/.exec(result.stderr)?.[1];
  assert.ok(status !== undefined, result.stderr);
  const [bytes, sha256] = result.stdout.toString().trim().split(' ');
  return { plumbStatus: Number(status), bytes: Number(bytes), sha256: sha256 ?? '' };
}

test('a slow local reader receives all of the output', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const bytes = 1024 * 1024;
  // The loss this guards against depends on timing: a few runs make it show reliably.
  for (let run = 0; run < 4; run++) {
    const seed = `slow-reader-${run}`;
    const received = await throughSlowReader(t, np, headOfStream(seed, bytes), 10, 0);
    assert.equal(received.plumbStatus, 0);
    assert.equal(received.bytes, bytes, `run ${run}`);
    assert.equal(received.sha256, deterministicSha256(seed, bytes));
  }
});

test('output still queued when the command ends reaches a reader that starts late', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const bytes = 1024 * 1024;
  const seed = 'late-reader';
  const received = await throughSlowReader(t, np, headOfStream(seed, bytes), 20, 500);
  assert.equal(received.plumbStatus, 0);
  assert.equal(received.bytes, bytes);
  assert.equal(received.sha256, deterministicSha256(seed, bytes));
});
