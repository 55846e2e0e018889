// Child processes for tests, each in its own process group that is killed at the scope's cleanup: spawn and run
// with collected output, waits on their output and on any condition, and what /proc says about processes.

import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { onCleanup, type Scope } from './scope.js';

/** Generous bounds: the machine has two cores shared with other test runs. */
export const DEFAULT_RUN_TIMEOUT_MS = 60_000;

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
