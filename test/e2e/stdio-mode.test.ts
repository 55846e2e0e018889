// End to end: `netplumbd -stdio` serving one connection on its stdin/stdout, as inetd or systemd Accept=yes run
// it. plumb only connects over TCP, so a small listener in this file starts one netplumbd -stdio per connection
// and joins the socket to its stdin and stdout.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { baseDaemonConfig, BIN, DaemonProcess, reportedCode, startNetplumb, writeKeyPair, type Netplumb } from '../helpers/daemon.js';
import { deterministicSha256, deterministicStream, hashStream } from '../helpers/payloads.js';
import { waitUntil } from '../helpers/processes.js';
import { onCleanup, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 120_000;

interface StdioBridge {
  address: string;
  /** One netplumbd -stdio per accepted connection, in order. */
  daemons: DaemonProcess[];
}

/** Listens on 127.0.0.1 and runs `netplumbd -stdio` for each connection, like inetd. */
async function startStdioBridge(scope: Scope, np: Netplumb): Promise<StdioBridge> {
  const configFile = join(np.dir, 'stdio.conf');
  writeFileSync(configFile, baseDaemonConfig(np.dir));
  const daemons: DaemonProcess[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const child = spawn(
      process.execPath,
      [BIN.netplumbd, `-config=${configFile}`, '-stdio', `-hostkey=${np.hostKey.privateFile}`, `-clients=${np.clientsFile}`],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const daemon = new DaemonProcess(child);
    daemons.push(daemon);
    socket.on('error', () => socket.destroy());
    child.stdin.on('error', () => undefined);
    socket.pipe(child.stdin);
    child.stdout.pipe(socket);
    child.once('exit', () => socket.end());
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  onCleanup(scope, async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const daemon of daemons) {
      await daemon.stop(5000);
      daemon.killLeftoverGroups();
    }
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('bridge has no address');
  return { address: `127.0.0.1:${address.port}`, daemons };
}

test('runs a command through netplumbd -stdio and passes its output and status on', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const bridge = await startStdioBridge(t, np);
  const result = await np.plumb(['sh', '-c', 'cat; echo to-err >&2; exit 9'], { machine: bridge.address, stdin: 'over stdio\n' });
  assert.equal(result.code, 9, result.stderr);
  assert.equal(result.stdout.toString(), 'over stdio\n');
  assert.match(result.stderr, /to-err\n/);
});

test('each connection gets its own netplumbd -stdio, which exits 0 when the connection ends', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const bridge = await startStdioBridge(t, np);
  for (const word of ['one', 'two']) {
    const result = await np.plumb(['echo', word], { machine: bridge.address });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), `${word}\n`);
  }
  assert.equal(bridge.daemons.length, 2);
  for (const daemon of bridge.daemons) {
    const exit = await daemon.exited;
    assert.equal(exit.code, 0, daemon.log());
  }
});

test('8 MiB round-trip byte-exact through netplumbd -stdio', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const bridge = await startStdioBridge(t, np);
  const bytes = 8 * 1024 * 1024;
  const seed = 'stdio-round-trip';
  const run = np.spawnPlumb(['cat'], { machine: bridge.address, stdin: deterministicStream(seed, bytes), stdout: 'stream' });
  const [received, result] = await Promise.all([hashStream(run.child.stdout!), run.result]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(received.bytes, bytes);
  assert.equal(received.sha256, deterministicSha256(seed, bytes));
});

test('an unauthorized client is refused over stdio and that netplumbd exits', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const bridge = await startStdioBridge(t, np);
  const stranger = writeKeyPair(np.dir, 'stranger');
  const result = await np.plumb(['true'], { machine: bridge.address, identity: stranger.privateFile });
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.NotAuthorized, result.stderr);
  const [daemon] = bridge.daemons;
  assert.ok(daemon !== undefined);
  assert.equal((await daemon.exited).code, 1, 'a refused connection is a failed one');
  assert.ok(daemon.log().includes(stranger.fingerprint), daemon.log());
});

test('netplumbd -stdio given garbage ends with exit status 1 without serving anything', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const configFile = join(np.dir, 'garbage.conf');
  writeFileSync(configFile, baseDaemonConfig(np.dir));
  const child = spawn(
    process.execPath,
    [BIN.netplumbd, `-config=${configFile}`, '-stdio', `-hostkey=${np.hostKey.privateFile}`, `-clients=${np.clientsFile}`],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const daemon = new DaemonProcess(child);
  onCleanup(t, () => daemon.stop(5000));
  const output: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk));
  child.stdin.on('error', () => undefined);
  child.stdin.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
  await waitUntil('netplumbd -stdio to exit', () => !daemon.running, 15_000);
  assert.equal(Buffer.concat(output).includes('HTTP'), false);
  assert.equal((await daemon.exited).code, 1);
});

test('netplumbd -stdio ends a stalled handshake after handshake-timeout-ms while stdin stays open', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const configFile = join(np.dir, 'stalled.conf');
  writeFileSync(configFile, baseDaemonConfig(np.dir));
  const child = spawn(
    process.execPath,
    [
      BIN.netplumbd,
      `-config=${configFile}`,
      '-stdio',
      '-handshake-timeout-ms=1000',
      `-hostkey=${np.hostKey.privateFile}`,
      `-clients=${np.clientsFile}`,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const daemon = new DaemonProcess(child);
  onCleanup(t, () => daemon.stop(5000));
  child.stdin.on('error', () => undefined);
  // The start of a packet, then nothing: stdin is left open.
  child.stdin.write('TAP1');
  await daemon.waitForLog(new RegExp(ErrorCode.HandshakeTimeout), 15_000);
  await waitUntil('netplumbd -stdio to exit', () => !daemon.running, 15_000);
});
