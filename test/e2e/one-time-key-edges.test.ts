// End to end: one-time keys under attack and at their edges: the key's private half never crosses the wire and
// replayed node bytes neither spend a key nor run anything; a key's account must stay one its controller may use;
// exported variables never ride on a key. (one-time-keys.test.ts has minting, single use, races, restarts, expiry.)

import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { BIN, rewriteClients, type DaemonProcess } from '../helpers/daemon.js';
import { delay, spawnProcess } from '../helpers/processes.js';
import { onCleanup, tempDir, type Scope } from '../helpers/scope.js';
import { ensureFixtureAccounts, OTHER, RUNAS } from '../helpers/accounts.js';
import { startTamperProxy } from '../helpers/tamper-proxy.js';
import { appendTo, assertMinted, assertRefused, logLines, markerLines, startControllerNetplumb, assertSecretAbsent } from '../helpers/one-time-keys.js';

const TIMEOUT_MS = 60_000;

/** TAP1 framing, enough to cut a byte stream into packets: the size field at 4, plus 8, is the packet length. */
function wholePackets(bytes: Buffer): number {
  let offset = 0;
  let packets = 0;
  while (bytes.length - offset >= 8) {
    const length = bytes.readUInt32BE(offset + 4) + 8;
    if (bytes.length - offset < length) break;
    offset += length;
    packets++;
  }
  return packets;
}

/**
 * A relay that passes the node's Hello to the daemon and the daemon's answers back, but keeps the node's
 * KeyExchange (its second packet) to itself and then cuts both connections: the handshake bytes a node sends,
 * caught before the daemon ever saw the key in use.
 */
async function catchKeyExchange(scope: Scope, daemonPort: number): Promise<{ address: string; caught: Promise<Buffer> }> {
  let resolveCaught: (bytes: Buffer) => void = () => undefined;
  const caught = new Promise<Buffer>((resolve) => (resolveCaught = resolve));
  const sockets = new Set<Socket>();
  const server = createServer((node) => {
    const daemon = connect({ host: '127.0.0.1', port: daemonPort });
    for (const socket of [node, daemon]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.once('close', () => sockets.delete(socket));
    }
    let recorded = Buffer.alloc(0);
    let forwardedHello = false;
    node.on('data', (chunk: Buffer) => {
      recorded = Buffer.concat([recorded, chunk]);
      const packets = wholePackets(recorded);
      if (!forwardedHello && packets >= 1) {
        forwardedHello = true;
        daemon.write(recorded.subarray(0, recorded.readUInt32BE(4) + 8));
      }
      if (packets >= 2) {
        resolveCaught(recorded);
        node.destroy();
        daemon.destroy();
      }
    });
    daemon.on('data', (chunk: Buffer) => node.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  onCleanup(scope, () => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('relay has no address');
  return { address: `127.0.0.1:${address.port}`, caught };
}

/** The key's secret is nowhere in the bytes: not a PEM line, not the DER, not the raw seed. */
/**
 * Sends recorded client bytes on a fresh connection to the daemon; resolves with how the daemon's handshake log
 * line for that connection ends (its code) once the daemon has closed it.
 */
async function replay(daemon: DaemonProcess, bytes: Buffer): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port: daemon.port });
  socket.on('error', () => undefined);
  socket.resume();
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const localPort = socket.localPort as number;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(bytes);
  const closedInTime = await Promise.race([closed.then(() => true), delay(10_000).then(() => false)]);
  socket.destroy();
  assert.ok(closedInTime, 'the daemon closed the replayed connection');
  const log = await daemon.waitForLog(new RegExp(`handshake failed peer=127\\.0\\.0\\.1:${localPort} code=NP_[A-Z_]+`));
  return new RegExp(`handshake failed peer=127\\.0\\.0\\.1:${localPort} code=(NP_[A-Z_]+)`).exec(log)?.[1] ?? '';
}

test('wire replay: the private key never crosses the wire, and replayed node bytes neither spend the key nor run anything', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const keyFile = join(env.work, 'node.key');
  const key = assertMinted(await env.mint(keyFile, appendTo(marker)), env, keyFile);

  // The handshake of a node, caught before it reached the daemon: replayed, it fails and leaves the key good.
  const relay = await catchKeyExchange(t, env.np.daemon.port);
  const cut = env.spawnNode(keyFile, appendTo(marker), relay.address);
  const handshake = await relay.caught;
  const cutResult = await cut.result;
  assert.notEqual(cutResult.code, 0, cutResult.stderr);
  assertSecretAbsent(handshake, key, 'the node handshake');
  assert.equal(await replay(env.np.daemon, handshake), ErrorCode.BadSignature);
  assert.ok(existsSync(join(env.store, `${key.id}.key`)), 'the replay did not spend the key');
  assert.deepEqual(markerLines(marker), []);

  // A whole session of the node, recorded on its way through: the key works, and the recording replayed does not.
  const proxy = await startTamperProxy(t, { targetPort: env.np.daemon.port, record: true });
  const through = await env.node(keyFile, appendTo(marker), proxy.address);
  assert.equal(through.code, 0, through.stderr);
  assert.deepEqual(markerLines(marker), ['ran']);
  const connection = proxy.connections[0];
  assert.ok(connection !== undefined);
  await connection.closed;
  const session = connection.recordedBytes('toDaemon');
  assertSecretAbsent(session, key, 'the node session');
  assert.equal(await replay(env.np.daemon, session), ErrorCode.BadSignature);
  assert.deepEqual(markerLines(marker), ['ran'], 'the replayed session ran nothing');
  assert.equal(logLines(env.np.daemon, 'one-time key used').length, 1);
  assert.equal(logLines(env.np.daemon, 'command started').length, 1);
});

// ---- the key's account and exported variables -------------------------------------------------------------------
// A key grants nothing its controller no longer has: once the controller's line stops allowing the key's account,
// the key is refused. And a key's command takes no exported variables, which could change what the bound words do:
// plumb refuses them before connecting (so the key stays good), and the daemon refuses a Start that carries some.

const KEY_ACCOUNT = RUNAS;
const LOST_ACCOUNT = OTHER;
/** Switching accounts needs root; the fixture accounts are those of run-as-user.test.ts. */
const SKIP_UNLESS_ROOT: string | false = process.getuid?.() === 0 ? false : 'needs root: the key runs its command as another account';

/** Makes the fixture accounts when missing; another test file may be making them at the same moment. */

/**
 * A command that leaves a line in a marker file named after the account it runs as, in a sticky world-writable
 * directory (one file per account: the kernel keeps an account from writing another's file there).
 */
function appendAccountTo(markers: string): string[] {
  return ['sh', '-c', `id -un >> "${markers}/$(id -un)"`];
}

/** Which accounts ran a marker command, and how often: one entry per line, sorted. */
function accountsThatRan(markers: string): string[] {
  return readdirSync(markers)
    .flatMap((name) => markerLines(join(markers, name)))
    .sort();
}

test(`a key for ${LOST_ACCOUNT} is refused once the controller's line no longer allows ${LOST_ACCOUNT}; its key for ${KEY_ACCOUNT} still works`, { timeout: TIMEOUT_MS, skip: SKIP_UNLESS_ROOT }, async (t) => {
  ensureFixtureAccounts();
  // A 0711 spool, so the accounts reach their own spools under it; a sticky, world-writable place for the marker.
  const spool = tempDir(t, 'netplumb-otk-spool-');
  chmodSync(spool, 0o711);
  const markers = tempDir(t, 'netplumb-otk-markers-');
  chmodSync(markers, 0o1777);
  const env = await startControllerNetplumb(t, (line) => `controller,user="${KEY_ACCOUNT},${LOST_ACCOUNT}" ${line}`, { daemonArgs: [`-spool=${spool}`] });
  const controlFile = join(env.work, 'control.key');
  const lostFile = join(env.work, 'lost.key');
  const keptFile = join(env.work, 'kept.key');
  assertMinted(await env.mint(controlFile, appendAccountTo(markers), [`-user=${LOST_ACCOUNT}`]), env, controlFile);
  const lost = assertMinted(await env.mint(lostFile, appendAccountTo(markers), [`-user=${LOST_ACCOUNT}`]), env, lostFile);
  assertMinted(await env.mint(keptFile, appendAccountTo(markers), [`-user=${KEY_ACCOUNT}`]), env, keptFile);
  // While the line allows it, such a key runs its command as that account.
  const control = await env.node(controlFile, appendAccountTo(markers));
  assert.equal(control.code, 0, control.stderr);
  assert.deepEqual(accountsThatRan(markers), [LOST_ACCOUNT]);

  await rewriteClients(env.np.daemon, env.np.clientsFile, `controller,user=${KEY_ACCOUNT} ${env.np.client.publicLine}\n`);
  assertRefused(await env.node(lostFile, appendAccountTo(markers)), ErrorCode.NotAuthorized);
  assert.deepEqual(accountsThatRan(markers), [LOST_ACCOUNT], 'nothing ran for the refused key');
  const said = logLines(env.np.daemon, 'the controller of this one-time key may no longer run commands as its account', `key=${lost.fingerprint}`, `user=${LOST_ACCOUNT}`);
  assert.equal(said.length, 1, env.np.daemon.log());
  assert.equal(logLines(env.np.daemon, 'one-time key used', `key=${lost.fingerprint}`).length, 0, 'the refused key was never taken as used');
  assert.equal(logLines(env.np.daemon, 'command started').length, 1, 'only the control command started so far');

  // The same controller's key for an account its line still allows works: the refusal is about the account.
  const kept = await env.node(keptFile, appendAccountTo(markers));
  assert.equal(kept.code, 0, kept.stderr);
  assert.deepEqual(accountsThatRan(markers), [LOST_ACCOUNT, KEY_ACCOUNT].sort());
  // And no new key for the lost account is minted.
  const after = join(env.work, 'after.key');
  assertRefused(await env.mint(after, appendAccountTo(markers), [`-user=${LOST_ACCOUNT}`]), ErrorCode.NotPermitted, `may not run commands as ${LOST_ACCOUNT}`);
  assert.equal(existsSync(after), false);
});

/**
 * Starts the key's command the way plumb would, but with an exported variable plumb itself refuses to send: a
 * client of its own making. Resolves with the exit status, or rejects with the daemon's refusal.
 */
async function startWithExportedVariable(keyFile: string, daemon: DaemonProcess, argv: readonly string[]): Promise<number> {
  const { EventEmitter } = await import('node:events');
  const { PassThrough, Readable } = await import('node:stream');
  const { loadKeyFile } = await import('../../plumb-cli/one-time-key.js');
  const { connectToDaemon } = await import('../../plumb-cli/client.js');
  const { runRemoteCommand } = await import('../../plumb-cli/run.js');
  const { DEFAULT_LIMITS, StartKind } = await import('../../protocol/wire.js');
  const key = loadKeyFile(keyFile);
  const connection = await connectToDaemon(
    { name: daemon.address, host: '127.0.0.1', port: daemon.port },
    { identity: key.identity, pinnedHostKey: key.hostKey, knownHostsFile: '/nonexistent/known_hosts', acceptNew: false, connectTimeoutMs: 10_000, note: () => undefined },
  );
  return runRemoteCommand(connection, {
    job: { kind: StartKind.Exec, argv: [...argv] },
    // LANG is among the names the daemon accepts by default: only the key's binding can refuse it.
    env: [['LANG', 'C.UTF-8']],
    stdio: { stdin: Readable.from([]), stdout: new PassThrough().resume(), stderr: new PassThrough().resume() },
    signals: new EventEmitter(),
    maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
    initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
    maxWindowBytes: DEFAULT_LIMITS.maxWindowBytes,
    maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
  });
}

test('exported variables: plumb refuses -export with a key (NP_USAGE, the key stays good), and the daemon refuses a Start carrying one', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const variable = 'NP_OTK_EXPORTED';
  const withVariable = { ...env.np.plumbEnv(), [variable]: 'set' };

  const refusedMint = join(env.work, 'refused-mint.key');
  const mintResult = await env.np.plumb(appendTo(marker), { options: [`-mint-key=${refusedMint}`, `-export=${variable}`], env: withVariable });
  assertRefused(mintResult, ErrorCode.Usage, 'exported variables');
  assert.equal(existsSync(refusedMint), false, 'no key file');
  assert.equal(logLines(env.np.daemon, 'one-time key minted').length, 0, 'nothing was minted');

  const keyFile = join(env.work, 'node.key');
  const key = assertMinted(await env.mint(keyFile, appendTo(marker)), env, keyFile);
  const nodeHome = tempDir(t, 'netplumb-node-export-home-');
  const exported = await spawnProcess(t, [process.execPath, BIN.plumb, `-one-time-key=${keyFile}`, `-export=${variable}`, env.np.daemon.address, ...appendTo(marker)], {
    env: { ...withVariable, NETPLUMB_HOME: nodeHome },
  }).result;
  assertRefused(exported, ErrorCode.Usage, 'exported variables');
  assert.deepEqual(markerLines(marker), []);
  assert.ok(existsSync(join(env.store, `${key.id}.key`)), 'the key was not spent');
  assert.equal(logLines(env.np.daemon, 'one-time key used').length, 0);
  const plain = await env.node(keyFile, appendTo(marker));
  assert.equal(plain.code, 0, plain.stderr);
  assert.deepEqual(markerLines(marker), ['ran'], 'the key still worked, once, without the variable');

  const rawFile = join(env.work, 'raw.key');
  const raw = assertMinted(await env.mint(rawFile, appendTo(marker)), env, rawFile);
  await assert.rejects(startWithExportedVariable(rawFile, env.np.daemon, appendTo(marker)), (error: unknown) => {
    assert.equal((error as { code?: unknown }).code, ErrorCode.NotPermitted, String(error));
    assert.match((error as Error).message, /no exported variables/);
    return true;
  });
  assert.deepEqual(markerLines(marker), ['ran'], 'the Start with a variable ran nothing');
  assert.equal(logLines(env.np.daemon, 'command started').length, 1);
  assertRefused(await env.node(rawFile, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.equal(logLines(env.np.daemon, 'one-time key used', `key=${raw.fingerprint}`).length, 1, 'the refused Start used the key up, as any other command does');
  assert.deepEqual(markerLines(marker), ['ran']);
});
