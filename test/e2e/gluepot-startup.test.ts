// End to end: how the daemon reads gluepots at start-up. A client line without gluepot= may run anything and the
// daemon warns about it; a client whose gluepot is missing or bad is dropped (NP_NOT_AUTHORIZED, never
// unrestricted) while the other clients are served.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { BIN, reportedCode, startDaemon, writeKeyPair, type DaemonProcess, type KeyFiles } from '../helpers/daemon.js';
import { runProcess, type ProcessResult } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 120_000;
const UNRESTRICTED_WARNING = 'client may run any command: its line names no gluepot';

interface Keys {
  alice: KeyFiles;
  bob: KeyFiles;
}

interface Setup extends Keys {
  daemon: DaemonProcess;
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
  return {
    ...keys,
    daemon,
    plumb: (identity, command) =>
      runProcess(scope, [process.execPath, BIN.plumb, `-identity=${identity.privateFile}`, '-accept-new', daemon.address, ...command], {
        env: { ...process.env, NETPLUMB_HOME: home },
      }),
  };
}

test('a client line without gluepot= may run anything, and the daemon warns about it at start-up', { timeout: TIMEOUT_MS }, async (t) => {
  const setup = await startWith(t, ({ alice, bob }) => `${alice.publicLine}\ngluepot=echo ${bob.publicLine}\n`, { echo: '/bin/echo ...\n' });
  const warnings = setup.daemon.log().split('\n').filter((line) => line.includes(UNRESTRICTED_WARNING));
  assert.equal(warnings.length, 1, setup.daemon.log());
  assert.match(warnings[0] ?? '', /\bwarn\b/);
  assert.ok(warnings[0]?.includes(setup.alice.fingerprint), `the warning names the client: ${warnings[0]}`);
  assert.ok(warnings[0]?.includes('line=1'), `the warning names the line: ${warnings[0]}`);
  const free = await setup.plumb(setup.alice, ['sh', '-c', 'echo anything goes']);
  assert.equal(free.code, 0, free.stderr);
  assert.equal(free.stdout.toString(), 'anything goes\n');
  const bound = await setup.plumb(setup.bob, ['sh', '-c', 'echo anything goes']);
  assert.equal(bound.code, 255, bound.stderr);
  assert.equal(reportedCode(bound.stderr), ErrorCode.NotPermitted, bound.stderr);
});

test('a client whose gluepot file is missing cannot connect (NP_NOT_AUTHORIZED); another client is served', { timeout: TIMEOUT_MS }, async (t) => {
  const setup = await startWith(t, ({ alice, bob }) => `gluepot=nowhere ${alice.publicLine}\ngluepot=echo ${bob.publicLine}\n`, { echo: '/bin/echo ...\n' });
  assert.match(setup.daemon.log(), /warn authorized clients: line ignored, its gluepot cannot be used line=1 code=NP_CONFIG/);
  assert.equal(setup.daemon.log().includes(UNRESTRICTED_WARNING), false, 'no client runs unrestricted');
  const marker = join(tempDir(t), 'ran');
  const dropped = await setup.plumb(setup.alice, ['touch', marker]);
  assert.equal(dropped.code, 255, dropped.stderr);
  assert.equal(reportedCode(dropped.stderr), ErrorCode.NotAuthorized, dropped.stderr);
  assert.equal(existsSync(marker), false);
  const served = await setup.plumb(setup.bob, ['echo', 'served']);
  assert.equal(served.code, 0, served.stderr);
  assert.equal(served.stdout.toString(), 'served\n');
});

test('a client whose gluepot has a bad line cannot connect; the daemon logs the file and line', { timeout: TIMEOUT_MS }, async (t) => {
  const setup = await startWith(t, ({ alice, bob }) => `gluepot=broken ${alice.publicLine}\n${bob.publicLine}\n`, {
    broken: '/bin/echo ...\nsh -c *\n',
  });
  assert.match(setup.daemon.log(), /line ignored, its gluepot cannot be used line=1 code=NP_CONFIG reason=.*broken:2/);
  const dropped = await setup.plumb(setup.alice, ['echo', 'hi']);
  assert.equal(dropped.code, 255, dropped.stderr);
  assert.equal(reportedCode(dropped.stderr), ErrorCode.NotAuthorized, dropped.stderr);
  const served = await setup.plumb(setup.bob, ['echo', 'served']);
  assert.equal(served.code, 0, served.stderr);
});

test('with every client dropped for its gluepot the daemon still starts, and refuses everyone', { timeout: TIMEOUT_MS }, async (t) => {
  const setup = await startWith(t, ({ alice }) => `gluepot=nowhere ${alice.publicLine}\n`, {});
  assert.match(setup.daemon.log(), /no authorized clients: every connection will be refused/);
  const refused = await setup.plumb(setup.alice, ['true']);
  assert.equal(reportedCode(refused.stderr), ErrorCode.NotAuthorized, refused.stderr);
});
