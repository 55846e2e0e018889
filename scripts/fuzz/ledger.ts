// What the fuzzers of one run share: the input budget, the deadline, the stop signal, and a ring of the last inputs
// sent (with the worker and its input number, which with the seed reproduce them) for the report of a crash.

/** How many of the last inputs of each phase are kept for a crash report. */
const RECENT_INPUTS = 24;
/** Bytes of an input kept in the ring (the rest is named by its length only). */
const RECENT_INPUT_BYTES = 512;

export type Phase = 'pre' | 'post';

/** One input as sent: which worker sent it as its how-manyth, what kind, and its first bytes. */
export interface RecentInput {
  phase: Phase;
  worker: string;
  index: number;
  kind: string;
  bytes: number;
  hex: string;
}

export class Ledger {
  private remaining: number;
  private readonly recent: (Omit<RecentInput, 'hex'> & { data: Buffer })[] = [];
  private stopReason: string | undefined;
  /** Date.now() when an input last completed: a daemon that stops answering stops this. */
  lastProgressAt = Date.now();
  private readonly stopListeners: (() => void)[] = [];

  constructor(
    inputs: number,
    /** Date.now() after which no new input is started. */
    readonly deadline: number,
  ) {
    this.remaining = inputs;
  }

  /** Takes up to `count` inputs from the budget; returns how many were granted (0: the phase is done). */
  take(count: number): number {
    if (this.stopped || Date.now() >= this.deadline) return 0;
    const granted = Math.min(count, this.remaining);
    this.remaining -= granted;
    return granted;
  }

  /** An input was answered or its connection ended: the daemon is still at work. */
  progress(): void {
    this.lastProgressAt = Date.now();
  }

  /** Inputs not yet taken. */
  get left(): number {
    return this.remaining;
  }

  get exhausted(): boolean {
    return this.stopped || this.remaining <= 0 || Date.now() >= this.deadline;
  }

  get stopped(): boolean {
    return this.stopReason !== undefined;
  }

  get reasonStopped(): string | undefined {
    return this.stopReason;
  }

  /** Ends the phase at once (the daemon crashed or hung). */
  stop(reason: string): void {
    if (this.stopReason !== undefined) return;
    this.stopReason = reason;
    for (const listener of this.stopListeners.splice(0)) listener();
  }

  onStop(listener: () => void): void {
    if (this.stopped) listener();
    else this.stopListeners.push(listener);
  }

  note(phase: Phase, worker: string, index: number, kind: string, bytes: Buffer): void {
    if (this.recent.length >= RECENT_INPUTS) this.recent.shift();
    // Hex is made only for a report: this runs for every input.
    this.recent.push({ phase, worker, index, kind, bytes: bytes.length, data: bytes.subarray(0, RECENT_INPUT_BYTES) });
  }

  lastInputs(): RecentInput[] {
    return this.recent.map(({ data, ...input }) => ({ ...input, hex: data.toString('hex') }));
  }
}

/** Adds one to a named counter. */
export function count(counters: Record<string, number>, name: string, by = 1): void {
  counters[name] = (counters[name] ?? 0) + by;
}
