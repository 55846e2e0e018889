// End to end: input for a command on a pseudo-terminal is held back while the command does not read it. 300 MiB
// piped into `plumb -t` for a remote `sleep` never makes the daemon's memory grow with it.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { delay, killGroup } from '../helpers/processes.js';

const RSS_LIMIT_BYTES = 200 * 1024 * 1024;

function rssBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

test('300 MiB piped into plumb -t for a command that does not read keeps the daemon small', { timeout: 120_000 }, async (t) => {
  const np = await startNetplumb(t);
  const argv = np.plumbArgv(['-t', 'sleep', '30']);
  const pipeline = spawn('sh', ['-c', 'head -c 300M /dev/zero | "$0" "$@"', ...argv], { env: np.plumbEnv(), stdio: 'ignore', detached: true });
  t.after(() => killGroup(pipeline.pid as number, 'SIGKILL'));
  let peak = 0;
  // Five seconds of sampling: long enough for 300 MiB to arrive if nothing held it back.
  for (let sample = 0; sample < 50; sample++) {
    peak = Math.max(peak, rssBytes(np.daemon.pid));
    await delay(100);
  }
  assert.ok(peak < RSS_LIMIT_BYTES, `daemon RSS peaked at ${Math.round(peak / 2 ** 20)} MiB`);
  assert.ok(np.daemon.running);
});
