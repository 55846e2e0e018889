// The bench's knobs, each from an environment variable so that a quick end-to-end check can run with small sizes
// (e.g. BENCH_RUNS=1 BENCH_BULK=64M BENCH_ROUND_TRIP=32M BENCH_STREAM_BULK=64M BENCH_SESSIONS=40): the defaults are
// the sizes BENCHMARKS.md states its targets for.

export function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/.exec(text);
  if (match === null) throw new Error(`bad size ${text} (a number, optionally followed by K, M or G)`);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2] as '' | 'K' | 'M' | 'G'];
  return Number(match[1]) * unit;
}

function count(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name}=${text}: a whole number of at least 1 is expected`);
  return value;
}

/** A size as written (head -c takes it as is) and in bytes (for MB/s and the peers that count bytes). */
export interface Size {
  text: string;
  bytes: number;
}

function size(name: string, fallback: string): Size {
  const text = process.env[name] || fallback;
  return { text, bytes: parseSize(text) };
}

/** Runs of each side of an A/B pair, interleaved; medians are reported. */
export const RUNS = count('BENCH_RUNS', 3);
/** The download row (and the Node TCP ceiling beside it). */
export const BULK = size('BENCH_BULK', '1G');
/** The round trip through remote cat. */
export const ROUND_TRIP = size('BENCH_ROUND_TRIP', '512M');
/** -outfifo, -socket and their stdout baseline, and the bulk beside the keystroke echo. */
export const STREAM_BULK = size('BENCH_STREAM_BULK', '1G');
/** The three-stage recipe; follows BENCH_BULK unless set, so a quick run stays quick. */
export const RECIPE_BULK = size('BENCH_RECIPE_BULK', BULK.text);
/** Sequential `true` runs per side: the latency median, CPU per run, and the servers' CPU per session. */
export const TRUE_RUNS = count('BENCH_TRUE_RUNS', 40);
/** `true` runs started at once, per side. */
export const CONCURRENT = count('BENCH_CONCURRENT', 20);
/** Sessions the load generator runs, and how many it keeps in flight. */
export const SESSIONS = count('BENCH_SESSIONS', 200);
export const CONCURRENCY = count('BENCH_CONCURRENCY', 20);
/** Keys typed per echo measurement (one every 10 ms at most). */
export const ECHO_KEYS = count('BENCH_ECHO_KEYS', 200);
/** Runs of the run-as and one-time-key latency rows. */
export const LATENCY_RUNS = count('BENCH_LATENCY_RUNS', 15);
/** Echo round trips, idle and beside recipe checks. */
export const ECHO_ROUNDS = count('BENCH_ECHO_ROUNDS', 300);

/** Ceiling on any one measured command: a hung run fails the bench instead of holding the machine. */
export const RUN_TIMEOUT_MS = count('BENCH_RUN_TIMEOUT_MS', 300_000);

/** The cipher OpenSSH is measured with on the data rows (the one the targets name). */
export const SSH_CIPHER = 'aes128-gcm@openssh.com';
