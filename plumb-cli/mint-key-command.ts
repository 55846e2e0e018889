// plumb machine -mint-key=FILE command (or -recipe=FILE): a controller asks the daemon, through the library, for a
// one-time key bound to the job, its account and its remote named pipes and sockets, and writes the key file;
// nothing runs.

import type { StartKind } from '../protocol/wire.js';
import type { EndpointOptions } from './endpoints.js';
import { connect, type OneTimeKey } from './library.js';
import type { MachineOptions } from './machine.js';
import { createKeyFile } from './one-time-key.js';
import { connectOptions } from './run-command.js';
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
  // Made (exclusively, mode 0600) before the key is asked for: a file that cannot be written costs no key.
  const keyFile = createKeyFile(file);
  let key: OneTimeKey;
  try {
    const machine = await connect(args.machine as string, connectOptions(args));
    try {
      const bound = 'argv' in job ? { argv: job.argv } : { text: job.text, source: job.source };
      key = await machine.mintKey({ ...bound, ...(job.user === undefined ? {} : { user: job.user }) }, { lifetimeSeconds: args.lifetimeSeconds, endpoints: args.endpoints });
    } finally {
      await machine.close();
    }
  } catch (error) {
    keyFile.discard();
    throw error;
  }
  keyFile.write(key.keyFile);
  process.stderr.write(`plumb: one-time key ${key.fingerprint} for ${args.machine as string} written to ${file}: good once, until ${key.expiresAt.toISOString()}, as ${key.user}\n`);
  return 0;
}
