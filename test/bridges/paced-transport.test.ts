// The pace of -limit-rate, on a clock the test moves: bytes are spaced out at the rate, a short burst passes at
// once, and time spent idle is not saved up beyond that burst.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Pacer } from '../../bridges/paced-transport.js';

test('bytes wait their turn at the rate; a 50 ms burst goes at once; idle time is not saved up', () => {
  let now = 1000;
  const pacer = new Pacer(1000, () => now);
  // 1000 bytes/s: 50 bytes fit the burst; 100 more must wait 100 ms beyond it.
  assert.equal(pacer.take(50), 0);
  assert.equal(pacer.take(100), 100);
  now += 100;
  assert.equal(pacer.take(100), 100);
  // A long pause saves up no more than the burst.
  now += 10_000;
  assert.equal(pacer.take(50), 0);
  assert.equal(pacer.take(50), 50);
});

test('at 1 MiB/s a second of 64 KiB chunks is 16 chunks: the sum of the waits is one second less the burst', () => {
  let now = 5000;
  const pacer = new Pacer(1024 * 1024, () => now);
  let waited = 0;
  for (let chunk = 0; chunk < 16; chunk++) {
    const wait = pacer.take(64 * 1024);
    // The sender waits before it sends the next chunk, as PacedTransport does.
    now += wait;
    waited += wait;
  }
  assert.ok(Math.abs(now - 5000 - 950) < 1e-6, `took ${now - 5000} ms`);
  assert.ok(Math.abs(waited - 950) < 1e-6);
});
