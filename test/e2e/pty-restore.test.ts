// End to end: plumb -t puts its terminal in raw mode while the remote command runs and gives it back as it found it
// whichever way the run ends: a normal exit, a failing command, Ctrl-C, a command that cannot start, SIGTERM to
// plumb, plumb giving up after the third SIGINT.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { BIN, startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { childrenOf, waitUntil } from '../helpers/processes.js';
import { startOnTerminal, type Terminal } from '../helpers/endpoints.js';

const TIMEOUT_MS = 120_000;

/** Runs plumb inside a shell on a pseudo-terminal; the shell prints the terminal's settings (stty -g) before and after, and plumb's status. */
function shellAroundPlumb(t: { after(fn: () => unknown): void }, np: Netplumb, remote: string[]): Terminal {
  const script = [
    'before=$(stty -g)',
    'echo "before=$before"',
    '"$@"',
    'echo "status=$?"',
    'echo "after=$(stty -g)"',
  ].join('; ');
  return startOnTerminal(t, ['sh', '-c', script, 'sh', ...np.plumbArgv(['-t', ...remote])], { cols: 80, rows: 24, env: np.plumbEnv() });
}

function settings(screen: string, name: 'before' | 'after'): string {
  const value = new RegExp(`^${name}=(\\S+)$`, 'm').exec(screen)?.[1];
  assert.ok(value !== undefined, `no ${name}= line: ${JSON.stringify(screen)}`);
  return value;
}

for (const [what, remote, status, keys] of [
  ['a normal exit', ['true'], 0, ''],
  ['a failing command', ['sh', '-c', 'exit 3'], 3, ''],
  ['Ctrl-C', ['sh', '-c', 'echo started; exec sleep 30'], 130, '\x03'],
  ['a command that cannot start', ['no-such-command-anywhere'], 127, ''],
] as const) {
  test(`-t: the terminal is restored after ${what}`, { timeout: TIMEOUT_MS }, async (t) => {
    const np = await startNetplumb(t);
    const term = shellAroundPlumb(t, np, [...remote]);
    if (keys !== '') {
      await term.waitFor(/started\n/);
      term.type(keys);
    }
    await term.waitFor(/after=\S+\n/);
    const screen = term.screen();
    // After Ctrl-C the remote terminal's echo (^C) may stand before it on the same line.
    assert.match(screen, new RegExp(`status=${status}$`, 'm'));
    assert.equal(settings(screen, 'after'), settings(screen, 'before'));
    assert.equal((await term.exit()).exitCode, 0);
  });
}

test('-t: plumb\'s terminal is raw while the remote command runs (no local echo, no local signals)', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // The remote terminal echoes nothing; what shows is only what the remote command prints.
  const term = startOnTerminal(t, np.plumbArgv(['-t', 'sh', '-c', 'stty -echo; echo ready; read line; echo "got=$line"']), { cols: 80, rows: 24, env: np.plumbEnv() });
  await term.waitFor(/ready\n/);
  term.type('secret\r');
  await term.waitFor(/got=secret\n/);
  assert.equal(term.screen().includes('secret\ngot'), false, `no local echo of the typed line: ${JSON.stringify(term.screen())}`);
  assert.equal((await term.exit()).exitCode, 0);
});

/** plumb's pid: the child of the shell the terminal runs. */
async function plumbPid(term: Terminal): Promise<number> {
  let pid: number | undefined;
  await waitUntil('plumb to start', () => {
    pid = childrenOf(term.pty.pid).find((child) => readFileSync(`/proc/${child}/cmdline`, 'utf8').includes(BIN.plumb));
    return pid !== undefined;
  });
  return pid as number;
}

test('-t: the terminal is restored after SIGTERM to plumb (forwarded: the remote command ends by it)', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const term = shellAroundPlumb(t, np, ['sh', '-c', 'echo started; exec sleep 30']);
  await term.waitFor(/started\n/);
  process.kill(await plumbPid(term), 'SIGTERM');
  await term.waitFor(/after=\S+\n/);
  const screen = term.screen();
  assert.match(screen, /status=143$/m);
  assert.equal(settings(screen, 'after'), settings(screen, 'before'));
});

test('-t: the terminal is restored when plumb gives up after the third SIGINT', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // The remote command ignores SIGINT, so only plumb giving up ends the run.
  const term = shellAroundPlumb(t, np, ['sh', '-c', "trap '' INT; echo started; sleep 30"]);
  await term.waitFor(/started\n/);
  const pid = await plumbPid(term);
  for (let sent = 0; sent < 3; sent++) {
    process.kill(pid, 'SIGINT');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await term.waitFor(/after=\S+\n/);
  const screen = term.screen();
  assert.match(screen, /status=255$/m);
  assert.equal(settings(screen, 'after'), settings(screen, 'before'));
});
