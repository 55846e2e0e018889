// End to end: SIGHUP makes netplumbd read its authorized clients and gluepots again. A good reload applies to the
// next connection while running sessions keep what they started with; a bad line or an unreadable file refuses the
// whole reload and the settings in force stay; a client removed by a good reload can no longer connect.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { BIN, reportedCode, startDaemon, writeKeyPair, type DaemonProcess, type KeyFiles } from '../helpers/daemon.js';
import { spawnProcess, waitUntil, type ProcessResult, type RunningProcess } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 120_000;
const RELOADED = /authorization reloaded/g;
const REFUSED = /reload refused: the settings in force stay/g;

interface Keys {
  alice: KeyFiles;
  bob: KeyFiles;
}

interface Setup extends Keys {
  daemon: DaemonProcess;
  clientsFile: string;
  gluepotDir: string;
  spawnPlumb(identity: KeyFiles, command: readonly string[]): RunningProcess;
  plumb(identity: KeyFiles, command: readonly string[]): Promise<ProcessResult>;
}

/** A daemon whose authorized clients (alice and bob) and gluepot files are written before it starts. */
async function startWith(scope: Scope, clients: (keys: Keys) => string, gluepots: Record<string, string>): Promise<Setup> {
  const dir = tempDir(scope);
  const gluepotDir = join(dir, 'gluepots');
  const home = join(dir, 'home');
  const host = writeKeyPair(dir, 'host_key');
  const keys = { alice: writeKeyPair(dir, 'alice'), bob: writeKeyPair(dir, 'bob') };
  const clientsFile = join(dir, 'authorized_clients');
  writeFileSync(clientsFile, clients(keys));
  mkdirSync(gluepotDir);
  for (const [name, text] of Object.entries(gluepots)) writeFileSync(join(gluepotDir, name), text);
  const daemon = await startDaemon(scope, { hostKeyFile: host.privateFile, clientsFile, args: [`-gluepots=${gluepotDir}`] });
  const spawnPlumb = (identity: KeyFiles, command: readonly string[]): RunningProcess =>
    spawnProcess(scope, [process.execPath, BIN.plumb, `-identity=${identity.privateFile}`, '-accept-new', daemon.address, ...command], {
      env: { ...process.env, NETPLUMB_HOME: home },
    });
  return { ...keys, daemon, clientsFile, gluepotDir, spawnPlumb, plumb: (identity, command) => spawnPlumb(identity, command).result };
}

function count(text: string, pattern: RegExp): number {
  return (text.match(pattern) ?? []).length;
}

/** Sends SIGHUP and waits for the log line that says how the reload went. */
async function sighup(daemon: DaemonProcess, outcome: 'reloaded' | 'refused'): Promise<string> {
  const pattern = outcome === 'reloaded' ? RELOADED : REFUSED;
  const other = outcome === 'reloaded' ? REFUSED : RELOADED;
  const before = count(daemon.log(), pattern);
  const otherBefore = count(daemon.log(), other);
  daemon.kill('SIGHUP');
  await waitUntil(`reload ${outcome}`, () => count(daemon.log(), pattern) > before || count(daemon.log(), other) > otherBefore);
  assert.equal(count(daemon.log(), pattern), before + 1, `the reload was not ${outcome}: ${daemon.log()}`);
  const single = new RegExp(pattern.source);
  return daemon.log().split('\n').filter((line) => single.test(line)).at(-1) ?? '';
}

function assertCode(result: ProcessResult, code: ErrorCode): void {
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), code, result.stderr);
}

test('a good reload applies to the next connection; a session running through it keeps its settings and ends normally', { timeout: TIMEOUT_MS }, async (t) => {
  const setup = await startWith(t, ({ alice }) => `gluepot=ops ${alice.publicLine}\n`, { ops: '/bin/sleep ...\n/bin/echo ...\n' });
  const marker = join(tempDir(t), 'touched');
  assertCode(await setup.plumb(setup.alice, ['touch', marker]), ErrorCode.NotPermitted);
  // A session that runs through the reload: started under the old gluepot, which the new one no longer allows.
  const session = setup.spawnPlumb(setup.alice, ['sleep', '3']);
  let sessionEnded = false;
  void session.result.then(() => (sessionEnded = true));
  await setup.daemon.waitForLog(/command started .*argv=\["sleep","3"\]/);
  writeFileSync(join(setup.gluepotDir, 'ops'), '/usr/bin/touch ...\n/bin/echo ...\n');
  const line = await sighup(setup.daemon, 'reloaded');
  assert.match(line, /\binfo\b.*clients=1 gluepots=1/);
  assert.equal(sessionEnded, false, 'the session was still running at the reload');
  assert.ok(setup.daemon.commandGroups().length > 0, 'its command was still running at the reload');
  const touched = await setup.plumb(setup.alice, ['touch', marker]);
  assert.equal(touched.code, 0, touched.stderr);
  assert.equal(existsSync(marker), true, 'the newly allowed command ran');
  assertCode(await setup.plumb(setup.alice, ['sleep', '0']), ErrorCode.NotPermitted);
  const ended = await session.result;
  assert.equal(ended.code, 0, ended.stderr);
  assert.equal(ended.stderr, '');
});

test('a reload with a broken gluepot is refused and the settings in force stay', { timeout: TIMEOUT_MS }, async (t) => {
  const setup = await startWith(t, ({ alice }) => `gluepot=ops ${alice.publicLine}\n`, { ops: '/bin/echo ...\n' });
  // The new file would allow touch, but one bad line refuses all of it.
  writeFileSync(join(setup.gluepotDir, 'ops'), '/bin/echo ...\n/usr/bin/touch ...\nsh -c *\n');
  const line = await sighup(setup.daemon, 'refused');
  assert.match(line, /\berror\b.*code=NP_CONFIG/);
  assert.ok(line.includes(`${join(setup.gluepotDir, 'ops')}:3`), `the log names the file and line: ${line}`);
  const marker = join(tempDir(t), 'touched');
  assertCode(await setup.plumb(setup.alice, ['touch', marker]), ErrorCode.NotPermitted);
  assert.equal(existsSync(marker), false);
  const echoed = await setup.plumb(setup.alice, ['echo', 'still', 'allowed']);
  assert.equal(echoed.code, 0, echoed.stderr);
  assert.equal(echoed.stdout.toString(), 'still allowed\n');
  // Fixed, the same change goes through.
  writeFileSync(join(setup.gluepotDir, 'ops'), '/bin/echo ...\n/usr/bin/touch ...\n');
  await sighup(setup.daemon, 'reloaded');
  const touched = await setup.plumb(setup.alice, ['touch', marker]);
  assert.equal(touched.code, 0, touched.stderr);
});

test('a reload is refused, keeping the settings in force, for a missing gluepot, a bad client line or an unreadable clients file', { timeout: TIMEOUT_MS }, async (t) => {
  const setup = await startWith(t, ({ alice }) => `gluepot=ops ${alice.publicLine}\n`, { ops: '/bin/echo ...\n' });
  const cases: [string, () => void][] = [
    ['a line naming a missing gluepot', () => writeFileSync(setup.clientsFile, `gluepot=ops ${setup.alice.publicLine}\ngluepot=nowhere ${setup.bob.publicLine}\n`)],
    ['a bad client line', () => writeFileSync(setup.clientsFile, `gluepot=ops ${setup.alice.publicLine}\nfrom=10.0.0.1 ${setup.bob.publicLine}\n`)],
    ['a key listed twice', () => writeFileSync(setup.clientsFile, `gluepot=ops ${setup.alice.publicLine}\n${setup.bob.publicLine}\n${setup.bob.publicLine}\n`)],
    ['a clients file that is gone', () => rmSync(setup.clientsFile)],
    ['a gluepot that is gone', () => {
      writeFileSync(setup.clientsFile, `gluepot=ops ${setup.alice.publicLine}\n${setup.bob.publicLine}\n`);
      rmSync(join(setup.gluepotDir, 'ops'));
    }],
  ];
  for (const [what, change] of cases) {
    change();
    const line = await sighup(setup.daemon, 'refused');
    assert.match(line, /code=NP_CONFIG/, what);
    // Bob, whom each new file would let in, is still refused; Alice still has her gluepot.
    assertCode(await setup.plumb(setup.bob, ['echo', 'hi']), ErrorCode.NotAuthorized);
    const echoed = await setup.plumb(setup.alice, ['echo', 'hi']);
    assert.equal(echoed.code, 0, `${what}: ${echoed.stderr}`);
    assertCode(await setup.plumb(setup.alice, ['true']), ErrorCode.NotPermitted);
  }
  assert.ok(setup.daemon.running);
});

test('a client removed by a good reload can no longer connect; one added can', { timeout: TIMEOUT_MS }, async (t) => {
  const setup = await startWith(t, ({ alice, bob }) => `gluepot=ops ${alice.publicLine}\ngluepot=ops ${bob.publicLine}\n`, { ops: '/bin/echo ...\n' });
  const before = await setup.plumb(setup.bob, ['echo', 'bob']);
  assert.equal(before.code, 0, before.stderr);
  writeFileSync(setup.clientsFile, `gluepot=ops ${setup.alice.publicLine}\n`);
  const line = await sighup(setup.daemon, 'reloaded');
  assert.match(line, /clients=1/);
  assertCode(await setup.plumb(setup.bob, ['echo', 'bob']), ErrorCode.NotAuthorized);
  const alice = await setup.plumb(setup.alice, ['echo', 'alice']);
  assert.equal(alice.code, 0, alice.stderr);
  // Back in, without a gluepot this time: unrestricted, and the reload warns about it.
  writeFileSync(setup.clientsFile, `gluepot=ops ${setup.alice.publicLine}\n${setup.bob.publicLine}\n`);
  await sighup(setup.daemon, 'reloaded');
  const warnings = setup.daemon.log().split('\n').filter((entry) => entry.includes('client may run any command: its line names no gluepot'));
  assert.equal(warnings.length, 1, setup.daemon.log());
  assert.ok(warnings[0]?.includes(setup.bob.fingerprint), `the warning names the unrestricted client: ${warnings[0]}`);
  const back = await setup.plumb(setup.bob, ['sh', '-c', 'echo back']);
  assert.equal(back.code, 0, back.stderr);
  assert.equal(back.stdout.toString(), 'back\n');
});
