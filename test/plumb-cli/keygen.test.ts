// Tests for netplumb-keygen, run as a real process from build/plumb-cli/keygen-main.js: files written, the
// fingerprint ssh-keygen agrees with, and the one-line errors with their codes.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ErrorCode } from '../../protocol/errors.js';
import { loadPrivateIdentity } from '../../bridges/key-files.js';
import { parsePublicKeyLine } from '../../protocol/keys.js';

const SSH_KEYGEN = '/usr/bin/ssh-keygen';
if (!existsSync(SSH_KEYGEN)) {
  throw new Error(`${SSH_KEYGEN} is missing: install openssh-client (apt-get install openssh-client)`);
}
const KEYGEN_MAIN = join(dirname(fileURLToPath(import.meta.url)), '../../plumb-cli/keygen-main.js');

const dir = mkdtempSync(join(tmpdir(), 'netplumb-keygen-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
function freshPath(): string {
  counter += 1;
  return join(dir, `id-${counter}`);
}

function keygen(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [KEYGEN_MAIN, ...args], { encoding: 'utf8', cwd: dir });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function sshFingerprint(path: string): string {
  return execFileSync(SSH_KEYGEN, ['-lf', path], { encoding: 'utf8' }).split(' ')[1] ?? '';
}

/** The code at the end of the single stderr line `netplumb-keygen: message (CODE)`. */
function errorCode(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => line !== '');
  assert.equal(lines.length, 1, stderr);
  const match = /^netplumb-keygen: .+ \((NP_[A-Z_]+)\)$/.exec(lines[0] ?? '');
  assert.ok(match, stderr);
  return match[1] ?? '';
}

describe('netplumb-keygen', () => {
  test('writes an Ed25519 private key 0600 and its public key 0644 by default', () => {
    const path = freshPath();
    const result = keygen(['-f', path, '-C', 'me@test']);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(`${path}.pub`).mode & 0o777, 0o644);
    const pub = parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8'));
    assert.equal(pub.algorithm, 'ed25519');
    assert.equal(pub.comment, 'me@test');
    assert.deepEqual(loadPrivateIdentity(path).publicIdentity.blob, pub.blob);
  });

  test('makes a missing key directory, private to its owner', () => {
    const path = join(freshPath(), 'fresh-home', 'identity');
    const result = keygen(['-f', path]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(statSync(dirname(path)).mode & 0o777, 0o700);
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  test('prints where both files went and the fingerprint ssh-keygen -lf agrees with', () => {
    const path = freshPath();
    const result = keygen(['--file', path, '--comment', 'two words']);
    assert.equal(result.status, 0, result.stderr);
    const fingerprint = sshFingerprint(`${path}.pub`);
    assert.equal(
      result.stdout,
      `Your identification has been saved in ${path}\n` +
        `Your public key has been saved in ${path}.pub\n` +
        `The key fingerprint is: ${fingerprint} two words\n`,
    );
    assert.equal(result.stderr, '');
  });

  test('-t rsa writes a 3072-bit RSA key whose fingerprint ssh-keygen agrees with', () => {
    const path = freshPath();
    const result = keygen(['-t', 'rsa', `-f=${path}`]);
    assert.equal(result.status, 0, result.stderr);
    const pub = parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8'));
    assert.equal(pub.algorithm, 'rsa');
    assert.equal(pub.key.asymmetricKeyDetails?.modulusLength, 3072);
    assert.match(result.stdout, new RegExp(`fingerprint is: ${sshFingerprint(`${path}.pub`).replace(/[+/]/g, '\\$&')} `));
  });

  test('-b sets the RSA modulus size', () => {
    const path = freshPath();
    const result = keygen(['--type=rsa', '--bits', '4096', '-f', path]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8')).key.asymmetricKeyDetails?.modulusLength, 4096);
  });

  test('accepts single-dash long options such as -file=PATH', () => {
    const path = freshPath();
    const result = keygen([`-file=${path}`, '-comment', 'c']);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8')).comment, 'c');
  });

  test('the comment defaults to user@hostname', () => {
    const path = freshPath();
    assert.equal(keygen(['-f', path]).status, 0);
    assert.match(parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8')).comment, /^[^@\s]+@[^@\s]+$/);
  });

  test('refuses to overwrite an existing key with exit 1 and a one-line error', () => {
    const path = freshPath();
    writeFileSync(path, 'old key', { mode: 0o600 });
    const result = keygen(['-f', path]);
    assert.equal(result.status, 1);
    assert.equal(errorCode(result.stderr), ErrorCode.Config);
    assert.equal(result.stdout, '');
    assert.equal(readFileSync(path, 'utf8'), 'old key');
  });

  test('rejects an unknown key type as a usage error', () => {
    const path = freshPath();
    const result = keygen(['-f', path, '-t', 'dsa']);
    assert.equal(result.status, 1);
    assert.equal(errorCode(result.stderr), ErrorCode.Usage);
    assert.equal(existsSync(path), false);
  });

  test('rejects a missing -f as a usage error', () => {
    const result = keygen([]);
    assert.equal(result.status, 1);
    assert.equal(errorCode(result.stderr), ErrorCode.Usage);
  });

  test('rejects -b with an Ed25519 key as a usage error', () => {
    const result = keygen(['-f', freshPath(), '-b', '4096']);
    assert.equal(result.status, 1);
    assert.equal(errorCode(result.stderr), ErrorCode.Usage);
  });

  test('rejects -b that is not a number as a usage error', () => {
    const result = keygen(['-f', freshPath(), '-t', 'rsa', '-b', 'lots']);
    assert.equal(result.status, 1);
    assert.equal(errorCode(result.stderr), ErrorCode.Usage);
  });

  test('refuses an RSA size below 3072 bits as a key format error', () => {
    const result = keygen(['-f', freshPath(), '-t', 'rsa', '-b', '2048']);
    assert.equal(result.status, 1);
    assert.equal(errorCode(result.stderr), ErrorCode.KeyFormat);
  });

  test('--help prints usage and exits 0', () => {
    const result = keygen(['--help']);
    assert.equal(result.status, 0);
    assert.match(result.stdout, /^Usage: netplumb-keygen/);
  });
});
