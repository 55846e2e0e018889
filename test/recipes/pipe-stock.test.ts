// The pipe stock on its own: what it hands out are real pipes with no name left anywhere (a writer whose reader
// went away is ended by SIGPIPE, as the sockets of child_process 'pipe' would not do), made a batch at a time and
// again before the stock runs out, as many as a large take needs, and a failure to make them is the take's.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, readlinkSync, readSync, writeSync } from 'node:fs';
import { describe, test } from 'node:test';
import { closePipe, PipeStock, type StockedPipe } from '../../recipes/pipe-stock.js';

const TIMEOUT_MS = 60_000;

function closeAll(pipes: readonly StockedPipe[]): void {
  for (const pipe of pipes) closePipe(pipe);
}

describe('PipeStock', () => {
  test('take(n) gives n pipes: FIFOs whose names are gone, bytes written at one end read at the other', { timeout: TIMEOUT_MS }, async () => {
    const stock = new PipeStock(6);
    const pipes = await stock.take(3);
    assert.equal(pipes.length, 3);
    assert.equal(new Set(pipes.flatMap((pipe) => [pipe.readFd, pipe.writeFd])).size, 6, 'six distinct descriptors');
    for (const [index, pipe] of pipes.entries()) {
      assert.ok(fstatSync(pipe.readFd).isFIFO() && fstatSync(pipe.writeFd).isFIFO());
      assert.match(readlinkSync(`/proc/self/fd/${pipe.readFd}`), /\(deleted\)$/, 'no name left to open it by');
      writeSync(pipe.writeFd, `pipe ${index}`);
      const buffer = Buffer.alloc(16);
      assert.equal(buffer.subarray(0, readSync(pipe.readFd, buffer)).toString(), `pipe ${index}`);
    }
    closeAll(pipes);
    stock.drain();
  });

  test('one batch serves several takes; below half a batch the next is made in the background', { timeout: TIMEOUT_MS }, async () => {
    const stock = new PipeStock(8);
    const first = await stock.take(2);
    assert.equal(stock.size, 6, 'one batch of 8, 2 taken');
    assert.equal(stock.heldFds, 12);
    const second = await stock.take(3);
    assert.equal(stock.size, 3, 'under half a batch: a new one is on its way');
    const deadline = Date.now() + 20_000;
    while (stock.size < 8 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(stock.size, 11);
    closeAll([...first, ...second]);
    stock.drain();
    assert.equal(stock.size, 0);
    assert.equal(stock.heldFds, 0);
  });

  test('a take larger than a batch gets all it asks for, and concurrent takes get distinct pipes', { timeout: TIMEOUT_MS }, async () => {
    const stock = new PipeStock(4);
    const [large, ...small] = await Promise.all([stock.take(10), stock.take(3), stock.take(3), stock.take(1)]);
    assert.equal(large?.length, 10);
    assert.deepEqual(
      small.map((pipes) => pipes.length),
      [3, 3, 1],
    );
    const fds = [large ?? [], ...small].flat().flatMap((pipe) => [pipe.readFd, pipe.writeFd]);
    assert.equal(new Set(fds).size, fds.length);
    closeAll([large ?? [], ...small].flat());
    stock.drain();
  });

  test('a writer whose reader went away with data unread is ended by SIGPIPE, as in a local pipeline', { timeout: TIMEOUT_MS }, async () => {
    const stock = new PipeStock(2);
    const [pipe] = (await stock.take(1)) as [StockedPipe];
    const yes = spawn('yes', [], { stdio: ['ignore', pipe.writeFd, 'pipe'] });
    closeSync(pipe.writeFd);
    let stderr = '';
    yes.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // The pipe fills up, then the reader goes with it full.
    await new Promise((resolve) => setTimeout(resolve, 200));
    closeSync(pipe.readFd);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => yes.once('exit', (...end) => resolve(end)));
    assert.deepEqual({ code, signal, stderr }, { code: null, signal: 'SIGPIPE', stderr: '' });
    stock.drain();
  });

  test('pipes that cannot be made fail the take, and a later take tries again', { timeout: TIMEOUT_MS }, async () => {
    const stock = new PipeStock(2);
    const saved = process.env['TMPDIR'];
    process.env['TMPDIR'] = '/nonexistent-np-pipe-stock';
    try {
      await assert.rejects(stock.take(1), { code: 'ENOENT' });
    } finally {
      if (saved === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = saved;
    }
    const pipes = await stock.take(1);
    assert.equal(pipes.length, 1);
    closeAll(pipes);
    stock.drain();
  });
});
