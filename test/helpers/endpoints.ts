// Helpers for named pipe, socket and terminal tests: FIFOs filled and drained by child processes (never a blocking
// open here), plumb run from its own working directory, echo services, process memory, leftover files, a throwaway
// PostgreSQL on a Unix socket, and plumb driven on a pseudo-terminal as a person would.

import { execFileSync } from 'node:child_process';
import { chownSync, lstatSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { connect, createServer, type NetConnectOpts, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { spawn as spawnPty, type IPty } from 'node-pty';
import { startNetplumb, type Netplumb, type PlumbCallOptions } from './daemon.js';
import { GENERATOR_SCRIPT } from './payloads.js';
import { delay, runProcess, spawnProcess, type RunningProcess } from './processes.js';
import { onCleanup, tempDir, type Scope } from './scope.js';

export function mkfifo(path: string): void {
  execFileSync('mkfifo', ['-m', '600', path]);
}

/** plumb started with its working directory at cwd, where its relative FIFO paths are (the daemon's are in its spool). */
export function spawnPlumbIn(scope: Scope, np: Netplumb, cwd: string, command: readonly string[], options: PlumbCallOptions = {}): RunningProcess {
  // `env -C` execs plumb itself, so the child's pid is plumb's.
  return spawnProcess(scope, ['env', '-C', cwd, ...np.plumbArgv(command, options)], { ...options, env: options.env ?? np.plumbEnv() });
}

/** A child that writes `bytes` bytes of the seed's stream into a FIFO (its open blocks in the child until a reader comes). */
export function writeSeedInto(scope: Scope, fifo: string, seed: string, bytes: number, timeoutMs?: number): RunningProcess {
  return spawnProcess(scope, ['sh', '-c', 'exec "$0" -e "$1" "$2" "$3" > "$4"', process.execPath, GENERATOR_SCRIPT, seed, String(bytes), fifo], {
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
}

/** A child that writes the given bytes into a FIFO, then closes it. */
export function writeInto(scope: Scope, fifo: string, data: Buffer | string, timeoutMs?: number): RunningProcess {
  return spawnProcess(scope, ['sh', '-c', 'exec cat > "$0"', fifo], { stdin: data, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
}

/**
 * `node -e HASH_READER FILE PAUSE_MS START_DELAY_MS` opens FILE (a FIFO: blocking, in its own process) after
 * START_DELAY_MS, reads it to EOF pausing PAUSE_MS after each chunk, and prints `BYTES SHA256`.
 */
export const HASH_READER = [
  "const h=require('crypto').createHash('sha256');let n=0;",
  'const [file,pause,start]=[process.argv[1],Number(process.argv[2]||0),Number(process.argv[3]||0)];',
  "setTimeout(()=>{const s=require('fs').createReadStream(file,{highWaterMark:65536});",
  "s.on('data',(c)=>{n+=c.length;h.update(c);if(pause>0){s.pause();setTimeout(()=>s.resume(),pause)}});",
  "s.on('end',()=>console.log(n+' '+h.digest('hex')))},start);",
].join('');

/** A child that reads a FIFO to its EOF (one round) and prints `BYTES SHA256`. */
export function hashFrom(scope: Scope, fifo: string, options: { pauseMs?: number; startDelayMs?: number; timeoutMs?: number } = {}): RunningProcess {
  return spawnProcess(scope, [process.execPath, '-e', HASH_READER, fifo, String(options.pauseMs ?? 0), String(options.startDelayMs ?? 0)], {
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
}

/** `BYTES SHA256` as a hashing child printed it. */
export function parseHashLine(stdout: Buffer): { bytes: number; sha256: string } {
  const [bytes, sha256] = stdout.toString().trim().split(' ');
  return { bytes: Number(bytes), sha256: sha256 ?? '' };
}

/** Reads one round of a FIFO through `cat` in a child. */
export async function readRound(scope: Scope, fifo: string, timeoutMs?: number): Promise<Buffer> {
  const result = await runProcess(scope, ['cat', fifo], timeoutMs === undefined ? {} : { timeoutMs });
  if (result.code !== 0) throw new Error(`cat ${fifo} failed: ${result.stderr}`);
  return result.stdout;
}

/** Resident memory of a process in bytes (VmRSS), or undefined once it is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** Samples the RSS of some processes every stepMs until stop() and returns each one's peak. */
export function watchRss(pids: Record<string, number>, stepMs = 100): { stop(): Record<string, number> } {
  const peaks: Record<string, number> = Object.fromEntries(Object.keys(pids).map((name) => [name, 0]));
  const sample = (): void => {
    for (const [name, pid] of Object.entries(pids)) {
      const rss = rssBytes(pid);
      if (rss !== undefined && rss > (peaks[name] ?? 0)) peaks[name] = rss;
    }
  };
  sample();
  const timer = setInterval(sample, stepMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peaks;
    },
  };
}

/** Names of the FIFOs and sockets in a directory (recursively): what a run may have left behind. */
export function specialFilesIn(dir: string): string[] {
  const found: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return found;
  }
  for (const entry of entries) {
    const path = join(dir, entry);
    // Read while the daemon may still be removing what it made: a name gone by now is not left behind.
    const stat = lstatSync(path, { throwIfNoEntry: false });
    if (stat === undefined) continue;
    if (stat.isFIFO() || stat.isSocket()) found.push(path);
    else if (stat.isDirectory()) found.push(...specialFilesIn(path));
  }
  return found.sort();
}

/**
 * A connection to the Unix socket at `path` once something accepts there. The socket file appears at bind(2), a
 * moment before listen(2), and a connect in between is refused, as it would be for any server's socket: a client
 * that starts as soon as the file exists tries again, until timeoutMs have passed.
 */
export async function connectWhenListening(path: string, timeoutMs = 20_000, options: Omit<NetConnectOpts, 'path'> = {}): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect({ ...options, path });
        socket.once('connect', () => {
          socket.off('error', reject);
          resolve(socket);
        });
        socket.once('error', reject);
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'ECONNREFUSED' && code !== 'ENOENT') || Date.now() >= deadline) throw error;
      await delay(20);
    }
  }
}

export interface EchoService {
  server: Server;
  /** Connections accepted so far. */
  accepted(): number;
}

/**
 * A service on a Unix socket that sends back every byte it gets and ends its side once the client ended its own
 * (half-close), so a client can write everything, end, and still read the whole echo.
 */
export async function startEchoService(scope: Scope, path: string): Promise<EchoService> {
  let count = 0;
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    count++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  onCleanup(scope, () => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, accepted: () => count };
}

/** One end of an in-memory pair: its writes land in the peer's readable side, held back while that one is full. */
class PairEnd extends Duplex {
  peer: PairEnd | undefined;
  /** The write that filled the peer: completed once the peer's reader asks for more. */
  private blocked: (() => void) | undefined;

  constructor(highWaterMark: number) {
    super({ allowHalfOpen: true, highWaterMark });
  }

  override _read(): void {
    const peer = this.peer;
    const blocked = peer?.blocked;
    if (peer !== undefined) peer.blocked = undefined;
    blocked?.();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const peer = this.peer;
    if (peer === undefined || peer.destroyed) {
      callback(new Error('peer gone'));
      return;
    }
    if (peer.push(chunk)) callback();
    else this.blocked = () => callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.peer?.push(null);
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A drop (not the automatic destroy once both directions ended) drops the peer too, as a StreamClose does.
    const orderly = error === null && this.readableEnded && this.writableFinished;
    if (!orderly && this.peer !== undefined && !this.peer.destroyed) this.peer.destroy();
    callback(error);
  }
}

/**
 * A connected pair of in-memory Duplex streams with backpressure and half-close (each end's end() is the other's
 * EOF; a destroy drops both), standing in for a mux stream (near) and its far end.
 */
export function halfClosePair(highWaterMarkBytes = 64 * 1024): { near: Duplex; far: Duplex } {
  const near = new PairEnd(highWaterMarkBytes);
  const far = new PairEnd(highWaterMarkBytes);
  near.peer = far;
  far.peer = near;
  return { near, far };
}

/** Collects a readable's bytes until its end. */
export function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

const POSTGRES_BIN = '/usr/lib/postgresql/15/bin';
const POSTGRES_USER = 'postgres';
const POSTGRES_START_TIMEOUT_MS = 60_000;

/** A throwaway PostgreSQL cluster listening only on the Unix socket `socketDir/.s.PGSQL.5432`. */
export interface Postgres {
  socketDir: string;
  socketPath: string;
}

/**
 * initdb and start PostgreSQL as the postgres user (it refuses to run as root), on a Unix socket only; stopped (fast,
 * then immediate) at cleanup whatever happened. Fails with a clear message when PostgreSQL is not installed.
 */
export async function startPostgres(scope: Scope): Promise<Postgres> {
  for (const program of ['initdb', 'pg_ctl', 'postgres']) {
    try {
      lstatSync(join(POSTGRES_BIN, program));
    } catch {
      throw new Error(`PostgreSQL 15 is needed for this test (${POSTGRES_BIN}/${program} is missing): apt-get install postgresql-15`);
    }
  }
  const base = tempDir(scope, 'netplumb-pg-');
  const dataDir = join(base, 'data');
  const socketDir = join(base, 'sock');
  mkdirSync(dataDir, { mode: 0o700 });
  mkdirSync(socketDir, { mode: 0o700 });
  const uid = Number(execFileSync('id', ['-u', POSTGRES_USER]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', POSTGRES_USER]).toString().trim());
  for (const dir of [base, dataDir, socketDir]) chownSync(dir, uid, gid);
  const asPostgres = (argv: string[]): string[] => (process.getuid?.() === 0 ? ['runuser', '-u', POSTGRES_USER, '--', ...argv] : argv);
  const init = await runProcess(scope, asPostgres([join(POSTGRES_BIN, 'initdb'), '-D', dataDir, '-U', POSTGRES_USER, '--auth=trust', '--no-sync']), {
    timeoutMs: POSTGRES_START_TIMEOUT_MS,
  });
  if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const pgCtl = (args: string[]): string[] => asPostgres([join(POSTGRES_BIN, 'pg_ctl'), '-D', dataDir, ...args]);
  onCleanup(scope, async () => {
    const stopped = await runProcess(scope, pgCtl(['stop', '-m', 'fast', '-w', '-t', '20']), { timeoutMs: 30_000 }).catch(() => undefined);
    if (stopped?.code !== 0) await runProcess(scope, pgCtl(['stop', '-m', 'immediate', '-w', '-t', '20']), { timeoutMs: 30_000 }).catch(() => undefined);
  });
  const options = `-c listen_addresses='' -c unix_socket_directories=${socketDir} -c fsync=off`;
  const start = await runProcess(scope, pgCtl(['start', '-w', '-t', '50', '-l', join(base, 'postgres.log'), '-o', options]), {
    timeoutMs: POSTGRES_START_TIMEOUT_MS,
  });
  if (start.code !== 0) {
    let log = '';
    try {
      log = readFileSync(join(base, 'postgres.log'), 'utf8');
    } catch {
      // No log yet.
    }
    throw new Error(`pg_ctl start failed: ${start.stderr}\n${log}`);
  }
  return { socketDir, socketPath: join(socketDir, '.s.PGSQL.5432') };
}

/** A daemon whose spool directory is spool, and a separate working directory for plumb (local). */
export interface EndpointNetplumb {
  np: Netplumb;
  /** plumb's working directory: where its relative FIFO paths are. */
  local: string;
  /** The daemon's spool directory: where the remote relative paths are ($NETPLUMB_SPOOL of the commands). */
  spool: string;
  /** plumb with its working directory at local. */
  spawnPlumb(command: readonly string[], options?: PlumbCallOptions): RunningProcess;
}

export async function startEndpointNetplumb(scope: Scope, daemonArgs: readonly string[] = []): Promise<EndpointNetplumb> {
  const base = tempDir(scope, 'netplumb-ep-');
  const local = join(base, 'local');
  const spool = join(base, 'spool');
  mkdirSync(local);
  mkdirSync(spool, { mode: 0o700 });
  const np = await startNetplumb(scope, { daemonArgs: [`-spool=${spool}`, ...daemonArgs] });
  return { np, local, spool, spawnPlumb: (command, options = {}) => spawnPlumbIn(scope, np, local, command, options) };
}

/** argv of a remote shell command line, run by sh with its positional parameters ($0 is the first of args). */
export function remoteShell(script: string, ...args: string[]): string[] {
  return ['sh', '-c', script, ...args];
}

/**
 * `node -e ECHO_SERVER PATH`: listens on the Unix socket PATH, echoes every connection (ending its side after the
 * client's end), prints `ready`, and exits once its stdin ends.
 */
export const ECHO_SERVER = [
  "const net=require('net');",
  "const s=net.createServer({allowHalfOpen:true},(c)=>{c.on('error',()=>{});c.pipe(c)});",
  "s.listen(process.argv[1],()=>console.log('ready'));",
  "process.stdin.on('end',()=>{s.close();process.exit(0)});process.stdin.resume();",
].join('');

/**
 * `node -e HASH_CLIENT PATH SEED BYTES`: connects to the Unix socket PATH, sends BYTES bytes of the seed's stream,
 * ends its side, and prints `BYTES SHA256` of everything it got back.
 */
export const HASH_CLIENT = [
  "const c=require('crypto'),net=require('net');",
  "const [path,seed,total]=[process.argv[1],process.argv[2],Number(process.argv[3])];",
  "const x=c.createCipheriv('aes-256-ctr',c.createHash('sha256').update(seed).digest(),Buffer.alloc(16));",
  'const z=Buffer.alloc(65536);let left=total;',
  "const h=c.createHash('sha256');let n=0;",
  "const s=net.connect({path,allowHalfOpen:true});s.on('error',(e)=>{console.error(e.message);process.exit(3)});",
  "s.on('data',(d)=>{n+=d.length;h.update(d)});s.on('end',()=>{console.log(n+' '+h.digest('hex'));s.end()});",
  "function go(){while(left>0){const k=Math.min(left,65536);left-=k;if(!s.write(x.update(k===65536?z:z.subarray(0,k)))){s.once('drain',go);return}}s.end()}",
  "s.on('connect',go);",
].join('');

/** A process on a pseudo-terminal of the test's, typed into and read like a terminal. */
export interface Terminal {
  pty: IPty;
  /** Everything shown so far, with the terminals' CR LF as LF. */
  screen(): string;
  type(text: string): void;
  /** Resolves with the screen once it matches; rejects after timeoutMs or when the process ended first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when the process has ended; rejects after timeoutMs. */
  exit(timeoutMs?: number): Promise<{ exitCode: number; signal: number | undefined }>;
}

/** Starts argv on a new pseudo-terminal of cols x rows; killed at cleanup if still there. */
export function startOnTerminal(scope: Scope, argv: readonly string[], options: { cols: number; rows: number; env: NodeJS.ProcessEnv; cwd?: string }): Terminal {
  const [file, ...args] = argv as [string, ...string[]];
  const env = Object.fromEntries(Object.entries(options.env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  const pty = spawnPty(file, args, { name: env['TERM'] ?? 'xterm-256color', cols: options.cols, rows: options.rows, cwd: options.cwd ?? process.cwd(), env });
  let output = '';
  pty.onData((data) => (output += data));
  let ended: { exitCode: number; signal: number | undefined } | undefined;
  const exited = new Promise<{ exitCode: number; signal: number | undefined }>((resolve) =>
    pty.onExit(({ exitCode, signal }) => {
      ended = { exitCode, signal };
      resolve(ended);
    }),
  );
  onCleanup(scope, () => {
    if (ended === undefined) pty.kill('SIGKILL');
  });
  // A remote terminal's CR LF comes through a local one in libuv's raw mode, which keeps ONLCR: CR CR LF.
  const screen = (): string => output.replace(/\r+\n/g, '\n');
  return {
    pty,
    screen,
    type: (text) => pty.write(text),
    async waitFor(pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const seen = screen();
        if (pattern.test(seen)) return seen;
        if (ended !== undefined) throw new Error(`${argv.join(' ')} ended (${JSON.stringify(ended)}) before the screen matched ${pattern}: ${JSON.stringify(seen)}`);
        if (Date.now() >= deadline) throw new Error(`the screen did not match ${pattern} within ${timeoutMs} ms: ${JSON.stringify(seen)}`);
        await delay(20);
      }
    },
    async exit(timeoutMs = 20_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${argv.join(' ')} did not end within ${timeoutMs} ms: ${JSON.stringify(screen())}`)), timeoutMs);
      });
      try {
        return await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
