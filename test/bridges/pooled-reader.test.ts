// The pooled pipe reader over real pipes: every byte arrives in order through a sink that holds chunks for a while
// (so a buffer read into again too early would show as corrupted data), reading stops while the whole ring is out
// and starts again as buffers come back, EOF ends the sink, and at the end every buffer is back in the ring.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { constants, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, test, type TestContext } from 'node:test';
import { PooledFdReader, pipeFdPooled, POOLED_READ_BUFFERS, type CopyingWritable } from '../../bridges/pooled-reader.js';
import { tempDir } from '../helpers/scope.js';

/** A sink that takes each chunk only after `delayMs`, keeping a hash of what it was given when it took it. */
function slowSink(delayMs: number): { sink: CopyingWritable; digest: () => string; maxHeld: () => number } {
  const hash = createHash('sha256');
  let held = 0;
  let maxHeld = 0;
  const sink = new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _encoding, done) {
      held++;
      maxHeld = Math.max(maxHeld, held);
      // The bytes are read only when the chunk is taken, as a mux stream's cipher reads them.
      setTimeout(() => {
        hash.update(chunk);
        held--;
        done();
      }, delayMs);
    },
  });
  return { sink: Object.assign(sink, { copiesWrittenBytes: true as const }), digest: () => hash.digest('hex'), maxHeld: () => maxHeld };
}

/**
 * A named pipe in a temp dir, its read end opened non-blocking (as the daemon opens its pipes), and a child running
 * the shell command `writer` gives for it. Returns the read end.
 */
function pipeWrittenBy(t: TestContext, writer: (pipe: string) => string): number {
  const dir = tempDir(t, 'pooled-reader-');
  const pipe = join(dir, 'pipe');
  execFileSync('mkfifo', [pipe]);
  const fd = openSync(pipe, constants.O_RDONLY | constants.O_NONBLOCK);
  const child = spawn('sh', ['-c', writer(pipe)], { stdio: 'ignore' });
  t.after(() => child.kill());
  return fd;
}

/** A pipe a child fills with `data` (kept in a file beside it). */
function pipeCarrying(t: TestContext, data: Buffer): number {
  const file = join(tempDir(t, 'pooled-reader-data-'), 'data');
  writeFileSync(file, data);
  return pipeWrittenBy(t, (pipe) => `cat '${file}' > '${pipe}'`);
}

describe('pooled pipe reader', () => {
  test('a child writing a named pipe: every byte arrives in order through a slow sink, and all buffers come back', async (t) => {
    const data = randomBytes(8 * 1024 * 1024 + 123);
    const fd = pipeCarrying(t, data);
    const { sink, digest, maxHeld } = slowSink(1);
    const reader = pipeFdPooled(fd, sink);
    await once(sink, 'finish');
    assert.equal(digest(), createHash('sha256').update(data).digest('hex'));
    assert.ok(maxHeld() <= POOLED_READ_BUFFERS, `the sink held ${maxHeld()} chunks at once`);
    // One buffer always waits with the socket for its next read.
    assert.equal(reader.freeBuffers, POOLED_READ_BUFFERS - 1);
  });

  test('with every buffer out, reading stops; it starts again when the sink takes them', async (t) => {
    const total = 4 * 1024 * 1024;
    const fd = pipeWrittenBy(t, (pipe) => `head -c ${total} /dev/zero > '${pipe}'`);
    const waiting: (() => void)[] = [];
    let received = 0;
    const sink = Object.assign(
      new Writable({
        highWaterMark: 16 * 1024 * 1024,
        write(chunk: Buffer, _encoding, done) {
          received += chunk.length;
          waiting.push(done);
        },
      }),
      { copiesWrittenBytes: true as const },
    );
    const reader = pipeFdPooled(fd, sink);
    // Nothing is taken: the reader may have at most the ring's worth out, and then it must stop.
    await until(() => reader.freeBuffers === 0, 'the ring to run out');
    const stoppedAt = received;
    await sleep(200);
    assert.equal(received, stoppedAt, 'the reader went on reading with no buffer free');
    assert.ok(received <= (POOLED_READ_BUFFERS - 1) * 64 * 1024);
    // Taking chunks as they come lets the rest through.
    const release = setInterval(() => waiting.splice(0).forEach((done) => done()), 1);
    t.after(() => clearInterval(release));
    await once(sink, 'finish');
    assert.equal(received, total);
  });

});

describe('pooled reader owned by its caller', () => {
  test("the owner's pause holds reading, and a resume while every buffer is out waits for them to come back", async (t) => {
    const data = randomBytes(4 * 1024 * 1024 + 77);
    const fd = pipeCarrying(t, data);
    const pending: [Buffer, () => void][] = [];
    const reader = new PooledFdReader(fd, (chunk, giveBack) => pending.push([chunk, giveBack]));
    const ended = once(reader.socket, 'end');
    await until(() => reader.freeBuffers === 0, 'the ring to run out');
    // A resume from the owner must not read into a buffer that is still out.
    reader.pause();
    reader.resume();
    const outNow = pending.length;
    await sleep(100);
    assert.equal(pending.length, outNow, 'a chunk was read with no buffer free');
    // Held by the owner, reading stays stopped even as buffers come back.
    reader.pause();
    const hash = createHash('sha256');
    const takeAll = (): void => {
      for (const [chunk, giveBack] of pending.splice(0)) {
        hash.update(chunk);
        giveBack();
      }
    };
    takeAll();
    await sleep(100);
    assert.equal(pending.length, 0, 'a chunk was read while the owner held the reader');
    reader.resume();
    const taking = setInterval(takeAll, 1);
    t.after(() => clearInterval(taking));
    await ended;
    clearInterval(taking);
    takeAll();
    assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}
