// The daemon's start policy on its own: what a Start (or a key's minting) is checked against before anything is
// made, and what an accepted one carries to its runner. Real accounts, a real recipe check and real gluepots.

import assert from 'node:assert/strict';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { daemonAccount } from '../../daemon/accounts.js';
import { parseGluepot } from '../../daemon/gluepots.js';
import { checkRequest, prepareStart, type StartGrant } from '../../daemon/start-policy.js';
import { ErrorCode } from '../../protocol/errors.js';
import { NO_ENDPOINTS, type ExecRequest, type RecipeRequest } from '../../protocol/session.js';
import { StartKind } from '../../protocol/wire.js';

function grant(t: TestContext, extra: Partial<StartGrant> = {}): StartGrant {
  const spoolDir = mkdtempSync(join(tmpdir(), 'netplumb-policy-'));
  t.after(() => rmSync(spoolDir, { recursive: true, force: true }));
  return { spoolDir, acceptEnv: ['LC_*'], accounts: { allowed: undefined, configured: daemonAccount().name }, ...extra };
}

const command = (argv: string[], extra: Partial<ExecRequest> = {}): ExecRequest => ({ kind: StartKind.Exec, argv, env: [], endpoints: NO_ENDPOINTS, stdin: 1, stdout: 3, stderr: 5, ...extra });
const recipe = (text: string, extra: Partial<RecipeRequest> = {}): RecipeRequest => ({ kind: StartKind.Recipe, text, source: 'test.rcp', env: [], endpoints: NO_ENDPOINTS, stdin: 1, stdout: 3, stderr: 5, ...extra });
const never = (): boolean => false;

test('an accepted command runs as the configured account, from its spool, with NETPLUMB_SPOOL and the accepted exports', async (t) => {
  const policy = grant(t);
  const prepared = await prepareStart(command(['true'], { env: [['LC_ALL', 'C']] }), policy, never);
  assert.equal(prepared.identity.runAs.account.name, daemonAccount().name);
  assert.equal(prepared.identity.spoolDir, policy.spoolDir);
  assert.equal(prepared.env['NETPLUMB_SPOOL'], policy.spoolDir);
  assert.equal(prepared.env['LC_ALL'], 'C');
  assert.equal(prepared.plan, undefined);
  assert.equal(prepared.programs, undefined, 'no gluepot: the program is found when it starts');
});

test('an exported variable outside accept-env is refused with NP_ENV_REFUSED', (t) => {
  assert.throws(() => checkRequest(command(['true'], { env: [['PATH', '/tmp']] }), grant(t)), { code: ErrorCode.EnvRefused });
});

test('an account the client line does not allow is refused with NP_NOT_PERMITTED', async (t) => {
  await assert.rejects(prepareStart(command(['true'], { user: 'nobody-such' }), grant(t), never), { code: ErrorCode.NotPermitted });
});

test("a recipe is checked by the daemon itself, and its plan comes with the accepted Start", async (t) => {
  const prepared = await prepareStart(recipe('echo a |\ntr a b\n'), grant(t), never);
  assert.equal(prepared.plan?.stages.length, 2);
  await assert.rejects(prepareStart(recipe('echo a |\n'), grant(t), never), (error: { code?: string }) => error.code?.startsWith('NP_RECIPE_') === true);
});

test('a named pipe the recipe declares cannot also be replicated', async (t) => {
  const fifos = recipe('fifo numbers\nseq 1 5 >@numbers &\npaste -s -d + <@numbers\n', { endpoints: { ...NO_ENDPOINTS, outFifos: ['numbers'] } });
  await assert.rejects(prepareStart(fifos, grant(t), never), { code: ErrorCode.Endpoint });
});

test('with a gluepot, a listed program is resolved for the runner and an unlisted one is refused', async (t) => {
  const gluepot = parseGluepot('/bin/true\n', 'backup', 'test');
  const prepared = await prepareStart(command(['true']), grant(t, { gluepot }), never);
  assert.deepEqual(prepared.programs, [realpathSync('/bin/true')]);
  await assert.rejects(prepareStart(command(['false']), grant(t, { gluepot }), never), { code: ErrorCode.NotPermitted });
});

test('a preparation the session gave up on stops at its next step', async (t) => {
  await assert.rejects(prepareStart(command(['true']), grant(t), () => true), { code: ErrorCode.BadRequest });
});
