// netplumbd -check-config, as sshd -t: a configuration the daemon would start with cleanly passes silently (exit 0);
// otherwise every problem is said with the file and line it is on (a setting, an authorized-clients line, a gluepot
// a line names, the host key, the default account) and the exit status is 1. Nothing listens either way.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { baseDaemonConfig, BIN, writeKeyPair } from '../helpers/daemon.js';
import { runProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';

const TIMEOUT_MS = 60_000;

function checkConfig(t: Parameters<typeof tempDir>[0], configFile: string): ReturnType<typeof runProcess> {
  return runProcess(t, [process.execPath, BIN.netplumbd, `-config=${configFile}`, '-check-config'], { timeoutMs: 30_000 });
}

test('a sound configuration passes silently, with exit status 0', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t, 'netplumb-check-config-');
  const hostKey = writeKeyPair(dir, 'host_key');
  const client = writeKeyPair(dir, 'client');
  mkdirSync(join(dir, 'gluepots'));
  writeFileSync(join(dir, 'gluepots', 'backups'), '/usr/bin/tar\n');
  writeFileSync(join(dir, 'clients'), `gluepot=backups ${client.publicLine}\n`);
  const config = join(dir, 'netplumbd.conf');
  writeFileSync(config, `${baseDaemonConfig(dir)}hostkey ${hostKey.privateFile}\nclients ${join(dir, 'clients')}\ngluepots ${join(dir, 'gluepots')}\n`);
  const result = await checkConfig(t, config);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
});

test('a bad setting is named with its file and line', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t, 'netplumb-check-config-');
  const config = join(dir, 'netplumbd.conf');
  writeFileSync(config, `${baseDaemonConfig(dir)}# the spool\nspool relative/spool\n`);
  const result = await checkConfig(t, config);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, new RegExp(`netplumbd: ${config.replaceAll('/', '\\/')}:4: spool must be an absolute path, got relative/spool \\(NP_CONFIG\\)`));
});

test('every problem of the host key, the authorized clients and their gluepots is said, each where it is', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t, 'netplumb-check-config-');
  const client = writeKeyPair(dir, 'client');
  const clients = join(dir, 'clients');
  mkdirSync(join(dir, 'gluepots'));
  writeFileSync(clients, `gluepot=missing ${client.publicLine}\nthis is no key line\n`);
  const config = join(dir, 'netplumbd.conf');
  writeFileSync(config, `${baseDaemonConfig(dir)}hostkey ${join(dir, 'no-such-host-key')}\nclients ${clients}\ngluepots ${join(dir, 'gluepots')}\n`);
  const result = await checkConfig(t, config);
  assert.equal(result.code, 1, result.stderr);
  const problems = result.stderr.trimEnd().split('\n');
  assert.equal(problems.length, 3, result.stderr);
  assert.match(result.stderr, /no-such-host-key/);
  assert.match(result.stderr, new RegExp(`${clients.replaceAll('/', '\\/')}:2: `));
  assert.match(result.stderr, new RegExp(`${clients.replaceAll('/', '\\/')}:1: gluepot missing: `));
});

test('every bad line is said, not the first only: settings, an unknown run-as account where it is set, each bad gluepot line', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t, 'netplumb-check-config-');
  const hostKey = writeKeyPair(dir, 'host_key');
  const client = writeKeyPair(dir, 'client');
  const gluepots = join(dir, 'gluepots');
  mkdirSync(gluepots);
  writeFileSync(join(gluepots, 'mixed'), '/usr/bin/tar\nrelative/program\n/usr/bin/no-such-program-here\npath not/absolute\n/usr/bin/gzip\n');
  const clients = join(dir, 'clients');
  writeFileSync(clients, `gluepot=mixed,user="nosuchaccount-np,root" ${client.publicLine}\n`);
  const config = join(dir, 'netplumbd.conf');
  const base = `${baseDaemonConfig(dir)}hostkey ${hostKey.privateFile}\nclients ${clients}\ngluepots ${gluepots}\n`;
  const baseLines = base.split('\n').length - 1;
  writeFileSync(config, `${base}no-such-setting 1\nspool relative/spool\nrun-as nosuchaccount-np\n`);
  const result = await checkConfig(t, config);
  assert.equal(result.code, 1, result.stderr);
  const at = (file: string, line: number): string => `${file.replaceAll('/', '\\/')}:${line}: `;
  const expected = [
    new RegExp(`${at(config, baseLines + 1)}unknown setting no-such-setting`),
    new RegExp(`${at(config, baseLines + 2)}spool must be an absolute path`),
    new RegExp(`${at(config, baseLines + 3)}run-as nosuchaccount-np: `),
    new RegExp(`${at(join(gluepots, 'mixed'), 2)}a program must be an absolute path`),
    new RegExp(`${at(join(gluepots, 'mixed'), 3)}/usr/bin/no-such-program-here: ENOENT`),
    new RegExp(`${at(join(gluepots, 'mixed'), 4)}expected "path /ABSOLUTE/GLOB"`),
  ];
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, expected.length, result.stderr);
  for (const pattern of expected) assert.ok(lines.some((line) => pattern.test(line)), `${pattern}:\n${result.stderr}`);
  // A user= account is looked up when a command runs, not here: one authorized-clients file may serve many hosts.
  assert.doesNotMatch(result.stderr, /user=/);
});
