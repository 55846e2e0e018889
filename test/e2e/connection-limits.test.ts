// End to end: netplumbd's connection limits. Stalled handshakes fill -max-unauthenticated, and a newcomer beyond it
// is admitted while the stalled connection that came least far is evicted; running sessions fill -max-connections,
// and a connection beyond it is closed at accept (nothing sent, NP_TOO_MANY_CONNECTIONS in the log), so plumb,
// after trying again for a moment, reports the lost connection; slots come back when connections end or time out.

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode, startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { killGroup, waitUntil, type RunningProcess } from '../helpers/processes.js';
import { onCleanup, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 120_000;
/** A refused connection is closed at accept; far below any handshake timeout used here. */
const REFUSED_WITHIN_MS = 5000;
/** Long enough that a stalled handshake outlives the test unless it is meant to time out. */
const LONG_HANDSHAKE_MS = 60_000;
const SHORT_HANDSHAKE_MS = 2000;

interface RawConnection {
  socket: Socket;
  /** Settles when the connection is closed (by the daemon, or by the test): when, and how many bytes came. */
  closed: Promise<{ afterMs: number; receivedBytes: number; received: Buffer }>;
}

/** A TCP connection to the daemon that never sends anything; resolves once connected (or already closed). */
function openRaw(scope: Scope, port: number): Promise<RawConnection> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    onCleanup(scope, () => socket.destroy());
    let started = Date.now();
    const received: Buffer[] = [];
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    // The daemon's FIN: finish closing from this side too.
    socket.on('end', () => socket.destroy());
    const closed = new Promise<{ afterMs: number; receivedBytes: number; received: Buffer }>((settle) => {
      socket.once('close', () => {
        const bytes = Buffer.concat(received);
        settle({ afterMs: Date.now() - started, receivedBytes: bytes.length, received: bytes });
      });
    });
    socket.once('connect', () => {
      started = Date.now();
      resolve({ socket, closed });
    });
    socket.once('close', () => resolve({ socket, closed }));
  });
}

/** Resolves with the promise's value, or rejects once limitMs has passed. */
async function within<T>(promise: Promise<T>, limitMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${limitMs} ms`)), limitMs);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function countMatches(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern.source, 'g'))?.length ?? 0;
}

async function waitForLogCount(np: Netplumb, pattern: RegExp, count: number, timeoutMs = 20_000): Promise<void> {
  await waitUntil(`${count} daemon log lines matching ${pattern}`, () => countMatches(np.daemon.log(), pattern) >= count, timeoutMs);
}

const REFUSED_LINE = /connection refused .*code=NP_TOO_MANY_CONNECTIONS/;

/** Opens `count` stalled connections one after another, each connected before the next starts. */
async function stallHandshakes(scope: Scope, np: Netplumb, count: number): Promise<RawConnection[]> {
  const stalled: RawConnection[] = [];
  for (let i = 0; i < count; i++) stalled.push(await openRaw(scope, np.daemon.port));
  return stalled;
}

/** Starts a plumb session that stays running; resolves once its command has started. */
async function longSession(np: Netplumb): Promise<RunningProcess> {
  const session = np.spawnPlumb(['sh', '-c', 'echo started; exec sleep 100'], { timeoutMs: 110_000 });
  await session.waitForStdout(/started\n/, 30_000);
  return session;
}

async function assertServed(np: Netplumb): Promise<void> {
  const result = await np.plumb(['echo', 'served']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'served\n');
}

function unauthenticatedLimit(t: Scope, handshakeTimeoutMs: number): Promise<Netplumb> {
  return startNetplumb(t, { daemonArgs: ['-max-connections=3', '-max-unauthenticated=2', `-handshake-timeout-ms=${handshakeTimeoutMs}`] });
}

function connectionLimit(t: Scope): Promise<Netplumb> {
  return startNetplumb(t, { daemonArgs: ['-max-connections=2', '-max-unauthenticated=2', `-handshake-timeout-ms=${LONG_HANDSHAKE_MS}`] });
}

test('a connection beyond max-unauthenticated is admitted, and the oldest stalled one is evicted', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await unauthenticatedLimit(t, LONG_HANDSHAKE_MS);
  const [oldest, younger] = await stallHandshakes(t, np, 2);
  const extra = await openRaw(t, np.daemon.port);
  const outcome = await within((oldest as RawConnection).closed, REFUSED_WITHIN_MS, 'evicting the oldest stalled connection');
  // Told why, so that a real client knows to try again: one plaintext Error packet.
  assert.equal(outcome.received[16], 99);
  assert.ok(outcome.received.includes(ErrorCode.TooManyConnections));
  await np.daemon.waitForLog(/handshake failed .*code=NP_TOO_MANY_CONNECTIONS reason="evicted to make room/);
  assert.equal((younger as RawConnection).socket.destroyed, false);
  assert.equal(extra.socket.destroyed, false, 'the newcomer was admitted');
});

test('plumb is served while stalled handshakes fill max-unauthenticated', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await unauthenticatedLimit(t, LONG_HANDSHAKE_MS);
  const stalled = await stallHandshakes(t, np, 2);
  await assertServed(np);
  // Room was made by evicting a stalled connection, not by refusing plumb.
  assert.equal(stalled.filter((connection) => connection.socket.destroyed).length >= 1, true);
  assert.doesNotMatch(np.daemon.log(), REFUSED_LINE);
});

test('stalled handshakes are closed after handshake-timeout-ms, which frees their slots for plumb', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await unauthenticatedLimit(t, SHORT_HANDSHAKE_MS);
  const stalled = await stallHandshakes(t, np, 2);
  const outcomes = await within(Promise.all(stalled.map((connection) => connection.closed)), SHORT_HANDSHAKE_MS + 15_000, 'the handshake timeout');
  for (const outcome of outcomes) {
    assert.equal(outcome.receivedBytes, 0);
    // Not the refusal at accept: the connection lived until the timeout (half of it, for the clocks' offset).
    assert.ok(outcome.afterMs >= SHORT_HANDSHAKE_MS / 2, `closed after ${outcome.afterMs} ms`);
  }
  await waitForLogCount(np, /handshake failed .*code=NP_HANDSHAKE_TIMEOUT/, 2);
  assert.doesNotMatch(np.daemon.log(), REFUSED_LINE);
  await assertServed(np);
});

test('running sessions fill max-connections and the next connection is turned away at once, told why', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await connectionLimit(t);
  await longSession(np);
  await longSession(np);
  const extra = await openRaw(t, np.daemon.port);
  const outcome = await within(extra.closed, REFUSED_WITHIN_MS, 'closing the connection beyond max-connections');
  // One plaintext Error packet, NP_TOO_MANY_CONNECTIONS, and nothing else: no Hello.
  assert.ok(outcome.received.subarray(0, 4).equals(Buffer.from('TAP1')));
  assert.equal(outcome.received[16], 99);
  assert.ok(outcome.received.includes(ErrorCode.TooManyConnections));
  await np.daemon.waitForLog(REFUSED_LINE);
  // It was max-connections that refused, not the unauthenticated limit (no handshake was pending).
  assert.doesNotMatch(np.daemon.log(), /unauthenticated/);
});

test('plumb exits 255 with NP_TOO_MANY_CONNECTIONS while max-connections sessions run, after trying again', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await connectionLimit(t);
  const sessions = [await longSession(np), await longSession(np)];
  const result = await np.plumb(['echo', 'should-not-run'], { options: ['-v'] });
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.TooManyConnections, result.stderr);
  assert.match(result.stderr, /the daemon is busy .*; trying again/);
  assert.equal(result.stdout.length, 0);
  await np.daemon.waitForLog(REFUSED_LINE);
  for (const session of sessions) assert.equal(session.child.exitCode, null, 'the running sessions are not disturbed');
});

test('a session that ends gives its slot back to the next plumb', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await connectionLimit(t);
  const first = await longSession(np);
  await longSession(np);
  const refused = await np.plumb(['true']);
  assert.equal(refused.code, 255, refused.stderr);
  killGroup(first.child.pid as number, 'SIGKILL');
  // The daemon notices the lost connection (and ends its command) before a new plumb can even start.
  await waitForLogCount(np, /connection closed .*code=NP_CONNECTION_LOST/, 1);
  await assertServed(np);
});
