// Tests for plumb's commands as main hands the command line to them: -check, a command, a recipe with -json and
// -mint-key, through the real plumb binary and a real netplumbd on 127.0.0.1, plus the exit status of a failure.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { checkCommand, loadRecipe } from '../../plumb-cli/check-command.js';
import {
  EXIT_COMMAND_NOT_EXECUTABLE,
  EXIT_COMMAND_NOT_FOUND,
  EXIT_PLUMB_FAILURE,
  EXIT_RECIPE_REFUSED,
  failureExitStatus,
} from '../../plumb-cli/exit-status.js';
import {
  CommandNotExecutableError,
  CommandNotFoundError,
  ErrorCode,
  NetplumbError,
  RecipeInvalidError,
  UsageError,
} from '../../protocol/errors.js';
import { DEFAULT_SPOOL_DIR } from '../../recipes/check.js';
import { formatPlan } from '../../recipes/plan.js';
import { BIN, rewriteClients, startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { runProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';

const TIMEOUT_MS = 60_000;
const scope = { after };
const work = tempDir(scope, 'netplumb-commands-');

const recipeFile = join(work, 'hello.rcp');
writeFileSync(recipeFile, 'echo hello from the recipe\n');

function collected(stream: PassThrough): string {
  return stream.read()?.toString() ?? '';
}

describe('-check', () => {
  test('checkCommand prints the plan of a recipe that passes and returns 0', () => {
    const output = new PassThrough();
    assert.equal(checkCommand(recipeFile, DEFAULT_SPOOL_DIR, output), 0);
    assert.equal(collected(output), formatPlan(loadRecipe(recipeFile, DEFAULT_SPOOL_DIR).plan));
  });

  test('a recipe file that cannot be read is a usage error', () => {
    assert.throws(() => loadRecipe(join(work, 'missing.rcp'), DEFAULT_SPOOL_DIR), (error: unknown) => (error as NetplumbError).code === ErrorCode.Usage);
  });

  test('plumb -check prints the same plan without a machine', { timeout: TIMEOUT_MS }, async (t) => {
    const result = await runProcess(t, [process.execPath, BIN.plumb, '-check', `-recipe=${recipeFile}`]);
    assert.equal(result.code, 0, result.stderr);
    // The same plan, its spool line saying the spool was assumed.
    const [spoolLine] = /^spool directory: .*$/m.exec(result.stdout.toString()) ?? [''];
    assert.match(spoolLine, /^spool directory: \S+ \(assumed: /);
    assert.equal(result.stdout.toString().replace(/^(spool directory: \S+) \(.*\)$/m, '$1'), formatPlan(loadRecipe(recipeFile, DEFAULT_SPOOL_DIR).plan));
  });

  test('plumb -check of a refused recipe exits with the recipe-refused status', { timeout: TIMEOUT_MS }, async (t) => {
    const broken = join(tempDir(t), 'broken.rcp');
    writeFileSync(broken, 'echo "unterminated\n');
    const result = await runProcess(t, [process.execPath, BIN.plumb, '-check', `-recipe=${broken}`]);
    assert.equal(result.code, EXIT_RECIPE_REFUSED);
    assert.equal(result.stdout.length, 0);
  });
});

describe('exit status of a failure', () => {
  test('a recipe the daemon refused ends with the recipe-refused status', () => {
    assert.equal(failureExitStatus(new RecipeInvalidError('refused')), EXIT_RECIPE_REFUSED);
  });

  test('a command the machine cannot find ends with 127', () => {
    assert.equal(failureExitStatus(new CommandNotFoundError('missing')), EXIT_COMMAND_NOT_FOUND);
  });

  test('a command the machine cannot execute ends with 126', () => {
    assert.equal(failureExitStatus(new CommandNotExecutableError('not executable')), EXIT_COMMAND_NOT_EXECUTABLE);
  });

  test('any other failure ends with 255', () => {
    assert.equal(failureExitStatus(new UsageError('bad')), EXIT_PLUMB_FAILURE);
  });
});

describe('commands on a machine', () => {
  let np: Netplumb;
  before(async () => {
    np = await startNetplumb(scope, { daemonArgs: [`-one-time-keys=${join(work, 'store')}`] });
  });

  test('a command runs on the machine and plumb ends with its exit status', { timeout: TIMEOUT_MS }, async () => {
    const result = await np.plumb(['sh', '-c', 'echo ran there; exit 3']);
    assert.equal(result.code, 3, result.stderr);
    assert.equal(result.stdout.toString(), 'ran there\n');
  });

  test('a recipe runs on the machine and -json writes its report into a file', { timeout: TIMEOUT_MS }, async () => {
    const report = join(work, 'report.json');
    const result = await np.plumb([], { options: [`-recipe=${recipeFile}`, `-json=${report}`] });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'hello from the recipe\n');
    const json = JSON.parse(readFileSync(report, 'utf8')) as { recipe: string; exitStatus: number | null; stages: { outcome: string }[] };
    assert.equal(json.recipe, recipeFile);
    assert.equal(json.exitStatus, 0);
    assert.deepEqual(json.stages.map((stage) => stage.outcome), ['ended']);
  });

  test('-mint-key writes a key file and runs nothing; the key then runs the command once', { timeout: TIMEOUT_MS }, async () => {
    await rewriteClients(np.daemon, np.clientsFile, `controller ${np.client.publicLine}\n`);
    const keyFile = join(work, 'node.key');
    const marker = join(work, 'minted-ran');
    const minted = await np.plumb(['sh', '-c', `echo ran >> ${marker}`], { options: [`-mint-key=${keyFile}`] });
    assert.equal(minted.code, 0, minted.stderr);
    assert.match(minted.stderr, /one-time key SHA256:\S+ for .* written to /);
    assert.ok(existsSync(keyFile));
    assert.equal(existsSync(marker), false, 'minting runs nothing');
    const node = await runProcess(scope, [process.execPath, BIN.plumb, `-one-time-key=${keyFile}`, np.daemon.address, 'sh', '-c', `echo ran >> ${marker}`], {
      env: { ...process.env, NETPLUMB_HOME: tempDir(scope) },
    });
    assert.equal(node.code, 0, node.stderr);
    assert.equal(readFileSync(marker, 'utf8'), 'ran\n');
  });
});
