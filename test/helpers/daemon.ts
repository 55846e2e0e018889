// End-to-end launcher: throwaway keys in a temp dir, a real netplumbd on 127.0.0.1 (random port), and runners
// for the real plumb binary and other processes. Whatever a helper starts or writes is removed by the scope's
// after hook: processes (and the process groups the daemon started) are killed, temp dirs deleted.

import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { writeIdentityFiles } from '../../bridges/key-files.js';
import { generateIdentity } from '../../protocol/keys.js';

/** The compiled tree (build/): this file runs as build/test/helpers/daemon.js. */
const BUILD_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const BIN = {
  netplumbd: join(BUILD_ROOT, 'daemon', 'main.js'),
  plumb: join(BUILD_ROOT, 'plumb-cli', 'main.js'),
} as const;

/** Generous bounds: the machine has two cores shared with other test runs. */
export const DEFAULT_RUN_TIMEOUT_MS = 60_000;
const DAEMON_START_TIMEOUT_MS = 20_000;
const DAEMON_STOP_TIMEOUT_MS = 20_000;

/** Anything with an after hook: a TestContext, or `{ after }` from node:test for a whole file. */
export interface Scope {
  after(fn: () => unknown): void;
}

/** Runs cleanup tasks last-registered-first, once, from a single after hook of the scope. */
class Cleanup {
  private readonly tasks: (() => unknown)[] = [];

  constructor(scope: Scope) {
    scope.after(async () => {
      for (const task of this.tasks.splice(0).reverse()) {
        try {
          await task();
        } catch {
          // One failed cleanup step must not leave the others undone.
        }
      }
    });
  }

  add(task: () => unknown): void {
    this.tasks.push(task);
  }
}

const cleanups = new WeakMap<Scope, Cleanup>();

function cleanupOf(scope: Scope): Cleanup {
  let cleanup = cleanups.get(scope);
  if (cleanup === undefined) {
    cleanup = new Cleanup(scope);
    cleanups.set(scope, cleanup);
  }
  return cleanup;
}

/** Registers a cleanup step on the scope, run (with the others, newest first) after the test. */
export function onCleanup(scope: Scope, task: () => unknown): void {
  cleanupOf(scope).add(task);
}

/** A fresh directory under the system temp dir, removed afterwards. */
export function tempDir(scope: Scope, prefix = 'netplumb-e2e-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(scope, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

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

export interface ProcessResult {
  /** Exit status, or null when the process was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface RunOptions {
  /** Bytes to write then close, a stream to pipe in, or 'open' to leave stdin to the caller. Default: closed at once. */
  stdin?: Buffer | string | Readable | 'open';
  /** 'buffer' collects stdout into the result; 'stream' leaves child.stdout to the caller. */
  stdout?: 'buffer' | 'stream';
  /** 'text' collects stderr into the result; 'stream' leaves child.stderr (bytes) to the caller. */
  stderr?: 'text' | 'stream';
  env?: NodeJS.ProcessEnv;
  /** Working directory (default: this process's). */
  cwd?: string;
  /** The process (its whole group) is killed after this long and the result rejects. */
  timeoutMs?: number;
}

export interface RunningProcess {
  child: ChildProcess;
  /** Settles once the process has exited and its output streams have closed. */
  result: Promise<ProcessResult>;
  /** stdout so far (empty with stdout: 'stream'). */
  stdoutSoFar(): string;
  stderrSoFar(): string;
  /** Resolves once stdout so far matches; rejects after timeoutMs or if the process ends first. */
  waitForStdout(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves once stderr so far matches; rejects after timeoutMs or if the process ends first. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** Sends a signal to a whole process group; quiet when it is already gone. */
export function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: nothing left.
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts argv[0] with the rest as arguments in its own process group; the group is killed at cleanup if
 * anything of it is still there. stdin, stdout and stderr are pipes.
 */
export function spawnProcess(scope: Scope, argv: readonly string[], options: RunOptions = {}): RunningProcess {
  const [file, ...args] = argv as [string, ...string[]];
  const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: options.env ?? process.env, ...(options.cwd === undefined ? {} : { cwd: options.cwd }) });
  const pid = child.pid;
  onCleanup(scope, () => {
    if (pid !== undefined) killGroup(pid, 'SIGKILL');
  });
  const stdin = child.stdin as NonNullable<ChildProcess['stdin']>;
  stdin.on('error', () => undefined);
  const input = options.stdin;
  if (input === undefined) stdin.end();
  else if (input === 'open') {
    // The caller writes and ends it.
  } else if (typeof input === 'string' || Buffer.isBuffer(input)) stdin.end(input);
  else if (input instanceof Readable) {
    input.on('error', () => stdin.destroy());
    stdin.on('error', () => input.destroy());
    stdin.on('close', () => {
      input.unpipe(stdin);
      input.destroy();
    });
    input.pipe(stdin);
  }
  const stdoutChunks: Buffer[] = [];
  if (options.stdout !== 'stream') child.stdout?.on('data', (chunk: Buffer) => stdoutChunks.push(chunk));
  let stderr = '';
  if (options.stderr !== 'stream') child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const timeoutMs = options.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
  const result = new Promise<ProcessResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      if (pid !== undefined) killGroup(pid, 'SIGKILL');
      reject(new Error(`${argv.join(' ')} did not finish within ${timeoutMs} ms; stderr so far: ${stderr}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(stdoutChunks), stderr });
    });
  });
  // A caller that only awaits later must not see an unhandled rejection in between.
  result.catch(() => undefined);
  let ended = false;
  child.once('close', () => (ended = true));
  const stdoutSoFar = (): string => Buffer.concat(stdoutChunks).toString();
  const stderrSoFar = (): string => stderr;
  const waitFor = async (name: string, text: () => string, pattern: RegExp, timeoutMs = 20_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const seen = text();
      if (pattern.test(seen)) return seen;
      if (ended) throw new Error(`${argv[0]} ended before its ${name} matched ${pattern}: ${JSON.stringify(seen)}; stderr: ${stderr}`);
      if (Date.now() >= deadline) throw new Error(`${name} did not match ${pattern} within ${timeoutMs} ms: ${JSON.stringify(seen)}`);
      await delay(20);
    }
  };
  return {
    child,
    result,
    stdoutSoFar,
    stderrSoFar,
    waitForStdout: (pattern, timeoutMs) => waitFor('stdout', stdoutSoFar, pattern, timeoutMs),
    waitForStderr: (pattern, timeoutMs) => waitFor('stderr', stderrSoFar, pattern, timeoutMs),
  };
}

/** Runs a process to completion; see spawnProcess. */
export function runProcess(scope: Scope, argv: readonly string[], options: RunOptions = {}): Promise<ProcessResult> {
  return spawnProcess(scope, argv, options).result;
}

export interface DaemonOptions {
  hostKeyFile: string;
  clientsFile: string;
  /** Extra netplumbd arguments, e.g. `-handshake-timeout-ms=1000`. */
  args?: readonly string[];
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running netplumbd listening on 127.0.0.1. */
export class DaemonProcess {
  private stderrText = '';
  private readonly knownGroups = new Set<number>();
  readonly exited: Promise<ExitInfo>;
  port = 0;

  constructor(readonly child: ChildProcess) {
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderrText += text));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** `127.0.0.1:PORT`, as plumb's machine argument. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
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

/** Starts netplumbd on 127.0.0.1 port 0 and waits for its `listening on` line. */
export async function startDaemon(scope: Scope, options: DaemonOptions): Promise<DaemonProcess> {
  const dir = tempDir(scope, 'netplumbd-conf-');
  const configFile = join(dir, 'netplumbd.conf');
  writeFileSync(configFile, baseDaemonConfig(dir));
  const child = spawn(
    process.execPath,
    [
      BIN.netplumbd,
      `-config=${configFile}`,
      '-listen=127.0.0.1:0',
      `-hostkey=${options.hostKeyFile}`,
      `-clients=${options.clientsFile}`,
      ...(options.args ?? []),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const daemon = new DaemonProcess(child);
  onCleanup(scope, async () => {
    if (daemon.running) daemon.commandGroups();
    await daemon.stop(5000);
    daemon.killLeftoverGroups();
  });
  const log = await daemon.waitForLog(/listening on 127\.0\.0\.1:\d+\n/, DAEMON_START_TIMEOUT_MS);
  daemon.port = Number(/listening on 127\.0\.0\.1:(\d+)\n/.exec(log)?.[1]);
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
}

/** Keys in a temp dir, the client authorized, a daemon listening on 127.0.0.1. */
export async function startNetplumb(scope: Scope, options: NetplumbOptions = {}): Promise<Netplumb> {
  const dir = tempDir(scope);
  const home = join(dir, 'home');
  const hostKey = writeKeyPair(dir, 'host_key');
  const client = writeKeyPair(dir, 'identity');
  const clientsFile = join(dir, 'authorized_clients');
  writeFileSync(clientsFile, `${client.publicLine}\n`);
  const daemon = await startDaemon(scope, { hostKeyFile: hostKey.privateFile, clientsFile, args: options.daemonArgs ?? [] });
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

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until check() is true; rejects with `what` after timeoutMs. */
export async function waitUntil(what: string, check: () => boolean, timeoutMs = 10_000, stepMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(stepMs);
  }
}

/** A word unlikely to appear anywhere else, to find a test's processes by their command line. */
export function uniqueMarker(name: string): string {
  return `np-e2e-${name}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

/** Pids of the live processes whose command line contains marker (this test process excluded). */
export function processesWithMarker(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.includes(marker) && !isZombie(Number(entry))) found.push(Number(entry));
  }
  return found;
}

/** Kills (SIGKILL) every process whose command line contains marker, at cleanup. */
export function killMarkedAtCleanup(scope: Scope, marker: string): void {
  onCleanup(scope, () => {
    for (const pid of processesWithMarker(marker)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  });
}

/** The fields of /proc/PID/stat after the command name; index 0 is field 3 (state); undefined once it is gone. */
export function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may itself hold spaces or parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function isZombie(pid: number): boolean {
  return statFields(pid)?.[0] === 'Z';
}

/** Pids of the live children of a process. */
export function childrenOf(parent: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields !== undefined && Number(fields[1]) === parent && fields[0] !== 'Z' && alive(Number(entry))) children.push(Number(entry));
  }
  return children;
}

// Deterministic payloads: an AES-256-CTR keystream keyed by a seed, so both ends can produce or check the same
// bytes without storing them. The remote side runs the same stream as a `node -e` one-liner.

const CHUNK_BYTES = 64 * 1024;

function keystream(seed: string): { next(bytes: number): Buffer } {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK_BYTES);
  return { next: (bytes) => cipher.update(bytes === CHUNK_BYTES ? zeros : zeros.subarray(0, bytes)) };
}

/** A Readable of exactly `bytes` bytes of the seed's stream, honouring backpressure. */
export function deterministicStream(seed: string, bytes: number): Readable {
  const source = keystream(seed);
  let left = bytes;
  return new Readable({
    highWaterMark: CHUNK_BYTES,
    read() {
      while (left > 0) {
        const size = Math.min(left, CHUNK_BYTES);
        left -= size;
        if (!this.push(source.next(size))) return;
      }
      this.push(null);
    },
  });
}

/** The first `bytes` bytes of the seed's stream, in memory (for small payloads). */
export function deterministicBytes(seed: string, bytes: number): Buffer {
  const source = keystream(seed);
  const pieces: Buffer[] = [];
  for (let left = bytes; left > 0; left -= CHUNK_BYTES) pieces.push(source.next(Math.min(left, CHUNK_BYTES)));
  return Buffer.concat(pieces, bytes);
}

/** SHA-256 (hex) of the first `bytes` bytes of the seed's stream. */
export function deterministicSha256(seed: string, bytes: number): string {
  const source = keystream(seed);
  const hash = createHash('sha256');
  for (let left = bytes; left > 0; left -= CHUNK_BYTES) hash.update(source.next(Math.min(left, CHUNK_BYTES)));
  return hash.digest('hex');
}

/**
 * The remote generator: `node -e GENERATOR_SCRIPT SEED [BYTES]` writes the seed's stream (endless without BYTES)
 * and exits quietly when its reader goes away.
 */
export const GENERATOR_SCRIPT = [
  "const c=require('crypto');",
  "const x=c.createCipheriv('aes-256-ctr',c.createHash('sha256').update(process.argv[1]).digest(),Buffer.alloc(16));",
  `const z=Buffer.alloc(${CHUNK_BYTES});`,
  'let left=process.argv[2]===undefined?Infinity:Number(process.argv[2]);',
  "process.stdout.on('error',()=>process.exit(0));",
  `function go(){while(left>0){const n=Math.min(left,${CHUNK_BYTES});left-=n;`,
  `if(!process.stdout.write(x.update(n===${CHUNK_BYTES}?z:z.subarray(0,n)))){process.stdout.once('drain',go);return}}}`,
  'go()',
].join('');

/** argv of a remote command writing the seed's stream: endless, or `bytes` long. */
export function generatorCommand(seed: string, bytes?: number): string[] {
  return [process.execPath, '-e', GENERATOR_SCRIPT, seed, ...(bytes === undefined ? [] : [String(bytes)])];
}

/** Hashes a stream as it flows; resolves with the byte count and SHA-256 (hex) at its end. */
export function hashStream(stream: Readable): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    stream.once('error', reject);
    stream.once('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
  });
}

