// Sessions run through the project's client code (connectToDaemon, runRemoteCommand) as plumb runs them, but many
// from one process without a Node start each: used by the bench's worker (worker.ts) for the load generator and the
// echo-beside-recipes row, plus the worker's way around a Node 20 crypto deadlock.

import { generateKeyPairSync, type JwkKeyExportOptions, type KeyExportOptions, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { connectToDaemon } from '../../plumb-cli/client.js';
import { runRemoteCommand, type RemoteJob } from '../../plumb-cli/run.js';
import type { SecureConnection } from '../../protocol/connection.js';
import { loadPrivateIdentity } from '../../bridges/key-files.js';
import { DEFAULT_LIMITS } from '../../protocol/wire.js';

/** A connection as plumb makes one (new socket and handshake), with the identity and known hosts under `home`. */
export function connectClient(port: number, home: string): Promise<SecureConnection> {
  return connectToDaemon(
    { name: `127.0.0.1:${port}`, host: '127.0.0.1', port },
    { identity: loadPrivateIdentity(join(home, 'identity')), knownHostsFile: join(home, 'known_hosts'), acceptNew: false, connectTimeoutMs: 10_000, note: () => undefined },
  );
}

export function discard(): Writable {
  return new Writable({ write: (_chunk, _encoding, callback) => callback() });
}

/** Runs `job` on an open connection as plumb would; resolves with the exit status plumb would end with. */
export function runClient(connection: SecureConnection, job: RemoteJob, stdin: Readable, stdout: Writable): Promise<number> {
  return runRemoteCommand(connection, {
    job,
    stdio: { stdin, stdout, stderr: discard() },
    signals: new EventEmitter(),
    maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
    initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
    maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
  });
}

/**
 * Node 20's crypto can deadlock the main thread for good when a garbage collection runs inside
 * `publicKey.export({ format: 'jwk' })` of a key from generateKeyPairSync: the collection finalizes the key
 * generation job, whose destructor takes the key's mutex, which the export is holding. protocol/handshake.ts does
 * exactly that for every x25519 ephemeral key, and a process making hundreds of handshakes (this worker) hangs
 * within seconds to minutes. In the bench's worker only, an x25519 public key's JWK is built from its DER encoding
 * instead (the same 32 bytes; the DER export does not hit the deadlock), so the load generator measures the daemon
 * rather than stopping at random. The daemon and plumb are left as they are.
 */
export function avoidJwkExportDeadlock(): void {
  const { publicKey } = generateKeyPairSync('x25519');
  const prototype = Object.getPrototypeOf(publicKey) as { export: (this: KeyObject, options?: KeyExportOptions<'der'> | JwkKeyExportOptions) => unknown };
  const original = prototype.export;
  prototype.export = function (this: KeyObject, options?: KeyExportOptions<'der'> | JwkKeyExportOptions): unknown {
    if (options?.format !== 'jwk' || this.type !== 'public' || this.asymmetricKeyType !== 'x25519') return original.call(this, options);
    const der = original.call(this, { format: 'der', type: 'spki' }) as Buffer;
    return { kty: 'OKP', crv: 'X25519', x: der.subarray(der.length - 32).toString('base64url') };
  };
}
