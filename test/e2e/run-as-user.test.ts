// End to end: commands run as another account (`plumb -user=NAME`, the `user=` option of an authorized-clients
// line, the daemon's `run-as`). The child gets the account's real uid, gid and supplementary groups, its HOME, USER
// and LOGNAME, and a private spool of its own; a recipe's redirections and the named pipes the daemon makes are
// opened and made with the account's rights, not the daemon's. A name the line does not allow, or one the host does
// not know, is refused before anything runs or is made, and a daemon running as root without run-as does not start.
// A command that cannot start (not found, not executable by the account) gets plumb's own answer, as it does for the
// daemon's own account, never setpriv's; a redirection that cannot be opened is told by the path the recipe names.
//
// These tests need root. Their before hook makes sure the fixture accounts exist: group np-extra, user np-runas
// (member of np-extra) and user np-other, all without a home directory. They are left in place afterwards: they own
// nothing, have no password and are shared with other test runs, so removing them could break a run in progress.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import type { RecipeReportJson } from '../../plumb-cli/recipe-report.js';
import { ErrorCode } from '../../protocol/errors.js';
import { BIN, reportedCode, rewriteClients, startNetplumb, writeKeyPair, type Netplumb, type PlumbCallOptions } from '../helpers/daemon.js';
import { killMarkedAtCleanup, processesWithMarker, runProcess, uniqueMarker, waitUntil, type ProcessResult, type RunningProcess } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';
import { accountExists, ensureFixtureAccounts, FIXTURE_GROUP, NEEDS_ROOT, OTHER, RUNAS } from '../helpers/accounts.js';
import { mkfifo, spawnPlumbIn, writeInto } from '../helpers/endpoints.js';
import { plumbLines } from '../helpers/recipes.js';

const TIMEOUT_MS = 60_000;
const EXTRA_GROUP = FIXTURE_GROUP;
const MISSING_USER = 'nosuchuser-xyz';

/** Switching accounts, chowning and useradd all need root; anyone else skips the file. */
const SKIP = NEEDS_ROOT;

before(() => {
  if (SKIP !== false) return;
  ensureFixtureAccounts();
  assert.equal(accountExists(MISSING_USER), false, `${MISSING_USER} must not exist on this host`);
});

/** What the host's user database says of an account, as `id` and getent see it here, outside netplumb. */
interface AccountFacts {
  uid: number;
  gid: number;
  /** Sorted, the primary group included. */
  groups: number[];
  home: string;
}

function accountFacts(name: string): AccountFacts {
  const id = (flag: string): string => execFileSync('id', [flag, name], { encoding: 'utf8' }).trim();
  const home = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim().split(':')[5] ?? '';
  return { uid: Number(id('-u')), gid: Number(id('-g')), groups: numbers(id('-G')), home };
}

function numbers(text: string): number[] {
  return [...new Set(text.trim().split(/\s+/).filter((word) => word !== '').map(Number))].sort((a, b) => a - b);
}

function groupId(name: string): number {
  return Number(execFileSync('getent', ['group', name], { encoding: 'utf8' }).split(':')[2]);
}

// ---- a daemon with a shared spool and a reloadable client line ----------------------------------------------

interface RunAsSetup {
  np: Netplumb;
  /** The daemon's spool root (mode 0711, so other accounts can pass to their own spool under users/). */
  spool: string;
  /** plumb's working directory, where its relative named pipes are. */
  local: string;
  /** A sticky, world-writable directory: a marker command would succeed there as any account, had it run. */
  markers: string;
  recipes: string;
  plumb(command: readonly string[], options?: PlumbCallOptions): Promise<ProcessResult>;
  spawnPlumb(command: readonly string[], options?: PlumbCallOptions): RunningProcess;
  /** Rewrites the client's line with these options before the key (empty: none) and reloads the daemon. */
  setLine(options: string): Promise<void>;
}

async function startRunAsNetplumb(scope: Scope, lineOptions: string): Promise<RunAsSetup> {
  const spool = tempDir(scope, 'netplumb-runas-spool-');
  chmodSync(spool, 0o711);
  const local = tempDir(scope, 'netplumb-runas-local-');
  const markers = tempDir(scope, 'netplumb-runas-markers-');
  chmodSync(markers, 0o1777);
  const recipes = tempDir(scope, 'netplumb-runas-recipes-');
  const np = await startNetplumb(scope, { daemonArgs: [`-spool=${spool}`] });
  const setLine = async (options: string): Promise<void> => {
    await rewriteClients(np.daemon, np.clientsFile, `${options === '' ? '' : `${options} `}${np.client.publicLine}\n`);
  };
  if (lineOptions !== '') await setLine(lineOptions);
  const spawnPlumb = (command: readonly string[], options: PlumbCallOptions = {}): RunningProcess => spawnPlumbIn(scope, np, local, command, options);
  return { np, spool, local, markers, recipes, setLine, spawnPlumb, plumb: (command, options) => spawnPlumb(command, options).result };
}

/** `-user=NAME` as a plumb option, or nothing. */
function asUser(name?: string): PlumbCallOptions {
  return name === undefined ? {} : { options: [`-user=${name}`] };
}

/** A remote shell that reports who it runs as, as `key=value` lines. */
const WHO_AM_I = [
  'echo "uid=$(id -u)"',
  'echo "ruid=$(id -ru)"',
  'echo "gid=$(id -g)"',
  'echo "rgid=$(id -rg)"',
  'echo "groups=$(id -G)"',
  'echo "name=$(id -un)"',
  'echo "HOME=$HOME"',
  'echo "USER=$USER"',
  'echo "LOGNAME=$LOGNAME"',
  'echo "NETPLUMB_SPOOL=$NETPLUMB_SPOOL"',
  'echo "cwd=$(pwd)"',
].join('; ');

async function whoAmI(setup: RunAsSetup, user?: string): Promise<Record<string, string>> {
  const result = await setup.plumb(['sh', '-c', WHO_AM_I], asUser(user));
  assert.equal(result.code, 0, result.stderr);
  return Object.fromEntries(
    result.stdout
      .toString()
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

/** Every path under dir (relative, sorted): what a run may have made in the spool. */
function treeOf(dir: string, prefix = ''): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(join(dir, prefix)).sort()) {
    const relative = join(prefix, entry);
    found.push(relative);
    if (lstatSync(join(dir, relative)).isDirectory()) found.push(...treeOf(dir, relative));
  }
  return found;
}

/** A command that would leave a marker file and a lingering process of its own, had it run. */
function markerCommand(setup: RunAsSetup, scope: Scope, name: string): { argv: string[]; file: string; marker: string } {
  const marker = uniqueMarker(name);
  killMarkedAtCleanup(scope, marker);
  const file = join(setup.markers, marker);
  return { argv: ['sh', '-c', 'touch "$0"; sleep 30', file], file, marker };
}

/**
 * Runs the marker command, expects the NP_NOT_PERMITTED refusal plumb reports with exit 255, and checks nothing of
 * it happened: no marker file, no process left, no command group under the daemon, the spool as it was.
 */
async function assertRefused(setup: RunAsSetup, scope: Scope, user: string | undefined, message: RegExp): Promise<ProcessResult> {
  const spoolBefore = treeOf(setup.spool);
  const { argv, file, marker } = markerCommand(setup, scope, `refused-${user ?? 'default'}`);
  const result = await setup.plumb(argv, asUser(user));
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.NotPermitted, result.stderr);
  assert.match(result.stderr, message);
  assert.equal(result.stdout.length, 0);
  await waitUntil('no command of the refused session left', () => setup.np.daemon.commandGroups().length === 0, 5000);
  assert.deepEqual(processesWithMarker(marker), [], 'no process of the refused command');
  assert.equal(existsSync(file), false, 'the refused command did not run');
  assert.deepEqual(treeOf(setup.spool), spoolBefore, 'nothing was made in the spool');
  assert.ok(setup.np.daemon.running, 'the daemon keeps serving');
  return result;
}

// ---- identity ---------------------------------------------------------------------------------------------------

test(`-user=${RUNAS} runs the command with the account's uid, gid, groups, login variables and own spool`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user="root,${RUNAS}"`);
  const facts = accountFacts(RUNAS);
  assert.ok(facts.groups.includes(groupId(EXTRA_GROUP)), `the fixture ${RUNAS} is in ${EXTRA_GROUP}`);
  assert.notEqual(facts.uid, 0);
  const seen = await whoAmI(setup, RUNAS);
  assert.equal(Number(seen['uid']), facts.uid);
  assert.equal(Number(seen['ruid']), facts.uid, 'the real uid switched too');
  assert.equal(Number(seen['gid']), facts.gid);
  assert.equal(Number(seen['rgid']), facts.gid, 'the real gid switched too');
  assert.deepEqual(numbers(seen['groups'] ?? ''), facts.groups, 'exactly the supplementary groups of the account, root\'s dropped');
  assert.ok(numbers(seen['groups'] ?? '').includes(groupId(EXTRA_GROUP)), `${EXTRA_GROUP} among the groups`);
  assert.equal(seen['name'], RUNAS);
  assert.equal(seen['HOME'], facts.home);
  assert.equal(seen['USER'], RUNAS);
  assert.equal(seen['LOGNAME'], RUNAS);
  assert.equal(seen['cwd'], existsSync(facts.home) ? facts.home : '/', 'the home directory, or / when it does not exist');
  const userSpool = join(setup.spool, 'users', RUNAS);
  assert.equal(seen['NETPLUMB_SPOOL'], userSpool);
  const stat = statSync(userSpool);
  assert.ok(stat.isDirectory());
  assert.equal(stat.uid, facts.uid, 'the spool belongs to the account');
  assert.equal(stat.mode & 0o7777, 0o700, 'and is private to it');
  const users = statSync(join(setup.spool, 'users'));
  assert.equal(users.uid, 0, 'users/ stays the daemon\'s, so no account can plant a symlink there');
  assert.equal(users.mode & 0o022, 0, 'and nobody else may write in it');
  // What the command makes in its spool is its own.
  const made = await setup.plumb(['sh', '-c', 'echo mine > "$NETPLUMB_SPOOL/made.txt"'], asUser(RUNAS));
  assert.equal(made.code, 0, made.stderr);
  assert.equal(statSync(join(userSpool, 'made.txt')).uid, facts.uid);
});

test('without -user the first name of the line is the account; a line without user= gets the daemon\'s run-as only', { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user="${RUNAS},root"`);
  const facts = accountFacts(RUNAS);
  const byDefault = await whoAmI(setup);
  assert.equal(Number(byDefault['uid']), facts.uid, 'the first name of the line is the default');
  assert.equal(byDefault['name'], RUNAS);
  assert.equal(byDefault['NETPLUMB_SPOOL'], join(setup.spool, 'users', RUNAS));
  const second = await whoAmI(setup, 'root');
  assert.equal(second['uid'], '0', 'the second name of the line may be asked for');
  assert.equal(second['NETPLUMB_SPOOL'], setup.spool, 'the daemon\'s own account uses the spool itself');

  await setup.setLine('');
  const plain = await whoAmI(setup);
  assert.equal(plain['uid'], '0', 'the daemon\'s run-as (root here)');
  assert.deepEqual(numbers(plain['groups'] ?? ''), numbers(execFileSync('id', ['-G', 'root'], { encoding: 'utf8' })));
  assert.equal(plain['NETPLUMB_SPOOL'], setup.spool);
  const sameAccount = await whoAmI(setup, 'root');
  assert.equal(sameAccount['uid'], '0', 'asking for the account one gets anyway needs no user=');
  await assertRefused(setup, t, RUNAS, new RegExp(`may not run commands as ${RUNAS} \\(no user= on its line\\)`));
});

// ---- refusals -------------------------------------------------------------------------------------------------

test(`-user=${OTHER} is refused when the line allows only ${RUNAS}, and so is root`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user=${RUNAS}`);
  // The account the line allows works, so what follows is refused for the name alone.
  const allowed = await whoAmI(setup, RUNAS);
  assert.equal(allowed['name'], RUNAS);
  const refused = await assertRefused(setup, t, OTHER, new RegExp(`may not run commands as ${OTHER} \\(its line allows ${RUNAS}\\)`));
  assert.equal(refused.stderr.trim().split('\n').length, 1, `one line: ${refused.stderr}`);
  assert.equal(existsSync(join(setup.spool, 'users', OTHER)), false, `no spool made for ${OTHER}`);
  // The daemon's run-as is no fallback for a line that names its accounts.
  await assertRefused(setup, t, 'root', /may not run commands as root/);
  // Nor is a prefix, a different case or a list.
  await assertRefused(setup, t, 'np-runa', /may not run commands as np-runa\b/);
  await assertRefused(setup, t, 'NP-RUNAS', /may not run commands as NP-RUNAS/);
});

test(`-user=${MISSING_USER}, allowed by the line but unknown to the host, is refused; the daemon goes on serving`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user="${RUNAS},${MISSING_USER}"`);
  const refused = await assertRefused(setup, t, MISSING_USER, new RegExp(`no such user ${MISSING_USER}`));
  assert.doesNotMatch(refused.stderr, /may not run/, 'the line allows it: the host is what lacks it');
  assert.equal(existsSync(join(setup.spool, 'users', MISSING_USER)), false);
  const after = await whoAmI(setup, RUNAS);
  assert.equal(Number(after['uid']), accountFacts(RUNAS).uid, 'a following allowed command runs');
  // A line whose first name is unknown refuses the default too, rather than falling back to another account.
  await setup.setLine(`user="${MISSING_USER},${RUNAS}"`);
  await assertRefused(setup, t, undefined, new RegExp(`no such user ${MISSING_USER}`));
  assert.ok(setup.np.daemon.running);
});

// ---- recipes ----------------------------------------------------------------------------------------------------

test(`a recipe with -user=${RUNAS} runs every command as the account and opens its redirections with its rights`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user="root,${RUNAS}"`);
  const facts = accountFacts(RUNAS);
  const userSpool = join(setup.spool, 'users', RUNAS);
  const stages = join(setup.recipes, 'stages.rcp');
  writeFileSync(stages, 'id -u >uid.txt\ncat uid.txt\nid -un\n');
  const ran = await setup.plumb([`-recipe=${stages}`], asUser(RUNAS));
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stdout.toString(), `${facts.uid}\n${RUNAS}\n`);
  const made = statSync(join(userSpool, 'uid.txt'));
  assert.equal(made.uid, facts.uid, 'the redirection file belongs to the account');
  assert.equal(existsSync(join(setup.spool, 'uid.txt')), false, 'nothing in the daemon\'s own spool');

  // A directory only root may enter, outside the spool (no gluepot: any path is allowed, rights decide).
  const rootOnly = tempDir(t, 'netplumb-runas-rootonly-');
  chmodSync(rootOnly, 0o700);
  const target = join(rootOnly, 'written.txt');
  const redirect = join(setup.recipes, 'root-only.rcp');
  writeFileSync(redirect, `writer: echo written >${target}\necho after\n`);
  const report = join(setup.recipes, 'report.json');
  const denied = await setup.plumb([`-recipe=${redirect}`, `-json=${report}`], asUser(RUNAS));
  assert.equal(denied.code, 1, denied.stderr);
  assert.equal(denied.stdout.toString(), 'after\n', 'the next command still runs');
  assert.match(denied.stderr, /writer \(.*root-only\.rcp:1\) did not start: redirection failed: .*permission denied/i);
  const writer = (JSON.parse(readFileSync(report, 'utf8')) as RecipeReportJson).stages[0];
  assert.equal(writer?.outcome, 'not-started');
  assert.equal(writer?.code, 1);
  assert.equal(writer?.error, ErrorCode.SpawnFailed);
  assert.doesNotMatch(denied.stderr, /\/proc\/self\/fd/, 'the path the recipe names, not the one the daemon opened it by');
  assert.equal(existsSync(target), false, 'the daemon did not lend its own rights to the open');

  const asRoot = await setup.plumb([`-recipe=${redirect}`], asUser('root'));
  assert.equal(asRoot.code, 0, asRoot.stderr);
  assert.equal(asRoot.stdout.toString(), 'after\n');
  assert.equal(readFileSync(target, 'utf8'), 'written\n');
  assert.equal(statSync(target).uid, 0);
});

test(`a recipe asking for an account the line does not allow is refused before any command runs`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user=${RUNAS}`);
  const marker = uniqueMarker('recipe-refused');
  killMarkedAtCleanup(t, marker);
  const file = join(setup.markers, marker);
  const recipe = join(setup.recipes, 'refused.rcp');
  writeFileSync(recipe, `touch ${file} >made.txt\nsh -c 'sleep 30' ${marker}\n`);
  const spoolBefore = treeOf(setup.spool);
  const result = await setup.plumb([`-recipe=${recipe}`], asUser(OTHER));
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.NotPermitted, result.stderr);
  assert.match(result.stderr, new RegExp(`may not run commands as ${OTHER}`));
  await waitUntil('no command of the refused recipe left', () => setup.np.daemon.commandGroups().length === 0, 5000);
  assert.deepEqual(processesWithMarker(marker), []);
  assert.equal(existsSync(file), false);
  assert.deepEqual(treeOf(setup.spool), spoolBefore, 'no redirection file, no user spool');
});

test(`a recipe redirection ${RUNAS} may not open is told by the path the recipe names, never by /proc/self/fd`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user=${RUNAS}`);
  // The account's spool is made at its first session; root then leaves a file of its own there.
  assert.equal((await setup.plumb(['true'], asUser(RUNAS))).code, 0);
  const forbidden = join(setup.spool, 'users', RUNAS, 'forbidden.txt');
  writeFileSync(forbidden, 'ROOT-ONLY\n', { mode: 0o600 });
  const recipe = join(setup.recipes, 'forbidden.rcp');
  writeFileSync(recipe, 'reader: cat <forbidden.txt\necho after\n');
  const report = join(setup.recipes, 'forbidden.json');
  const result = await setup.plumb([`-recipe=${recipe}`, `-json=${report}`], asUser(RUNAS));
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stdout.toString(), 'after\n');
  const reader = (JSON.parse(readFileSync(report, 'utf8')) as RecipeReportJson).stages[0];
  assert.equal(reader?.outcome, 'not-started');
  assert.equal(reader?.error, ErrorCode.SpawnFailed);
  assert.equal(reader?.message, `redirection failed: ${forbidden}: permission denied`);
  assert.deepEqual(plumbLines(result.stderr), [`plumb: reader (${recipe}:1) did not start: redirection failed: ${forbidden}: permission denied (${ErrorCode.SpawnFailed})`]);
  assert.doesNotMatch(result.stderr, /\/proc\/self\/fd|ROOT-ONLY/);
});

// ---- commands that cannot start -------------------------------------------------------------------------------

/** A directory every account may read, holding a script only root may execute and one nobody may. */
function scripts(scope: Scope): { rootOnly: string; plain: string } {
  const bin = tempDir(scope, 'netplumb-runas-bin-');
  chmodSync(bin, 0o755);
  const rootOnly = join(bin, 'root-only.sh');
  writeFileSync(rootOnly, '#!/bin/sh\necho ran\n', { mode: 0o700 });
  const plain = join(bin, 'plain.sh');
  writeFileSync(plain, '#!/bin/sh\necho ran\n', { mode: 0o644 });
  return { rootOnly, plain };
}

/** A first run that pins the daemon's host key, so that what plumb says later is only about the runs that count. */
async function pinHostKey(setup: RunAsSetup): Promise<void> {
  const first = await setup.plumb(['true']);
  assert.equal(first.code, 0, first.stderr);
}

/** plumb's run of argv as user, plain or (`-t`) on a pseudo-terminal. */
function runAs(setup: RunAsSetup, user: string, tty: boolean, argv: readonly string[]): Promise<ProcessResult> {
  return setup.plumb(argv, { options: [`-user=${user}`, ...(tty ? ['-t'] : [])] });
}

test(`a command that is not found is plumb's own NP_COMMAND_NOT_FOUND (127) as ${RUNAS} as for the daemon's own account, plain and on a pty`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user="root,${RUNAS}"`);
  await pinHostKey(setup);
  const words = new Set<string>();
  for (const user of ['root', RUNAS]) {
    for (const tty of [false, true]) {
      const how = `${user}${tty ? ' -t' : ''}`;
      const result = await runAs(setup, user, tty, ['np-no-such-command-e2e', 'arg']);
      assert.equal(result.code, 127, `${how}: ${result.stderr}`);
      assert.equal(reportedCode(result.stderr), ErrorCode.CommandNotFound, `${how}: ${result.stderr}`);
      assert.equal(result.stdout.length, 0, how);
      assert.doesNotMatch(result.stderr, /failed to execute|setpriv/, how);
      words.add(result.stderr);
    }
  }
  assert.deepEqual([...words], [`plumb: command not found: np-no-such-command-e2e (${ErrorCode.CommandNotFound})\n`], 'the same words every way');
});

test(`a program only root may execute is NP_COMMAND_NOT_EXECUTABLE (126) as ${RUNAS}, plain and on a pty; one nobody may execute is that for both`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user="root,${RUNAS}"`);
  await pinHostKey(setup);
  const { rootOnly, plain } = scripts(t);
  for (const tty of [false, true]) {
    const how = tty ? ' -t' : '';
    const refused = await runAs(setup, RUNAS, tty, [rootOnly]);
    assert.equal(refused.code, 126, `${RUNAS}${how}: ${refused.stderr}`);
    assert.equal(reportedCode(refused.stderr), ErrorCode.CommandNotExecutable, `${RUNAS}${how}: ${refused.stderr}`);
    assert.equal(refused.stderr, `plumb: permission denied: ${rootOnly} (${ErrorCode.CommandNotExecutable})\n`);
    assert.equal(refused.stdout.length, 0);
    const asRoot = await runAs(setup, 'root', tty, [rootOnly]);
    assert.equal(asRoot.code, 0, `root${how}: ${asRoot.stderr}`);
    assert.match(asRoot.stdout.toString(), /ran/);
    for (const user of ['root', RUNAS]) {
      const result = await runAs(setup, user, tty, [plain]);
      assert.equal(result.code, 126, `${user}${how}: ${result.stderr}`);
      assert.equal(result.stderr, `plumb: permission denied: ${plain} (${ErrorCode.CommandNotExecutable})\n`, `${user}${how}`);
    }
  }
});

test(`each command of a recipe that cannot start as ${RUNAS} ends as for the daemon's own account: 127 or 126, in plumb's words`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user="root,${RUNAS}"`);
  await pinHostKey(setup);
  const { rootOnly, plain } = scripts(t);
  const recipe = join(setup.recipes, 'cannot-start.rcp');
  writeFileSync(recipe, `missing: np-no-such-command-e2e\nforbidden: ${rootOnly}\nplain: ${plain}\necho after\n`);
  const report = join(setup.recipes, 'cannot-start.json');
  const result = await setup.plumb([`-recipe=${recipe}`, `-json=${report}`], asUser(RUNAS));
  assert.equal(result.code, 127, result.stderr);
  assert.equal(result.stdout.toString(), 'after\n');
  assert.doesNotMatch(result.stderr, /failed to execute|setpriv/);
  const missing = `plumb: missing (${recipe}:1) did not start: command not found: np-no-such-command-e2e (${ErrorCode.CommandNotFound})`;
  const plainLine = `plumb: plain (${recipe}:3) did not start: permission denied: ${plain} (${ErrorCode.CommandNotExecutable})`;
  assert.deepEqual(plumbLines(result.stderr), [missing, `plumb: forbidden (${recipe}:2) did not start: permission denied: ${rootOnly} (${ErrorCode.CommandNotExecutable})`, plainLine]);
  const stages = (JSON.parse(readFileSync(report, 'utf8')) as RecipeReportJson).stages;
  assert.deepEqual(
    stages.slice(0, 3).map((stage) => [stage.outcome, stage.code, stage.error]),
    [
      ['not-started', 127, ErrorCode.CommandNotFound],
      ['not-started', 126, ErrorCode.CommandNotExecutable],
      ['not-started', 126, ErrorCode.CommandNotExecutable],
    ],
  );
  // The daemon's own account (root) gets the same words for what it cannot start either.
  const own = await setup.plumb([`-recipe=${recipe}`], asUser('root'));
  assert.equal(own.code, 127, own.stderr);
  assert.equal(own.stdout.toString(), 'ran\nafter\n');
  assert.deepEqual(plumbLines(own.stderr), [missing, plainLine]);
});

// ---- named pipes ----------------------------------------------------------------------------------------------

test(`-infifo with -user=${RUNAS}: the daemon makes the pipe in the account's spool, owned by it, and the command reads it`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user=${RUNAS}`);
  const facts = accountFacts(RUNAS);
  mkfifo(join(setup.local, 'in'));
  const run = setup.spawnPlumb(['sh', '-c', 'id -un; stat -c "%u %a %F" "$NETPLUMB_SPOOL/in"; echo "[$(cat "$NETPLUMB_SPOOL/in")]"'], {
    options: [`-user=${RUNAS}`, '-infifo=in'],
  });
  await run.waitForStdout(/named pipe|fifo/i);
  const remote = lstatSync(join(setup.spool, 'users', RUNAS, 'in'));
  assert.ok(remote.isFIFO());
  assert.equal(remote.uid, facts.uid);
  assert.equal(existsSync(join(setup.spool, 'in')), false, 'not in the daemon\'s own spool');
  assert.equal((await writeInto(t, join(setup.local, 'in'), 'through the pipe').result).code, 0);
  const result = await run.result;
  assert.equal(result.code, 0, result.stderr);
  const [name, stat, read] = result.stdout.toString().trim().split('\n');
  assert.equal(name, RUNAS);
  assert.match(stat ?? '', new RegExp(`^${facts.uid} 600 (fifo|named pipe)$`, 'i'));
  assert.equal(read, '[through the pipe]');
});

test(`-outfifo with -user=${RUNAS}: the pipe in the account's spool is its own and what the command writes reaches the local reader`, { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const setup = await startRunAsNetplumb(t, `user=${RUNAS}`);
  const facts = accountFacts(RUNAS);
  const local = join(setup.local, 'out');
  mkfifo(local);
  const reader = runProcess(t, ['cat', local], { timeoutMs: 30_000 });
  const result = await setup.plumb(['sh', '-c', 'stat -c "%u %a" "$NETPLUMB_SPOOL/out"; id -un > "$NETPLUMB_SPOOL/out"'], {
    options: [`-user=${RUNAS}`, '-outfifo=out'],
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), `${facts.uid} 600\n`);
  const read = await reader;
  assert.equal(read.code, 0, read.stderr);
  assert.equal(read.stdout.toString(), `${RUNAS}\n`, 'written by the command running as the account');
});

// ---- start-up ---------------------------------------------------------------------------------------------------

test('netplumbd running as root without run-as, or with an unknown run-as account, refuses to start', { timeout: TIMEOUT_MS, skip: SKIP }, async (t) => {
  const dir = tempDir(t, 'netplumbd-no-runas-');
  const host = writeKeyPair(dir, 'host_key');
  const client = writeKeyPair(dir, 'identity');
  const clientsFile = join(dir, 'authorized_clients');
  writeFileSync(clientsFile, `${client.publicLine}\n`);
  const spool = tempDir(t, 'netplumb-runas-spool-');
  const startWith = (config: string, extra: readonly string[] = []): Promise<ProcessResult> => {
    const configFile = join(dir, 'netplumbd.conf');
    writeFileSync(configFile, config);
    return runProcess(
      t,
      [process.execPath, BIN.netplumbd, `-config=${configFile}`, '-listen=127.0.0.1:0', `-hostkey=${host.privateFile}`, `-clients=${clientsFile}`, `-spool=${spool}`, ...extra],
      { timeoutMs: 20_000 },
    );
  };
  const oneTimeKeys = `one-time-keys ${join(dir, 'one-time-keys')}\n`;
  const missing = await startWith(oneTimeKeys);
  assert.notEqual(missing.code, 0, 'it must not run commands as root by accident');
  assert.equal(missing.signal, null);
  assert.match(missing.stderr, /run-as/);
  assert.doesNotMatch(missing.stderr, /listening on/);
  const badName = await startWith(`${oneTimeKeys}run-as bad:name\n`);
  assert.notEqual(badName.code, 0);
  assert.match(badName.stderr, /run-as: bad:name is not a user name/);
  const emptyFlag = await startWith(oneTimeKeys, ['-run-as=']);
  assert.notEqual(emptyFlag.code, 0, 'an empty run-as is no run-as');
  assert.match(emptyFlag.stderr, /run-as/);
  // An account the host does not know would refuse every command of a client without user=: refused at start.
  const unknown = await startWith(`${oneTimeKeys}run-as ${MISSING_USER}\n`);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, new RegExp(`run-as ${MISSING_USER}: no such account`));
  assert.doesNotMatch(unknown.stderr, /listening on/);
});
