// End to end: a proxy flips one byte between plumb and netplumbd, in either direction, in the handshake or inside
// bulk data, in each header field or the payload, with and without a recomputed CRC. Every change is detected:
// plumb exits 255, never passes on altered bytes, and the daemon goes on serving other clients.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode, startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { deterministicBytes, deterministicSha256, deterministicStream, generatorCommand } from '../helpers/payloads.js';
import { type ProcessResult } from '../helpers/processes.js';
import { startTamperProxy, type PacketField, type TamperProxy, type TamperRule } from '../helpers/tamper-proxy.js';

const TIMEOUT_MS = 120_000;
const RUN_TIMEOUT_MS = 60_000;
const BULK_BYTES = 16 * 1024 * 1024;
/** Well inside the bulk data of either direction, well before its end. */
const BULK_OFFSET = 4 * 1024 * 1024 + 1234;

interface Transfer {
  result: ProcessResult;
  /** What plumb's stdout would be had nothing been altered. */
  expected: Buffer;
}

/** plumb downloads BULK_BYTES of a deterministic stream through the proxy. */
async function download(np: Netplumb, proxy: TamperProxy): Promise<Transfer> {
  const seed = 'tamper-download';
  const result = await np.plumb(generatorCommand(seed, BULK_BYTES), { machine: proxy.address, timeoutMs: RUN_TIMEOUT_MS });
  return { result, expected: deterministicBytes(seed, BULK_BYTES) };
}

/** plumb uploads BULK_BYTES of a deterministic stream through the proxy into a remote sha256sum. */
async function upload(np: Netplumb, proxy: TamperProxy): Promise<Transfer> {
  const seed = 'tamper-upload';
  const result = await np.plumb(['sha256sum'], {
    machine: proxy.address,
    stdin: deterministicStream(seed, BULK_BYTES),
    timeoutMs: RUN_TIMEOUT_MS,
  });
  return { result, expected: Buffer.from(`${deterministicSha256(seed, BULK_BYTES)}  -\n`) };
}

/** The checks every altered connection must pass, then a clean run straight to the daemon. */
async function assertDetected(np: Netplumb, proxy: TamperProxy, { result, expected }: Transfer): Promise<void> {
  assert.ok(proxy.tampered !== undefined, 'the proxy did not reach the byte to alter');
  assert.equal(result.code, 255, `plumb must fail: ${result.stderr}`);
  assert.match(result.stderr, /\(NP_[A-Z_]+\)\s*$/);
  assert.ok(result.stdout.length < expected.length, 'plumb delivered the whole output despite the alteration');
  assert.ok(result.stdout.equals(expected.subarray(0, result.stdout.length)), 'plumb passed on altered bytes');
  const clean = await np.plumb(['echo', 'still-serving'], { timeoutMs: RUN_TIMEOUT_MS });
  assert.equal(clean.code, 0, clean.stderr);
  assert.equal(clean.stdout.toString(), 'still-serving\n');
  assert.ok(np.daemon.running);
}

async function setup(t: { after(fn: () => unknown): void }, tamper: TamperRule): Promise<{ np: Netplumb; proxy: TamperProxy }> {
  const np = await startNetplumb(t);
  // Pin the host key straight away, so the runs through the proxy only differ by the alteration.
  assert.equal((await np.plumb(['true'])).code, 0);
  const proxy = await startTamperProxy(t, { targetPort: np.daemon.port, tamper });
  return { np, proxy };
}

test('the proxy passes both directions unchanged when told to alter nothing', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  assert.equal((await np.plumb(['true'])).code, 0);
  // An offset past the end of the stream: the proxy parses packets but never reaches the byte.
  const proxy = await startTamperProxy(t, { targetPort: np.daemon.port, tamper: { direction: 'toClient', offset: 2 ** 40, fixCrc: true } });
  const down = await download(np, proxy);
  assert.equal(down.result.code, 0, down.result.stderr);
  assert.ok(down.result.stdout.equals(down.expected));
  const up = await upload(np, proxy);
  assert.equal(up.result.code, 0, up.result.stderr);
  assert.ok(up.result.stdout.equals(up.expected));
  assert.equal(proxy.tampered, undefined);
});

for (const fixCrc of [false, true]) {
  const crcNote = fixCrc ? ' with the CRC recomputed' : '';
  for (const offset of [30, 300]) {
    test(`a byte flipped at offset ${offset} of the handshake from the daemon is detected${crcNote}`, { timeout: TIMEOUT_MS }, async (t) => {
      const { np, proxy } = await setup(t, { direction: 'toClient', offset, fixCrc });
      await assertDetected(np, proxy, await download(np, proxy));
    });
    test(`a byte flipped at offset ${offset} of the handshake from plumb is detected${crcNote}`, { timeout: TIMEOUT_MS }, async (t) => {
      const { np, proxy } = await setup(t, { direction: 'toDaemon', offset, fixCrc });
      await assertDetected(np, proxy, await upload(np, proxy));
    });
  }
  test(`a byte flipped inside downloaded bulk data is detected${crcNote}`, { timeout: TIMEOUT_MS }, async (t) => {
    const { np, proxy } = await setup(t, { direction: 'toClient', offset: BULK_OFFSET, fixCrc });
    await assertDetected(np, proxy, await download(np, proxy));
  });
  test(`a byte flipped inside uploaded bulk data is detected${crcNote}`, { timeout: TIMEOUT_MS }, async (t) => {
    const { np, proxy } = await setup(t, { direction: 'toDaemon', offset: BULK_OFFSET, fixCrc });
    await assertDetected(np, proxy, await upload(np, proxy));
  });
}

/** Which check catches a flip in each place of a bulk-data packet (the receiver's code). */
const PACKET_CASES: { name: string; offsetInPacket: number; xor?: number; fixCrc: boolean; field: PacketField; code: string }[] = [
  { name: 'the magic', offsetInPacket: 1, fixCrc: false, field: 'magic', code: ErrorCode.BadMagic },
  { name: 'the size field (past the packet limit)', offsetInPacket: 4, xor: 0x80, fixCrc: false, field: 'size', code: ErrorCode.BadSize },
  { name: 'the CRC', offsetInPacket: 9, fixCrc: false, field: 'crc', code: ErrorCode.BadCrc },
  { name: 'the sequence number', offsetInPacket: 15, fixCrc: true, field: 'sequence', code: ErrorCode.BadSequence },
  { name: 'the packet type', offsetInPacket: 16, fixCrc: true, field: 'type', code: ErrorCode.BadTag },
  { name: 'the payload', offsetInPacket: 17 + 100, fixCrc: false, field: 'payload', code: ErrorCode.BadCrc },
  { name: 'the payload', offsetInPacket: 17 + 100, fixCrc: true, field: 'payload', code: ErrorCode.BadTag },
  { name: 'the AEAD tag', offsetInPacket: -1, fixCrc: true, field: 'payload', code: ErrorCode.BadTag },
];

for (const item of PACKET_CASES) {
  const crcNote = item.fixCrc ? ' with the CRC recomputed' : '';
  test(`a flip in ${item.name} of a data packet to plumb fails with ${item.code}${crcNote}`, { timeout: TIMEOUT_MS }, async (t) => {
    const rule: TamperRule = { direction: 'toClient', offset: BULK_OFFSET, offsetInPacket: item.offsetInPacket, fixCrc: item.fixCrc };
    if (item.xor !== undefined) rule.xor = item.xor;
    const { np, proxy } = await setup(t, rule);
    const transfer = await download(np, proxy);
    assert.equal(proxy.tampered?.field, item.field);
    assert.equal(reportedCode(transfer.result.stderr), item.code, transfer.result.stderr);
    await assertDetected(np, proxy, transfer);
  });

  test(`a flip in ${item.name} of a data packet to the daemon is logged as ${item.code}${crcNote}`, { timeout: TIMEOUT_MS }, async (t) => {
    const rule: TamperRule = { direction: 'toDaemon', offset: BULK_OFFSET, offsetInPacket: item.offsetInPacket, fixCrc: item.fixCrc };
    if (item.xor !== undefined) rule.xor = item.xor;
    const { np, proxy } = await setup(t, rule);
    const transfer = await upload(np, proxy);
    assert.equal(proxy.tampered?.field, item.field);
    // The daemon tells plumb nothing about which check failed.
    assert.equal(reportedCode(transfer.result.stderr), ErrorCode.ConnectionLost, transfer.result.stderr);
    await np.daemon.waitForLog(new RegExp(`code=${item.code}`));
    await assertDetected(np, proxy, transfer);
  });
}

test('an altered connection does not disturb a clean one running at the same time', { timeout: TIMEOUT_MS }, async (t) => {
  const { np, proxy } = await setup(t, { direction: 'toClient', offset: BULK_OFFSET, fixCrc: true });
  const seed = 'tamper-concurrent';
  const clean = np.plumb(generatorCommand(seed, BULK_BYTES), { timeoutMs: RUN_TIMEOUT_MS });
  const altered = await download(np, proxy);
  const cleanResult = await clean;
  assert.equal(cleanResult.code, 0, cleanResult.stderr);
  assert.ok(cleanResult.stdout.equals(deterministicBytes(seed, BULK_BYTES)));
  await assertDetected(np, proxy, altered);
});
