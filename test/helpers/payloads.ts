// Deterministic payloads for tests: an AES-256-CTR keystream keyed by a seed, so both ends can produce or check the
// same bytes without storing them; the remote side runs the same stream as a `node -e` one-liner. And a directory
// tree's digest, to compare a tree with its copy.

import { createCipheriv, createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';

const CHUNK_BYTES = 64 * 1024;

function keystream(seed: string): { next(bytes: number): Buffer } {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK_BYTES);
  return { next: (bytes) => cipher.update(bytes === CHUNK_BYTES ? zeros : zeros.subarray(0, bytes)) };
}

/** A Readable of exactly `bytes` bytes of the seed's stream, honouring backpressure. */
export function deterministicStream(seed: string, bytes: number): Readable {
  const source = keystream(seed);
  let left = bytes;
  return new Readable({
    highWaterMark: CHUNK_BYTES,
    read() {
      while (left > 0) {
        const size = Math.min(left, CHUNK_BYTES);
        left -= size;
        if (!this.push(source.next(size))) return;
      }
      this.push(null);
    },
  });
}

/** The first `bytes` bytes of the seed's stream, in memory (for small payloads). */
export function deterministicBytes(seed: string, bytes: number): Buffer {
  const source = keystream(seed);
  const pieces: Buffer[] = [];
  for (let left = bytes; left > 0; left -= CHUNK_BYTES) pieces.push(source.next(Math.min(left, CHUNK_BYTES)));
  return Buffer.concat(pieces, bytes);
}

/** SHA-256 (hex) of the first `bytes` bytes of the seed's stream. */
export function deterministicSha256(seed: string, bytes: number): string {
  const source = keystream(seed);
  const hash = createHash('sha256');
  for (let left = bytes; left > 0; left -= CHUNK_BYTES) hash.update(source.next(Math.min(left, CHUNK_BYTES)));
  return hash.digest('hex');
}

/**
 * The remote generator: `node -e GENERATOR_SCRIPT SEED [BYTES]` writes the seed's stream (endless without BYTES)
 * and exits quietly when its reader goes away.
 */
export const GENERATOR_SCRIPT = [
  "const c=require('crypto');",
  "const x=c.createCipheriv('aes-256-ctr',c.createHash('sha256').update(process.argv[1]).digest(),Buffer.alloc(16));",
  `const z=Buffer.alloc(${CHUNK_BYTES});`,
  'let left=process.argv[2]===undefined?Infinity:Number(process.argv[2]);',
  "process.stdout.on('error',()=>process.exit(0));",
  `function go(){while(left>0){const n=Math.min(left,${CHUNK_BYTES});left-=n;`,
  `if(!process.stdout.write(x.update(n===${CHUNK_BYTES}?z:z.subarray(0,n)))){process.stdout.once('drain',go);return}}}`,
  'go()',
].join('');

/** argv of a remote command writing the seed's stream: endless, or `bytes` long. */
export function generatorCommand(seed: string, bytes?: number): string[] {
  return [process.execPath, '-e', GENERATOR_SCRIPT, seed, ...(bytes === undefined ? [] : [String(bytes)])];
}

/** Hashes a stream as it flows; resolves with the byte count and SHA-256 (hex) at its end. */
export function hashStream(stream: Readable): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    stream.once('error', reject);
    stream.once('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
  });
}

/** Every file under `dir` with the SHA-256 of its bytes, by relative path: equal for a tree and its exact copy. */
export function treeDigest(dir: string): Record<string, string> {
  const digest: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    digest[path.slice(dir.length + 1)] = createHash('sha256').update(readFileSync(path)).digest('hex');
  }
  return digest;
}
