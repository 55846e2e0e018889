// RecipeSource turns an offset into the recipe text into a line and column, and builds the located recipe errors
// (protocol/errors.ts) that show the offending line with a caret under the column.

import { recipeError, type ErrorOptions, type RecipeError, type RecipeErrorCode } from '../protocol/errors.js';
import type { RecipeLocation } from './plan.js';

/** The recipe text and its name, with the start of every line indexed for locate(). */
export class RecipeSource {
  readonly name: string;
  readonly text: string;
  /** Offsets (UTF-16) at which each line starts; lineStarts[0] is 0. */
  private readonly lineStarts: number[];
  /**
   * The last column counted: the check locates places in text order, often many on one long line (a fifo
   * declaration padded with blanks), so counting on from here keeps locating linear in the line's length.
   */
  private counted = { lineStart: 0, offset: 0, codePoints: 0 };

  constructor(text: string, name: string) {
    this.text = text;
    this.name = name;
    this.lineStarts = [0];
    for (let index = text.indexOf('\n'); index >= 0; index = text.indexOf('\n', index + 1)) this.lineStarts.push(index + 1);
  }

  /** Line and column (code points) of a UTF-16 offset; offsets past the end point just after the last character. */
  locate(offset: number): RecipeLocation {
    const clamped = Math.min(Math.max(offset, 0), this.text.length);
    const lineIndex = this.lineIndexOf(clamped);
    const start = this.lineStarts[lineIndex] ?? 0;
    // The CR of a CRLF line end is not part of the line shown: a place on it is the end of the line.
    const atCrlf = this.text[clamped] === '\n' && this.text[clamped - 1] === '\r' && clamped - 1 >= start;
    const column = this.codePointsBetween(start, atCrlf ? clamped - 1 : clamped) + 1;
    return { source: this.name, line: lineIndex + 1, column };
  }

  /** The text of a 1-based line without its newline (nor a CR before it). */
  lineText(line: number): string {
    const start = this.lineStarts[line - 1];
    if (start === undefined) return '';
    const next = this.lineStarts[line];
    const end = next === undefined ? this.text.length : next - 1;
    return this.text.slice(start, end).replace(/\r$/, '');
  }

  /** A RecipeError located at a UTF-16 offset of the text. */
  error(code: RecipeErrorCode, reason: string, offset: number, options?: ErrorOptions): RecipeError {
    const location = this.locate(offset);
    return recipeError(code, reason, location, this.lineText(location.line), options);
  }

  /**
   * Code points in text[start, end) as Array.from(text.slice(start, end)) counts them: a surrogate pair is one, a
   * lone surrogate (or half a pair cut by `end`) is one.
   */
  private codePointsBetween(start: number, end: number): number {
    const { text } = this;
    let from = start;
    let codePoints = 0;
    const counted = this.counted;
    // Counting on is exact unless the last count ended between the halves of a pair (it counted the high half alone).
    if (counted.lineStart === start && counted.offset <= end && !(isHighSurrogate(text, counted.offset - 1) && isLowSurrogate(text, counted.offset))) {
      from = counted.offset;
      codePoints = counted.codePoints;
    }
    for (let index = from; index < end; index += 1) {
      codePoints += 1;
      if (isHighSurrogate(text, index) && index + 1 < end && isLowSurrogate(text, index + 1)) index += 1;
    }
    this.counted = { lineStart: start, offset: end, codePoints };
    return codePoints;
  }

  private lineIndexOf(offset: number): number {
    let low = 0;
    let high = this.lineStarts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if ((this.lineStarts[middle] ?? 0) <= offset) low = middle;
      else high = middle - 1;
    }
    return low;
  }
}

function isHighSurrogate(text: string, index: number): boolean {
  const unit = text.charCodeAt(index);
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLowSurrogate(text: string, index: number): boolean {
  const unit = text.charCodeAt(index);
  return unit >= 0xdc00 && unit <= 0xdfff;
}
