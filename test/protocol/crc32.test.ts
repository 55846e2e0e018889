// The packet CRC: the implementation chosen (prebuilt when installed, zlib otherwise) computes exactly zlib's CRC-32,
// whole or continued across slices, and a missing or broken prebuilt module falls back to zlib.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { chooseCrc32, crc32, CRC32_IMPLEMENTATION } from '../../protocol/crc32.js';

describe('packet CRC-32', () => {
  it('uses the prebuilt implementation, which npm ci installs on this platform', () => {
    assert.equal(CRC32_IMPLEMENTATION, '@node-rs/crc32');
  });

  it('equals zlib.crc32 over whole buffers and continued across slices', () => {
    for (const size of [0, 1, 17, 4096, 65_536 + 33]) {
      const data = randomBytes(size);
      assert.equal(crc32(data), zlibCrc32(data), `size ${size}`);
      const cut = Math.floor(size / 3);
      assert.equal(crc32(data.subarray(cut), crc32(data.subarray(0, cut))), zlibCrc32(data), `size ${size} in two slices`);
    }
  });

  it('falls back to zlib when the prebuilt module is missing or has no crc32', () => {
    const missing = chooseCrc32(() => {
      throw Object.assign(new Error('Cannot find module'), { code: 'MODULE_NOT_FOUND' });
    });
    const hollow = chooseCrc32(() => ({}));
    const data = randomBytes(1000);
    for (const choice of [missing, hollow]) {
      assert.equal(choice.implementation, 'zlib');
      assert.equal(choice.crc32(data), zlibCrc32(data));
      assert.equal(choice.crc32(data.subarray(10), choice.crc32(data.subarray(0, 10))), zlibCrc32(data));
    }
  });
});
