// The checked recipe as the executor consumes it (stages with argv and resolved streams, named pipes and label
// pipes to create) and formatPlan() for `plumb -check`. Only checkRecipe() builds a RecipePlan, so an executor may
// trust it: labels exist, paths are absolute, and pipe ends open in an order that cannot deadlock. A plain command
// is a plan too (commandPlan), so one executor runs both.

import type { ExitStatus, StageEnd } from '../protocol/session.js';
import { describeInput, describeOutput, type PipeKey } from './stage-io.js';


/**
 * Where relative file names and fifos live unless the caller says otherwise (netplumbd's default spool). Here, with
 * the plan, rather than in check.ts, so that plumb can name it without loading the recipe parser.
 */
export const DEFAULT_SPOOL_DIR = '/var/lib/tapioca/tmp';

/** A place in a recipe's text; line and column are 1-based, column counts Unicode code points. */
export interface RecipeLocation {
  source: string;
  line: number;
  column: number;
}

/** Where a stage's stdin comes from. */
export type StageInput =
  | { kind: 'null' } // /dev/null
  | { kind: 'plumb-stdin' } // <%stdin
  | { kind: 'label'; label: string } // fed by >%label / 2>%label writers
  | { kind: 'pipe'; fromStage: number } // previous line ended in |
  | { kind: 'file'; path: string } // <file, absolute after resolution
  | { kind: 'fifo'; name: string; path: string };

/** Where a stage's stdout or stderr goes. */
export type StageOutput =
  | { kind: 'plumb-stdout' }
  | { kind: 'plumb-stderr' }
  | { kind: 'label'; label: string }
  | { kind: 'pipe'; toStage: number }
  | { kind: 'file'; path: string; append: boolean }
  | { kind: 'fifo'; name: string; path: string };

/** One command of the recipe, with its redirections applied left to right. */
export interface RecipeStage {
  /** 0-based, recipe order. */
  index: number;
  /** The label, or `line N`. */
  name: string;
  label?: string;
  /** The machine as written after `@` (`db1`, `db1:7020`); absent: the machine named on plumb's command line. */
  machine?: string;
  /** Where the command starts (its label if it has one). */
  location: RecipeLocation;
  /** argv[0] is the program, looked up in PATH by the executor. Never empty. */
  argv: string[];
  stdin: StageInput;
  /** When 2>&1 made stdout and stderr share a target, the two values are equal objects. */
  stdout: StageOutput;
  stderr: StageOutput;
  /** Ended in & or |: the next command starts without waiting for this one. */
  background: boolean;
}

/** A named pipe declared with `fifo NAME`, to be created (mkfifo) in the spool directory before anything runs. */
export interface RecipeFifo {
  name: string;
  /** Absolute: spoolDir joined with name. */
  path: string;
  /** Where the name is declared. */
  location: RecipeLocation;
}

/** A label pipe: the stdin of readerStage, written by every stage in writerStages (never empty). */
export interface RecipeLabelPipe {
  label: string;
  readerStage: number;
  /** Ascending stage indexes; a stage writing both stdout and stderr to the label appears once. */
  writerStages: number[];
}

/**
 * A stream that crosses machines: a `|` or a label pipe whose writer runs on one machine and whose reader on another.
 * It flows daemon to daemon; each writer of a label on another machine than the reader is an edge of its own.
 */
export interface RecipeEdge {
  /** 0-based, in the order of the writing stage. */
  index: number;
  fromStage: number;
  /** The writer's streams that flow into it, stdout first; both after 2>&1. */
  streams: Array<'stdout' | 'stderr'>;
  toStage: number;
  /** The reader's pipe: `stage:N` (the | after stage N) or `label:NAME`. */
  pipe: PipeKey;
}

export interface RecipePlan {
  source: string;
  /** Absolute, normalised. Every relative file name and every fifo lives here. */
  spoolDir: string;
  stages: RecipeStage[];
  /** Named pipes to create in the spool dir. */
  fifos: RecipeFifo[];
  /** Label pipes (the executor creates them); only labels with at least one writer appear. */
  labels: RecipeLabelPipe[];
  readsPlumbStdin: boolean;
  /** The machines named with `@`, in order of first use; empty when every command runs on plumb's machine. */
  machines: string[];
  /** Streams between stages on different machines; empty when the recipe runs on one machine. */
  edges: RecipeEdge[];
}

/** The stages placed on one of `machines` (as written after `@`; '' stands for the stages without a machine). */
export function stagesPlacedOn(plan: RecipePlan, machines: readonly string[]): Set<number> {
  const names = new Set(machines);
  return new Set(plan.stages.filter((stage) => names.has(stage.machine ?? '')).map((stage) => stage.index));
}

/** Whether one of the stages (all of them, unless given) reads plumb's stdin (`<%stdin`). */
export function readsPlumbStdin(plan: RecipePlan, stages?: ReadonlySet<number>): boolean {
  return plan.stages.some((stage) => stage.stdin.kind === 'plumb-stdin' && (stages?.has(stage.index) ?? true));
}

/** How messages name a machine as the recipe places a command (undefined or '': on plumb's command line). */
export function placementName(machine: string | undefined): string {
  return machine === undefined || machine === '' ? "plumb's machine" : `@${machine}`;
}

/** How the plan listing names a stage's machine. */
export function machineName(stage: RecipeStage): string {
  return placementName(stage.machine);
}

/**
 * The recipe's status: 0 when every command exited 0, else the status of the first command in recipe order that
 * did not (its code, or the signal that killed it). An aborted run that recorded no failure still fails (SIGTERM).
 */
export function recipeStatus(stages: readonly StageEnd[], aborted = false): ExitStatus {
  const ordered = [...stages].sort((a, b) => a.stage - b.stage);
  for (const { status } of ordered) {
    if ('signal' in status) return { signal: status.signal };
    if (status.code !== 0) return { code: status.code };
  }
  return aborted ? { signal: 'SIGTERM' } : { code: 0 };
}


/**
 * A plain command as a one-stage plan: reads plumb's stdin, writes plumb's stdout and stderr, and runs in
 * `directory` (which it also names the spool: a command has no relative files of its own).
 */
export function commandPlan(argv: readonly [string, ...string[]], directory: string): RecipePlan {
  const stage: RecipeStage = {
    index: 0,
    name: argv[0],
    location: { source: 'command', line: 1, column: 1 },
    argv: [...argv],
    stdin: { kind: 'plumb-stdin' },
    stdout: { kind: 'plumb-stdout' },
    stderr: { kind: 'plumb-stderr' },
    background: false,
  };
  return { source: 'command', spoolDir: directory, stages: [stage], fifos: [], labels: [], readsPlumbStdin: true, machines: [], edges: [] };
}

/** Quotes an argv word so the listing shows where words begin and end; plain words stay bare. */
function showWord(word: string): string {
  return /^[A-Za-z0-9_.,:=+\/@%-]+$/.test(word) ? word : JSON.stringify(word);
}

/**
 * A human-readable plan, as `plumb -check` prints it: what is created in the spool directory, then, for a recipe that
 * spans machines, the commands of each machine and every stream between machines, then each stage with its argv,
 * where its three streams go, and whether the next stage waits for it. Ends with a newline.
 */
export function formatPlan(plan: RecipePlan): string {
  const lines: string[] = [];
  const spans = plan.machines.length > 0;
  const count = `${plan.stages.length} command${plan.stages.length === 1 ? '' : 's'}`;
  const machineCount = new Set(plan.stages.map((stage) => stage.machine)).size;
  lines.push(`recipe ${plan.source}: ${count}${spans ? ` on ${machineCount} machine${machineCount === 1 ? '' : 's'}` : ''}`);
  lines.push(`spool directory: ${plan.spoolDir}${spans ? ' (on each machine)' : ''}`);
  if (plan.fifos.length > 0) {
    lines.push('named pipes created before the first command and removed at the end:');
    for (const fifo of plan.fifos) lines.push(`  ${fifo.path}`);
  }
  const files = new Set<string>();
  for (const stage of plan.stages) {
    for (const output of [stage.stdout, stage.stderr]) if (output.kind === 'file') files.add(spans ? `${output.path} on ${machineName(stage)}` : output.path);
  }
  if (files.size > 0) {
    lines.push('files written:');
    for (const path of [...files].sort()) lines.push(`  ${path}`);
  }
  if (plan.labels.length > 0) {
    lines.push('label pipes:');
    for (const pipe of plan.labels) {
      const writers = pipe.writerStages.map((index) => plan.stages[index]?.name ?? `#${index}`).join(', ');
      const reader = plan.stages[pipe.readerStage]?.name ?? `#${pipe.readerStage}`;
      lines.push(`  %${pipe.label}: ${writers} -> ${reader}`);
    }
  }
  if (spans) {
    lines.push('machines:');
    const seen = new Map<string, string[]>();
    for (const stage of plan.stages) {
      const machine = machineName(stage);
      seen.set(machine, [...(seen.get(machine) ?? []), `[${stage.index}] ${stage.name}`]);
    }
    for (const [machine, stages] of seen) lines.push(`  ${machine}: ${stages.join(', ')}`);
  }
  if (plan.edges.length > 0) {
    lines.push('streams between machines (daemon to daemon, SHA-256 checked at the end):');
    for (const edge of plan.edges) {
      const from = plan.stages[edge.fromStage];
      const to = plan.stages[edge.toStage];
      if (from === undefined || to === undefined) continue;
      const via = edge.pipe.startsWith('label:') ? `%${edge.pipe.slice('label:'.length)}` : '|';
      lines.push(`  edge ${edge.index}: ${machineName(from)} [${from.index}] ${from.name} ${edge.streams.join('+')} -> ${via} -> ${machineName(to)} [${to.index}] ${to.name}`);
    }
  }
  lines.push('commands, in start order:');
  for (const stage of plan.stages) {
    const at = `${stage.location.line}:${stage.location.column}`;
    const wait = stage.background ? 'next starts at once' : 'next waits for it to end';
    const where = spans ? ` on ${machineName(stage)}` : '';
    lines.push(`  [${stage.index}] ${stage.name}${where} (${at}, ${wait}): ${stage.argv.map(showWord).join(' ')}`);
    lines.push(`      stdin  <- ${describeInput(plan, stage.stdin)}`);
    lines.push(`      stdout -> ${describeOutput(plan, stage.stdout)}`);
    lines.push(`      stderr -> ${describeOutput(plan, stage.stderr)}`);
  }
  return `${lines.join('\n')}\n`;
}
