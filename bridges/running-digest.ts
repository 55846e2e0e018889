// A running count and SHA-256 of the bytes that passed one point of a stream: what the two ends of a stream between
// machines compare (recipes/edges.ts for edges; recipes/execute.ts and plumb for plumb's own stdin and stdout).

import { createHash, type Hash } from 'node:crypto';

export class RunningDigest {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');

  /** Counts and hashes a chunk, where it lies; bound, so it can be given as a 'data' listener or a tap. */
  readonly add = (chunk: Buffer): void => {
    this.bytes += chunk.length;
    this.hash.update(chunk);
  };

  /** The lower-case hex SHA-256 of everything added; once, at the end. */
  digest(): string {
    return this.hash.digest('hex');
  }
}
