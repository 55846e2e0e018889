// The fuzzers' only source of chance: a small seeded generator (sfc32, seeded through splitmix32), so a seed and a
// worker's label give the same choices on every run. Keys, nonces and signatures come from the project's crypto.

/** A 32-bit hash step (splitmix32), used to seed and to derive independent generators from labels. */
function splitmix32(state: number): number {
  let z = (state + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function hashLabel(label: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) hash = Math.imul(hash ^ label.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** seed: any integer (only its low 32 bits and the label matter). */
  constructor(
    readonly seed: number,
    readonly label = '',
  ) {
    let state = splitmix32((seed >>> 0) ^ hashLabel(label));
    this.a = state;
    this.b = state = splitmix32(state);
    this.c = state = splitmix32(state);
    this.d = 1;
    // The first outputs of sfc32 still show the seed's shape; they are thrown away.
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A generator of its own for a part of the work, independent of how often this one is drawn from. */
  fork(label: string | number): Prng {
    return new Prng(this.seed, `${this.label}/${label}`);
  }

  /** A uniform integer in [0, 2^32). */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A uniform integer in [0, n); n up to 2^53. */
  below(n: number): number {
    if (n <= 0x1_0000_0000) return Math.floor((this.u32() / 0x1_0000_0000) * n);
    return Math.floor(((this.u32() * 0x20_0000 + (this.u32() >>> 11)) / 2 ** 53) * n);
  }

  /** A uniform integer in [low, high], both included. */
  between(low: number, high: number): number {
    return low + this.below(high - low + 1);
  }

  chance(probability: number): boolean {
    return this.u32() < probability * 0x1_0000_0000;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)] as T;
  }

  /** Picks by weight: entries are [weight, value]. */
  weighted<T>(entries: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [weight] of entries) total += weight;
    let roll = this.u32() / 0x1_0000_0000 * total;
    for (const [weight, value] of entries) {
      roll -= weight;
      if (roll < 0) return value;
    }
    return (entries[entries.length - 1] as readonly [number, T])[1];
  }

  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let i = 0;
    for (; i + 4 <= length; i += 4) out.writeUInt32LE(this.u32(), i);
    for (; i < length; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** Small sizes most of the time, now and then a large one: lengths in [0, max] skewed towards 0. */
  size(max: number): number {
    const bits = this.below(Math.ceil(Math.log2(max + 1)) + 1);
    return Math.min(max, this.below(2 ** bits));
  }
}
