// The man pages against the programs: each page renders with groff without a warning, documents every option
// the built binary's --help lists, and together they (and PROTOCOL.md) name every error code and default.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADMISSION_SETTINGS, DEFAULT_CONFIG, LIMIT_SETTINGS, SETTING_NAMES } from '../../daemon/config.js';
import { ErrorCode } from '../../protocol/errors.js';
import { DEFAULT_LIMITS, DEFAULT_PORT } from '../../protocol/wire.js';
import { DEFAULT_RECIPE_LIMITS, RECIPE_LIMIT_NAMES } from '../../recipes/limits.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../../..');
const GROFF = '/usr/bin/groff';
if (!existsSync(GROFF)) {
  throw new Error(`${GROFF} is missing: install groff (apt-get install groff; .ci/run does this)`);
}

interface Program {
  name: string;
  page: string;
  binary: string;
}

const PROGRAMS: readonly Program[] = [
  { name: 'plumb', page: join(root, 'man/plumb.1'), binary: join(here, '../../plumb.mjs') },
  { name: 'netplumbd', page: join(root, 'man/netplumbd.8'), binary: join(here, '../../daemon/main.js') },
  { name: 'netplumb-keygen', page: join(root, 'man/netplumb-keygen.1'), binary: join(here, '../../plumb-cli/keygen-main.js') },
];
const PROTOCOL_SPEC = join(root, 'protocol/PROTOCOL.md');
const RECIPE_PAGE = join(root, 'man/netplumb-recipe.5');

function run(command: string, args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 30_000 });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const rendered = new Map<string, string>();

/**
 * The page as plain text: wide lines so that option names are not broken, no bold or underline overstrikes,
 * and every kind of dash as an ASCII hyphen-minus, so that `-name` matches however groff chose to print it.
 */
function renderedText(page: string): string {
  const cached = rendered.get(page);
  if (cached !== undefined) return cached;
  const result = run(GROFF, ['-man', '-Tutf8', '-rLL=200n', '-P-c', '-P-b', '-P-u', page]);
  assert.equal(result.status, 0, result.stderr);
  const text = result.stdout.replace(/[\u2010\u2011\u2012\u2013\u2212]/g, '-').replace(/(\S)-\n\s+/g, '$1-');
  rendered.set(page, text);
  return text;
}

/** Options as the program's --help lists them (`-x, -name <value>`, `-name` or `-x`), each at the start of a line. */
function helpOptions(binary: string): { long: string[]; short: string[] } {
  const result = run(process.execPath, [binary, '--help']);
  assert.equal(result.status, 0, result.stderr);
  const section = result.stdout.split(/^Options:$/m)[1];
  assert.ok(section !== undefined, `no Options: section in --help output:\n${result.stdout}`);
  const long: string[] = [];
  const short: string[] = [];
  for (const line of section.split('\n')) {
    const match = /^ {2}(?:-([A-Za-z])(?:, |\s|$))?(?:-{1,2}([a-z][a-z0-9-]+))?/.exec(line);
    if (match?.[1] !== undefined) short.push(match[1]);
    if (match?.[2] !== undefined) long.push(match[2]);
  }
  // A change in the help layout must fail here, not let every page pass with nothing to check.
  assert.ok(long.includes('help'), `could not read the options of ${binary} --help:\n${result.stdout}`);
  return { long, short };
}

/** True when text holds the word, not as part of a longer word or option name. */
function mentions(text: string, word: string): boolean {
  const escaped = word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^A-Za-z0-9-])${escaped}(?![A-Za-z0-9-])`, 'm').test(text);
}

/** A long option counts as documented in its one-dash or its two-dash spelling. */
function mentionsLongOption(text: string, name: string): boolean {
  return mentions(text, `-${name}`) || mentions(text, `--${name}`);
}

/**
 * The text of the first tagged paragraph whose tag is `-name` (or `name` with prefix ''): its tag lines (several
 * with .TQ) and the indented body after them, up to the next line that is indented no deeper than the tag.
 */
function paragraphOf(text: string, name: string, prefix = '-'): string | undefined {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => new RegExp(`^\\s+${prefix}${name}(\\s|$)`).test(line));
  if (start < 0) return undefined;
  const indentOf = (line: string): number => line.length - line.trimStart().length;
  const tagIndent = indentOf(lines[start] as string);
  const body: string[] = [lines[start] as string];
  let inBody = false;
  for (const line of lines.slice(start + 1)) {
    if (line.trim() !== '') {
      if (indentOf(line) > tagIndent) inBody = true;
      else if (inBody) break;
    }
    body.push(line);
  }
  return body.join(' ').replace(/\s+/g, ' ');
}


/** The default of a config setting as the page must print it after "Default:". */
function settingDefault(name: string): string {
  switch (name) {
    case 'listen':
      return `${DEFAULT_CONFIG.listen.host}:${DEFAULT_CONFIG.listen.port}`;
    case 'hostkey':
      return DEFAULT_CONFIG.hostKeyFile;
    case 'clients':
      return DEFAULT_CONFIG.clientsFile;
    case 'spool':
      return DEFAULT_CONFIG.spoolDir;
    case 'shutdown-grace-ms':
      return String(DEFAULT_CONFIG.shutdownGraceMs);
    case 'kill-grace-ms':
      return String(DEFAULT_CONFIG.killGraceMs);
    case 'log-level':
      return DEFAULT_CONFIG.logLevel;
    case 'accept-env':
      return DEFAULT_CONFIG.acceptEnv.join(',');
    case 'gluepots':
      return DEFAULT_CONFIG.gluepotDir;
    case 'one-time-keys':
      return DEFAULT_CONFIG.oneTimeKeyDir;
    case 'run-as':
      // No value: the daemon's own account, and required when it runs as root.
      return "the daemon's own account";
    case 'penalty-exempt':
      return DEFAULT_CONFIG.admission.exempt.join(',');
    default: {
      const admission = ADMISSION_SETTINGS[name];
      if (admission !== undefined) return String(DEFAULT_CONFIG.admission[admission]);
      const limit = LIMIT_SETTINGS[name];
      if (limit === undefined) throw new Error(`setting ${name} is new: add its default to this test and to netplumbd.8`);
      return String(DEFAULT_LIMITS[limit]);
    }
  }
}

describe('man pages', () => {
  for (const program of PROGRAMS) {
    test(`${program.name}'s page renders with groff -ww without a warning`, () => {
      const result = run(GROFF, ['-man', '-Tutf8', '-ww', '-z', program.page]);
      assert.equal(result.stderr, '');
      assert.equal(result.status, 0);
    });

    test(`${program.name}'s page documents every option ${program.name} --help lists`, () => {
      const { long, short } = helpOptions(program.binary);
      const text = renderedText(program.page);
      const missing = [
        ...long.filter((name) => !mentionsLongOption(text, name)).map((name) => `--${name}`),
        ...short.filter((letter) => !mentions(text, `-${letter}`)).map((letter) => `-${letter}`),
      ];
      assert.deepEqual(missing, [], `options missing from ${program.page}`);
    });
  }

  test('netplumbd.8 gives the default of every config setting', () => {
    const text = renderedText(join(root, 'man/netplumbd.8'));
    const wrong: string[] = [];
    for (const name of SETTING_NAMES) {
      const paragraph = paragraphOf(text, name);
      const expected = `Default: ${settingDefault(name)}`;
      const stated = paragraph !== undefined && mentions(paragraph, expected);
      if (!stated) wrong.push(`${name}: expected "${expected}" in ${JSON.stringify(paragraph)}`);
    }
    assert.deepEqual(wrong, []);
  });

  test('plumb.1 and netplumbd.8 give DEFAULT_PORT as the default port', () => {
    for (const page of ['man/plumb.1', 'man/netplumbd.8']) {
      assert.ok(mentions(renderedText(join(root, page)), `port ${DEFAULT_PORT}`), `${page} does not say "port ${DEFAULT_PORT}"`);
    }
  });

  test('netplumb-recipe.5 renders with groff -ww without a warning', () => {
    const result = run(GROFF, ['-man', '-Tutf8', '-ww', '-z', RECIPE_PAGE]);
    assert.equal(result.stderr, '');
    assert.equal(result.status, 0);
  });

  test('netplumb-recipe.5 gives the default of every recipe limit', () => {
    const text = renderedText(RECIPE_PAGE);
    const wrong: string[] = [];
    for (const name of RECIPE_LIMIT_NAMES) {
      const paragraph = paragraphOf(text, name, '');
      const expected = `Default: ${DEFAULT_RECIPE_LIMITS[name]}`;
      if (paragraph === undefined || !mentions(paragraph, expected)) wrong.push(`${name}: expected "${expected}" in ${JSON.stringify(paragraph)}`);
    }
    assert.deepEqual(wrong, []);
  });

  test('netplumb-recipe.5 documents the three codes of the recipe check', () => {
    const text = renderedText(RECIPE_PAGE);
    const missing = [ErrorCode.RecipeSyntax, ErrorCode.RecipeInvalid, ErrorCode.RecipeTooLarge].filter((code) => !mentions(text, code));
    assert.deepEqual(missing, []);
  });

  test('every error code appears in netplumbd.8, plumb.1 or netplumb-recipe.5', () => {
    const text = renderedText(join(root, 'man/netplumbd.8')) + renderedText(join(root, 'man/plumb.1')) + renderedText(RECIPE_PAGE);
    const missing = Object.values(ErrorCode).filter((code) => !mentions(text, code));
    assert.deepEqual(missing, []);
  });

  test('every error code appears in the error table of PROTOCOL.md', () => {
    const spec = readFileSync(PROTOCOL_SPEC, 'utf8');
    const missing = Object.values(ErrorCode).filter((code) => !spec.includes(`| \`${code}\` |`));
    assert.deepEqual(missing, []);
  });
});
