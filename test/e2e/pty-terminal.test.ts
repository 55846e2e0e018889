// End to end: plumb -t driven on a real pseudo-terminal, as a person at a terminal would: the remote command sees a
// terminal of the same size and type, a resize here reaches it, keys arrive as typed bytes (raw mode here), and
// stdout and stderr share the one terminal.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { startOnTerminal } from '../helpers/endpoints.js';

const TIMEOUT_MS = 120_000;

test('-t: the remote terminal has the size and type of plumb\'s terminal', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const term = startOnTerminal(t, np.plumbArgv(['-t', 'sh', '-c', 'stty size; echo "term=$TERM"; tty']), {
    cols: 100,
    rows: 30,
    env: { ...np.plumbEnv(), TERM: 'vt220' },
  });
  await term.waitFor(/term=vt220\n\/dev\/pts\/\d+\n/);
  assert.match(term.screen(), /^30 100$/m);
  assert.equal((await term.exit()).exitCode, 0);
});

test('-t: a resize of plumb\'s terminal reaches the remote terminal', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const term = startOnTerminal(t, np.plumbArgv(['-t', 'sh', '-c', 'for i in $(seq 1 300); do echo "size=$(stty size)"; sleep 0.1; done']), {
    cols: 80,
    rows: 24,
    env: np.plumbEnv(),
  });
  await term.waitFor(/size=24 80\n/);
  term.pty.resize(132, 43);
  await term.waitFor(/size=43 132\n/, 10_000);
  term.pty.resize(40, 10);
  await term.waitFor(/size=10 40\n/, 10_000);
  term.type('\x03');
  assert.equal((await term.exit()).exitCode, 130);
});

test('-t: keys arrive at the remote terminal as the bytes typed, control keys included', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // The remote side puts its terminal in raw mode too, then dumps the next five bytes it gets.
  const script = 'stty raw -echo; echo ready; dd bs=1 count=5 2>/dev/null | od -An -tx1; stty sane';
  const term = startOnTerminal(t, np.plumbArgv(['-t', 'sh', '-c', script]), { cols: 80, rows: 24, env: np.plumbEnv() });
  await term.waitFor(/ready/);
  // Ctrl-C, Ctrl-Z, Ctrl-\, a letter, DEL: none of them may be taken by plumb's own terminal.
  term.type('\x03\x1a\x1cq\x7f');
  await term.waitFor(/03 1a 1c 71 7f/);
  assert.equal((await term.exit()).exitCode, 0);
});

test('-t: stdout and stderr of the remote command both show on the terminal', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const term = startOnTerminal(t, np.plumbArgv(['-t', 'sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 4']), { cols: 80, rows: 24, env: np.plumbEnv() });
  const exit = await term.exit();
  assert.equal(exit.exitCode, 4);
  assert.match(term.screen(), /to-stdout\nto-stderr\n/);
});
