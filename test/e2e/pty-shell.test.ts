// End to end: plumb without a command, with terminals on stdin and stdout, starts an interactive login shell on a
// remote terminal; its exit status is plumb's. Without terminals, a missing command is a usage error.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode, startNetplumb } from '../helpers/daemon.js';
import { startOnTerminal } from '../helpers/endpoints.js';

const TIMEOUT_MS = 120_000;

test('without a command on a terminal: an interactive login shell on a remote terminal; exit 7 ends plumb with 7', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const term = startOnTerminal(t, np.plumbArgv([]), { cols: 90, rows: 25, env: np.plumbEnv() });
  // Whatever the user's shell prints at login, it reads commands from the terminal.
  term.type('echo "zero=$0"; case $- in *i*) echo "mode=interactive";; esac; tty; stty size\r');
  await term.waitFor(/mode=interactive\n\/dev\/pts\/\d+\n25 90\n/);
  // A login shell: $0 starts with - or the shell was started with -l (bash says so in shopt).
  const zero = /zero=(\S+)\n/.exec(term.screen())?.[1] ?? '';
  term.type('echo "login=$(shopt -q login_shell 2>/dev/null && echo yes || echo unknown)"\r');
  await term.waitFor(/login=(yes|unknown)\n/);
  assert.ok(zero.startsWith('-') || /login=yes\n/.test(term.screen()), `a login shell: ${JSON.stringify(term.screen())}`);
  term.type('exit 7\r');
  assert.equal((await term.exit()).exitCode, 7);
});

test('without a command and without terminals: NP_USAGE, nothing runs', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await np.plumb([]);
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.Usage, result.stderr);
  assert.equal(/command started/.test(np.daemon.log()), false);
});
