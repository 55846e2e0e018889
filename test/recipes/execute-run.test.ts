// The recipe executor on its own, the run's life: each command's end reported once, the recipe's status in
// recipe order, plumb's streams joined, abort() and signal() leaving no process and no pipe, setup refusals and
// modes, and no fd of the caller leaked. Real processes, real pipes and FIFOs in a temp spool directory.

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { OWN_IDENTITY } from '../../bridges/identity.js';
import { lookupAccount, RunAs } from '../../daemon/accounts.js';
import { ErrorCode, NetplumbError } from '../../protocol/errors.js';
import type { StageEnd } from '../../protocol/session.js';
import { prepareRecipe, recipeStatus, STAGE_NOT_EXECUTABLE_CODE, STAGE_NOT_FOUND_CODE, STAGE_REDIRECTION_FAILED_CODE } from '../../recipes/execute.js';
import { ensureFixtureAccounts, NEEDS_ROOT, RUNAS } from '../helpers/accounts.js';
import { deterministicSha256, deterministicStream } from '../helpers/payloads.js';
import { killMarkedAtCleanup, processesWithMarker, uniqueMarker, waitUntil } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';
import {
  BIG_PAYLOAD_BYTES,
  boundedOutcome,
  collector,
  executeText,
  fifosIn,
  markedSleep,
  openFdCount,
  planRecipe,
  prepareText,
  recipeEnv,
  settledFdCount,
  withinMs,
} from '../helpers/recipes.js';


const TIMEOUT_MS = 180_000;

/** A file name as a recipe word: single quotes keep it literal. */
function q(path: string): string {
  assert.ok(!path.includes("'"));
  return `'${path}'`;
}

function statusOf(ends: readonly StageEnd[], stage: number): StageEnd['status'] | undefined {
  return ends.find((end) => end.stage === stage)?.status;
}

// ---- stage report and status -------------------------------------------------------------------------------

test('onStageEnd is called once per command with its name, line, status and when it started and ended', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = ['# a comment line', 'first: true', '', 'false', "three: sh -c 'exit 3'", 'last: true', ''].join('\n');
  const before = Date.now();
  const result = await executeText(text, spool);
  const after = Date.now();
  for (const end of result.ends) {
    assert.ok(end.startedAt !== undefined && end.endedAt !== undefined, JSON.stringify(end));
    assert.ok(before <= end.startedAt && end.startedAt <= end.endedAt && end.endedAt <= after, JSON.stringify(end));
  }
  assert.deepEqual(result.ends.map(({ startedAt: _started, endedAt: _ended, ...rest }) => rest), [
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

test('a refused named pipe is told by its own name and line; the spool keeps nothing of the setup', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'second'), '');
  const plan = planRecipe('fifo first\nfifo second third\necho 1 >@first &\ncat <@first\necho 2 >@second &\ncat <@second\necho 3 >@third &\ncat <@third\n', spool, 'taken.rcp');
  await assert.rejects(prepareRecipe(plan, { env: recipeEnv(), killGraceMs: 1000 }), (error: unknown) => {
    assert.ok(error instanceof NetplumbError && error.code === ErrorCode.RecipeSetup, String(error));
    assert.equal(error.message, `cannot make named pipe ${join(spool, 'second')} (taken.rcp:2): file already exists`);
    return true;
  });
  assert.deepEqual(readdirSync(spool), ['second'], 'no pipe made, no staging directory left');
});

test('when mkfifo fails for one of the declared named pipes, the first it did not make is told, in its own words', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  // mkfifo as it fails on a full disk, for b only: it goes on with the others, as GNU mkfifo does.
  const failsForB = 'st=0; for p; do case $p in */b) echo "mkfifo: cannot create fifo \'$p\': No space left on device" >&2; st=1;; *) mkfifo -m 600 "$p";; esac; done; exit $st';
  const identity = { ...OWN_IDENTITY, command: (_program: string, args: readonly string[]): [string, string[]] => ['sh', ['-c', failsForB, 'sh', ...args.slice(2)]] };
  const plan = planRecipe('fifo a b c\necho a >@a &\ncat <@a\necho b >@b &\ncat <@b\necho c >@c &\ncat <@c\n', spool, 'full.rcp');
  await assert.rejects(prepareRecipe(plan, { env: recipeEnv(), killGraceMs: 1000, identity }), (error: unknown) => {
    assert.ok(error instanceof NetplumbError && error.code === ErrorCode.RecipeSetup, String(error));
    assert.equal(error.message, `cannot make named pipe ${join(spool, 'b')} (full.rcp:1): cannot create fifo '${join(spool, 'b')}': No space left on device`);
    return true;
  });
  assert.deepEqual(readdirSync(spool), [], 'neither the pipes mkfifo made nor its directory are left');
});

test('every declared named pipe is made, mode 0600, and removed at the end; nothing else is left in the spool', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const { run } = await prepareText('fifo a b\nfifo c\necho a >@a &\necho b >@b &\necho c >@c &\ncat <@a\ncat <@b\ncat <@c\n', spool);
  assert.deepEqual(readdirSync(spool).sort(), ['a', 'b', 'c']);
  for (const name of ['a', 'b', 'c']) assert.equal(statSync(join(spool, name)).mode & 0o777, 0o600, name);
  const out = collector();
  run.start({ stdin: Readable.from([]), stdout: out.stream, stderr: collector().stream });
  assert.deepEqual((await boundedOutcome(run)).status, { code: 0 });
  assert.deepEqual(readdirSync(spool), []);
});

test(`as ${RUNAS}, the declared named pipes are made as the account, and a spool it may not write refuses the first one`, { timeout: TIMEOUT_MS, skip: NEEDS_ROOT }, async (t) => {
  ensureFixtureAccounts();
  const identity = new RunAs(await lookupAccount(RUNAS));
  const spool = tempDir(t);
  chmodSync(spool, 0o777);
  const text = 'fifo p q\necho p >@p &\necho q >@q &\ncat <@p\ncat <@q\n';
  const { run } = await prepareText(text, spool, { identity });
  for (const name of ['p', 'q']) {
    const stat = statSync(join(spool, name));
    assert.deepEqual([stat.uid, stat.gid, stat.mode & 0o777], [identity.account.uid, identity.account.gid, 0o600], name);
  }
  run.start({ stdin: Readable.from([]), stdout: collector().stream, stderr: collector().stream });
  assert.deepEqual((await boundedOutcome(run)).status, { code: 0 });
  assert.deepEqual(readdirSync(spool), []);

  chmodSync(spool, 0o755);
  await assert.rejects(prepareRecipe(planRecipe(text, spool, 'closed.rcp'), { env: recipeEnv(), killGraceMs: 1000, identity }), (error: unknown) => {
    assert.ok(error instanceof NetplumbError && error.code === ErrorCode.RecipeSetup, String(error));
    assert.equal(error.message, `cannot make named pipe ${join(spool, 'p')} (closed.rcp:1): permission denied`);
    return true;
  });
  assert.deepEqual(readdirSync(spool), []);
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
