// SocketListener, connectStream and the socket path checks on real Unix sockets, with in-memory stream pairs
// standing in for mux streams: bytes both ways, half-close each way, file mode, stale and live socket files.

import assert from 'node:assert/strict';
import { lstatSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { checkSocketPath, connectStream, MAX_SOCKET_PATH_BYTES, SOCKET_FILE_MODE, SocketListener } from '../../bridges/unix-socket.js';
import { EndpointError, ErrorCode } from '../../protocol/errors.js';
import { deterministicBytes } from '../helpers/payloads.js';
import { spawnProcess, waitUntil } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';
import { collect, halfClosePair, startEchoService } from '../helpers/endpoints.js';

const TIMEOUT_MS = 60_000;

function isEndpointError(error: unknown): boolean {
  assert.ok(error instanceof EndpointError, String(error));
  assert.equal(error.code, ErrorCode.Endpoint);
  return true;
}

function connected(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path, allowHalfOpen: true });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** A listener whose connections each become one end of an in-memory pair; the far ends are collected. */
function pairedListener(path: string): { listener: SocketListener; farEnds: Duplex[] } {
  const farEnds: Duplex[] = [];
  const listener = new SocketListener(path, () => {
    const { near, far } = halfClosePair();
    farEnds.push(far);
    return near;
  });
  return { listener, farEnds };
}

test('checkSocketPath takes 107 bytes and refuses 108 (counted in bytes, not characters) with NP_ENDPOINT', () => {
  assert.equal(MAX_SOCKET_PATH_BYTES, 107);
  checkSocketPath(`/${'a'.repeat(106)}`);
  assert.throws(() => checkSocketPath(`/${'a'.repeat(107)}`), (error: unknown) => {
    isEndpointError(error);
    assert.match((error as Error).message, /108 bytes/);
    return true;
  });
  // 53 two-byte characters and a slash: 54 characters, 107 bytes; one more is 109.
  checkSocketPath(`/${'é'.repeat(53)}`);
  assert.throws(() => checkSocketPath(`/${'é'.repeat(54)}`), isEndpointError);
});

test('SocketListener makes a 0600 socket file, carries bytes and half-closes both ways, and removes the file at close', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'listen.sock');
  const umaskBefore = process.umask();
  const { listener, farEnds } = pairedListener(path);
  t.after(() => listener.close());
  await listener.listen();
  assert.equal(process.umask(), umaskBefore, 'the umask is restored after listen');
  const stat = lstatSync(path);
  assert.ok(stat.isSocket());
  assert.equal(stat.mode & 0o777, SOCKET_FILE_MODE);

  const client = await connected(path);
  await waitUntil('the stream for the connection', () => farEnds.length === 1);
  const far = farEnds[0] as Duplex;
  const request = deterministicBytes('socket-request', 1024 * 1024);
  const farReceived = collect(far);
  client.end(request);
  // The client's end() reaches the far side as EOF, while the way back stays open.
  assert.ok((await farReceived).equals(request));
  const reply = deterministicBytes('socket-reply', 512 * 1024);
  const clientReceived = collect(client);
  far.end(reply);
  assert.ok((await clientReceived).equals(reply));

  listener.close();
  assert.throws(() => lstatSync(path), { code: 'ENOENT' });
});

test('SocketListener: the far side half-closes first, the client still sends afterwards', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'listen.sock');
  const { listener, farEnds } = pairedListener(path);
  t.after(() => listener.close());
  await listener.listen();
  const client = await connected(path);
  await waitUntil('the stream for the connection', () => farEnds.length === 1);
  const far = farEnds[0] as Duplex;
  const clientReceived = collect(client);
  far.end('greeting, then nothing more\n');
  assert.equal((await clientReceived).toString(), 'greeting, then nothing more\n');
  const farReceived = collect(far);
  client.end('the client answers after the far side ended\n');
  assert.equal((await farReceived).toString(), 'the client answers after the far side ended\n');
});

test('SocketListener replaces a stale socket file left by a killed process', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'stale.sock');
  const server = spawnProcess(t, [process.execPath, '-e', "require('net').createServer().listen(process.argv[1],()=>console.log('up'))", path]);
  await server.waitForStdout(/up/);
  server.child.kill('SIGKILL');
  await server.result;
  assert.ok(lstatSync(path).isSocket(), 'the killed server left its socket file');
  const { listener, farEnds } = pairedListener(path);
  t.after(() => listener.close());
  await listener.listen();
  const client = await connected(path);
  await waitUntil('the stream for the connection', () => farEnds.length === 1);
  client.destroy();
});

test('SocketListener refuses a live socket (leaving it working) and a file that is not a socket', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const live = join(dir, 'live.sock');
  await startEchoService(t, live);
  const refused = new SocketListener(live, () => assert.fail('no stream expected'));
  await assert.rejects(refused.listen(), (error: unknown) => {
    isEndpointError(error);
    assert.match((error as Error).message, /in use/);
    return true;
  });
  refused.close();
  const client = await connected(live);
  const echoed = collect(client);
  client.end('still served\n');
  assert.equal((await echoed).toString(), 'still served\n');

  const plain = join(dir, 'plain');
  writeFileSync(plain, 'not a socket');
  const onFile = new SocketListener(plain, () => assert.fail('no stream expected'));
  await assert.rejects(onFile.listen(), isEndpointError);
  onFile.close();
  assert.ok(lstatSync(plain).isFile(), 'a file that is not a socket is never removed');
});

test('SocketListener refuses a missing directory and an over-long path with NP_ENDPOINT', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  await assert.rejects(new SocketListener(join(dir, 'missing', 'x.sock'), () => assert.fail('no stream')).listen(), isEndpointError);
  const long = join(dir, 'x'.repeat(MAX_SOCKET_PATH_BYTES - dir.length));
  assert.equal(Buffer.byteLength(long), MAX_SOCKET_PATH_BYTES + 1);
  await assert.rejects(new SocketListener(long, () => assert.fail('no stream')).listen(), isEndpointError);
  assert.throws(() => lstatSync(long), { code: 'ENOENT' });
});

test('SocketListener refuses only the connection whose stream cannot be opened', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'limit.sock');
  let opened = 0;
  const farEnds: Duplex[] = [];
  const listener = new SocketListener(path, () => {
    if (++opened === 1) throw new Error('too many streams');
    const { near, far } = halfClosePair();
    farEnds.push(far);
    return near;
  });
  t.after(() => listener.close());
  await listener.listen();
  const first = await connected(path);
  await new Promise<void>((resolve) => {
    first.once('end', () => resolve());
    first.once('close', () => resolve());
    first.resume();
  });
  first.destroy();
  const second = await connected(path);
  await waitUntil('the second connection to get a stream', () => farEnds.length === 1);
  const received = collect(second);
  (farEnds[0] as Duplex).end('served\n');
  assert.equal((await received).toString(), 'served\n');
  second.destroy();
});

test('connectStream joins a stream to a service, half-close both ways', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'echo.sock');
  const echo = await startEchoService(t, path);
  const { near, far } = halfClosePair();
  const errors: EndpointError[] = [];
  connectStream(path, near, (error) => errors.push(error));
  const payload = deterministicBytes('connect-stream', 2 * 1024 * 1024);
  const echoed = collect(far);
  // Written before the connection is made: held until the service accepted, then all of it goes.
  far.end(payload);
  assert.ok((await echoed).equals(payload));
  assert.equal(echo.accepted(), 1);
  assert.deepEqual(errors, []);
});

test('connectStream to a service that is not there drops the stream and reports NP_ENDPOINT', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const { near, far } = halfClosePair();
  const errors: EndpointError[] = [];
  connectStream(join(dir, 'nobody.sock'), near, (error) => errors.push(error));
  await waitUntil('the error', () => errors.length === 1);
  assert.equal(errors[0]?.code, ErrorCode.Endpoint);
  await waitUntil('the stream to be dropped', () => near.destroyed && far.destroyed);
});
