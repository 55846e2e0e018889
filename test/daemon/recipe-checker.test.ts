// Tests for daemon/recipe-checker.ts: the check on the worker gives checkRecipe()'s plan, or its refusal with the
// same code and rendered text; a check over its time budget is refused and the next one gets a new worker; checks
// beyond the waiting limit are refused at once; the check runs at a lower priority; an idle checker does not keep its
// process alive.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RecipeChecker } from '../../daemon/recipe-checker.js';
import { ConfigError, ErrorCode, NetplumbError, RecipeError } from '../../protocol/errors.js';
import { checkRecipe, type CheckOptions } from '../../recipes/check.js';

const TIMEOUT_MS = 60_000;
const EXAMPLES = fileURLToPath(new URL('../../../recipes/examples/', import.meta.url));
const CHECKER_MODULE = fileURLToPath(new URL('../../daemon/recipe-checker.js', import.meta.url));
const OPTIONS: CheckOptions = { sourceName: 'test.rcp', spoolDir: '/spool' };

/** What checkRecipe() throws for a text, or undefined when it passes. */
function refusalByCheckRecipe(text: string, options: CheckOptions): unknown {
  try {
    checkRecipe(text, options);
    return undefined;
  } catch (error) {
    return error;
  }
}

/** 64 KiB of one-letter words: parsed whole, then refused for maxArgsPerCommand. */
const WORDS_64_KIB = `echo${' a'.repeat(32_766)}`;

const BAD_RECIPES: readonly { what: string; text: string; options?: Partial<CheckOptions> }[] = [
  { what: 'a shell operator', text: 'echo a && echo b\n' },
  { what: 'an unknown label', text: 'log: cat >>backup.log &\ntar -cf - x 2>%lgo |\ngzip >x.tar.gz 2>%log\n' },
  { what: 'a control character', text: 'echo a\u001b\n' },
  { what: 'a recipe over maxRecipeBytes', text: `echo ${'é'.repeat(40_000)}\n` },
  { what: 'too many words, on a 64 KiB line', text: WORDS_64_KIB },
  { what: 'more commands than a small limit', text: 'true\ntrue\ntrue\n', options: { limits: { maxRecipeCommands: 2 } } },
];

describe('RecipeChecker', () => {
  test('gives the plan checkRecipe gives, for every example recipe', { timeout: TIMEOUT_MS }, async () => {
    const checker = new RecipeChecker();
    const names = readdirSync(EXAMPLES).filter((name) => name.endsWith('.rcp'));
    assert.ok(names.length > 0);
    for (const name of names) {
      const text = readFileSync(join(EXAMPLES, name), 'utf8');
      const options = { sourceName: name, spoolDir: '/spool' };
      assert.deepEqual(await checker.check(text, options), checkRecipe(text, options), name);
    }
  });

  test('refuses a bad recipe with the code, place and rendered text checkRecipe gives', { timeout: TIMEOUT_MS }, async () => {
    const checker = new RecipeChecker();
    for (const { what, text, options } of BAD_RECIPES) {
      const expected = refusalByCheckRecipe(text, { ...OPTIONS, ...options });
      assert.ok(expected instanceof RecipeError, what);
      await assert.rejects(checker.check(text, { ...OPTIONS, ...options }), (error: unknown) => {
        assert.ok(error instanceof RecipeError, `${what}: ${String(error)}`);
        assert.equal(error.code, expected.code, what);
        assert.deepEqual(error.location, expected.location, what);
        assert.equal(error.render(), expected.render(), what);
        return true;
      });
    }
  });

  test('refuses a relative spool directory with NP_CONFIG, as checkRecipe does', { timeout: TIMEOUT_MS }, async () => {
    const expected = refusalByCheckRecipe('echo a\n', { ...OPTIONS, spoolDir: 'spool' });
    assert.ok(expected instanceof ConfigError);
    await assert.rejects(new RecipeChecker().check('echo a\n', { ...OPTIONS, spoolDir: 'spool' }), (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(error.code, ErrorCode.Config);
      assert.equal(error.message, expected.message);
      return true;
    });
  });

  test('refuses a check over its time budget with NP_RECIPE_TOO_LARGE, and checks the next one on a new worker', { timeout: TIMEOUT_MS }, async () => {
    const budgetMs = 250;
    const checker = new RecipeChecker({ budgetMs });
    // 8 MiB of newlines, allowed by a raised size limit: seconds of parsing, far over the budget.
    const slow = `echo a${'\n'.repeat(8 * 1024 * 1024)}`;
    const started = performance.now();
    await assert.rejects(checker.check(slow, { ...OPTIONS, limits: { maxRecipeBytes: 16 * 1024 * 1024 } }), (error: unknown) => {
      assert.ok(error instanceof NetplumbError, String(error));
      assert.equal(error.code, ErrorCode.RecipeTooLarge);
      assert.match(error.message, /^test\.rcp: the recipe took longer than 250 ms to check/);
      return true;
    });
    // Refused when the budget ran out, not when the check would have ended.
    assert.ok(performance.now() - started < 10 * budgetMs + 5_000, `refused after ${Math.round(performance.now() - started)} ms`);
    assert.deepEqual(await checker.check('echo next\n', OPTIONS), checkRecipe('echo next\n', OPTIONS));
  });

  test('refuses a check beyond maxWaiting with NP_TOO_MANY_CONNECTIONS at once, and checks those waiting', { timeout: TIMEOUT_MS }, async () => {
    const checker = new RecipeChecker({ maxWaiting: 2 });
    // All three are asked before the new worker can take any: two wait, the third is one too many.
    const first = checker.check('echo 1\n', OPTIONS);
    const second = checker.check('echo 2\n', OPTIONS);
    await assert.rejects(checker.check('echo 3\n', OPTIONS), (error: unknown) => {
      assert.ok(error instanceof NetplumbError, String(error));
      assert.equal(error.code, ErrorCode.TooManyConnections);
      return true;
    });
    assert.deepEqual(await first, checkRecipe('echo 1\n', OPTIONS));
    assert.deepEqual(await second, checkRecipe('echo 2\n', OPTIONS));
    assert.deepEqual(await checker.check('echo 4\n', OPTIONS), checkRecipe('echo 4\n', OPTIONS));
  });

  test('checks on a thread of lower priority than the event loop', { timeout: TIMEOUT_MS, skip: process.platform !== 'linux' }, async () => {
    await new RecipeChecker().check('echo a\n', OPTIONS);
    const niceOf = (task: string): number => {
      const stat = readFileSync(`/proc/self/task/${task}/stat`, 'utf8');
      // Fields after the command name in parentheses, from the state (field 3); nice is field 19.
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
    };
    const nices = readdirSync('/proc/self/task').map(niceOf);
    assert.equal(niceOf(String(process.pid)), 0, 'the main thread keeps its priority');
    assert.ok(nices.includes(10), `no thread at nice 10: ${nices.join(' ')}`);
  });

  test('does not keep its process alive once the checks are done', { timeout: TIMEOUT_MS }, () => {
    const script = [
      `import { RecipeChecker } from ${JSON.stringify(CHECKER_MODULE)};`,
      'const plan = await new RecipeChecker().check("echo a\\n", { sourceName: "a.rcp", spoolDir: "/spool" });',
      'process.stdout.write(plan.stages[0].argv.join(" "));',
    ].join('\n');
    const file = join(mkdtempSync(join(tmpdir(), 'netplumb-checker-')), 'check-once.mjs');
    writeFileSync(file, script);
    const child = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 30_000 });
    rmSync(dirname(file), { recursive: true, force: true });
    assert.equal(child.error, undefined, 'the process did not end on its own');
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout, 'echo a');
  });
});
