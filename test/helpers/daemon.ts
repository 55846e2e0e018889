// End-to-end launcher: throwaway key files in a temp dir, a real netplumbd on 127.0.0.1 (random port), and runs of
// the real plumb binary against it. Whatever a helper starts or writes is removed by the scope's after hook (scope.ts):
// processes (and the process groups the daemon started) are killed, temp dirs deleted.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeIdentityFiles } from '../../bridges/key-files.js';
import { generateIdentity } from '../../protocol/keys.js';
import { childrenOf, delay, killGroup, spawnProcess, waitUntil, type ProcessResult, type RunningProcess, type RunOptions } from './processes.js';
import { onCleanup, tempDir, type Scope } from './scope.js';
import { NETPLUMBD_NODE_OPTIONS } from '../../daemon/node-options.js';

/** The compiled tree (build/): this file runs as build/test/helpers/daemon.js. */
const BUILD_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const BIN = {
  netplumbd: join(BUILD_ROOT, 'daemon', 'main.js'),
  plumb: join(BUILD_ROOT, 'plumb.mjs'),
} as const;

/**
 * What a service manager hands the service it starts. A test runner that is itself such a service (a CI runner
 * under systemd) would pass them on to every daemon a test starts, which would then notify that manager or take
 * its sockets. Removed from this test process once; a test that wants them sets them for its own daemon.
 */
const SERVICE_MANAGER_VARIABLES = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'JOURNAL_STREAM'];
for (const name of SERVICE_MANAGER_VARIABLES) delete process.env[name];

/** Generous, as the run timeouts in processes.ts: the machine has two cores shared with other test runs. */
const DAEMON_START_TIMEOUT_MS = 20_000;
const DAEMON_STOP_TIMEOUT_MS = 20_000;

export interface KeyFiles {
  privateFile: string;
  publicFile: string;
  /** The `.pub` line, as an authorized-clients line. */
  publicLine: string;
  fingerprint: string;
}

/** A new Ed25519 key pair written as dir/name and dir/name.pub. */
export function writeKeyPair(dir: string, name: string): KeyFiles {
  const identity = generateIdentity('ed25519', `e2e-${name}`);
  const privateFile = join(dir, name);
  writeIdentityFiles(privateFile, identity, `e2e-${name}`);
  return {
    privateFile,
    publicFile: `${privateFile}.pub`,
    publicLine: readFileSync(`${privateFile}.pub`, 'utf8').trim(),
    fingerprint: identity.publicIdentity.fingerprint,
  };
}

export interface DaemonOptions {
  hostKeyFile: string;
  clientsFile: string;
  /** Extra netplumbd arguments, e.g. `-handshake-timeout-ms=1000`. */
  args?: readonly string[];
  /**
   * A program netplumbd runs under, as its argv (`strace -f -o FILE`), node and netplumbd's arguments after it. The
   * DaemonProcess is then that program's, and its signals go to that program.
   */
  launcher?: readonly string[];
  /** The loopback address to listen on: 127.0.0.1 unless a test runs several machines (127.0.0.2, ...). */
  listenHost?: string;
  /** Variables added to the daemon's environment. */
  env?: NodeJS.ProcessEnv;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running netplumbd listening on a loopback address (127.0.0.1 unless told otherwise). */
export class DaemonProcess {
  private stderrText = '';
  private readonly knownGroups = new Set<number>();
  readonly exited: Promise<ExitInfo>;
  port = 0;
  /** The loopback address it listens on. */
  host = '127.0.0.1';

  constructor(readonly child: ChildProcess) {
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderrText += text));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** `HOST:PORT` (127.0.0.1 unless told otherwise), as plumb's machine argument. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Everything the daemon wrote to stderr (its log) so far. */
  log(): string {
    return this.stderrText;
  }

  /** Resolves with the log once it matches; rejects after timeoutMs or when the daemon exits first. */
  async waitForLog(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stderrText)) {
      if (!this.running) throw new Error(`netplumbd exited before its log matched ${pattern}: ${this.stderrText}`);
      if (Date.now() >= deadline) throw new Error(`netplumbd log did not match ${pattern} within ${timeoutMs} ms: ${this.stderrText}`);
      await delay(50);
    }
    return this.stderrText;
  }

  /**
   * The process groups of the commands the daemon runs now (each command leads its own group). Also
   * remembered, so cleanup can end them even after the daemon itself was killed.
   */
  commandGroups(): number[] {
    const groups = childrenOf(this.pid);
    for (const group of groups) this.knownGroups.add(group);
    return groups;
  }

  /** Sends a signal to the daemon (not to its commands); remembers their groups first. */
  kill(signal: NodeJS.Signals): void {
    this.commandGroups();
    this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it is still there after timeoutMs; resolves with how it ended. */
  async stop(timeoutMs = DAEMON_STOP_TIMEOUT_MS): Promise<ExitInfo> {
    if (this.running) {
      this.kill('SIGTERM');
      const timer = setTimeout(() => this.kill('SIGKILL'), timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }

  /** Kills whatever is left of the command groups the daemon was seen running. */
  killLeftoverGroups(): void {
    for (const group of this.knownGroups) killGroup(group, 'SIGKILL');
  }
}

/**
 * The config every test daemon starts from: commands run as whoever runs the tests (root in CI, which run-as must
 * then name), and one-time keys are kept in the test's own directory.
 */
export function baseDaemonConfig(dir: string): string {
  return `run-as ${userInfo().username}\none-time-keys ${join(dir, 'one-time-keys')}\n`;
}

/** Starts netplumbd on 127.0.0.1 (or options.listenHost) port 0 and waits for its `listening on` line. */
export async function startDaemon(scope: Scope, options: DaemonOptions): Promise<DaemonProcess> {
  const dir = tempDir(scope, 'netplumbd-conf-');
  const configFile = join(dir, 'netplumbd.conf');
  writeFileSync(configFile, baseDaemonConfig(dir));
  const [program, ...launcherArgs] = [...(options.launcher ?? []), process.execPath];
  const child = spawn(
    program as string,
    [
      ...launcherArgs,
      ...NETPLUMBD_NODE_OPTIONS,
      BIN.netplumbd,
      `-config=${configFile}`,
      `-listen=${options.listenHost ?? '127.0.0.1'}:0`,
      `-hostkey=${options.hostKeyFile}`,
      `-clients=${options.clientsFile}`,
      ...(options.args ?? []),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], ...(options.env === undefined ? {} : { env: { ...process.env, ...options.env } }) },
  );
  const daemon = new DaemonProcess(child);
  daemon.host = options.listenHost ?? '127.0.0.1';
  onCleanup(scope, async () => {
    if (daemon.running) daemon.commandGroups();
    await daemon.stop(5000);
    daemon.killLeftoverGroups();
  });
  const listening = new RegExp(`listening on ${daemon.host.replaceAll('.', '\\.')}:(\\d+)\\n`);
  const log = await daemon.waitForLog(listening, DAEMON_START_TIMEOUT_MS);
  daemon.port = Number(listening.exec(log)?.[1]);
  return daemon;
}

export interface PlumbCallOptions extends RunOptions {
  /** Passes -accept-new (default true: the first connection pins the daemon's key). */
  acceptNew?: boolean;
  /** Identity file (default: the fixture's authorized client key). */
  identity?: string;
  /** Machine argument (default: the daemon's 127.0.0.1:PORT). */
  machine?: string;
  /** plumb options placed before the machine argument. */
  options?: readonly string[];
}

/** A daemon with throwaway keys and a plumb home directory, ready for plumb runs. */
export interface Netplumb {
  dir: string;
  /** NETPLUMB_HOME of the plumb runs (holds known_hosts). */
  home: string;
  hostKey: KeyFiles;
  client: KeyFiles;
  clientsFile: string;
  daemon: DaemonProcess;
  /** The full argv of a plumb run (node, plumb's main, options, machine, command). */
  plumbArgv(command: readonly string[], options?: PlumbCallOptions): string[];
  plumbEnv(): NodeJS.ProcessEnv;
  plumb(command: readonly string[], options?: PlumbCallOptions): Promise<ProcessResult>;
  spawnPlumb(command: readonly string[], options?: PlumbCallOptions): RunningProcess;
}

export interface NetplumbOptions {
  /** Extra netplumbd arguments. */
  daemonArgs?: readonly string[];
  /** Options before the client's key on its authorized-clients line (`user=root,deploy`); default none. */
  clientOptions?: string;
  /** A program netplumbd runs under (see DaemonOptions). */
  launcher?: readonly string[];
  /** Variables added to the daemon's environment (undefined: removed). */
  daemonEnv?: NodeJS.ProcessEnv;
}

/** Keys in a temp dir, the client authorized, a daemon listening on 127.0.0.1. */
export async function startNetplumb(scope: Scope, options: NetplumbOptions = {}): Promise<Netplumb> {
  const dir = tempDir(scope);
  const home = join(dir, 'home');
  const hostKey = writeKeyPair(dir, 'host_key');
  const client = writeKeyPair(dir, 'identity');
  const clientsFile = join(dir, 'authorized_clients');
  writeFileSync(clientsFile, `${options.clientOptions === undefined ? '' : `${options.clientOptions} `}${client.publicLine}\n`);
  const launcher = options.launcher === undefined ? {} : { launcher: options.launcher };
  const env = options.daemonEnv === undefined ? {} : { env: options.daemonEnv };
  const daemon = await startDaemon(scope, { hostKeyFile: hostKey.privateFile, clientsFile, args: options.daemonArgs ?? [], ...launcher, ...env });
  const plumbEnv = (): NodeJS.ProcessEnv => ({ ...process.env, NETPLUMB_HOME: home });
  const plumbArgv = (command: readonly string[], call: PlumbCallOptions = {}): string[] => [
    process.execPath,
    BIN.plumb,
    `-identity=${call.identity ?? client.privateFile}`,
    ...(call.acceptNew === false ? [] : ['-accept-new']),
    ...(call.options ?? []),
    call.machine ?? daemon.address,
    ...command,
  ];
  const spawnPlumb = (command: readonly string[], call: PlumbCallOptions = {}): RunningProcess =>
    spawnProcess(scope, plumbArgv(command, call), { ...call, env: call.env ?? plumbEnv() });
  return {
    dir,
    home,
    hostKey,
    client,
    clientsFile,
    daemon,
    plumbArgv,
    plumbEnv,
    spawnPlumb,
    plumb: (command, call) => spawnPlumb(command, call).result,
  };
}

/**
 * Writes the authorized-clients file and reloads it with SIGHUP, as an operator would; resolves once the daemon
 * has taken it, and fails when the daemon refused the reload.
 */
export async function rewriteClients(daemon: DaemonProcess, clientsFile: string, text: string): Promise<void> {
  const count = (pattern: RegExp): number => (daemon.log().match(pattern) ?? []).length;
  const reloaded = /authorization reloaded/g;
  const refused = /reload refused/g;
  writeFileSync(clientsFile, text);
  const [reloadedBefore, refusedBefore] = [count(reloaded), count(refused)];
  daemon.kill('SIGHUP');
  await waitUntil('the reload', () => count(reloaded) > reloadedBefore || count(refused) > refusedBefore);
  if (count(refused) > refusedBefore) throw new Error(`the daemon refused the reload of ${clientsFile}: ${daemon.log()}`);
}

/** The error code at the end of plumb's one-line failure report, e.g. NP_NOT_AUTHORIZED. */
export function reportedCode(stderr: string): string | undefined {
  return /\((NP_[A-Z_]+)\)\s*$/.exec(stderr)?.[1];
}
