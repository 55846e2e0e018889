// End to end: more rounds through one -outfifo than a connection may have streams open at once. Each round's stream
// must end both ways when the round does, so 300 rounds pass where open streams are limited to 256, and the daemon
// keeps serving.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { startNetplumb } from '../helpers/daemon.js';
import { killGroup } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';

const ROUNDS = 300;

test('300 rounds through one -outfifo each arrive, and the daemon serves on', { timeout: 120_000 }, async (t) => {
  const spool = tempDir(t, 'netplumb-spool-');
  const np = await startNetplumb(t, { daemonArgs: [`-spool=${spool}`] });
  const here = join(np.dir, 'here');
  mkdirSync(here);
  execFileSync('mkfifo', [join(here, 'rounds.fifo')]);
  // One reader holds the FIFO open both ways for the whole test, so no round can fall into the gap every FIFO
  // has between a reader seeing EOF and closing (bytes written there are dropped by the kernel, whoever writes).
  const reader = spawn('sh', ['-c', 'exec cat 0<>rounds.fifo'], { cwd: here, stdio: ['ignore', 'pipe', 'ignore'], detached: true });
  t.after(() => killGroup(reader.pid as number, 'SIGKILL'));
  let received = '';
  reader.stdout.setEncoding('utf8').on('data', (text: string) => (received += text));
  const writer = `i=0; while [ $i -lt ${ROUNDS} ]; do echo "round $i" >"$NETPLUMB_SPOOL/rounds.fifo"; sleep 0.02; i=$((i+1)); done`;
  const result = await np.plumb(['sh', '-c', writer], { options: ['-outfifo=rounds.fifo'], cwd: here });
  assert.equal(result.code, 0, result.stderr);
  for (let waited = 0; waited < 5_000 && received.split('\n').length <= ROUNDS; waited += 50) await delay(50);
  const lines = received.trim().split('\n');
  assert.equal(lines.length, ROUNDS);
  assert.deepEqual(lines, Array.from({ length: ROUNDS }, (_, i) => `round ${i}`));
  assert.ok(np.daemon.running, 'the daemon died');
  assert.equal((await np.plumb(['echo', 'still here'])).stdout.toString(), 'still here\n');
});
