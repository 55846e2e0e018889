// The load generator, run inside the bench's worker process (worker.ts): `sessions` runs of `true`, each a new
// connection and handshake through the netplumb library (connect, run), as a Node program would make them,
// `concurrency` of them in flight at any time. It
// measures what one daemon can serve (sessions/s) without a Node start per client in the way, which is what bounds
// `plumb host true` run from a shell. The bench reads the daemon's CPU around the worker.

import { Readable } from 'node:stream';
import { connect, type Machine } from '../../plumb-cli/library.js';
import { discard } from './client.js';

/** A session not done in this long counts as failed (and its connection is torn down). */
export const SESSION_TIMEOUT_MS = 30_000;

export interface LoadResult {
  sessions: number;
  failed: number;
  firstError: string | undefined;
  wallMs: number;
  /** The worker's CPU seconds (user + system) over the sessions, its start excluded: the clients' side. */
  clientCpu: number;
}

/** Runs the sessions; `progress(done)` is called as each one ends, for the bench to tell a stall from slow work. */
export async function generateLoad(port: number, home: string, sessions: number, concurrency: number, progress: (done: number) => void): Promise<LoadResult> {
  let started = 0;
  let done = 0;
  let failed = 0;
  let firstError: string | undefined;
  const one = async (): Promise<void> => {
    let machine: Machine | undefined;
    let timer: NodeJS.Timeout | undefined;
    const session = (async () => {
      machine = await connect(`127.0.0.1:${port}`, { home });
      const status = await machine.run(['true'], { stdin: Readable.from([]), stdout: discard(), stderr: discard() }).exit;
      await machine.close();
      if (status !== 0) throw new Error(`true exited ${status}`);
    })();
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`session not done in ${SESSION_TIMEOUT_MS} ms`)), SESSION_TIMEOUT_MS);
    });
    try {
      await Promise.race([session, timeout]);
    } catch (error) {
      failed++;
      firstError ??= error instanceof Error ? error.message : String(error);
      void machine?.close().catch(() => undefined);
      session.catch(() => undefined);
    } finally {
      clearTimeout(timer);
      progress(++done);
    }
  };
  // `concurrency` workers, each taking the next session as soon as its last one ends: bounded by `sessions`.
  const worker = async (): Promise<void> => {
    while (started < sessions) {
      started++;
      await one();
    }
  };
  const cpuBefore = process.cpuUsage();
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(concurrency, sessions) }, worker));
  const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
  const cpu = process.cpuUsage(cpuBefore);
  return { sessions, failed, firstError, wallMs, clientCpu: (cpu.user + cpu.system) / 1e6 };
}
