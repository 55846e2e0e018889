// End to end: plumb -progress and the streams of the -json report. On a real terminal the status line is redrawn
// in place and names each open stream with its bytes, rate and time; into a pipe it comes as plain lines; either
// way a summary closes the run. On a terminal a run that lasts shows it unasked, unless -no-progress. A recipe's JSON report lists plumb's streams with their exact byte counts and
// times, and each command its bytes in and out.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import type { RecipeReportJson } from '../../plumb-cli/recipe-report.js';
import { reportedCode, startNetplumb } from '../helpers/daemon.js';
import { startOnTerminal } from '../helpers/endpoints.js';
import { deterministicStream } from '../helpers/payloads.js';
import { killGroup } from '../helpers/processes.js';
import { startMachines } from '../helpers/machines.js';
import { startRecipeNetplumb } from '../helpers/recipes.js';

const TIMEOUT_MS = 90_000;
const MIB = 1024 * 1024;

test('-progress on a terminal: the status line is redrawn in place with each open stream, then cleared for the summary', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // Two seconds of an open stdout: several redraws at four a second.
  const term = startOnTerminal(t, np.plumbArgv(['sh', '-c', 'sleep 2; echo finished'], { options: ['-progress'] }), { cols: 200, rows: 24, env: np.plumbEnv() });
  await term.waitFor(/plumb: .* in \d+\.\d\d s\n/);
  assert.equal((await term.exit()).exitCode, 0);
  const screen = term.screen();
  // After each \r ESC[K: a status line, the command's output (which clears the line first, so it never sticks to
  // the status), or the summary that ends the run.
  const pieces = screen.split('\r\x1b[K').slice(1);
  const last = pieces.pop() ?? '';
  assert.match(last, /^(?:finished\n)?plumb: stdin 0B, stdout 9B received, stderr 0B in \d+\.\d\d s\n$/, JSON.stringify(screen));
  const statusLines = pieces.filter((piece) => piece !== 'finished\n');
  assert.equal(screen.split('finished\n').length, 2, 'the output came once, on its own line');
  assert.ok(statusLines.length >= 3, `redrawn ${statusLines.length} times: ${JSON.stringify(screen)}`);
  // Each names the open streams (stdin, stdout and stderr here) with bytes, rate and time, then the run's time.
  for (const line of statusLines) assert.match(line, /^stdin .*stdout 0B 0B\/s 0:0\d .*\[0:0\d\]$/, JSON.stringify(line));
});

test('on a terminal, unasked: a run that lasts shows the status line and its summary; a quick one shows nothing more', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // A download into a file, as a person types it: stdout redirected, stderr still the terminal.
  const saved = join(np.dir, 'download');
  const intoFile = (argv: readonly string[]): string[] => ['sh', '-c', 'out=$1; shift; exec "$@" >"$out"', 'sh', saved, ...argv];
  const slow = startOnTerminal(t, intoFile(np.plumbArgv(['sh', '-c', 'sleep 2; echo finished'])), { cols: 200, rows: 24, env: np.plumbEnv() });
  await slow.waitFor(/plumb: .* in \d+\.\d\d s\n/);
  assert.equal((await slow.exit()).exitCode, 0);
  assert.equal(readFileSync(saved, 'utf8'), 'finished\n');
  const pieces = slow.screen().split('\r\x1b[K').slice(1);
  assert.match(pieces.pop() ?? '', /^plumb: stdin 0B, stdout 9B received, stderr 0B in \d+\.\d\d s\n$/, JSON.stringify(slow.screen()));
  // Shown after the first second only: at four a second over the second that remains, a few redraws.
  assert.ok(pieces.length >= 2, `redrawn ${pieces.length} times: ${JSON.stringify(slow.screen())}`);
  for (const line of pieces) assert.match(line, /^stdin .*stdout 0B 0B\/s 0:0\d .*\[0:0[1-9]\]$/, JSON.stringify(line));

  const quickStarted = performance.now();
  const quick = startOnTerminal(t, np.plumbArgv(['echo', 'quick']), { cols: 200, rows: 24, env: np.plumbEnv() });
  assert.equal((await quick.exit()).exitCode, 0);
  // Quick only if the whole of plumb's run took less than the second: a loaded machine may make it take longer.
  if (performance.now() - quickStarted < 1000) assert.equal(quick.screen(), 'quick\n', 'a run shorter than a second shows no status line and no summary');
  else t.diagnostic(`plumb echo took ${Math.round(performance.now() - quickStarted)} ms here: not quick, not checked`);
});

test("on a terminal, unasked: nothing when plumb is another program's transport, or runs in the background", { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  assert.equal((await np.plumb(['true'])).code, 0);
  const slow = np.plumbArgv(['sh', '-c', 'sleep 2; echo finished']);
  // stdin and stdout piped, stderr the terminal: as rsync -e plumb runs it.
  const transport = startOnTerminal(t, ['sh', '-c', 'exec "$@" </dev/null | cat', 'sh', ...slow], { cols: 200, rows: 24, env: np.plumbEnv() });
  assert.equal((await transport.exit()).exitCode, 0);
  assert.equal(transport.screen(), 'finished\n');
  // A background job of a shell with job control: its own process group, not the terminal's foreground one.
  const saved = join(np.dir, 'background-out');
  const background = startOnTerminal(t, ['sh', '-c', 'set -m; out=$1; shift; "$@" >"$out" & wait $!', 'sh', saved, ...slow], { cols: 200, rows: 24, env: np.plumbEnv() });
  assert.equal((await background.exit()).exitCode, 0);
  assert.equal(readFileSync(saved, 'utf8'), 'finished\n');
  assert.equal(background.screen(), '');
});

test('-no-progress: nothing on a terminal however long the run', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // The host key recorded first, so that its note is not on the screen either.
  assert.equal((await np.plumb(['true'])).code, 0);
  const term = startOnTerminal(t, np.plumbArgv(['sh', '-c', 'sleep 2; echo finished'], { options: ['-no-progress'] }), { cols: 200, rows: 24, env: np.plumbEnv() });
  assert.equal((await term.exit()).exitCode, 0);
  assert.equal(term.screen(), 'finished\n');
});

test('-progress into a pipe: plain progress lines while the run goes on, and the summary with what each stream carried', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // 6 MiB at 1 MiB/s each way: about six seconds, so at least one line comes (every five seconds).
  const result = await np.plumb(['cat'], { options: ['-progress', '-limit-rate=1M'], stdin: deterministicStream('progress-pipe', 6 * MIB), timeoutMs: 60_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.length, 6 * MIB);
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  assert.ok(!result.stderr.includes('\r'), 'nothing is redrawn when stderr is not a terminal');
  const progress = lines.filter((line) => line.startsWith('plumb: progress: '));
  assert.ok(progress.length >= 1, result.stderr);
  assert.match(progress[0] as string, /stdin [0-9.]+[KM]iB [0-9.]+[KM]?i?B\/s 0:0\d/);
  assert.match(lines.at(-1) as string, /^plumb: stdin 6\.00MiB sent, stdout 6\.00MiB received, stderr 0B in \d+\.\d\d s$/);
});

test('-json of a recipe: plumb\'s streams with their exact bytes and times, a named pipe among them, and each command\'s bytes', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, writeRecipe } = await startRecipeNetplumb(t);
  const here = join(np.dir, 'here');
  mkdirSync(here);
  execFileSync('mkfifo', [join(here, 'in.fifo')]);
  const recipe = writeRecipe('streams.rcp', 'cat <%stdin\ncat in.fifo >&2\n');
  const writer = spawn('sh', ['-c', 'head -c 1000 /dev/zero > in.fifo'], { cwd: here, detached: true, stdio: 'ignore' });
  t.after(() => killGroup(writer.pid as number, 'SIGKILL'));
  const report = join(np.dir, 'report.json');
  const before = Date.now();
  const result = await np.plumb([], { options: [`-recipe=${recipe}`, '-infifo=in.fifo', `-json=${report}`], cwd: here, stdin: deterministicStream('progress-json', 3 * MIB) });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.length, 3 * MIB);
  const json = JSON.parse(readFileSync(report, 'utf8')) as RecipeReportJson;
  const streams = new Map((json.streams ?? []).map((stream) => [stream.name, stream]));
  assert.deepEqual([...streams.keys()].sort(), ['infifo in.fifo', 'stderr', 'stdin', 'stdout']);
  assert.equal(streams.get('stdin')?.bytesOut, 3 * MIB);
  assert.equal(streams.get('stdout')?.bytesIn, 3 * MIB);
  assert.equal(streams.get('stderr')?.bytesIn, 1000);
  assert.equal(streams.get('infifo in.fifo')?.bytesOut, 1000);
  for (const stream of streams.values()) {
    const started = Date.parse(stream.startedAt);
    assert.ok(started >= before - 1000 && started <= Date.now(), JSON.stringify(stream));
    assert.ok(stream.endedAt !== undefined && Date.parse(stream.endedAt) >= started, JSON.stringify(stream));
  }
  // Each command's counts: the first's stdin and stdout are plumb's; the second opens the named pipe by its name (its
  // stdin is /dev/null), and what it writes to stdout goes to plumb's stderr (>&2): counted as its stdout.
  assert.deepEqual(
    json.stages.map(({ bytesIn, bytesOut }) => ({ bytesIn, bytesOut })),
    [
      { bytesIn: 3 * MIB, bytesOut: 3 * MIB },
      { bytesIn: 0, bytesOut: 1000 },
    ],
  );
});

test('-progress goes with a run that moves bytes: -t, -check and -mint-key refuse it as NP_USAGE', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  for (const [options, command] of [
    [['-progress', '-t'], ['true']],
    [['-progress', '-mint-key=/nonexistent/key'], ['true']],
    [['-progress', '-check', '-recipe=/nonexistent/recipe.rcp'], []],
  ] as const) {
    const result = await np.plumb(command, { options });
    assert.equal(result.code, 255, result.stderr);
    assert.equal(reportedCode(result.stderr), ErrorCode.Usage, result.stderr);
    assert.match(result.stderr, /-progress/);
  }
});

test('-progress across machines: an edge between two daemons shows as its bytes arrive, then in the summary', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  // 100 000 bytes a second for seven seconds: the line written every five seconds comes while the edge flows.
  const recipe = m.recipe('slow-edge.rcp', "@a sh -c 'for i in 1 2 3 4 5 6 7; do head -c 100000 /dev/zero; sleep 1; done' |\n@b wc -c\n");
  const result = await m.plumb([`-recipe=${recipe}`, '-progress']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString().trim(), '700000');
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  const during = lines.filter((line) => line.startsWith('plumb: progress: ')).map((line) => /edge 0 ([0-9.]+)(B|KiB) /.exec(line));
  assert.ok(during.length >= 1 && during[0] !== null, result.stderr);
  const [, amount, unit] = during[0] as RegExpExecArray;
  const bytes = Number(amount) * (unit === 'KiB' ? 1024 : 1);
  assert.ok(bytes > 0 && bytes < 700_000, `mid-run the edge had ${bytes} bytes: ${result.stderr}`);
  assert.match(lines.at(-1) as string, /^plumb: .*edge 0 684KiB received in \d+\.\d\d s$/);
});
