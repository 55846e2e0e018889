// The daemon's logger: winston, one line per event on stderr (where systemd's journal collects it), with the
// connection's context (peer address, client fingerprint) attached by child loggers. Every string in a line is
// escaped before any format sees it: a peer's message, argv or path can neither end a line nor drive a terminal.
// When stderr is the journal (JOURNAL_STREAM names it), each line starts with its syslog level (`<3>` error, `<4>`
// warn, `<6>` info, `<7>` debug) so `journalctl -p warning` filters, and leaves the time to the journal.

import { fstatSync } from 'node:fs';
import type { Writable } from 'node:stream';
import winston from 'winston';

export type Logger = winston.Logger;

/**
 * What a log line never carries raw: C0 controls (ESC, backspace, CR, LF...), DEL, C1 controls (U+0080-U+009F,
 * CSI among them), the Unicode line and paragraph separators, and the marks that reorder text on screen (U+200E/F,
 * U+202A-U+202E, U+2066-U+2069); and the backslash, so that an escape in the log always means an escape.
 */
const UNSAFE_IN_LOG = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\\]/g;

const NAMED_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\' };

/** A string as a log may show it: `\n`, `\t`, `\r`, `\\`, and `\xHH` or `\uHHHH` for every other unsafe character. */
export function escapeForLog(text: string): string {
  return text.replace(UNSAFE_IN_LOG, (char) => {
    const named = NAMED_ESCAPES[char];
    if (named !== undefined) return named;
    const code = char.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** Every string within a value (arrays and plain objects followed, keys included) escaped; nothing else changed. */
function escapeValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return escapeForLog(value);
  // Log context is flat or nearly so; anything deeper is shown as a type, never walked without end.
  if (depth > 4) return typeof value === 'object' && value !== null ? '[nested]' : value;
  if (Array.isArray(value)) return value.map((item) => escapeValue(item, depth + 1));
  if (value instanceof Error) return escapeForLog(value.message);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [escapeForLog(key), escapeValue(item, depth + 1)]));
  }
  return value;
}

/**
 * The first step of every format: the message and each context value escaped. winston keeps its own fields (level,
 * the splat) under symbols, which Object.keys does not list, so they pass untouched.
 */
const escapeUntrusted = winston.format((info) => {
  info.message = escapeValue(info.message);
  for (const key of Object.keys(info)) {
    if (key === 'level' || key === 'message') continue;
    const escapedKey = escapeForLog(key);
    const value = escapeValue(info[key]);
    if (escapedKey !== key) delete info[key];
    info[escapedKey] = value;
  }
  return info;
});

/** A value in a `key=value` line: bare when it is one plain word, else in double quotes (a quote in it as `\"`). */
function textValue(value: unknown): string {
  if (typeof value === 'string') return value !== '' && !/[\s"]/.test(value) ? value : quoted(value);
  if (Array.isArray(value)) return `[${value.map(textItem).join(',')}]`;
  if (typeof value === 'object' && value !== null) return `{${Object.entries(value).map(([key, item]) => `${quoted(key)}:${textItem(item)}`).join(',')}}`;
  return String(value);
}

function textItem(value: unknown): string {
  return typeof value === 'string' ? quoted(value) : textValue(value);
}

function quoted(text: string): string {
  return `"${text.replace(/"/g, '\\"')}"`;
}

/** `TIMESTAMP LEVEL message key=value ...`, one line per event (the values already escaped). */
const textLine = winston.format.printf(({ timestamp, level, message, ...context }) => {
  const details = Object.entries(context)
    .map(([key, value]) => `${key}=${textValue(value)}`)
    .join(' ');
  return `${String(timestamp)} ${level} ${String(message)}${details === '' ? '' : ` ${details}`}`;
});

/** syslog's priority of each level, as sd-daemon(3) reads it from a line's `<N>` prefix. */
const SYSLOG_PRIORITY: Readonly<Record<string, number>> = { error: 3, warn: 4, info: 6, debug: 7 };

/** `<N>LEVEL message key=value ...`: the journal keeps its own time and takes the priority from the prefix. */
const journalLine = winston.format.printf(({ level, message, ...context }) => {
  const details = Object.entries(context)
    .filter(([key]) => key !== 'timestamp')
    .map(([key, value]) => `${key}=${textValue(value)}`)
    .join(' ');
  return `<${SYSLOG_PRIORITY[level] ?? 6}>${level} ${String(message)}${details === '' ? '' : ` ${details}`}`;
});

/**
 * Whether stderr is systemd's journal: JOURNAL_STREAM holds the device and inode of the stream systemd connected,
 * and stderr must be that very stream (a child that inherited the variable but not the stream is not).
 */
export function stderrIsJournal(environment: NodeJS.ProcessEnv = process.env): boolean {
  const match = /^(\d+):(\d+)$/.exec(environment['JOURNAL_STREAM'] ?? '');
  if (match === null) return false;
  try {
    const stat = fstatSync(2, { bigint: true });
    return stat.dev === BigInt(match[1] as string) && stat.ino === BigInt(match[2] as string);
  } catch {
    return false;
  }
}

/**
 * A line in the logger's form that is written whatever the log level: `listening on`, which whoever started the
 * daemon waits for, and the fatal error the daemon exits with.
 */
export function logLine(level: 'error' | 'info', message: string, journal: boolean): string {
  const text = escapeForLog(message);
  return journal ? `<${SYSLOG_PRIORITY[level] ?? 6}>${level} ${text}\n` : `${new Date().toISOString()} ${level} ${text}\n`;
}

/** The daemon's logger at `level`; lines go to stderr, or to `destination` (tests); `journal`: in its form. */
export function createLogger(level: string, destination?: Writable, journal = false): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(escapeUntrusted(), winston.format.timestamp(), journal ? journalLine : textLine),
    transports: [
      destination === undefined
        ? new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })
        : new winston.transports.Stream({ stream: destination }),
    ],
  });
}
