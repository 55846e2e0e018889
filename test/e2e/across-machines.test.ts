// End to end: recipes across machines. Three or four daemons on distinct loopback addresses (127.0.0.2, ...), each
// with its own host key, spool and authorized-clients file, and plumb as their controller: a real backup (tar on one
// machine, gzip on another, store and checksum on a third) restored and compared, fan-in from two machines into one
// label, a failing command on a remote machine deciding the status, a part refused on one machine (nothing runs
// anywhere), a changed byte caught by the digests, a machine killed mid-run (everything stopped and cleaned on the
// others), an unreachable machine, an edge relayed through plumb (-relay), and the JSON report with every stage's
// machine and every edge's digests.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { reportedCode } from '../helpers/daemon.js';
import { startMachines } from '../helpers/machines.js';
import { deterministicBytes } from '../helpers/payloads.js';
import { killMarkedAtCleanup, processesWithMarker, runProcess, uniqueMarker, waitUntil } from '../helpers/processes.js';

const TIMEOUT_MS = 180_000;

/** What a spool holds besides the files a test expects: a named pipe, a socket or a staging directory left behind. */
function strays(spool: string, expected: readonly string[] = []): string[] {
  if (!existsSync(spool)) return [];
  return readdirSync(spool).filter((name) => !expected.includes(name) && name !== 'users');
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

test('a backup across three machines: tar on db1, gzip on zip, stored and checksummed on vault, then restored on db1 and compared', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { db1: { address: '127.0.0.2' }, zip: { address: '127.0.0.3' }, vault: { address: '127.0.0.4' } });
  const backup = m.recipe(
    'offsite.rcp',
    [
      '# the archive leaves db1, is compressed on zip and stored with its checksum on vault',
      '@db1   tar -cf - -C /usr/share common-licenses |',
      '@zip   gzip -c -n |',
      '@vault tee licenses.tar.gz |',
      '@vault sha256sum >licenses.tar.gz.sha256',
      '',
    ].join('\n'),
  );
  const stored = await m.plumb([`-recipe=${backup}`]);
  assert.equal(stored.code, 0, stored.stderr);
  const vault = m.machine('vault').spool;
  const archive = readFileSync(join(vault, 'licenses.tar.gz'));
  assert.ok(archive.length > 1000);
  assert.equal(readFileSync(join(vault, 'licenses.tar.gz.sha256'), 'utf8').split(' ')[0], sha256(archive));
  // The archive holds what tar makes of the directory here (gzip -n: no name or time in the header).
  const local = await runProcess(t, ['sh', '-c', 'tar -cf - -C /usr/share common-licenses | gzip -c -n']);
  assert.equal(sha256(archive), sha256(local.stdout));

  const restore = m.recipe('restore.rcp', ['@vault cat licenses.tar.gz |', "@db1   sh -c 'mkdir -p restored && tar -xzf - -C restored'", ''].join('\n'));
  const restored = await m.plumb([`-recipe=${restore}`]);
  assert.equal(restored.code, 0, restored.stderr);
  const diff = await runProcess(t, ['diff', '-r', '/usr/share/common-licenses', join(m.machine('db1').spool, 'restored', 'common-licenses')]);
  assert.equal(diff.code, 0, diff.stdout.toString());
  assert.deepEqual(strays(m.machine('zip').spool), []);
  assert.deepEqual(strays(vault, ['licenses.tar.gz', 'licenses.tar.gz.sha256']), []);
});

test('two machines write into one label on a third, whose reader sees both and then EOF', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' }, c: { address: '127.0.0.4' } });
  const recipe = m.recipe('fan-in.rcp', ['@a seq 1 3000 >%sink &', '@b seq 3001 6000 >%sink &', '@c sink: sort -n', ''].join('\n'));
  const result = await m.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 0, result.stderr);
  const expected = Array.from({ length: 6000 }, (_, index) => `${index + 1}\n`).join('');
  assert.equal(result.stdout.toString(), expected);
});

test('the first failing command in recipe order decides the status, whichever machine ran it, and plumb names its machine', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const recipe = m.recipe('status.rcp', ["@a sh -c 'exit 0'", "@b sh -c 'exit 3'", "@a sh -c 'exit 5'", ''].join('\n'));
  const json = join(m.dir, 'report.json');
  const result = await m.plumb([`-recipe=${recipe}`, `-json=${json}`]);
  assert.equal(result.code, 3, result.stderr);
  assert.match(result.stderr, /line 2 \(.*status\.rcp:2\) exited with status 3 on @b/);
  const report = JSON.parse(readFileSync(json, 'utf8')) as { exitStatus: number; stages: Array<{ machine: string; code: number }> };
  assert.equal(report.exitStatus, 3);
  assert.deepEqual(
    report.stages.map((stage) => [stage.machine, stage.code]),
    [
      ['a', 0],
      ['b', 3],
      ['a', 5],
    ],
  );
});

test('a part refused on one machine runs nothing anywhere', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  // On b a file already has the name of the recipe's named pipe: b refuses its part (NP_RECIPE_SETUP).
  const spoolB = m.machine('b').spool;
  mkdirSync(spoolB, { recursive: true });
  writeFileSync(join(spoolB, 'f'), 'in the way\n');
  const recipe = m.recipe('refused.rcp', ['fifo f', '@a touch ran-on-a', '@b cat <@f &', '@b echo x >@f', ''].join('\n'));
  const result = await m.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 2, result.stderr);
  assert.equal(reportedCode(result.stderr), 'NP_RECIPE_SETUP');
  assert.equal(existsSync(join(m.machine('a').spool, 'ran-on-a')), false);
  assert.deepEqual(strays(m.machine('a').spool), []);
  assert.deepEqual(strays(spoolB, ['f']), []);
});

test('a byte changed between the stream and the reading command fails the run with NP_DIGEST_MISMATCH, and the report has both digests', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3', env: { NETPLUMBD_TEST_CORRUPT_EDGES: '1' } } });
  const recipe = m.recipe('corrupt.rcp', ['@a echo payload |', '@b cat >copy', ''].join('\n'));
  const json = join(m.dir, 'report.json');
  const result = await m.plumb([`-recipe=${recipe}`, `-json=${json}`]);
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), 'NP_DIGEST_MISMATCH');
  assert.equal(readFileSync(join(m.machine('b').spool, 'copy'), 'utf8'), 'qayload\n');
  const report = JSON.parse(readFileSync(json, 'utf8')) as { failure: { code: string }; edges: Array<{ direction: string; status?: string; sha256: string; sent?: { sha256: string } }> };
  assert.equal(report.failure.code, 'NP_DIGEST_MISMATCH');
  const received = report.edges.find((edge) => edge.direction === 'in');
  assert.equal(received?.status, 'mismatch');
  assert.equal(received?.sent?.sha256, sha256(Buffer.from('payload\n')));
  assert.equal(received?.sha256, sha256(Buffer.from('qayload\n')));
});

test('the same run without the fault reports every edge intact, with equal digests at both ends', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const recipe = m.recipe('intact.rcp', ['@a seq 1 100000 |', '@b cat >copy', ''].join('\n'));
  const json = join(m.dir, 'report.json');
  const result = await m.plumb([`-recipe=${recipe}`, `-json=${json}`]);
  assert.equal(result.code, 0, result.stderr);
  const copy = readFileSync(join(m.machine('b').spool, 'copy'));
  const report = JSON.parse(readFileSync(json, 'utf8')) as {
    edges: Array<{ edge: number; direction: string; bytes: number; sha256: string; status?: string; startedAt: string; endedAt: string }>;
    stages: Array<{ machine: string; bytesIn?: number; bytesOut?: number; bytesErr?: number; startedAt?: string; endedAt?: string }>;
  };
  const sent = report.edges.find((edge) => edge.direction === 'out');
  const received = report.edges.find((edge) => edge.direction === 'in');
  assert.deepEqual([sent?.bytes, sent?.sha256], [copy.length, sha256(copy)]);
  assert.deepEqual([received?.bytes, received?.sha256, received?.status], [copy.length, sha256(copy), 'intact']);
  // Each end's times: from Go, which came before either command started, to its report, after the command ended.
  for (const edge of report.edges) {
    const [started, ended] = [Date.parse(edge.startedAt), Date.parse(edge.endedAt)];
    assert.ok(Number.isFinite(started) && Number.isFinite(ended) && started <= ended, JSON.stringify(edge));
    for (const stage of report.stages) assert.ok(started <= Date.parse(stage.startedAt ?? '') + 1000, `${JSON.stringify(edge)} ${JSON.stringify(stage)}`);
  }
  // Each command's bytes, as its daemon counted them: seq's stdin is /dev/null, cat's stdout a file on b.
  assert.deepEqual(
    report.stages.map(({ machine, bytesIn, bytesOut, bytesErr }) => ({ machine, bytesIn, bytesOut, bytesErr })),
    [
      { machine: 'a', bytesIn: 0, bytesOut: copy.length, bytesErr: 0 },
      { machine: 'b', bytesIn: copy.length, bytesOut: copy.length, bytesErr: 0 },
    ],
  );
});

test('-json across machines counts each command where it ran: a label written from two machines, its reader\'s bytes the sum', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const recipe = m.recipe('two-writers.rcp', ['@b sum: wc -c >sum.txt &', '@a head -c 2000 /dev/zero >%sum', '@b head -c 300 /dev/zero >%sum', ''].join('\n'));
  const json = join(m.dir, 'two-writers.json');
  const result = await m.plumb([`-recipe=${recipe}`, `-json=${json}`]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(readFileSync(join(m.machine('b').spool, 'sum.txt'), 'utf8'), '2300\n');
  const report = JSON.parse(readFileSync(json, 'utf8')) as { stages: Array<{ machine: string; bytesIn?: number; bytesOut?: number; bytesErr?: number }> };
  assert.deepEqual(
    report.stages.map(({ machine, bytesIn, bytesOut, bytesErr }) => ({ machine, bytesIn, bytesOut, bytesErr })),
    [
      { machine: 'b', bytesIn: 2300, bytesOut: '2300\n'.length, bytesErr: 0 },
      { machine: 'a', bytesIn: 0, bytesOut: 2000, bytesErr: 0 },
      { machine: 'b', bytesIn: 0, bytesOut: 300, bytesErr: 0 },
    ],
  );
});

test('a machine killed mid-run ends the run (255) and every command on the other machines, with nothing left in their spools', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' }, c: { address: '127.0.0.4' } });
  const marker = uniqueMarker('across');
  killMarkedAtCleanup(t, marker);
  const recipe = m.recipe(
    'killed.rcp',
    [`@a sh -c 'while :; do echo data; sleep 0.01; done' ${marker}-a |`, `@b sh -c 'cat; sleep 60' ${marker}-b |`, `@c sh -c 'cat >/dev/null; sleep 60' ${marker}-c`, `@a sleep 60 ${marker}-a2`, ''].join('\n'),
  );
  const run = m.spawnPlumb([`-recipe=${recipe}`]);
  await waitUntil('every machine running its command', () => processesWithMarker(`${marker}-a`).length > 0 && processesWithMarker(`${marker}-b`).length > 0 && processesWithMarker(`${marker}-c`).length > 0, 30_000);
  m.machine('c').daemon.kill('SIGKILL');
  const result = await run.result;
  assert.equal(result.code, 255, result.stderr);
  assert.ok(['NP_CONNECTION_LOST', 'NP_TRUNCATED'].includes(reportedCode(result.stderr) ?? ''), result.stderr);
  await waitUntil('the commands on a and b ended', () => processesWithMarker(`${marker}-a`).length === 0 && processesWithMarker(`${marker}-b`).length === 0, 30_000);
  assert.deepEqual(strays(m.machine('a').spool), []);
  assert.deepEqual(strays(m.machine('b').spool), []);
  // The foreground command after the killed machine's never started.
  assert.deepEqual(processesWithMarker(`${marker}-a2`), []);
});

test('a machine that cannot be reached refuses the run before anything starts on the others', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' } });
  const recipe = m.recipe('unreachable.rcp', ['@a touch ran-on-a', '@127.0.0.9:9 echo never', ''].join('\n'));
  const result = await m.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), 'NP_CONNECT_FAILED');
  assert.equal(existsSync(join(m.machine('a').spool, 'ran-on-a')), false);
});

test('commands without a machine run on the one plumb names, beside those placed elsewhere', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const recipe = m.recipe('mixed.rcp', ['hostname-of: echo from-unplaced |', '@b tr a-z A-Z', ''].join('\n'));
  const result = await m.plumb([`-recipe=${recipe}`, 'a']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'FROM-UNPLACED\n');
  const missing = await m.plumb([`-recipe=${recipe}`]);
  assert.equal(missing.code, 255);
  assert.equal(reportedCode(missing.stderr), 'NP_USAGE');
});

test("plumb's own stdin and stdout are counted and digested at both ends too: intact through two machines", { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const input = deterministicBytes('stdio', 3 * 1024 * 1024 + 17);
  const recipe = m.recipe('stdio.rcp', ['@a cat <%stdin |', '@b cat', ''].join('\n'));
  const json = join(m.dir, 'report.json');
  const result = await m.plumb([`-recipe=${recipe}`, `-json=${json}`], { stdin: input });
  assert.equal(result.code, 0, result.stderr);
  assert.ok(result.stdout.equals(input));
  const report = JSON.parse(readFileSync(json, 'utf8')) as { stdio: Array<{ stream: string; machine: string; status: string; sent: { bytes: number; sha256: string } }> };
  const digest = { bytes: input.length, sha256: sha256(input) };
  const stdin = report.stdio.find((check) => check.stream === 'stdin');
  assert.deepEqual([stdin?.machine, stdin?.status, stdin?.sent], ['@a', 'intact', digest]);
  const fromB = report.stdio.find((check) => check.stream === 'stdout' && check.machine === '@b');
  assert.deepEqual([fromB?.status, fromB?.sent], ['intact', digest]);
  const fromA = report.stdio.find((check) => check.stream === 'stdout' && check.machine === '@a');
  assert.deepEqual([fromA?.status, fromA?.sent.bytes], ['intact', 0]);
});

test("a byte of plumb's stdin changed on the machine that reads it fails the run with NP_DIGEST_MISMATCH", { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2', env: { NETPLUMBD_TEST_CORRUPT_EDGES: '1' } }, b: { address: '127.0.0.3' } });
  const recipe = m.recipe('stdio-corrupt.rcp', ['@a cat <%stdin |', '@b cat', ''].join('\n'));
  const result = await m.plumb([`-recipe=${recipe}`], { stdin: 'payload\n' });
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), 'NP_DIGEST_MISMATCH');
  assert.match(result.stderr, /plumb's stdin to @a arrived other than it left/);
});

test('-reach says where the other daemons reach a machine: a wrong address refuses the run before anything starts, the right one runs it', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const recipe = m.recipe('reach.rcp', ['@a touch ran-on-a', '@a echo across |', '@b cat', ''].join('\n'));
  const unreachable = await m.plumb([`-recipe=${recipe}`, '-reach=b=127.0.0.9:9']);
  assert.equal(unreachable.code, 255, unreachable.stderr);
  assert.equal(reportedCode(unreachable.stderr), 'NP_CONNECT_FAILED');
  assert.match(unreachable.stderr, /@a cannot reach @b \(127\.0\.0\.9 port 9\) for edge 0/);
  assert.equal(existsSync(join(m.machine('a').spool, 'ran-on-a')), false);

  const reached = await m.plumb([`-recipe=${recipe}`, `-reach=b=${m.machine('b').daemon.address}`]);
  assert.equal(reached.code, 0, reached.stderr);
  assert.equal(reached.stdout.toString(), 'across\n');

  const unknown = await m.plumb([`-recipe=${recipe}`, '-reach=zz=127.0.0.3']);
  assert.equal(reportedCode(unknown.stderr), 'NP_USAGE');
  assert.match(unknown.stderr, /-reach names zz, which no command of .* is placed on/);
});

test('two spellings of one machine (an alias and its address as IPv4-mapped IPv6) reach one daemon: they run as one part, an edge between them included', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  // The same daemon as an IPv4-mapped IPv6 address: another string, the same host key on the same port.
  const port = m.machine('a').daemon.address.split(':').pop() as string;
  const recipe = m.recipe('spellings.rcp', ['@a echo one daemon |', `@[::ffff:127.0.0.2]:${port} tr a-z A-Z |`, '@b cat', ''].join('\n'));
  const result = await m.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'ONE DAEMON\n');
});

test('-relay carries an edge through plumb when its writer cannot reach the reader: the bytes arrive whole, checked end to end, beside a direct edge', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const recipe = m.recipe('relay.rcp', ['@a seq 1 300000 |', '@b cat >copy', '@b echo back |', '@a cat >back', ''].join('\n'));
  const json = join(m.dir, 'relay.json');
  const result = await m.plumb([`-recipe=${recipe}`, '-reach=b=127.0.0.9:9', '-relay', `-json=${json}`]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /@a cannot reach @b \(127\.0\.0\.9 port 9\) for edge 0: .*; relaying edge 0 through plumb \(-relay\)/);
  const expected = Buffer.from(`${Array.from({ length: 300000 }, (_, index) => index + 1).join('\n')}\n`);
  const copy = readFileSync(join(m.machine('b').spool, 'copy'));
  assert.equal(copy.length, expected.length);
  assert.equal(sha256(copy), sha256(expected));
  assert.equal(readFileSync(join(m.machine('a').spool, 'back'), 'utf8'), 'back\n');
  const report = JSON.parse(readFileSync(json, 'utf8')) as {
    relayed: Array<{ edge: number; from: string; to: string }>;
    edges: Array<{ edge: number; direction: string; bytes: number; sha256: string; status?: string; sent?: { bytes: number; sha256: string } }>;
  };
  assert.deepEqual(report.relayed.map(({ edge, from, to }) => ({ edge, from, to })), [{ edge: 0, from: '@a', to: '@b' }]);
  const relayedIn = report.edges.find((edge) => edge.edge === 0 && edge.direction === 'in');
  assert.deepEqual([relayedIn?.status, relayedIn?.bytes, relayedIn?.sha256, relayedIn?.sent?.sha256], ['intact', expected.length, sha256(expected), sha256(expected)]);
  assert.equal(report.edges.find((edge) => edge.edge === 1 && edge.direction === 'in')?.status, 'intact');
  assert.deepEqual(strays(m.machine('a').spool, ['back']), []);
  assert.deepEqual(strays(m.machine('b').spool, ['copy']), []);
});

test('a relayed edge is checked end to end too: a byte changed on the reading machine fails the run with NP_DIGEST_MISMATCH', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3', env: { NETPLUMBD_TEST_CORRUPT_EDGES: '1' } } });
  const recipe = m.recipe('relay-corrupt.rcp', ['@a echo payload |', '@b cat >copy', ''].join('\n'));
  const result = await m.plumb([`-recipe=${recipe}`, '-reach=b=127.0.0.9:9', '-relay']);
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), 'NP_DIGEST_MISMATCH');
  assert.match(result.stderr, /relaying edge 0 through plumb/);
  assert.equal(readFileSync(join(m.machine('b').spool, 'copy'), 'utf8'), 'qayload\n');
});

test('a relayed edge whose reader stops early ends as a direct one does: the writer gets EPIPE, and nothing waits for ever', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const recipe = m.recipe('relay-early.rcp', ['@a yes |', '@b head -1', ''].join('\n'));
  const direct = await m.plumb([`-recipe=${recipe}`]);
  const relayed = await m.plumb([`-recipe=${recipe}`, '-reach=b=127.0.0.9:9', '-relay']);
  assert.match(relayed.stderr, /relaying edge 0 through plumb/);
  assert.equal(relayed.stdout.toString(), 'y\n');
  assert.equal(relayed.code, direct.code, `direct: ${direct.stderr}\nrelayed: ${relayed.stderr}`);
  assert.notEqual(relayed.code, 0);
  assert.deepEqual(strays(m.machine('a').spool), []);
  assert.deepEqual(strays(m.machine('b').spool), []);
});

test("a command that reads only part of plumb's stdin, or never starts, decides the status: no false digest mismatch", { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const input = deterministicBytes('partial', 8 * 1024 * 1024);
  const partial = m.recipe('partial.rcp', ['@a head -c 5 <%stdin |', '@b cat', ''].join('\n'));
  const result = await m.plumb([`-recipe=${partial}`], { stdin: input });
  assert.equal(result.code, 0, result.stderr);
  assert.ok(result.stdout.equals(input.subarray(0, 5)));
  const missing = m.recipe('missing.rcp', ['@a no-such-program-np <%stdin |', '@b cat', ''].join('\n'));
  const notFound = await m.plumb([`-recipe=${missing}`], { stdin: input });
  assert.equal(notFound.code, 127, notFound.stderr);
  assert.doesNotMatch(notFound.stderr, /NP_DIGEST_MISMATCH/);
});
