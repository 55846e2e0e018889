// A real netplumbd for the fuzzers: throwaway keys, an authorized-clients file with one unrestricted line and one
// bound to a gluepot, a spool and key store in a temp dir, a capped heap (so a leak ends as a crash), its log in a
// file, and its resident memory sampled. Everything it made is removed by cleanup(), the log kept on request.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { writeIdentityFiles } from '../../bridges/key-files.js';
import { generateIdentity, type PrivateIdentity } from '../../protocol/keys.js';
import { DEFAULT_LIMITS } from '../../protocol/wire.js';
import { PROGRAMS } from '../built-programs.js';
import { NETPLUMBD_NODE_OPTIONS } from '../../daemon/node-options.js';

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 20_000;
const PLUMB_TIMEOUT_MS = 60_000;
const RSS_SAMPLE_MS = 200;
/** How often the daemon's children are noted, so that a crash cannot leave their process groups behind. */
const CHILD_SCAN_MS = 1000;

/** The gluepot the restricted client is bound to: harmless programs only, and one directory outside the spool. */
export const GLUEPOT_NAME = 'fuzz';

export interface FuzzDaemonOptions {
  /** --max-old-space-size of the daemon's Node, in MiB. */
  heapMb: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** An identity the daemon knows (or, for the stranger, does not), with its private key file for plumb. */
export interface FuzzIdentity {
  identity: PrivateIdentity;
  file: string;
}

export interface PlumbResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  durationMs: number;
}

function writeIdentity(dir: string, name: string, identity: PrivateIdentity): FuzzIdentity {
  const file = join(dir, name);
  writeIdentityFiles(file, identity, `fuzz-${name}`);
  return { identity, file };
}

/** Resident set size of a process in KiB, or undefined once it is gone. */
export function rssKb(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** CPU time a process has used (user and system), in seconds, or undefined once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Direct children of a process, from /proc (zombies left out). */
function childrenOf(parent: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name may hold spaces and parentheses: the fields start after its last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] !== 'Z' && Number(fields[1]) === parent) children.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return children;
}

export class FuzzDaemon {
  readonly maxPacketBytes = DEFAULT_LIMITS.maxPacketBytes;
  readonly initialWindowBytes = DEFAULT_LIMITS.initialWindowBytes;
  port = 0;
  rssBeforeKb = 0;
  rssPeakKb = 0;
  /** CPU seconds at the last sample: what is known after the daemon has gone. */
  lastCpuSeconds = 0;
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | undefined;
  private readonly commandGroups = new Set<number>();
  private readonly timers: NodeJS.Timeout[] = [];

  private constructor(
    readonly dir: string,
    readonly logFile: string,
    readonly spoolDir: string,
    /** A directory outside the spool that the gluepot's `path` line allows. */
    readonly outsideDir: string,
    readonly hostKey: FuzzIdentity,
    /** Authorized without restriction (and a controller, so MintKey is decoded and checked). */
    readonly open: FuzzIdentity,
    /** Authorized through the gluepot (a controller too). */
    readonly glued: FuzzIdentity,
    /** Keys the daemon does not know: one Ed25519, one RSA. */
    readonly strangers: readonly PrivateIdentity[],
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      }),
    );
  }

  /** Makes the temp dir, keys and files, starts netplumbd on 127.0.0.1 port 0 and waits for it to listen. */
  static async start(options: FuzzDaemonOptions): Promise<FuzzDaemon> {
    const dir = mkdtempSync(join(tmpdir(), 'netplumb-fuzz-'));
    try {
      return await FuzzDaemon.startIn(dir, options);
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  private static async startIn(dir: string, options: FuzzDaemonOptions): Promise<FuzzDaemon> {
    const keys = join(dir, 'keys');
    const hostKey = writeIdentity(keys, 'host_key', generateIdentity('ed25519', 'fuzz-host'));
    const open = writeIdentity(keys, 'open', generateIdentity('ed25519', 'fuzz-open'));
    const glued = writeIdentity(keys, 'glued', generateIdentity('ed25519', 'fuzz-glued'));
    const strangers = [generateIdentity('ed25519', 'fuzz-stranger'), generateIdentity('rsa', 'fuzz-stranger-rsa')];
    const spoolDir = join(dir, 'spool');
    const outsideDir = join(dir, 'outside');
    const gluepotDir = join(dir, 'gluepots');
    for (const made of [spoolDir, outsideDir, gluepotDir]) mkdirSync(made, { mode: 0o700 });
    writeFileSync(join(gluepotDir, GLUEPOT_NAME), `/usr/bin/true\n/usr/bin/false\n/usr/bin/echo ...\npath ${outsideDir}/*\n`);
    const clientsFile = join(dir, 'authorized_clients');
    const line = (identity: FuzzIdentity): string => readFileSync(`${identity.file}.pub`, 'utf8').trim();
    writeFileSync(clientsFile, `controller ${line(open)}\ncontroller,gluepot=${GLUEPOT_NAME} ${line(glued)}\n`);
    const configFile = join(dir, 'netplumbd.conf');
    // run-as is required when the daemon runs as root; the fuzzers' commands then run as whoever runs the fuzz.
    writeFileSync(
      configFile,
      [`run-as ${userInfo().username}`, `one-time-keys ${join(dir, 'one-time-keys')}`, `spool ${spoolDir}`, `gluepots ${gluepotDir}`, ''].join('\n'),
    );
    const logFile = join(dir, 'netplumbd.log');
    const logFd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(
        process.execPath,
        [`--max-old-space-size=${options.heapMb}`, ...NETPLUMBD_NODE_OPTIONS, PROGRAMS.netplumbd, `-config=${configFile}`, '-listen=127.0.0.1:0', `-hostkey=${hostKey.file}`, `-clients=${clientsFile}`],
        { stdio: ['ignore', 'ignore', logFd] },
      );
    } finally {
      closeSync(logFd);
    }
    const daemon = new FuzzDaemon(dir, logFile, spoolDir, outsideDir, hostKey, open, glued, strangers, child);
    try {
      daemon.port = await daemon.waitForPort();
    } catch (error) {
      await daemon.stop();
      throw error;
    }
    daemon.rssBeforeKb = rssKb(daemon.pid) ?? 0;
    daemon.rssPeakKb = daemon.rssBeforeKb;
    daemon.timers.push(setInterval(() => daemon.sampleRss(), RSS_SAMPLE_MS), setInterval(() => daemon.noteChildren(), CHILD_SCAN_MS));
    return daemon;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** How the daemon ended, once it has. */
  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  rssKb(): number | undefined {
    return rssKb(this.pid);
  }

  cpuSeconds(): number | undefined {
    return cpuSeconds(this.pid);
  }

  private sampleRss(): void {
    const now = rssKb(this.pid);
    if (now !== undefined && now > this.rssPeakKb) this.rssPeakKb = now;
    this.lastCpuSeconds = cpuSeconds(this.pid) ?? this.lastCpuSeconds;
  }

  private noteChildren(): void {
    if (this.running) for (const child of childrenOf(this.pid)) this.commandGroups.add(child);
  }

  private async waitForPort(): Promise<number> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const log = readFileSync(this.logFile, 'utf8');
      const match = /listening on 127\.0\.0\.1:(\d+)\n/.exec(log);
      if (match !== null) return Number(match[1]);
      if (!this.running) throw new Error(`netplumbd exited before listening: ${log}`);
      if (Date.now() >= deadline) throw new Error(`netplumbd did not listen within ${START_TIMEOUT_MS} ms: ${log}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** `plumb 127.0.0.1:PORT true` as a user would run it, with the unrestricted identity. */
  plumbTrue(): Promise<PlumbResult> {
    const started = Date.now();
    const home = join(this.dir, 'home');
    const child = spawn(process.execPath, [PROGRAMS.plumb, `-identity=${this.open.file}`, '-accept-new', `127.0.0.1:${this.port}`, 'true'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, NETPLUMB_HOME: home },
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    return new Promise((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), PLUMB_TIMEOUT_MS);
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stderr, durationMs: Date.now() - started });
      });
    });
  }

  /** SIGTERM (SIGKILL if it lingers), then ends whatever is left of the process groups of its commands. */
  async stop(): Promise<ExitInfo> {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    this.noteChildren();
    if (this.running) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this.exited;
      clearTimeout(timer);
    }
    for (const group of this.commandGroups) {
      try {
        process.kill(-group, 'SIGKILL');
      } catch {
        // Already gone, as it should be.
      }
    }
    return this.exited;
  }

  /** Removes the temp dir; with keepLog, everything but the daemon's log (keys included). */
  cleanup(keepLog: boolean): void {
    if (!keepLog) {
      rmSync(this.dir, { recursive: true, force: true });
      return;
    }
    for (const entry of readdirSync(this.dir)) {
      if (join(this.dir, entry) !== this.logFile) rmSync(join(this.dir, entry), { recursive: true, force: true });
    }
  }
}
