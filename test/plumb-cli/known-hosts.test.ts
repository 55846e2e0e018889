// Tests for plumb-cli/known-hosts: host names, lookups (match, unknown, changed), skipped lines and appending.
// Keys are generated at test time; files live in a temp directory.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { generateIdentity } from '../../protocol/keys.js';
import { DEFAULT_PORT } from '../../protocol/wire.js';
import { addHostKey, checkHostKey, hostKeyName } from '../../plumb-cli/known-hosts.js';

const dir = mkdtempSync(join(tmpdir(), 'netplumb-known-hosts-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
function knownHostsWith(text: string): string {
  counter += 1;
  const file = join(dir, `known_hosts-${counter}`);
  writeFileSync(file, text);
  return file;
}

function withCode(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: unknown }).code, code);
    return true;
  };
}

const daemonKey = generateIdentity('ed25519', '').publicIdentity;
const otherKey = generateIdentity('ed25519', '').publicIdentity;
const otherPort = DEFAULT_PORT + 1;

describe('hostKeyName', () => {
  test('the default port gives the bare host name', () => {
    assert.equal(hostKeyName('build.example', DEFAULT_PORT), 'build.example');
  });

  test('another port gives [host]:port', () => {
    assert.equal(hostKeyName('build.example', otherPort), `[build.example]:${otherPort}`);
  });

  test('an IPv6 address on another port is bracketed once', () => {
    assert.equal(hostKeyName('::1', 7021), '[::1]:7021');
    assert.equal(hostKeyName('[::1]', 7021), '[::1]:7021');
  });

  test('host names are compared in lower case', () => {
    assert.equal(hostKeyName('Build.Example', DEFAULT_PORT), 'build.example');
  });

  test('a port outside 1..65535 is refused', () => {
    assert.throws(() => hostKeyName('h', 0), withCode(ErrorCode.Config));
    assert.throws(() => hostKeyName('h', 65536), withCode(ErrorCode.Config));
    assert.throws(() => hostKeyName('h', 1.5), withCode(ErrorCode.Config));
  });

  test('a host name that would be ambiguous in the file is refused', () => {
    for (const host of ['', 'a b', 'a,b', 'a#b', '*.example', '|1|x']) {
      assert.throws(() => hostKeyName(host, DEFAULT_PORT), withCode(ErrorCode.Config), host);
    }
  });
});

describe('checkHostKey', () => {
  test('a missing file means the host is unknown', () => {
    const result = checkHostKey(join(dir, 'absent'), 'h', DEFAULT_PORT, daemonKey);
    assert.deepEqual(result, { status: 'unknown', warnings: [] });
  });

  test('a pinned key equal to the presented one matches', () => {
    const file = knownHostsWith(`h ${daemonKey.line} a comment\n`);
    assert.equal(checkHostKey(file, 'h', DEFAULT_PORT, daemonKey).status, 'match');
  });

  test('a host without a line is unknown', () => {
    const file = knownHostsWith(`other ${daemonKey.line}\n`);
    assert.equal(checkHostKey(file, 'h', DEFAULT_PORT, daemonKey).status, 'unknown');
  });

  test('a different pinned key is reported as changed with that key and its line', () => {
    const file = knownHostsWith(`# pinned keys\n\nh ${otherKey.line}\n`);
    const result = checkHostKey(file, 'h', DEFAULT_PORT, daemonKey);
    assert.equal(result.status, 'changed');
    assert.ok(result.status === 'changed');
    assert.equal(result.line, 3);
    assert.deepEqual(result.pinned.blob, otherKey.blob);
  });

  test('a pinned key of another type counts as changed', () => {
    const rsaKey = generateIdentity('rsa', '').publicIdentity;
    const file = knownHostsWith(`h ${rsaKey.line}\n`);
    assert.equal(checkHostKey(file, 'h', DEFAULT_PORT, daemonKey).status, 'changed');
  });

  test('any matching line wins over a differing one for the same host', () => {
    const file = knownHostsWith(`h ${otherKey.line}\nh ${daemonKey.line}\n`);
    assert.equal(checkHostKey(file, 'h', DEFAULT_PORT, daemonKey).status, 'match');
  });

  test('a key pinned for another port does not apply', () => {
    const file = knownHostsWith(`[h]:${otherPort} ${otherKey.line}\n`);
    assert.equal(checkHostKey(file, 'h', DEFAULT_PORT, daemonKey).status, 'unknown');
    assert.equal(checkHostKey(file, 'h', otherPort, daemonKey).status, 'changed');
  });

  test('[host]:DEFAULT_PORT in the file means the bare host', () => {
    const file = knownHostsWith(`[h]:${DEFAULT_PORT} ${daemonKey.line}\n`);
    assert.equal(checkHostKey(file, 'h', DEFAULT_PORT, daemonKey).status, 'match');
  });

  test('an IPv6 name on another port matches', () => {
    const file = knownHostsWith(`[::1]:7021 ${daemonKey.line}\n`);
    assert.equal(checkHostKey(file, '::1', 7021, daemonKey).status, 'match');
  });

  test('names in the file match whatever their case', () => {
    const file = knownHostsWith(`H.Example ${daemonKey.line}\n`);
    assert.equal(checkHostKey(file, 'h.example', DEFAULT_PORT, daemonKey).status, 'match');
  });

  test('comments, indented comments and blank lines are ignored without warnings', () => {
    const file = knownHostsWith(`# one\n   # two\n\n   \nh ${daemonKey.line}\n`);
    assert.deepEqual(checkHostKey(file, 'h', DEFAULT_PORT, daemonKey), { status: 'match', warnings: [] });
  });

  test('a line with a malformed key is skipped with a warning naming file and line', () => {
    const file = knownHostsWith(`h ssh-ed25519 AAAAnotakey\nh ${daemonKey.line}\n`);
    const result = checkHostKey(file, 'h', DEFAULT_PORT, daemonKey);
    assert.equal(result.status, 'match');
    assert.equal(result.warnings.length, 1);
    assert.ok(result.warnings[0]?.startsWith(`${file}:1:`));
  });

  test('a malformed line for the host does not count as a changed key', () => {
    const file = knownHostsWith(`h ssh-dss AAAAB3NzaC1kc3MAAACBAP\n`);
    const result = checkHostKey(file, 'h', DEFAULT_PORT, daemonKey);
    assert.equal(result.status, 'unknown');
    assert.equal(result.warnings.length, 1);
  });

  test('a line with only a name is skipped with a warning', () => {
    const file = knownHostsWith(`h\n`);
    assert.equal(checkHostKey(file, 'h', DEFAULT_PORT, daemonKey).warnings.length, 1);
  });

  test('hashed names, patterns and name lists are skipped with a warning', () => {
    const lines = ['|1|abc=|def=', '*.example', 'h,other', '@revoked', '[h]:notaport'].map((name) => `${name} ${otherKey.line}`);
    const file = knownHostsWith(`${lines.join('\n')}\n`);
    const result = checkHostKey(file, 'h', DEFAULT_PORT, daemonKey);
    assert.equal(result.status, 'unknown');
    assert.equal(result.warnings.length, lines.length);
  });

  test('a file that cannot be read is a configuration error', () => {
    assert.throws(() => checkHostKey(dir, 'h', DEFAULT_PORT, daemonKey), withCode(ErrorCode.Config));
  });
});

describe('addHostKey', () => {
  test('creates the directory 0700 and the file 0600 when missing', () => {
    const file = join(dir, 'fresh', 'nested', 'known_hosts');
    addHostKey(file, 'h', DEFAULT_PORT, daemonKey);
    assert.equal(statSync(join(dir, 'fresh')).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, 'fresh', 'nested')).mode & 0o777, 0o700);
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  test('writes NAME keytype base64 without a comment', () => {
    const file = join(dir, 'written');
    addHostKey(file, '::1', 7021, generateIdentity('ed25519', 'peer text').publicIdentity);
    assert.match(readFileSync(file, 'utf8'), /^\[::1\]:7021 ssh-ed25519 [A-Za-z0-9+/]+=*\n$/);
  });

  test('a key added is found again', () => {
    const file = join(dir, 'roundtrip');
    addHostKey(file, 'h', otherPort, daemonKey);
    assert.equal(checkHostKey(file, 'h', otherPort, daemonKey).status, 'match');
  });

  test('appends to an existing file, starting a new line when the last one lacks its newline', () => {
    const file = knownHostsWith(`a ${otherKey.line}`);
    addHostKey(file, 'b', DEFAULT_PORT, daemonKey);
    assert.equal(readFileSync(file, 'utf8'), `a ${otherKey.line}\nb ${daemonKey.line}\n`);
  });

  test('a file that cannot be written is a configuration error', () => {
    const blocked = join(dir, 'blocked');
    mkdirSync(blocked);
    assert.throws(() => addHostKey(blocked, 'h', DEFAULT_PORT, daemonKey), withCode(ErrorCode.Config));
  });
});
