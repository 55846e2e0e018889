// plumb machine -mint-key=FILE command (or -recipe=FILE): a controller asks the daemon for a one-time key bound to
// the job, its account and its remote named pipes and sockets, and writes the key file; nothing runs.

import { formatPublicKeyLine } from '../protocol/keys.js';
import type { MintedKey } from '../protocol/session.js';
import { remoteEndpoints, type EndpointOptions } from './endpoints.js';
import { connectToMachine, type MachineOptions } from './machine.js';
import type { StartKind } from '../protocol/wire.js';
import { createKeyFile, formatKeyFile, mintOneTimeKey } from './one-time-key.js';
import type { RemoteJob } from './run.js';

/** How long a minted key stays good unless -expires says otherwise. */
export const DEFAULT_KEY_LIFETIME_SECONDS = 3600;

export interface MintKeyArguments extends MachineOptions {
  endpoints: EndpointOptions;
  /** -expires: the minted key's lifetime, in seconds. */
  lifetimeSeconds: number;
}

/** Writes the key file, or nothing when the daemon refuses; returns plumb's exit status. */
export async function mintKeyCommand(args: MintKeyArguments, file: string, job: Exclude<RemoteJob, { kind: StartKind.Forward }>): Promise<number> {
  const binding = { ...job, endpoints: remoteEndpoints(args.endpoints) };
  const keyFile = createKeyFile(file);
  let key: MintedKey;
  try {
    const connection = await connectToMachine(args);
    // The host key the node will pin is the one this connection has just verified, not what the reply says.
    const hostKey = formatPublicKeyLine(connection.peer.peer);
    key = { ...(await mintOneTimeKey(connection, { binding, lifetimeSeconds: args.lifetimeSeconds })), hostKey };
  } catch (error) {
    keyFile.discard();
    throw error;
  }
  keyFile.write(formatKeyFile(key, binding));
  process.stderr.write(`plumb: one-time key ${key.fingerprint} for ${args.machine as string} written to ${file}: good once, until ${new Date(key.expiresAt).toISOString()}, as ${key.user}\n`);
  return 0;
}
