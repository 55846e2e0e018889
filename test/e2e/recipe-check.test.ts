// End to end: plumb checks a recipe before it connects. -check prints the plan and needs no machine; a refused
// recipe is reported with FILE:LINE:COL, the line and a caret, exit 2, nothing created and no connection made.
// The daemon checks again on its own (against its spool directory) and stays up for the next client.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { ErrorCode, NetplumbError, RemoteError } from '../../protocol/errors.js';
import { loadPrivateIdentity } from '../../bridges/key-files.js';
import { DEFAULT_LIMITS, StartKind } from '../../protocol/wire.js';
import { connectToDaemon } from '../../plumb-cli/client.js';
import { runRemoteCommand } from '../../plumb-cli/run.js';
import { checkRecipe, DEFAULT_SPOOL_DIR } from '../../recipes/check.js';
import { formatPlan } from '../../recipes/plan.js';
import { BIN, reportedCode, type Netplumb } from '../helpers/daemon.js';
import { runProcess } from '../helpers/processes.js';
import { onCleanup, tempDir, type Scope } from '../helpers/scope.js';
import { collector, startRecipeNetplumb } from '../helpers/recipes.js';

const TIMEOUT_MS = 120_000;

const GOOD_RECIPE = [
  '# archive, then count what was archived',
  'fifo names',
  'log: cat >>check.log &',
  "tar -cf - -C /usr/share common-licenses 2>%log |",
  'gzip -9 -n >licenses.tar.gz 2>%log',
  'tar -tzf licenses.tar.gz >@names 2>%log &',
  'wc -l <@names',
  '',
].join('\n');

const BAD_LINE = 'tar -cf - -C /usr/share common-licenses 2>%lgo |';
const BAD_RECIPE = `log: cat >>backup.log &\n${BAD_LINE}\ngzip -9 -n >x.tar.gz 2>%log\n`;

/** A directory for recipe files, and a NETPLUMB_HOME that does not exist (and must not come to). */
function scratch(scope: Scope): { dir: string; home: string; env: NodeJS.ProcessEnv } {
  const dir = tempDir(scope, 'netplumb-check-');
  const home = join(dir, 'no-home');
  return { dir, home, env: { ...process.env, NETPLUMB_HOME: home } };
}

/** A TCP listener on 127.0.0.1 that counts connections: plumb must not make any. */
async function countingListener(scope: Scope): Promise<{ address: string; connections(): number }> {
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(scope, () => new Promise((resolve) => server.close(resolve)));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return { address: `127.0.0.1:${address.port}`, connections: () => connections };
}

function plumb(scope: Scope, args: readonly string[], env: NodeJS.ProcessEnv) {
  return runProcess(scope, [process.execPath, BIN.plumb, ...args], { env, timeoutMs: 30_000 });
}

test('plumb -check says which spool it resolved the names against: the default, the one of -user (the spool itself for root), or -spool', { timeout: TIMEOUT_MS }, async (t) => {
  const { dir, env } = scratch(t);
  const recipe = join(dir, 'good.rcp');
  writeFileSync(recipe, GOOD_RECIPE);
  const plain = await plumb(t, ['-check', `-recipe=${recipe}`], env);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout.toString(), new RegExp(`^spool directory: ${DEFAULT_SPOOL_DIR} \\(assumed: the recipe runs as the daemon's own account, .*first user= of this client's line, else its run-as setting.*users/ACCOUNT .*-user=ACCOUNT.*-spool=DIR\\)$`, 'm'));
  const asUser = await plumb(t, ['-check', '-user=backup', `-recipe=${recipe}`], env);
  assert.equal(asUser.code, 0, asUser.stderr);
  assert.match(asUser.stdout.toString(), new RegExp(`^spool directory: ${DEFAULT_SPOOL_DIR}/users/backup \\(assumed: .*-user=backup`, 'm'));
  assert.ok(asUser.stdout.toString().includes(`${DEFAULT_SPOOL_DIR}/users/backup/names`), 'the names are resolved in that spool');
  // root is a root daemon's own account: its commands run in the spool itself, not in users/root.
  const asRoot = await plumb(t, ['-check', '-user=root', `-recipe=${recipe}`], env);
  assert.equal(asRoot.code, 0, asRoot.stderr);
  assert.match(asRoot.stdout.toString(), new RegExp(`^spool directory: ${DEFAULT_SPOOL_DIR} \\(assumed: the default spool itself, .*-user=root`, 'm'));
  const given = await plumb(t, ['-check', '-user=backup', '-spool=/srv/spool', `-recipe=${recipe}`], env);
  assert.match(given.stdout.toString(), /^spool directory: \/srv\/spool \(given with -spool\)$/m);
});

test('plumb -check prints the plan and exits 0 without a machine, creating nothing', { timeout: TIMEOUT_MS }, async (t) => {
  const { dir, home, env } = scratch(t);
  const recipe = join(dir, 'good.rcp');
  writeFileSync(recipe, GOOD_RECIPE);
  const spool = join(dir, 'spool-not-made');
  const result = await plumb(t, ['-check', `-recipe=${recipe}`, `-spool=${spool}`], env);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
  const plan = checkRecipe(GOOD_RECIPE, { sourceName: recipe, spoolDir: spool });
  assert.equal(result.stdout.toString(), formatPlan(plan).replace(`spool directory: ${spool}\n`, `spool directory: ${spool} (given with -spool)\n`));
  assert.match(result.stdout.toString(), new RegExp(`spool directory: ${spool} \\(given with -spool\\)\\n`));
  assert.ok(result.stdout.toString().includes(`${spool}/names`), 'the plan names the fifo it would make');
  assert.equal(existsSync(spool), false, 'the spool directory is not made');
  assert.equal(existsSync(home), false, "plumb's home is not made");
  assert.deepEqual(readdirSync(dir), ['good.rcp']);
});

test('plumb -check resolves names against the default spool directory without -spool', { timeout: TIMEOUT_MS }, async (t) => {
  const { dir, env } = scratch(t);
  const recipe = join(dir, 'good.rcp');
  writeFileSync(recipe, GOOD_RECIPE);
  const result = await plumb(t, ['-check', '-recipe', recipe], env);
  assert.equal(result.code, 0, result.stderr);
  // The same plan, its spool line saying the spool was assumed.
  assert.equal(result.stdout.toString().replace(/^(spool directory: \S+) \(assumed: .*\)$/m, '$1'), formatPlan(checkRecipe(GOOD_RECIPE, { sourceName: recipe, spoolDir: DEFAULT_SPOOL_DIR })));
});

/** The three lines plumb prints for BAD_RECIPE in `file`. */
function badRecipeReport(file: string): string {
  const column = BAD_LINE.indexOf('%lgo') + 1;
  return `plumb: ${file}:2:${column}: no command is labelled lgo\n${BAD_LINE}\n${' '.repeat(column - 1)}^ (${ErrorCode.RecipeInvalid})\n`;
}

test('plumb -check refuses a bad recipe with FILE:LINE:COL and a caret, exit 2', { timeout: TIMEOUT_MS }, async (t) => {
  const { dir, home, env } = scratch(t);
  const recipe = join(dir, 'bad.rcp');
  writeFileSync(recipe, BAD_RECIPE);
  const result = await plumb(t, ['-check', `-recipe=${recipe}`, `-spool=${join(dir, 'spool')}`], env);
  assert.equal(result.code, 2);
  assert.equal(result.stdout.length, 0);
  assert.equal(result.stderr, badRecipeReport(recipe));
  assert.equal(reportedCode(result.stderr), ErrorCode.RecipeInvalid);
  assert.deepEqual(readdirSync(dir), ['bad.rcp']);
  assert.equal(existsSync(home), false);
});

test('a bad recipe is refused before plumb connects: exit 2, no connection, nothing created', { timeout: TIMEOUT_MS }, async (t) => {
  const { dir, home, env } = scratch(t);
  const recipe = join(dir, 'bad.rcp');
  writeFileSync(recipe, BAD_RECIPE);
  const listener = await countingListener(t);
  const result = await plumb(t, [`-recipe=${recipe}`, listener.address], env);
  assert.equal(result.code, 2);
  assert.equal(result.stderr, badRecipeReport(recipe));
  assert.equal(listener.connections(), 0);
  // A machine that does not exist at all makes no difference: the check comes first.
  const nowhere = await plumb(t, [`-recipe=${recipe}`, '-json', 'no-such-host.invalid'], env);
  assert.equal(nowhere.code, 2);
  assert.equal(nowhere.stderr, badRecipeReport(recipe), 'no JSON report for a recipe refused locally');
  assert.deepEqual(readdirSync(dir), ['bad.rcp']);
  assert.equal(existsSync(home), false);
});

test('a syntax error is NP_RECIPE_SYNTAX, located at the offending characters', { timeout: TIMEOUT_MS }, async (t) => {
  const { dir, env } = scratch(t);
  const recipe = join(dir, 'syntax.rcp');
  writeFileSync(recipe, 'echo fine\n  echo a && echo b\n');
  const result = await plumb(t, ['-check', `-recipe=${recipe}`], env);
  assert.equal(result.code, 2);
  const lines = result.stderr.split('\n');
  assert.match(lines[0] ?? '', new RegExp(`^plumb: ${recipe.replace(/[.]/g, '\\.')}:2:10: `));
  assert.equal(lines[1], '  echo a && echo b');
  assert.equal(lines[2], `         ^ (${ErrorCode.RecipeSyntax})`);
});

test('a recipe file that cannot be read is a usage error, not a recipe error', { timeout: TIMEOUT_MS }, async (t) => {
  const { dir, env } = scratch(t);
  const result = await plumb(t, ['-check', `-recipe=${join(dir, 'missing.rcp')}`], env);
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.Usage);
});

// ---- the daemon's own check ----------------------------------------------------------------------------------

/** Sends a recipe straight to the daemon, past plumb's local check; resolves with plumb's status or rejects. */
async function sendRecipe(np: Netplumb, text: string, source: string): Promise<number> {
  const connection = await connectToDaemon(
    { name: np.daemon.address, host: '127.0.0.1', port: np.daemon.port },
    {
      identity: loadPrivateIdentity(np.client.privateFile),
      knownHostsFile: join(np.home, 'known_hosts'),
      acceptNew: false,
      connectTimeoutMs: 10_000,
      note: () => undefined,
    },
  );
  return runRemoteCommand(connection, {
    job: { kind: StartKind.Recipe, text, source },
    stdio: { stdin: Readable.from([]), stdout: collector().stream, stderr: collector().stream },
    signals: new EventEmitter(),
    maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
    initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
    maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
  });
}

function refusedWith(code: string, place: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof RemoteError, String(error));
    assert.equal((error as NetplumbError).code, code);
    assert.match(error.message, place);
    return true;
  };
}

test('the daemon checks a recipe itself: one that bypasses plumb is refused, and the daemon serves the next client', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, writeRecipe } = await startRecipeNetplumb(t);
  await assert.rejects(sendRecipe(np, 'echo a && echo b\n', 'direct.rcp'), refusedWith(ErrorCode.RecipeSyntax, /^direct\.rcp:1:8: /));
  await assert.rejects(sendRecipe(np, BAD_RECIPE, 'direct.rcp'), refusedWith(ErrorCode.RecipeInvalid, /^direct\.rcp:2:\d+: no command is labelled lgo/));
  assert.deepEqual(readdirSync(spool), [], 'nothing of a refused recipe is made');
  await np.daemon.waitForLog(/start refused .*NP_RECIPE_INVALID/);
  assert.ok(np.daemon.running);
  // A good recipe sent the same way runs.
  assert.equal(await sendRecipe(np, "sh -c 'exit 6'\n", 'direct.rcp'), 6);
  const next = await np.plumb([`-recipe=${writeRecipe('next.rcp', 'echo still serving\n')}`]);
  assert.equal(next.code, 0, next.stderr);
  assert.equal(next.stdout.toString(), 'still serving\n');
});

test("the daemon checks against its own spool directory: a recipe fine for plumb's check can be refused there", { timeout: TIMEOUT_MS }, async (t) => {
  const { np, spool, writeRecipe } = await startRecipeNetplumb(t);
  // Under plumb's default spool directory this is a plain file; in the daemon's it is the declared named pipe.
  const line = `echo y >${spool}/p`;
  const recipe = writeRecipe('spool.rcp', `fifo p\necho x >@p &\ncat <@p\n${line}\n`);
  const result = await np.plumb([`-recipe=${recipe}`]);
  assert.equal(result.code, 2, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.RecipeInvalid);
  const lines = result.stderr.split('\n');
  assert.match(lines[0] ?? '', new RegExp(`^plumb: ${recipe.replace(/[.]/g, '\\.')}:4:9: `));
  assert.equal(lines[1], line);
  assert.match(lines[2] ?? '', /^ {8}\^ \(NP_RECIPE_INVALID\)$/);
  assert.deepEqual(readdirSync(spool), []);
  assert.equal(readFileSync(recipe, 'utf8').split('\n')[3], line);
});
