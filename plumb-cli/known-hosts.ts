// The client's pinned daemon host keys, one `NAME keytype base64 [comment]` line per key (OpenSSH known_hosts
// style; NAME is `host` on DEFAULT_PORT, `[host]:port` otherwise). Malformed lines are skipped with a warning. Any
// pinned key for the name that differs from the presented one is a change, whatever its type.

import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { BadConfigError } from '../protocol/errors.js';
import { parsePublicKeyLine, sameIdentity, type PublicIdentity } from '../protocol/keys.js';
import { DEFAULT_PORT } from '../protocol/wire.js';

/** Every result carries the warnings for lines that were skipped (`file:line: reason`). */
export type HostKeyCheck =
  | { status: 'match'; warnings: string[] }
  | { status: 'unknown'; warnings: string[] }
  | { status: 'changed'; pinned: PublicIdentity; line: number; warnings: string[] };

/** Characters that would make a name ambiguous in the file, or that OpenSSH reads as patterns or hashes. */
const UNSUPPORTED_HOST_CHARS = /[\s#,[\]*?!|@"]/;

function normaliseHost(host: string): string {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === '' || UNSUPPORTED_HOST_CHARS.test(bare)) {
    throw new BadConfigError(`unusable host name ${JSON.stringify(host)}`);
  }
  return bare.toLowerCase();
}

/** The known_hosts name of a daemon: `host` on DEFAULT_PORT, `[host]:port` otherwise (IPv6: `[::1]:7021`). */
export function hostKeyName(host: string, port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new BadConfigError(`port ${port} is not in 1..65535`);
  }
  const name = normaliseHost(host);
  return port === DEFAULT_PORT ? name : `[${name}]:${port}`;
}

/** The canonical form of a name read from the file, or undefined when it is not one this format allows. */
function canonicalName(name: string): string | undefined {
  const bracketed = /^\[([^\]]+)\]:([0-9]{1,5})$/.exec(name);
  try {
    if (bracketed !== null) return hostKeyName(bracketed[1] ?? '', Number(bracketed[2]));
    return hostKeyName(name, DEFAULT_PORT);
  } catch {
    return undefined;
  }
}

function readKnownHosts(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return undefined;
    throw new BadConfigError(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
}

/** Compares the presented key with what `file` pins for host:port; a missing file means unknown. */
export function checkHostKey(file: string, host: string, port: number, presented: PublicIdentity): HostKeyCheck {
  const wanted = hostKeyName(host, port);
  const warnings: string[] = [];
  const text = readKnownHosts(file);
  if (text === undefined) return { status: 'unknown', warnings };
  let matched = false;
  let changed: { pinned: PublicIdentity; line: number } | undefined;
  for (const [index, raw] of text.split('\n').entries()) {
    const lineNumber = index + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const split = /^(\S+)\s+(.*)$/.exec(line);
    if (split === null) {
      warnings.push(`${file}:${lineNumber}: a line needs a host name and a key`);
      continue;
    }
    const name = canonicalName(split[1] ?? '');
    if (name === undefined) {
      warnings.push(`${file}:${lineNumber}: unsupported host name ${JSON.stringify(split[1])}`);
      continue;
    }
    let pinned: PublicIdentity;
    try {
      pinned = parsePublicKeyLine(split[2] ?? '');
    } catch (error) {
      warnings.push(`${file}:${lineNumber}: ${(error as Error).message}`);
      continue;
    }
    if (name !== wanted) continue;
    if (sameIdentity(pinned, presented)) matched = true;
    else changed ??= { pinned, line: lineNumber };
  }
  if (matched) return { status: 'match', warnings };
  if (changed !== undefined) return { status: 'changed', pinned: changed.pinned, line: changed.line, warnings };
  return { status: 'unknown', warnings };
}

/**
 * Appends `NAME keytype base64` (no comment: a presented key's comment is the peer's text, not ours). Creates the
 * directory 0700 and the file 0600 when missing.
 */
export function addHostKey(file: string, host: string, port: number, key: PublicIdentity): void {
  const name = hostKeyName(host, port);
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const fd = openSync(file, 'a+', 0o600);
    try {
      const { size } = fstatSync(fd);
      const last = Buffer.alloc(1);
      const needsNewline = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
      writeSync(fd, `${needsNewline ? '\n' : ''}${name} ${key.line}\n`);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    throw new BadConfigError(`cannot add a host key to ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
