// The machine a command goes to, as the command line names it: resolved through $NETPLUMB_HOME/hosts, reached with
// the identity (or one-time key) and known hosts the options give, both ends authenticated before anything is sent.

import { loadPrivateIdentity } from '../bridges/key-files.js';
import type { SecureConnection } from '../protocol/connection.js';
import { connectToDaemon, wireBytes } from './client.js';
import { loadKeyFile } from './one-time-key.js';
import { clientPaths, resolveTarget } from './paths.js';

export interface MachineOptions {
  machine: string | undefined;
  identity: string | undefined;
  knownHosts: string | undefined;
  acceptNew: boolean;
  port: number | undefined;
  verbose: boolean;
  /** -one-time-key: authenticate with this key file (and the host key it names). */
  oneTimeKey: string | undefined;
  /** -limit-rate: bytes per second each connection carries at most, each way. */
  limitRate?: number | undefined;
}

/** Connects to the machine's daemon and authenticates both ends. */
export function connectToMachine(args: MachineOptions): Promise<SecureConnection> {
  const paths = clientPaths();
  const note = (line: string): void => {
    if (args.verbose) process.stderr.write(`plumb: ${line}\n`);
  };
  const target = resolveTarget(args.machine as string, paths.hosts, args.port);
  const oneTime = args.oneTimeKey === undefined ? undefined : loadKeyFile(args.oneTimeKey);
  const identity = oneTime?.identity ?? loadPrivateIdentity(args.identity ?? paths.identity);
  return connectToDaemon(target, {
    identity,
    ...(oneTime === undefined ? {} : { pinnedHostKey: oneTime.hostKey }),
    knownHostsFile: args.knownHosts ?? paths.knownHosts,
    acceptNew: args.acceptNew,
    connectTimeoutMs: 10_000,
    ...(args.limitRate === undefined ? {} : { bytesPerSecond: args.limitRate }),
    note: (line) => (line.startsWith('Permanently') || line.startsWith('warning') ? process.stderr.write(`plumb: ${line}\n`) : note(line)),
  });
}

/**
 * With -v, the run's last line: what the connection carried each way on the wire (framing and encryption
 * included), how long plumb was connected, and the cipher.
 */
export function sayConnectionSummary(args: Pick<MachineOptions, 'verbose'>, connection: SecureConnection, connectedAt: number, label = ''): void {
  if (!args.verbose) return;
  const bytes = wireBytes(connection);
  if (bytes === undefined) return;
  const seconds = ((performance.now() - connectedAt) / 1000).toFixed(2);
  process.stderr.write(`plumb: ${label}${bytes.sent} bytes sent, ${bytes.received} bytes received in ${seconds} s, cipher ${connection.peer.cipher}\n`);
}
