// End to end: 256 MiB cross a replicated named pipe byte-exact in each direction, checked by SHA-256: written into
// a local FIFO and read by the remote command (-infifo), written by the remote command and read here (-outfifo).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { deterministicSha256, GENERATOR_SCRIPT } from '../helpers/payloads.js';
import { HASH_READER, hashFrom, mkfifo, parseHashLine, startEndpointNetplumb, writeSeedInto } from '../helpers/endpoints.js';

const BYTES = 256 * 1024 * 1024;
const TIMEOUT_MS = 300_000;
const RUN_TIMEOUT_MS = 240_000;

test('-infifo: 256 MiB written into the local FIFO reach the remote reader byte-exact', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const seed = 'infifo-256';
  // The FIFO exists before plumb starts, so the writer can open it at once (it waits there for plumb's reader).
  mkfifo(join(env.local, 'in'));
  const writer = writeSeedInto(t, join(env.local, 'in'), seed, BYTES, RUN_TIMEOUT_MS);
  const run = env.spawnPlumb(['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/in"', process.execPath, HASH_READER], {
    options: ['-infifo=in'],
    timeoutMs: RUN_TIMEOUT_MS,
  });
  const [result, written] = await Promise.all([run.result, writer.result]);
  assert.equal(written.code, 0, written.stderr);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(parseHashLine(result.stdout), { bytes: BYTES, sha256: deterministicSha256(seed, BYTES) });
});

test('-outfifo: 256 MiB the remote command writes reach the local reader byte-exact', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const seed = 'outfifo-256';
  mkfifo(join(env.local, 'out'));
  const reader = hashFrom(t, join(env.local, 'out'), { timeoutMs: RUN_TIMEOUT_MS });
  const run = env.spawnPlumb(['sh', '-c', '"$0" -e "$1" "$2" "$3" > "$NETPLUMB_SPOOL/out"', process.execPath, GENERATOR_SCRIPT, seed, String(BYTES)], {
    options: ['-outfifo=out'],
    timeoutMs: RUN_TIMEOUT_MS,
  });
  const [result, read] = await Promise.all([run.result, reader.result]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(read.code, 0, read.stderr);
  assert.deepEqual(parseHashLine(read.stdout), { bytes: BYTES, sha256: deterministicSha256(seed, BYTES) });
});

test('-infifo and -outfifo together, with stdout beside them, each byte-exact', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const bytes = 16 * 1024 * 1024;
  mkfifo(join(env.local, 'in'));
  mkfifo(join(env.local, 'out'));
  const writer = writeSeedInto(t, join(env.local, 'in'), 'both-in', bytes);
  const reader = hashFrom(t, join(env.local, 'out'));
  // Remote: copy the in-FIFO into the out-FIFO, and print the seed stream of another seed on stdout.
  const run = env.spawnPlumb(
    ['sh', '-c', 'cat "$NETPLUMB_SPOOL/in" > "$NETPLUMB_SPOOL/out" & "$0" -e "$1" both-stdout "$2"; wait', process.execPath, GENERATOR_SCRIPT, String(bytes)],
    { options: ['-infifo=in', '-outfifo=out'] },
  );
  const [result, written, read] = await Promise.all([run.result, writer.result, reader.result]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(written.code, 0, written.stderr);
  assert.deepEqual(parseHashLine(read.stdout), { bytes, sha256: deterministicSha256('both-in', bytes) });
  assert.equal(result.stdout.length, bytes);
  assert.equal(createHash('sha256').update(result.stdout).digest('hex'), deterministicSha256('both-stdout', bytes));
});

test('repeated -infifo and -outfifo options: each FIFO keeps its own bytes', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const bytes = 4 * 1024 * 1024;
  const names = ['in-a', 'in-b', 'out-a', 'out-b'];
  for (const name of names) mkfifo(join(env.local, name));
  const writers = ['in-a', 'in-b'].map((name) => writeSeedInto(t, join(env.local, name), name, bytes));
  const readers = ['out-a', 'out-b'].map((name) => hashFrom(t, join(env.local, name)));
  // Remote: in-a goes to out-b and in-b to out-a, at the same time.
  const run = env.spawnPlumb(['sh', '-c', 'S=$NETPLUMB_SPOOL; cat "$S/in-a" > "$S/out-b" & cat "$S/in-b" > "$S/out-a" & wait'], {
    options: ['-infifo=in-a', '-outfifo=out-a', '-infifo=in-b', '-outfifo=out-b'],
  });
  const [result, ...others] = await Promise.all([run.result, ...writers.map((writer) => writer.result), ...readers.map((reader) => reader.result)]);
  assert.equal(result.code, 0, result.stderr);
  const [, , readA, readB] = others;
  assert.deepEqual(parseHashLine(readA?.stdout ?? Buffer.alloc(0)), { bytes, sha256: deterministicSha256('in-b', bytes) });
  assert.deepEqual(parseHashLine(readB?.stdout ?? Buffer.alloc(0)), { bytes, sha256: deterministicSha256('in-a', bytes) });
});
