// One-time keys at plumb's end: a controller mints one over its own connection (-mint-key=FILE) and writes the
// key file; a node that the daemon does not otherwise know runs the bound command with it (-one-time-key=FILE).
// The file holds the key's private half and the daemon's host key, so the node can authenticate the daemon
// without a known_hosts entry of its own.
//
//   # netplumb one-time key SHA256:..., good once until 2026-12-03T19:00:00.000Z
//   # runs: tar -cf - /srv   (as backup)
//   daemon-host-key ssh-ed25519 AAAA...
//   -----BEGIN PRIVATE KEY-----
//   ...
//   -----END PRIVATE KEY-----

import { closeSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { SecureConnection } from '../protocol/connection.js';
import {
  BadConfigError,
  ConnectionLostError,
  isErrorCode,
  KeyFormatError,
  RemoteError,
  UnexpectedPacketError,
  UsageError,
  type NetplumbError,
} from '../protocol/errors.js';
import { encodeFields, type FieldList } from '../protocol/fields.js';
import { MAX_PRIVATE_KEY_FILE_BYTES } from '../bridges/key-files.js';
import { parsePrivateKeyPem, parsePublicKeyLine, type PrivateIdentity, type PublicIdentity } from '../protocol/keys.js';
import { Mux, type MuxStream, type SessionHandler } from '../protocol/mux.js';
import { decodeMintReply, encodeMintRequest, type MintedKey, type MintReply, type MintRequest } from '../protocol/session.js';
import { DEFAULT_LIMITS, MAX_ONE_TIME_KEY_SECONDS, MintStatus, PacketType, StartKind } from '../protocol/wire.js';

const HOST_KEY_PREFIX = 'daemon-host-key ';

/** `90`, `90s`, `15m`, `2h`, `1d`: a key's lifetime in seconds. */
export function parseLifetime(value: string): number {
  const match = /^([1-9][0-9]{0,6})([smhd]?)$/.exec(value);
  if (match === null) throw new UsageError(`bad lifetime ${value}: expected a number of seconds, or with m, h or d`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  const seconds = Number(match[1]) * unit;
  if (seconds > MAX_ONE_TIME_KEY_SECONDS) throw new UsageError(`-expires=${value} is longer than the longest lifetime a key may have, ${MAX_ONE_TIME_KEY_SECONDS / 86400} days`);
  return seconds;
}

/** Waits for the daemon's one MintKey reply; anything else from the daemon is a protocol error. */
class MintSession implements SessionHandler {
  readonly reply: Promise<MintReply>;
  private resolveReply: (reply: MintReply) => void = () => undefined;
  private rejectReply: (error: NetplumbError) => void = () => undefined;

  constructor() {
    this.reply = new Promise((resolve, reject) => {
      this.resolveReply = resolve;
      this.rejectReply = reject;
    });
  }

  packet(type: PacketType, fields: FieldList): void {
    if (type !== PacketType.MintKey) throw new UnexpectedPacketError(`packet type ${type} not expected while minting a key`);
    this.resolveReply(decodeMintReply(fields, isErrorCode));
  }

  streamOpened(stream: MuxStream): void {
    stream.destroy();
  }

  closed(error: NetplumbError | undefined): void {
    this.rejectReply(error ?? new ConnectionLostError('connection closed before the key was minted'));
  }
}

/** Asks the daemon for a one-time key; throws RequestError with the daemon's reason when it refuses. */
export async function mintOneTimeKey(connection: SecureConnection, request: MintRequest): Promise<MintedKey> {
  const session = new MintSession();
  const mux = new Mux(
    connection,
    {
      side: 'client',
      maxStreams: 1,
      initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
      maxWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
      maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
    },
    session,
  );
  connection.attach(mux);
  connection.send(PacketType.MintKey, encodeFields(encodeMintRequest(request)));
  try {
    const reply = await session.reply;
    if (reply.status === MintStatus.Refused) throw new RemoteError(reply.code, reply.message);
    return reply.key;
  } finally {
    await connection.close();
  }
}

/** The key file's text: a comment saying what it is for, the daemon's host key, the private key. */
export function formatKeyFile(key: MintedKey, binding: MintRequest['binding']): string {
  const runs = binding.kind === StartKind.Exec ? binding.argv.map(shellQuoted).join(' ') : `the recipe ${binding.source}`;
  return [
    `# netplumb one-time key ${key.fingerprint}, good once until ${new Date(key.expiresAt).toISOString()}`,
    `# runs: ${runs.replace(/[\r\n]/g, ' ')}   (as ${key.user})`,
    `${HOST_KEY_PREFIX}${key.hostKey}`,
    key.privateKeyPem.trimEnd(),
    '',
  ].join('\n');
}

/** A word as a shell would need it written, so the comment shows the exact command to run. */
function shellQuoted(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/**
 * The key file, made (empty, readable by its owner only) before the key is asked for, so that a file that cannot
 * be made costs no key; an existing file is never overwritten. `write` fills it; `discard` removes it when no key
 * came.
 */
export function createKeyFile(path: string): { write: (text: string) => void; discard: () => void } {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (error) {
    throw new BadConfigError(`cannot write the one-time key to ${path}: ${(error as Error).message}`, { cause: error });
  }
  return {
    write: (text) => {
      try {
        writeFileSync(fd, text);
      } finally {
        closeSync(fd);
      }
    },
    discard: () => {
      closeSync(fd);
      rmSync(path, { force: true });
    },
  };
}

/** Reads a key file: the identity to authenticate with and the host key the daemon must present. */
export function loadKeyFile(path: string): { identity: PrivateIdentity; hostKey: PublicIdentity } {
  let text: string;
  try {
    const stat = statSync(path);
    if (stat.size > MAX_PRIVATE_KEY_FILE_BYTES) throw new KeyFormatError('file too large for a key file');
    if ((stat.mode & 0o077) !== 0) throw new KeyFormatError(`permissions ${(stat.mode & 0o777).toString(8)} are too open: only its owner may read it`);
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new KeyFormatError(`one-time key ${path}: ${(error as Error).message}`, { cause: error });
  }
  const hostLine = text.split('\n').find((line) => line.startsWith(HOST_KEY_PREFIX));
  if (hostLine === undefined) throw new KeyFormatError(`one-time key ${path}: no ${HOST_KEY_PREFIX.trim()} line`);
  const pemStart = text.indexOf('-----BEGIN ');
  if (pemStart < 0) throw new KeyFormatError(`one-time key ${path}: no private key`);
  try {
    return { hostKey: parsePublicKeyLine(hostLine.slice(HOST_KEY_PREFIX.length)), identity: parsePrivateKeyPem(text.slice(pemStart)) };
  } catch (error) {
    throw new KeyFormatError(`one-time key ${path}: ${(error as Error).message}`, { cause: error });
  }
}
