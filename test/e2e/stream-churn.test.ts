// End to end: an authenticated client that opens streams and never uses them. Streams opened and closed in a loop
// leave the daemon's memory flat and the connection served; more streams than a Start claims before it comes cost
// the client its connection, never the daemon; a stream no Start can claim any more is refused at once.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ErrorCode, isErrorCode } from '../../protocol/errors.js';
import { decodeExit, decodeStartReply, encodeStartRequest, NO_ENDPOINTS } from '../../protocol/session.js';
import { Field, PacketType, StartKind, StartStatus } from '../../protocol/wire.js';
import { startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { waitUntil } from '../helpers/processes.js';
import { openRawSession, type RawSession } from '../helpers/raw-session.js';

const TIMEOUT_MS = 300_000;
const CHURN_PAIRS = 300_000;
/** Growth of the daemon's resident memory allowed across the whole churn (the defect grew it by ~370 MB). */
const CHURN_RSS_BUDGET_BYTES = 64 * 1024 * 1024;
/** Pairs sent between looks at the transport's backpressure. */
const PAIRS_PER_BATCH = 512;

/** The daemon's resident set size in bytes, from /proc. */
function residentBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(match !== null, `no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

/** Runs `argv` on the session with three fresh streams; resolves with its stdout and exit status. */
async function runOn(session: RawSession, argv: string[]): Promise<{ stdout: string; code: number | undefined }> {
  const stdin = session.mux.openStream([[Field.purpose, 'stdin']]);
  const stdout = session.mux.openStream([[Field.purpose, 'stdout']]);
  const stderr = session.mux.openStream([[Field.purpose, 'stderr']]);
  for (const stream of [stdin, stdout, stderr]) stream.on('error', () => undefined);
  const chunks: Buffer[] = [];
  stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  stderr.resume();
  const reply = session.nextPacket(PacketType.Start);
  const exit = session.nextPacket(PacketType.Exit);
  session.connection.sendFields(
    PacketType.Start,
    encodeStartRequest({ kind: StartKind.Exec, argv, env: [], endpoints: NO_ENDPOINTS, stdin: stdin.id, stdout: stdout.id, stderr: stderr.id }),
  );
  stdin.end();
  stdout.end();
  stderr.end();
  const started = decodeStartReply(await reply, isErrorCode);
  assert.equal(started.status, StartStatus.Started, JSON.stringify(started));
  const status = decodeExit(await exit);
  await new Promise((resolve) => (stdout.readableEnded ? resolve(undefined) : stdout.once('end', resolve)));
  return { stdout: Buffer.concat(chunks).toString(), code: 'code' in status ? status.code : undefined };
}

async function churn(session: RawSession, pairs: number): Promise<void> {
  for (let sent = 0; sent < pairs && session.connection.isOpen; sent += PAIRS_PER_BATCH) {
    for (let i = 0; i < PAIRS_PER_BATCH && sent + i < pairs; i++) session.mux.openStream().destroy();
    await session.writable();
  }
}

async function authenticatedSession(t: Parameters<typeof startNetplumb>[0], np: Netplumb): Promise<RawSession> {
  const session = await openRawSession(t, np);
  await np.daemon.waitForLog(/client authenticated/);
  return session;
}

test('300,000 streams opened and closed on one connection leave the daemon memory flat and the connection served', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const session = await authenticatedSession(t, np);
  // Warm up first, so what the daemon allocates once for any client is not counted as growth.
  await churn(session, 2 * PAIRS_PER_BATCH);
  const before = residentBytes(np.daemon.pid);
  await churn(session, CHURN_PAIRS);
  const served = await runOn(session, ['echo', 'still served']);
  const after = residentBytes(np.daemon.pid);
  assert.equal(served.stdout, 'still served\n');
  assert.equal(served.code, 0);
  const grownMiB = (after - before) / 2 ** 20;
  assert.ok(after - before < CHURN_RSS_BUDGET_BYTES, `daemon RSS grew by ${grownMiB.toFixed(1)} MiB over ${CHURN_PAIRS} open/close pairs`);
  t.diagnostic(`daemon RSS ${(before / 2 ** 20).toFixed(1)} MiB before, ${(after / 2 ** 20).toFixed(1)} MiB after (${grownMiB.toFixed(1)} MiB)`);
});

test('a client that opens more streams than a Start claims loses its connection, and others are still served', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const hostile = await authenticatedSession(t, np);
  for (let i = 0; i < 4; i++) hostile.mux.openStream().on('error', () => undefined);
  const error = await hostile.closed;
  assert.equal(error?.code, ErrorCode.ConnectionLost);
  await np.daemon.waitForLog(/connection closed .*code=NP_TOO_MANY_STREAMS/);
  const other = await np.plumb(['echo', 'served']);
  assert.equal(other.code, 0, other.stderr);
  assert.equal(other.stdout.toString(), 'served\n');
});

test('a stream opened once a command runs, for no endpoint, is refused at once', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const session = await authenticatedSession(t, np);
  const running = runOn(session, ['sh', '-c', 'sleep 1; echo done']);
  await np.daemon.waitForLog(/command started/);
  const extra = session.mux.openStream();
  const refused = new Promise<void>((resolve) => extra.once('close', () => resolve()));
  extra.on('error', () => undefined);
  await refused;
  await waitUntil('the refused stream to be forgotten', () => session.mux.openStreams <= 3);
  const result = await running;
  assert.equal(result.stdout, 'done\n');
  assert.equal(result.code, 0);
});
