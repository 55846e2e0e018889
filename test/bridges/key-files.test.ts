// Tests for bridges/key-files: private keys loaded from disk (ssh-keygen's and our own, refused when others may
// read them) and key pairs written with ssh-keygen's modes, never over an existing file.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { loadPrivateIdentity, writeIdentityFiles } from '../../bridges/key-files.js';
import { ErrorCode } from '../../protocol/errors.js';
import { generateIdentity, parsePublicKeyLine, signTranscript, verifyTranscript, type PrivateIdentity } from '../../protocol/keys.js';
import { keyDirectory, SSH_KEYGEN, sshFingerprint, withCode } from '../helpers/ssh-keygen.js';

const { dir, freshPath, sshKeygen } = keyDirectory('netplumb-key-files-');

const data = Buffer.from('a handshake transcript');
let ed25519: PrivateIdentity;
let rsa: PrivateIdentity;
before(() => {
  ed25519 = generateIdentity('ed25519', 'ed key');
  rsa = generateIdentity('rsa', 'rsa key');
});

describe('loadPrivateIdentity', () => {
  for (const [type, extra] of [
    ['ed25519', []],
    ['rsa', ['-b', '3072']],
  ] as const) {
    test(`an unencrypted OpenSSH ${type} private key from ssh-keygen loads and matches its public key`, () => {
      const path = sshKeygen(type, [...extra], 'from pub file');
      const id = loadPrivateIdentity(path);
      assert.equal(id.publicIdentity.fingerprint, sshFingerprint(`${path}.pub`));
      assert.equal(id.publicIdentity.comment, 'from pub file');
      const pinned = parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8'));
      assert.ok(verifyTranscript(pinned, data, signTranscript(id, data)));
    });
  }

  test('an OpenSSH private key without a .pub file takes the comment stored inside it', () => {
    const path = sshKeygen('ed25519', [], 'stored inside');
    rmSync(`${path}.pub`);
    assert.equal(loadPrivateIdentity(path).publicIdentity.comment, 'stored inside');
  });

  test('an OpenSSH private key with a passphrase is refused', () => {
    const path = freshPath('encrypted');
    execFileSync(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', 'secret', '-f', path]);
    assert.throws(() => loadPrivateIdentity(path), withCode(ErrorCode.KeyFormat));
  });

  test('a damaged OpenSSH private key is refused', () => {
    const path = sshKeygen('ed25519');
    const lines = readFileSync(path, 'utf8').split('\n');
    lines[2] = `${(lines[2] ?? '').slice(0, 20)}${(lines[2] ?? '').slice(28)}`;
    writeFileSync(path, lines.join('\n'));
    assert.throws(() => loadPrivateIdentity(path), withCode(ErrorCode.KeyFormat));
  });

  test('a private key file readable by others is refused', () => {
    const path = freshPath('open');
    writeIdentityFiles(path, ed25519, 'c');
    chmodSync(path, 0o644);
    assert.throws(() => loadPrivateIdentity(path), withCode(ErrorCode.KeyFormat));
  });

  test('a private key file readable by its group is refused', () => {
    const path = freshPath('group');
    writeIdentityFiles(path, ed25519, 'c');
    chmodSync(path, 0o640);
    assert.throws(() => loadPrivateIdentity(path), withCode(ErrorCode.KeyFormat));
  });

  test('a missing private key file is a configuration error', () => {
    assert.throws(() => loadPrivateIdentity(join(dir, 'does-not-exist')), withCode(ErrorCode.Config));
  });

  test('a private key written by writeIdentityFiles loads with the comment from its .pub file', () => {
    const path = freshPath('ours');
    writeIdentityFiles(path, rsa, 'ours comment');
    const loaded = loadPrivateIdentity(path);
    assert.deepEqual(loaded.publicIdentity.blob, rsa.publicIdentity.blob);
    assert.equal(loaded.publicIdentity.comment, 'ours comment');
  });
});

describe('writeIdentityFiles', () => {
  for (const algorithm of ['ed25519', 'rsa'] as const) {
    test(`the fingerprint of a written ${algorithm} key matches ssh-keygen -lf`, () => {
      const id = algorithm === 'rsa' ? rsa : ed25519;
      const path = freshPath(`written-${algorithm}`);
      writeIdentityFiles(path, id, 'written');
      assert.equal(sshFingerprint(`${path}.pub`), id.publicIdentity.fingerprint);
    });
  }

  test('the public file holds one line: type, base64 and comment', () => {
    const path = freshPath('line');
    writeIdentityFiles(path, ed25519, 'me@here');
    assert.equal(readFileSync(`${path}.pub`, 'utf8'), `${ed25519.publicIdentity.line} me@here\n`);
  });

  test('the private key is created 0600 and the public key 0644, even under umask 000', () => {
    const path = freshPath('modes');
    const previous = process.umask(0);
    try {
      writeIdentityFiles(path, ed25519, 'c');
    } finally {
      process.umask(previous);
    }
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(`${path}.pub`).mode & 0o777, 0o644);
  });

  test('an existing private key file is not overwritten', () => {
    const path = freshPath('exists');
    writeFileSync(path, 'keep me', { mode: 0o600 });
    assert.throws(() => writeIdentityFiles(path, ed25519, 'c'), withCode(ErrorCode.Config));
    assert.equal(readFileSync(path, 'utf8'), 'keep me');
    assert.equal(existsSync(`${path}.pub`), false);
  });

  test('an existing public key file is not overwritten and no private key is left behind', () => {
    const path = freshPath('pub-exists');
    writeFileSync(`${path}.pub`, 'keep me');
    assert.throws(() => writeIdentityFiles(path, ed25519, 'c'), withCode(ErrorCode.Config));
    assert.equal(readFileSync(`${path}.pub`, 'utf8'), 'keep me');
    assert.equal(existsSync(path), false);
  });
});
