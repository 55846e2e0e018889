// End to end: one-time keys. A controller (an authorized-clients line with `controller`) mints a key bound to one
// command with `plumb -mint-key=FILE`; a node the daemon does not otherwise know runs exactly that command once with
// `plumb -one-time-key=FILE`, needing no known_hosts because the file names the daemon's host key. Every later use,
// a race of several nodes, a restart of the daemon, expiry, another command, a copied file, bytes replayed from the
// wire, a non-controller, a gluepot, and a controller that lost its flag are each refused, and nothing runs.

import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { BIN, rewriteClients, startDaemon } from '../helpers/daemon.js';
import { delay, spawnProcess, type ProcessResult } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';
import { appendTo, assertMinted, assertSecretAbsent, assertRefused, logLines, markerLines, startControllerNetplumb } from '../helpers/one-time-keys.js';

const TIMEOUT_MS = 60_000;
/** How many nodes race for one key. */
const RACERS = 4;

function plumbWithHome(scope: Scope, argv: readonly string[], home: string): Promise<ProcessResult> {
  return spawnProcess(scope, argv, { env: { ...process.env, NETPLUMB_HOME: home } }).result;
}

test('mint then use: a 0600 key file naming the daemon host key; the node runs the bound command without known_hosts', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const keyFile = join(env.work, 'node.key');
  const key = assertMinted(await env.mint(keyFile, appendTo(marker), ['-expires=10m']), env, keyFile);
  assert.deepEqual(markerLines(marker), [], 'minting did not run the command');
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  const hostBlob = env.np.hostKey.publicLine.split(' ')[1] as string;
  assert.match(key.text, new RegExp(`^daemon-host-key ssh-ed25519 ${hostBlob.replace(/[+/]/g, '\\$&')}(?=\\s|$)`, 'm'));
  assert.match(key.text, /-----END PRIVATE KEY-----\n$/);
  assert.equal(readdirSync(env.store).sort().join(','), `${key.id}.key`, 'the store holds the good key, by its id');
  const minted = logLines(env.np.daemon, 'one-time key minted', `key=${key.fingerprint}`, `controller=${env.np.client.fingerprint}`);
  assert.equal(minted.length, 1, env.np.daemon.log());

  const node = env.spawnNode(keyFile, appendTo(marker));
  const ran = await node.result;
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stderr, '');
  assert.deepEqual(markerLines(marker), ['ran']);
  assert.deepEqual(readdirSync(node.home), [], 'the node neither needed nor wrote a known_hosts');
  assert.equal(readdirSync(env.store).sort().join(','), `${key.id}.spent`, 'the key is recorded as spent');
});

test('a key works once: the second use is NP_NOT_AUTHORIZED and the log names the key, the node and the controller', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const keyFile = join(env.work, 'node.key');
  const key = assertMinted(await env.mint(keyFile, appendTo(marker)), env, keyFile);
  const first = await env.node(keyFile, appendTo(marker));
  assert.equal(first.code, 0, first.stderr);
  const second = await env.node(keyFile, appendTo(marker));
  // The node has proven it holds the key: it may learn why the key no longer works.
  assertRefused(second, ErrorCode.NotAuthorized, 'one-time key already used');
  assert.deepEqual(markerLines(marker), ['ran'], 'the command ran once');
  const used = logLines(env.np.daemon, 'one-time key used', `key=${key.fingerprint}`, `node=${key.fingerprint}`, `controller=${env.np.client.fingerprint}`);
  assert.equal(used.length, 1, env.np.daemon.log());
  const refused = logLines(env.np.daemon, 'one-time key refused', `key=${key.fingerprint}`, 'reason="one-time key already used"');
  assert.equal(refused.length, 1, env.np.daemon.log());
  assert.equal(logLines(env.np.daemon, 'command started').length, 1, 'one command started in all');
  // What a log shows of a key (mint, use, refusal) is its fingerprint: a key captured from the log is no key.
  assertSecretAbsent(Buffer.from(env.np.daemon.log()), key, 'the daemon log');
});

test(`a race of ${RACERS} nodes with one key: exactly one runs, the others get NP_NOT_AUTHORIZED`, { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const keyFile = join(env.work, 'node.key');
  const key = assertMinted(await env.mint(keyFile, appendTo(marker)), env, keyFile);
  const runs = Array.from({ length: RACERS }, () => env.spawnNode(keyFile, appendTo(marker)));
  const results = await Promise.all(runs.map((run) => run.result));
  const winners = results.filter((result) => result.code === 0);
  assert.equal(winners.length, 1, results.map((result) => `${String(result.code)}: ${result.stderr}`).join('\n'));
  for (const loser of results.filter((result) => result.code !== 0)) assertRefused(loser, ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), ['ran']);
  assert.equal(logLines(env.np.daemon, 'one-time key used', `key=${key.fingerprint}`).length, 1);
  assert.equal(logLines(env.np.daemon, 'one-time key refused', `key=${key.fingerprint}`, 'already used').length, RACERS - 1, env.np.daemon.log());
});

test('a restarted daemon with the same store: a spent key stays spent, a key minted before and not used works once', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const usedMarker = join(env.work, 'used-marker');
  const laterMarker = join(env.work, 'later-marker');
  const usedFile = join(env.work, 'used.key');
  const laterFile = join(env.work, 'later.key');
  const used = assertMinted(await env.mint(usedFile, appendTo(usedMarker)), env, usedFile);
  const later = assertMinted(await env.mint(laterFile, appendTo(laterMarker)), env, laterFile);
  const first = await env.node(usedFile, appendTo(usedMarker));
  assert.equal(first.code, 0, first.stderr);

  const exit = await env.np.daemon.stop();
  assert.equal(exit.code, 0);
  const restarted = await startDaemon(t, { hostKeyFile: env.np.hostKey.privateFile, clientsFile: env.np.clientsFile, args: [`-one-time-keys=${env.store}`] });

  assertRefused(await env.node(usedFile, appendTo(usedMarker), restarted.address), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(usedMarker), ['ran']);
  assert.equal(logLines(restarted, 'one-time key refused', `key=${used.fingerprint}`, 'already used').length, 1, restarted.log());

  const afterRestart = await env.node(laterFile, appendTo(laterMarker), restarted.address);
  assert.equal(afterRestart.code, 0, afterRestart.stderr);
  assert.deepEqual(markerLines(laterMarker), ['ran']);
  assert.equal(logLines(restarted, 'one-time key used', `key=${later.fingerprint}`, `controller=${env.np.client.fingerprint}`).length, 1);
  assertRefused(await env.node(laterFile, appendTo(laterMarker), restarted.address), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(laterMarker), ['ran']);
});

test('an expired key is refused with NP_NOT_AUTHORIZED, the log says expired, and its record is removed', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const keyFile = join(env.work, 'node.key');
  const minted = await env.mint(keyFile, appendTo(marker), ['-expires=1']);
  const key = assertMinted(minted, env, keyFile);
  await delay(1500);
  assertRefused(await env.node(keyFile, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), [], 'nothing ran');
  assert.equal(logLines(env.np.daemon, 'one-time key refused', `key=${key.fingerprint}`, 'reason="one-time key expired"').length, 1, env.np.daemon.log());
  assert.deepEqual(readdirSync(env.store), [], 'the expired record is gone');
});

test('another command with the key is NP_NOT_PERMITTED, nothing runs, and the key is spent', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const otherFile = join(env.work, 'other.key');
  assertMinted(await env.mint(otherFile, appendTo(marker)), env, otherFile);
  assertRefused(await env.node(otherFile, appendTo(marker, 'other')), ErrorCode.NotPermitted, 'one-time key does not allow that');
  assert.deepEqual(markerLines(marker), []);
  assertRefused(await env.node(otherFile, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), [], 'the bound command does not run after a refused one');

  // One argument more is another command too.
  const longerFile = join(env.work, 'longer.key');
  assertMinted(await env.mint(longerFile, appendTo(marker)), env, longerFile);
  assertRefused(await env.node(longerFile, [...appendTo(marker), 'extra']), ErrorCode.NotPermitted);
  assert.deepEqual(markerLines(marker), []);
  assert.deepEqual(env.np.daemon.commandGroups(), []);
  assert.equal(logLines(env.np.daemon, 'command started').length, 0);
});

test('a third node: its own key is not authorized, a copy of a used key file is refused, a wrong host key never connects', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const thirdHome = tempDir(t, 'netplumb-third-home-');
  const ownKey = await plumbWithHome(t, [process.execPath, BIN.plumb, `-identity=${env.third.privateFile}`, '-accept-new', env.np.daemon.address, ...appendTo(marker)], thirdHome);
  assertRefused(ownKey, ErrorCode.NotAuthorized);
  // A key the daemon never minted learns nothing but "not authorized".
  assert.doesNotMatch(ownKey.stderr, /one-time key/);
  const ownMint = await plumbWithHome(t, [process.execPath, BIN.plumb, `-identity=${env.third.privateFile}`, '-accept-new', `-mint-key=${join(env.work, 'third.key')}`, env.np.daemon.address, 'true'], thirdHome);
  assertRefused(ownMint, ErrorCode.NotAuthorized);
  assert.equal(existsSync(join(env.work, 'third.key')), false);

  const keyFile = join(env.work, 'node.key');
  assertMinted(await env.mint(keyFile, appendTo(marker)), env, keyFile);
  // A file naming another host key: the node stops before authenticating, so the key is not spent.
  const wrongHost = join(env.work, 'wrong-host.key');
  writeFileSync(wrongHost, readFileSync(keyFile, 'utf8').replace(/^daemon-host-key .*$/m, `daemon-host-key ${env.third.publicLine}`), { mode: 0o600 });
  assertRefused(await env.node(wrongHost, appendTo(marker)), ErrorCode.HostKeyChanged, env.third.fingerprint);
  assert.deepEqual(markerLines(marker), []);

  const copy = join(env.work, 'copied.key');
  copyFileSync(keyFile, copy);
  chmodSync(copy, 0o600);
  const legitimate = await env.node(keyFile, appendTo(marker));
  assert.equal(legitimate.code, 0, legitimate.stderr);
  assertRefused(await env.node(copy, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), ['ran']);
  assert.equal(logLines(env.np.daemon, 'client not authorized', `fingerprint=${env.third.fingerprint}`).length, 2, env.np.daemon.log());
});

/** A plumb run of argv with its own NETPLUMB_HOME. */
test('a client without the controller flag cannot mint: NP_NOT_PERMITTED and no key file', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t, (line) => line);
  const keyFile = join(env.work, 'node.key');
  const marker = join(env.work, 'marker');
  assertRefused(await env.mint(keyFile, appendTo(marker)), ErrorCode.NotPermitted, 'only a controller may mint one-time keys');
  assert.equal(existsSync(keyFile), false);
  assert.equal(existsSync(env.store) ? readdirSync(env.store).length : 0, 0, 'nothing was stored');
  assert.equal(logLines(env.np.daemon, 'one-time key minted').length, 0);
  // The same client still runs commands of its own.
  const ran = await env.np.plumb(appendTo(marker));
  assert.equal(ran.code, 0, ran.stderr);
  assert.deepEqual(markerLines(marker), ['ran']);
});

test("a command the controller's gluepot does not allow is refused at mint time; an allowed one mints and runs", { timeout: TIMEOUT_MS }, async (t) => {
  const gluepots = tempDir(t, 'netplumb-gluepots-');
  writeFileSync(join(gluepots, 'ops'), '/bin/echo ...\n');
  const env = await startControllerNetplumb(t, (line) => `controller,gluepot=ops ${line}`, { daemonArgs: [`-gluepots=${gluepots}`] });
  const marker = join(env.work, 'marker');
  const refusedFile = join(env.work, 'refused.key');
  assertRefused(await env.mint(refusedFile, ['touch', marker]), ErrorCode.NotPermitted, 'touch', 'ops');
  assert.equal(existsSync(refusedFile), false);
  assert.equal(existsSync(env.store) ? readdirSync(env.store).length : 0, 0, 'nothing was stored');
  assert.equal(existsSync(marker), false);

  const allowedFile = join(env.work, 'allowed.key');
  assertMinted(await env.mint(allowedFile, ['echo', 'from', 'the', 'node']), env, allowedFile);
  const ran = await env.node(allowedFile, ['echo', 'from', 'the', 'node']);
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stdout.toString(), 'from the node\n');
});

test('a key is refused once its controller lost the controller flag or its line', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const flagFile = join(env.work, 'flag.key');
  const lineFile = join(env.work, 'line.key');
  const flagKey = assertMinted(await env.mint(flagFile, appendTo(marker)), env, flagFile);
  assertMinted(await env.mint(lineFile, appendTo(marker)), env, lineFile);

  await rewriteClients(env.np.daemon, env.np.clientsFile, `${env.np.client.publicLine}\n`);
  assertRefused(await env.node(flagFile, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), []);
  const lost = logLines(env.np.daemon, 'the controller of this one-time key is no longer authorized', `controller=${env.np.client.fingerprint}`);
  assert.equal(lost.length, 1, env.np.daemon.log());
  assert.ok(lost[0]?.includes(`client=${flagKey.fingerprint}`), lost[0]);
  assertRefused(await env.mint(join(env.work, 'after.key'), appendTo(marker)), ErrorCode.NotPermitted);
  assert.equal(existsSync(join(env.work, 'after.key')), false);

  await rewriteClients(env.np.daemon, env.np.clientsFile, `${env.third.publicLine}\n`);
  assertRefused(await env.node(lineFile, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), []);
  assert.equal(logLines(env.np.daemon, 'one-time key used').length, 0);
  assert.equal(logLines(env.np.daemon, 'command started').length, 0);
});

test('bad input: an existing key file is never overwritten; bad lifetimes, option clashes and loose key files are refused', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const existing = join(env.work, 'existing.key');
  writeFileSync(existing, 'keep me\n', { mode: 0o600 });
  assertRefused(await env.mint(existing, appendTo(marker)), ErrorCode.Config, existing, 'already exists');
  assert.equal(readFileSync(existing, 'utf8'), 'keep me\n');
  // The file is made before the daemon is asked: a key nobody could hold is never minted.
  assert.equal(existsSync(env.store) ? readdirSync(env.store).length : 0, 0, 'no key was minted for a file that could not be written');
  assert.equal(logLines(env.np.daemon, 'one-time key minted').length, 0);

  for (const lifetime of ['0', 'abc', '1.5', '-5', '10x', '']) {
    const file = join(env.work, `lifetime-${lifetime}.key`);
    assertRefused(await env.mint(file, ['true'], [`-expires=${lifetime}`]), ErrorCode.Usage, `bad lifetime ${lifetime}`);
    assert.equal(existsSync(file), false, `no key file for -expires=${lifetime}`);
  }
  const tooLong = join(env.work, 'eight-days.key');
  const refusedLong = await env.mint(tooLong, ['true'], ['-expires=8d']);
  assertRefused(refusedLong, ErrorCode.Usage, '-expires=8d', '7 days');
  assert.equal(existsSync(tooLong), false);
  // A week is the longest lifetime, and allowed.
  const week = join(env.work, 'week.key');
  const mintedWeek = await env.mint(week, ['true'], ['-expires=7d']);
  assertMinted(mintedWeek, env, week);
  const until = Date.parse(/until (\S+?),/.exec(mintedWeek.stderr)?.[1] ?? '');
  assert.ok(Math.abs(until - Date.now() - 7 * 86_400_000) < 120_000, mintedWeek.stderr);

  const plain = join(env.work, 'plain.key');
  assertRefused(await env.np.plumb(['true'], { options: ['-expires=10m'] }), ErrorCode.Usage, '-expires');
  assertRefused(await env.mint(plain, ['true'], [`-one-time-key=${week}`]), ErrorCode.Usage);
  assert.equal(existsSync(plain), false);
  const both = await plumbWithHome(t, [process.execPath, BIN.plumb, `-identity=${env.np.client.privateFile}`, `-one-time-key=${week}`, env.np.daemon.address, 'true'], tempDir(t));
  assertRefused(both, ErrorCode.Usage, '-one-time-key');

  // A key file others may read is not used, and so not spent; fixed, it works.
  chmodSync(week, 0o644);
  assertRefused(await env.node(week, ['true']), ErrorCode.KeyFormat, 'too open');
  const noHost = join(env.work, 'no-host.key');
  writeFileSync(noHost, readFileSync(week, 'utf8').replace(/^daemon-host-key .*\n/m, ''), { mode: 0o600 });
  assertRefused(await env.node(noHost, ['true']), ErrorCode.KeyFormat, 'daemon-host-key');
  chmodSync(week, 0o600);
  const ran = await env.node(week, ['true']);
  assert.equal(ran.code, 0, ran.stderr);
  assert.deepEqual(markerLines(marker), [], 'no refused mint ran its command');
});
