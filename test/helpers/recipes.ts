// Recipe test helpers: run a recipe text through the executor directly (collecting sinks for plumb's stdout and
// stderr, a bound on how long it may take), a daemon with its own spool directory for plumb runs, deterministic
// input files, and looks at what a run leaves behind: named pipes in the spool directory, this process's open fds
// (less the pipe stock's).

import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, lstatSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CommandIdentity } from '../../bridges/identity.js';
import type { StageEnd } from '../../protocol/session.js';
import { checkRecipe } from '../../recipes/check.js';
import { prepareRecipe, type RecipeOutcome, type RecipeRun } from '../../recipes/execute.js';
import { pipeStock } from '../../recipes/pipe-stock.js';
import type { RecipePlan } from '../../recipes/plan.js';
import { startNetplumb, type Netplumb } from './daemon.js';
import { deterministicStream, hashStream } from './payloads.js';
import { delay } from './processes.js';
import { tempDir, type Scope } from './scope.js';

/** How long a recipe run may take in a test before it is aborted and the test fails. */
export const RECIPE_RUN_TIMEOUT_MS = 60_000;

/** 64 MiB: the size of the byte-exact payloads. */
export const BIG_PAYLOAD_BYTES = 64 * 1024 * 1024;

/** Where node lives, so a recipe can run `node` through PATH as well as by its absolute name. */
export const NODE_DIR = dirname(process.execPath);

/** The environment recipe commands get in executor tests: a plain PATH, no variable of the test process. */
export function recipeEnv(): Record<string, string> {
  return { PATH: `${NODE_DIR}:/usr/local/bin:/usr/bin:/bin`, LANG: 'C.UTF-8' };
}

/** Checks a recipe text against a spool directory; throws RecipeError as checkRecipe does. */
export function planRecipe(text: string, spoolDir: string, sourceName = 'test.rcp'): RecipePlan {
  return checkRecipe(text, { sourceName, spoolDir });
}

/** A Writable that keeps every byte it is given. */
export function collector(): { stream: Writable; bytes(): Buffer; text(): string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
  const bytes = (): Buffer => Buffer.concat(chunks);
  return { stream, bytes, text: () => bytes().toString('utf8') };
}

/** A Writable that hashes what it is given; `result` settles when it has been ended. */
export function hashingSink(): { stream: Writable; result: Promise<{ bytes: number; sha256: string }> } {
  const hash = createHash('sha256');
  let bytes = 0;
  let resolveResult: (value: { bytes: number; sha256: string }) => void = () => undefined;
  const result = new Promise<{ bytes: number; sha256: string }>((resolve) => (resolveResult = resolve));
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      hash.update(chunk);
      callback();
    },
    final(callback) {
      resolveResult({ bytes, sha256: hash.digest('hex') });
      callback();
    },
  });
  return { stream, result };
}

export interface ExecuteOptions {
  /** What `<%stdin` reads. Default: nothing (an empty stream). */
  stdin?: Readable;
  /** Where unclaimed stdout goes. Default: a collector whose bytes come back in the result. */
  stdout?: Writable;
  killGraceMs?: number;
  timeoutMs?: number;
  sourceName?: string;
  /** Whose rights the commands and their redirections have (default: this process's). */
  identity?: CommandIdentity;
  /** Count each command's bytes (the daemon's -json mode); the counts come in outcome.bytes. */
  countBytes?: boolean;
}

export interface ExecuteResult {
  outcome: RecipeOutcome;
  /** onStageEnd calls, in the order they came. */
  ends: StageEnd[];
  /** What arrived on the stdout Writable (empty when the caller gave its own). */
  stdout: Buffer;
  stderr: Buffer;
}

/** A prepared run with its stage-end log; `started(io)` starts it. */
export interface PreparedRecipe {
  run: RecipeRun;
  plan: RecipePlan;
  ends: StageEnd[];
}

export async function prepareText(text: string, spoolDir: string, options: Pick<ExecuteOptions, 'killGraceMs' | 'sourceName' | 'identity' | 'countBytes'> = {}): Promise<PreparedRecipe> {
  const plan = planRecipe(text, spoolDir, options.sourceName);
  const ends: StageEnd[] = [];
  const { identity } = options;
  const run = await prepareRecipe(plan, {
    env: recipeEnv(),
    killGraceMs: options.killGraceMs ?? 2000,
    onStageEnd: (end) => ends.push(end),
    ...(identity === undefined ? {} : { identity }),
    ...(options.countBytes === true ? { countBytes: true } : {}),
  });
  return { run, plan, ends };
}

/** Resolves or rejects as the promise does, or rejects after timeoutMs; the timer never outlives the promise. */
export async function withinMs<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves with the outcome, or aborts the run and rejects after timeoutMs (so a hung recipe fails its test
 * instead of leaving processes behind).
 */
export async function boundedOutcome(run: RecipeRun, timeoutMs = RECIPE_RUN_TIMEOUT_MS): Promise<RecipeOutcome> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      void run.abort('test timed out');
      reject(new Error(`the recipe did not end within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([run.outcome, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Checks, prepares and runs a recipe text to its end; see ExecuteOptions. */
export async function executeText(text: string, spoolDir: string, options: ExecuteOptions = {}): Promise<ExecuteResult> {
  const { run, ends } = await prepareText(text, spoolDir, options);
  const stdout = collector();
  const stderr = collector();
  run.start({ stdin: options.stdin ?? Readable.from([]), stdout: options.stdout ?? stdout.stream, stderr: stderr.stream });
  const outcome = await boundedOutcome(run, options.timeoutMs);
  return { outcome, ends, stdout: stdout.bytes(), stderr: stderr.bytes() };
}

/** Writes `bytes` bytes of the seed's deterministic stream into a file. */
export async function writeDeterministicFile(path: string, seed: string, bytes: number): Promise<void> {
  await pipeline(deterministicStream(seed, bytes), createWriteStream(path));
}

export function sha256File(path: string): Promise<{ bytes: number; sha256: string }> {
  return hashStream(createReadStream(path));
}

/** SHA-256 (hex) of the concatenation of the given files, in order. */
export async function sha256Files(paths: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const path of paths) {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** Names of the named pipes in a directory (not descending). */
export function fifosIn(dir: string): string[] {
  return readdirSync(dir).filter((name) => {
    try {
      return lstatSync(join(dir, name)).isFIFO();
    } catch {
      return false;
    }
  });
}

/**
 * How many file descriptors this process has open, less those the pipe stock holds: they are there for runs to
 * come, and a batch made in the middle of a test would otherwise read as a leak.
 */
export function openFdCount(): number {
  return readdirSync('/proc/self/fd').length - pipeStock.heldFds;
}

/** Waits (bounded) until this process's open fd count is at most `limit`; returns the last count seen. */
export async function settledFdCount(limit: number, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let count = openFdCount();
  while (count > limit && Date.now() < deadline) {
    await delay(50);
    count = openFdCount();
  }
  return count;
}

/**
 * A name for sleep(1) that carries the marker: a symlink dir/sleep-MARKER to the real sleep, so the processes a
 * recipe starts with it can be found by processesWithMarker() (their argv[0] holds the marker).
 */
export function markedSleep(dir: string, marker: string): string {
  const path = join(dir, `sleep-${marker}`);
  symlinkSync(existsSync('/usr/bin/sleep') ? '/usr/bin/sleep' : '/bin/sleep', path);
  return path;
}

// ---- end to end --------------------------------------------------------------------------------------------

/** A daemon whose spool directory is a fresh temp dir, with the host key already pinned for plumb. */
export interface RecipeNetplumb {
  np: Netplumb;
  /** The daemon's spool directory (exists, empty at first). */
  spool: string;
  /** Where writeRecipe() puts recipe files (not the spool). */
  recipeDir: string;
  /** Writes a recipe file and returns its absolute path (what -recipe= gets and reports cite). */
  writeRecipe(name: string, text: string): string;
}

export async function startRecipeNetplumb(scope: Scope, daemonArgs: readonly string[] = []): Promise<RecipeNetplumb> {
  const spool = tempDir(scope, 'netplumb-spool-');
  const recipeDir = tempDir(scope, 'netplumb-recipes-');
  const np = await startNetplumb(scope, { daemonArgs: [`-spool=${spool}`, ...daemonArgs] });
  // Pin the host key now, so plumb's stderr in the runs that count holds only what the recipe and plumb say about it.
  const first = await np.plumb(['true']);
  if (first.code !== 0) throw new Error(`the first plumb run failed: ${first.stderr}`);
  return {
    np,
    spool,
    recipeDir,
    writeRecipe(name, text) {
      const path = join(recipeDir, name);
      writeFileSync(path, text);
      return path;
    },
  };
}

/** The lines plumb itself wrote on stderr (`plumb: ...`), in order. */
export function plumbLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line.startsWith('plumb: '));
}

/** The lines on stderr that are not plumb's own (neither `plumb: ...` nor a JSON report). */
export function commandStderr(stderr: string): string {
  return stderr
    .split('\n')
    .filter((line) => !line.startsWith('plumb: ') && !line.startsWith('{'))
    .join('\n');
}
