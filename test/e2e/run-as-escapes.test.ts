// End to end: a command run as another account (`plumb -user=NAME`) must never get the root daemon to open, read,
// write or remove, on its behalf, a file that account has no right to. Each test stages one way of trying (a
// root-only named pipe named outright, a pipe swapped between rounds, a directory swapped for a symlink before the
// daemon cleans up, a recipe's declared pipe swapped in the instant between mkfifo and open) and checks that nothing
// of the root-only file came out, nothing went into it, nothing of it was removed, and the daemon goes on serving.
// Under a gluepot, the check's answers tell the account no more than its own rights show: a program in a root-only
// directory is answered as a missing one there, and no refusal names where a root-only symlink leads.
//
// These tests need root, and the fixture account np-runas of run-as-user.test.ts (made there when missing, and
// here too). The "root-only" places are temp dirs of mode 0700 owned by root, removed afterwards.
// Named pipes given by an absolute path have the same path at both ends; as both ends are on this machine, plumb
// runs in a mount namespace of its own where the root-only directory is covered by a directory of the test's, so
// plumb's local pipe and the daemon's are two different files, as they would be on two machines.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { reportedCode, rewriteClients, startNetplumb, type Netplumb, type PlumbCallOptions } from '../helpers/daemon.js';
import { delay, spawnProcess, uniqueMarker, waitUntil, type ProcessResult, type RunningProcess } from '../helpers/processes.js';
import { onCleanup, tempDir, type Scope } from '../helpers/scope.js';
import { ensureFixtureAccounts, RUNAS } from '../helpers/accounts.js';
import { EXIT_RECIPE_REFUSED } from '../../plumb-cli/exit-status.js';
import { ErrorCode } from '../../protocol/errors.js';
import { mkfifo, spawnPlumbIn, startEchoService } from '../helpers/endpoints.js';

const TIMEOUT_MS = 30_000;
/** How long a refused attempt is given to show a leak anyway, after plumb ended. */
const LEAK_GRACE_MS = 500;
/** Recipe runs raced by the swapper: before the fix, the race was won in every try of a few runs. */
const RECIPE_RACE_RUNS = 10;
/** The swapper's own bound, whatever happens to the test. */
const SWAPPER_MAX_MS = 20_000;

const SKIP: string | false = process.getuid?.() === 0 ? false : 'needs root: run-as switches accounts and the fixtures are root-only files';

/** Whether plumb can be given a private mount namespace (unshare -m and a bind mount need CAP_SYS_ADMIN). */
function mountNamespacesWork(): boolean {
  if (SKIP !== false) return false;
  try {
    execFileSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" "$0"', tmpdir()], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

const SKIP_NAMESPACE: string | false = SKIP !== false ? SKIP : mountNamespacesWork() ? false : 'needs unshare -m and mount --bind, to keep plumb\'s absolute-path pipes apart from the daemon\'s';

before(() => {
  if (SKIP === false) ensureFixtureAccounts();
});

function account(name: string): { uid: number; gid: number } {
  const id = (flag: string): number => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

// ---- set-up ---------------------------------------------------------------------------------------------------

interface EscapeSetup {
  np: Netplumb;
  /** The daemon's spool root (0711, so the account can pass to its own spool under users/). */
  spool: string;
  /** The account's spool: $NETPLUMB_SPOOL of its commands. */
  userSpool: string;
  /** plumb's working directory. */
  local: string;
  /** plumb as the account, run from local; `mounts` cover daemon-side directories with local ones for plumb alone. */
  spawnPlumb(command: readonly string[], options?: PlumbCallOptions & { mounts?: readonly Mount[] }): RunningProcess;
}

/** A directory of the test's (source) bind-mounted over another (target) in plumb's own mount namespace. */
interface Mount {
  source: string;
  target: string;
}

async function startEscapeNetplumb(scope: Scope): Promise<EscapeSetup> {
  const spool = tempDir(scope, 'netplumb-escape-spool-');
  chmodSync(spool, 0o711);
  const local = tempDir(scope, 'netplumb-escape-local-');
  const np = await startNetplumb(scope, { daemonArgs: [`-spool=${spool}`] });
  await rewriteClients(np.daemon, np.clientsFile, `user="root,${RUNAS}" ${np.client.publicLine}\n`);
  const spawnPlumb = (command: readonly string[], options: PlumbCallOptions & { mounts?: readonly Mount[] } = {}): RunningProcess => {
    const call = { ...options, options: [`-user=${RUNAS}`, ...(options.options ?? [])] };
    const mounts = options.mounts ?? [];
    if (mounts.length === 0) return spawnPlumbIn(scope, np, local, command, call);
    // unshare and sh exec in place, so the pid is plumb's; the mounts vanish with the namespace.
    const binds = mounts.map((_, index) => `mount --bind "\${${2 * index + 1}}" "\${${2 * index + 2}}" || exit 99`).join('; ');
    const argv = [
      'unshare', '-m', '--propagation', 'private',
      'sh', '-c', `${binds}; shift ${2 * mounts.length}; exec "$@"`, 'sh',
      ...mounts.flatMap((mount) => [mount.source, mount.target]),
      'env', '-C', local, ...np.plumbArgv(command, call),
    ];
    return spawnProcess(scope, argv, { ...call, env: np.plumbEnv() });
  };
  const setup: EscapeSetup = { np, spool, userSpool: join(spool, 'users', RUNAS), local, spawnPlumb };
  // The account's spool is made by the daemon at the account's first session.
  await assertServing(setup);
  return setup;
}

/** A normal command as the account runs and says who it is: the daemon is alive and serving. */
async function assertServing(setup: EscapeSetup): Promise<void> {
  assert.ok(setup.np.daemon.running, `the daemon is running: ${setup.np.daemon.log()}`);
  const result = await setup.spawnPlumb(['sh', '-c', 'id -un; echo "$NETPLUMB_SPOOL"']).result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), `${RUNAS}\n${setup.userSpool}\n`);
}

/** A directory only root may enter: mode 0700, owned by root, removed afterwards. */
function rootOnlyDir(scope: Scope, prefix: string): string {
  const dir = tempDir(scope, prefix);
  chmodSync(dir, 0o700);
  assert.equal(statSync(dir).uid, 0);
  return dir;
}

/** A secret of this run: a word found nowhere else, long enough that overwriting its start shows. */
function secretText(name: string): string {
  return `SECRET-${uniqueMarker(name)}-${'x'.repeat(32)}\n`;
}

/** A root process writing text into a FIFO: it waits in open(2) until a reader comes, and is killed at cleanup. */
function rootWriter(scope: Scope, fifo: string, text: string): RunningProcess {
  return spawnProcess(scope, ['sh', '-c', 'printf %s "$0" > "$1"', text, fifo], { timeoutMs: TIMEOUT_MS });
}

/** A root process reading a FIFO to EOF; it waits in open(2) until a writer comes, and is killed at cleanup. */
function rootReader(scope: Scope, fifo: string): RunningProcess {
  return spawnProcess(scope, ['cat', fifo], { timeoutMs: TIMEOUT_MS });
}

function stillWaiting(process: RunningProcess): boolean {
  return process.child.exitCode === null && process.child.signalCode === null;
}

/** Reads the local FIFO round after round (a bounded number), for as long as the test lets it. */
function localRoundReader(scope: Scope, fifo: string): RunningProcess {
  return spawnProcess(scope, ['sh', '-c', 'for round in 1 2 3 4 5 6 7 8; do cat "$0"; done', fifo], { timeoutMs: TIMEOUT_MS });
}

function daemonLogHas(setup: EscapeSetup, pattern: RegExp): boolean {
  return pattern.test(setup.np.daemon.log());
}

// ---- 1. a root-only named pipe named outright ----------------------------------------------------------------

test(`-outfifo naming a root-only FIFO with a root writer: nothing of it reaches plumb as ${RUNAS}`, { timeout: TIMEOUT_MS, skip: SKIP_NAMESPACE }, async (t) => {
  const setup = await startEscapeNetplumb(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  const covered = tempDir(t, 'netplumb-escape-plumbside-');
  const secret = secretText('outfifo');
  mkfifo(join(rootOnly, 'f'));
  const writer = rootWriter(t, join(rootOnly, 'f'), secret);
  // plumb's end of the pipe: the same path, here a FIFO of the test's, read before plumb starts.
  mkfifo(join(covered, 'f'));
  const reader = localRoundReader(t, join(covered, 'f'));

  const run = setup.spawnPlumb(['sleep', '1'], { options: [`-outfifo=${join(rootOnly, 'f')}`], mounts: [{ source: covered, target: rootOnly }] });
  const result = await run.result;
  await delay(LEAK_GRACE_MS);
  assert.doesNotMatch(reader.stdoutSoFar(), /SECRET/, 'the root writer\'s bytes were not read for the account');
  assert.doesNotMatch(result.stdout.toString() + result.stderr, /SECRET/);
  assert.ok(stillWaiting(writer), 'nobody opened the root-only FIFO for reading');
  assert.ok(daemonLogHas(setup, /named pipe failed.*permission denied/i), `the open was refused: ${setup.np.daemon.log()}`);
  await assertServing(setup);
});

test(`-infifo naming a root-only FIFO with a root reader: nothing plumb sends as ${RUNAS} reaches it`, { timeout: TIMEOUT_MS, skip: SKIP_NAMESPACE }, async (t) => {
  const setup = await startEscapeNetplumb(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  const covered = tempDir(t, 'netplumb-escape-plumbside-');
  mkfifo(join(rootOnly, 'f2'));
  const victim = rootReader(t, join(rootOnly, 'f2'));
  mkfifo(join(covered, 'f2'));
  const injected = `INJECTED-${uniqueMarker('infifo')}\n`;

  const run = setup.spawnPlumb(['sleep', '1.5'], { options: [`-infifo=${join(rootOnly, 'f2')}`], mounts: [{ source: covered, target: rootOnly }] });
  // plumb's FIFO is the test's, so it is there before plumb opens it; the write waits for plumb's reader.
  const written = spawnProcess(t, ['sh', '-c', 'printf %s "$0" > "$1"', injected, join(covered, 'f2')], { timeoutMs: TIMEOUT_MS });
  assert.equal((await written.result).code, 0, 'plumb took the round');
  await run.result;
  await delay(LEAK_GRACE_MS);
  assert.equal(victim.stdoutSoFar(), '', 'the root reader got nothing');
  assert.ok(stillWaiting(victim), 'nobody opened the root-only FIFO for writing');
  await waitUntil('the daemon to report the refused open', () => daemonLogHas(setup, /named pipe failed.*permission denied/i), 5000);
  await assertServing(setup);
});

// ---- 2. the command swaps its own pipe between rounds ----------------------------------------------------------

/**
 * The command writes one round into its -outfifo `o`, then replaces `o` by a symlink to target and closes the
 * round: the daemon's next open of `o` is for the second round.
 */
async function swapBetweenRounds(t: Scope, setup: EscapeSetup, target: string): Promise<{ rounds: string; result: ProcessResult }> {
  mkfifo(join(setup.local, 'o'));
  const reader = localRoundReader(t, join(setup.local, 'o'));
  const script = `cd "$NETPLUMB_SPOOL" && exec 3>o && echo hi >&3 && rm o && ln -s "$0" o && exec 3>&- && sleep 1`;
  const result = await setup.spawnPlumb(['sh', '-c', script, target], { options: ['-outfifo=o'] }).result;
  await waitUntil('the first round to be read', () => reader.stdoutSoFar().includes('hi\n'), 5000);
  await delay(LEAK_GRACE_MS);
  return { rounds: reader.stdoutSoFar(), result };
}

test(`-outfifo replaced between rounds by a symlink to a root-only file: only the first round comes, the daemon serves on`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startEscapeNetplumb(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  const secret = secretText('swapped-file');
  const file = join(rootOnly, 'secret');
  writeFileSync(file, secret, { mode: 0o600 });
  const { rounds, result } = await swapBetweenRounds(t, setup, file);
  assert.ok(setup.np.daemon.running, `the daemon is still running: ${setup.np.daemon.log()}`);
  assert.equal(rounds, 'hi\n', 'the first round, and nothing of the root-only file');
  assert.equal(result.code, 0, result.stderr);
  assert.doesNotMatch(result.stdout.toString() + result.stderr, /SECRET/);
  assert.ok(daemonLogHas(setup, /named pipe failed/), `the second open was refused: ${setup.np.daemon.log()}`);
  assert.equal(readFileSync(file, 'utf8'), secret);
  // The symlink left in the spool is the account's own business; the file it points to is untouched.
  assert.ok(lstatSync(join(setup.userSpool, 'o')).isSymbolicLink());
  await assertServing(setup);
});

test(`-outfifo replaced between rounds by a symlink to a root-only FIFO with a root writer: nothing of it comes`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startEscapeNetplumb(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  const secret = secretText('swapped-fifo');
  mkfifo(join(rootOnly, 'g'));
  const writer = rootWriter(t, join(rootOnly, 'g'), secret);
  const { rounds, result } = await swapBetweenRounds(t, setup, join(rootOnly, 'g'));
  assert.ok(setup.np.daemon.running, `the daemon is still running: ${setup.np.daemon.log()}`);
  assert.equal(rounds, 'hi\n', 'the first round, and nothing of the root-only FIFO');
  assert.equal(result.code, 0, result.stderr);
  assert.doesNotMatch(result.stdout.toString() + result.stderr, /SECRET/);
  assert.ok(stillWaiting(writer), 'nobody opened the root-only FIFO for reading');
  await assertServing(setup);
});

// ---- 3. a directory swapped before the daemon removes what it made ---------------------------------------------

/** A directory owned by the account, holding a directory d of its own: what its command may rename and replace. */
function accountDirs(scope: Scope): { owned: string; inner: string } {
  const { uid, gid } = account(RUNAS);
  const owned = tempDir(scope, 'netplumb-escape-owned-');
  const inner = join(owned, 'd');
  mkdirSync(inner);
  chownSync(owned, uid, gid);
  chownSync(inner, uid, gid);
  return { owned, inner };
}

/** The command's swap: d moved aside, and a symlink to the root-only directory put in its place. */
function swapDirectoryCommand(owned: string, rootOnly: string): string[] {
  return ['sh', '-c', 'mv "$0/d" "$0/d.old" && ln -s "$1" "$0/d" && sleep 0.5', owned, rootOnly];
}

async function listeningServer(scope: Scope, path: string): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
    socket.end('alive\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  onCleanup(scope, () => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return server;
}

/** Connects to a Unix socket and resolves with what the service says, or rejects. */
function ask(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${path}`));
    }, 5000);
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('end', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(text);
    });
  });
}

test(`-socket under a directory the command swaps for a symlink: the root-only live socket there is not removed`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startEscapeNetplumb(t);
  const { owned, inner } = accountDirs(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  const rootSocket = join(rootOnly, 's');
  await listeningServer(t, rootSocket);
  const service = join(tempDir(t, 'netplumb-escape-service-'), 'echo.sock');
  await startEchoService(t, service);

  const result = await setup.spawnPlumb(swapDirectoryCommand(owned, rootOnly), { options: [`-socket=${join(inner, 's')}:${service}`] }).result;
  assert.equal(result.code, 0, result.stderr);
  assert.ok(lstatSync(join(owned, 'd')).isSymbolicLink(), 'the command did swap the directory');
  await delay(LEAK_GRACE_MS);
  assert.ok(existsSync(rootSocket) && lstatSync(rootSocket).isSocket(), 'the root-only socket file is still there');
  assert.equal(await ask(rootSocket), 'alive\n', 'and its service is still reachable by it');
  await assertServing(setup);
});

test(`-outfifo and -infifo made under a directory the command swaps for a symlink: nothing in the root-only directory is removed`, { timeout: TIMEOUT_MS, skip: SKIP_NAMESPACE }, async (t) => {
  const setup = await startEscapeNetplumb(t);
  const { owned, inner } = accountDirs(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  // Root's files with the very names the daemon made under d.
  for (const name of ['o', 'i']) mkfifo(join(rootOnly, name));
  writeFileSync(join(rootOnly, 'kept'), 'kept\n', { mode: 0o600 });
  // plumb's side of the same absolute paths.
  const covered = tempDir(t, 'netplumb-escape-plumbside-');
  mkdirSync(join(covered, 'd'));

  const result = await setup.spawnPlumb(swapDirectoryCommand(owned, rootOnly), {
    options: [`-outfifo=${join(inner, 'o')}`, `-infifo=${join(inner, 'i')}`],
    mounts: [{ source: covered, target: owned }],
  }).result;
  assert.equal(result.code, 0, result.stderr);
  assert.ok(lstatSync(join(owned, 'd')).isSymbolicLink(), 'the command did swap the directory');
  assert.ok(lstatSync(join(owned, 'd.old', 'o')).isFIFO(), 'the daemon had made the pipes under d, as the account');
  await delay(LEAK_GRACE_MS);
  for (const name of ['o', 'i']) assert.ok(existsSync(join(rootOnly, name)) && lstatSync(join(rootOnly, name)).isFIFO(), `root's FIFO ${name} is still there`);
  assert.equal(readFileSync(join(rootOnly, 'kept'), 'utf8'), 'kept\n');
  await assertServing(setup);
});

// ---- 4. a recipe's declared pipe swapped between mkfifo and open -----------------------------------------------

/**
 * `node -e SWAPPER TARGET MAX_MS`, run as the account: prints `ready`, then until a `stop` file appears in its
 * spool (or MAX_MS passed) replaces `p` there by a symlink to TARGET whenever it is a FIFO; prints `swaps=N`.
 */
const SWAPPER = [
  "const fs=require('fs'),path=require('path');",
  "const dir=process.env.NETPLUMB_SPOOL,p=path.join(dir,'p'),tmp=path.join(dir,'p.swap'),stop=path.join(dir,'stop');",
  'const target=process.argv[1],end=Date.now()+Number(process.argv[2]);',
  "let swaps=0,turns=0;console.log('ready');",
  'while(Date.now()<end){',
  'try{if(fs.lstatSync(p).isFIFO()){try{fs.unlinkSync(tmp)}catch{}fs.symlinkSync(target,tmp);fs.renameSync(tmp,p);swaps++}}catch{}',
  'if((++turns&255)===0&&fs.existsSync(stop))break}',
  "console.log('swaps='+swaps);",
].join('');

test(`a recipe's declared named pipe raced by a symlink to a root-only file: never read, never written`, { timeout: 60_000, skip: SKIP }, async (t) => {
  const setup = await startEscapeNetplumb(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  const secret = secretText('recipe');
  const file = join(rootOnly, 'secret');
  writeFileSync(file, secret, { mode: 0o600 });
  const recipes = tempDir(t, 'netplumb-escape-recipes-');
  const recipe = join(recipes, 'fifo.rcp');
  writeFileSync(recipe, 'fifo p\ncat <@p &\necho written >@p\n');
  const pipe = join(setup.userSpool, 'p');
  const stopFile = join(setup.userSpool, 'stop');
  onCleanup(t, () => rmSync(stopFile, { force: true }));

  const swapper = setup.spawnPlumb([process.execPath, '-e', SWAPPER, file, String(SWAPPER_MAX_MS)]);
  await swapper.waitForStdout(/ready\n/, 10_000);
  const outputs: string[] = [];
  const outcomes: { code: number | null; stdout: string; reported: string | undefined }[] = [];
  try {
    for (let run = 0; run < RECIPE_RACE_RUNS && stillWaiting(swapper); run++) {
      // A symlink the swapper left after the daemon had opened the pipe would make the next mkfifo fail.
      try {
        if (lstatSync(pipe).isSymbolicLink()) rmSync(pipe);
      } catch {
        // Nothing there.
      }
      const result = await setup.spawnPlumb([`-recipe=${recipe}`], { timeoutMs: 20_000 }).result;
      outputs.push(result.stdout.toString() + result.stderr);
      outcomes.push({ code: result.code, stdout: result.stdout.toString(), reported: reportedCode(result.stderr) });
    }
  } finally {
    writeFileSync(stopFile, '');
  }
  const swapped = await swapper.result;
  assert.equal(swapped.code, 0, swapped.stderr);
  const swaps = Number(/swaps=(\d+)/.exec(swapped.stdout.toString())?.[1] ?? 0);
  assert.equal(outputs.length, RECIPE_RACE_RUNS, 'every run was raced');
  assert.ok(swaps > 0, `the swapper did replace the pipe (${swaps} times)`);
  for (const [run, output] of outputs.entries()) assert.doesNotMatch(output, /SECRET/, `run ${run} showed the root-only file: ${output}`);
  assert.equal(readFileSync(file, 'utf8'), secret, 'the root-only file was not written');
  // Each run either had its own pipe (swapped only once opened) or was refused before anything ran.
  for (const [run, outcome] of outcomes.entries()) {
    const ownPipe = outcome.code === 0 && outcome.stdout === 'written\n';
    const refused = outcome.code === EXIT_RECIPE_REFUSED && outcome.reported === ErrorCode.RecipeSetup && outcome.stdout === '';
    assert.ok(ownPipe || refused, `run ${run} (status ${String(outcome.code)}): ${outputs[run] ?? ''}`);
  }
  t.diagnostic(`${swaps} swaps; ${outcomes.filter((outcome) => outcome.code === 0).length} of ${RECIPE_RACE_RUNS} runs had their own pipe`);
  await assertServing(setup);
});

// ---- 5. what the gluepot check tells ---------------------------------------------------------------------------

const GLUEPOT = 'escape';

/** A daemon whose client runs as the account under a gluepot listing true and echo; plumb runs from a temp dir. */
async function startGluepotNetplumb(scope: Scope): Promise<{ np: Netplumb; plumb(command: readonly string[], options?: PlumbCallOptions): Promise<ProcessResult> }> {
  const gluepots = tempDir(scope, 'netplumb-escape-gluepots-');
  writeFileSync(join(gluepots, GLUEPOT), '/bin/true\n/bin/echo ...\n');
  const spool = tempDir(scope, 'netplumb-escape-spool-');
  chmodSync(spool, 0o711);
  const local = tempDir(scope, 'netplumb-escape-local-');
  const np = await startNetplumb(scope, { daemonArgs: [`-spool=${spool}`, `-gluepots=${gluepots}`] });
  await rewriteClients(np.daemon, np.clientsFile, `gluepot=${GLUEPOT},user=${RUNAS} ${np.client.publicLine}\n`);
  const plumb = (command: readonly string[], options: PlumbCallOptions = {}): Promise<ProcessResult> => spawnPlumbIn(scope, np, local, command, options).result;
  // Pins the host key, so what plumb says later is only about the runs that count.
  const first = await plumb(['true']);
  assert.equal(first.code, 0, first.stderr);
  return { np, plumb };
}

/** A directory every account may read, named with a marker that must never show in an answer to the account. */
function markedDir(scope: Scope, marker: string): string {
  const dir = tempDir(scope, `netplumb-escape-${marker}-`);
  chmodSync(dir, 0o755);
  return dir;
}

test(`under a gluepot, a program in a root-only directory is answered to ${RUNAS} as a missing one there: not "not in gluepot"`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const { np, plumb } = await startGluepotNetplumb(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  writeFileSync(join(rootOnly, 'tool'), '#!/bin/sh\necho ran\n', { mode: 0o755 });
  const there = await plumb([join(rootOnly, 'tool')]);
  const missing = await plumb([join(rootOnly, 'missing')]);
  assert.equal(reportedCode(there.stderr), ErrorCode.CommandNotExecutable, there.stderr);
  assert.equal(reportedCode(missing.stderr), ErrorCode.CommandNotExecutable, missing.stderr);
  assert.equal(there.code, missing.code);
  assert.equal(there.stderr.replace(`${rootOnly}/tool`, `${rootOnly}/missing`), missing.stderr, 'the same words but for the name');
  assert.doesNotMatch(there.stderr, /gluepot/);
  assert.ok(np.daemon.running);
});

test(`under a gluepot, a symlink in a root-only directory: the answer to ${RUNAS} never names where it leads`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const { plumb } = await startGluepotNetplumb(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  const marker = uniqueMarker('program-target');
  const target = join(markedDir(t, marker), 'tool');
  writeFileSync(target, '#!/bin/sh\necho ran\n', { mode: 0o755 });
  symlinkSync(target, join(rootOnly, 'link'));
  const result = await plumb([join(rootOnly, 'link')]);
  assert.equal(result.code, 126, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.CommandNotExecutable, result.stderr);
  assert.doesNotMatch(result.stderr + result.stdout.toString(), new RegExp(marker));
});

test(`under a gluepot, a recipe redirection through a root-only directory's symlink: the refusal names the path as written, not where it leads`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const { plumb } = await startGluepotNetplumb(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  const marker = uniqueMarker('redirection-target');
  const target = markedDir(t, marker);
  symlinkSync(target, join(rootOnly, 'dir-link'));
  const recipe = join(tempDir(t, 'netplumb-escape-recipes-'), 'through-link.rcp');
  const written = join(rootOnly, 'dir-link', 'out');
  writeFileSync(recipe, `echo x >${written}\n`);
  const result = await plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.NotPermitted, result.stderr);
  assert.ok(result.stderr.includes(written), result.stderr);
  assert.doesNotMatch(result.stderr, new RegExp(marker));
  assert.deepEqual(readdirSync(target), [], 'nothing made there');
});

test(`under a gluepot, a socket path through a root-only directory's symlink: the refusal names the path as written, not where it leads`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const { plumb } = await startGluepotNetplumb(t);
  const rootOnly = rootOnlyDir(t, 'netplumb-escape-rootonly-');
  const marker = uniqueMarker('socket-target');
  const target = markedDir(t, marker);
  symlinkSync(target, join(rootOnly, 'dir-link'));
  const service = join(tempDir(t, 'netplumb-escape-service-'), 'echo.sock');
  await startEchoService(t, service);
  const written = join(rootOnly, 'dir-link', 's');
  const result = await plumb(['true'], { options: [`-socket=${written}:${service}`] });
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.NotPermitted, result.stderr);
  assert.ok(result.stderr.includes(written), result.stderr);
  assert.doesNotMatch(result.stderr, new RegExp(marker));
  assert.deepEqual(readdirSync(target), [], 'no socket made there');
});
