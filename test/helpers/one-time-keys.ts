// One-time key fixtures for the end-to-end tests: a daemon whose client is a controller, nodes with homes of
// their own, and what a test works out from a key file by itself (without netplumb's own key code).

import assert from 'node:assert/strict';
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ErrorCode } from '../../protocol/errors.js';
import { BIN, reportedCode, rewriteClients, startNetplumb, writeKeyPair, type DaemonProcess, type KeyFiles, type Netplumb, type NetplumbOptions } from './daemon.js';
import { spawnProcess, type ProcessResult, type RunningProcess } from './processes.js';
import { tempDir, type Scope } from './scope.js';
export interface ControllerNetplumb {
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
export async function startControllerNetplumb(scope: Scope, controllerLine: (publicLine: string) => string = (line) => `controller ${line}`, options: NetplumbOptions = {}): Promise<ControllerNetplumb> {
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
export function appendTo(marker: string, word = 'ran'): string[] {
  return ['sh', '-c', `echo ${word} >> ${marker}`];
}

export function markerLines(marker: string): string[] {
  return existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').filter((line) => line !== '') : [];
}

function sshString(bytes: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** What the test works out from a key file by itself, without netplumb's own key code. */
export interface KeyFileFacts {
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

export function readKeyFile(file: string): KeyFileFacts {
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
export function logLines(daemon: DaemonProcess, ...words: string[]): string[] {
  return daemon.log().split('\n').filter((line) => words.every((word) => line.includes(word)));
}

export function assertMinted(result: ProcessResult, env: ControllerNetplumb, file: string): KeyFileFacts {
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.length, 0, 'minting runs nothing');
  const key = readKeyFile(file);
  assert.ok(result.stderr.includes(`plumb: one-time key ${key.fingerprint} for ${env.np.daemon.address} written to ${file}`), result.stderr);
  return key;
}

export function assertRefused(result: ProcessResult, code: ErrorCode, ...mentions: string[]): void {
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), code, result.stderr);
  assert.equal(result.stdout.length, 0);
  for (const word of mentions) assert.ok(result.stderr.includes(word), `the message names ${word}: ${result.stderr}`);
}

/** Fails if the bytes hold the key file's private key in any of its forms (PEM lines, DER, seed). */
export function assertSecretAbsent(bytes: Buffer, key: KeyFileFacts, what: string): void {
  assert.ok(bytes.length > 0, `${what}: something was recorded`);
  for (const line of key.pemBody) assert.equal(bytes.indexOf(line), -1, `${what} holds the PEM line ${line}`);
  assert.equal(bytes.indexOf(key.der), -1, `${what} holds the private key DER`);
  assert.equal(bytes.indexOf(key.seed), -1, `${what} holds the private key seed`);
}
