// End to end: plumb tries a connection again when the daemon ends it during the handshake saying it is busy
// (NP_TOO_MANY_CONNECTIONS, as a daemon making room in its pool of unauthenticated connections does), for a bounded
// time; a refused TCP connection, a connection closed without a word and any other refusal are final at once.

import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { SecureConnection } from '../../protocol/connection.js';
import { ErrorCode, TooManyConnectionsError } from '../../protocol/errors.js';
import { reportedCode, startNetplumb, writeKeyPair } from '../helpers/daemon.js';
import { onCleanup, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 120_000;

/**
 * A relay to the daemon that turns the first `busy` connections (all of them: Infinity) away as a full daemon does,
 * with NP_TOO_MANY_CONNECTIONS, or, with `silently`, closes them without a word.
 */
async function refusingRelay(scope: Scope, daemonPort: number, busy: number, silently = false): Promise<{ address: string; connections(): number }> {
  let connections = 0;
  const server: Server = createServer((client: Socket) => {
    connections++;
    client.on('error', () => undefined);
    if (connections <= busy) {
      if (silently) client.resetAndDestroy();
      else SecureConnection.refuse(client, new TooManyConnectionsError('busy'));
      return;
    }
    const upstream = connect({ host: '127.0.0.1', port: daemonPort });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(scope, () => new Promise<void>((resolve) => server.close(() => resolve())));
  const address = server.address();
  assert.ok(address !== null && typeof address !== 'string');
  return { address: `127.0.0.1:${address.port}`, connections: () => connections };
}

function attempts(stderr: string): number {
  return (stderr.match(/trying again/g) ?? []).length;
}

test('plumb tries again when the daemon says it is busy, and gets in', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const relay = await refusingRelay(t, np.daemon.port, 2);
  const result = await np.plumb(['echo', 'in'], { machine: relay.address, options: ['-v'] });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'in\n');
  assert.equal(attempts(result.stderr), 2, result.stderr);
  assert.equal(relay.connections(), 3);
});

test('plumb gives up after a bounded time while the daemon stays busy', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const relay = await refusingRelay(t, np.daemon.port, Infinity);
  const started = Date.now();
  const result = await np.plumb(['echo', 'never'], { machine: relay.address, options: ['-v'] });
  const tookMs = Date.now() - started;
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.TooManyConnections, result.stderr);
  assert.equal(result.stdout.length, 0);
  assert.ok(relay.connections() >= 4, `only ${relay.connections()} attempts`);
  assert.ok(tookMs < 15_000, `plumb tried for ${tookMs} ms`);
});

test('a connection closed without a word during the handshake is final at once', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const relay = await refusingRelay(t, np.daemon.port, Infinity, true);
  const result = await np.plumb(['true'], { machine: relay.address, options: ['-v'] });
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.ConnectionLost, result.stderr);
  assert.equal(attempts(result.stderr), 0, result.stderr);
  assert.equal(relay.connections(), 1);
});

test('a refused TCP connection is final at once', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // A port that was just free: nothing listens there.
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const address = closed.address();
  assert.ok(address !== null && typeof address !== 'string');
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const result = await np.plumb(['true'], { machine: `127.0.0.1:${address.port}`, options: ['-v'] });
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.ConnectFailed, result.stderr);
  assert.equal(attempts(result.stderr), 0, result.stderr);
});

test("the daemon's refusal of an unknown client is final at once", { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const relay = await refusingRelay(t, np.daemon.port, 0);
  const stranger = writeKeyPair(np.dir, 'stranger');
  const result = await np.plumb(['true'], { machine: relay.address, identity: stranger.privateFile, options: ['-v'] });
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.NotAuthorized, result.stderr);
  assert.equal(attempts(result.stderr), 0, result.stderr);
  assert.equal(relay.connections(), 1);
});
