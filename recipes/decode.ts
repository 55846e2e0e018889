// decodeRecipe(): a recipe's raw bytes (or text) to a RecipeSource, checking in order the size limit, UTF-8
// validity and the absence of control characters; each failure is a RecipeError pointing at the first bad place.
// Pure: no file system, no environment.

import { ErrorCode } from '../protocol/errors.js';
import { RecipeSource } from './errors.js';
import type { RecipeLimits } from './limits.js';

/** The size limit, UTF-8 validity and the absence of control characters, in that order. */
export function decodeRecipe(input: string | Uint8Array, sourceName: string, limits: RecipeLimits): RecipeSource {
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (size > limits.maxRecipeBytes) {
    const reason = `the recipe is ${size} bytes, more than maxRecipeBytes (${limits.maxRecipeBytes})`;
    if (typeof input === 'string') {
      const source = new RecipeSource(input, sourceName);
      throw source.error(ErrorCode.RecipeTooLarge, reason, stringOffsetAfterBytes(input, limits.maxRecipeBytes));
    }
    let boundary = limits.maxRecipeBytes;
    while (boundary > 0 && ((input[boundary] ?? 0) & 0xc0) === 0x80) boundary -= 1;
    const source = new RecipeSource(decodeLoosely(input.subarray(0, boundary + 4096)), sourceName);
    throw source.error(ErrorCode.RecipeTooLarge, reason, decodeLoosely(input.subarray(0, boundary)).length);
  }
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    text = decodeLoosely(input);
    const bad = firstInvalidUtf8(input);
    if (bad >= 0) {
      const source = new RecipeSource(text, sourceName);
      const byte = (input[bad] ?? 0).toString(16).toUpperCase().padStart(2, '0');
      throw source.error(ErrorCode.RecipeSyntax, `binary data: byte 0x${byte} is not valid UTF-8; a recipe is UTF-8 text`, decodeLoosely(input.subarray(0, bad)).length);
    }
  }
  const source = new RecipeSource(text, sourceName);
  const garbage = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.exec(text);
  if (garbage !== null) throw source.error(ErrorCode.RecipeSyntax, describeGarbage(garbage[0]), garbage.index);
  return source;
}

function decodeLoosely(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(bytes);
}

function describeGarbage(character: string): string {
  const code = character.charCodeAt(0);
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  if (code === 0) return 'binary data: a NUL byte; a recipe is text';
  if (code === 0xfeff) return 'a byte order mark (U+FEFF): save the recipe as UTF-8 without a BOM';
  if (code >= 0xd800 && code <= 0xdfff) return `binary data: unpaired surrogate ${hex}; a recipe is text`;
  return `binary data: control character ${hex}; a recipe is text (tab, newline and carriage return are the only control characters allowed)`;
}

/** The index of the first byte that does not belong to a well-formed UTF-8 sequence, or -1. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let index = 0;
  while (index < bytes.length) {
    const lead = bytes[index] ?? 0;
    if (lead < 0x80) {
      index += 1;
      continue;
    }
    let length: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead === 0xe0) low = 0xa0; // overlong
      if (lead === 0xed) high = 0x9f; // surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead === 0xf0) low = 0x90; // overlong
      if (lead === 0xf4) high = 0x8f; // above U+10FFFF
    } else return index;
    for (let next = 1; next < length; next += 1) {
      const byte = bytes[index + next];
      if (byte === undefined) return index;
      const min = next === 1 ? low : 0x80;
      const max = next === 1 ? high : 0xbf;
      if (byte < min || byte > max) return index;
    }
    index += length;
  }
  return -1;
}

/** The UTF-16 offset of the first character that does not fit in `maxBytes` bytes of UTF-8. */
function stringOffsetAfterBytes(text: string, maxBytes: number): number {
  let bytes = 0;
  let offset = 0;
  for (const point of text) {
    const code = point.codePointAt(0) ?? 0;
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    if (bytes > maxBytes) return offset;
    offset += point.length;
  }
  return offset;
}
