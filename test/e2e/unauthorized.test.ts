// End to end: a client whose key is not in the daemon's authorized clients is refused with NP_NOT_AUTHORIZED
// and exit 255, its command never runs, the daemon logs the refused key's fingerprint and goes on serving.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode, startNetplumb, writeKeyPair } from '../helpers/daemon.js';

const TIMEOUT_MS = 120_000;

test('a client key that is not listed is refused with NP_NOT_AUTHORIZED and exit 255', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const stranger = writeKeyPair(np.dir, 'stranger');
  const flag = join(np.dir, 'ran');
  const result = await np.plumb(['touch', flag], { identity: stranger.privateFile });
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.NotAuthorized, result.stderr);
  assert.equal(result.stdout.length, 0);
  assert.equal(existsSync(flag), false, 'the command of a refused client must not run');
});

test('the daemon logs the fingerprint of the refused key', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const stranger = writeKeyPair(np.dir, 'stranger');
  const result = await np.plumb(['true'], { identity: stranger.privateFile });
  assert.equal(result.code, 255);
  const log = await np.daemon.waitForLog(new RegExp(escapeRegExp(stranger.fingerprint)));
  assert.ok(!authenticated(log, np.client.fingerprint), 'the authorized key did not connect yet');
});

test('an authorized client is served after refused ones', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const stranger = writeKeyPair(np.dir, 'stranger');
  for (let attempt = 0; attempt < 3; attempt++) {
    const refused = await np.plumb(['true'], { identity: stranger.privateFile });
    assert.equal(refused.code, 255);
    assert.equal(reportedCode(refused.stderr), ErrorCode.NotAuthorized);
  }
  const served = await np.plumb(['echo', 'served']);
  assert.equal(served.code, 0, served.stderr);
  assert.equal(served.stdout.toString(), 'served\n');
  assert.ok(np.daemon.running);
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Whether the daemon's log says this key authenticated (other lines, like the start-up warnings, name keys too). */
function authenticated(log: string, fingerprint: string): boolean {
  return log.split('\n').some((line) => line.includes('client authenticated') && line.includes(fingerprint));
}
