// End to end: Ctrl-C typed at plumb -t's terminal is a byte for the remote terminal, whose line discipline turns it
// into SIGINT for the remote command: a running sleep is interrupted, plumb ends with 130, nothing stays behind.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { killMarkedAtCleanup, processesWithMarker, uniqueMarker, waitUntil } from '../helpers/processes.js';
import { startOnTerminal } from '../helpers/endpoints.js';

const TIMEOUT_MS = 120_000;

test('-t: Ctrl-C interrupts a remote sleep 30 and plumb exits 130', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const marker = uniqueMarker('pty-ctrl-c');
  killMarkedAtCleanup(t, marker);
  const term = startOnTerminal(t, np.plumbArgv(['-t', 'sh', '-c', 'echo started; exec sleep 30', marker]), { cols: 80, rows: 24, env: np.plumbEnv() });
  await term.waitFor(/started\n/);
  const typedAt = Date.now();
  term.type('\x03');
  const exit = await term.exit(10_000);
  assert.equal(exit.exitCode, 130, term.screen());
  assert.ok(Date.now() - typedAt < 10_000);
  await waitUntil('the remote sleep to be gone', () => processesWithMarker(marker).length === 0);
});

test('-t: Ctrl-C in a remote shell stops the running command and the prompt comes back', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const term = startOnTerminal(t, np.plumbArgv(['-t', 'sh', '-i']), { cols: 80, rows: 24, env: { ...np.plumbEnv(), PS1: '$ ' } });
  await term.waitFor(/[$#] $/);
  term.type('sleep 30; echo not-interrupted\r');
  await term.waitFor(/sleep 30; echo not-interrupted\n/);
  await new Promise((resolve) => setTimeout(resolve, 300));
  term.type('\x03');
  term.type('echo "after $((6*7))"\r');
  await term.waitFor(/after 42\n/, 10_000);
  assert.doesNotMatch(term.screen(), /^not-interrupted$/m, 'the rest of the interrupted line never ran');
  term.type('exit 0\r');
  assert.equal((await term.exit()).exitCode, 0);
});
