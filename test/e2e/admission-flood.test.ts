// End to end: an attacker holds or churns the daemon's pool of unauthenticated connections, from the same loopback
// address as the real client. plumb still gets in at once: the newcomer is admitted and the connection that has come
// least far goes. Silent connections are ended at hello-timeout-ms; outside the exempt networks a source that keeps
// failing handshakes is refused at accept while others are served.

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { waitUntil } from '../helpers/processes.js';
import { onCleanup, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 180_000;
/** Long enough that no deadline ends an attacker's connection during a test: only eviction can. */
const LONG_MS = 120_000;
/** The default pool of unauthenticated connections. */
const POOL = 64;
/** What "gets in at once" means on a shared 2-core machine: plumb's own start is most of it. */
const SERVED_WITHIN_MS = 6000;

interface Flood {
  /** Connections the attacker has made so far. */
  made(): number;
  stop(): Promise<void>;
}

/**
 * Keeps `width` connections to the daemon open at all times, each sending `greeting` (nothing, by default) and then
 * nothing more; a connection the daemon closes is replaced at once. Bounded by `limitMs` and by stop().
 */
function flood(scope: Scope, port: number, width: number, options: { greeting?: Buffer; localAddress?: string; limitMs?: number } = {}): Flood {
  let made = 0;
  let stopping = false;
  const open = new Set<Socket>();
  const giveUpAt = Date.now() + (options.limitMs ?? 60_000);
  const lanes: Promise<void>[] = [];
  const lane = async (): Promise<void> => {
    while (!stopping && Date.now() < giveUpAt) {
      await new Promise<void>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) });
        made++;
        open.add(socket);
        socket.on('error', () => undefined);
        socket.on('data', () => undefined);
        socket.once('connect', () => {
          if (options.greeting !== undefined) socket.write(options.greeting);
        });
        socket.once('close', () => {
          open.delete(socket);
          resolve();
        });
      });
    }
  };
  for (let i = 0; i < width; i++) lanes.push(lane());
  const stop = async (): Promise<void> => {
    stopping = true;
    for (const socket of open) socket.destroy();
    await Promise.all(lanes);
  };
  onCleanup(scope, stop);
  return { made: () => made, stop };
}

/** A client Hello as plumb sends it (the daemon answers it and then waits for the key exchange). */
async function helloBytes(np: Netplumb): Promise<Buffer> {
  // The bytes plumb sends first, caught by a listener that plays the daemon just long enough.
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        resolve(chunk);
        socket.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') return reject(new Error('no address'));
      void np.plumb(['true'], { machine: `127.0.0.1:${address.port}`, timeoutMs: 20_000 });
    });
  });
}

/** Runs `plumb host true` and says how long it took; it must succeed. */
async function timedTrue(np: Netplumb): Promise<number> {
  const started = Date.now();
  const result = await np.plumb(['true']);
  const tookMs = Date.now() - started;
  assert.equal(result.code, 0, result.stderr);
  return tookMs;
}

/** Opens `count` connections that send nothing, each connected before the next starts. */
async function holdSilent(scope: Scope, port: number, count: number): Promise<Socket[]> {
  const held: Socket[] = [];
  for (let i = 0; i < count; i++) {
    held.push(
      await new Promise<Socket>((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port });
        onCleanup(scope, () => socket.destroy());
        socket.on('error', () => undefined);
        // What the daemon says before it closes: the test reads it from `said`.
        const said: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => said.push(chunk));
        socket.on('end', () => socket.destroy());
        Object.assign(socket, { said });
        socket.once('connect', () => resolve(socket));
        socket.once('close', () => reject(new Error('closed before it connected')));
      }),
    );
  }
  return held;
}

/** Everything the daemon sent a connection opened by holdSilent. */
function saidTo(socket: Socket): Buffer {
  return Buffer.concat((socket as Socket & { said: Buffer[] }).said);
}

function noDeadlines(): string[] {
  return [`-handshake-timeout-ms=${LONG_MS}`, `-hello-timeout-ms=${LONG_MS}`];
}

test(`with ${POOL} silent connections held open, plumb host true is served at once`, { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: noDeadlines() });
  const held = await holdSilent(t, np.daemon.port, POOL);
  const tookMs = await timedTrue(np);
  t.diagnostic(`plumb true took ${tookMs} ms with ${POOL} silent connections held`);
  assert.ok(tookMs < SERVED_WITHIN_MS, `plumb took ${tookMs} ms`);
  // Room was made by evicting one of the silent connections, logged as such, and it was told why.
  await np.daemon.waitForLog(/handshake failed .*code=NP_TOO_MANY_CONNECTIONS .*evicted/);
  await waitUntil('an evicted connection to hear why', () => held.some((socket) => saidTo(socket).includes(ErrorCode.TooManyConnections)));
});

test('under a sustained flood of reconnecting silent connections, plumb host true is served every time', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: noDeadlines() });
  const attack = flood(t, np.daemon.port, 2 * POOL, { limitMs: 90_000 });
  await waitUntil('the flood to fill the pool', () => attack.made() > 4 * POOL, 30_000);
  const times: number[] = [];
  for (let run = 0; run < 5; run++) times.push(await timedTrue(np));
  const made = attack.made();
  await attack.stop();
  t.diagnostic(`plumb true took ${times.join(', ')} ms while the flood made ${made} connections`);
  assert.ok(made > 10 * POOL, `the flood made only ${made} connections: it was no flood`);
  for (const tookMs of times) assert.ok(tookMs < SERVED_WITHIN_MS, `plumb took ${tookMs} ms`);
});

test('a source outside the exempt networks flooding with Hellos that stall keeps to its share, and plumb is served', { timeout: TIMEOUT_MS }, async (t) => {
  // Loopback made subject to the per-source rules, so that 127.0.0.2 stands for a remote attacker.
  const np = await startNetplumb(t, { daemonArgs: [...noDeadlines(), '-penalty-exempt=none'] });
  const greeting = await helloBytes(np);
  const attack = flood(t, np.daemon.port, 2 * POOL, { greeting, localAddress: '127.0.0.2', limitMs: 90_000 });
  await waitUntil('the flood to run', () => attack.made() > 4 * POOL, 30_000);
  const times: number[] = [];
  for (let run = 0; run < 5; run++) times.push(await timedTrue(np));
  const made = attack.made();
  await attack.stop();
  t.diagnostic(`plumb true took ${times.join(', ')} ms while the flood made ${made} connections`);
  for (const tookMs of times) assert.ok(tookMs < SERVED_WITHIN_MS, `plumb took ${tookMs} ms`);
  // The attacker's source was held to its share, and then refused outright for its failures.
  assert.match(np.daemon.log(), /handshake failed peer=127\.0\.0\.2:\d+ code=NP_TOO_MANY_CONNECTIONS reason="evicted to make room: this source already has 8 connections/);
  assert.match(np.daemon.log(), /connection refused peer=127\.0\.0\.2:\d+ code=NP_TOO_MANY_CONNECTIONS reason="source penalised/);
});

test('a connection that sends nothing is ended at hello-timeout-ms, long before handshake-timeout-ms', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: [`-handshake-timeout-ms=${LONG_MS}`, '-hello-timeout-ms=500'] });
  const [silent] = await holdSilent(t, np.daemon.port, 1);
  const started = Date.now();
  await new Promise((resolve) => (silent as Socket).once('close', resolve));
  assert.ok(Date.now() - started < 10_000);
  // A timeout closes without a word, as the handshake timeout does.
  assert.equal(saidTo(silent as Socket).length, 0);
  await np.daemon.waitForLog(/handshake failed .*code=NP_HANDSHAKE_TIMEOUT .*no hello within 500 ms/);
});

test('outside the exempt networks, a source that keeps failing handshakes is refused at accept while others are served', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: ['-penalty-exempt=none', '-penalty-ms=2000', '-penalty-threshold-ms=5000'] });
  // Each connection from 127.0.0.2 sends garbage, which fails its handshake: 2 s of penalty each, 6 s after three.
  for (let attempt = 0; attempt < 3; attempt++) {
    await new Promise<void>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: np.daemon.port, localAddress: '127.0.0.2' });
      socket.on('error', () => undefined);
      socket.once('connect', () => socket.write('garbage garbage garbage'));
      socket.once('close', () => resolve());
    });
  }
  await waitUntil('three failed handshakes', () => (np.daemon.log().match(/handshake failed peer=127\.0\.0\.2:/g) ?? []).length >= 3);
  const refused = await new Promise<{ bytes: number }>((resolve) => {
    let bytes = 0;
    const socket = connect({ host: '127.0.0.1', port: np.daemon.port, localAddress: '127.0.0.2' });
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
    socket.once('connect', () => socket.write('garbage'));
    socket.once('close', () => resolve({ bytes }));
  });
  assert.equal(refused.bytes, 0);
  await np.daemon.waitForLog(new RegExp(`connection refused peer=127\\.0\\.0\\.2:\\d+ code=${ErrorCode.TooManyConnections} reason="source penalised`));
  // plumb connects from 127.0.0.1: another source, not touched by 127.0.0.2's penalty.
  await timedTrue(np);
});
