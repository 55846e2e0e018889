// The bench's side of its worker process (worker.ts): starts it, watches its progress lines, and kills it when it
// stalls (no progress for stallMs) or overruns its deadline, so a hung client costs the bench a bounded wait and a
// row that says what happened, never the whole run.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

/** Workers running now, for killWorkers(). */
const live = new Set<ChildProcess>();

/** Kills every worker still running (the bench interrupted). */
export function killWorkers(): void {
  for (const child of live) child.kill('SIGKILL');
}

export interface WorkerLimits {
  /** Longest time without a `progress` line. */
  stallMs: number;
  /** Longest time in all. */
  deadlineMs: number;
}

/** Runs the worker with `args`; resolves with its parsed result, rejects saying how far it got when it fails. */
export function runWorker<T>(args: string[], limits: WorkerLimits): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let done = 0;
    let why: string | undefined;
    const started = Date.now();
    let lastProgress = started;
    // A line per session or round: small enough to keep whole.
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const last = /progress (\d+)\n(?![^]*progress)/.exec(stdout);
      if (last !== null) done = Number(last[1]);
      lastProgress = Date.now();
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
    const watch = setInterval(() => {
      const now = Date.now();
      if (now - lastProgress > limits.stallMs) why = `no progress for ${limits.stallMs / 1000} s after ${done} done`;
      else if (now - started > limits.deadlineMs) why = `not done within ${limits.deadlineMs / 1000} s (${done} done)`;
      if (why !== undefined) {
        clearInterval(watch);
        child.kill('SIGKILL');
      }
    }, 1000);
    child.once('error', (error) => {
      clearInterval(watch);
      live.delete(child);
      reject(error);
    });
    child.once('close', (code) => {
      clearInterval(watch);
      live.delete(child);
      const result = /^result (.*)$/m.exec(stdout);
      if (code === 0 && result !== null) resolve(JSON.parse(result[1] as string) as T);
      else reject(new Error(`the bench worker (${args[0] ?? ''}) ${why === undefined ? `exited ${code}` : `was killed: ${why}`}${stderr.trim() === '' ? '' : `: ${stderr.trim()}`}`));
    });
  });
}
