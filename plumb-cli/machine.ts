// The machine a command goes to, as the command line names it: resolved through $NETPLUMB_HOME/hosts, reached with
// the identity (or one-time key) and known hosts the options give, both ends authenticated before anything is sent.

import { loadPrivateIdentity } from '../bridges/key-files.js';
import type { SecureConnection } from '../protocol/connection.js';
import { connectToDaemon, wireBytes } from './client.js';
import { loadKeyFile } from './one-time-key.js';
import { clientPaths, resolveTarget, type ClientPaths } from './paths.js';

export interface MachineOptions {
  machine: string | undefined;
  identity: string | undefined;
  knownHosts: string | undefined;
  acceptNew: boolean;
  port: number | undefined;
  verbose?: boolean;
  /** -one-time-key: authenticate with this key file (and the host key it names). */
  oneTimeKey: string | undefined;
  /** -limit-rate: bytes per second each connection carries at most, each way. */
  limitRate?: number | undefined;
  /** Where the identity, known_hosts and hosts files are; default: from $NETPLUMB_HOME. */
  paths?: ClientPaths;
  /** What plumb does, as -v says it; default: plumb's stderr with -v, nowhere without. */
  onNote?: (line: string) => void;
  /** What the user should know whatever -v says (a host key newly pinned, a doubtful known_hosts line); default: plumb's stderr. */
  onWarning?: (line: string) => void;
}

/** Connects to the machine's daemon and authenticates both ends. */
export function connectToMachine(args: MachineOptions): Promise<SecureConnection> {
  const paths = args.paths ?? clientPaths();
  const toStderr = (line: string): void => void process.stderr.write(`plumb: ${line}\n`);
  const warn = args.onWarning ?? toStderr;
  const note = args.onNote ?? (args.verbose === true ? toStderr : () => undefined);
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
    note: (line) => (line.startsWith('Permanently') || line.startsWith('warning') ? warn(line) : note(line)),
  });
}

/**
 * With -v, the run's last line: what the connection carried each way on the wire (framing and encryption
 * included), how long plumb was connected, and the cipher.
 */
export function sayConnectionSummary(args: Pick<MachineOptions, 'verbose'>, connection: SecureConnection, connectedAt: number, label = ''): void {
  const bytes = wireBytes(connection);
  if (bytes !== undefined) saySummary(args, bytes, connection.peer.cipher, connectedAt, label);
}

/** sayConnectionSummary's line, from what a run reports of its connection. */
export function saySummary(args: Pick<MachineOptions, 'verbose'>, bytes: { sent: number; received: number }, cipher: string, connectedAt: number, label = ''): void {
  if (args.verbose !== true) return;
  const seconds = ((performance.now() - connectedAt) / 1000).toFixed(2);
  process.stderr.write(`plumb: ${label}${bytes.sent} bytes sent, ${bytes.received} bytes received in ${seconds} s, cipher ${cipher}\n`);
}
