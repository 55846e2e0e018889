// End to end: one-time keys. A controller (an authorized-clients line with `controller`) mints a key bound to one
// command with `plumb -mint-key=FILE`; a node the daemon does not otherwise know runs exactly that command once with
// `plumb -one-time-key=FILE`, needing no known_hosts because the file names the daemon's host key. Every later use,
// a race of several nodes, a restart of the daemon, expiry, another command, a copied file, bytes replayed from the
// wire, a non-controller, a gluepot, and a controller that lost its flag are each refused, and nothing runs.

import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import {
  BIN,
  delay,
  onCleanup,
  reportedCode,
  spawnProcess,
  startDaemon,
  startNetplumb,
  tempDir,
  writeKeyPair,
  type DaemonProcess,
  type KeyFiles,
  type Netplumb,
  type NetplumbOptions,
  type ProcessResult,
  type RunningProcess,
  type Scope,
  rewriteClients,
} from '../helpers/daemon.js';
import { ensureFixtureAccounts, OTHER, RUNAS } from '../helpers/accounts.js';
import { startTamperProxy } from '../helpers/tamper-proxy.js';

const TIMEOUT_MS = 60_000;
/** How many nodes race for one key. */
const RACERS = 4;

interface ControllerNetplumb {
  np: Netplumb;
  /** The daemon's one-time key store (made by the daemon at the first mint). */
  store: string;
  /** Where key files, markers and node homes go. */
  work: string;
  /** A key pair the daemon has never heard of. */
  third: KeyFiles;
  /** Runs plumb as the controller with -mint-key=file (and any other options) for the command. */
  mint(file: string, command: readonly string[], options?: readonly string[]): Promise<ProcessResult>;
  /** Starts a node: plumb with only -one-time-key (no -identity) and a fresh, empty NETPLUMB_HOME of its own. */
  spawnNode(keyFile: string, command: readonly string[], address?: string): RunningProcess & { home: string };
  node(keyFile: string, command: readonly string[], address?: string): Promise<ProcessResult>;
}

/**
 * A daemon whose one-time key store is a directory of the test's, and its client made a controller by rewriting
 * its line and reloading (SIGHUP), as an operator would.
 */
async function startControllerNetplumb(scope: Scope, controllerLine: (publicLine: string) => string = (line) => `controller ${line}`, options: NetplumbOptions = {}): Promise<ControllerNetplumb> {
  const work = tempDir(scope, 'netplumb-otk-');
  const store = join(work, 'store');
  const np = await startNetplumb(scope, { daemonArgs: [`-one-time-keys=${store}`, ...(options.daemonArgs ?? [])] });
  await rewriteClients(np.daemon, np.clientsFile, `${controllerLine(np.client.publicLine)}\n`);
  const third = writeKeyPair(work, 'third_node');
  let nodes = 0;
  const spawnNode = (keyFile: string, command: readonly string[], address = np.daemon.address): RunningProcess & { home: string } => {
    const home = tempDir(scope, `netplumb-node-${++nodes}-home-`);
    const running = spawnProcess(scope, [process.execPath, BIN.plumb, `-one-time-key=${keyFile}`, address, ...command], {
      env: { ...process.env, NETPLUMB_HOME: home },
    });
    return { ...running, home };
  };
  return {
    np,
    store,
    work,
    third,
    mint: (file, command, extra = []) => np.plumb(command, { options: [`-mint-key=${file}`, ...extra] }),
    spawnNode,
    node: (keyFile, command, address) => spawnNode(keyFile, command, address).result,
  };
}

/** A command that leaves one line in the marker file each time it runs. */
function appendTo(marker: string, word = 'ran'): string[] {
  return ['sh', '-c', `echo ${word} >> ${marker}`];
}

function markerLines(marker: string): string[] {
  return existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').filter((line) => line !== '') : [];
}

function sshString(bytes: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** What the test works out from a key file by itself, without netplumb's own key code. */
interface KeyFileFacts {
  text: string;
  fingerprint: string;
  /** Name of the key's record in the store: hex SHA-256 of the public key blob. */
  id: string;
  /** The base64 lines between the PEM armour. */
  pemBody: string[];
  /** The DER the PEM holds, and the 32-byte Ed25519 seed inside it. */
  der: Buffer;
  seed: Buffer;
}

function readKeyFile(file: string): KeyFileFacts {
  const text = readFileSync(file, 'utf8');
  const pemStart = text.indexOf('-----BEGIN PRIVATE KEY-----');
  assert.ok(pemStart >= 0, `the key file holds a private key: ${text}`);
  const pem = text.slice(pemStart);
  const privateKey = createPrivateKey(pem);
  assert.equal(privateKey.asymmetricKeyType, 'ed25519');
  const publicJwk = createPublicKey(privateKey).export({ format: 'jwk' });
  const blob = Buffer.concat([sshString(Buffer.from('ssh-ed25519')), sshString(Buffer.from(publicJwk.x as string, 'base64url'))]);
  const pemBody = pem.split('\n').filter((line) => line !== '' && !line.startsWith('-----'));
  return {
    text,
    fingerprint: `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`,
    id: createHash('sha256').update(blob).digest('hex'),
    pemBody,
    der: Buffer.from(pemBody.join(''), 'base64'),
    seed: Buffer.from(privateKey.export({ format: 'jwk' }).d as string, 'base64url'),
  };
}

/** Daemon log lines that hold every one of the words. */
function logLines(daemon: DaemonProcess, ...words: string[]): string[] {
  return daemon.log().split('\n').filter((line) => words.every((word) => line.includes(word)));
}

function assertMinted(result: ProcessResult, env: ControllerNetplumb, file: string): KeyFileFacts {
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.length, 0, 'minting runs nothing');
  const key = readKeyFile(file);
  assert.ok(result.stderr.includes(`plumb: one-time key ${key.fingerprint} for ${env.np.daemon.address} written to ${file}`), result.stderr);
  return key;
}

function assertRefused(result: ProcessResult, code: ErrorCode, ...mentions: string[]): void {
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), code, result.stderr);
  assert.equal(result.stdout.length, 0);
  for (const word of mentions) assert.ok(result.stderr.includes(word), `the message names ${word}: ${result.stderr}`);
}

test('mint then use: a 0600 key file naming the daemon host key; the node runs the bound command without known_hosts', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const keyFile = join(env.work, 'node.key');
  const key = assertMinted(await env.mint(keyFile, appendTo(marker), ['-expires=10m']), env, keyFile);
  assert.deepEqual(markerLines(marker), [], 'minting did not run the command');
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  const hostBlob = env.np.hostKey.publicLine.split(' ')[1] as string;
  assert.match(key.text, new RegExp(`^daemon-host-key ssh-ed25519 ${hostBlob.replace(/[+/]/g, '\\$&')}(?=\\s|$)`, 'm'));
  assert.match(key.text, /-----END PRIVATE KEY-----\n$/);
  assert.equal(readdirSync(env.store).sort().join(','), `${key.id}.key`, 'the store holds the good key, by its id');
  const minted = logLines(env.np.daemon, 'one-time key minted', `key=${key.fingerprint}`, `controller=${env.np.client.fingerprint}`);
  assert.equal(minted.length, 1, env.np.daemon.log());

  const node = env.spawnNode(keyFile, appendTo(marker));
  const ran = await node.result;
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stderr, '');
  assert.deepEqual(markerLines(marker), ['ran']);
  assert.deepEqual(readdirSync(node.home), [], 'the node neither needed nor wrote a known_hosts');
  assert.equal(readdirSync(env.store).sort().join(','), `${key.id}.spent`, 'the key is recorded as spent');
});

test('a key works once: the second use is NP_NOT_AUTHORIZED and the log names the key, the node and the controller', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const keyFile = join(env.work, 'node.key');
  const key = assertMinted(await env.mint(keyFile, appendTo(marker)), env, keyFile);
  const first = await env.node(keyFile, appendTo(marker));
  assert.equal(first.code, 0, first.stderr);
  const second = await env.node(keyFile, appendTo(marker));
  // The node has proven it holds the key: it may learn why the key no longer works.
  assertRefused(second, ErrorCode.NotAuthorized, 'one-time key already used');
  assert.deepEqual(markerLines(marker), ['ran'], 'the command ran once');
  const used = logLines(env.np.daemon, 'one-time key used', `key=${key.fingerprint}`, `node=${key.fingerprint}`, `controller=${env.np.client.fingerprint}`);
  assert.equal(used.length, 1, env.np.daemon.log());
  const refused = logLines(env.np.daemon, 'one-time key refused', `key=${key.fingerprint}`, 'reason="one-time key already used"');
  assert.equal(refused.length, 1, env.np.daemon.log());
  assert.equal(logLines(env.np.daemon, 'command started').length, 1, 'one command started in all');
  // What a log shows of a key (mint, use, refusal) is its fingerprint: a key captured from the log is no key.
  assertSecretAbsent(Buffer.from(env.np.daemon.log()), key, 'the daemon log');
});

test(`a race of ${RACERS} nodes with one key: exactly one runs, the others get NP_NOT_AUTHORIZED`, { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const keyFile = join(env.work, 'node.key');
  const key = assertMinted(await env.mint(keyFile, appendTo(marker)), env, keyFile);
  const runs = Array.from({ length: RACERS }, () => env.spawnNode(keyFile, appendTo(marker)));
  const results = await Promise.all(runs.map((run) => run.result));
  const winners = results.filter((result) => result.code === 0);
  assert.equal(winners.length, 1, results.map((result) => `${String(result.code)}: ${result.stderr}`).join('\n'));
  for (const loser of results.filter((result) => result.code !== 0)) assertRefused(loser, ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), ['ran']);
  assert.equal(logLines(env.np.daemon, 'one-time key used', `key=${key.fingerprint}`).length, 1);
  assert.equal(logLines(env.np.daemon, 'one-time key refused', `key=${key.fingerprint}`, 'already used').length, RACERS - 1, env.np.daemon.log());
});

test('a restarted daemon with the same store: a spent key stays spent, a key minted before and not used works once', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const usedMarker = join(env.work, 'used-marker');
  const laterMarker = join(env.work, 'later-marker');
  const usedFile = join(env.work, 'used.key');
  const laterFile = join(env.work, 'later.key');
  const used = assertMinted(await env.mint(usedFile, appendTo(usedMarker)), env, usedFile);
  const later = assertMinted(await env.mint(laterFile, appendTo(laterMarker)), env, laterFile);
  const first = await env.node(usedFile, appendTo(usedMarker));
  assert.equal(first.code, 0, first.stderr);

  const exit = await env.np.daemon.stop();
  assert.equal(exit.code, 0);
  const restarted = await startDaemon(t, { hostKeyFile: env.np.hostKey.privateFile, clientsFile: env.np.clientsFile, args: [`-one-time-keys=${env.store}`] });

  assertRefused(await env.node(usedFile, appendTo(usedMarker), restarted.address), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(usedMarker), ['ran']);
  assert.equal(logLines(restarted, 'one-time key refused', `key=${used.fingerprint}`, 'already used').length, 1, restarted.log());

  const afterRestart = await env.node(laterFile, appendTo(laterMarker), restarted.address);
  assert.equal(afterRestart.code, 0, afterRestart.stderr);
  assert.deepEqual(markerLines(laterMarker), ['ran']);
  assert.equal(logLines(restarted, 'one-time key used', `key=${later.fingerprint}`, `controller=${env.np.client.fingerprint}`).length, 1);
  assertRefused(await env.node(laterFile, appendTo(laterMarker), restarted.address), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(laterMarker), ['ran']);
});

test('an expired key is refused with NP_NOT_AUTHORIZED, the log says expired, and its record is removed', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const keyFile = join(env.work, 'node.key');
  const minted = await env.mint(keyFile, appendTo(marker), ['-expires=1']);
  const key = assertMinted(minted, env, keyFile);
  await delay(1500);
  assertRefused(await env.node(keyFile, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), [], 'nothing ran');
  assert.equal(logLines(env.np.daemon, 'one-time key refused', `key=${key.fingerprint}`, 'reason="one-time key expired"').length, 1, env.np.daemon.log());
  assert.deepEqual(readdirSync(env.store), [], 'the expired record is gone');
});

test('another command with the key is NP_NOT_PERMITTED, nothing runs, and the key is spent', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const otherFile = join(env.work, 'other.key');
  assertMinted(await env.mint(otherFile, appendTo(marker)), env, otherFile);
  assertRefused(await env.node(otherFile, appendTo(marker, 'other')), ErrorCode.NotPermitted, 'one-time key does not allow that');
  assert.deepEqual(markerLines(marker), []);
  assertRefused(await env.node(otherFile, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), [], 'the bound command does not run after a refused one');

  // One argument more is another command too.
  const longerFile = join(env.work, 'longer.key');
  assertMinted(await env.mint(longerFile, appendTo(marker)), env, longerFile);
  assertRefused(await env.node(longerFile, [...appendTo(marker), 'extra']), ErrorCode.NotPermitted);
  assert.deepEqual(markerLines(marker), []);
  assert.deepEqual(env.np.daemon.commandGroups(), []);
  assert.equal(logLines(env.np.daemon, 'command started').length, 0);
});

test('a third node: its own key is not authorized, a copy of a used key file is refused, a wrong host key never connects', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const thirdHome = tempDir(t, 'netplumb-third-home-');
  const ownKey = await plumbWithHome(t, [process.execPath, BIN.plumb, `-identity=${env.third.privateFile}`, '-accept-new', env.np.daemon.address, ...appendTo(marker)], thirdHome);
  assertRefused(ownKey, ErrorCode.NotAuthorized);
  // A key the daemon never minted learns nothing but "not authorized".
  assert.doesNotMatch(ownKey.stderr, /one-time key/);
  const ownMint = await plumbWithHome(t, [process.execPath, BIN.plumb, `-identity=${env.third.privateFile}`, '-accept-new', `-mint-key=${join(env.work, 'third.key')}`, env.np.daemon.address, 'true'], thirdHome);
  assertRefused(ownMint, ErrorCode.NotAuthorized);
  assert.equal(existsSync(join(env.work, 'third.key')), false);

  const keyFile = join(env.work, 'node.key');
  assertMinted(await env.mint(keyFile, appendTo(marker)), env, keyFile);
  // A file naming another host key: the node stops before authenticating, so the key is not spent.
  const wrongHost = join(env.work, 'wrong-host.key');
  writeFileSync(wrongHost, readFileSync(keyFile, 'utf8').replace(/^daemon-host-key .*$/m, `daemon-host-key ${env.third.publicLine}`), { mode: 0o600 });
  assertRefused(await env.node(wrongHost, appendTo(marker)), ErrorCode.HostKeyChanged, env.third.fingerprint);
  assert.deepEqual(markerLines(marker), []);

  const copy = join(env.work, 'copied.key');
  copyFileSync(keyFile, copy);
  chmodSync(copy, 0o600);
  const legitimate = await env.node(keyFile, appendTo(marker));
  assert.equal(legitimate.code, 0, legitimate.stderr);
  assertRefused(await env.node(copy, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), ['ran']);
  assert.equal(logLines(env.np.daemon, 'client not authorized', `fingerprint=${env.third.fingerprint}`).length, 2, env.np.daemon.log());
});

/** A plumb run of argv with its own NETPLUMB_HOME. */
function plumbWithHome(scope: Scope, argv: readonly string[], home: string): Promise<ProcessResult> {
  return spawnProcess(scope, argv, { env: { ...process.env, NETPLUMB_HOME: home } }).result;
}

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
function assertSecretAbsent(bytes: Buffer, key: KeyFileFacts, what: string): void {
  assert.ok(bytes.length > 0, `${what}: something was recorded`);
  for (const line of key.pemBody) assert.equal(bytes.indexOf(line), -1, `${what} holds the PEM line ${line}`);
  assert.equal(bytes.indexOf(key.der), -1, `${what} holds the private key DER`);
  assert.equal(bytes.indexOf(key.seed), -1, `${what} holds the private key seed`);
}

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

test('a client without the controller flag cannot mint: NP_NOT_PERMITTED and no key file', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t, (line) => line);
  const keyFile = join(env.work, 'node.key');
  const marker = join(env.work, 'marker');
  assertRefused(await env.mint(keyFile, appendTo(marker)), ErrorCode.NotPermitted, 'only a controller may mint one-time keys');
  assert.equal(existsSync(keyFile), false);
  assert.equal(existsSync(env.store) ? readdirSync(env.store).length : 0, 0, 'nothing was stored');
  assert.equal(logLines(env.np.daemon, 'one-time key minted').length, 0);
  // The same client still runs commands of its own.
  const ran = await env.np.plumb(appendTo(marker));
  assert.equal(ran.code, 0, ran.stderr);
  assert.deepEqual(markerLines(marker), ['ran']);
});

test("a command the controller's gluepot does not allow is refused at mint time; an allowed one mints and runs", { timeout: TIMEOUT_MS }, async (t) => {
  const gluepots = tempDir(t, 'netplumb-gluepots-');
  writeFileSync(join(gluepots, 'ops'), '/bin/echo ...\n');
  const env = await startControllerNetplumb(t, (line) => `controller,gluepot=ops ${line}`, { daemonArgs: [`-gluepots=${gluepots}`] });
  const marker = join(env.work, 'marker');
  const refusedFile = join(env.work, 'refused.key');
  assertRefused(await env.mint(refusedFile, ['touch', marker]), ErrorCode.NotPermitted, 'touch', 'ops');
  assert.equal(existsSync(refusedFile), false);
  assert.equal(existsSync(env.store) ? readdirSync(env.store).length : 0, 0, 'nothing was stored');
  assert.equal(existsSync(marker), false);

  const allowedFile = join(env.work, 'allowed.key');
  assertMinted(await env.mint(allowedFile, ['echo', 'from', 'the', 'node']), env, allowedFile);
  const ran = await env.node(allowedFile, ['echo', 'from', 'the', 'node']);
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stdout.toString(), 'from the node\n');
});

test('a key is refused once its controller lost the controller flag or its line', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const flagFile = join(env.work, 'flag.key');
  const lineFile = join(env.work, 'line.key');
  const flagKey = assertMinted(await env.mint(flagFile, appendTo(marker)), env, flagFile);
  assertMinted(await env.mint(lineFile, appendTo(marker)), env, lineFile);

  await rewriteClients(env.np.daemon, env.np.clientsFile, `${env.np.client.publicLine}\n`);
  assertRefused(await env.node(flagFile, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), []);
  const lost = logLines(env.np.daemon, 'the controller of this one-time key is no longer authorized', `controller=${env.np.client.fingerprint}`);
  assert.equal(lost.length, 1, env.np.daemon.log());
  assert.ok(lost[0]?.includes(`client=${flagKey.fingerprint}`), lost[0]);
  assertRefused(await env.mint(join(env.work, 'after.key'), appendTo(marker)), ErrorCode.NotPermitted);
  assert.equal(existsSync(join(env.work, 'after.key')), false);

  await rewriteClients(env.np.daemon, env.np.clientsFile, `${env.third.publicLine}\n`);
  assertRefused(await env.node(lineFile, appendTo(marker)), ErrorCode.NotAuthorized);
  assert.deepEqual(markerLines(marker), []);
  assert.equal(logLines(env.np.daemon, 'one-time key used').length, 0);
  assert.equal(logLines(env.np.daemon, 'command started').length, 0);
});

test('bad input: an existing key file is never overwritten; bad lifetimes, option clashes and loose key files are refused', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const existing = join(env.work, 'existing.key');
  writeFileSync(existing, 'keep me\n', { mode: 0o600 });
  assertRefused(await env.mint(existing, appendTo(marker)), ErrorCode.Config, existing, 'already exists');
  assert.equal(readFileSync(existing, 'utf8'), 'keep me\n');
  // The file is made before the daemon is asked: a key nobody could hold is never minted.
  assert.equal(existsSync(env.store) ? readdirSync(env.store).length : 0, 0, 'no key was minted for a file that could not be written');
  assert.equal(logLines(env.np.daemon, 'one-time key minted').length, 0);

  for (const lifetime of ['0', 'abc', '1.5', '-5', '10x', '']) {
    const file = join(env.work, `lifetime-${lifetime}.key`);
    assertRefused(await env.mint(file, ['true'], [`-expires=${lifetime}`]), ErrorCode.Usage, `bad lifetime ${lifetime}`);
    assert.equal(existsSync(file), false, `no key file for -expires=${lifetime}`);
  }
  const tooLong = join(env.work, 'eight-days.key');
  const refusedLong = await env.mint(tooLong, ['true'], ['-expires=8d']);
  assertRefused(refusedLong, ErrorCode.Usage, '-expires=8d', '7 days');
  assert.equal(existsSync(tooLong), false);
  // A week is the longest lifetime, and allowed.
  const week = join(env.work, 'week.key');
  const mintedWeek = await env.mint(week, ['true'], ['-expires=7d']);
  assertMinted(mintedWeek, env, week);
  const until = Date.parse(/until (\S+?),/.exec(mintedWeek.stderr)?.[1] ?? '');
  assert.ok(Math.abs(until - Date.now() - 7 * 86_400_000) < 120_000, mintedWeek.stderr);

  const plain = join(env.work, 'plain.key');
  assertRefused(await env.np.plumb(['true'], { options: ['-expires=10m'] }), ErrorCode.Usage, '-expires');
  assertRefused(await env.mint(plain, ['true'], [`-one-time-key=${week}`]), ErrorCode.Usage);
  assert.equal(existsSync(plain), false);
  const both = await plumbWithHome(t, [process.execPath, BIN.plumb, `-identity=${env.np.client.privateFile}`, `-one-time-key=${week}`, env.np.daemon.address, 'true'], tempDir(t));
  assertRefused(both, ErrorCode.Usage, '-one-time-key');

  // A key file others may read is not used, and so not spent; fixed, it works.
  chmodSync(week, 0o644);
  assertRefused(await env.node(week, ['true']), ErrorCode.KeyFormat, 'too open');
  const noHost = join(env.work, 'no-host.key');
  writeFileSync(noHost, readFileSync(week, 'utf8').replace(/^daemon-host-key .*\n/m, ''), { mode: 0o600 });
  assertRefused(await env.node(noHost, ['true']), ErrorCode.KeyFormat, 'daemon-host-key');
  chmodSync(week, 0o600);
  const ran = await env.node(week, ['true']);
  assert.equal(ran.code, 0, ran.stderr);
  assert.deepEqual(markerLines(marker), [], 'no refused mint ran its command');
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
