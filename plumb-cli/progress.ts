// plumb -progress: what each stream has carried, its rate and how long it has run, on stderr while the run goes on,
// then one summary line. On a terminal the status line is redrawn in place a few times a second; elsewhere (a log
// file, a pipe) a plain line is written every few seconds instead, as a redrawn line would be noise there. When
// stderr is a terminal a run shows it unasked, once it has lasted a moment (ProgressMode).

import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import type { StreamTotals } from './stream-meter.js';

/** How often the line is redrawn on a terminal, and written elsewhere. */
export const TERMINAL_REDRAW_MS = 250;
export const LOG_LINE_MS = 5000;
/**
 * Whether and how a run shows its progress:
 * - `asked`: -progress; from the start, and always with a summary;
 * - `terminal`: a person watches the run at a terminal and nothing was said (personAtTerminal); the line appears
 *   once the run has lasted TERMINAL_SHOW_AFTER_MS, and the summary only if it did, so a quick command shows
 *   nothing more than it would without it (as scp's meter shows unasked on a terminal; -no-progress turns it off);
 * - `off`.
 */
export type ProgressMode = 'asked' | 'terminal' | 'off';
export const TERMINAL_SHOW_AFTER_MS = 1000;

/** What tells whether a person watches plumb at its terminal. */
export interface TerminalView {
  stdin: { isTTY?: boolean };
  stdout: { isTTY?: boolean };
  stderr: { isTTY?: boolean };
  /** /proc/self/stat's text, or undefined where it cannot be read. */
  procStat: string | undefined;
}

/**
 * Whether a person watches this run at a terminal: stderr is one; stdin or stdout is one too (with both piped,
 * plumb is another program's transport, as under rsync -e plumb, and that program owns the screen); and plumb is
 * in the terminal's foreground process group (not started with `&`, whose line would be drawn over the shell).
 */
export function personAtTerminal(view: TerminalView): boolean {
  if (view.stderr.isTTY !== true || (view.stdin.isTTY !== true && view.stdout.isTTY !== true)) return false;
  // The fields after the command name, which may itself hold spaces and parentheses: state ppid pgrp session tty_nr tpgid.
  const fields = view.procStat?.slice(view.procStat.lastIndexOf(')') + 2).split(' ');
  const [processGroup, foregroundGroup] = [fields?.[2], fields?.[5]];
  return processGroup === undefined || foregroundGroup === undefined || processGroup === foregroundGroup;
}

/** The view of this process, for personAtTerminal. */
export function thisTerminalView(): TerminalView {
  let procStat: string | undefined;
  try {
    procStat = readFileSync('/proc/self/stat', 'utf8');
  } catch {
    procStat = undefined;
  }
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, procStat };
}

/** Weight of the newest interval in a stream's shown rate: smooth enough to read, quick enough to follow. */
const RATE_SMOOTHING = 0.3;

/** 1536 -> `1.5KiB`: binary units, as the sizes in -limit-rate. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value}B` : `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)}${units[unit]}`;
}

/** Seconds as `m:ss` (or `h:mm:ss`). */
export function formatElapsed(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const [hours, minutes, seconds] = [Math.floor(total / 3600), Math.floor((total % 3600) / 60), total % 60];
  const two = (value: number): string => String(value).padStart(2, '0');
  return hours > 0 ? `${hours}:${two(minutes)}:${two(seconds)}` : `${minutes}:${two(seconds)}`;
}

/** Where the line goes: a terminal (redrawn in place, cut to its width) or anything else (a line at a time). */
export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class ProgressLine {
  private timer: NodeJS.Timeout | undefined;
  private readonly rates = new Map<string, { bytes: number; at: number; rate: number }>();
  private drawn = false;
  /** Whether the line has been drawn at least once: with a wait before showing it, the summary depends on it. */
  private shown = false;
  /** Whether the last output through interleave() left its line open. */
  private midLine = false;
  private readonly startedAt: number;

  constructor(
    private readonly output: ProgressOutput,
    private readonly totals: () => StreamTotals[],
    private readonly now: () => number = Date.now,
    /** Nothing is drawn before the run has lasted this long, and no summary is written if nothing was. */
    private readonly showAfterMs = 0,
  ) {
    this.startedAt = now();
  }

  /** The line for a run in `mode` on `output`, or undefined when the run shows none. */
  static forMode(mode: ProgressMode | undefined, output: ProgressOutput, totals: () => StreamTotals[]): ProgressLine | undefined {
    if (mode === 'asked') return new ProgressLine(output, totals);
    if (mode === 'terminal') return new ProgressLine(output, totals, Date.now, TERMINAL_SHOW_AFTER_MS);
    return undefined;
  }

  start(): void {
    const every = this.output.isTTY === true ? TERMINAL_REDRAW_MS : LOG_LINE_MS;
    this.timer = setInterval(() => this.draw(), every);
    this.timer.unref();
  }

  /** The status line as it stands: each stream still open, with its bytes, rate and time. */
  line(): string {
    const now = this.now();
    const parts = this.totals()
      .filter((stream) => stream.open > 0)
      .map((stream) => {
        const bytes = stream.bytesIn + stream.bytesOut;
        const rate = this.rateOf(stream, bytes, now);
        const count = stream.streams > 1 ? ` (${stream.streams})` : '';
        return `${stream.name}${count} ${formatBytes(bytes)} ${formatBytes(Math.round(rate))}/s ${formatElapsed(now - stream.startedAt)}`;
      });
    return `${parts.length === 0 ? 'waiting' : parts.join(' | ')} [${formatElapsed(now - this.startedAt)}]`;
  }

  /**
   * For output shown on the same terminal as the line: the status line is cleared before each chunk, so the chunk
   * starts where the line was, and the next draw puts the line back under it. A sink that is not that terminal (a
   * file, a pipe) is returned as it is: its output never meets the line.
   */
  interleave(sink: Writable): Writable {
    if (this.output.isTTY !== true || (sink as Writable & { isTTY?: boolean }).isTTY !== true) return sink;
    const wrapper = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.clearLine();
        // A chunk that leaves its line open (a prompt, another program's own meter) keeps the line away until the
        // line is finished: a redraw would erase it, and what is typed after it.
        if (chunk.length > 0) this.midLine = chunk[chunk.length - 1] !== 0x0a;
        if (sink.write(chunk)) done();
        else sink.once('drain', () => done());
      },
    });
    // A reader that went away (EPIPE) is the run's to hear about, as without -progress.
    sink.on('error', (error) => wrapper.destroy(error));
    return wrapper;
  }

  /** Clears the status line, for a line of plumb's own (a stage's end, a warning) to take its place. */
  clearLine(): void {
    if (!this.drawn) return;
    this.output.write('\r\x1b[K');
    this.drawn = false;
  }

  draw(): void {
    if (this.now() - this.startedAt < this.showAfterMs) return;
    if (this.midLine && this.output.isTTY === true) return;
    this.shown = true;
    const line = this.line();
    if (this.output.isTTY === true) {
      // A terminal that reports no width (0, as under script(1) without a size) is taken as 80 columns wide.
      const width = Math.max(20, (this.output.columns || 80) - 1);
      // \r and "erase to end of line": the line replaces itself, never scrolls.
      this.output.write(`\r\x1b[K${line.length > width ? `${line.slice(0, width - 1)}~` : line}`);
      this.drawn = true;
    } else {
      this.output.write(`plumb: progress: ${line}\n`);
    }
  }

  /** Stops redrawing, clears the status line, and writes the run's summary: every stream's totals. */
  finish(): void {
    clearInterval(this.timer);
    this.clearLine();
    if (this.showAfterMs > 0 && !this.shown) return;
    const seconds = ((this.now() - this.startedAt) / 1000).toFixed(2);
    this.output.write(`plumb: ${summary(this.totals())} in ${seconds} s\n`);
  }

  /** The first time a stream is seen, its average since it opened; then each interval's rate, smoothed. */
  private rateOf(stream: StreamTotals, bytes: number, now: number): number {
    const last = this.rates.get(stream.name);
    let rate: number;
    if (last === undefined) rate = now > stream.startedAt ? (bytes * 1000) / (now - stream.startedAt) : 0;
    else if (now <= last.at) rate = last.rate;
    else rate = RATE_SMOOTHING * (((bytes - last.bytes) * 1000) / (now - last.at)) + (1 - RATE_SMOOTHING) * last.rate;
    this.rates.set(stream.name, { bytes, at: now, rate });
    return rate;
  }
}

/** `stdin 1.0MiB sent, stdout 2.0MiB received, socket db.sock (3) 4.0KiB sent 8.0KiB received`. */
export function summary(totals: readonly StreamTotals[]): string {
  if (totals.length === 0) return 'no streams';
  return totals
    .map((stream) => {
      const count = stream.streams > 1 ? ` (${stream.streams})` : '';
      const directions = [...(stream.bytesOut > 0 ? [`${formatBytes(stream.bytesOut)} sent`] : []), ...(stream.bytesIn > 0 ? [`${formatBytes(stream.bytesIn)} received`] : [])];
      return `${stream.name}${count} ${directions.length === 0 ? '0B' : directions.join(' ')}`;
    })
    .join(', ');
}
