// End to end: a plain command's stdin, stdout and stderr are real pipes, as in a local pipeline, never sockets: each
// is a FIFO to test -p, and the command can open them again by /dev/stdin, /dev/stdout and /dev/stderr (which fails
// with ENXIO on a socket).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';

const TIMEOUT_MS = 120_000;

test('a command\'s stdin, stdout and stderr are pipes it can open again by their /dev names', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // /dev/stdin is opened again before plumb's stdin ends: a FIFO opened for reading after its last writer closed
  // waits for a writer that never comes (plumb(1), BUGS), so the input follows the command's word that it has it.
  const script = [
    'for fd in 0 1 2; do test -p /dev/fd/$fd && echo "fd $fd is a pipe"; done',
    'exec 3</dev/stdin',
    'echo opened',
    'cat <&3 >/dev/stdout',
    'echo to-stderr >/dev/stderr',
  ].join('; ');
  const run = np.spawnPlumb(['/bin/dash', '-c', script], { stdin: 'open' });
  await run.waitForStdout(/opened\n/);
  run.child.stdin?.end('through /dev/stdin\n');
  const result = await run.result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'fd 0 is a pipe\nfd 1 is a pipe\nfd 2 is a pipe\nopened\nthrough /dev/stdin\n');
  assert.match(result.stderr, /^to-stderr$/m);
});
