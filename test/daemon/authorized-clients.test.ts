// Tests for daemon/authorized-clients: option syntax, known and unknown options, per-line errors, file loading
// and lookup by key. Keys are generated at test time.

import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { generateIdentity, parsePublicKeyLine, publicIdentityFromKey } from '../../protocol/keys.js';
import {
  allowedUsers,
  AuthorizedClients,
  loadAuthorizedClients,
  parseAuthorizedClients,
} from '../../daemon/authorized-clients.js';

const dir = mkdtempSync(join(tmpdir(), 'netplumb-authorized-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const alice = generateIdentity('ed25519', '').publicIdentity;
const bob = generateIdentity('ed25519', '').publicIdentity;
const SOURCE = 'authorized_clients';

function parse(text: string): ReturnType<typeof parseAuthorizedClients> {
  return parseAuthorizedClients(text, SOURCE);
}

/** Parses one line that must be refused; returns the error code. */
function errorCodeOf(line: string): string {
  const { clients, errors } = parse(`${line}\n`);
  assert.equal(clients.length, 0, `accepted: ${line}`);
  assert.equal(errors.length, 1);
  return errors[0]?.code ?? '';
}

describe('parseAuthorizedClients', () => {
  test('a key line without options loads with an empty option map', () => {
    const { clients, errors } = parse(`${alice.line} alice@laptop\n`);
    assert.deepEqual(errors, []);
    assert.equal(clients.length, 1);
    assert.deepEqual(clients[0]?.identity.blob, alice.blob);
    assert.equal(clients[0]?.identity.comment, 'alice@laptop');
    assert.equal(clients[0]?.options.size, 0);
  });

  test('comments and blank lines are ignored and line numbers count every line', () => {
    const { clients, errors } = parse(`# clients\n\n   # indented\n${alice.line}\n`);
    assert.deepEqual(errors, []);
    assert.equal(clients[0]?.line, 4);
  });

  test('lines ending in CRLF load', () => {
    const { clients, errors } = parse(`${alice.line} a\r\n${bob.line}\r\n`);
    assert.deepEqual(errors, []);
    assert.equal(clients.length, 2);
  });

  test('gluepot=NAME gives the gluepot name', () => {
    const { clients } = parse(`gluepot=backups ${alice.line}\n`);
    assert.equal(clients[0]?.options.get('gluepot'), 'backups');
  });

  test('a quoted value may hold commas and is stored without its quotes', () => {
    const { clients } = parse(`user="backup,postgres" ${alice.line}\n`);
    assert.equal(clients[0]?.options.get('user'), 'backup,postgres');
    assert.deepEqual(clients[0] && allowedUsers(clients[0]), ['backup', 'postgres']);
  });

  test('a client without user= has no user list', () => {
    const { clients } = parse(`${alice.line}\n`);
    assert.equal(clients[0] && allowedUsers(clients[0]), undefined);
  });

  test('controller is a flag', () => {
    const { clients } = parse(`controller ${alice.line}\n`);
    assert.equal(clients[0]?.options.get('controller'), true);
  });

  test('several options are separated by commas', () => {
    const { clients, errors } = parse(`controller,gluepot="pot-1",user=deploy ${alice.line}\n`);
    assert.deepEqual(errors, []);
    assert.deepEqual([...(clients[0]?.options ?? [])], [
      ['controller', true],
      ['gluepot', 'pot-1'],
      ['user', 'deploy'],
    ]);
  });

  test('option names are read without regard to case', () => {
    const { clients } = parse(`Controller,GLUEPOT=x ${alice.line}\n`);
    assert.equal(clients[0]?.options.get('controller'), true);
    assert.equal(clients[0]?.options.get('gluepot'), 'x');
  });

  test('an unknown option makes the line an error', () => {
    assert.equal(errorCodeOf(`no-pty ${alice.line}`), ErrorCode.Config);
  });

  test('from= is not accepted yet', () => {
    assert.equal(errorCodeOf(`from="10.0.0.0/8" ${alice.line}`), ErrorCode.Config);
  });

  test('a flag given a value is an error', () => {
    assert.equal(errorCodeOf(`controller=yes ${alice.line}`), ErrorCode.Config);
  });

  test('a value option without a value is an error', () => {
    assert.equal(errorCodeOf(`gluepot ${alice.line}`), ErrorCode.Config);
    assert.equal(errorCodeOf(`gluepot= ${alice.line}`), ErrorCode.Config);
    assert.equal(errorCodeOf(`user="" ${alice.line}`), ErrorCode.Config);
  });

  test('an option given twice is an error', () => {
    assert.equal(errorCodeOf(`gluepot=a,gluepot=b ${alice.line}`), ErrorCode.Config);
  });

  test('a quote without its closing quote is an error', () => {
    assert.equal(errorCodeOf(`user="backup ${alice.line}`), ErrorCode.Config);
  });

  test('options followed by no key are an error', () => {
    assert.equal(errorCodeOf('controller'), ErrorCode.Config);
    assert.equal(errorCodeOf('controller,'), ErrorCode.Config);
  });

  test('junk after a value is an error', () => {
    assert.equal(errorCodeOf(`gluepot="a"b ${alice.line}`), ErrorCode.Config);
  });

  test('an invalid user name is an error', () => {
    assert.equal(errorCodeOf(`user="backup,,postgres" ${alice.line}`), ErrorCode.Config);
    assert.equal(errorCodeOf(`user="back up" ${alice.line}`), ErrorCode.Config);
  });

  test('an invalid gluepot name is an error', () => {
    assert.equal(errorCodeOf(`gluepot="a b" ${alice.line}`), ErrorCode.Config);
  });

  test('a malformed key is a key format error', () => {
    assert.equal(errorCodeOf('ssh-ed25519 AAAAnotakey'), ErrorCode.KeyFormat);
    assert.equal(errorCodeOf('controller ssh-ed25519 AAAAnotakey'), ErrorCode.KeyFormat);
  });

  test('an unsupported key type is a key format error, not an unknown option', () => {
    assert.equal(errorCodeOf('ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= c'), ErrorCode.KeyFormat);
  });

  test('an RSA key below 3072 bits is a key format error', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = publicKey.export({ format: 'jwk' });
    const small = rsaLineUnchecked(jwk.n ?? '', jwk.e ?? '');
    assert.equal(errorCodeOf(small), ErrorCode.KeyFormat);
  });

  test('a bad line names source and line, and the other lines still load', () => {
    const { clients, errors } = parse(`${alice.line}\nbogus ${bob.line}\n${bob.line}\n`);
    assert.equal(clients.length, 2);
    assert.equal(errors.length, 1);
    assert.ok(errors[0]?.message.startsWith(`${SOURCE}:2:`));
  });

  test('a key listed twice is an error on the second line and the first entry stays', () => {
    const { clients, errors } = parse(`gluepot=first ${alice.line}\ngluepot=second ${alice.line}\n`);
    assert.equal(clients.length, 1);
    assert.equal(clients[0]?.options.get('gluepot'), 'first');
    assert.equal(errors[0]?.code, ErrorCode.Config);
  });
});

/** Builds an ssh-rsa line for any modulus, bypassing the size check keys.ts applies when building blobs. */
function rsaLineUnchecked(n: string, e: string): string {
  const field = (bytes: Buffer): Buffer => {
    const body = (bytes[0] ?? 0) >= 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
    const length = Buffer.alloc(4);
    length.writeUInt32BE(body.length);
    return Buffer.concat([length, body]);
  };
  const blob = Buffer.concat([
    field(Buffer.from('ssh-rsa')),
    field(Buffer.from(e, 'base64url')),
    field(Buffer.from(n, 'base64url')),
  ]);
  return `ssh-rsa ${blob.toString('base64')}`;
}

describe('loadAuthorizedClients', () => {
  test('reads clients from a file and names the file in errors', () => {
    const path = join(dir, 'clients');
    writeFileSync(path, `controller ${alice.line}\nbogus ${bob.line}\n`);
    const { clients, errors } = loadAuthorizedClients(path);
    assert.equal(clients.length, 1);
    assert.ok(errors[0]?.message.startsWith(`${path}:2:`));
  });

  test('a missing file is a configuration error', () => {
    assert.throws(
      () => loadAuthorizedClients(join(dir, 'absent')),
      (error: unknown) => (error as { code?: unknown }).code === ErrorCode.Config,
    );
  });
});

describe('AuthorizedClients', () => {
  const { clients } = parse(`gluepot=a ${alice.line}\n`);
  const table = new AuthorizedClients(clients);

  test('finds a client by its key, whatever object presents it', () => {
    const presented = parsePublicKeyLine(`${alice.line} another comment`);
    assert.equal(table.find(presented)?.options.get('gluepot'), 'a');
  });

  test('does not find a key that is not listed', () => {
    assert.equal(table.find(bob), undefined);
  });

  test('does not find a key whose fingerprint matches but whose blob differs', () => {
    const forged = { ...bob, fingerprint: alice.fingerprint };
    assert.equal(table.find(forged), undefined);
  });

  test('keeps the first entry when a key is given twice', () => {
    const second = { identity: publicIdentityFromKey(alice.key, ''), options: new Map<string, string | true>(), line: 9 };
    const both = new AuthorizedClients([...clients, second]);
    assert.equal(both.find(alice)?.line, clients[0]?.line);
    assert.equal(both.size, 1);
  });
});
