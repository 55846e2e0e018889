// One-time keys: a controller asks the daemon for a key bound to one command (or recipe), an account, a set of
// named pipes and sockets and an expiry, and hands it to a node the daemon does not otherwise know. The key is an
// Ed25519 key pair made here; the node authenticates with it in the ordinary handshake, so it is bound to that
// session by the node's signature over the transcript, and the private key itself never crosses the wire again.
//
// Each key is one file in the store directory, `<id>.key` while good, renamed to `<id>.spent` when used. rename(2)
// is atomic, so exactly one of any number of racing connections (in this process or in others, as under inetd)
// spends a key, and a restart finds spent keys still spent. Files are removed once their key has expired.
//
//   minted (.key) --handshake with the key--> spent (.spent) --expiry--> removed
//        \--expiry--> removed

import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BadConfigError,
  KeyUsedUpError,
  NotAuthorizedError,
  NotPermittedError,
  TooManyConnectionsError,
} from '../protocol/errors.js';
import { encodePrivateKeyPem, formatPublicKeyLine, generateIdentity, type PublicIdentity } from '../protocol/keys.js';
import type { Endpoints, ExecRequest, KeyBinding, MintedKey, RecipeRequest } from '../protocol/session.js';
import { StartKind } from '../protocol/wire.js';

/** Most keys (good and spent, not yet expired) a store keeps; a mint beyond it is refused. */
export const MAX_STORED_ONE_TIME_KEYS = 10_000;

const GOOD = '.key';
const SPENT = '.spent';
const PARTIAL = '.new';
/** A partial record older than this is left from a mint that died (a mint takes milliseconds). */
const ABANDONED_PARTIAL_MS = 60_000;
const RECORD_VERSION = 1;

/** What the store keeps of a key: never the private half. */
export interface OneTimeKeyRecord {
  version: number;
  /** The key's fingerprint, as `ssh-keygen -lf` prints it. */
  fingerprint: string;
  /** Fingerprint of the controller that minted it. */
  controller: string;
  mintedAt: number;
  expiresAt: number;
  /** What the key may start; `user` is always set (the account resolved at mint time). */
  binding: KeyBinding & { user: string };
}

/** The file name part for a key: hex SHA-256 of its public blob (fingerprints hold `/` and `+`). */
function idOf(identity: PublicIdentity): string {
  return createHash('sha256').update(identity.blob).digest('hex');
}

export class OneTimeKeyStore {
  constructor(
    private readonly dir: string,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Makes a key bound to `binding` for `lifetimeSeconds`, records it (durably, before the key leaves) and returns
   * it. Expired records are removed first; a store at MAX_STORED_ONE_TIME_KEYS refuses.
   */
  mint(controller: PublicIdentity, binding: KeyBinding & { user: string }, lifetimeSeconds: number, hostKey: PublicIdentity): { key: MintedKey; record: OneTimeKeyRecord } {
    this.ensureDir();
    this.checkDir();
    if (this.purgeExpired() >= MAX_STORED_ONE_TIME_KEYS) {
      throw new TooManyConnectionsError(`the daemon holds ${MAX_STORED_ONE_TIME_KEYS} one-time keys already; wait for some to expire`);
    }
    const identity = generateIdentity('ed25519', 'netplumb one-time key');
    const mintedAt = this.now();
    const record: OneTimeKeyRecord = {
      version: RECORD_VERSION,
      fingerprint: identity.publicIdentity.fingerprint,
      controller: controller.fingerprint,
      mintedAt,
      expiresAt: mintedAt + lifetimeSeconds * 1000,
      binding,
    };
    const id = idOf(identity.publicIdentity);
    const temporary = join(this.dir, id + PARTIAL);
    writeFileSync(temporary, JSON.stringify(record), { mode: 0o600, flush: true });
    renameSync(temporary, join(this.dir, id + GOOD));
    this.syncDir();
    return {
      key: {
        privateKeyPem: encodePrivateKeyPem(identity),
        fingerprint: record.fingerprint,
        expiresAt: record.expiresAt,
        hostKey: formatPublicKeyLine(hostKey),
        user: binding.user,
      },
      record,
    };
  }

  /**
   * Spends the key a client authenticated with, if it is a good one-time key: exactly once, whatever races.
   * Returns undefined when the key was never minted here (the caller refuses it as unknown); throws a
   * HandshakeError(NP_NOT_AUTHORIZED) saying why for a key already used or expired.
   */
  spend(identity: PublicIdentity): OneTimeKeyRecord | undefined {
    const id = idOf(identity);
    if (!existsSync(this.dir)) return undefined;
    try {
      this.checkDir();
    } catch (error) {
      throw new NotAuthorizedError((error as Error).message, { cause: error });
    }
    const good = join(this.dir, id + GOOD);
    const spent = join(this.dir, id + SPENT);
    let record: OneTimeKeyRecord;
    try {
      record = parseRecord(readFileSync(good, 'utf8'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new NotAuthorizedError('one-time key record unreadable', { cause: error });
      if (this.exists(spent)) throw new KeyUsedUpError('one-time key already used');
      return undefined;
    }
    if (record.fingerprint !== identity.fingerprint) throw new NotAuthorizedError('one-time key record does not match the key');
    if (record.expiresAt <= this.now()) {
      rmSync(good, { force: true });
      throw new KeyUsedUpError('one-time key expired');
    }
    try {
      renameSync(good, spent);
    } catch (error) {
      // Another connection spent it between our read and our rename.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new KeyUsedUpError('one-time key already used');
      throw error;
    }
    this.syncDir();
    return record;
  }

  /** Removes the records of expired keys; returns how many records remain. */
  purgeExpired(): number {
    let remaining = 0;
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return 0;
    }
    for (const name of names) {
      const path = join(this.dir, name);
      // A record a mint was writing when its process died: never renamed into place, so it granted nothing.
      if (name.endsWith(PARTIAL)) {
        if (this.now() - statSafe(path) > ABANDONED_PARTIAL_MS) rmSync(path, { force: true });
        continue;
      }
      if (!name.endsWith(GOOD) && !name.endsWith(SPENT)) continue;
      try {
        if (parseRecord(readFileSync(path, 'utf8')).expiresAt <= this.now()) rmSync(path, { force: true });
        else remaining++;
      } catch {
        // A record that cannot be read never grants anything; it stays for someone to look at.
        remaining++;
      }
    }
    return remaining;
  }

  private ensureDir(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new BadConfigError(`cannot make the one-time key directory ${this.dir}: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * A record grants whatever it names: the store must be the daemon's own directory, which nobody else may write
   * to, or anyone who could would mint keys of their own.
   */
  private checkDir(): void {
    const stat = lstatSync(this.dir);
    const euid = process.geteuid?.();
    if (!stat.isDirectory() || (euid !== undefined && stat.uid !== euid) || (stat.mode & 0o022) !== 0) {
      throw new BadConfigError(`the one-time key directory ${this.dir} must be a directory of the daemon's own that group and others cannot write to`);
    }
  }

  private exists(path: string): boolean {
    try {
      closeSync(openSync(path, 'r'));
      return true;
    } catch {
      return false;
    }
  }

  /** A rename is durable only once the directory is: a key spent just before a crash stays spent. */
  private syncDir(): void {
    const fd = openSync(this.dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** A file's modification time in ms, or 0 when it is gone. */
function statSafe(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function parseRecord(text: string): OneTimeKeyRecord {
  const record = JSON.parse(text) as OneTimeKeyRecord;
  if (record.version !== RECORD_VERSION || typeof record.expiresAt !== 'number' || typeof record.binding?.user !== 'string') {
    throw new BadConfigError('not a one-time key record of this version');
  }
  return record;
}

/** Every path of `asked` is among those of `bound`, kind by kind. */
function endpointsWithin(asked: Endpoints, bound: Endpoints): boolean {
  const kinds = ['inFifos', 'outFifos', 'listenSockets', 'connectSockets'] as const;
  return kinds.every((kind) => asked[kind].every((path) => bound[kind].includes(path)));
}

/**
 * A one-time key's Start must ask for exactly the bound command (argv word for word) or recipe (the same text),
 * as the bound account, with no endpoint beyond the bound ones, without a pseudo-terminal and without exported
 * variables.
 */
export function checkBinding(binding: KeyBinding, request: ExecRequest | RecipeRequest): void {
  const refuse = (why: string): never => {
    throw new NotPermittedError(`this one-time key does not allow that: ${why}`);
  };
  if (request.kind !== binding.kind) refuse(`it is bound to a ${binding.kind === StartKind.Exec ? 'command' : 'recipe'}`);
  if (request.kind === StartKind.Exec && binding.kind === StartKind.Exec) {
    if (request.pty !== undefined) refuse('no pseudo-terminal');
    if (request.argv.length !== binding.argv.length || request.argv.some((word, index) => word !== binding.argv[index])) {
      refuse(`it is bound to the command ${JSON.stringify(binding.argv.join(' '))}`);
    }
  }
  if (request.kind === StartKind.Recipe && binding.kind === StartKind.Recipe && request.text !== binding.text) {
    refuse(`it is bound to another recipe (${binding.source})`);
  }
  if (request.user !== undefined && request.user !== binding.user) refuse(`it runs as ${binding.user ?? 'the default account'}`);
  // Variables could change what the bound words do (PATH, LD_PRELOAD, a script's settings): none are taken.
  if (request.env.length > 0) refuse('no exported variables');
  if (!endpointsWithin(request.endpoints, binding.endpoints)) refuse('a named pipe or socket it is not bound to');
}
