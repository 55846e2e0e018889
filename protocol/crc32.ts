// The packet CRC-32 (IEEE, as zlib computes it): @node-rs/crc32's prebuilt native code where its binary for this
// platform is installed (about 2.5x zlib's speed on 64 KiB packets, and every packet is checked twice), otherwise
// zlib.crc32. Both give identical results; the choice is made once, at load.

import { createRequire } from 'node:module';
import { crc32 as zlibCrc32 } from 'node:zlib';

/** CRC-32 of data, continuing from `previous` (the CRC of the bytes before it) when given. */
export type Crc32 = (data: Buffer, previous?: number) => number;

export interface Crc32Choice {
  readonly crc32: Crc32;
  /** Which implementation runs, for the bench and the daemon's start-up log. */
  readonly implementation: '@node-rs/crc32' | 'zlib';
}

/** Picks the prebuilt implementation if `load` yields one, else zlib's. */
export function chooseCrc32(load: () => unknown): Crc32Choice {
  try {
    const loaded = load() as { crc32?: unknown } | undefined;
    if (typeof loaded?.crc32 === 'function') {
      const prebuilt = loaded.crc32 as (data: Buffer, previous?: number) => number;
      return { crc32: (data, previous = 0) => prebuilt(data, previous), implementation: '@node-rs/crc32' };
    }
  } catch {
    // An optional dependency: absent on a platform without a prebuilt binary, which is fine.
  }
  return { crc32: (data, previous = 0) => zlibCrc32(data, previous), implementation: 'zlib' };
}

const chosen = chooseCrc32(() => createRequire(import.meta.url)('@node-rs/crc32'));

export const crc32: Crc32 = chosen.crc32;
export const CRC32_IMPLEMENTATION = chosen.implementation;
