// Identity key files on disk: loading a private key (refused when group or others may read it, like ssh does) and
// writing a new key pair with the modes ssh-keygen uses. The key formats themselves live in protocol/keys.ts; a
// malformed key throws ConfigError(KeyFormat), a file that cannot be opened or created ConfigError(Config).

import { closeSync, existsSync, fchmodSync, fstatSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { BadConfigError, ConfigError, KeyFormatError, withContext } from '../protocol/errors.js';
import {
  encodePrivateKeyPem,
  formatPublicKeyLine,
  parsePrivateKeyPem,
  parsePublicKeyLine,
  sameIdentity,
  type PrivateIdentity,
} from '../protocol/keys.js';

/** Private key files larger than this are refused before they are read. */
export const MAX_PRIVATE_KEY_FILE_BYTES = 64 * 1024;

function keyFormatError(message: string): ConfigError {
  return new KeyFormatError(message);
}

function commentFromPublicFile(path: string, privateIdentity: PrivateIdentity): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const publicIdentity = parsePublicKeyLine(text.split('\n')[0] ?? '');
    return sameIdentity(publicIdentity, privateIdentity.publicIdentity) ? publicIdentity.comment : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Loads a private key file. Refuses a file that group or others may access (mode & 0o077), like ssh does. The
 * comment comes from PATH.pub when that file holds the same key, else from an OpenSSH key's own comment.
 */
export function loadPrivateIdentity(path: string): PrivateIdentity {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw new BadConfigError(`cannot open private key ${path}: ${(error as Error).message}`, { cause: error });
  }
  let text: string;
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw keyFormatError(`private key ${path} is not a regular file`);
    const mode = stat.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw keyFormatError(
        `private key ${path} has mode 0${mode.toString(8)}, open to group or others; run chmod 600 ${path}`,
      );
    }
    if (stat.size > MAX_PRIVATE_KEY_FILE_BYTES) throw keyFormatError(`private key ${path} is too large to be a key`);
    text = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  let identity: PrivateIdentity;
  try {
    identity = parsePrivateKeyPem(text);
  } catch (error) {
    if (error instanceof ConfigError) throw withContext(error, path);
    throw error;
  }
  const comment = commentFromPublicFile(`${path}.pub`, identity);
  if (comment === undefined || comment === identity.publicIdentity.comment) return identity;
  return { privateKey: identity.privateKey, publicIdentity: { ...identity.publicIdentity, comment } };
}

function createExclusive(path: string, data: string, mode: number): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', mode);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'EEXIST') {
      throw new BadConfigError(`${path} already exists; refusing to overwrite it`, { cause: error });
    }
    throw new BadConfigError(`cannot create ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    fchmodSync(fd, mode);
    writeFileSync(fd, data);
  } catch (error) {
    closeSync(fd);
    unlinkSync(path);
    throw new BadConfigError(`cannot write ${path}: ${(error as Error).message}`, { cause: error });
  }
  closeSync(fd);
}

/**
 * Writes PATH (PKCS#8 PEM, created 0600 so it is never readable by others) and PATH.pub (0644, one line), making
 * PATH's directory (0700) when missing. Refuses with ConfigError(Config) when either file exists; never leaves a
 * private key without its public file.
 */
export function writeIdentityFiles(path: string, id: PrivateIdentity, comment: string): void {
  const publicPath = `${path}.pub`;
  const publicLine = `${formatPublicKeyLine(id.publicIdentity, comment)}\n`;
  for (const existing of [path, publicPath]) {
    if (existsSync(existing)) throw new BadConfigError(`${existing} already exists; refusing to overwrite it`);
  }
  // Like ssh-keygen with ~/.ssh: a missing directory (~/.netplumb on a fresh account) is made, private to its owner.
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  createExclusive(path, encodePrivateKeyPem(id), 0o600);
  try {
    createExclusive(publicPath, publicLine, 0o644);
  } catch (error) {
    unlinkSync(path);
    throw error;
  }
}
