// FifoSource and FifoSink on real named pipes, with plain in-memory streams standing in for mux streams: rounds,
// EOF, backpressure while no reader is there, a dropped round, and the errors for paths that cannot be used.

import assert from 'node:assert/strict';
import { closeSync, constants as fsConstants, lstatSync, mkdirSync, readFileSync, realpathSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { madeFile, removeMadeFile } from '../../bridges/checked-open.js';
import { ensureFifo, FifoSink, FifoSource, openFifo } from '../../bridges/fifo.js';
import { EndpointError, ErrorCode } from '../../protocol/errors.js';
import { deterministicBytes } from '../helpers/payloads.js';
import { runProcess, spawnProcess, waitUntil } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';
import { collect, halfClosePair, mkfifo, readRound, writeInto } from '../helpers/endpoints.js';

const TIMEOUT_MS = 60_000;

interface CollectedRound {
  round: number;
  /** The far end of the round's stream. */
  far: Duplex;
  bytes: Promise<Buffer>;
}

/** A FifoSource whose rounds are collected: each stream one end of an in-memory pair, read at the other end. */
function collectingSource(path: string): { source: FifoSource; rounds: CollectedRound[]; errors: EndpointError[] } {
  const rounds: CollectedRound[] = [];
  const errors: EndpointError[] = [];
  const source = new FifoSource(
    path,
    (round): Duplex => {
      const { near, far } = halfClosePair();
      rounds.push({ round, far, bytes: collect(far) });
      return near;
    },
    (error) => errors.push(error),
  );
  return { source, rounds, errors };
}

test('ensureFifo makes a missing FIFO (mode 0600) and uses an existing one as it is', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'made');
  const made = await ensureFifo(path);
  assert.equal(made.created, true);
  assert.deepEqual(made.created && { dev: made.made.dev, ino: made.made.ino }, { dev: lstatSync(path).dev, ino: lstatSync(path).ino }, 'it knows the very file it made');
  const stat = lstatSync(path);
  assert.ok(stat.isFIFO());
  assert.equal(stat.mode & 0o777, 0o600);
  assert.deepEqual(await ensureFifo(path), { created: false });
  if (made.created) removeMadeFile(made.made);
  assert.throws(() => lstatSync(path), { code: 'ENOENT' });
});

test('ensureFifo refuses a regular file, a missing directory and a path under a file with NP_ENDPOINT', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'plain');
  writeFileSync(file, 'not a pipe');
  for (const path of [file, join(dir, 'missing', 'fifo'), join(file, 'fifo')]) {
    await assert.rejects(ensureFifo(path), (error: unknown) => {
      assert.ok(error instanceof EndpointError, String(error));
      assert.equal(error.code, ErrorCode.Endpoint);
      assert.ok(error.message.includes(path), error.message);
      return true;
    });
  }
});

test('ensureFifo makes the pipe in the directory its check saw, even when that directory is swapped for a symlink meanwhile', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'd'));
  mkdirSync(join(dir, 'elsewhere'));
  const seen: string[] = [];
  // The check itself swaps the directory: whatever happens after it, mkfifo works in the directory held open.
  const swapping = (realPath: string): void => {
    seen.push(realPath);
    renameSync(join(dir, 'd'), join(dir, 'd.old'));
    symlinkSync(join(dir, 'elsewhere'), join(dir, 'd'));
  };
  const result = await ensureFifo(join(dir, 'd', 'p'), true, undefined, swapping);
  assert.deepEqual(seen, [join(realpathSync(dir), 'd', 'p')]);
  assert.ok(lstatSync(join(dir, 'd.old', 'p')).isFIFO(), 'the pipe is where the check looked');
  assert.throws(() => lstatSync(join(dir, 'elsewhere', 'p')), { code: 'ENOENT' });
  assert.ok(result.created && result.made.ino === lstatSync(join(dir, 'd.old', 'p')).ino, 'and it is known as that very pipe');
  // A check that refuses makes nothing.
  const refusing = (): void => {
    throw new Error('not here');
  };
  await assert.rejects(ensureFifo(join(dir, 'elsewhere', 'q'), true, undefined, refusing), /not here/);
  assert.throws(() => lstatSync(join(dir, 'elsewhere', 'q')), { code: 'ENOENT' });
});

test('removeMadeFile removes only the file made: another put under its name, or a name gone, is left alone', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'made');
  await ensureFifo(path);
  const made = madeFile(path);
  // The command replaced its pipe with a file of its own (or a link elsewhere): that is not ours to remove.
  renameSync(path, join(dir, 'moved'));
  writeFileSync(path, 'keep me');
  removeMadeFile(made);
  assert.equal(readFileSync(path, 'utf8'), 'keep me');
  unlinkSync(path);
  removeMadeFile(made);
  removeMadeFile({ path: join(dir, 'missing-dir', 'x'), dev: made.dev, ino: made.ino });
  assert.ok(lstatSync(join(dir, 'moved')).isFIFO(), 'the pipe moved away is not chased either');
});

test('openFifo opens only a FIFO and never through a symlink: a file or a link put in its place is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const pipe = join(dir, 'pipe');
  await ensureFifo(pipe);
  const fd = openFifo(pipe, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  closeSync(fd);
  const file = join(dir, 'file');
  writeFileSync(file, 'secret');
  assert.throws(() => openFifo(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK), { code: 'ENOTFIFO' });
  const link = join(dir, 'link');
  symlinkSync(pipe, link);
  assert.throws(() => openFifo(link, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK), { code: 'ELOOP' });
});

test('FifoSource sends each writer round as its own stream, ended at the round end', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const { source, rounds, errors } = collectingSource(path);
  t.after(() => source.stop());
  source.start();
  const first = deterministicBytes('source-round-0', 3 * 1024 * 1024 + 17);
  const second = Buffer.from('the second round\n');
  assert.equal((await writeInto(t, path, first).result).code, 0);
  await waitUntil('the first round', () => rounds.length === 1);
  assert.ok((await rounds[0]?.bytes)?.equals(first));
  assert.equal((await writeInto(t, path, second).result).code, 0);
  await waitUntil('the second round', () => rounds.length === 2);
  assert.deepEqual(await rounds[1]?.bytes, second);
  assert.deepEqual(
    rounds.map((round) => round.round),
    [0, 1],
  );
  await source.idle();
  assert.equal(source.inRound, false);
  assert.deepEqual(errors, []);
});

test('FifoSource holds a writer back while its stream takes nothing (memory stays bounded)', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const pairs: { near: Duplex; far: Duplex }[] = [];
  const source = new FifoSource(
    path,
    () => {
      const pair = halfClosePair();
      pairs.push(pair);
      return pair.near;
    },
    () => undefined,
  );
  t.after(() => source.stop());
  source.start();
  const bytes = 32 * 1024 * 1024;
  const writer = spawnProcess(t, ['sh', '-c', 'exec head -c "$1" /dev/zero > "$0"', path, String(bytes)]);
  await waitUntil('the round to start', () => pairs.length === 1);
  const { near, far } = pairs[0] as { near: Duplex; far: Duplex };
  // Nobody reads the far end: what is buffered stays near the high-water marks, the writer blocks in the pipe.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const buffered = near.writableLength + far.readableLength;
  assert.ok(buffered < 1024 * 1024, `buffered ${buffered} bytes`);
  assert.equal(writer.child.exitCode, null, 'the writer should still be blocked');
  const received = collect(far);
  assert.equal((await writer.result).code, 0);
  assert.equal((await received).length, bytes);
});

test('FifoSource.finish ends at once when nothing was written, sending no stream', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const { source, rounds } = collectingSource(path);
  t.after(() => source.stop());
  source.start();
  await source.finish();
  assert.equal(rounds.length, 0);
});

test('FifoSource.finish waits for the round a writer still holds open', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const { source, rounds } = collectingSource(path);
  t.after(() => source.stop());
  source.start();
  // A writer that writes, waits, writes again, then closes.
  const writer = spawnProcess(t, ['sh', '-c', 'exec > "$0"; echo one; sleep 0.5; echo two', path]);
  await waitUntil('the round to start', () => rounds.length === 1);
  let finished = false;
  const finishing = source.finish().then(() => (finished = true));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(finished, false, 'finish() must wait for the writer that is still there');
  await finishing;
  assert.equal((await rounds[0]?.bytes)?.toString(), 'one\ntwo\n');
  assert.equal((await writer.result).code, 0);
});

test('FifoSource: a round the far side drops makes the local writer fail; its rest never becomes a round', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const { source, rounds } = collectingSource(path);
  t.after(() => source.stop());
  source.start();
  // A writer that goes on writing a little at a time (for at most 10 s): only a failed write stops it early.
  const writer = spawnProcess(t, ['sh', '-c', 'exec > "$0"; for i in $(seq 1 200); do printf xxxxxxxxxx || exit 9; sleep 0.05; done', path], {
    timeoutMs: 30_000,
  });
  await waitUntil('the round to start', () => rounds.length === 1, 10_000, 5);
  rounds[0]?.far.destroy();
  const result = await writer.result;
  assert.ok(result.signal === 'SIGPIPE' || result.code === 9, `the writer should fail (EPIPE): ${JSON.stringify(result)}`);
  assert.equal((await writeInto(t, path, 'after\n').result).code, 0);
  await waitUntil('a round after the dropped one', () => rounds.length >= 2);
  const later = await Promise.all(rounds.slice(1).map(async (round) => (await round.bytes.catch(() => Buffer.from('<dropped>'))).subarray(0, 16).toString()));
  // Exactly one more round, the new writer's: none made of what the failed writer still had in flight.
  assert.deepEqual(later, ['after\n']);
});

test('FifoSource reports a path that cannot be opened with NP_ENDPOINT', { timeout: TIMEOUT_MS }, (t) => {
  const dir = tempDir(t);
  const { source, errors } = collectingSource(join(dir, 'missing'));
  source.start();
  source.stop();
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.code, ErrorCode.Endpoint);
});

test('FifoSink takes nothing from a round until a reader opens the FIFO, then delivers it whole', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const sink = new FifoSink(path, () => undefined);
  t.after(() => sink.stop());
  const payload = deterministicBytes('sink-wait', 4 * 1024 * 1024);
  const { near, far } = halfClosePair();
  const accepted = far.write(payload);
  far.end();
  sink.add(near);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(accepted, false);
  assert.ok(far.writableLength + near.readableLength >= payload.length - 128 * 1024, 'no reader: the round must stay unread');
  let idle = false;
  void sink.idle().then(() => (idle = true));
  assert.equal(idle, false);
  const received = await readRound(t, path);
  assert.ok(received.equals(payload));
  await sink.idle();
});

/** The near end of a stream whose far end sent these bytes and its EOF. */
function endedRound(bytes: string | Buffer): Duplex {
  const { near, far } = halfClosePair();
  far.end(bytes);
  return near;
}

/** A sink at a new FIFO with the given rounds queued (each a stream already ended). */
function sinkWithRounds(t: { after(fn: () => unknown): void }, rounds: readonly string[]): { path: string; sink: FifoSink } {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const sink = new FifoSink(path, () => undefined);
  t.after(() => sink.stop());
  for (const bytes of rounds) sink.add(endedRound(bytes));
  return { path, sink };
}

test('FifoSink writes queued rounds in order; back to back they reach a reader as a local writer reopening would', { timeout: TIMEOUT_MS }, async (t) => {
  // As with a local writer that closes and reopens at once, a reader that still has the FIFO open may see the two
  // rounds run together; what it must see is every byte, in order, and the end of the last round.
  for (let run = 0; run < 5; run++) {
    const { path, sink } = sinkWithRounds(t, ['first round\n', 'second round\n']);
    const reader = await runProcess(t, ['sh', '-c', 'cat "$0"; timeout 2 cat "$0"; exit 0', path], { timeoutMs: 20_000 });
    assert.equal(reader.code, 0, reader.stderr);
    assert.equal(reader.stdout.toString(), 'first round\nsecond round\n', `run ${run}`);
    await sink.idle();
    sink.stop();
  }
});

test('FifoSink gives a reader that comes after a round ended the next round', { timeout: TIMEOUT_MS }, async (t) => {
  const { path, sink } = sinkWithRounds(t, ['first round\n']);
  const first = await runProcess(t, ['cat', path], { timeoutMs: 20_000 });
  assert.equal(first.stdout.toString(), 'first round\n');
  await sink.idle();
  sink.add(endedRound('second round\n'));
  const second = await runProcess(t, ['cat', path], { timeoutMs: 20_000 });
  assert.equal(second.stdout.toString(), 'second round\n');
  await sink.idle();
});

test('FifoSink: a round that arrives while no reader is there waits for the next reader', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const sink = new FifoSink(path, () => undefined);
  t.after(() => sink.stop());
  sink.add(endedRound('one\n'));
  assert.equal((await readRound(t, path)).toString(), 'one\n');
  await sink.idle();
  sink.add(endedRound('two\n'));
  assert.equal((await readRound(t, path)).toString(), 'two\n');
  await sink.idle();
});

test('FifoSink forgets rounds the far side dropped while no reader came, so the queue stays bounded', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const sink = new FifoSink(path, () => undefined);
  t.after(() => sink.stop());
  for (let round = 0; round < 1000; round++) {
    const stream = halfClosePair().near;
    sink.add(stream);
    stream.destroy();
  }
  assert.ok(sink.queuedRounds <= 1, `${sink.queuedRounds} dropped rounds still queued`);
  sink.add(endedRound('kept\n'));
  assert.equal((await readRound(t, path)).toString(), 'kept\n');
  await sink.idle();
});

test('FifoSink.stop drops the queued rounds and settles idle()', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'fifo');
  mkfifo(path);
  const sink = new FifoSink(path, () => undefined);
  const streams = [halfClosePair().near, halfClosePair().near];
  for (const stream of streams) sink.add(stream);
  const idle = sink.idle();
  sink.stop();
  await idle;
  assert.ok(streams.every((stream) => stream.destroyed));
  const late = halfClosePair().near;
  sink.add(late);
  assert.ok(late.destroyed, 'a stopped sink drops what it is given');
});

test('FifoSink reports a path that is not a FIFO any more with NP_ENDPOINT', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const errors: EndpointError[] = [];
  const sink = new FifoSink(join(dir, 'missing'), (error) => errors.push(error));
  t.after(() => sink.stop());
  sink.add(endedRound('x'));
  await sink.idle();
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.code, ErrorCode.Endpoint);
});
