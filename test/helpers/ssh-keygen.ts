// ssh-keygen as the reference for key formats and fingerprints: key pairs made without passphrase in a temp
// directory that is removed after the test file, and the fingerprint ssh-keygen itself prints for a file.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

export const SSH_KEYGEN = '/usr/bin/ssh-keygen';
if (!existsSync(SSH_KEYGEN)) {
  throw new Error(`${SSH_KEYGEN} is missing: install openssh-client (apt-get install openssh-client)`);
}

export interface KeyDirectory {
  dir: string;
  /** A path in the directory that no earlier call returned. */
  freshPath(name: string): string;
  /** Runs ssh-keygen to make a key pair without passphrase; returns the private key path. */
  sshKeygen(type: string, extra?: readonly string[], comment?: string): string;
}

/** A temp directory for key files, removed when the test file ends. */
export function keyDirectory(prefix: string): KeyDirectory {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let counter = 0;
  const freshPath = (name: string): string => {
    counter += 1;
    return join(dir, `${name}-${counter}`);
  };
  return {
    dir,
    freshPath,
    sshKeygen(type, extra = [], comment = 'made by ssh-keygen') {
      const path = freshPath(`ssh-${type}`);
      execFileSync(SSH_KEYGEN, ['-q', '-t', type, '-N', '', '-C', comment, '-f', path, ...extra]);
      return path;
    },
  };
}

/** The SHA256 fingerprint ssh-keygen -lf prints for a file. */
export function sshFingerprint(path: string): string {
  const output = execFileSync(SSH_KEYGEN, ['-lf', path], { encoding: 'utf8' });
  const fingerprint = output.split(' ')[1] ?? '';
  assert.match(fingerprint, /^SHA256:/, `unexpected ssh-keygen output: ${output}`);
  return fingerprint;
}

/** An assert.throws validator that checks the thrown error's code. */
export function withCode(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: unknown }).code, code);
    return true;
  };
}
