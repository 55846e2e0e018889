// Running what is measured and reading what it cost: wall time of a shell pipeline, the client's CPU from
// /usr/bin/time, a server's CPU (its own and its reaped children's) from /proc/PID/stat, A/B runs interleaved, medians
// and percentiles, and the machine's load between rows. Every wait here is bounded.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { RUN_TIMEOUT_MS } from './config.js';

/** Clock ticks per second, the unit of the CPU fields in /proc/PID/stat. */
export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

export function percentile(values: readonly number[], fraction: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * fraction) - 1))] as number;
}

/** Polls check() every 20 ms until true; throws after timeoutMs. */
export async function waitFor(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Rejects when `promise` has not settled within timeoutMs (the work itself is the caller's to stop). */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * CPU seconds of a process plus those of its children it has reaped: /proc/PID/stat fields 14-17 (utime, stime,
 * cutime, cstime). A child's time reaches cutime/cstime only once its parent has waited for it, hence settle() below.
 */
export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Field 2, the command name in parentheses, may itself hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field N is fields[N - 3].
  const ticks = [14, 15, 16, 17].reduce((sum, field) => sum + Number(fields[field - 3]), 0);
  return ticks / CLK_TCK;
}

/** The live children of a process, from every thread's children list (a Node daemon may fork from any of them). */
export function childrenOf(pid: number): Set<number> {
  const children = new Set<number>();
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let listed = '';
    try {
      listed = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    for (const child of listed.split(/\s+/)) if (child !== '') children.add(Number(child));
  }
  return children;
}

/** A server whose CPU is read around each run: netplumbd, or the private sshd's listener. */
export interface Server {
  pid: number;
  name: string;
}

/**
 * Waits until `server` has reaped every child it did not have before the run (sshd's per-connection process, say,
 * which outlives the ssh client by a moment): until then its CPU is missing from the listener's cutime/cstime.
 */
export async function settle(server: Server, before: ReadonlySet<number>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = [...childrenOf(server.pid)].filter((child) => !before.has(child));
    if (left.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${server.name} still has children ${left.join(' ')} ${timeoutMs} ms after the run`);
    await sleep(5);
  }
}

/** CPU seconds `server` spends (own + children, once reaped) while `work` runs. */
export async function serverCpuDuring<T>(server: Server, work: () => Promise<T>): Promise<{ result: T; cpu: number }> {
  const children = childrenOf(server.pid);
  const before = processCpuSeconds(server.pid);
  const result = await work();
  await settle(server, children);
  return { result, cpu: processCpuSeconds(server.pid) - before };
}

/**
 * Runs `bash -o pipefail -c script` in a process group of its own; resolves with its wall time in ms. On a failure
 * the stderr is in the error; past timeoutMs the whole group is killed, so no stray head or plumb is left running.
 */
export function runShell(script: string, env: NodeJS.ProcessEnv, timeoutMs = RUN_TIMEOUT_MS): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn('bash', ['-o', 'pipefail', '-c', script], { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    if (child.pid !== undefined) running.add(child.pid);
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 4096) stderr += chunk.toString();
    });
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${timeoutMs} ms)`;
      killGroup(child.pid);
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (child.pid !== undefined) running.delete(child.pid);
      const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
      if (code === 0) resolve(elapsed);
      else reject(new Error(`failed (${code ?? signal}): ${script}\n${stderr.trim()}`));
    });
  });
}

/** Process groups of the pipelines running now, for killRunning(). */
const running = new Set<number>();

/** Kills every pipeline still running (the bench interrupted). */
export function killRunning(): void {
  for (const pid of running) killGroup(pid);
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** One run of one side: wall time, the client process's CPU (user + sys) and the server's (own + children). */
export interface Sample {
  wallMs: number;
  clientCpu: number;
  serverCpu: number;
}

/** Medians over the runs of one side; `cpu` is the median of each run's client + server total. */
export interface Summary {
  wallMs: number;
  clientCpu: number;
  serverCpu: number;
  cpu: number;
  runs: number;
}

export function summarize(samples: readonly Sample[]): Summary {
  return {
    wallMs: median(samples.map((sample) => sample.wallMs)),
    clientCpu: median(samples.map((sample) => sample.clientCpu)),
    serverCpu: median(samples.map((sample) => sample.serverCpu)),
    cpu: median(samples.map((sample) => sample.clientCpu + sample.serverCpu)),
    runs: samples.length,
  };
}

export interface Concurrent {
  wallMs: number;
  failed: number;
  firstError: string | undefined;
}

/** Measures shell pipelines in a scratch directory of its own (for /usr/bin/time's output files). */
export class Meter {
  private serial = 0;

  constructor(
    private readonly scratch: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    // The client's CPU comes from GNU time (Debian package `time`), not the shell's keyword.
    if (!existsSync('/usr/bin/time')) throw new Error('no /usr/bin/time: install the time package (apt-get install time)');
  }

  /**
   * One run of the pipeline `build(time)` makes, where `time` is the /usr/bin/time prefix to put right before the
   * client command (plumb, ssh), inside the pipeline: head or cat on the client side are then counted for no one.
   * With a server, its CPU is read before and after, once it has reaped the run's children.
   */
  async sample(build: (time: string) => string, server?: Server): Promise<Sample> {
    const file = join(this.scratch, `time-${this.serial++}`);
    const script = build(`/usr/bin/time -f '%U %S' -o ${file}`);
    const run = (): Promise<number> => runShell(script, this.env);
    try {
      const { result: wallMs, cpu: serverCpu } = server === undefined ? { result: await run(), cpu: 0 } : await serverCpuDuring(server, run);
      return { wallMs, clientCpu: readTimeFile(file, script), serverCpu };
    } finally {
      rmSync(file, { force: true });
    }
  }

  /**
   * Wall time in ms until `count` copies of the pipeline, all started at once, have all finished. Runs that fail
   * (a daemon too busy to take them, say) are counted and reported, not thrown: they are a finding of the row.
   */
  async concurrent(script: string, count: number): Promise<Concurrent> {
    const start = process.hrtime.bigint();
    const runs = await Promise.allSettled(Array.from({ length: count }, () => runShell(script, this.env)));
    const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
    const failures = runs.filter((run): run is PromiseRejectedResult => run.status === 'rejected');
    const first = failures[0]?.reason;
    return { wallMs, failed: failures.length, firstError: first === undefined ? undefined : String(first instanceof Error ? first.message : first) };
  }
}

/** /usr/bin/time -f '%U %S' writes the two figures last (after a "Command exited ..." line, if any). */
function readTimeFile(file: string, script: string): number {
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  const [user, system] = (lines[lines.length - 1] ?? '').split(' ').map(Number);
  if (user === undefined || system === undefined || Number.isNaN(user) || Number.isNaN(system)) throw new Error(`no CPU figures from /usr/bin/time for: ${script}`);
  return user + system;
}

/**
 * Runs the sides of a comparison in turn, A, B, A, B, ... `runs` times each, so that a change in the machine's load
 * falls on both rather than on whichever ran second. An absent side (no sshd) is skipped and reported undefined.
 */
export async function interleave<K extends string, T>(runs: number, sides: { [key in K]: (() => Promise<T>) | undefined }): Promise<{ [key in K]: T[] | undefined }> {
  const names = Object.keys(sides) as K[];
  const results = Object.fromEntries(names.map((name) => [name, sides[name] === undefined ? undefined : []])) as { [key in K]: T[] | undefined };
  for (let run = 0; run < runs; run++) {
    for (const name of names) {
      const side = sides[name];
      if (side !== undefined) results[name]?.push(await side());
    }
  }
  return results;
}

/** The 1-minute load average, from /proc/loadavg. */
export function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** The machine's 1-minute load at the start, the highest seen between rows, and (on demand) now. */
export class LoadWatch {
  readonly atStart = loadAverage();
  private peak = this.atStart;

  /** Called between rows: the bench's own load counts too, which is why the start figure matters most. */
  note(): void {
    this.peak = Math.max(this.peak, loadAverage());
  }

  get highest(): number {
    return this.peak;
  }
}
