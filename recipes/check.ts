// checkRecipe(): a recipe's text to the RecipePlan an executor runs, or a RecipeError with the place of the first
// problem. The check is whole (nothing runs unless everything is right) and pure: no file system, no environment,
// no clock. Order: limits on the raw size, text encoding, syntax, then meaning (names, redirections, deadlocks).

import { posix } from 'node:path';
import { BadConfigError, ErrorCode, type RecipeErrorCode } from '../protocol/errors.js';
import type { CommandNode, FifoDeclarationNode, RecipeAst, RedirectionNode, RedirectionTarget } from './ast.js';
import { RecipeSource } from './errors.js';
import { resolveRecipeLimits, type RecipeLimits } from './limits.js';
import { decodeRecipe } from './decode.js';
import { parseSource } from './parse.js';
import { DEFAULT_SPOOL_DIR, placementName, type RecipeEdge, type RecipeFifo, type RecipeLabelPipe, type RecipePlan, type RecipeStage, type StageOutput } from './plan.js';

export { DEFAULT_SPOOL_DIR } from './plan.js';

/** Label names a recipe may not define: `%stdin` is plumb's stdin; stdout and stderr are kept for the same use. */
export const RESERVED_LABELS: readonly string[] = Object.freeze(['stdin', 'stdout', 'stderr']);

export interface CheckOptions {
  /** Names the recipe in error locations and in the plan (a file name, or `-`). */
  sourceName: string;
  /** Absolute directory for relative file names and fifos. Default DEFAULT_SPOOL_DIR. */
  spoolDir?: string;
  /** Overrides of DEFAULT_RECIPE_LIMITS. */
  limits?: Partial<RecipeLimits>;
}

/**
 * Checks a whole recipe and returns its plan. `input` is the recipe's bytes (checked as UTF-8) or its already decoded
 * text. Throws RecipeError (NP_RECIPE_SYNTAX, NP_RECIPE_INVALID, NP_RECIPE_TOO_LARGE) for anything wrong with the
 * recipe, and ConfigError (NP_CONFIG) for a relative spool directory or an invalid limit.
 */
export function checkRecipe(input: string | Uint8Array, options: CheckOptions): RecipePlan {
  const limits = resolveRecipeLimits(options.limits);
  const spoolDir = resolveSpoolDir(options.spoolDir ?? DEFAULT_SPOOL_DIR);
  const source = decodeRecipe(input, options.sourceName, limits);
  const ast = parseSource(source);
  return new PlanBuilder(source, ast, spoolDir, limits).build();
}

function resolveSpoolDir(spoolDir: string): string {
  if (!posix.isAbsolute(spoolDir) || spoolDir.includes('\0')) {
    throw new BadConfigError(`the spool directory must be an absolute path, not ${JSON.stringify(spoolDir)}`);
  }
  const normalised = posix.normalize(spoolDir);
  return normalised.length > 1 ? normalised.replace(/\/+$/, '') : normalised;
}

// ---- meaning -----------------------------------------------------------------------------------------------

/** One use of a label pipe or fifo end by a stage, and where the recipe asks for it (for error locations). */
interface PipeEnd {
  stage: number;
  offset: number;
}

interface StageDraft {
  node: CommandNode;
  stage: RecipeStage;
  /** Where stdin was redirected with <, if it was. */
  stdinOffset: number | null;
  /** Where stdout and stderr were redirected, if they were (each at most once). */
  outputOffset: { 1: number | null; 2: number | null };
}

class PlanBuilder {
  private readonly commands: CommandNode[];
  private readonly declarations: FifoDeclarationNode[];
  private readonly fifos = new Map<string, RecipeFifo & { offset: number }>();
  private readonly labels = new Map<string, { stage: number; offset: number }>();
  private readonly drafts: StageDraft[] = [];
  private readonly labelWriters = new Map<string, PipeEnd[]>();
  private readonly fifoReaders = new Map<string, PipeEnd[]>();
  private readonly fifoWriters = new Map<string, PipeEnd[]>();
  private plumbStdinReader: PipeEnd | null = null;

  constructor(
    private readonly source: RecipeSource,
    ast: RecipeAst,
    private readonly spoolDir: string,
    private readonly limits: RecipeLimits,
  ) {
    this.commands = ast.items.filter((item): item is CommandNode => item.kind === 'command');
    this.declarations = ast.items.filter((item): item is FifoDeclarationNode => item.kind === 'fifo-declaration');
  }

  build(): RecipePlan {
    if (this.commands.length === 0) this.fail(ErrorCode.RecipeInvalid, 'the recipe has no command', 0);
    const extra = this.commands[this.limits.maxRecipeCommands];
    if (extra !== undefined) {
      this.fail(ErrorCode.RecipeTooLarge, `more than maxRecipeCommands (${this.limits.maxRecipeCommands}) commands`, extra.offset);
    }
    this.declareFifos();
    this.declareLabels();
    this.commands.forEach((node, index) => this.drafts.push(this.resolveCommand(node, index)));
    this.connectStdin();
    this.checkPipes();
    const labels = this.checkLabels();
    this.checkFifos();
    const stages = this.drafts.map((draft) => draft.stage);
    return {
      source: this.source.name,
      spoolDir: this.spoolDir,
      stages,
      fifos: [...this.fifos.values()].map(({ name, path, location }) => ({ name, path, location })),
      labels,
      readsPlumbStdin: this.plumbStdinReader !== null,
      machines: [...new Set(stages.flatMap((stage) => (stage.machine === undefined ? [] : [stage.machine])))],
      edges: crossingEdges(stages, labels),
    };
  }

  private fail(code: RecipeErrorCode, reason: string, offset: number): never {
    throw this.source.error(code, reason, offset);
  }

  private lineOf(offset: number): number {
    return this.source.locate(offset).line;
  }

  /** How messages name a stage: by its label, else by its line. */
  private nameOf(stage: number): string {
    const node = this.commands[stage];
    if (node === undefined) return `command ${stage}`;
    const line = this.lineOf(node.offset);
    return node.label !== null ? `the command labelled ${node.label.name} (line ${line})` : `the command on line ${line}`;
  }

  private checkNameSize(name: string, offset: number): void {
    if (Buffer.byteLength(name, 'utf8') > this.limits.maxNameBytes) {
      this.fail(ErrorCode.RecipeTooLarge, `the name ${name} is longer than maxNameBytes (${this.limits.maxNameBytes})`, offset);
    }
  }

  /** A machine as written: a name within the name limit, and a port, if any, from 1 to 65535. */
  private checkMachine(text: string, offset: number): string {
    this.checkNameSize(text, offset);
    const port = /:(\d+)$/.exec(text)?.[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535 || port.startsWith('0'))) {
      this.fail(ErrorCode.RecipeInvalid, `@${text}: the port must be a number from 1 to 65535`, offset);
    }
    return text;
  }

  private declareFifos(): void {
    for (const declaration of this.declarations) {
      for (const { name, offset } of declaration.names) {
        this.checkNameSize(name, offset);
        const earlier = this.fifos.get(name);
        if (earlier !== undefined) {
          this.fail(ErrorCode.RecipeInvalid, `fifo ${name} is already declared on line ${earlier.location.line}`, offset);
        }
        if (this.fifos.size === this.limits.maxFifos) {
          this.fail(ErrorCode.RecipeTooLarge, `more than maxFifos (${this.limits.maxFifos}) named pipes`, offset);
        }
        const path = posix.join(this.spoolDir, name);
        if (Buffer.byteLength(path, 'utf8') > this.limits.maxPathBytes) {
          this.fail(ErrorCode.RecipeTooLarge, `the path of fifo ${name} is longer than maxPathBytes (${this.limits.maxPathBytes})`, offset);
        }
        this.fifos.set(name, { name, path, location: this.source.locate(offset), offset });
      }
    }
  }

  private declareLabels(): void {
    this.commands.forEach((node, index) => {
      if (node.label === null) return;
      const { name, offset } = node.label;
      if (RESERVED_LABELS.includes(name)) {
        this.fail(ErrorCode.RecipeInvalid, `${name} is a reserved name and cannot label a command (%stdin is plumb's stdin)`, offset);
      }
      this.checkNameSize(name, offset);
      const earlier = this.labels.get(name);
      if (earlier !== undefined) {
        this.fail(ErrorCode.RecipeInvalid, `label ${name} is already used on line ${this.lineOf(earlier.offset)}`, offset);
      }
      this.labels.set(name, { stage: index, offset });
    });
  }

  /** argv, the redirections applied left to right, and the stage record (stdin is completed by connectStdin()). */
  private resolveCommand(node: CommandNode, index: number): StageDraft {
    const argv: string[] = [];
    for (const element of node.elements) {
      if (element.kind !== 'word') continue;
      if (argv.length === this.limits.maxArgsPerCommand) {
        this.fail(ErrorCode.RecipeTooLarge, `more than maxArgsPerCommand (${this.limits.maxArgsPerCommand}) words in one command`, element.offset);
      }
      if (Buffer.byteLength(element.value, 'utf8') > this.limits.maxArgBytes) {
        this.fail(ErrorCode.RecipeTooLarge, `a word longer than maxArgBytes (${this.limits.maxArgBytes} bytes)`, element.offset);
      }
      argv.push(element.value);
    }
    const first = node.elements[0];
    if (argv.length === 0) {
      this.fail(ErrorCode.RecipeInvalid, 'redirections without a command: a line needs a program to run', first?.offset ?? node.offset);
    }
    const programWord = node.elements.find((element) => element.kind === 'word');
    if (argv[0] === '') this.fail(ErrorCode.RecipeInvalid, 'the program name is empty', programWord?.offset ?? node.offset);
    if (node.terminator?.kind === '|' && index === this.commands.length - 1) {
      this.fail(ErrorCode.RecipeInvalid, 'the last command cannot end in |: no command follows to read the pipe', node.terminator.offset);
    }

    const stdout: StageOutput = node.terminator?.kind === '|' ? { kind: 'pipe', toStage: index + 1 } : { kind: 'plumb-stdout' };
    const stage: RecipeStage = {
      index,
      name: node.label?.name ?? `line ${this.lineOf(node.offset)}`,
      location: this.source.locate(node.offset),
      argv,
      stdin: { kind: 'null' },
      stdout,
      stderr: { kind: 'plumb-stderr' },
      background: node.terminator !== null,
    };
    if (node.label !== null) stage.label = node.label.name;
    if (node.machine !== null) stage.machine = this.checkMachine(node.machine.text, node.machine.offset);
    const draft: StageDraft = { node, stage, stdinOffset: null, outputOffset: { 1: null, 2: null } };

    for (const element of node.elements) {
      if (element.kind !== 'redirection') continue;
      if (element.fd === 0) this.redirectStdin(draft, element);
      else this.redirectOutput(draft, element, element.fd);
    }
    this.recordOutputs(draft);
    const { stdin } = stage;
    if (stdin.kind === 'file') {
      for (const output of [stage.stdout, stage.stderr]) {
        if (output.kind === 'file' && !output.append && output.path === stdin.path) {
          this.fail(ErrorCode.RecipeInvalid, `${stdin.path} is read and truncated by the same command: it would read nothing`, draft.stdinOffset ?? node.offset);
        }
      }
    }
    return draft;
  }

  private redirectStdin(draft: StageDraft, redirection: RedirectionNode): void {
    if (draft.stdinOffset !== null) {
      this.fail(ErrorCode.RecipeInvalid, `stdin is already redirected on this line (column ${this.source.locate(draft.stdinOffset).column})`, redirection.offset);
    }
    draft.stdinOffset = redirection.offset;
    const target = redirection.target;
    switch (target.kind) {
      case 'label':
        if (target.name !== 'stdin') {
          this.fail(
            ErrorCode.RecipeInvalid,
            `<%${target.name}: only <%stdin reads with %; a labelled command reads what others send it with >%${target.name}`,
            target.offset,
          );
        }
        if (this.plumbStdinReader !== null) {
          this.fail(ErrorCode.RecipeInvalid, `plumb's stdin is already read by ${this.nameOf(this.plumbStdinReader.stage)}: only one command may read it`, target.offset);
        }
        this.plumbStdinReader = { stage: draft.stage.index, offset: target.offset };
        draft.stage.stdin = { kind: 'plumb-stdin' };
        return;
      case 'fifo': {
        const fifo = this.fifoNamed(target.name, target.offset);
        addEnd(this.fifoReaders, fifo.name, { stage: draft.stage.index, offset: redirection.offset });
        draft.stage.stdin = { kind: 'fifo', name: fifo.name, path: fifo.path };
        return;
      }
      case 'file':
        draft.stage.stdin = { kind: 'file', path: this.resolveFile(target.path, target.offset) };
        return;
      case 'fd':
        this.fail(ErrorCode.RecipeInvalid, 'stdin cannot be duplicated from an output', redirection.offset);
    }
  }

  private redirectOutput(draft: StageDraft, redirection: RedirectionNode, fd: 1 | 2): void {
    const stream = fd === 1 ? 'stdout' : 'stderr';
    const earlier = draft.outputOffset[fd];
    if (earlier !== null) {
      this.fail(ErrorCode.RecipeInvalid, `${stream} is already redirected on this line (column ${this.source.locate(earlier).column})`, redirection.offset);
    }
    draft.outputOffset[fd] = redirection.offset;
    draft.stage[stream] = this.outputTarget(draft, redirection, redirection.target);
  }

  private outputTarget(draft: StageDraft, redirection: RedirectionNode, target: RedirectionTarget): StageOutput {
    const append = redirection.op === '>>';
    switch (target.kind) {
      case 'fd':
        // The target's current value, shared: after `>f 2>&1` both fields are the same object.
        return target.fd === 1 ? draft.stage.stdout : draft.stage.stderr;
      case 'file':
        return { kind: 'file', path: this.resolveFile(target.path, target.offset), append };
      case 'fifo': {
        if (append) this.fail(ErrorCode.RecipeInvalid, `>>@${target.name}: appending to a named pipe means nothing; write >@${target.name}`, redirection.offset);
        const fifo = this.fifoNamed(target.name, target.offset);
        return { kind: 'fifo', name: fifo.name, path: fifo.path };
      }
      case 'label': {
        if (target.name === 'stdin') {
          this.fail(ErrorCode.RecipeInvalid, "%stdin is plumb's stdin: it can be read (<%stdin), not written", target.offset);
        }
        if (append) this.fail(ErrorCode.RecipeInvalid, `>>%${target.name}: appending to a label means nothing; write >%${target.name}`, redirection.offset);
        const labelled = this.labels.get(target.name);
        if (labelled === undefined) {
          const hint = this.fifos.has(target.name) ? ` (${target.name} is a named pipe: write @${target.name})` : '';
          this.fail(ErrorCode.RecipeInvalid, `no command is labelled ${target.name}${hint}`, target.offset);
        }
        if (labelled.stage === draft.stage.index) {
          this.fail(ErrorCode.RecipeInvalid, `%${target.name} is this command's own stdin: a command cannot feed itself`, target.offset);
        }
        return { kind: 'label', label: target.name };
      }
    }
  }

  /** Records the label and fifo writers of a stage from its final stdout and stderr (a stage counts once). */
  private recordOutputs(draft: StageDraft): void {
    const { stage } = draft;
    for (const fd of [1, 2] as const) {
      const output = fd === 1 ? stage.stdout : stage.stderr;
      const offset = draft.outputOffset[fd] ?? draft.node.offset;
      if (output.kind === 'label') addEnd(this.labelWriters, output.label, { stage: stage.index, offset });
      if (output.kind === 'fifo') addEnd(this.fifoWriters, output.name, { stage: stage.index, offset });
    }
  }

  private fifoNamed(name: string, offset: number): RecipeFifo {
    const fifo = this.fifos.get(name);
    if (fifo === undefined) {
      const hint = this.labels.has(name) ? ` (${name} labels a command: write %${name})` : '';
      this.fail(ErrorCode.RecipeInvalid, `no fifo ${name} is declared: add a line "fifo ${name}"${hint}`, offset);
    }
    return fifo;
  }

  /**
   * A file name as an absolute path: absolute names stay as written, others are joined to the spool directory and
   * may not contain a `..` component. Refuses names of directories and of declared fifos.
   */
  private resolveFile(name: string, offset: number): string {
    if (name === '') this.fail(ErrorCode.RecipeInvalid, 'the file name is empty', offset);
    if (Buffer.byteLength(name, 'utf8') > this.limits.maxArgBytes) {
      this.fail(ErrorCode.RecipeTooLarge, `a file name longer than maxArgBytes (${this.limits.maxArgBytes} bytes)`, offset);
    }
    if (name.endsWith('/')) this.fail(ErrorCode.RecipeInvalid, `${name} ends in / and so names a directory, not a file`, offset);
    let path: string;
    if (posix.isAbsolute(name)) {
      path = name;
    } else {
      if (name.split('/').includes('..')) {
        this.fail(ErrorCode.RecipeInvalid, `${name} would leave the spool directory: a relative name may not contain ..`, offset);
      }
      path = posix.join(this.spoolDir, name);
      if (path === this.spoolDir) this.fail(ErrorCode.RecipeInvalid, `${name} names the spool directory itself, not a file`, offset);
    }
    if (Buffer.byteLength(path, 'utf8') > this.limits.maxPathBytes) {
      this.fail(ErrorCode.RecipeTooLarge, `the path ${name} resolves to is longer than maxPathBytes (${this.limits.maxPathBytes})`, offset);
    }
    const normalised = posix.normalize(path);
    for (const fifo of this.fifos.values()) {
      if (fifo.path === normalised) {
        this.fail(ErrorCode.RecipeInvalid, `${name} is the named pipe declared on line ${fifo.location.line}: write @${fifo.name}`, offset);
      }
    }
    return path;
  }

  /** Gives each stage fed by a pipe or by label writers that stdin, refusing a second source of stdin. */
  private connectStdin(): void {
    for (const draft of this.drafts) {
      const { stage } = draft;
      const previous = this.drafts[stage.index - 1];
      const piped = previous?.node.terminator?.kind === '|';
      const writers = stage.label === undefined ? undefined : this.labelWriters.get(stage.label);
      if (piped && previous !== undefined) {
        if (draft.stdinOffset !== null) {
          this.fail(ErrorCode.RecipeInvalid, `stdin is already the pipe from line ${this.lineOf(previous.node.offset)} (it ends in |)`, draft.stdinOffset);
        }
        if (writers !== undefined && writers[0] !== undefined) {
          this.fail(
            ErrorCode.RecipeInvalid,
            `${this.nameOf(stage.index)} already reads the pipe from line ${this.lineOf(previous.node.offset)} (it ends in |), so nothing can also send it >%${stage.label ?? ''}: a command has one stdin`,
            writers[0].offset,
          );
        }
        stage.stdin = { kind: 'pipe', fromStage: previous.stage.index };
      } else if (writers !== undefined && stage.label !== undefined) {
        if (draft.stdinOffset !== null) {
          const writer = writers[0]?.stage ?? 0;
          this.fail(ErrorCode.RecipeInvalid, `stdin is already %${stage.label}, written by ${this.nameOf(writer)}: a command has one stdin`, draft.stdinOffset);
        }
        stage.stdin = { kind: 'label', label: stage.label };
      }
    }
  }

  /** A line ending in | must send stdout or stderr into that pipe; otherwise the next command reads nothing. */
  private checkPipes(): void {
    for (const { node, stage } of this.drafts) {
      if (node.terminator?.kind !== '|') continue;
      if (stage.stdout.kind !== 'pipe' && stage.stderr.kind !== 'pipe') {
        this.fail(ErrorCode.RecipeInvalid, 'this line ends in | but sends neither stdout nor stderr into the pipe', node.terminator.offset);
      }
    }
  }

  /** Label pipes in reader order; refuses an order in which a foreground command waits for one that never starts. */
  private checkLabels(): RecipeLabelPipe[] {
    const pipes: RecipeLabelPipe[] = [];
    for (const [label, writers] of this.labelWriters) {
      const reader = this.labels.get(label);
      if (reader === undefined) continue; // refused by outputTarget()
      this.checkOrder(`%${label}`, { stage: reader.stage, offset: reader.offset }, writers);
      pipes.push({ label, readerStage: reader.stage, writerStages: writers.map((writer) => writer.stage) });
    }
    return pipes.sort((a, b) => a.readerStage - b.readerStage);
  }

  /**
   * A foreground command (no & or | at its end) blocks the ones after it. So a foreground writer must not come
   * before its reader, and a foreground reader must not come before any of its writers.
   */
  private checkOrder(what: string, reader: PipeEnd, writers: PipeEnd[]): void {
    const readerStage = this.stageAt(reader.stage);
    for (const writer of writers) {
      const writerStage = this.stageAt(writer.stage);
      if (writer.stage < reader.stage && !writerStage.background) {
        this.fail(
          ErrorCode.RecipeInvalid,
          `${this.nameOf(writer.stage)} writes into ${what}, whose reader (${this.nameOf(reader.stage)}) only starts after it has ended: add & at the end of the writer`,
          writer.offset,
        );
      }
      if (writer.stage > reader.stage && !readerStage.background) {
        this.fail(
          ErrorCode.RecipeInvalid,
          `${this.nameOf(reader.stage)} reads ${what}, but its writer (${this.nameOf(writer.stage)}) only starts after the reader has ended: add & at the end of the reader`,
          reader.offset,
        );
      }
    }
  }

  private stageAt(index: number): RecipeStage {
    const draft = this.drafts[index];
    if (draft === undefined) throw new RangeError(`no stage ${index}`);
    return draft.stage;
  }

  /** Each fifo has one reader and one writing command, in an order that cannot deadlock. */
  private checkFifos(): void {
    for (const fifo of this.fifos.values()) {
      const readers = this.fifoReaders.get(fifo.name) ?? [];
      const writers = this.fifoWriters.get(fifo.name) ?? [];
      if (readers.length === 0 && writers.length === 0) {
        this.fail(ErrorCode.RecipeInvalid, `fifo ${fifo.name} is declared but never used`, fifo.offset);
      }
      const [reader, secondReader] = readers;
      const [writer, secondWriter] = writers;
      if (reader === undefined) this.fail(ErrorCode.RecipeInvalid, `fifo ${fifo.name} is written but no command reads it (<@${fifo.name})`, fifo.offset);
      if (writer === undefined) this.fail(ErrorCode.RecipeInvalid, `fifo ${fifo.name} is read but no command writes it (>@${fifo.name})`, fifo.offset);
      if (secondReader !== undefined) {
        this.fail(ErrorCode.RecipeInvalid, `fifo ${fifo.name} is already read by ${this.nameOf(reader.stage)}: a named pipe has one reader`, secondReader.offset);
      }
      if (secondWriter !== undefined) {
        this.fail(
          ErrorCode.RecipeInvalid,
          `fifo ${fifo.name} is already written by ${this.nameOf(writer.stage)}: a named pipe has one writer (use a label to gather several)`,
          secondWriter.offset,
        );
      }
      if (reader.stage === writer.stage) {
        this.fail(ErrorCode.RecipeInvalid, `a command cannot both read and write fifo ${fifo.name}: it would wait for itself`, reader.offset);
      }
      const writerMachine = this.stageAt(writer.stage).machine;
      const readerMachine = this.stageAt(reader.stage).machine;
      if (writerMachine !== readerMachine) {
        this.fail(
          ErrorCode.RecipeInvalid,
          `fifo ${fifo.name} is written on ${placementName(writerMachine)} and read on ${placementName(readerMachine)}: a named pipe stays on its machine (send the stream to a label, >%LABEL, to cross machines)`,
          writer.offset,
        );
      }
      this.checkOrder(`fifo ${fifo.name}`, reader, [writer]);
    }
  }
}

/**
 * The | pipes and label writers whose reader runs on another machine, each an edge: by writing stage, its | pipe
 * first, then its labels by name.
 */
function crossingEdges(stages: readonly RecipeStage[], labels: readonly RecipeLabelPipe[]): RecipeEdge[] {
  const edges: RecipeEdge[] = [];
  const add = (writer: RecipeStage, reader: RecipeStage, pipe: RecipeEdge['pipe'], matches: (output: StageOutput) => boolean): void => {
    if (writer.machine === reader.machine) return;
    const streams = (['stdout', 'stderr'] as const).filter((stream) => matches(writer[stream]));
    edges.push({ index: edges.length, fromStage: writer.index, streams, toStage: reader.index, pipe });
  };
  const byName = [...labels].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  for (const stage of stages) {
    const next = stages[stage.index + 1];
    if (next !== undefined && next.stdin.kind === 'pipe') add(stage, next, `stage:${stage.index}`, (output) => output.kind === 'pipe');
    for (const pipe of byName) {
      const reader = stages[pipe.readerStage];
      if (reader === undefined || !pipe.writerStages.includes(stage.index)) continue;
      add(stage, reader, `label:${pipe.label}`, (output) => output.kind === 'label' && output.label === pipe.label);
    }
  }
  return edges;
}

function addEnd(map: Map<string, PipeEnd[]>, name: string, end: PipeEnd): void {
  const ends = map.get(name);
  if (ends === undefined) map.set(name, [end]);
  else if (!ends.some((existing) => existing.stage === end.stage)) ends.push(end);
}
