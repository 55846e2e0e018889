// Tests of the chunk queue under the frame reader and the test taps: bytes leave in order, as slices of the
// chunks they came in, whatever the chunk boundaries.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ByteQueue } from '../../protocol/byte-queue.js';

function queueOf(...chunks: string[]): ByteQueue {
  const queue = new ByteQueue();
  for (const chunk of chunks) queue.push(Buffer.from(chunk));
  return queue;
}

test('take returns the front bytes in order across chunk boundaries and keeps the rest', () => {
  const queue = queueOf('ab', 'cde', 'f');
  assert.equal(Buffer.concat(queue.take(4)).toString(), 'abcd');
  assert.equal(queue.length, 2);
  assert.equal(Buffer.concat(queue.takeAll()).toString(), 'ef');
  assert.equal(queue.length, 0);
});

test('take hands out slices of the received chunks, not copies', () => {
  const chunk = Buffer.from('abcdef');
  const queue = new ByteQueue();
  queue.push(chunk);
  const [slice] = queue.take(3);
  chunk[0] = 0x7a;
  assert.equal(slice?.toString(), 'zbc');
});

test('peek shows the front bytes across chunks without removing them', () => {
  const queue = queueOf('a', 'bc', 'def');
  assert.equal(queue.peek(4).toString(), 'abcd');
  assert.equal(queue.length, 6);
  assert.equal(queue.peek(10).toString(), 'abcdef');
});

test('empty chunks are not kept', () => {
  const queue = queueOf('', 'a', '');
  assert.equal(queue.length, 1);
  assert.deepEqual(queue.takeAll().map(String), ['a']);
});
