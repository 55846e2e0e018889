// Tests for recipes/check: the plan a recipe gives (stages, redirections applied left to right, label pipes, fifos,
// paths resolved against the spool directory), every refusal with its code and location, the limits, binary
// garbage, and that the check is pure: it runs with no file system access at all.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ErrorCode, RecipeError, type RecipeErrorCode } from '../../protocol/errors.js';
import { checkRecipe, DEFAULT_SPOOL_DIR, type CheckOptions } from '../../recipes/check.js';
import { DEFAULT_RECIPE_LIMITS, resolveRecipeLimits } from '../../recipes/limits.js';
import { formatPlan, type RecipePlan } from '../../recipes/plan.js';

const here = dirname(fileURLToPath(import.meta.url));
const SPOOL = '/spool';

function check(text: string | Uint8Array, options: Partial<CheckOptions> = {}): RecipePlan {
  return checkRecipe(text, { sourceName: 't.rcp', spoolDir: SPOOL, ...options });
}

function refusal(text: string | Uint8Array, options: Partial<CheckOptions> = {}): RecipeError {
  try {
    check(text, options);
  } catch (error) {
    assert.ok(error instanceof RecipeError, `not a RecipeError: ${String(error)}`);
    return error;
  }
  assert.fail(`accepted: ${JSON.stringify(typeof text === 'string' ? text : Buffer.from(text).toString('latin1'))}`);
}

function assertRefused(text: string | Uint8Array, code: RecipeErrorCode, line: number, column: number, options: Partial<CheckOptions> = {}): RecipeError {
  const error = refusal(text, options);
  assert.equal(error.code, code, error.render());
  assert.deepEqual(error.location, { source: 't.rcp', line, column }, error.render());
  return error;
}

const invalid = (text: string, line: number, column: number): RecipeError => assertRefused(text, ErrorCode.RecipeInvalid, line, column);

describe('checkRecipe: the plan', () => {
  test('gives each command a stage with argv, default streams and its name', () => {
    const plan = check('echo hello\n\nlog: cat &');
    assert.deepEqual(plan.stages, [
      {
        index: 0,
        name: 'line 1',
        location: { source: 't.rcp', line: 1, column: 1 },
        argv: ['echo', 'hello'],
        stdin: { kind: 'null' },
        stdout: { kind: 'plumb-stdout' },
        stderr: { kind: 'plumb-stderr' },
        background: false,
      },
      {
        index: 1,
        name: 'log',
        label: 'log',
        location: { source: 't.rcp', line: 3, column: 1 },
        argv: ['cat'],
        stdin: { kind: 'null' },
        stdout: { kind: 'plumb-stdout' },
        stderr: { kind: 'plumb-stderr' },
        background: true,
      },
    ]);
    assert.deepEqual(plan.fifos, []);
    assert.deepEqual(plan.labels, []);
    assert.equal(plan.readsPlumbStdin, false);
    assert.equal(plan.source, 't.rcp');
    assert.equal(plan.spoolDir, SPOOL);
  });

  test('joins a line ending in | to the next command, skipping comments and declarations', () => {
    const plan = check('fifo p\nprintf x |\n# between\n\ntr x y >@p &\ncat <@p');
    assert.deepEqual(plan.stages[0]?.stdout, { kind: 'pipe', toStage: 1 });
    assert.deepEqual(plan.stages[1]?.stdin, { kind: 'pipe', fromStage: 0 });
    assert.equal(plan.stages[0]?.background, true);
  });

  test('lists label pipes with their reader and writers, each writer once', () => {
    const plan = check('log: cat &\na 2>%log &\nb >%log 2>&1 &\nup: tr a-z A-Z &\nc >%up 2>%log');
    assert.deepEqual(plan.labels, [
      { label: 'log', readerStage: 0, writerStages: [1, 2, 4] },
      { label: 'up', readerStage: 3, writerStages: [4] },
    ]);
    assert.deepEqual(plan.stages[0]?.stdin, { kind: 'label', label: 'log' });
    assert.deepEqual(plan.stages[2]?.stdout, { kind: 'label', label: 'log' });
    assert.deepEqual(plan.stages[4]?.stderr, { kind: 'label', label: 'log' });
  });

  test('lets a labelled command nobody writes into read /dev/null', () => {
    const plan = check('quiet: cat');
    assert.deepEqual(plan.stages[0]?.stdin, { kind: 'null' });
    assert.deepEqual(plan.labels, []);
  });

  test('lists declared fifos with their paths in the spool directory and their declarations', () => {
    const plan = check('echo a >@one &\nfifo one two\ncat <@one\necho b 2>@two &\ncat <@two');
    assert.deepEqual(plan.fifos, [
      { name: 'one', path: '/spool/one', location: { source: 't.rcp', line: 2, column: 6 } },
      { name: 'two', path: '/spool/two', location: { source: 't.rcp', line: 2, column: 10 } },
    ]);
    assert.deepEqual(plan.stages[0]?.stdout, { kind: 'fifo', name: 'one', path: '/spool/one' });
    assert.deepEqual(plan.stages[1]?.stdin, { kind: 'fifo', name: 'one', path: '/spool/one' });
    assert.deepEqual(plan.stages[2]?.stderr, { kind: 'fifo', name: 'two', path: '/spool/two' });
  });

  test('marks the one command that reads plumb stdin', () => {
    const plan = check('tr a-z A-Z <%stdin');
    assert.deepEqual(plan.stages[0]?.stdin, { kind: 'plumb-stdin' });
    assert.equal(plan.readsPlumbStdin, true);
  });

  test('places a labelled stage at its label, also on a continued line', () => {
    const plan = check('echo a \\\n  b\n   x: cat');
    assert.deepEqual(plan.stages[0]?.argv, ['echo', 'a', 'b']);
    assert.deepEqual(plan.stages[1]?.location, { source: 't.rcp', line: 3, column: 4 });
  });
});

describe('checkRecipe: redirections apply left to right', () => {
  test('>f 2>&1 sends both streams to f, as one shared target', () => {
    const [stage] = check('cmd >f 2>&1').stages;
    assert.deepEqual(stage?.stdout, { kind: 'file', path: '/spool/f', append: false });
    assert.deepEqual(stage?.stderr, stage?.stdout);
  });

  test('2>&1 >f sends stderr to the original stdout and stdout to f', () => {
    const [stage] = check('cmd 2>&1 >f').stages;
    assert.deepEqual(stage?.stdout, { kind: 'file', path: '/spool/f', append: false });
    assert.deepEqual(stage?.stderr, { kind: 'plumb-stdout' });
  });

  test('2>&1 | sends both streams into the pipe', () => {
    const [stage] = check('cmd 2>&1 |\ncat').stages;
    assert.deepEqual(stage?.stdout, { kind: 'pipe', toStage: 1 });
    assert.deepEqual(stage?.stderr, { kind: 'pipe', toStage: 1 });
  });

  test('2>&1 >/dev/null | pipes stderr only', () => {
    const [stage] = check('cmd 2>&1 >/dev/null |\ncat').stages;
    assert.deepEqual(stage?.stdout, { kind: 'file', path: '/dev/null', append: false });
    assert.deepEqual(stage?.stderr, { kind: 'pipe', toStage: 1 });
  });

  test('>&2 sends stdout where stderr goes at that point', () => {
    assert.deepEqual(check('cmd >&2').stages[0]?.stdout, { kind: 'plumb-stderr' });
    const [stage] = check('cmd 2>>err.log >&2').stages;
    assert.deepEqual(stage?.stdout, { kind: 'file', path: '/spool/err.log', append: true });
    assert.deepEqual(stage?.stdout, stage?.stderr);
  });

  test('2>&1 into a label makes one writer of both streams', () => {
    const plan = check('r: cat &\ncmd >%r 2>&1');
    assert.deepEqual(plan.stages[1]?.stderr, { kind: 'label', label: 'r' });
    assert.deepEqual(plan.labels, [{ label: 'r', readerStage: 0, writerStages: [1] }]);
  });
});

describe('checkRecipe: file names', () => {
  test('resolves plain names and relative paths in the spool directory', () => {
    const [stage] = check('cmd <in.txt >sub/dir/out.txt 2>>./logs//err.log').stages;
    assert.deepEqual(stage?.stdin, { kind: 'file', path: '/spool/in.txt' });
    assert.deepEqual(stage?.stdout, { kind: 'file', path: '/spool/sub/dir/out.txt', append: false });
    assert.deepEqual(stage?.stderr, { kind: 'file', path: '/spool/logs/err.log', append: true });
  });

  test('keeps absolute paths as written', () => {
    const [stage] = check('cmd </etc/hostname >/tmp/../tmp/x').stages;
    assert.deepEqual(stage?.stdin, { kind: 'file', path: '/etc/hostname' });
    assert.deepEqual(stage?.stdout, { kind: 'file', path: '/tmp/../tmp/x', append: false });
  });

  test('uses the spool directory given, normalised, and the default one otherwise', () => {
    assert.deepEqual(check('cmd >f', { spoolDir: '/var//spool/' }).stages[0]?.stdout, { kind: 'file', path: '/var/spool/f', append: false });
    const plan = checkRecipe('cmd >f', { sourceName: 'd.rcp' });
    assert.equal(plan.spoolDir, DEFAULT_SPOOL_DIR);
    assert.deepEqual(plan.stages[0]?.stdout, { kind: 'file', path: `${DEFAULT_SPOOL_DIR}/f`, append: false });
  });

  test('refuses a relative name with a .. component', () => {
    invalid('cmd >../etc/passwd', 1, 6);
    invalid('cmd <a/../../b', 1, 6);
    invalid('cmd 2> x/..', 1, 8);
  });

  test('refuses an empty name, a directory name and the spool directory itself', () => {
    invalid("cmd >''", 1, 6);
    invalid('cmd >logs/', 1, 6);
    invalid('cmd >/', 1, 6);
    invalid('cmd >.', 1, 6);
  });

  test('refuses a plain file name that is a declared fifo', () => {
    invalid('fifo p\necho >@p &\ncat <p', 3, 6);
    invalid('fifo p\necho >/spool/p &\ncat <@p', 2, 7);
  });

  test('refuses a command that truncates the file it reads', () => {
    invalid('sort <data >data', 1, 6);
  });

  test('accepts a command that appends to the file it reads', () => {
    assert.equal(check('cat <data >>data').stages.length, 1);
  });

  test('refuses a relative spool directory with NP_CONFIG', () => {
    assert.throws(() => check('cmd', { spoolDir: 'spool' }), (error: unknown) => (error as { code?: unknown }).code === ErrorCode.Config);
  });
});

describe('checkRecipe: refusals', () => {
  test('refuses an empty recipe', () => {
    invalid('', 1, 1);
    invalid('# only a comment\n\n', 1, 1);
  });

  test('refuses redirections without a program and an empty program name', () => {
    invalid('echo\n  >out.txt', 2, 3);
    invalid("'' arg", 1, 1);
  });

  test('refuses a redirection to a label that does not exist', () => {
    invalid('echo a >%nobody', 1, 9);
  });

  test('refuses a duplicate label', () => {
    invalid('a: cat &\nb: cat &\na: cat', 3, 1);
  });

  test('refuses a reserved label', () => {
    invalid('stdin: cat', 1, 1);
    invalid('stderr: cat', 1, 1);
  });

  test('refuses a command writing into its own label', () => {
    invalid('self: cat 2>%self', 1, 13);
  });

  test('refuses <%label other than <%stdin, and writing into %stdin', () => {
    invalid('a: cat &\ncat <%a', 2, 6);
    invalid('echo >%stdin', 1, 7);
  });

  test('refuses a second reader of plumb stdin', () => {
    invalid('cat <%stdin &\ncat <%stdin', 2, 6);
  });

  test('refuses >> into a label or a fifo', () => {
    invalid('r: cat &\necho >>%r', 2, 6);
    invalid('fifo p\necho 2>>@p &\ncat <@p', 2, 6);
  });

  test('refuses a stream redirected twice in one command', () => {
    invalid('cmd >a >b', 1, 8);
    invalid('cmd 2>&1 2>e', 1, 10);
    invalid('cmd <a <b', 1, 8);
  });

  test('refuses a last command ending in |', () => {
    invalid('echo a |\n# nothing follows', 1, 8);
  });

  test('refuses a line ending in | that sends nothing into the pipe', () => {
    invalid('cmd >f |\ncat', 1, 8);
  });

  test('refuses two sources for one stdin', () => {
    invalid('echo a |\ncat <f', 2, 5);
    invalid('echo a |\nr: cat\necho b >%r', 3, 8);
    invalid('r: cat <%stdin &\necho b >%r', 1, 8);
  });

  test('refuses a foreground writer whose label reader only starts after it, and says to add &', () => {
    const error = invalid('echo hi >%r\nr: cat', 1, 9);
    assert.match(error.reason, /add &/);
  });

  test('refuses a foreground label reader whose writer only starts after it', () => {
    const error = invalid('r: cat\necho hi >%r &', 1, 1);
    assert.match(error.reason, /add &/);
  });

  test('refuses a foreground reader of a label if any of its writers comes later', () => {
    invalid('echo a >%r &\nr: cat\necho b >%r', 2, 1);
  });

  test('accepts writers in the background before their reader, and writers after a background reader', () => {
    const plan = check('echo a >%r &\nr: cat &\necho b >%r\nsleep 0');
    assert.deepEqual(plan.labels, [{ label: 'r', readerStage: 1, writerStages: [0, 2] }]);
  });

  test('refuses a foreground fifo writer whose reader comes later, and a foreground reader whose writer does', () => {
    invalid('fifo p\necho >@p\ncat <@p', 2, 6);
    invalid('fifo p\ncat <@p\necho >@p', 2, 5);
  });

  test('accepts a fifo whose first end is opened in the background or before a |', () => {
    assert.equal(check('fifo p\ncat <@p &\necho >@p').fifos.length, 1);
    assert.equal(check('fifo p\necho a 2>@p |\ncat\ncat <@p').fifos.length, 1);
  });

  test('refuses an undeclared fifo and a fifo declared twice', () => {
    invalid('echo >@p &\ncat <@p', 1, 7);
    invalid('fifo p\nfifo q p\necho >@p &\ncat <@p', 2, 8);
  });

  test('refuses an unused fifo, and one without reader or without writer', () => {
    invalid('fifo p\necho', 1, 6);
    invalid('fifo p\necho >@p &', 1, 6);
    invalid('fifo p\ncat <@p &', 1, 6);
  });

  test('refuses a fifo with two readers or two writers', () => {
    invalid('fifo p\necho >@p &\ncat <@p &\ncat <@p', 4, 5);
    invalid('fifo p\ncat <@p &\necho a >@p &\necho b 2>@p', 4, 8);
  });

  test('counts a command writing both streams into one fifo as one writer', () => {
    const plan = check('fifo p\ncmd >@p 2>&1 &\ncat <@p');
    assert.deepEqual(plan.stages[0]?.stderr, { kind: 'fifo', name: 'p', path: '/spool/p' });
  });

  test('refuses a command that reads and writes the same fifo', () => {
    invalid('fifo p\ncat <@p >@p', 2, 5);
  });

  test('renders a refusal with the line and a caret', () => {
    const error = invalid('log: cat &\n  tar -cf - /etc 2>%lgo |\ngzip', 2, 20);
    assert.equal(error.render(), 't.rcp:2:20: no command is labelled lgo\n  tar -cf - /etc 2>%lgo |\n                   ^');
  });
});

describe('checkRecipe: limits', () => {
  test('refuses a recipe over maxRecipeBytes, at the first byte past the limit', () => {
    assertRefused('echo a\necho bb\n', ErrorCode.RecipeTooLarge, 2, 3, { limits: { maxRecipeBytes: 9 } });
    assertRefused(Buffer.from('echo a\necho é\n'), ErrorCode.RecipeTooLarge, 2, 6, { limits: { maxRecipeBytes: 12 } });
  });

  test('accepts a recipe of exactly maxRecipeBytes', () => {
    assert.equal(check('echo é', { limits: { maxRecipeBytes: 7 } }).stages.length, 1);
  });

  test('refuses more than maxRecipeCommands commands, at the first one too many', () => {
    assertRefused('a\n# b\nfifo x\nc\nd', ErrorCode.RecipeTooLarge, 5, 1, { limits: { maxRecipeCommands: 2 } });
  });

  test('refuses more than maxArgsPerCommand words', () => {
    assertRefused('echo a >f b c', ErrorCode.RecipeTooLarge, 1, 13, { limits: { maxArgsPerCommand: 3 } });
  });

  test('refuses a word or file name over maxArgBytes', () => {
    assertRefused('echo abcd abcde', ErrorCode.RecipeTooLarge, 1, 11, { limits: { maxArgBytes: 4 } });
    assertRefused('echo >abcde', ErrorCode.RecipeTooLarge, 1, 7, { limits: { maxArgBytes: 4 } });
  });

  test('refuses a resolved path over maxPathBytes', () => {
    assertRefused('echo >abcd', ErrorCode.RecipeTooLarge, 1, 7, { limits: { maxPathBytes: 10 } });
    assertRefused('fifo abcdef\necho >@abcdef &\ncat <@abcdef', ErrorCode.RecipeTooLarge, 1, 6, { limits: { maxPathBytes: 10 } });
  });

  test('refuses a label or fifo name over maxNameBytes', () => {
    assertRefused('abcde: cat', ErrorCode.RecipeTooLarge, 1, 1, { limits: { maxNameBytes: 4 } });
    assertRefused('fifo abcde\necho', ErrorCode.RecipeTooLarge, 1, 6, { limits: { maxNameBytes: 4 } });
  });

  test('refuses more than maxFifos named pipes', () => {
    assertRefused('fifo a b\nfifo c\necho', ErrorCode.RecipeTooLarge, 2, 6, { limits: { maxFifos: 2 } });
  });

  test('refuses a limit that is not a positive integer with NP_CONFIG', () => {
    for (const value of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => resolveRecipeLimits({ maxRecipeBytes: value }), (error: unknown) => (error as { code?: unknown }).code === ErrorCode.Config);
    }
    assert.deepEqual(resolveRecipeLimits(), DEFAULT_RECIPE_LIMITS);
  });
});

describe('checkRecipe: binary garbage', () => {
  test('refuses a NUL byte at its place', () => {
    assertRefused('echo a\necho b\u0000c', ErrorCode.RecipeSyntax, 2, 7);
  });

  test('refuses control characters other than tab, newline and CR, also inside quotes', () => {
    assertRefused("echo '\u001b[31m'", ErrorCode.RecipeSyntax, 1, 7);
    assertRefused('echo \u007f', ErrorCode.RecipeSyntax, 1, 6);
    assertRefused('echo \u0085', ErrorCode.RecipeSyntax, 1, 6);
    assertRefused('echo\u000ca', ErrorCode.RecipeSyntax, 1, 5);
  });

  test('accepts tab, CR and non-ASCII text', () => {
    assert.deepEqual(check('echo\tnaïve 😀\r\n').stages[0]?.argv, ['echo', 'naïve', '😀']);
  });

  test('refuses a byte order mark', () => {
    assertRefused(Buffer.from('\ufeffecho a'), ErrorCode.RecipeSyntax, 1, 1);
  });

  test('refuses bytes that are not UTF-8, at the first bad byte', () => {
    const cases: [number[], number, number][] = [
      [[0x80], 1, 6], // lone continuation byte
      [[0xc0, 0x80], 1, 6], // overlong NUL
      [[0xed, 0xa0, 0x80], 1, 6], // UTF-16 surrogate
      [[0xf5, 0x80, 0x80, 0x80], 1, 6], // beyond U+10FFFF
      [[0xe2, 0x82], 1, 6], // truncated at the end
      [[0xff], 1, 6],
    ];
    for (const [bytes, line, column] of cases) {
      assertRefused(Buffer.concat([Buffer.from('echo '), Buffer.from(bytes)]), ErrorCode.RecipeSyntax, line, column);
    }
    assertRefused(Buffer.concat([Buffer.from('echo é\n\techo '), Buffer.from([0xc3, 0x28])]), ErrorCode.RecipeSyntax, 2, 7);
  });

  test('refuses an unpaired surrogate in text given as a string', () => {
    assertRefused('echo \ud800x', ErrorCode.RecipeSyntax, 1, 6);
  });

  test('shows control characters of the offending line as U+FFFD when rendering', () => {
    const error = refusal('echo \u001b');
    assert.equal(error.render().split('\n')[1], 'echo \ufffd');
  });
});

describe('checkRecipe is pure', () => {
  test('gives the same plan twice and for the same text as bytes', () => {
    const text = 'fifo p\nlog: cat >>x.log &\necho a >@p 2>%log &\ncat <@p 2>%log';
    assert.deepEqual(check(text), check(text));
    assert.deepEqual(check(Buffer.from(text)), check(text));
  });

  test('creates nothing in the spool directory', () => {
    const spool = mkdtempSync(join(tmpdir(), 'np-check-'));
    try {
      checkRecipe('fifo p\nlog: cat >>x.log &\necho a >@p 2>%log &\ncat <@p >out 2>%log', { sourceName: 't.rcp', spoolDir: spool });
      assert.deepEqual(readdirSync(spool), []);
    } finally {
      rmSync(spool, { recursive: true, force: true });
    }
  });

  test('runs without any file system access beyond loading its code', () => {
    // Node's permission model refuses every file access the flags do not grant: a check that looked at the spool
    // directory, a file or a fifo would fail with ERR_ACCESS_DENIED.
    const build = join(here, '../..');
    const script = `
      const { checkRecipe } = await import(${JSON.stringify(join(build, 'recipes/check.js'))});
      const { formatPlan } = await import(${JSON.stringify(join(build, 'recipes/plan.js'))});
      const plan = checkRecipe(process.argv[1], { sourceName: 't.rcp', spoolDir: '/tmp/np-spool-never-made' });
      process.stdout.write(formatPlan(plan));`;
    const text = 'fifo p\nlog: cat >>x.log &\necho a >@p 2>%log &\ncat <@p >/etc/np-never 2>%log';
    const result = spawnSync(process.execPath, ['--experimental-permission', `--allow-fs-read=${build}/*`, '--input-type=module', '-e', script, text], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, formatPlan(checkRecipe(text, { sourceName: 't.rcp', spoolDir: '/tmp/np-spool-never-made' })));
  });
});

describe('formatPlan', () => {
  test('shows what is created, who feeds whom, and what waits', () => {
    const text = formatPlan(check('fifo p\nlog: cat >>x.log &\necho "a b" >@p 2>%log &\ncat <@p 2>%log |\nwc -c'));
    assert.match(text, /^recipe t\.rcp: 4 commands$/m);
    assert.match(text, /^ {2}\/spool\/p$/m);
    assert.match(text, /^ {2}\/spool\/x\.log$/m);
    assert.match(text, /%log: line 3, line 4 -> log/);
    assert.match(text, /\[1\] line 3 \(3:1, next starts at once\): echo "a b"/);
    assert.match(text, /stdout -> fifo \/spool\/p/);
    assert.match(text, /stdin {2}<- pipe from line 4/);
    assert.match(text, /\[3\] line 5 \(5:1, next waits for it to end\): wc -c/);
    assert.ok(text.endsWith('\n'));
  });
});
