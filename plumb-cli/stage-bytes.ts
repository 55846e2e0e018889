// The bytes each command of a recipe across machines took in and gave out, for the -json report, from the streams
// netplumb itself carried and counted: the edges (each end's count, from the daemons' EdgeReports) and plumb's own
// stdin and stdout (per machine). A stream that goes straight from one command to another through a pipe on one
// machine, or to or from a file or named pipe, never passes netplumb: its bytes are not known, and not guessed.

import type { EdgeReport } from '../protocol/multi-host.js';
import type { RecipePlan, RecipeStage } from '../recipes/plan.js';

/** A command's counts; each absent where its stream passed no counter of netplumb's. */
export interface StageBytes {
  /** The bytes delivered into its stdin. */
  bytesIn?: number;
  /** The bytes it wrote to stdout (and to stderr where that goes to the same place: 2>&1, or >%x 2>%x). */
  bytesOut?: number;
}

/** What plumb counted on one machine's part: the stages it ran and plumb's streams to and from it. */
export interface PartCounts {
  stages: ReadonlySet<number>;
  /** The bytes of plumb's stdout plumb received from this machine. */
  stdout: number;
  /** The bytes of plumb's stdin this machine's daemon delivered to its command, if a command here read it. */
  stdinDelivered: number | undefined;
}

export function stageBytes(plan: RecipePlan, edges: readonly EdgeReport[], parts: readonly PartCounts[]): Map<number, StageBytes> {
  const partOf = (stage: number): PartCounts | undefined => parts.find((part) => part.stages.has(stage));
  const edgeBytes = (edge: number, direction: 'in' | 'out'): number | undefined => edges.find((report) => report.edge === edge && report.direction === direction)?.bytes;

  const bytesIn = (stage: RecipeStage): number | undefined => {
    const { stdin } = stage;
    const part = partOf(stage.index);
    switch (stdin.kind) {
      case 'null':
        return 0;
      case 'plumb-stdin':
        // One command per machine may read plumb's stdin: the daemon's count is that command's.
        return part?.stdinDelivered;
      case 'pipe':
      case 'label': {
        const writers = stdin.kind === 'pipe' ? [stdin.fromStage] : (plan.labels.find((pipe) => pipe.label === stdin.label)?.writerStages ?? []);
        // A writer on this machine shares the pipe uncounted: the sum of the edges would be short.
        if (writers.some((writer) => part?.stages.has(writer) !== false)) return undefined;
        let total = 0;
        for (const edge of plan.edges.filter((candidate) => candidate.toStage === stage.index)) {
          const bytes = edgeBytes(edge.index, 'in');
          if (bytes === undefined) return undefined;
          total += bytes;
        }
        return total;
      }
      case 'file':
      case 'fifo':
        return undefined;
    }
  };

  const bytesOut = (stage: RecipeStage): number | undefined => {
    const { stdout } = stage;
    const part = partOf(stage.index);
    switch (stdout.kind) {
      case 'plumb-stdout': {
        // plumb's stdout from a machine is one pipe: its count is this command's only if no other command there writes it.
        const sharers = plan.stages.filter((other) => part?.stages.has(other.index) === true && (other.stdout.kind === 'plumb-stdout' || other.stderr.kind === 'plumb-stdout'));
        return sharers.length === 1 ? part?.stdout : undefined;
      }
      case 'pipe':
      case 'label': {
        const edge = plan.edges.find((candidate) => candidate.fromStage === stage.index && candidate.streams.includes('stdout'));
        return edge === undefined ? undefined : edgeBytes(edge.index, 'out');
      }
      case 'plumb-stderr':
      case 'file':
      case 'fifo':
        return undefined;
    }
  };

  return new Map(
    plan.stages.map((stage) => {
      const counts: StageBytes = {};
      const taken = bytesIn(stage);
      const given = bytesOut(stage);
      if (taken !== undefined) counts.bytesIn = taken;
      if (given !== undefined) counts.bytesOut = given;
      return [stage.index, counts];
    }),
  );
}
