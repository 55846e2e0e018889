// The executor counting what each command takes in and gives out (countBytes, the daemon's side of plumb -json):
// every kind of stream counted exactly, and the counting relays keeping what pipes promise: SIGPIPE for a writer
// whose reader has gone, EOF only after the last writer, writes of up to PIPE_BUF from several writers unbroken,
// every byte intact, and nothing left open when the run ends or is cut short. Real processes, pipes and FIFOs.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync, type PathLike } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { StageBytes, StageEnd } from '../../protocol/session.js';
import { deterministicBytes, deterministicSha256, deterministicStream } from '../helpers/payloads.js';
import { processesWithMarker, uniqueMarker, waitUntil } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';
import { boundedOutcome, executeText, hashingSink, markedSleep, openFdCount, prepareText, settledFdCount } from '../helpers/recipes.js';

const TIMEOUT_MS = 120_000;

function countsByStage(bytes: readonly StageBytes[] | undefined): Map<number, StageBytes> {
  assert.ok(bytes !== undefined, 'a counted run gives its counts');
  return new Map(bytes.map((each) => [each.stage, each]));
}

test('every command is counted, whatever its streams are joined to: pipes, label pipes, files, named pipes, /dev/null, plumb\'s streams', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'in.txt'), 'x'.repeat(12_345));
  writeFileSync(join(spool, 'log.txt'), '0123456789');
  const text = [
    'fifo p',
    'counter: wc -c >counted.txt &',
    'head -c 1000 /dev/zero >%counter',
    'head -c 500 /dev/zero >%counter',
    'cat <in.txt |',
    'cat >>log.txt',
    'head -c 3000 /dev/zero >@p &',
    'wc -c <@p',
    'head -c 7000 /dev/zero >/dev/null',
    'cat </dev/null',
    "sh -c 'echo out; echo err >&2' 2>&1",
    "sh -c 'echo err >&2' 2>/dev/null",
    'cat <%stdin >stdin-copy',
    '',
  ].join('\n');
  const result = await executeText(text, spool, { countBytes: true, stdin: Readable.from([Buffer.alloc(4321, 1)]) });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  const counts = countsByStage(result.outcome.bytes);
  const expected: StageBytes[] = [
    // The label's reader: both writers' bytes in, its count written to a file (by the file's position).
    { stage: 0, bytesIn: 1500, bytesOut: '1500\n'.length, bytesErr: 0 },
    { stage: 1, bytesIn: 0, bytesOut: 1000, bytesErr: 0 },
    { stage: 2, bytesIn: 0, bytesOut: 500, bytesErr: 0 },
    // A file read, into a | pipe; and appended to a file: what was there before is not the command's.
    { stage: 3, bytesIn: 12_345, bytesOut: 12_345, bytesErr: 0 },
    { stage: 4, bytesIn: 12_345, bytesOut: 12_345, bytesErr: 0 },
    // A named pipe, both ends.
    { stage: 5, bytesIn: 0, bytesOut: 3000, bytesErr: 0 },
    { stage: 6, bytesIn: 3000, bytesOut: '3000\n'.length, bytesErr: 0 },
    // /dev/null keeps no position: output there is counted as it is dropped, and input from it is 0.
    { stage: 7, bytesIn: 0, bytesOut: 7000, bytesErr: 0 },
    { stage: 8, bytesIn: 0, bytesOut: 0, bytesErr: 0 },
    // 2>&1: stderr is counted with stdout; where it goes elsewhere, on its own.
    { stage: 9, bytesIn: 0, bytesOut: 'out\nerr\n'.length },
    { stage: 10, bytesIn: 0, bytesOut: 0, bytesErr: 'err\n'.length },
    // plumb's stdin, as delivered.
    { stage: 11, bytesIn: 4321, bytesOut: 4321, bytesErr: 0 },
  ];
  for (const want of expected) assert.deepEqual(counts.get(want.stage), want, `stage ${want.stage}`);
  assert.equal(counts.size, expected.length);
  assert.equal(readFileSync(join(spool, 'counted.txt'), 'utf8'), '1500\n');
  assert.equal(readFileSync(join(spool, 'log.txt'), 'utf8'), `0123456789${'x'.repeat(12_345)}`);
  assert.equal(result.stdout.toString(), '3000\nout\nerr\n');
  // Each command's counts come after its end.
  for (const end of result.ends) {
    const told = result.outcome.bytes?.findIndex((bytes) => bytes.stage === end.stage);
    assert.ok(told !== undefined && told >= 0, `stage ${end.stage} counted`);
  }
});

test('counted, a pipe keeps its promises: the writer whose reader has gone gets SIGPIPE, and EOF waits for the last writer', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const cut = 'yes |\nhead -c 10\n';
  const plain = await executeText(cut, spool);
  const counted = await executeText(cut, spool, { countBytes: true });
  const statuses = (ends: readonly StageEnd[]): StageEnd['status'][] => [...ends].sort((a, b) => a.stage - b.stage).map((end) => end.status);
  assert.deepEqual(statuses(counted.ends), statuses(plain.ends));
  assert.deepEqual(statuses(counted.ends), [{ signal: 'SIGPIPE' }, { code: 0 }]);
  assert.equal(counted.stdout.toString(), 'y\ny\ny\ny\ny\n');
  const counts = countsByStage(counted.outcome.bytes);
  const yes = counts.get(0)?.bytesOut ?? 0;
  const head = counts.get(1);
  assert.equal(head?.bytesOut, 10);
  // What head was given is at least what it used, and no more than yes wrote.
  assert.ok((head?.bytesIn ?? 0) >= 10 && (head?.bytesIn ?? 0) <= yes, JSON.stringify([...counts.values()]));

  // The label's reader sees EOF only once the writer that starts last has ended.
  const late = await executeText("r: cat &\necho first >%r\nsleep 0.3\necho second >%r\n", spool, { countBytes: true });
  assert.equal(late.stdout.toString(), 'first\nsecond\n');
  assert.deepEqual(countsByStage(late.outcome.bytes).get(0), { stage: 0, bytesIn: 13, bytesOut: 13, bytesErr: 0 });
});

/** Runs a recipe without counting and with it, in fresh spools: the statuses, outputs and named files must agree. */
async function sameCountedOrNot(t: TestContext, text: string, files: readonly string[] = []): Promise<StageBytes[]> {
  const seen: unknown[] = [];
  let counts: StageBytes[] = [];
  for (const countBytes of [false, true]) {
    const spool = tempDir(t);
    const result = await executeText(text, spool, { countBytes });
    const statuses = [...result.ends].sort((a, b) => a.stage - b.stage).map((end) => end.status);
    const contents = files.map((name) => (existsSync(join(spool, name)) ? readFileSync(join(spool, name), 'utf8') : null));
    seen.push({ statuses, status: result.outcome.status, stdout: result.stdout.toString(), stderr: result.stderr.toString(), contents });
    if (countBytes) counts = result.outcome.bytes ?? [];
  }
  assert.deepEqual(seen[1], seen[0], `counted and not: ${text}`);
  return counts;
}

test('counted, a writer whose reader has ended gets SIGPIPE at its next write, as it would without the relays', { timeout: TIMEOUT_MS }, async (t) => {
  for (const text of [
    "sh -c 'sleep 1; echo x' |\ntrue\n",
    'r: true &\nsleep 1\necho x >%r\n',
    "sh -c 'sleep 0.3; echo x' |\nno-such-command-np-test\n",
    // The reader's leader ends at once; what it left in the background reads on, then ends: then, and only then, the
    // writer's next write fails.
    // writer's writes fail (it writes more than the relays hold, so however late they learn it, it does).
    "sh -c 'sleep 0.8; head -c 1000000 /dev/zero; echo st=$? >&2' |\nsh -c 'exec 3<&0; (sleep 0.3; head -c 1 <&3 >/dev/null) &'\n",
  ]) {
    await sameCountedOrNot(t, text);
  }
});

test('counted, a reader outside its command\'s process group still gets every byte (it left with setsid)', { timeout: TIMEOUT_MS }, async (t) => {
  await sameCountedOrNot(t, "head -c 1000000 /dev/zero |\nsetsid sh -c 'sleep 0.5; wc -c >out'\n", ['out']);
});

test('counted, a file is whole when its command ends, and an appended file counts only what its command added', { timeout: TIMEOUT_MS }, async (t) => {
  // md5sum reads its stdin to the end (wc -c would only ask a file's size, and leave its position at 0).
  const counts = await sameCountedOrNot(t, 'head -c 1000000 /dev/zero >>f\nmd5sum <f\n', ['f']);
  assert.deepEqual(
    counts.sort((a, b) => a.stage - b.stage),
    [
      { stage: 0, bytesIn: 0, bytesOut: 1_000_000, bytesErr: 0 },
      { stage: 1, bytesIn: 1_000_000, bytesOut: 32 + '  -\n'.length, bytesErr: 0 },
    ],
  );
  // Each command's size before it is taken before it can write: 40 quick appends, each 6 bytes of its own.
  const spool = tempDir(t);
  writeFileSync(join(spool, 'log'), '0123456789');
  const appends = await executeText('/bin/echo hello >>log\n'.repeat(40), spool, { countBytes: true });
  assert.deepEqual(appends.outcome.status, { code: 0 });
  assert.deepEqual(new Set(appends.outcome.bytes?.map((bytes) => bytes.bytesOut)), new Set([6]));
  // stdout and stderr appended to one file, each its own open: still in the order written (each stream's position is
  // the file's end, so there each count takes in the other's bytes too, as plumb(1) says).
  await sameCountedOrNot(t, "sh -c 'echo o1; echo e1 >&2; echo o2; echo e2 >&2' >>h 2>>h\n", ['h']);
});

test('counted, writes of up to PIPE_BUF that several commands make into one label pipe arrive unbroken', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const lines = 3000;
  // dash's echo writes each line with one write(2): 100 bytes, well under PIPE_BUF.
  const writer = (letter: string): string => `sh -c 'i=0; while [ $i -lt ${lines} ]; do echo ${letter.repeat(99)}; i=$((i+1)); done' >%r`;
  const result = await executeText(`r: cat &\n${writer('a')} &\n${writer('b')} &\n${writer('c')}\n`, spool, { countBytes: true });
  assert.deepEqual(result.outcome.status, { code: 0 });
  const got = result.stdout.toString().split('\n').slice(0, -1);
  assert.equal(got.length, 3 * lines);
  const torn = got.filter((line) => !/^(a{99}|b{99}|c{99})$/.test(line));
  assert.deepEqual(torn.slice(0, 3), [], `${torn.length} lines broken`);
  const counts = countsByStage(result.outcome.bytes);
  assert.equal(counts.get(0)?.bytesIn, 3 * lines * 100);
  for (const stage of [1, 2, 3]) assert.equal(counts.get(stage)?.bytesOut, lines * 100);
});

test('counted, every byte passes intact: 32 MiB of plumb\'s stdin through a | pipe and a label pipe to plumb\'s stdout', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const size = 32 * 1024 * 1024;
  const sink = hashingSink();
  const result = await executeText('out: cat &\ncat <%stdin |\ncat >%out\n', spool, { countBytes: true, stdin: deterministicStream('counted-intact', size), stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 });
  assert.deepEqual(await sink.result, { bytes: size, sha256: deterministicSha256('counted-intact', size) });
  const counts = countsByStage(result.outcome.bytes);
  for (const stage of [0, 1, 2]) assert.deepEqual(counts.get(stage), { stage, bytesIn: size, bytesOut: size, bytesErr: 0 });
});

test('counted, a file is counted by the position the command left: a reader that stops early, a writer that seeks', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'big'), deterministicBytes('counted-file', 100_000));
  // head -c on a seekable stdin reads ahead, then puts the position back where it stopped using it.
  const result = await executeText('head -c 777 <big >first\ndd of=sparse bs=1 seek=1000 count=5 status=none <big\n', spool, { countBytes: true });
  assert.deepEqual(result.outcome.status, { code: 0 });
  const counts = countsByStage(result.outcome.bytes);
  assert.equal(counts.get(0)?.bytesIn, 777);
  assert.equal(counts.get(0)?.bytesOut, 777);
  // dd of= opens its own file: the stdin it read 5 bytes of is what is counted; its stdout got nothing.
  assert.deepEqual(counts.get(1), { stage: 1, bytesIn: 5, bytesOut: 0, bytesErr: 0 });
  // /dev/null however it is spelled.
  const dropped = await executeText('head -c 100 /dev/zero >/dev//null 2>/dev/./null\n', spool, { countBytes: true });
  assert.deepEqual(dropped.outcome.bytes, [{ stage: 0, bytesIn: 0, bytesOut: 100, bytesErr: 0 }]);
});

test('counted, a run cut short tells what each command had moved and leaves no process, pipe or descriptor', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  await executeText('true\n', spool, { countBytes: true });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const before = openFdCount();
  const marker = uniqueMarker('counted-abort');
  const sleep = markedSleep(spool, marker);
  const prepared = await prepareText(`r: sh -c 'head -c 100 >/dev/null; : >read; exec "$0" 30' ${sleep} &\nhead -c 200000 /dev/zero >%r\n`, spool, { countBytes: true });
  prepared.run.start({ stdin: Readable.from([]), stdout: hashingSink().stream, stderr: hashingSink().stream });
  await waitUntil('the reader done reading', () => existsSync(join(spool, 'read')));
  const outcome = await prepared.run.abort('test cut it short').then(() => boundedOutcome(prepared.run));
  assert.ok(outcome.abortedBecause !== undefined);
  const counts = countsByStage(outcome.bytes);
  // The writer had put at least a pipe's worth in before it blocked; the reader was delivered at least the 100 it read.
  assert.ok((counts.get(1)?.bytesOut ?? 0) >= 65_536, JSON.stringify(outcome.bytes));
  assert.ok((counts.get(0)?.bytesIn ?? 0) >= 100, JSON.stringify(outcome.bytes));
  assert.equal(processesWithMarker(marker).length, 0);
  const left = await settledFdCount(before);
  assert.ok(left <= before, `${left - before} fds left open`);

  // A counted run that is never started leaves nothing either.
  const never = await prepareText('fifo g\necho x >@g &\ncat <@g |\ncat >/dev/null\n', spool, { countBytes: true });
  await never.run.abort('never started');
  assert.ok((await settledFdCount(before)) <= before, 'no fd left by a run never started');
});

test('counted, a setup that fails part way (no descriptor left for a relay) leaves no descriptor open', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  await executeText('true\n', spool, { countBytes: true });
  const before = openFdCount();
  // The descriptor table full at the k-th end a relay opens of the run's pipes: two feeds and three merges here.
  const fs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
  const realOpen = fs.openSync;
  t.after(() => {
    fs.openSync = realOpen;
    syncBuiltinESMExports();
  });
  for (let failAt = 1; failAt <= 5; failAt++) {
    let opens = 0;
    fs.openSync = ((path: PathLike, ...rest: Parameters<typeof realOpen> extends [unknown, ...infer R] ? R : never) => {
      if (String(path).startsWith('/proc/self/fd/') && ++opens === failAt) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
      return realOpen(path, ...rest);
    }) as typeof realOpen;
    syncBuiltinESMExports();
    await assert.rejects(prepareText('cat <%stdin |\ncat\n', spool, { countBytes: true }), /too many open files/);
    fs.openSync = realOpen;
    syncBuiltinESMExports();
    assert.equal(opens, failAt, 'the failure came where it was put');
    const left = await settledFdCount(before);
    assert.ok(left <= before, `failing at open ${failAt}: ${left - before} fds left open`);
  }
});
