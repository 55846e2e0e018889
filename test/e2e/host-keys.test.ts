// End to end: plumb's host-key decision. An unknown daemon is refused (NP_HOST_KEY_UNKNOWN, its fingerprint shown)
// unless -accept-new records it; a daemon whose key differs from the pinned one is refused (NP_HOST_KEY_CHANGED)
// even with -accept-new, before the client authenticates or any command runs. Either way the client tells the
// daemon, whose log says the client refused its host key.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { generateIdentity } from '../../protocol/keys.js';
import { addHostKey } from '../../plumb-cli/known-hosts.js';
import { reportedCode, startNetplumb, writeKeyPair } from '../helpers/daemon.js';
import { delay } from '../helpers/processes.js';

const TIMEOUT_MS = 120_000;

/** The base64 key part of a `.pub` line. */
function keyData(publicLine: string): string {
  return publicLine.split(/\s+/)[1] ?? '';
}

test('an unknown host key without -accept-new is refused with its fingerprint shown', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const flag = join(np.dir, 'ran');
  const result = await np.plumb(['touch', flag], { acceptNew: false });
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.HostKeyUnknown, result.stderr);
  assert.ok(result.stderr.includes(np.hostKey.fingerprint), result.stderr);
  assert.equal(existsSync(join(np.home, 'known_hosts')), false, 'nothing may be pinned without -accept-new');
  assert.equal(existsSync(flag), false);
  await delay(200);
  assert.ok(!authenticated(np.daemon.log(), np.client.fingerprint), 'the client must not have authenticated');
  // The daemon's operator learns why the client left.
  await np.daemon.waitForLog(/warn client refused the host key .*code=NP_HOST_KEY_UNKNOWN/, 10_000);
  assert.doesNotMatch(np.daemon.log(), /without goodbye/);
});

test('-accept-new records the host key and later runs need no flag', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const first = await np.plumb(['echo', 'first'], { acceptNew: true });
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout.toString(), 'first\n');
  assert.ok(first.stderr.includes(np.hostKey.fingerprint), 'plumb says which key it recorded');
  const knownHosts = readFileSync(join(np.home, 'known_hosts'), 'utf8');
  assert.ok(knownHosts.includes(keyData(np.hostKey.publicLine)), knownHosts);
  assert.ok(knownHosts.includes(`[127.0.0.1]:${np.daemon.port}`), knownHosts);
  const second = await np.plumb(['echo', 'second'], { acceptNew: false });
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stdout.toString(), 'second\n');
  assert.equal(second.stderr, '', 'a pinned key that matches gives no notes');
});

for (const acceptNew of [false, true]) {
  test(`a changed host key is refused with NP_HOST_KEY_CHANGED${acceptNew ? ', also with -accept-new' : ''}`, { timeout: TIMEOUT_MS }, async (t) => {
    const np = await startNetplumb(t);
    const knownHostsFile = join(np.home, 'known_hosts');
    const impostor = generateIdentity('ed25519', 'pinned-before');
    addHostKey(knownHostsFile, '127.0.0.1', np.daemon.port, impostor.publicIdentity);
    const pinned = readFileSync(knownHostsFile, 'utf8');
    const flag = join(np.dir, 'ran');
    const result = await np.plumb(['touch', flag], { acceptNew });
    assert.equal(result.code, 255);
    assert.equal(reportedCode(result.stderr), ErrorCode.HostKeyChanged, result.stderr);
    assert.ok(result.stderr.includes(np.hostKey.fingerprint), 'the key the daemon presented is shown');
    assert.ok(result.stderr.includes(impostor.publicIdentity.fingerprint), 'the pinned key is shown');
    assert.equal(readFileSync(knownHostsFile, 'utf8'), pinned, 'the pinned key must stay');
    assert.equal(existsSync(flag), false);
    await delay(200);
    assert.ok(!authenticated(np.daemon.log(), np.client.fingerprint), 'the client must not have authenticated');
    await np.daemon.waitForLog(/warn client refused the host key .*code=NP_HOST_KEY_CHANGED/, 10_000);
  });
}

test('-accept-new pins nothing when the handshake fails before the daemon has proven its key', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const stranger = writeKeyPair(np.dir, 'stranger');
  const result = await np.plumb(['true'], { acceptNew: true, identity: stranger.privateFile });
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.NotAuthorized, result.stderr);
  assert.equal(existsSync(join(np.home, 'known_hosts')), false, 'an unproven host key must not be pinned');
});

/** Whether the daemon's log says this key authenticated (other lines, like the start-up warnings, name keys too). */
function authenticated(log: string, fingerprint: string): boolean {
  return log.split('\n').some((line) => line.includes('client authenticated') && line.includes(fingerprint));
}
