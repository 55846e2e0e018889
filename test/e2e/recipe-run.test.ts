// End to end: plumb -recipe against a real netplumbd with its own spool directory. The recipe's unclaimed stdout
// and stderr reach plumb's, kept apart; <%stdin reads plumb's stdin; 64 MiB cross exactly; plumb's status is the
// first failing command's in recipe order, with one stderr line per failed command; -json reports every command.

import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import type { RecipeReportJson } from '../../plumb-cli/recipe-report.js';
import { deterministicSha256, deterministicStream, hashStream } from '../helpers/payloads.js';
import { killMarkedAtCleanup, processesWithMarker, runProcess, uniqueMarker, waitUntil } from '../helpers/processes.js';
import { BIG_PAYLOAD_BYTES, commandStderr, fifosIn, plumbLines, startRecipeNetplumb } from '../helpers/recipes.js';

const TIMEOUT_MS = 180_000;

test("a recipe's stdout and stderr arrive apart on plumb's stdout and stderr", { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('apart.rcp', "sh -c 'echo out1; echo err1 >&2'\necho out2\nsh -c 'echo err2 >&2' &\necho out3 >&2\n");
  const result = await np.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'out1\nout2\n');
  assert.deepEqual(result.stderr.split('\n').sort(), ['', 'err1', 'err2', 'out3']);
  assert.ok(result.stderr.startsWith('err1\n'), result.stderr);
});

test("<%stdin reads plumb's stdin", { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('stdin.rcp', 'echo first\ntr a-z A-Z <%stdin\necho last\n');
  const result = await np.plumb([`-recipe=${recipe}`], { stdin: 'hello\nworld\n' });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'first\nHELLO\nWORLD\nlast\n');
  assert.equal(result.stderr, '');
});

test('plumb does not wait for its stdin when no command of the recipe reads it', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('no-stdin.rcp', 'echo done\n');
  // stdin stays open and silent for the whole run.
  const result = await np.spawnPlumb([`-recipe=${recipe}`], { stdin: 'open', timeoutMs: 30_000 }).result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'done\n');
});

test("64 MiB from plumb's stdin through three commands joined by | arrive exactly on plumb's stdout", { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('three.rcp', 'cat <%stdin |\ncat |\ncat\n');
  const run = np.spawnPlumb([`-recipe=${recipe}`], {
    stdin: deterministicStream('recipe-run-pipe', BIG_PAYLOAD_BYTES),
    stdout: 'stream',
    timeoutMs: 150_000,
  });
  const [got, result] = await Promise.all([hashStream(run.child.stdout!), run.result]);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(got, { bytes: BIG_PAYLOAD_BYTES, sha256: deterministicSha256('recipe-run-pipe', BIG_PAYLOAD_BYTES) });
});

test('64 MiB pass exactly through a label pipe and a named pipe on their way to plumb', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('label-fifo.rcp', 'fifo hop\ncat <%stdin >%middle &\nmiddle: cat >@hop &\ncat <@hop\n');
  const run = np.spawnPlumb([`-recipe=${recipe}`], {
    stdin: deterministicStream('recipe-run-label', BIG_PAYLOAD_BYTES),
    stdout: 'stream',
    timeoutMs: 150_000,
  });
  const [got, result] = await Promise.all([hashStream(run.child.stdout!), run.result]);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(got, { bytes: BIG_PAYLOAD_BYTES, sha256: deterministicSha256('recipe-run-label', BIG_PAYLOAD_BYTES) });
  assert.deepEqual(fifosIn(spool), []);
});

test('endless input to a recipe whose <%stdin reader stops early: plumb ends with the recipe status, no hang', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('head.rcp', 'head -c 10 <%stdin\necho after\n');
  const [node, ...argv] = np.plumbArgv([`-recipe=${recipe}`]);
  const result = await runProcess(t, ['sh', '-c', 'yes | "$0" "$@"; echo "plumb-status=$?" >&2', node as string, ...argv], {
    env: np.plumbEnv(),
    timeoutMs: 60_000,
  });
  assert.equal(result.stdout.toString(), 'y\ny\ny\ny\ny\nafter\n');
  assert.match(result.stderr, /plumb-status=0\n/);
});

test("a recipe writing into a plumb whose reader went away: the writer gets SIGPIPE and nothing is left", { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const marker = uniqueMarker('recipe-broken-pipe');
  killMarkedAtCleanup(t, marker);
  const recipe = writeRecipe('yes.rcp', `yes ${marker}\n`);
  const [node, ...argv] = np.plumbArgv([`-recipe=${recipe}`]);
  const result = await runProcess(t, ['sh', '-c', '{ "$0" "$@"; echo "plumb-status=$?" >&2; } | head -c 100', node as string, ...argv], {
    env: np.plumbEnv(),
    timeoutMs: 60_000,
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.length, 100);
  assert.match(result.stderr, new RegExp(`plumb-status=${128 + 13}\\n`));
  assert.match(result.stderr, /killed by SIGPIPE/);
  await waitUntil('the remote yes to be gone', () => processesWithMarker(marker).length === 0);
});

/** A recipe whose commands fail in every way, in the foreground so that they end in recipe order. */
const FAILING_RECIPE = [
  '# every way a command can fail',
  'ok: true',
  "bad: sh -c 'exit 3'",
  'false',
  'no-such-command-np-e2e arg',
  'cat <missing-file.txt',
  "sh -c 'kill -TERM $$'",
  'last: echo last',
  '',
].join('\n');

test('plumb ends with the first failing status in recipe order and prints one line per failed command', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('failing.rcp', FAILING_RECIPE);
  const result = await np.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 3, result.stderr);
  assert.equal(result.stdout.toString(), 'last\n');
  const lines = plumbLines(result.stderr);
  assert.equal(lines.length, 5, result.stderr);
  // Sorted by line number: the order of the two commands that could not start is the executor test's business.
  const byLine = [...lines].sort((a, b) => lineOf(a) - lineOf(b));
  assert.equal(byLine[0], `plumb: bad (${recipe}:3) exited with status 3`);
  assert.equal(byLine[1], `plumb: line 4 (${recipe}:4) exited with status 1`);
  assert.equal(byLine[2], `plumb: line 5 (${recipe}:5) did not start: command not found: no-such-command-np-e2e (${ErrorCode.CommandNotFound})`);
  assert.match(byLine[3] ?? '', new RegExp(`^plumb: line 6 \\(${escapeRegExp(recipe)}:6\\) did not start: .*missing-file\\.txt.* \\(${ErrorCode.SpawnFailed}\\)$`));
  assert.equal(byLine[4], `plumb: line 7 (${recipe}:7) killed by SIGTERM`);
  assert.equal(lines[4], byLine[4], 'the killed command, last to end, is reported last');
  assert.equal(commandStderr(result.stderr), '');
});

test('the first failing command in recipe order sets the status even when a later one fails first', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('order.rcp', "slow: sh -c 'sleep 1; exit 4' &\nfast: sh -c 'exit 5'\nfine: true\n");
  const result = await np.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 4, result.stderr);
  // The lines come as the commands end: fast first.
  assert.deepEqual(plumbLines(result.stderr), [`plumb: fast (${recipe}:2) exited with status 5`, `plumb: slow (${recipe}:1) exited with status 4`]);
});

test('a failing middle command sets the status although the last one succeeds', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('middle.rcp', "true\nsh -c 'exit 42'\necho done\n");
  const result = await np.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 42, result.stderr);
  assert.equal(result.stdout.toString(), 'done\n');
});

test('a command killed by a signal makes plumb end with 128+N', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('killed.rcp', "true\nvictim: sh -c 'kill -KILL $$'\nsh -c 'exit 1'\n");
  const result = await np.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 128 + 9, result.stderr);
  assert.deepEqual(plumbLines(result.stderr), [`plumb: victim (${recipe}:2) killed by SIGKILL`, `plumb: line 3 (${recipe}:3) exited with status 1`]);
});

test('a recipe whose commands all succeed ends plumb with 0 and prints nothing of its own', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('fine.rcp', 'true\necho ok\n');
  const result = await np.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
});

// ---- -json ---------------------------------------------------------------------------------------------------

/** The report FAILING_RECIPE gives, with the not-started redirection's message left out (it holds OS text). */
function expectedFailingReport(recipe: string, machine: string): RecipeReportJson {
  return {
    recipe,
    machine,
    exitStatus: 3,
    stages: [
      // Every command that ran is counted, each of plumb's stdout's writers apart: `last` wrote its 5 bytes.
      { stage: 0, name: 'ok', line: 2, argv: ['true'], outcome: 'ended', code: 0, bytesIn: 0, bytesOut: 0, bytesErr: 0 },
      { stage: 1, name: 'bad', line: 3, argv: ['sh', '-c', 'exit 3'], outcome: 'ended', code: 3, bytesIn: 0, bytesOut: 0, bytesErr: 0 },
      { stage: 2, name: 'line 4', line: 4, argv: ['false'], outcome: 'ended', code: 1, bytesIn: 0, bytesOut: 0, bytesErr: 0 },
      {
        stage: 3,
        name: 'line 5',
        line: 5,
        argv: ['no-such-command-np-e2e', 'arg'],
        outcome: 'not-started',
        code: 127,
        error: ErrorCode.CommandNotFound,
        message: 'command not found: no-such-command-np-e2e',
      },
      { stage: 4, name: 'line 6', line: 6, argv: ['cat'], outcome: 'not-started', code: 1, error: ErrorCode.SpawnFailed },
      { stage: 5, name: 'line 7', line: 7, argv: ['sh', '-c', 'kill -TERM $$'], outcome: 'killed', signal: 'SIGTERM', bytesIn: 0, bytesOut: 0, bytesErr: 0 },
      { stage: 6, name: 'last', line: 8, argv: ['echo', 'last'], outcome: 'ended', code: 0, bytesIn: 0, bytesOut: 5, bytesErr: 0 },
    ],
  };
}

function checkFailingReport(report: RecipeReportJson, recipe: string, machine: string): void {
  const redirection = report.stages[4];
  assert.ok(redirection !== undefined);
  assert.match(redirection.message ?? '', /missing-file\.txt/);
  delete redirection.message;
  // A command that ran has when it started and ended (ISO 8601, in order); one that never started has neither.
  for (const stage of report.stages) {
    if (stage.outcome === 'ended' || stage.outcome === 'killed') {
      const { startedAt, endedAt } = stage;
      assert.ok(startedAt !== undefined && endedAt !== undefined, JSON.stringify(stage));
      assert.ok(Date.parse(startedAt) <= Date.parse(endedAt), JSON.stringify(stage));
      assert.equal(new Date(startedAt).toISOString(), startedAt);
    } else {
      assert.equal(stage.startedAt, undefined);
    }
    delete stage.startedAt;
    delete stage.endedAt;
  }
  // plumb's own streams: all of stdout is `last`'s line; their times are checked in progress.test.ts.
  const streams = report.streams ?? [];
  assert.deepEqual(streams.map((stream) => stream.name), ['stdin', 'stdout', 'stderr']);
  assert.equal(streams[1]?.bytesIn, 'last\n'.length);
  delete report.streams;
  assert.deepEqual(report, expectedFailingReport(recipe, machine));
}

test('-json=FILE writes the report into FILE, field by field', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, recipeDir, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('failing.rcp', FAILING_RECIPE);
  const reportFile = join(recipeDir, 'report.json');
  const result = await np.plumb([`-recipe=${recipe}`, `-json=${reportFile}`]);
  assert.equal(result.code, 3, result.stderr);
  assert.equal(plumbLines(result.stderr).length, 5, 'the failure lines are still printed');
  assert.ok(!result.stderr.includes('{'), 'no report on stderr');
  const text = readFileSync(reportFile, 'utf8');
  assert.ok(text.endsWith('}\n') && text.indexOf('\n') === text.length - 1, 'one line');
  assert.equal(statSync(reportFile).mode & 0o777, 0o600);
  checkFailingReport(JSON.parse(text) as RecipeReportJson, recipe, np.daemon.address);
});

test('-json counts every command\'s bytes in and out, whatever joins them: a | pipe, a label, files, a named pipe, /dev/null', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, recipeDir, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe(
    'counted.rcp',
    ['fifo p', 'sum: wc -c >count.txt &', 'head -c 1000 /dev/zero >%sum', 'cat <%stdin |', 'gzip -1 -c >data.gz', 'head -c 3000 /dev/zero >@p &', 'wc -c <@p', 'head -c 500 /dev/zero >/dev/null', ''].join('\n'),
  );
  const size = 100_000;
  const reportFile = join(recipeDir, 'counted.json');
  const result = await np.plumb([`-recipe=${recipe}`, `-json=${reportFile}`], { stdin: deterministicStream('counted-e2e', size) });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), '3000\n');
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as RecipeReportJson;
  const gzipped = statSync(join(spool, 'data.gz')).size;
  assert.deepEqual(
    report.stages.map(({ name, bytesIn, bytesOut, bytesErr }) => ({ name, bytesIn, bytesOut, bytesErr })),
    [
      { name: 'sum', bytesIn: 1000, bytesOut: '1000\n'.length, bytesErr: 0 },
      { name: 'line 3', bytesIn: 0, bytesOut: 1000, bytesErr: 0 },
      { name: 'line 4', bytesIn: size, bytesOut: size, bytesErr: 0 },
      { name: 'line 5', bytesIn: size, bytesOut: gzipped, bytesErr: 0 },
      { name: 'line 6', bytesIn: 0, bytesOut: 3000, bytesErr: 0 },
      { name: 'line 7', bytesIn: 3000, bytesOut: '3000\n'.length, bytesErr: 0 },
      { name: 'line 8', bytesIn: 0, bytesOut: 500, bytesErr: 0 },
    ],
  );
  assert.equal(readFileSync(join(spool, 'count.txt'), 'utf8'), '1000\n');
});

test('-json after the machine writes the report as the last line of stderr (as plumb(1) writes it)', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('failing.rcp', FAILING_RECIPE);
  const result = await np.plumb([`-recipe=${recipe}`, '-json']);
  assert.equal(result.code, 3, result.stderr);
  const lines = result.stderr.split('\n');
  assert.equal(lines.pop(), '');
  const last = lines.pop() ?? '';
  assert.ok(last.startsWith('{'), result.stderr);
  assert.equal(lines.length, 5, 'the five failure lines come before the report');
  checkFailingReport(JSON.parse(last) as RecipeReportJson, recipe, np.daemon.address);
});

test('-json given before the machine writes the same report on stderr', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const recipe = writeRecipe('failing.rcp', FAILING_RECIPE);
  const result = await np.plumb([], { options: ['-json', `-recipe=${recipe}`] });
  assert.equal(result.code, 3, result.stderr);
  const last = result.stderr.trimEnd().split('\n').pop() ?? '';
  checkFailingReport(JSON.parse(last) as RecipeReportJson, recipe, np.daemon.address);
});

test('-json reports a recipe the daemon refuses at setup: failure set, every command not-run, status 2', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, recipeDir, writeRecipe } = await startRecipeNetplumb(t);
  // A file where the named pipe is to be made: the daemon refuses to reuse it.
  writeFileSync(join(spool, 'taken'), 'keep\n');
  const recipe = writeRecipe('setup.rcp', 'fifo taken\necho x >@taken &\ncat <@taken\n');
  const reportFile = join(recipeDir, 'setup.json');
  const result = await np.plumb([`-recipe=${recipe}`, `-json=${reportFile}`]);
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /\(NP_RECIPE_SETUP\)\n$/);
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as RecipeReportJson;
  assert.equal(report.exitStatus, null);
  assert.equal(report.failure?.code, ErrorCode.RecipeSetup);
  assert.deepEqual(
    report.stages.map((stage) => stage.outcome),
    ['not-run', 'not-run'],
  );
  assert.equal(readFileSync(join(spool, 'taken'), 'utf8'), 'keep\n');
});

/** The recipe line a `plumb: NAME (FILE:LINE) ...` line names. */
function lineOf(line: string): number {
  return Number(/:(\d+)\) /.exec(line)?.[1] ?? Number.NaN);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
