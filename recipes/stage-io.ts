// Where a stage's stdin, stdout and stderr connect, told once for every kind of redirection: the key of the run's
// pipe it uses (one pipe per key), or none for a file or /dev/null, and how `plumb -check` describes it.

import type { RecipePlan, StageInput, StageOutput } from './plan.js';

/**
 * Names one pipe of a run: `plumb:stdin`, `plumb:stdout`, `plumb:stderr`, `label:NAME`, `stage:N` (the `|` pipe
 * after stage N), `fifo:NAME` (a declared named pipe) or `edge:N` (on the writer's machine, the pipe its commands
 * write edge N of plan.edges into, when the reader runs on another machine).
 */
export type PipeKey = `plumb:${'stdin' | 'stdout' | 'stderr'}` | `label:${string}` | `stage:${number}` | `fifo:${string}` | `edge:${number}`;

/** The pipe a stage reads; undefined for /dev/null or a file. */
export function inputPipeKey(input: StageInput): PipeKey | undefined {
  switch (input.kind) {
    case 'plumb-stdin':
      return 'plumb:stdin';
    case 'label':
      return `label:${input.label}`;
    case 'pipe':
      return `stage:${input.fromStage}`;
    case 'fifo':
      return `fifo:${input.name}`;
    case 'null':
    case 'file':
      return undefined;
  }
}

/** The pipe a stage writes stdout or stderr to; undefined for a file. */
export function outputPipeKey(output: StageOutput): PipeKey | undefined {
  switch (output.kind) {
    case 'plumb-stdout':
      return 'plumb:stdout';
    case 'plumb-stderr':
      return 'plumb:stderr';
    case 'label':
      return `label:${output.label}`;
    case 'pipe':
      return `stage:${output.toStage - 1}`;
    case 'fifo':
      return `fifo:${output.name}`;
    case 'file':
      return undefined;
  }
}

/** A stage's stdin as the plan listing shows it. */
export function describeInput(plan: RecipePlan, input: StageInput): string {
  switch (input.kind) {
    case 'null':
      return '/dev/null';
    case 'plumb-stdin':
      return "plumb's stdin";
    case 'label': {
      const pipe = plan.labels.find((candidate) => candidate.label === input.label);
      const writers = (pipe?.writerStages ?? []).map((index) => plan.stages[index]?.name ?? `#${index}`);
      return `label pipe %${input.label} (written by ${writers.join(', ')})`;
    }
    case 'pipe':
      return `pipe from ${plan.stages[input.fromStage]?.name ?? `#${input.fromStage}`}`;
    case 'file':
      return `file ${input.path}`;
    case 'fifo':
      return `fifo ${input.path}`;
  }
}

/** A stage's stdout or stderr as the plan listing shows it. */
export function describeOutput(plan: RecipePlan, output: StageOutput): string {
  switch (output.kind) {
    case 'plumb-stdout':
      return "plumb's stdout";
    case 'plumb-stderr':
      return "plumb's stderr";
    case 'label': {
      const pipe = plan.labels.find((candidate) => candidate.label === output.label);
      const reader = pipe === undefined ? '?' : (plan.stages[pipe.readerStage]?.name ?? `#${pipe.readerStage}`);
      return `label pipe %${output.label} (read by ${reader})`;
    }
    case 'pipe':
      return `pipe to ${plan.stages[output.toStage]?.name ?? `#${output.toStage}`}`;
    case 'file':
      return `${output.append ? 'append to' : 'file'} ${output.path}`;
    case 'fifo':
      return `fifo ${output.path}`;
  }
}
