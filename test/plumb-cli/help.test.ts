// --help of every command, as a user reads it: options in the single-dash spelling the commands take and the man
// pages use, each with a description; every daemon setting with its value's kind, what it does and its default; no
// empty list default printed as "(default: [])".

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { SETTING_NAMES } from '../../daemon/config.js';
import { BIN } from '../helpers/daemon.js';

const KEYGEN = fileURLToPath(new URL('../../plumb-cli/keygen-main.js', import.meta.url));

function help(program: string): string {
  return execFileSync(process.execPath, [program, '--help'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '200' } });
}

/** The option lines of a commander help text: the term, and the description beside it. */
function optionLines(text: string): Array<{ term: string; description: string }> {
  const section = text.split(/^Options:$/m)[1] ?? '';
  return section
    .split('\n')
    .filter((line) => /^ {2}-/.test(line))
    .map((line) => {
      const [term, ...rest] = line.trim().split(/\s{2,}/);
      return { term: term ?? '', description: rest.join(' ') };
    });
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
  });
}

test('netplumbd --help names every setting with its value, what it does and its default', () => {
  const options = optionLines(help(BIN.netplumbd));
  for (const setting of SETTING_NAMES) {
    const line = options.find(({ term }) => term.startsWith(`-${setting} <`));
    assert.ok(line !== undefined, `no line for ${setting}`);
    assert.match(line.description, /\S.*\(default: .+\)$/, `${setting}: ${line.description}`);
  }
});
