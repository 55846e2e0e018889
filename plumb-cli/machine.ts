// The machine a command goes to, as the command line names it: resolved through the options, $NETPLUMB_HOME/config
// and $NETPLUMB_HOME/hosts (host-config.ts), reached with the identity (or one-time key) and known hosts that gives,
// both ends authenticated before anything is sent.

import { loadPrivateIdentity } from '../bridges/key-files.js';
import type { SecureConnection } from '../protocol/connection.js';
import { connectToDaemon, wireBytes } from './client.js';
import { resolveMachine, type MachineSettings } from './host-config.js';
import { loadKeyFile } from './one-time-key.js';

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
  /** -user: the account on the machine. */
  user: string | undefined;
  /** The machine's settings, when resolved already (withMachineSettings); else resolved on connecting. */
  settings?: MachineSettings | undefined;
}

/** The options with the machine's settings resolved once, its account (-user, else the config's User) included. */
export function withMachineSettings<T extends MachineOptions>(args: T): T & { settings: MachineSettings; user: string | undefined } {
  const settings = args.settings ?? resolveMachine(args.machine as string, args);
  return { ...args, settings, user: settings.user };
}

/** Connects to the machine's daemon and authenticates both ends. */
export function connectToMachine(args: MachineOptions): Promise<SecureConnection> {
  const note = (line: string): void => {
    if (args.verbose) process.stderr.write(`plumb: ${line}\n`);
  };
  const settings = args.settings ?? resolveMachine(args.machine as string, args);
  for (const line of settings.applied) note(`config: ${line}`);
  const oneTime = args.oneTimeKey === undefined ? undefined : loadKeyFile(args.oneTimeKey);
  const identity = oneTime?.identity ?? loadPrivateIdentity(settings.identityFile);
  return connectToDaemon(settings.target, {
    identity,
    ...(oneTime === undefined ? {} : { pinnedHostKey: oneTime.hostKey }),
    knownHostsFile: settings.knownHostsFile,
    acceptNew: settings.acceptNew,
    connectTimeoutMs: settings.connectTimeoutMs,
    ...(settings.limitRate === undefined ? {} : { bytesPerSecond: settings.limitRate }),
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
