// Mutations of bytes and of name/value lists, and builders that can write what the project's encoders refuse (bad
// names, NULs in values, lists without their closing NUL). Everything is drawn from the caller's Prng.

import { encodeHeader } from '../../protocol/frame.js';
import type { Prng } from './prng.js';

/** A field as the fuzzer writes it: the value may be raw bytes, so it need not be valid UTF-8. */
export type RawEntry = readonly [name: string, value: string | Buffer];

/** Byte values that sit on edges: zero, sign bits, all ones, the field codec's NUL and `=`, non-UTF-8 lead bytes. */
const EDGE_BYTES = [0x00, 0x01, 0x3d, 0x7f, 0x80, 0xc0, 0xc1, 0xed, 0xf5, 0xfe, 0xff] as const;

/** 32-bit values that sit on the edges of TAP1's sizes, sequence numbers and limits. */
export const EDGE_U32 = [
  0, 1, 8, 9, 16, 17, 0x7f, 0x80, 0xff, 0x100, 4095, 4096, 32767, 32768, 65535, 65536, 1024 * 1024 - 8, 1024 * 1024 - 7, 1024 * 1024,
  0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff,
] as const;

/** Byte runs that are not valid UTF-8: a lone continuation, overlong forms, an encoded surrogate, a cut sequence. */
const NOT_UTF8 = [[0x80], [0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xff, 0xfe]] as const;

type ByteMutation = (input: Buffer, rng: Prng) => Buffer;

const byteMutations: readonly (readonly [number, string, ByteMutation])[] = [
  [6, 'flip', (input, rng) => {
    if (input.length === 0) return input;
    const out = Buffer.from(input);
    const at = rng.below(out.length);
    out[at] = (out[at] as number) ^ (1 << rng.below(8));
    return out;
  }],
  [3, 'edge-byte', (input, rng) => {
    if (input.length === 0) return Buffer.from([rng.pick(EDGE_BYTES)]);
    const out = Buffer.from(input);
    out[rng.below(out.length)] = rng.pick(EDGE_BYTES);
    return out;
  }],
  [2, 'edge-u32', (input, rng) => {
    if (input.length < 4) return input;
    const out = Buffer.from(input);
    out.writeUInt32BE(rng.pick(EDGE_U32), rng.below(out.length - 3));
    return out;
  }],
  [3, 'insert', (input, rng) => {
    const at = rng.below(input.length + 1);
    return Buffer.concat([input.subarray(0, at), rng.bytes(rng.between(1, 16)), input.subarray(at)]);
  }],
  [3, 'delete', (input, rng) => {
    if (input.length === 0) return input;
    const at = rng.below(input.length);
    return Buffer.concat([input.subarray(0, at), input.subarray(at + rng.between(1, Math.min(16, input.length - at)))]);
  }],
  [2, 'duplicate', (input, rng) => {
    if (input.length === 0) return input;
    const at = rng.below(input.length);
    const piece = input.subarray(at, at + rng.between(1, 64));
    const to = rng.below(input.length + 1);
    return Buffer.concat([input.subarray(0, to), piece, input.subarray(to)]);
  }],
  [2, 'truncate', (input, rng) => input.subarray(0, rng.below(input.length + 1))],
  [1, 'append', (input, rng) => Buffer.concat([input, rng.bytes(rng.size(256))])],
  [2, 'not-utf8', (input, rng) => {
    const at = rng.below(input.length + 1);
    return Buffer.concat([input.subarray(0, at), Buffer.from(rng.pick(NOT_UTF8)), input.subarray(at)]);
  }],
  [2, 'nul', (input, rng) => {
    // NUL and `=` are the codec's structure: moving, adding or removing them reaches its parser's edges.
    const special = [...input.entries()].filter(([, byte]) => byte === 0x00 || byte === 0x3d).map(([at]) => at);
    if (special.length > 0 && rng.chance(0.6)) {
      const at = rng.pick(special);
      return rng.chance(0.5) ? Buffer.concat([input.subarray(0, at), input.subarray(at + 1)]) : Buffer.concat([input.subarray(0, at), Buffer.from([rng.pick([0x00, 0x3d, 0x41])]), input.subarray(at + 1)]);
    }
    const at = rng.below(input.length + 1);
    return Buffer.concat([input.subarray(0, at), Buffer.from([rng.pick([0x00, 0x3d])]), input.subarray(at)]);
  }],
  [1, 'swap', (input, rng) => {
    if (input.length < 2) return input;
    const out = Buffer.from(input);
    const i = rng.below(out.length);
    const j = rng.below(out.length);
    const held = out[i] as number;
    out[i] = out[j] as number;
    out[j] = held;
    return out;
  }],
];

/** Applies one to `rounds` random byte mutations; returns the bytes and the names of what was done. */
export function mutateBytes(input: Buffer, rng: Prng, rounds = rng.between(1, 4)): { bytes: Buffer; how: string } {
  let bytes = input;
  const names: string[] = [];
  for (let i = 0; i < rounds; i++) {
    const [, name, mutation] = rng.weighted(byteMutations.map((entry) => [entry[0], entry] as const));
    bytes = mutation(bytes, rng);
    names.push(name);
  }
  return { bytes, how: names.join('+') };
}

/** Encodes a field list as the wire has it, without the encoder's checks: whatever names and values it is given. */
export function rawFields(entries: readonly RawEntry[], closed = true): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of entries) {
    parts.push(Buffer.from(`${name}=`, 'utf8'), typeof value === 'string' ? Buffer.from(value, 'utf8') : value, Buffer.from([0]));
  }
  if (closed) parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** One whole packet with a correct header (size, CRC) built by the frame codec. */
export function packet(sequence: number, type: number, payload: Buffer): Buffer {
  return Buffer.concat([encodeHeader(sequence, type, [payload]), payload]);
}

/** Integer spellings the codec must refuse or bound: signs, leading zeros, spaces, exponents, huge, non-ASCII digits. */
export const ODD_INTEGERS = ['', '0', '00', '01', '-1', '+1', ' 1', '1 ', '1e3', '0x10', '1.0', '4095', '4096', '2147483647', '2147483648', '2147483649', '4294967295', '4294967296', '9007199254740993', '99999999999999999999', '١٢٣', '１'] as const;

/** Values that stress a field's parser: empty, long, control characters, non-ASCII text, `=`, quotes, shell words. */
export function oddValue(rng: Prng): string | Buffer {
  return rng.weighted<() => string | Buffer>([
    [3, () => ''],
    [2, () => 'x'.repeat(rng.size(70_000))],
    [2, () => rng.pick(ODD_INTEGERS)],
    [2, () => Buffer.from(rng.pick(NOT_UTF8))],
    [1, () => '\u0001\u001b[2J\r\n\t'],
    [1, () => 'é漢字\u{1f600}\u202e\ufeff'],
    [1, () => '='.repeat(rng.between(1, 8))],
    [1, () => `"'\\$\`;|&<>*?`],
    [1, () => '\ud800'],
    [2, () => rng.bytes(rng.size(64)).toString('latin1')],
  ])();
}

/**
 * How every Error packet the fuzzers send begins its message. An unknown code in a peer's Error is logged as
 * NP_INTERNAL with the peer's message as reason; this prefix tells those lines from the daemon's own failures.
 */
export const FUZZ_ERROR_MESSAGE = 'np-fuzz-error';

export function fuzzErrorMessage(rng: Prng): string {
  const rest = oddValue(rng);
  return `${FUZZ_ERROR_MESSAGE} ${typeof rest === 'string' ? rest : rest.toString('latin1')}`;
}

/** Names the codec refuses (upper case, too long, empty, punctuation) and names it accepts but nobody knows. */
export function oddName(rng: Prng): string {
  return rng.pick(['', 'A', 'Kind', 'with space', 'a'.repeat(64), 'a'.repeat(65), 'x_y', 'é', 'n=m', '-', '0', 'unknown-field', 'zzz']);
}

/** Field-level mutations: duplicate, drop, reorder, rename, change a value, add an unknown or malformed field. */
export function mutateEntries(entries: readonly RawEntry[], rng: Prng, rounds = rng.between(1, 3)): { entries: RawEntry[]; how: string } {
  const out: RawEntry[] = [...entries];
  const names: string[] = [];
  for (let i = 0; i < rounds; i++) {
    const at = rng.below(Math.max(1, out.length));
    const entry = out[at];
    const op = rng.pick(['duplicate', 'drop', 'move', 'rename', 'value', 'add', 'odd-name'] as const);
    names.push(op);
    switch (op) {
      case 'duplicate':
        if (entry !== undefined) out.splice(rng.below(out.length + 1), 0, rng.chance(0.5) ? entry : [entry[0], oddValue(rng)]);
        break;
      case 'drop':
        out.splice(at, 1);
        break;
      case 'move':
        if (entry !== undefined) {
          out.splice(at, 1);
          out.splice(rng.below(out.length + 1), 0, entry);
        }
        break;
      case 'rename':
        if (entry !== undefined && out.length > 1) out[at] = [(rng.pick(out) as RawEntry)[0], entry[1]];
        break;
      case 'value':
        if (entry !== undefined) out[at] = [entry[0], oddValue(rng)];
        break;
      case 'add':
        out.splice(rng.below(out.length + 1), 0, [rng.pick(['unknown-field', 'reply', 'code', 'message', 'stream', 'kind', 'x']), oddValue(rng)]);
        break;
      case 'odd-name':
        out.splice(rng.below(out.length + 1), 0, [oddName(rng), oddValue(rng)]);
        break;
    }
  }
  return { entries: out, how: names.join('+') };
}
