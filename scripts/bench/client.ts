// Sessions run through the project's client code (connectToDaemon, runRemoteCommand) as plumb runs them, but many
// from one process without a Node start each: used by the bench's worker (worker.ts) for the load generator and the
// echo-beside-recipes row.

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
