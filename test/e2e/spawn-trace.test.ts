// End to end: what netplumbd execs. A real daemon runs under strace (execve only, every process it starts followed),
// and once it has started, the programs it execs for a session are the commands themselves: `true` for a plain
// command, and /usr/bin/setpriv then `true` when it runs as another account; never getent, id or mkfifo. A recipe
// of two commands and a declared named pipe execs its commands and one mkfifo, for the named pipe. The one other
// exec allowed is a batch of the pipe stock (recipes/pipe-stock.ts), which is no session's and makes a batch.
// Skipped where strace is missing or may not trace; the other account's runs need root (and make its fixture).

import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { basename, join } from 'node:path';
import { test } from 'node:test';
import { PIPE_BATCH } from '../../recipes/pipe-stock.js';
import { ensureFixtureAccounts, NEEDS_ROOT, RUNAS } from '../helpers/accounts.js';
import { startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { childrenOf, uniqueMarker } from '../helpers/processes.js';
import { onCleanup, tempDir } from '../helpers/scope.js';
import { STRACE, straceUnusable } from '../helpers/strace.js';

const TIMEOUT_MS = 120_000;
const RUNS = 3;

/** One execve that succeeded: the file executed and its argv. */
interface Exec {
  path: string;
  argv: string[];
}

/** A C string as strace prints it, its escapes undone where they matter here. */
function unquote(text: string): string {
  return text.replace(/\\(["\\])/g, '$1');
}

/** The file and argv of the execve a line of strace's begins (`execve("/usr/bin/true", ["true"], ...`). */
function execveCall(line: string): Exec | undefined {
  const head = /execve\("((?:[^"\\]|\\.)*)", \[/.exec(line);
  if (head === null) return undefined;
  const word = /"((?:[^"\\]|\\.)*)"(?:, )?/y;
  word.lastIndex = head.index + head[0].length;
  const argv: string[] = [];
  for (let match = word.exec(line); match !== null; match = word.exec(line)) argv.push(unquote(match[1] as string));
  return { path: unquote(head[1] as string), argv };
}

/**
 * The execve calls that succeeded, in trace order. strace -f splits a call another process's call interrupted into
 * `PID execve(...) <unfinished ...>` and `PID <... execve resumed>) = 0`.
 */
function successfulExecs(trace: string): Exec[] {
  const pending = new Map<string, Exec>();
  const execs: Exec[] = [];
  for (const line of trace.split('\n')) {
    const pid = /^(\d+)\s/.exec(line)?.[1];
    if (pid === undefined) continue;
    const call = execveCall(line);
    if (call !== undefined && line.includes('<unfinished ...>')) pending.set(pid, call);
    const done = call ?? (line.includes('<... execve resumed>') ? pending.get(pid) : undefined);
    // strace pads a short line's result to a column: `<... execve resumed>)       = 0`.
    if (done !== undefined && /\)\s+= 0$/.test(line.trimEnd())) execs.push(done);
  }
  return execs;
}

/** A batch of the pipe stock: mkfifo of netplumbd-pipes-DIR/N, a batch's worth at least. */
function isStockBatch(exec: Exec): boolean {
  return basename(exec.path) === 'mkfifo' && exec.argv.some((word) => word.includes('/netplumbd-pipes-'));
}

function shown(execs: readonly Exec[]): string {
  return execs.map((exec) => `${exec.path} ${JSON.stringify(exec.argv.slice(0, 8))}`).join('\n');
}

/** Ends netplumbd (not strace: strace ends with it, its trace complete) and reads the trace. */
async function stopAndReadTrace(np: Netplumb, daemonPid: number, trace: string): Promise<Exec[]> {
  process.kill(daemonPid, 'SIGTERM');
  await np.daemon.exited;
  return successfulExecs(readFileSync(trace, 'utf8'));
}

test('after start-up, netplumbd execs the commands only: no getent, id or mkfifo for a command, one mkfifo for a recipe', { skip: straceUnusable(), timeout: TIMEOUT_MS }, async (t) => {
  const other = NEEDS_ROOT === false ? RUNAS : undefined;
  if (other !== undefined) ensureFixtureAccounts();
  else t.diagnostic(`the runs as another account are left out: ${NEEDS_ROOT}`);
  const trace = join(tempDir(t, 'netplumb-trace-'), 'execve.trace');
  const spool = tempDir(t, 'netplumb-spool-');
  chmodSync(spool, 0o711);
  const np = await startNetplumb(t, {
    daemonArgs: [`-spool=${spool}`],
    launcher: [STRACE, '-f', '-qq', '-s', '4096', '-e', 'trace=execve', '-o', trace],
    ...(other === undefined ? {} : { clientOptions: `user="${userInfo().username},${other}"` }),
  });
  const [daemonPid] = childrenOf(np.daemon.pid);
  assert.ok(daemonPid !== undefined, 'netplumbd runs under strace');
  onCleanup(t, async () => {
    // strace, signalled by the helper's own cleanup, may leave netplumbd running: end netplumbd itself.
    if (!np.daemon.running) return;
    process.kill(daemonPid, 'SIGTERM');
    const timer = setTimeout(() => process.kill(daemonPid, 'SIGKILL'), 5000);
    await np.daemon.exited;
    clearTimeout(timer);
  });
  // Start-up is over once a command has run: the pipe stock's first batch, made at start, served it.
  const marker = uniqueMarker('started');
  const first = await np.plumb(['echo', marker]);
  assert.equal(first.stdout.toString(), `${marker}\n`, first.stderr);
  for (let run = 0; run < RUNS; run++) {
    const result = await np.plumb(['true']);
    assert.equal(result.code, 0, result.stderr);
  }
  const recipe = join(np.dir, 'two.rcp');
  writeFileSync(recipe, 'fifo p\necho through-fifo >@p &\ncat <@p\n');
  const recipeRun = await np.plumb([], { options: [`-recipe=${recipe}`] });
  assert.equal(recipeRun.stdout.toString(), 'through-fifo\n', recipeRun.stderr);
  if (other !== undefined) {
    for (let run = 0; run < RUNS; run++) {
      const result = await np.plumb(['true'], { options: [`-user=${other}`] });
      assert.equal(result.code, 0, result.stderr);
    }
  }

  const execs = await stopAndReadTrace(np, daemonPid, trace);
  const started = execs.findIndex((exec) => exec.argv[0] === 'echo' && exec.argv[1] === marker);
  assert.ok(started >= 0, `the marker command is in the trace:\n${shown(execs)}`);
  const after = execs.slice(started + 1);
  const batches = after.filter(isStockBatch);
  const sessions = after.filter((exec) => !isStockBatch(exec));
  t.diagnostic(`after start-up: ${after.map((exec) => `${basename(exec.path)}(${exec.argv.length - 1} args)`).join(' ')}`);
  // The plain commands, the recipe's two and its one mkfifo, and the other account's through setpriv.
  const expected = [...Array<string>(RUNS).fill('true'), 'echo', 'cat', 'mkfifo', ...(other === undefined ? [] : [...Array<string>(RUNS).fill('setpriv'), ...Array<string>(RUNS).fill('true')])];
  assert.deepEqual(
    sessions.map((exec) => basename(exec.path)).sort(),
    expected.sort(),
    `the sessions' execs after start-up:\n${shown(sessions)}`,
  );
  for (const exec of sessions.filter((candidate) => basename(candidate.path) === 'setpriv')) {
    assert.equal(basename(exec.argv[exec.argv.indexOf('--') + 1] ?? ''), 'true', `setpriv runs the command itself: ${shown([exec])}`);
  }
  const [recipeFifos] = sessions.filter((exec) => basename(exec.path) === 'mkfifo');
  assert.deepEqual(recipeFifos?.argv.slice(-1).map((path) => basename(path)), ['p'], `the recipe's mkfifo makes its named pipe: ${shown(sessions)}`);
  // A batch is made only when the stock runs low, never for one session.
  assert.ok(batches.length <= 1, `pipe stock batches:\n${shown(batches)}`);
  for (const batch of batches) assert.ok(batch.argv.length - 3 >= PIPE_BATCH, `a whole batch: ${shown([batch])}`);
});
