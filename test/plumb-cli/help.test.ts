// --help of every command, as a user reads it: options in the single-dash spelling the commands take and the man
// pages use, each with a description; every daemon setting with its value's kind, what it does and its default; no
// empty list default printed as "(default: [])".

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { SETTING_NAMES } from '../../daemon/config.js';
import { BIN } from '../helpers/daemon.js';

const KEYGEN = fileURLToPath(new URL('../../plumb-cli/keygen-main.js', import.meta.url));

function help(program: string): string {
  return execFileSync(process.execPath, [program, '--help'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '200' } });
}

/** The options of a commander help text: the term, and the description beside it, its wrapped lines joined. */
function optionLines(text: string): Array<{ term: string; description: string }> {
  const section = (text.split(/^Options:$/m)[1] ?? '').split(/\n\n/)[0] ?? '';
  const options: Array<{ term: string; description: string }> = [];
  for (const line of section.split('\n')) {
    if (/^ {2}-/.test(line)) {
      const [term, ...rest] = line.trim().split(/\s{2,}/);
      options.push({ term: term ?? '', description: rest.join(' ') });
    } else if (line.trim() !== '' && options.length > 0) {
      const last = options[options.length - 1] as { term: string; description: string };
      last.description = `${last.description} ${line.trim()}`;
    }
  }
  return options;
}

for (const [name, program] of [
  ['plumb', BIN.plumb],
  ['netplumbd', BIN.netplumbd],
  ['netplumb-keygen', KEYGEN],
] as const) {
  test(`${name} --help: every option in the single-dash form, with a description, and no empty default`, () => {
    const text = help(program);
    const options = optionLines(text);
    assert.ok(options.length > 3, text);
    for (const { term, description } of options) {
      assert.doesNotMatch(term, /--/, `${name}: ${term}`);
      assert.match(term, /^-[A-Za-z]/, `${name}: ${term}`);
      assert.notEqual(description, '', `${name}: ${term} has no description`);
      assert.doesNotMatch(term, /<value>/, `${name}: ${term}`);
    }
    assert.doesNotMatch(text, /\(default: \[\]\)/);
    // Every option that takes a value says what holds without it.
    for (const { term, description } of options.filter((option) => /[<[]/.test(option.term))) {
      assert.match(description, /\((?:.*\bdefault: .+|required)\)$/, `${name}: ${term}: ${description}`);
      assert.equal(description.match(/\bdefault: /g)?.length ?? 0, description.endsWith('(required)') ? 0 : 1, `${name}: ${term} says one default: ${description}`);
    }
  });

  test(`${name} -help, as the help spells it, prints the help`, () => {
    const text = execFileSync(process.execPath, [program, '-help'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '200' } });
    assert.equal(text, help(program));
  });
}

test('a usage error names the option as the help does, with one dash', () => {
  const plumb = spawnSync(process.execPath, [BIN.plumb, '-port'], { encoding: 'utf8' });
  assert.equal(plumb.stderr, "plumb: option '-p, -port <port>' argument missing (NP_USAGE)\n");
  const keygen = spawnSync(process.execPath, [KEYGEN, '-t', 'ed25519'], { encoding: 'utf8' });
  assert.match(keygen.stderr, /required option '-f, -file <path>' not specified/);
  assert.doesNotMatch(keygen.stderr, /--/);
});

test('netplumbd --help names every setting with its value, what it does and its default', () => {
  const options = optionLines(help(BIN.netplumbd));
  for (const setting of SETTING_NAMES) {
    const line = options.find(({ term }) => term.startsWith(`-${setting} <`));
    assert.ok(line !== undefined, `no line for ${setting}`);
    assert.match(line.description, /\S.*\(default: .+\)$/, `${setting}: ${line.description}`);
  }
});
