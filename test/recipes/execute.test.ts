// The recipe executor on its own (no daemon): real processes, real pipes and FIFOs in a temp spool directory.
// Bytes arrive exactly through every kind of pipe and redirection, each command's end is reported once, the
// recipe's status follows recipe order, abort() leaves no process and no pipe, and no fd of the caller leaks. As
// root, a command run as another account that cannot start is reported as for the daemon's own.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { lookupAccount, RunAs } from '../../daemon/accounts.js';
import { ErrorCode, NetplumbError } from '../../protocol/errors.js';
import type { StageEnd } from '../../protocol/session.js';
import { prepareRecipe, recipeStatus, STAGE_NOT_EXECUTABLE_CODE, STAGE_NOT_FOUND_CODE, STAGE_REDIRECTION_FAILED_CODE } from '../../recipes/execute.js';
import { ensureFixtureAccounts, NEEDS_ROOT, RUNAS } from '../helpers/accounts.js';
import {
  deterministicBytes,
  deterministicSha256,
  deterministicStream,
  killMarkedAtCleanup,
  processesWithMarker,
  tempDir,
  uniqueMarker,
  waitUntil,
} from '../helpers/daemon.js';
import {
  BIG_PAYLOAD_BYTES,
  boundedOutcome,
  collector,
  executeText,
  fifosIn,
  hashingSink,
  markedSleep,
  openFdCount,
  planRecipe,
  prepareText,
  recipeEnv,
  settledFdCount,
  withinMs,
  sha256File,
  sha256Files,
  writeDeterministicFile,
} from '../helpers/recipes.js';

const TIMEOUT_MS = 180_000;
/** A pipe write of at most this many bytes is atomic (Linux PIPE_BUF): several writers' records never mix. */
const PIPE_BUF_BYTES = 4096;

/** Shared inputs, made once: a 64 MiB file of a known stream and two small ones. */
let inputs: { dir: string; big: string; bigSha256: string; small1: string; small2: string };

// Made here, not in before(): the directory's removal belongs to the whole file.
const inputsDir = tempDir({ after }, 'netplumb-exec-inputs-');

before(async () => {
  const dir = inputsDir;
  const big = join(dir, 'big.bin');
  await writeDeterministicFile(big, 'execute-big', BIG_PAYLOAD_BYTES);
  const small1 = join(dir, 'small1.bin');
  const small2 = join(dir, 'small2.bin');
  await writeDeterministicFile(small1, 'execute-small-1', 1024 * 1024 + 17);
  await writeDeterministicFile(small2, 'execute-small-2', 300_001);
  inputs = { dir, big, bigSha256: deterministicSha256('execute-big', BIG_PAYLOAD_BYTES), small1, small2 };
});

/** A file name as a recipe word: single quotes keep it literal. */
function q(path: string): string {
  assert.ok(!path.includes("'"));
  return `'${path}'`;
}

function statusOf(ends: readonly StageEnd[], stage: number): StageEnd['status'] | undefined {
  return ends.find((end) => end.stage === stage)?.status;
}

// ---- bytes -------------------------------------------------------------------------------------------------

test('64 MiB written with >%label arrive exactly on the labelled command', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const result = await executeText(`cat ${q(inputs.big)} >%sink &\nsink: cat\n`, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
});

test('64 MiB written with 2>%label arrive exactly on the labelled command, its stdout elsewhere', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = `sh -c 'cat "$0" >&2; echo to-stdout' ${q(inputs.big)} 2>%sink &\nsink: cat >got.bin\n`;
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sha256File(join(spool, 'got.bin')), { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.equal(result.stdout.toString(), 'to-stdout\n');
  assert.equal(result.stderr.length, 0);
});

test('64 MiB pass exactly through a chain of lines ending in |', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const result = await executeText(`cat ${q(inputs.big)} |\ncat |\ncat\n`, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.deepEqual(result.ends.map((end) => end.status), [{ code: 0 }, { code: 0 }, { code: 0 }]);
});

test('a line ending in | with 2>&1 >file sends its stderr into the pipe', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const text = `sh -c 'echo to-file; cat "$0" >&2' ${q(inputs.big)} 2>&1 >out.txt |\ncat\n`;
  const result = await executeText(text, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.equal(readFileSync(join(spool, 'out.txt'), 'utf8'), 'to-file\n');
});

test('64 MiB pass exactly through a named pipe, and the pipe is gone afterwards', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const result = await executeText(`fifo data\ncat ${q(inputs.big)} >@data &\ncat <@data\n`, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.deepEqual(fifosIn(spool), []);
});

test('a named pipe read by a background command and written by a later foreground one carries 64 MiB', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const result = await executeText(`fifo data\ncat <@data >copy.bin &\ncat ${q(inputs.big)} >@data\n`, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sha256File(join(spool, 'copy.bin')), { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.deepEqual(fifosIn(spool), []);
});

test('>> appends in recipe order after what the file held; > truncates', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'appended.bin'), 'header\n');
  writeFileSync(join(spool, 'truncated.bin'), 'x'.repeat(5_000_000));
  const text = [
    `cat ${q(inputs.big)} >>appended.bin`,
    `cat ${q(inputs.small1)} >>appended.bin`,
    `sh -c 'cat "$0" >&2' ${q(inputs.small2)} 2>>appended.bin`,
    `cat ${q(inputs.small1)} >truncated.bin`,
    '',
  ].join('\n');
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  const header = join(inputs.dir, 'header.txt');
  writeFileSync(header, 'header\n');
  const expected = await sha256Files([header, inputs.big, inputs.small1, inputs.small2]);
  const got = await sha256File(join(spool, 'appended.bin'));
  assert.equal(got.bytes, 'header\n'.length + BIG_PAYLOAD_BYTES + statSync(inputs.small1).size + statSync(inputs.small2).size);
  assert.equal(got.sha256, expected);
  assert.deepEqual(await sha256File(join(spool, 'truncated.bin')), await sha256File(inputs.small1));
});

test('>file 2>&1 sends stdout and stderr into the file, in the order they were written', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = `sh -c 'cat "$0"; cat "$1" >&2; cat "$2"; cat "$1" >&2' ${q(inputs.big)} ${q(inputs.small1)} ${q(inputs.small2)} >both.bin 2>&1\n`;
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.equal(result.stdout.length, 0);
  assert.equal(result.stderr.length, 0);
  const expected = await sha256Files([inputs.big, inputs.small1, inputs.small2, inputs.small1]);
  assert.equal((await sha256File(join(spool, 'both.bin'))).sha256, expected);
});

test('2>&1 >file sends stderr where stdout went before, and only stdout into the file', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const text = `sh -c 'cat "$0"; cat "$1" >&2' ${q(inputs.small1)} ${q(inputs.big)} 2>&1 >out.bin\n`;
  const result = await executeText(text, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.equal(result.stderr.length, 0);
  assert.deepEqual(await sha256File(join(spool, 'out.bin')), await sha256File(inputs.small1));
});

test('several writers into one label: every record arrives, and the reader sees EOF only after the last writer', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const writers = 3;
  const recordsPerWriter = Math.ceil(BIG_PAYLOAD_BYTES / PIPE_BUF_BYTES / writers);
  const expected: string[] = [];
  for (let writer = 0; writer < writers; writer++) {
    // Records of exactly PIPE_BUF bytes written one per write(2) by dd: each arrives whole, so records of
    // different writers may interleave but never mix.
    const body = deterministicBytes(`writer-${writer}`, recordsPerWriter * PIPE_BUF_BYTES);
    for (let record = 0; record < recordsPerWriter; record++) {
      body.write(`w${writer} r${String(record).padStart(8, '0')}\n`, record * PIPE_BUF_BYTES, 'latin1');
    }
    writeFileSync(join(spool, `w${writer}.bin`), body);
    expected.push((await sha256File(join(spool, `w${writer}.bin`))).sha256);
  }
  const text = [
    `first: dd if=w0.bin bs=${PIPE_BUF_BYTES} status=none >%merge &`,
    // Both outputs into the label: the command counts as one writer.
    `second: sh -c 'dd if=w1.bin bs=${PIPE_BUF_BYTES} status=none' >%merge 2>&1 &`,
    `late: sh -c 'sleep 1; exec dd if=w2.bin bs=${PIPE_BUF_BYTES} status=none' 2>%merge >%merge &`,
    'merge: cat >merged.bin',
    '',
  ].join('\n');
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  const order = result.ends.map((end) => end.name);
  assert.equal(order.at(-1), 'merge', `the reader ended before a writer: ${order.join(', ')}`);
  const merged = readFileSync(join(spool, 'merged.bin'));
  assert.equal(merged.length, writers * recordsPerWriter * PIPE_BUF_BYTES);
  const perWriter: Buffer[][] = Array.from({ length: writers }, () => []);
  for (let offset = 0; offset < merged.length; offset += PIPE_BUF_BYTES) {
    const record = merged.subarray(offset, offset + PIPE_BUF_BYTES);
    const header = /^w(\d) r(\d{8})\n/.exec(record.toString('latin1', 0, 13));
    assert.ok(header !== null, `record at ${offset} has no header`);
    const writer = Number(header[1]);
    const pieces = perWriter[writer];
    assert.ok(pieces !== undefined);
    assert.equal(Number(header[2]), pieces.length, `writer ${writer}'s records out of order`);
    pieces.push(record);
  }
  perWriter.forEach((pieces, writer) => {
    assert.equal(pieces.length, recordsPerWriter);
    const hash = createHash('sha256');
    for (const piece of pieces) hash.update(piece);
    assert.equal(hash.digest('hex'), expected[writer], `writer ${writer}'s bytes`);
  });
});

test('a reader that stops early ends its writers by SIGPIPE, through |, a label and a named pipe', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = ['yes |', 'head -c 3', 'yes >%h &', 'h: head -c 4', 'fifo f', 'yes >@f &', 'head -c 5 <@f', ''].join('\n');
  const result = await executeText(text, spool, { timeoutMs: 30_000 });
  assert.equal(result.stdout.toString(), 'y\ny' + 'y\ny\n' + 'y\ny\ny');
  assert.deepEqual(
    result.outcome.stages.map((end) => end.status),
    [{ signal: 'SIGPIPE' }, { code: 0 }, { signal: 'SIGPIPE' }, { code: 0 }, { signal: 'SIGPIPE' }, { code: 0 }],
  );
  assert.deepEqual(result.outcome.status, { signal: 'SIGPIPE' });
});

test('a reader that cannot start ends its writer by SIGPIPE; a writer that cannot start gives its reader EOF', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = ['yes |', 'no-such-command-np-test', 'no-such-command-np-test |', 'wc -c', ''].join('\n');
  const result = await executeText(text, spool, { timeoutMs: 30_000 });
  assert.equal(result.stdout.toString().trim(), '0');
  assert.deepEqual(result.outcome.stages[0]?.status, { signal: 'SIGPIPE' });
  assert.deepEqual(result.outcome.stages[3]?.status, { code: 0 });
});

test('a command that stops reading <%stdin early does not hold up the run', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  // Far more than any pipe holds, produced only as it is read.
  const stdin = deterministicStream('execute-endless', 1024 * 1024 * 1024);
  const result = await executeText('head -c 10 <%stdin\necho after\n', spool, { stdin, timeoutMs: 30_000 });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(result.stdout, Buffer.concat([deterministicBytes('execute-endless', 10), Buffer.from('after\n')]));
  await waitUntil('the stdin Readable to be dropped', () => stdin.destroyed, 5000);
});

test('when the stdout Writable goes away, writers into it get SIGPIPE and the run ends', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const { run } = await prepareText('yes\necho next\n', spool);
  let received = 0;
  const stdout = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > 1024 * 1024) this.destroy();
      callback();
    },
  });
  run.start({ stdin: Readable.from([]), stdout, stderr: collector().stream });
  const outcome = await boundedOutcome(run, 30_000);
  assert.deepEqual(outcome.stages[0]?.status, { signal: 'SIGPIPE' });
  assert.equal(outcome.stages.length, 2);
  assert.deepEqual(outcome.status, { signal: 'SIGPIPE' });
});

test('<file reads a file of the spool directory', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'in.txt'), 'lower case\n');
  const result = await executeText('tr a-z A-Z <in.txt\n', spool);
  assert.equal(result.stdout.toString(), 'LOWER CASE\n');
});

test('a character device reaches the command as an ordinary, blocking descriptor, both ways', { timeout: TIMEOUT_MS }, async (t) => {
  // The daemon opens redirections with O_NONBLOCK so that it never waits; a command that kept that flag on its
  // terminal or tape would see EAGAIN (libuv clears it on a child's stdio). /proc/PID/fdinfo shows the flags the
  // command really has (O_NONBLOCK: 04000).
  const spool = tempDir(t);
  const text = "sh -c 'grep ^flags /proc/$$/fdinfo/0 >&2; grep ^flags /proc/$$/fdinfo/1 >&2' </dev/zero >/dev/null 2>flags.txt\n";
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, JSON.stringify(result.ends));
  const flags = readFileSync(join(spool, 'flags.txt'), 'utf8');
  const values = [...flags.matchAll(/^flags:\s+([0-7]+)$/gm)].map((match) => parseInt(match[1] as string, 8));
  assert.equal(values.length, 2, flags);
  for (const value of values) assert.equal(value & 0o4000, 0, `a device descriptor has O_NONBLOCK: ${flags}`);
});

// ---- stage report and status -------------------------------------------------------------------------------

test('onStageEnd is called once per command with its name, line and status', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = ['# a comment line', 'first: true', '', 'false', "three: sh -c 'exit 3'", 'last: true', ''].join('\n');
  const result = await executeText(text, spool);
  assert.deepEqual(result.ends, [
    { stage: 0, name: 'first', line: 2, status: { code: 0 } },
    { stage: 1, name: 'line 4', line: 4, status: { code: 1 } },
    { stage: 2, name: 'three', line: 5, status: { code: 3 } },
    { stage: 3, name: 'last', line: 6, status: { code: 0 } },
  ]);
  assert.deepEqual(result.outcome.stages, result.ends);
  // A failing middle command decides the status although the last one succeeded; the first in recipe order wins.
  assert.deepEqual(result.outcome.status, { code: 1 });
  assert.equal(result.outcome.abortedBecause, undefined);
});

test('the first failing command in recipe order decides the status, not the first to end', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = ["slow: sh -c 'sleep 1; exit 4' &", "fast: sh -c 'exit 5'", ''].join('\n');
  const result = await executeText(text, spool);
  assert.deepEqual(
    result.ends.map((end) => end.name),
    ['fast', 'slow'],
  );
  assert.deepEqual(result.outcome.status, { code: 4 });
  assert.deepEqual(
    result.outcome.stages.map((end) => end.name),
    ['slow', 'fast'],
    'outcome.stages are in recipe order',
  );
});

test('a command killed by a signal is reported with that signal and gives the recipe its status', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const result = await executeText("true\nsh -c 'kill -TERM $$'\nsh -c 'exit 9'\n", spool);
  assert.deepEqual(statusOf(result.ends, 1), { signal: 'SIGTERM' });
  assert.deepEqual(statusOf(result.ends, 2), { code: 9 });
  assert.deepEqual(result.outcome.status, { signal: 'SIGTERM' });
});

test('recipeStatus: 0 when all exited 0, else the first failure in stage order; aborted without failure is SIGTERM', () => {
  const end = (stage: number, status: StageEnd['status']): StageEnd => ({ stage, name: `line ${stage + 1}`, line: stage + 1, status });
  assert.deepEqual(recipeStatus([]), { code: 0 });
  assert.deepEqual(recipeStatus([end(0, { code: 0 }), end(1, { code: 0 })]), { code: 0 });
  assert.deepEqual(recipeStatus([end(2, { code: 7 }), end(1, { signal: 'SIGKILL' }), end(0, { code: 0 })]), { signal: 'SIGKILL' });
  assert.deepEqual(recipeStatus([end(1, { error: ErrorCode.CommandNotFound, message: 'x', code: 127 }), end(0, { code: 0 })]), { code: 127 });
  assert.deepEqual(recipeStatus([end(0, { code: 0 })], true), { signal: 'SIGTERM' });
  assert.deepEqual(recipeStatus([end(0, { code: 3 })], true), { code: 3 });
});

test('a command that is not found is a failed stage (127, NP_COMMAND_NOT_FOUND) and the rest still runs', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const result = await executeText('echo before\nno-such-command-np-test arg\necho after\n', spool);
  assert.equal(result.stdout.toString(), 'before\nafter\n');
  const status = statusOf(result.ends, 1);
  assert.ok(status !== undefined && 'error' in status, JSON.stringify(result.ends));
  assert.equal(status.error, ErrorCode.CommandNotFound);
  assert.equal(status.code, STAGE_NOT_FOUND_CODE);
  assert.equal(status.code, 127);
  assert.deepEqual(statusOf(result.ends, 2), { code: 0 });
  assert.deepEqual(result.outcome.status, { code: 127 });
  assert.equal(result.ends.length, 3);
});

test('a command that is not found as the last stage is still reported', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const result = await executeText('echo before\nno-such-command-np-test\n', spool);
  assert.equal(result.ends.length, 2, JSON.stringify(result.ends));
  const status = statusOf(result.ends, 1);
  assert.ok(status !== undefined && 'error' in status);
  assert.equal(status.error, ErrorCode.CommandNotFound);
  assert.deepEqual(result.outcome.status, { code: 127 });
});

test('a foreground command that cannot start is reported before the next command starts', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  // The second command fails at once too (its redirection), so a report of the first that comes late shows.
  const result = await executeText('no-such-command-np-test\ncat <missing.txt\n', spool);
  assert.deepEqual(
    result.ends.map((end) => end.name),
    ['line 1', 'line 2'],
    'onStageEnd calls come in the order the commands ended',
  );
});

test('a program that is not executable is a failed stage (126, NP_COMMAND_NOT_EXECUTABLE)', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'script.sh'), '#!/bin/sh\necho should not run\n', { mode: 0o644 });
  const result = await executeText(`${q(join(spool, 'script.sh'))}\necho after\n`, spool);
  const status = statusOf(result.ends, 0);
  assert.ok(status !== undefined && 'error' in status, JSON.stringify(result.ends));
  assert.equal(status.error, ErrorCode.CommandNotExecutable);
  assert.equal(status.code, 126);
  assert.equal(result.stdout.toString(), 'after\n');
  assert.deepEqual(result.outcome.status, { code: 126 });
});

test('a redirection from a missing file is a failed stage (1) and the rest still runs', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const result = await executeText('cat <missing.txt\necho after\n', spool);
  const status = statusOf(result.ends, 0);
  assert.ok(status !== undefined && 'error' in status, JSON.stringify(result.ends));
  assert.equal(status.code, STAGE_REDIRECTION_FAILED_CODE);
  assert.equal(status.code, 1);
  assert.equal(status.error, ErrorCode.SpawnFailed);
  assert.equal(result.stdout.toString(), 'after\n');
  assert.deepEqual(result.outcome.status, { code: 1 });
});

test('a redirection that cannot be opened is told by its path, never by the /proc/self/fd name it was opened through', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'in.txt'), 'text\n');
  symlinkSync('in.txt', join(spool, 'link'));
  const result = await executeText('cat <link\ncat <missing.txt\n', spool);
  for (const [stage, name, words] of [
    [0, 'link', 'too many symbolic links encountered'],
    [1, 'missing.txt', 'no such file or directory'],
  ] as const) {
    const status = statusOf(result.ends, stage);
    assert.ok(status !== undefined && 'error' in status, JSON.stringify(result.ends));
    assert.equal(status.error, ErrorCode.SpawnFailed);
    assert.equal(status.code, STAGE_REDIRECTION_FAILED_CODE);
    assert.equal(status.message, `redirection failed: ${join(spool, name)}: ${words}`);
  }
  assert.doesNotMatch(JSON.stringify(result.ends), /\/proc\/self\/fd/);
});

test(`as ${RUNAS}, a command that is not found or that it may not execute is a failed stage (127, 126) in the words the daemon's own account gets`, { timeout: TIMEOUT_MS, skip: NEEDS_ROOT }, async (t) => {
  ensureFixtureAccounts();
  const identity = new RunAs(await lookupAccount(RUNAS));
  const spool = tempDir(t);
  chmodSync(spool, 0o777);
  // Root may execute it, the account may not: access(2), which asks for root, must not decide.
  const bin = tempDir(t);
  chmodSync(bin, 0o755);
  const rootOnly = join(bin, 'root-only.sh');
  writeFileSync(rootOnly, '#!/bin/sh\necho ran\n', { mode: 0o700 });
  const text = `no-such-command-np-test\n${q(rootOnly)}\necho after\n`;
  const asAccount = await executeText(text, spool, { identity });
  const asOwn = await executeText(text, spool);
  assert.deepEqual(statusOf(asAccount.ends, 0), { error: ErrorCode.CommandNotFound, message: 'command not found: no-such-command-np-test', code: STAGE_NOT_FOUND_CODE });
  assert.deepEqual(statusOf(asAccount.ends, 0), statusOf(asOwn.ends, 0), 'as for the daemon\'s own account');
  assert.deepEqual(statusOf(asAccount.ends, 1), { error: ErrorCode.CommandNotExecutable, message: `permission denied: ${rootOnly}`, code: STAGE_NOT_EXECUTABLE_CODE });
  assert.deepEqual(statusOf(asOwn.ends, 1), { code: 0 }, 'root may run it');
  assert.equal(asAccount.stdout.toString(), 'after\n');
  assert.equal(asAccount.stderr.toString(), '', 'nothing of setpriv\'s own');
  assert.deepEqual(asAccount.outcome.status, { code: 127 });
});

test('a command that cannot start does not hold up the reader of its label pipe', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = 'no-such-command-np-test >%sink &\ncat <missing.txt >%sink &\necho fine >%sink &\nsink: cat\n';
  const result = await executeText(text, spool, { timeoutMs: 20_000 });
  assert.equal(result.stdout.toString(), 'fine\n');
  assert.deepEqual(statusOf(result.ends, 3), { code: 0 });
  assert.deepEqual(result.outcome.status, { code: 127 });
});

// ---- plumb's streams ---------------------------------------------------------------------------------------

test('<%stdin reads what the stdin Readable gives', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const input = Buffer.from('first line\nsecond line\n\u00e9\u0000binary\n', 'utf8');
  const result = await executeText('tr a-z A-Z <%stdin\n', spool, { stdin: Readable.from([input.subarray(0, 5), input.subarray(5)]) });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  const upper = Buffer.from(input.map((byte) => (byte >= 0x61 && byte <= 0x7a ? byte - 0x20 : byte)));
  assert.deepEqual(result.stdout, upper);
});

test('64 MiB read with <%stdin arrive exactly', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const result = await executeText('sha256sum <%stdin\n', spool, { stdin: deterministicStream('execute-stdin', BIG_PAYLOAD_BYTES) });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.equal(result.stdout.toString(), `${deterministicSha256('execute-stdin', BIG_PAYLOAD_BYTES)}  -\n`);
});

test('the stdin Readable is left alone when no command reads <%stdin', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  let reads = 0;
  const stdin = new Readable({
    read() {
      reads++;
      this.push(null);
    },
  });
  const result = await executeText('cat\n', spool, { stdin });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.equal(result.stdout.length, 0, 'cat read /dev/null');
  assert.equal(reads, 0);
});

test('unclaimed stdout and stderr arrive on their own Writables, kept apart', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = "sh -c 'echo out1; echo err1 >&2'\nsh -c 'echo err2 >&2; echo out2' &\nsh -c 'echo out3; echo err3 >&2'\n";
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 });
  // The first command ends before the others start; the other two run at once.
  const out = result.stdout.toString();
  const err = result.stderr.toString();
  assert.ok(out.startsWith('out1\n') && err.startsWith('err1\n'), `${out}|${err}`);
  assert.deepEqual(out.split('\n').sort(), ['', 'out1', 'out2', 'out3']);
  assert.deepEqual(err.split('\n').sort(), ['', 'err1', 'err2', 'err3']);
});

test('start() twice is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const { run } = await prepareText('true\n', spool);
  const io = { stdin: Readable.from([]), stdout: collector().stream, stderr: collector().stream };
  run.start(io);
  assert.throws(() => run.start(io), (error: unknown) => error instanceof NetplumbError && error.code === ErrorCode.Internal);
  assert.deepEqual((await boundedOutcome(run)).status, { code: 0 });
});

// ---- abort -------------------------------------------------------------------------------------------------

test('abort() ends every command, background and foreground, with their children, and removes the named pipes', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const bin = tempDir(t, 'netplumb-exec-bin-');
  const marker = uniqueMarker('abort');
  killMarkedAtCleanup(t, marker);
  const sleep = markedSleep(bin, marker);
  const text = [
    'fifo a b',
    `bg: ${q(sleep)} 30 &`,
    `grandchild: sh -c '"$0" 30 & wait' ${q(sleep)} &`,
    `writer: sh -c 'exec "$0" 30' ${q(sleep)} >@a 2>%lab &`,
    `reader: ${q(sleep)} 30 <@a &`,
    `lab: ${q(sleep)} 30 &`,
    `${q(sleep)} 30 >@b &`,
    `sink: ${q(sleep)} 30 <@b`,
    'never: true',
    '',
  ].join('\n');
  const { run, ends } = await prepareText(text, spool, { killGraceMs: 5000 });
  assert.deepEqual(fifosIn(spool).sort(), ['a', 'b']);
  const stdout = collector();
  const stderr = collector();
  run.start({ stdin: Readable.from([]), stdout: stdout.stream, stderr: stderr.stream });
  // Eight: a process for each command, and the shell of the one whose child sleeps.
  await waitUntil('every sleep to run', () => processesWithMarker(marker).length === 8, 15_000);
  const started = Date.now();
  const outcome = await withinMs(run.abort('test abort'), 30_000, 'the end of the aborted run');
  assert.ok(Date.now() - started < 5000, 'SIGTERM alone ended them, before the kill grace');
  assert.equal(outcome.abortedBecause, 'test abort');
  assert.deepEqual(processesWithMarker(marker), []);
  assert.deepEqual(fifosIn(spool), []);
  assert.equal(
    outcome.stages.find((end) => end.name === 'never'),
    undefined,
    'a command not reached has no entry',
  );
  assert.ok('signal' in outcome.status, JSON.stringify(outcome.status));
  assert.equal(ends.filter((end) => end.name === 'never').length, 0);
  // Every started command was reported once, as ended by SIGTERM.
  assert.deepEqual(
    outcome.stages.map((end) => [end.name, end.status]),
    ['bg', 'grandchild', 'writer', 'reader', 'lab', 'line 7', 'sink'].map((name) => [name, { signal: 'SIGTERM' }]),
  );
  assert.equal(new Set(ends.map((end) => end.stage)).size, ends.length);
  assert.deepEqual(await run.abort('again'), outcome);
});

test('abort() kills a command that ignores SIGTERM once killGraceMs have passed', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const bin = tempDir(t, 'netplumb-exec-bin-');
  const marker = uniqueMarker('abort-ignore');
  killMarkedAtCleanup(t, marker);
  const sleep = markedSleep(bin, marker);
  const killGraceMs = 800;
  const { run } = await prepareText(`stubborn: sh -c 'trap "" TERM; "$0" 30' ${q(sleep)}\n`, spool, { killGraceMs });
  run.start({ stdin: Readable.from([]), stdout: collector().stream, stderr: collector().stream });
  await waitUntil('the shell and its sleep to run', () => processesWithMarker(marker).length === 2, 15_000);
  const started = Date.now();
  const outcome = await withinMs(run.abort('stop it'), 30_000, 'the end of the aborted run');
  const tookMs = Date.now() - started;
  assert.ok(tookMs >= killGraceMs - 50, `ended after ${tookMs} ms, before the kill grace`);
  assert.deepEqual(processesWithMarker(marker), []);
  assert.equal(outcome.abortedBecause, 'stop it');
  assert.deepEqual(outcome.status, { signal: 'SIGKILL' });
});

test('abort() before start() removes the named pipes and resolves the outcome', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const { run, ends } = await prepareText('fifo p\necho x >@p &\ncat <@p\n', spool);
  assert.deepEqual(fifosIn(spool), ['p']);
  const outcome = await run.abort('never started');
  assert.equal(outcome.abortedBecause, 'never started');
  assert.deepEqual(outcome.stages, []);
  assert.deepEqual(ends, []);
  assert.deepEqual(fifosIn(spool), []);
});

test('signal() reaches every running command', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const bin = tempDir(t, 'netplumb-exec-bin-');
  const marker = uniqueMarker('signal');
  killMarkedAtCleanup(t, marker);
  const sleep = markedSleep(bin, marker);
  const { run } = await prepareText(`${q(sleep)} 30 &\n${q(sleep)} 30\n`, spool);
  run.start({ stdin: Readable.from([]), stdout: collector().stream, stderr: collector().stream });
  await waitUntil('both sleeps to run', () => processesWithMarker(marker).length === 2, 15_000);
  run.signal('SIGHUP');
  const outcome = await boundedOutcome(run, 20_000);
  assert.deepEqual(
    outcome.stages.map((end) => end.status),
    [{ signal: 'SIGHUP' }, { signal: 'SIGHUP' }],
  );
  assert.deepEqual(outcome.status, { signal: 'SIGHUP' });
  assert.equal(outcome.abortedBecause, undefined);
});

// ---- setup -------------------------------------------------------------------------------------------------

test('prepare refuses a named pipe whose file exists (NP_RECIPE_SETUP) and leaves nothing behind', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'taken'), 'keep me\n');
  const plan = planRecipe('fifo first taken last\necho 1 >@first &\ncat <@first\necho 2 >@taken &\ncat <@taken\necho 3 >@last &\ncat <@last\n', spool);
  const fdsBefore = openFdCount();
  await assert.rejects(
    prepareRecipe(plan, { env: recipeEnv(), killGraceMs: 1000 }),
    (error: unknown) => error instanceof NetplumbError && error.code === ErrorCode.RecipeSetup,
  );
  assert.equal(readFileSync(join(spool, 'taken'), 'utf8'), 'keep me\n');
  assert.ok(statSync(join(spool, 'taken')).isFile());
  assert.equal(existsSync(join(spool, 'first')), false, 'the fifo made before the refusal is removed');
  assert.equal(existsSync(join(spool, 'last')), false, 'no fifo after the refusal is made');
  assert.deepEqual(fifosIn(spool), []);
  assert.ok((await settledFdCount(fdsBefore)) <= fdsBefore, 'no fd left open');
});

test('prepare makes a missing spool directory', { timeout: TIMEOUT_MS }, async (t) => {
  const parent = tempDir(t);
  const spool = join(parent, 'deeper', 'spool');
  const result = await executeText('fifo p\necho made >@p &\ncat <@p >out.txt\n', spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.equal(readFileSync(join(spool, 'out.txt'), 'utf8'), 'made\n');
  assert.deepEqual(fifosIn(spool), []);
});

test('files written with > and >> get mode 0644 less the umask; named pipes are made with mode 0600', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const { run } = await prepareText('fifo p\necho x >@p &\ncat <@p >out.txt\necho y >>appended.txt\n', spool);
  assert.equal(statSync(join(spool, 'p')).mode & 0o777, 0o600);
  run.start({ stdin: Readable.from([]), stdout: collector().stream, stderr: collector().stream });
  assert.deepEqual((await boundedOutcome(run)).status, { code: 0 });
  const umask = parseInt(/^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '022', 8);
  for (const name of ['out.txt', 'appended.txt']) assert.equal(statSync(join(spool, name)).mode & 0o777, 0o644 & ~umask, name);
});

test('commands run with the spool directory as their working directory', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  mkdirSync(join(spool, 'sub'));
  const result = await executeText('pwd\n', spool);
  assert.equal(result.stdout.toString(), `${spool}\n`);
});

// ---- fds -----------------------------------------------------------------------------------------------------

test('no fd of the caller is left open after runs that end, fail and are aborted', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  // Warm up: the first run opens what Node keeps for good (the signal pipe, the child-process machinery).
  await executeText('true\n', spool);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const before = openFdCount();
  const text = [
    'fifo f',
    'echo a >%r 2>%r &',
    "sh -c 'cat; echo from-stdin-done' <%stdin >@f &",
    'cat <@f |',
    'cat >piped.txt &',
    'r: cat >collected.txt &',
    'no-such-command-np-test &',
    'cat <missing.txt >appended.txt',
    'echo end >>appended.txt',
    '',
  ].join('\n');
  for (let round = 0; round < 3; round++) {
    const result = await executeText(text, spool, { stdin: Readable.from([Buffer.from('input\n')]) });
    assert.deepEqual(result.outcome.status, { code: 127 });
  }
  const { run } = await prepareText('sleep 30 &\nsleep 30\n', spool, { killGraceMs: 1000 });
  run.start({ stdin: Readable.from([]), stdout: collector().stream, stderr: collector().stream });
  await new Promise((resolve) => setTimeout(resolve, 200));
  await run.abort('fd test');
  const prepared = await prepareText('fifo g\necho x >@g &\ncat <@g\n', spool);
  await prepared.run.abort('fd test, never started');
  const left = await settledFdCount(before);
  assert.ok(left <= before, `${left - before} fds left open`);
});
