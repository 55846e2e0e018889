// The load generator: SESSIONS runs of `true` from this one Node process, each a new connection and handshake
// through the project's client code, CONCURRENCY of them in flight at any time. It measures what one daemon can
// serve (sessions/s) and what each session costs it (CPU, own + children), without a Node start per client in the
// way, which is what bounds `plumb host true` run from a shell.

import { Readable } from 'node:stream';
import { StartKind } from '../../protocol/wire.js';
import { ConnectionLostError } from '../../protocol/errors.js';
import type { SecureConnection } from '../../protocol/connection.js';
import { connectClient, discard, runClient } from './client.js';
import { serverCpuDuring, type Server } from './measure.js';

/** A session not done in this long counts as failed (and its connection is torn down). */
const SESSION_TIMEOUT_MS = 30_000;

export interface LoadResult {
  sessions: number;
  failed: number;
  firstError: string | undefined;
  wallMs: number;
  /** Daemon CPU seconds (own + children) over the whole run. */
  daemonCpu: number;
  /** This process's CPU seconds (user + system) over the whole run: the clients' side. */
  clientCpu: number;
}

export async function generateLoad(port: number, home: string, daemon: Server, sessions: number, concurrency: number): Promise<LoadResult> {
  let started = 0;
  let failed = 0;
  let firstError: string | undefined;
  const one = async (): Promise<void> => {
    let connection: SecureConnection | undefined;
    let timer: NodeJS.Timeout | undefined;
    const session = (async () => {
      connection = await connectClient(port, home);
      const status = await runClient(connection, { kind: StartKind.Exec, argv: ['true'] }, Readable.from([]), discard());
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
      connection?.fail(new ConnectionLostError('load generator gave up on the session'));
      session.catch(() => undefined);
    } finally {
      clearTimeout(timer);
    }
  };
  // CONCURRENCY workers, each taking the next session as soon as its last one ends: bounded by `sessions`.
  const worker = async (): Promise<void> => {
    while (started < sessions) {
      started++;
      await one();
    }
  };
  const cpuBefore = process.cpuUsage();
  const start = process.hrtime.bigint();
  const { result: wallMs, cpu: daemonCpu } = await serverCpuDuring(daemon, async () => {
    await Promise.all(Array.from({ length: Math.min(concurrency, sessions) }, worker));
    return Number(process.hrtime.bigint() - start) / 1e6;
  });
  const cpu = process.cpuUsage(cpuBefore);
  return { sessions, failed, firstError, wallMs, daemonCpu, clientCpu: (cpu.user + cpu.system) / 1e6 };
}
