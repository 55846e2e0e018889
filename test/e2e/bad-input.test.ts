// End to end: raw sockets send netplumbd what no plumb would: garbage, a wrong magic, impossible sizes, a cut-off
// packet, wrong packets in the handshake, or nothing at all. Each connection is closed (the daemon logs why), and
// the daemon never crashes: a real plumb is served afterwards.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import { ErrorCode } from '../../protocol/errors.js';
import { startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { onCleanup, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 120_000;
const HANDSHAKE_TIMEOUT_MS = 1000;
/** How long a connection may take to be closed; the daemon's handshake timeout is far shorter. */
const CLOSE_WITHIN_MS = 15_000;

/** A TAP1 packet built by hand: magic, size, CRC over sequence+type+payload, sequence, type, payload. */
function packet(sequence: number, type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(17);
  header.write('TAP1', 0, 'ascii');
  header.writeUInt32BE(payload.length + 9, 4);
  header.writeUInt32BE(sequence, 12);
  header.writeUInt8(type, 16);
  header.writeUInt32BE(crc32(payload, crc32(header.subarray(12))), 8);
  return Buffer.concat([header, payload]);
}

function fields(entries: [string, string][]): Buffer {
  return Buffer.from(`${entries.map(([name, value]) => `${name}=${value}\0`).join('')}\0`, 'utf8');
}

/** A client Hello as plumb would send it. */
function clientHello(): Buffer {
  return packet(
    0,
    1,
    fields([
      ['protocol', 'TAP1/1'],
      ['software', 'raw-socket-test'],
      ['nonce', randomBytes(32).toString('hex')],
      ['max-packet-bytes', '1048576'],
      ['initial-window-bytes', '2097152'],
      ['kex', 'x25519'],
      ['ciphers', 'aes-256-gcm,chacha20-poly1305'],
      ['signatures', 'ssh-ed25519,rsa-pss-sha256'],
    ]),
  );
}

interface RawOutcome {
  received: Buffer;
  closedAfterMs: number;
}

/**
 * Connects, sends the pieces (ending the write side if asked), and resolves when the daemon has closed the
 * connection; rejects if it stays open longer than CLOSE_WITHIN_MS.
 */
function sendRaw(scope: Scope, port: number, pieces: Buffer[], options: { end?: boolean } = {}): Promise<RawOutcome> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const received: Buffer[] = [];
    const socket: Socket = connect({ host: '127.0.0.1', port });
    onCleanup(scope, () => socket.destroy());
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the daemon kept the connection open for ${CLOSE_WITHIN_MS} ms`));
    }, CLOSE_WITHIN_MS);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    // Closed by the daemon: its end (FIN) or a reset both count.
    socket.once('end', () => socket.destroy());
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(received), closedAfterMs: Date.now() - started });
    });
    socket.once('connect', () => {
      for (const piece of pieces) socket.write(piece);
      if (options.end === true) socket.end();
    });
  });
}

async function assertStillServing(np: Netplumb): Promise<void> {
  const result = await np.plumb(['echo', 'still-serving']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'still-serving\n');
  assert.ok(np.daemon.running, 'netplumbd must not have crashed');
  assert.doesNotMatch(np.daemon.log(), /uncaught|TypeError|RangeError|at .*\.js:\d+/i);
}

async function start(t: Scope): Promise<Netplumb> {
  return startNetplumb(t, { daemonArgs: [`-handshake-timeout-ms=${HANDSHAKE_TIMEOUT_MS}`] });
}

test('plain garbage is refused at its first bytes', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const outcome = await sendRaw(t, np.daemon.port, [Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')]);
  assert.equal(outcome.received.includes('HTTP'), false);
  await np.daemon.waitForLog(new RegExp(ErrorCode.BadMagic));
  await assertStillServing(np);
});

test('a packet with a wrong magic is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const hello = clientHello();
  hello.write('TAP2', 0, 'ascii');
  await sendRaw(t, np.daemon.port, [hello]);
  await np.daemon.waitForLog(new RegExp(ErrorCode.BadMagic));
  await assertStillServing(np);
});

test('a size beyond max-packet-bytes is refused from the header, before any body', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const header = packet(0, 1, Buffer.alloc(0)).subarray(0, 17);
  header.writeUInt32BE(0x7fff_ffff, 4);
  // Only the header is sent and the connection stays open from this side: the daemon must not wait for a body.
  const outcome = await sendRaw(t, np.daemon.port, [header]);
  await np.daemon.waitForLog(new RegExp(ErrorCode.BadSize));
  assert.doesNotMatch(np.daemon.log(), new RegExp(ErrorCode.HandshakeTimeout), `closed after ${outcome.closedAfterMs} ms`);
  await assertStillServing(np);
});

test('a size below the minimum is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const header = packet(0, 1, Buffer.alloc(0)).subarray(0, 17);
  header.writeUInt32BE(3, 4);
  await sendRaw(t, np.daemon.port, [header]);
  await np.daemon.waitForLog(new RegExp(ErrorCode.BadSize));
  await assertStillServing(np);
});

test('a packet cut off by the end of the connection is reported as truncated', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const hello = clientHello();
  await sendRaw(t, np.daemon.port, [hello.subarray(0, hello.length - 10)], { end: true });
  await np.daemon.waitForLog(new RegExp(ErrorCode.Truncated));
  await assertStillServing(np);
});

test('a packet with a wrong CRC is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const hello = clientHello();
  hello.writeUInt32BE((hello.readUInt32BE(8) ^ 0x0100_0000) >>> 0, 8);
  await sendRaw(t, np.daemon.port, [hello]);
  await np.daemon.waitForLog(new RegExp(ErrorCode.BadCrc));
  await assertStillServing(np);
});

test('a packet with the wrong sequence number is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const hello = clientHello();
  const payload = hello.subarray(17);
  await sendRaw(t, np.daemon.port, [packet(5, 1, payload)]);
  await np.daemon.waitForLog(new RegExp(ErrorCode.BadSequence));
  await assertStillServing(np);
});

test('a stream packet instead of a hello is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  await sendRaw(t, np.daemon.port, [packet(0, 31, Buffer.from('0001not-encrypted'))]);
  await np.daemon.waitForLog(new RegExp(ErrorCode.UnexpectedPacket));
  await assertStillServing(np);
});

test('a hello whose payload is not name=value fields is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  await sendRaw(t, np.daemon.port, [packet(0, 1, Buffer.from('this is not a field list'))]);
  await np.daemon.waitForLog(new RegExp(ErrorCode.BadFields));
  await assertStillServing(np);
});

test('a connection that sends nothing is closed after handshake-timeout-ms', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const outcome = await sendRaw(t, np.daemon.port, []);
  assert.ok(outcome.closedAfterMs >= HANDSHAKE_TIMEOUT_MS * 0.8, `closed after ${outcome.closedAfterMs} ms`);
  assert.equal(outcome.received.length, 0);
  await np.daemon.waitForLog(new RegExp(ErrorCode.HandshakeTimeout));
  await assertStillServing(np);
});

test('a handshake that stalls after the hello is closed after handshake-timeout-ms', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const outcome = await sendRaw(t, np.daemon.port, [clientHello()]);
  // The daemon did answer the hello, then gave up waiting for the key exchange.
  assert.ok(outcome.received.subarray(0, 4).equals(Buffer.from('TAP1')));
  assert.ok(outcome.received.includes('TAP1/1'));
  assert.ok(outcome.closedAfterMs >= HANDSHAKE_TIMEOUT_MS * 0.8, `closed after ${outcome.closedAfterMs} ms`);
  await np.daemon.waitForLog(new RegExp(ErrorCode.HandshakeTimeout));
  await assertStillServing(np);
});

test('a key exchange that is garbage after a good hello is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const exchange = packet(1, 10, fields([['ephemeral', 'A'.repeat(43)], ['identity', 'ssh-ed25519 AAAA'], ['signature', 'AAAA']]));
  await sendRaw(t, np.daemon.port, [clientHello(), exchange]);
  await np.daemon.waitForLog(/handshake failed .*code=NP_[A-Z_]+/);
  await assertStillServing(np);
});

test('many bad connections at once leave the daemon serving', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const kinds = [
    () => [Buffer.from('garbage garbage garbage')],
    () => [clientHello().subarray(0, 30)],
    () => [Buffer.alloc(64 * 1024, 0x54)],
    () => [],
  ];
  const attempts = Array.from({ length: 40 }, (_, index) => sendRaw(t, np.daemon.port, (kinds[index % kinds.length] as () => Buffer[])()));
  await Promise.all(attempts);
  await assertStillServing(np);
});

test('connections reset right after connecting leave the daemon serving', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  for (let attempt = 0; attempt < 20; attempt++) {
    await new Promise<void>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: np.daemon.port });
      socket.on('error', () => resolve());
      socket.once('connect', () => {
        socket.resetAndDestroy();
        resolve();
      });
    });
  }
  await assertStillServing(np);
});

test("a peer's error message reaches the log with its control characters escaped", { timeout: TIMEOUT_MS }, async (t) => {
  const np = await start(t);
  const message = 'evil\x1b[2J\x1b]0;owned\x07 back\bspace\rreturn\nnewline \u009b31m \u202eright-to-left';
  await sendRaw(t, np.daemon.port, [packet(0, 99, fields([['code', 'NP_INTERNAL'], ['message', message]]))]);
  const log = await np.daemon.waitForLog(/handshake failed .*evil/);
  const line = log.split('\n').find((text) => text.includes('evil')) as string;
  assert.match(line, /evil\\x1b\[2J\\x1b\]0;owned\\x07 back\\x08space\\rreturn\\nnewline \\x9b31m \\u202eright-to-left/);
  // Nothing of what the peer sent can move the cursor, end the line or reorder it on a terminal.
  assert.doesNotMatch(log, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]/);
  await assertStillServing(np);
});
