// Tests for daemon/start-policy: what a Start (or a binding to mint a key for) is refused for before anything runs,
// and what a request the policy lets through is readied with. Run as the test's own account, without a gluepot.

import assert from 'node:assert/strict';
import { userInfo } from 'node:os';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { NO_ENDPOINTS, type ExecRequest, type KeyBinding, type RecipeRequest } from '../../protocol/session.js';
import { StartKind } from '../../protocol/wire.js';
import { checkRequest, prepareStart, type StartGrant } from '../../daemon/start-policy.js';

const OWN = userInfo().username;

function grant(extra: Partial<StartGrant> = {}): StartGrant {
  return { spoolDir: '/tmp/netplumb-policy-test', acceptEnv: ['LC_*'], accounts: { allowed: undefined, configured: OWN }, ...extra };
}

function command(extra: Partial<ExecRequest> = {}): ExecRequest {
  return { kind: StartKind.Exec, argv: ['true'], env: [], endpoints: NO_ENDPOINTS, stdin: 1, stdout: 3, stderr: 5, ...extra };
}

test('refuses an exported variable accept-env does not list, at once', () => {
  assert.throws(() => checkRequest(command({ env: [['SECRET', 'x']] }), grant()), { code: ErrorCode.EnvRefused });
});

test('refuses a command a one-time key is not bound to', async () => {
  const binding: KeyBinding = { kind: StartKind.Exec, argv: ['date'], endpoints: NO_ENDPOINTS };
  await assert.rejects(prepareStart(command(), grant({ binding }), 'start'), { code: ErrorCode.NotPermitted });
});

test('refuses an account the client\'s line does not allow', async () => {
  await assert.rejects(prepareStart(command({ user: 'np-no-such-user' }), grant(), 'start'), { code: ErrorCode.NotPermitted });
});

test('readies a command as the daemon\'s account with its spool in the environment and nothing resolved without a gluepot', async () => {
  const prepared = await prepareStart(command({ env: [['LC_TEST', 'yes']] }), grant(), 'start');
  assert.equal(prepared.identity.runAs.account.name, OWN);
  assert.equal(prepared.env['NETPLUMB_SPOOL'], '/tmp/netplumb-policy-test');
  assert.equal(prepared.env['LC_TEST'], 'yes');
  assert.equal(prepared.plan, undefined);
  assert.equal(prepared.programs, undefined);
});

test('mints for a binding as a Start of it would run, without a one-time key\'s binding to match', async () => {
  const binding: KeyBinding = { kind: StartKind.Exec, argv: ['date'], endpoints: NO_ENDPOINTS };
  const other: KeyBinding = { kind: StartKind.Exec, argv: ['true'], endpoints: NO_ENDPOINTS };
  const prepared = await prepareStart(binding, grant({ binding: other }), 'mint');
  assert.equal(prepared.identity.runAs.account.name, OWN);
});

test('refuses a request whose connection has gone', async () => {
  await assert.rejects(prepareStart(command(), grant(), 'start', () => true), { code: ErrorCode.BadRequest });
});

test('refuses a recipe that places a command on a machine, since one Start runs every command here', async () => {
  const request: RecipeRequest = { kind: StartKind.Recipe, text: 'echo a |\n@db1 cat\n', source: 'placed.rcp', env: [], endpoints: NO_ENDPOINTS, stdin: 1, stdout: 3, stderr: 5 };
  await assert.rejects(prepareStart(request, grant(), 'start'), (error: Error & { code?: string }) => {
    assert.equal(error.code, ErrorCode.BadRequest);
    assert.match(error.message, /the command on line 2 is placed on @db1/);
    return true;
  });
});
