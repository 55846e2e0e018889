// One fuzz run from start to end: a daemon, the pre-authentication fuzzer, then the post-authentication one, a
// watch for the daemon exiting or going silent, its memory, a real `plumb true` afterwards, and the report (as text
// or JSON). Used by scripts/fuzz.ts (npm run fuzz) and by the e2e slice test.

import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { FuzzDaemon, type ExitInfo, type PlumbResult } from './daemon.js';
import { Ledger, type RecentInput } from './ledger.js';
import { FUZZ_ERROR_MESSAGE } from './mutate.js';
import { runPostAuth } from './post-auth.js';
import { emptyPostAuthStats, type PostAuthStats } from './post-target.js';
import { runPreAuth, emptyPreAuthStats, type PreAuthStats } from './pre-auth.js';
import { Prng } from './prng.js';

export interface FuzzOptions {
  seed: number;
  /** Inputs in all, shared between the fuzzers that run. */
  inputs: number;
  /** Time cap of each fuzzer, in seconds. */
  seconds: number;
  pre: boolean;
  post: boolean;
  /** The pre-authentication fuzzer's share of the inputs when both run (its inputs cost a connection each). */
  preShare: number;
  /** The daemon's heap cap, in MiB. */
  heapMb: number;
  /** Keep the daemon's log in the temp dir even when all went well (it is always kept after a crash). */
  keepLog: boolean;
  /** Progress lines while running (none when absent). */
  progress?: (line: string) => void;
}

export const DEFAULT_FUZZ_OPTIONS: Readonly<Omit<FuzzOptions, 'progress'>> = Object.freeze({
  seed: 1,
  inputs: 1_000_000,
  seconds: 600,
  pre: true,
  post: true,
  preShare: 0.2,
  // The daemon gets through the fuzz with a 48 MiB heap: 128 leaves room to spare and makes a leak a crash sooner.
  heapMb: 128,
  keepLog: false,
});

/** No input answered for this long while a fuzzer runs: the daemon is taken as hung (a restart would be needed). */
const HANG_MS = 45_000;
const PROGRESS_EVERY_MS = 5000;
/** Lines of the daemon's log kept in the report for each internal error seen. */
const INTERNAL_ERRORS_KEPT = 5;

export interface LogSummary {
  lines: number;
  /** Lines naming an error code, by code. */
  codes: Record<string, number>;
  /** Lines with NP_INTERNAL or a JavaScript error name: failures the daemon did not expect. */
  internalErrors: number;
  internalExamples: string[];
  /** NP_INTERNAL lines that only report an Error packet a fuzzer sent with a code the daemon does not know. */
  fuzzerErrorPackets: number;
}

export interface FuzzReport {
  seed: number;
  options: Omit<FuzzOptions, 'progress'>;
  durationMs: number;
  pre: PreAuthStats & { durationMs: number };
  post: PostAuthStats & { durationMs: number };
  inputs: number;
  connections: number;
  daemon: {
    port: number;
    pid: number;
    /** The daemon exited, or stopped answering, while being fuzzed. */
    crashes: number;
    crash: { exit?: ExitInfo; hung: boolean } | undefined;
    /** How it ended when stopped with SIGTERM at the end (code 0 is a clean stop). */
    stopped: ExitInfo | undefined;
    /** after: null when the daemon is gone. */
    rssKb: { before: number; after: number | null; peak: number };
    /** CPU time the daemon used while fuzzed, and the fuzzers' own (both share the machine's cores). */
    cpuSeconds: { daemon: number; fuzzer: number };
    heapMb: number;
    log: LogSummary;
    /** Where the log was kept (after a crash, or when asked), else undefined: it was removed with the temp dir. */
    logKept: string | undefined;
  };
  finalPlumb: (PlumbResult & { ran: true }) | { ran: false };
  /** The last inputs sent (with the worker and its input number), kept for a crash. */
  lastInputs: RecentInput[];
  ok: boolean;
}

async function summariseLog(file: string): Promise<LogSummary> {
  const summary: LogSummary = { lines: 0, codes: {}, internalErrors: 0, internalExamples: [], fuzzerErrorPackets: 0 };
  // The peer's message is the reason; without one the connection layer says "peer reported an error".
  const fromFuzzer = new RegExp(`\\bcode=NP_INTERNAL reason="?(${FUZZ_ERROR_MESSAGE}|peer reported an error)`);
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of lines) {
    summary.lines++;
    const code = /\bcode=(NP_[A-Z_]+)/.exec(line)?.[1];
    if (code !== undefined) summary.codes[code] = (summary.codes[code] ?? 0) + 1;
    if (fromFuzzer.test(line)) summary.fuzzerErrorPackets++;
    else if (code === 'NP_INTERNAL' || /\b(TypeError|RangeError|ReferenceError|SyntaxError|uncaught|FATAL ERROR)\b/.test(line)) {
      summary.internalErrors++;
      if (summary.internalExamples.length < INTERNAL_ERRORS_KEPT) summary.internalExamples.push(line.slice(0, 600));
    }
  }
  return summary;
}

function phaseInputs(options: FuzzOptions): { pre: number; post: number } {
  if (options.pre && options.post) {
    const pre = Math.round(options.inputs * options.preShare);
    return { pre, post: options.inputs - pre };
  }
  return { pre: options.pre ? options.inputs : 0, post: options.post ? options.inputs : 0 };
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const say = options.progress ?? (() => undefined);
  const started = Date.now();
  const fuzzerCpuBefore = (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
  const rng = new Prng(options.seed, 'netplumb-fuzz');
  const budget = phaseInputs(options);
  const daemon = await FuzzDaemon.start({ heapMb: options.heapMb });
  say(`netplumbd pid ${daemon.pid} on 127.0.0.1:${daemon.port}, RSS ${daemon.rssBeforeKb} KiB, log ${daemon.logFile}`);
  let current: Ledger | undefined;
  /** The last inputs of the latest phase: the one a crash happened in. */
  let recent: RecentInput[] = [];
  let crash: { exit?: ExitInfo; hung: boolean } | undefined;
  let finishing = false;
  void daemon.exited.then((exit) => {
    if (finishing) return;
    crash = { exit, hung: false };
    current?.stop('the daemon exited');
  });
  const watchdog = setInterval(() => {
    if (current === undefined || current.stopped || Date.now() - current.lastProgressAt < HANG_MS) return;
    crash = { hung: true };
    current.stop(`the daemon answered nothing for ${HANG_MS} ms`);
  }, 1000);

  const phase = async <T>(name: string, inputs: number, run: (ledger: Ledger) => Promise<T>, empty: () => T): Promise<T & { durationMs: number }> => {
    const phaseStarted = Date.now();
    if (inputs === 0 || crash !== undefined) return { ...empty(), durationMs: 0 };
    const ledger = new Ledger(inputs, phaseStarted + options.seconds * 1000);
    current = ledger;
    const ticker = setInterval(() => say(`${name}: ${inputs - ledger.left} inputs, ${Math.round((Date.now() - phaseStarted) / 1000)} s, daemon RSS ${daemon.rssKb() ?? '-'} KiB`), PROGRESS_EVERY_MS);
    try {
      const stats = await run(ledger);
      return { ...stats, durationMs: Date.now() - phaseStarted };
    } finally {
      clearInterval(ticker);
      recent = ledger.lastInputs();
      current = undefined;
    }
  };

  let report: FuzzReport | undefined;
  try {
    const preTarget = {
      port: daemon.port,
      maxPacketBytes: daemon.maxPacketBytes,
      hostKey: daemon.hostKey.identity,
      authorized: daemon.open.identity,
      strangers: daemon.strangers,
    };
    const pre = await phase('pre-auth', budget.pre, (ledger) => runPreAuth(preTarget, rng.fork('pre'), ledger), emptyPreAuthStats);
    const postTarget = {
      port: daemon.port,
      hostKey: daemon.hostKey.identity.publicIdentity,
      clients: [
        { label: 'open', identity: daemon.open.identity },
        { label: 'gluepot', identity: daemon.glued.identity },
      ],
      maxPacketBytes: daemon.maxPacketBytes,
      initialWindowBytes: daemon.initialWindowBytes,
      safety: { spoolDir: daemon.spoolDir, tempDir: daemon.dir },
    };
    const post = await phase('post-auth', budget.post, (ledger) => runPostAuth(postTarget, rng.fork('post'), ledger), emptyPostAuthStats);
    clearInterval(watchdog);
    // A moment for the last connections' ends to be handled before the memory is read.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const rssAfter = daemon.rssKb() ?? null;
    const cpu = { daemon: daemon.cpuSeconds() ?? daemon.lastCpuSeconds, fuzzer: (process.cpuUsage().user + process.cpuUsage().system) / 1e6 - fuzzerCpuBefore };
    const finalPlumb: FuzzReport['finalPlumb'] = crash === undefined ? { ran: true, ...(await daemon.plumbTrue()) } : { ran: false };
    finishing = crash === undefined;
    const stopped = crash === undefined ? await daemon.stop() : undefined;
    const log = await summariseLog(daemon.logFile);
    const crashes = crash === undefined ? 0 : 1;
    report = {
      seed: options.seed,
      options: { seed: options.seed, inputs: options.inputs, seconds: options.seconds, pre: options.pre, post: options.post, preShare: options.preShare, heapMb: options.heapMb, keepLog: options.keepLog },
      durationMs: Date.now() - started,
      pre,
      post,
      inputs: pre.inputs + post.inputs,
      connections: pre.connections + post.connections,
      daemon: {
        port: daemon.port,
        pid: daemon.pid,
        crashes,
        crash,
        stopped,
        rssKb: { before: daemon.rssBeforeKb, after: rssAfter, peak: daemon.rssPeakKb },
        cpuSeconds: cpu,
        heapMb: options.heapMb,
        log,
        logKept: crashes > 0 || options.keepLog ? daemon.logFile : undefined,
      },
      finalPlumb,
      lastInputs: crashes > 0 ? recent : [],
      ok: crashes === 0 && finalPlumb.ran && finalPlumb.code === 0,
    };
    return report;
  } finally {
    clearInterval(watchdog);
    finishing = true;
    await daemon.stop();
    daemon.cleanup(report === undefined || report.daemon.logKept !== undefined);
  }
}
