// End to end: plumb -v ends with one line saying what the connection carried each way on the wire, for how long,
// and with which cipher, for a command and a recipe; across machines, a line for each machine and then one for the
// run, with the bytes its edges carried daemon to daemon; without -v, no such line.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { startMachines } from '../helpers/machines.js';

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

test('-v with a recipe ends with the same line; across machines a line for each, then one for the run with its edges', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const recipe = join(np.dir, 'one.rcp');
  writeFileSync(recipe, 'head -c 30000 /dev/zero |\nwc -c\n');
  const one = await np.plumb([], { options: ['-v', `-recipe=${recipe}`] });
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stderr.trimEnd().split('\n').at(-1) ?? '', SUMMARY, one.stderr);

  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const across = m.recipe('across.rcp', ['@a head -c 300000 /dev/zero |', '@b wc -c', ''].join('\n'));
  const result = await m.plumb(['-v', `-recipe=${across}`]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString().trim(), '300000');
  const lines = result.stderr.trimEnd().split('\n');
  const run = /^plumb: 2 machines: (\d+) bytes sent, (\d+) bytes received in \d+\.\d\d s, cipher aes-256-gcm; (\d+) bytes on 1 edge between them$/.exec(lines.at(-1) ?? '');
  assert.ok(run !== null, result.stderr);
  // The edge's bytes went daemon to daemon: counted there, not on plumb's connections.
  assert.equal(Number(run[3]), 300_000);
  assert.ok(Number(run[2]) < 300_000, `plumb received ${run[2]} bytes`);
  const perMachine = lines.slice(-3, -1).map((line) => /^plumb: @(a|b): (\d+) bytes sent, (\d+) bytes received in \d+\.\d\d s, cipher aes-256-gcm$/.exec(line));
  assert.deepEqual(perMachine.map((match) => match?.[1]).sort(), ['a', 'b'], result.stderr);
  assert.equal(perMachine.reduce((sum, match) => sum + Number(match?.[2]), 0), Number(run[1]), 'the run line adds up the machines');
});
