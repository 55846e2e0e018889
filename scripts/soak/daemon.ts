// The soak's daemon: throwaway keys and config (the fixture), a netplumbd per phase on 127.0.0.1 with its heap
// capped, and how a crashed one is told. Every daemon started is listed in `daemons` so the run's end stops them all.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPrivateIdentity } from '../../bridges/key-files.js';
import { parsePublicKeyLine, type PrivateIdentity, type PublicIdentity } from '../../protocol/keys.js';
import { DEFAULT_LIMITS } from '../../protocol/wire.js';
import { baseDaemonConfig, BIN, DaemonProcess, writeKeyPair, type KeyFiles } from '../../test/helpers/daemon.js';
import type { Options, PhaseName } from './options.js';
import { NETPLUMBD_NODE_OPTIONS } from '../../daemon/node-options.js';

/** The daemon's old space is capped so that a leak ends in a crash the soak reports, not in a swapping machine. */
export const DAEMON_MAX_OLD_SPACE_MB = 512;
/** How long a daemon may take to say it is listening. */
const DAEMON_START_TIMEOUT_MS = 20_000;

export interface Fixture {
  dir: string;
  hostKey: KeyFiles;
  hostPublic: PublicIdentity;
  client: KeyFiles;
  identity: PrivateIdentity;
  clientsFile: string;
  configFile: string;
  /** NETPLUMB_HOME of the plumb run (its known_hosts). */
  plumbHome: string;
}

export function makeFixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'netplumb-soak-'));
  const hostKey = writeKeyPair(dir, 'host_key');
  const client = writeKeyPair(dir, 'identity');
  const clientsFile = join(dir, 'authorized_clients');
  writeFileSync(clientsFile, `${client.publicLine}\n`);
  const configFile = join(dir, 'netplumbd.conf');
  writeFileSync(configFile, baseDaemonConfig(dir));
  const plumbHome = join(dir, 'home');
  mkdirSync(plumbHome);
  return {
    dir,
    hostKey,
    hostPublic: parsePublicKeyLine(hostKey.publicLine),
    client,
    identity: loadPrivateIdentity(client.privateFile),
    clientsFile,
    configFile,
    plumbHome,
  };
}

export interface Daemon {
  process: DaemonProcess;
  port: number;
  /** Where the daemon runs and writes heap snapshots. */
  cwd: string;
}

/** Every daemon started, so the end of the run stops whatever is left of them. */
export const daemons: DaemonProcess[] = [];

export async function startSoakDaemon(fixture: Fixture, phase: PhaseName, options: Options): Promise<Daemon> {
  const cwd = mkdtempSync(join(fixture.dir, `${phase}-`));
  const nodeFlags = [...NETPLUMBD_NODE_OPTIONS, `--max-old-space-size=${DAEMON_MAX_OLD_SPACE_MB}`, ...(phase === 'idle' && options.heapSummary ? ['--heapsnapshot-signal=SIGUSR2'] : [])];
  const child = spawn(
    process.execPath,
    [
      ...nodeFlags,
      BIN.netplumbd,
      `-config=${fixture.configFile}`,
      '-listen=127.0.0.1:0',
      `-hostkey=${fixture.hostKey.privateFile}`,
      `-clients=${fixture.clientsFile}`,
      `-spool=${join(cwd, 'spool')}`,
      `-max-connections=${Math.max(DEFAULT_LIMITS.maxConnections, options.sessions + 64)}`,
      '-log-level=warn',
    ],
    { cwd, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const daemon = new DaemonProcess(child);
  daemons.push(daemon);
  const log = await daemon.waitForLog(/listening on 127\.0\.0\.1:\d+\n/, DAEMON_START_TIMEOUT_MS);
  daemon.port = Number(/listening on 127\.0\.0\.1:(\d+)\n/.exec(log)?.[1]);
  return { process: daemon, port: daemon.port, cwd };
}

/** How a daemon that is gone ended, with the last lines of its log (V8's out-of-memory report among them). */
export function crashReport(daemon: DaemonProcess): string {
  const exit = daemon.child.exitCode !== null ? `exit ${daemon.child.exitCode}` : `signal ${daemon.child.signalCode ?? '?'}`;
  const tail = daemon
    .log()
    .trim()
    .split('\n')
    .filter((line) => line.trim() !== '')
    .slice(-3)
    .join(' | ');
  return `daemon crashed (${exit})${tail === '' ? '' : `: ${tail.slice(0, 300)}`}`;
}
