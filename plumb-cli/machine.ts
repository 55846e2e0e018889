// The machine a command goes to, as the command line names it: resolved through the options, $NETPLUMB_HOME/config
// and $NETPLUMB_HOME/hosts (host-config.ts), reached with the identity (or one-time key) and known hosts that gives,
// both ends authenticated before anything is sent.

import { loadPrivateIdentity } from '../bridges/key-files.js';
import type { SecureConnection } from '../protocol/connection.js';
import { connectToDaemon, wireBytes } from './client.js';
import { resolveMachine, type MachineSettings } from './host-config.js';
import { loadKeyFile } from './one-time-key.js';
import { clientPaths, type ClientPaths } from './paths.js';

export interface MachineOptions {
  machine: string | undefined;
  identity: string | undefined;
  knownHosts: string | undefined;
  /** Absent: as $NETPLUMB_HOME/config says (AcceptNew), else no. */
  acceptNew?: boolean | undefined;
  port: number | undefined;
  verbose?: boolean;
  /** -one-time-key: authenticate with this key file (and the host key it names). */
  oneTimeKey: string | undefined;
  /** -limit-rate: bytes per second each connection carries at most, each way. */
  limitRate?: number | undefined;
  /** -user: the account on the machine. */
  user: string | undefined;
  /** The machine's settings, when resolved already (withMachineSettings); else resolved on connecting. */
  settings?: MachineSettings | undefined;
  /** Where the identity, known_hosts, hosts and config files are; default: from $NETPLUMB_HOME. */
  paths?: ClientPaths;
  /** What plumb does, as -v says it; default: plumb's stderr with -v, nowhere without. */
  onNote?: (line: string) => void;
  /** What the user should know whatever -v says (a host key newly pinned, a doubtful known_hosts line); default: plumb's stderr. */
  onWarning?: (line: string) => void;
}

/** The options with the machine's settings resolved once, its account (-user, else the config's User) included. */
export function withMachineSettings<T extends MachineOptions>(args: T): T & { settings: MachineSettings; user: string | undefined } {
  const settings = args.settings ?? resolveMachine(args.machine as string, args, args.paths ?? clientPaths());
  return { ...args, settings, user: settings.user };
}

/** Connects to the machine's daemon and authenticates both ends. */
export function connectToMachine(args: MachineOptions): Promise<SecureConnection> {
  const toStderr = (line: string): void => void process.stderr.write(`plumb: ${line}\n`);
  const warn = args.onWarning ?? toStderr;
  const note = args.onNote ?? (args.verbose === true ? toStderr : () => undefined);
  const settings = args.settings ?? resolveMachine(args.machine as string, args, args.paths ?? clientPaths());
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

/**
 * The last -v line of a recipe across machines, after one line per machine: plumb's connections together, the
 * ciphers they used, and the bytes the edges delivered from daemon to daemon, which none of those lines counts.
 */
export function sayRunSummary(args: Pick<MachineOptions, 'verbose'>, connections: readonly SecureConnection[], connectedAt: number, edges: { count: number; bytes: number }): void {
  // A run that failed before any part connected has no connection to sum up.
  if (args.verbose !== true || connections.length === 0) return;
  const all = connections.flatMap((connection) => wireBytes(connection) ?? []);
  const bytes = { sent: all.reduce((sum, each) => sum + each.sent, 0), received: all.reduce((sum, each) => sum + each.received, 0) };
  const ciphers = [...new Set(connections.map((connection) => connection.peer.cipher))].join(',');
  saySummary(args, bytes, ciphers, connectedAt, `${counted(connections.length, 'machine')}: `, `; ${edges.bytes} bytes on ${counted(edges.count, 'edge')} between them`);
}

/** `1 edge`, `2 edges`. */
function counted(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** sayConnectionSummary's line, from what a run reports of its connection; `after` ends the line. */
export function saySummary(args: Pick<MachineOptions, 'verbose'>, bytes: { sent: number; received: number }, cipher: string, connectedAt: number, label = '', after = ''): void {
  if (args.verbose !== true) return;
  const seconds = ((performance.now() - connectedAt) / 1000).toFixed(2);
  process.stderr.write(`plumb: ${label}${bytes.sent} bytes sent, ${bytes.received} bytes received in ${seconds} s, cipher ${cipher}${after}\n`);
}
