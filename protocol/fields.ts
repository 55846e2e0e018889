// The name/value codec of control payloads: `name=value\0` entries closed by one empty entry (`\0`).
// Names are [a-z0-9-]{1,64}; values are UTF-8 and hold anything but NUL, trailing spaces included.
// Decoding is strict, so re-encoding a decoded list gives back the exact bytes (signatures rely on that).

import { BadFieldsError, PacketError } from './errors.js';

export type Entry = readonly [name: string, value: string];

const NAME_PATTERN = /^[a-z0-9-]{1,64}$/;
const NUL = 0;
const EQUALS = 0x3d;
/** More entries than this in one payload is malformed (an argv of 4096 words still fits). */
export const MAX_ENTRIES = 8192;

function badFields(message: string): PacketError {
  return new BadFieldsError(message);
}

/** Encodes entries in order. Throws on a name outside [a-z0-9-] or a value containing NUL. */
export function encodeFields(entries: Iterable<Entry>): Buffer {
  const parts: string[] = [];
  for (const [name, value] of entries) {
    if (!NAME_PATTERN.test(name)) throw badFields(`invalid field name ${JSON.stringify(name)}`);
    if (value.includes('\0')) throw badFields(`field ${name} holds a NUL byte`);
    parts.push(`${name}=${value}\0`);
  }
  parts.push('\0');
  return Buffer.from(parts.join(''), 'utf8');
}

/** Decodes a payload; throws PacketError(NP_BAD_FIELDS) on anything but a well-formed, closed list. */
export function decodeFields(payload: Buffer): FieldList {
  const entries: Entry[] = [];
  let start = 0;
  for (;;) {
    const end = payload.indexOf(NUL, start);
    if (end < 0) throw badFields('field list is not closed by an empty entry');
    if (end === start) {
      if (end !== payload.length - 1) throw badFields('bytes after the closing empty entry');
      return new FieldList(entries);
    }
    const equals = payload.indexOf(EQUALS, start);
    if (equals < 0 || equals > end) throw badFields('field entry without "="');
    const name = payload.toString('latin1', start, equals);
    if (!NAME_PATTERN.test(name)) throw badFields(`invalid field name ${JSON.stringify(name)}`);
    const valueBytes = payload.subarray(equals + 1, end);
    const value = valueBytes.toString('utf8');
    if (!Buffer.from(value, 'utf8').equals(valueBytes)) throw badFields(`field ${name} is not valid UTF-8`);
    entries.push([name, value]);
    if (entries.length > MAX_ENTRIES) throw badFields(`more than ${MAX_ENTRIES} fields`);
    start = end + 1;
  }
}

/** A decoded field list with typed accessors; every accessor failure is NP_BAD_FIELDS. */
export class FieldList {
  constructor(readonly entries: readonly Entry[]) {}

  /** The value of the one entry called name, or undefined; a repeated name is malformed. */
  optional(name: string): string | undefined {
    let found: string | undefined;
    for (const [entryName, value] of this.entries) {
      if (entryName !== name) continue;
      if (found !== undefined) throw badFields(`field ${name} repeated`);
      found = value;
    }
    return found;
  }

  require(name: string): string {
    const value = this.optional(name);
    if (value === undefined) throw badFields(`field ${name} missing`);
    return value;
  }

  /** Every value of a repeatable field, in order. */
  all(name: string): string[] {
    return this.entries.filter(([entryName]) => entryName === name).map(([, value]) => value);
  }

  /** A decimal integer in [min, max]. */
  requireInt(name: string, min: number, max: number): number {
    return parseBoundedInt(name, this.require(name), min, max);
  }

  optionalInt(name: string, min: number, max: number): number | undefined {
    const value = this.optional(name);
    return value === undefined ? undefined : parseBoundedInt(name, value, min, max);
  }

  /** A comma-separated list. */
  requireList(name: string): string[] {
    return this.require(name).split(',').filter((item) => item.length > 0);
  }

  /** The list without entries called name (the bytes a signature covers). */
  without(name: string): FieldList {
    return new FieldList(this.entries.filter(([entryName]) => entryName !== name));
  }
}

function parseBoundedInt(name: string, value: string, min: number, max: number): number {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(value)) throw badFields(`field ${name} is not a decimal integer`);
  const parsed = Number(value);
  if (parsed < min || parsed > max) throw badFields(`field ${name} out of range`);
  return parsed;
}
