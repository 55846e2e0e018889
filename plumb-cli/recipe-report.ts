// What plumb tells about a recipe run: one line on stderr for each command that failed, as the daemon reports it,
// and with -json a machine-readable report of every command's end, plumb's exit status and any failure of the run.

import type { NetplumbError } from '../protocol/errors.js';
import type { StageEnd } from '../protocol/session.js';
import type { RecipePlan } from '../recipes/plan.js';
import type { StageBytes } from '../protocol/session.js';
import type { StreamTotals } from './stream-meter.js';

/** One command in the JSON report. `code` is set for an exit and for a command that could not start. */
export interface StageReportEntry {
  stage: number;
  name: string;
  line: number;
  /** The machine as the recipe names it (`@db1`), for a recipe across machines. */
  machine?: string;
  argv: string[];
  /** ended: exited with a code; killed: ended by a signal; not-started: could not start; not-run: never reached. */
  outcome: 'ended' | 'killed' | 'not-started' | 'not-run';
  code?: number;
  signal?: string;
  error?: string;
  message?: string;
  /** When the command started and ended (ISO 8601, UTC), as the daemon that ran it saw them. */
  startedAt?: string;
  endedAt?: string;
  /** What the command took in on stdin and gave out on stdout and stderr, as its daemon counted them (StageBytes). */
  bytesIn?: number;
  bytesOut?: number;
  bytesErr?: number;
}

/** One of plumb's streams in the JSON report: `bytesOut` went to the machine, `bytesIn` came from it. */
export interface StreamReportEntry {
  name: string;
  bytesOut: number;
  bytesIn: number;
  /** Rounds of a named pipe, connections of a socket; 1 for stdio. */
  streams: number;
  /** ISO 8601, UTC: when the first opened and the last closed (absent while one is still open). */
  startedAt: string;
  endedAt?: string;
}

export interface RecipeReportJson {
  recipe: string;
  machine: string;
  /** plumb's exit status, or null when plumb failed before the recipe ended. */
  exitStatus: number | null;
  /** Set when the run failed as a whole (connection lost, refused): the code and message plumb printed. */
  failure?: { code: string; message: string };
  stages: StageReportEntry[];
  /** plumb's own streams to and from the machine(s): across machines each is named after its machine (`@db1 stdout`). */
  streams?: StreamReportEntry[];
}

export class RecipeReport {
  private readonly ends = new Map<number, StageEnd>();
  private exitStatus: number | null = null;
  private failure: { code: string; message: string } | undefined;
  private readonly bytes = new Map<number, StageBytes>();
  private streamTotals: readonly StreamTotals[] | undefined;

  constructor(
    private readonly source: string,
    private readonly machine: string,
    private readonly plan: RecipePlan,
  ) {}

  /** Records a command's end; returns the line to print when it failed, undefined when it exited 0. */
  stageEnded(end: StageEnd): string | undefined {
    this.ends.set(end.stage, end);
    const where = `${end.name} (${this.source}:${end.line})`;
    const { status } = end;
    if ('error' in status) return `${where} did not start: ${status.message} (${status.error})`;
    if ('signal' in status) return `${where} killed by ${status.signal}`;
    return status.code === 0 ? undefined : `${where} exited with status ${status.code}`;
  }

  finished(exitStatus: number): void {
    this.exitStatus = exitStatus;
  }

  failed(error: NetplumbError): void {
    this.failure = { code: error.code, message: error.message };
  }

  /** A command's counts, as its daemon told them. */
  stageCounted(bytes: StageBytes): void {
    this.bytes.set(bytes.stage, bytes);
  }

  /** What each of plumb's streams carried, given once the run is over. */
  streams(totals: readonly StreamTotals[]): void {
    this.streamTotals = totals;
  }

  toJSON(): RecipeReportJson {
    const stages = this.plan.stages.map((stage): StageReportEntry => {
      const base = { stage: stage.index, name: stage.name, line: stage.location.line, ...(stage.machine === undefined ? {} : { machine: stage.machine }), argv: stage.argv };
      const end = this.ends.get(stage.index);
      if (end === undefined) return { ...base, outcome: 'not-run' };
      const measured = {
        ...(end.startedAt === undefined ? {} : { startedAt: new Date(end.startedAt).toISOString() }),
        ...(end.endedAt === undefined ? {} : { endedAt: new Date(end.endedAt).toISOString() }),
        ...counted(this.bytes.get(stage.index)),
      };
      const { status } = end;
      if ('error' in status) return { ...base, outcome: 'not-started', code: status.code, error: status.error, message: status.message };
      if ('signal' in status) return { ...base, outcome: 'killed', signal: status.signal, ...measured };
      return { ...base, outcome: 'ended', code: status.code, ...measured };
    });
    const json: RecipeReportJson = { recipe: this.source, machine: this.machine, exitStatus: this.exitStatus, stages };
    if (this.failure !== undefined) json.failure = this.failure;
    if (this.streamTotals !== undefined) {
      json.streams = this.streamTotals.map((stream) => ({
        name: stream.name,
        bytesOut: stream.bytesOut,
        bytesIn: stream.bytesIn,
        streams: stream.streams,
        startedAt: new Date(stream.startedAt).toISOString(),
        ...(stream.endedAt === undefined ? {} : { endedAt: new Date(stream.endedAt).toISOString() }),
      }));
    }
    return json;
  }
}

/** A command's counts as the report gives them: those its daemon told (StageBytes holds only counts it knew). */
function counted(bytes: StageBytes | undefined): Pick<StageReportEntry, 'bytesIn' | 'bytesOut' | 'bytesErr'> {
  if (bytes === undefined) return {};
  const { stage: _stage, ...counts } = bytes;
  return counts;
}
