// Tests for protocol/keys: generation, signatures, OpenSSH public lines and PEM private keys, with ssh-keygen as
// the reference for formats and fingerprints. Key files are read and written in test/bridges/key-files.test.ts.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { constants, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import { ErrorCode, type NetplumbError } from '../../protocol/errors.js';
import {
  curvePublicKey,
  encodePrivateKeyPem,
  fingerprintOfBlob,
  formatPublicKeyLine,
  generateIdentity,
  parsePrivateKeyPem,
  parsePublicKeyLine,
  publicIdentityFromKey,
  rawCurvePublicKey,
  signTranscript,
  verifyTranscript,
  type PrivateIdentity,
} from '../../protocol/keys.js';
import { keyDirectory, sshFingerprint, withCode } from '../helpers/ssh-keygen.js';

const { sshKeygen } = keyDirectory('netplumb-keys-');

function lineWithBlob(type: string, blob: Buffer): string {
  return `${type} ${blob.toString('base64')}`;
}

function sshString(data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

const data = Buffer.from('a handshake transcript');
let ed25519: PrivateIdentity;
let rsa: PrivateIdentity;
before(() => {
  ed25519 = generateIdentity('ed25519', 'ed key');
  rsa = generateIdentity('rsa', 'rsa key');
});

describe('key generation and signatures', () => {
  test('an Ed25519 identity verifies its own signature', () => {
    assert.equal(ed25519.publicIdentity.signatureAlgorithm, 'ssh-ed25519');
    assert.ok(verifyTranscript(ed25519.publicIdentity, data, signTranscript(ed25519, data)));
  });

  test('an RSA identity of 3072 bits verifies its own signature', () => {
    assert.equal(rsa.publicIdentity.signatureAlgorithm, 'rsa-pss-sha256');
    assert.equal(rsa.publicIdentity.key.asymmetricKeyDetails?.modulusLength, 3072);
    assert.ok(verifyTranscript(rsa.publicIdentity, data, signTranscript(rsa, data)));
  });

  test('an RSA signature is RSA-PSS over SHA-256 with a 32-byte salt', () => {
    const signature = signTranscript(rsa, data);
    const key = rsa.publicIdentity.key;
    assert.ok(verify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature));
    assert.ok(!verify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 20 }, signature));
  });

  for (const algorithm of ['ed25519', 'rsa'] as const) {
    test(`a ${algorithm} signature with one flipped byte fails verification`, () => {
      const id = algorithm === 'rsa' ? rsa : ed25519;
      const signature = signTranscript(id, data);
      signature[signature.length >> 1] = (signature[signature.length >> 1] ?? 0) ^ 0x01;
      assert.equal(verifyTranscript(id.publicIdentity, data, signature), false);
    });

    test(`a ${algorithm} signature fails verification under another key of the same type`, () => {
      const id = algorithm === 'rsa' ? rsa : ed25519;
      const other = generateIdentity(algorithm, 'other');
      assert.equal(verifyTranscript(other.publicIdentity, data, signTranscript(id, data)), false);
    });

    test(`a ${algorithm} signature fails verification over changed data`, () => {
      const id = algorithm === 'rsa' ? rsa : ed25519;
      assert.equal(verifyTranscript(id.publicIdentity, Buffer.from('other data'), signTranscript(id, data)), false);
    });

    test(`a malformed ${algorithm} signature returns false instead of throwing`, () => {
      const id = algorithm === 'rsa' ? rsa : ed25519;
      assert.equal(verifyTranscript(id.publicIdentity, data, Buffer.alloc(0)), false);
      assert.equal(verifyTranscript(id.publicIdentity, data, Buffer.alloc(7, 1)), false);
      assert.equal(verifyTranscript(id.publicIdentity, data, Buffer.alloc(1000, 1)), false);
    });
  }

  test('a signature by an RSA key fails verification under an Ed25519 key', () => {
    assert.equal(verifyTranscript(ed25519.publicIdentity, data, signTranscript(rsa, data)), false);
  });

  test('generating an RSA key below 3072 bits is refused', () => {
    assert.throws(() => generateIdentity('rsa', '', 2048), withCode(ErrorCode.KeyFormat));
  });

  test('a comment with a line break is refused', () => {
    assert.throws(() => generateIdentity('ed25519', 'two\nlines'), withCode(ErrorCode.KeyFormat));
    assert.throws(() => formatPublicKeyLine(ed25519.publicIdentity, 'a\rb'), withCode(ErrorCode.KeyFormat));
  });

  test('the identity of a private KeyObject is that of its public half', () => {
    const fromPrivate = publicIdentityFromKey(ed25519.privateKey, '');
    assert.equal(fromPrivate.key.type, 'public');
    assert.deepEqual(fromPrivate.blob, ed25519.publicIdentity.blob);
  });

  test('a key type other than Ed25519 or RSA is refused', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    assert.throws(() => publicIdentityFromKey(publicKey, ''), withCode(ErrorCode.KeyFormat));
  });
});

describe('public key lines', () => {
  for (const algorithm of ['ed25519', 'rsa'] as const) {
    test(`a ${algorithm} public line survives format and parse unchanged`, () => {
      const id = (algorithm === 'rsa' ? rsa : ed25519).publicIdentity;
      const parsed = parsePublicKeyLine(formatPublicKeyLine(id, 'comment with  spaces'));
      assert.deepEqual(parsed.blob, id.blob);
      assert.equal(parsed.algorithm, algorithm);
      assert.equal(parsed.fingerprint, id.fingerprint);
      assert.equal(parsed.line, id.line);
      assert.equal(parsed.comment, 'comment with  spaces');
    });
  }

  test('a line without a comment parses with an empty comment', () => {
    const parsed = parsePublicKeyLine(ed25519.publicIdentity.line);
    assert.equal(parsed.comment, '');
    assert.equal(formatPublicKeyLine(parsed), ed25519.publicIdentity.line);
  });

  test('the blob starts with the OpenSSH key type string', () => {
    assert.deepEqual(ed25519.publicIdentity.blob.subarray(0, 15), sshString('ssh-ed25519'));
    assert.equal(ed25519.publicIdentity.blob.length, 4 + 11 + 4 + 32);
    assert.deepEqual(rsa.publicIdentity.blob.subarray(0, 11), sshString('ssh-rsa'));
  });

  test('a fingerprint is SHA256: and unpadded base64', () => {
    const fingerprint = fingerprintOfBlob(ed25519.publicIdentity.blob);
    assert.match(fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
    assert.equal(fingerprint, ed25519.publicIdentity.fingerprint);
  });

  for (const [type, extra] of [
    ['ed25519', []],
    ['rsa', ['-b', '3072']],
  ] as const) {
    test(`an ssh-keygen ${type} public key line parses with its comment and fingerprint`, () => {
      const path = sshKeygen(type, [...extra], 'user@example host');
      const parsed = parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8'));
      assert.equal(parsed.comment, 'user@example host');
      assert.equal(parsed.fingerprint, sshFingerprint(`${path}.pub`));
    });
  }

  test('an ssh-keygen RSA key of 2048 bits is refused', () => {
    const path = sshKeygen('rsa', ['-b', '2048']);
    assert.throws(() => parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8')), withCode(ErrorCode.KeyFormat));
  });

  test('an unknown key type is refused', () => {
    const path = sshKeygen('ecdsa');
    assert.throws(() => parsePublicKeyLine(readFileSync(`${path}.pub`, 'utf8')), withCode(ErrorCode.KeyFormat));
  });

  test('key data that is not base64 is refused', () => {
    const [type, base64] = ed25519.publicIdentity.line.split(' ');
    assert.throws(() => parsePublicKeyLine(`${type} ${base64?.slice(0, 10)}!${base64?.slice(11)}`), withCode(ErrorCode.KeyFormat));
    assert.throws(() => parsePublicKeyLine(`${type} ${base64?.slice(0, -1)}`), withCode(ErrorCode.KeyFormat));
  });

  test('a line whose type differs from the type inside the blob is refused', () => {
    assert.throws(() => parsePublicKeyLine(lineWithBlob('ssh-rsa', ed25519.publicIdentity.blob)), withCode(ErrorCode.KeyFormat));
    assert.throws(() => parsePublicKeyLine(lineWithBlob('ssh-ed25519', rsa.publicIdentity.blob)), withCode(ErrorCode.KeyFormat));
  });

  test('a truncated blob is refused', () => {
    for (const id of [ed25519, rsa]) {
      const blob = id.publicIdentity.blob;
      for (const cut of [2, 10, blob.length - 1]) {
        assert.throws(() => parsePublicKeyLine(lineWithBlob(id.publicIdentity.line.split(' ')[0] ?? '', blob.subarray(0, cut))), withCode(ErrorCode.KeyFormat));
      }
    }
  });

  test('a blob with trailing bytes is refused', () => {
    const blob = Buffer.concat([ed25519.publicIdentity.blob, Buffer.from([0])]);
    assert.throws(() => parsePublicKeyLine(lineWithBlob('ssh-ed25519', blob)), withCode(ErrorCode.KeyFormat));
  });

  test('an Ed25519 key of the wrong length is refused', () => {
    const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(Buffer.alloc(31, 7))]);
    assert.throws(() => parsePublicKeyLine(lineWithBlob('ssh-ed25519', blob)), withCode(ErrorCode.KeyFormat));
  });

  test('an RSA blob with a needless leading zero in the modulus is refused', () => {
    const jwk = rsa.publicIdentity.key.export({ format: 'jwk' });
    const n = Buffer.from(jwk.n ?? '', 'base64url');
    const e = Buffer.from(jwk.e ?? '', 'base64url');
    const blob = Buffer.concat([sshString('ssh-rsa'), sshString(e), sshString(Buffer.concat([Buffer.alloc(2), n]))]);
    assert.throws(() => parsePublicKeyLine(lineWithBlob('ssh-rsa', blob)), withCode(ErrorCode.KeyFormat));
  });

  test('a line with only a type is refused', () => {
    assert.throws(() => parsePublicKeyLine('ssh-ed25519'), withCode(ErrorCode.KeyFormat));
    assert.throws(() => parsePublicKeyLine(''), withCode(ErrorCode.KeyFormat));
  });
});

describe('private keys', () => {
  for (const algorithm of ['ed25519', 'rsa'] as const) {
    test(`a ${algorithm} private key survives PEM encoding and parsing`, () => {
      const id = algorithm === 'rsa' ? rsa : ed25519;
      const pem = encodePrivateKeyPem(id);
      assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
      const parsed = parsePrivateKeyPem(pem, 'back');
      assert.deepEqual(parsed.publicIdentity.blob, id.publicIdentity.blob);
      assert.equal(parsed.publicIdentity.comment, 'back');
      assert.ok(verifyTranscript(id.publicIdentity, data, signTranscript(parsed, data)));
    });
  }

  test('text that is not a private key is refused', () => {
    assert.throws(() => parsePrivateKeyPem('hello'), withCode(ErrorCode.KeyFormat));
    const publicPem = createPublicKey(ed25519.privateKey).export({ type: 'spki', format: 'pem' }).toString();
    assert.throws(() => parsePrivateKeyPem(publicPem), withCode(ErrorCode.KeyFormat));
  });

  test('a PEM RSA private key of 2048 bits is refused', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.throws(() => parsePrivateKeyPem(pem), withCode(ErrorCode.KeyFormat));
  });
});

describe('raw curve keys', () => {
  test('X25519 and Ed25519 raw bytes match what JWK says, and go back to the same key', () => {
    for (const [type, curve] of [['x25519', 'X25519'], ['ed25519', 'Ed25519']] as const) {
      for (let round = 0; round < 20; round++) {
        const { publicKey } = type === 'x25519' ? generateKeyPairSync('x25519') : generateKeyPairSync('ed25519');
        const raw = rawCurvePublicKey(publicKey, curve);
        assert.equal(raw.toString('base64url'), publicKey.export({ format: 'jwk' }).x);
        assert.ok(curvePublicKey(raw, curve).equals(publicKey));
      }
    }
  });

  test('a key of another kind or a wrong length is refused with NP_KEY_FORMAT', () => {
    const { publicKey } = generateKeyPairSync('ed25519');
    assert.throws(() => rawCurvePublicKey(publicKey, 'X25519'), (error: unknown) => (error as NetplumbError).code === ErrorCode.KeyFormat);
    assert.throws(() => curvePublicKey(Buffer.alloc(31), 'X25519'), (error: unknown) => (error as NetplumbError).code === ErrorCode.KeyFormat);
  });

  test('making and exporting many ephemeral keys never hangs (Node 20 can deadlock exporting them as JWK under GC)', { timeout: 120_000 }, () => {
    // In a child with a deadline, since a deadlocked thread would never let this one's timers fire. With JWK
    // exports, a loop like this hung within seconds here.
    const keys = new URL('../../protocol/keys.js', import.meta.url).href;
    const loop = `import { generateKeyPairSync } from 'node:crypto'; import { rawCurvePublicKey } from '${keys}';
      for (let round = 0; round < 50000; round++) rawCurvePublicKey(generateKeyPairSync('x25519').publicKey, 'X25519');`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', loop], { timeout: 90_000, stdio: 'ignore' });
    assert.equal(child.status, 0, `the loop ended with status ${child.status}, signal ${child.signal}`);
  });
});
