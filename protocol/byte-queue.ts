// A first-in first-out queue of received chunks for incremental parsers: bytes go out as slices of the chunks
// they arrived in (copied only when a peek spans chunks), so a parser holds exactly what it has not yet consumed.

export class ByteQueue {
  #chunks: Buffer[] = [];
  #length = 0;

  /** Bytes held, in total. */
  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The first count bytes (at most length) as one Buffer, left in the queue; a copy only when they span chunks. */
  peek(count: number): Buffer {
    const wanted = Math.min(count, this.#length);
    const first = this.#chunks[0];
    if (first === undefined) return Buffer.alloc(0);
    if (first.length >= wanted) return first.subarray(0, wanted);
    const spanned: Buffer[] = [];
    let gathered = 0;
    for (const chunk of this.#chunks) {
      if (gathered >= wanted) break;
      spanned.push(chunk);
      gathered += chunk.length;
    }
    return Buffer.concat(spanned, gathered).subarray(0, wanted);
  }

  /** Removes count bytes (at most length) from the front, as slices of the chunks they arrived in. */
  take(count: number): Buffer[] {
    const out: Buffer[] = [];
    let remaining = Math.min(count, this.#length);
    this.#length -= remaining;
    while (remaining > 0) {
      const chunk = this.#chunks[0] as Buffer;
      if (chunk.length <= remaining) {
        out.push(chunk);
        this.#chunks.shift();
        remaining -= chunk.length;
      } else {
        out.push(chunk.subarray(0, remaining));
        this.#chunks[0] = chunk.subarray(remaining);
        remaining = 0;
      }
    }
    return out;
  }

  /** Removes and returns everything held. */
  takeAll(): Buffer[] {
    const out = this.#chunks;
    this.#chunks = [];
    this.#length = 0;
    return out;
  }
}
