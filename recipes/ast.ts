// The syntax tree recipe.peggy builds: one item per command or fifo declaration, words already unquoted.
// Nothing here is checked beyond the grammar; check.ts gives it meaning. Every `offset` is a 0-based index into the
// recipe text as a JavaScript string (UTF-16 code units); RecipeSource.locate() turns it into line and column.

export interface RecipeAst {
  kind: 'recipe';
  /** Commands and fifo declarations in recipe order; blank and comment lines leave nothing. */
  items: RecipeItem[];
}

export type RecipeItem = CommandNode | FifoDeclarationNode;

/** `fifo NAME [NAME...]`: named pipes to create in the spool directory. */
export interface FifoDeclarationNode {
  kind: 'fifo-declaration';
  offset: number;
  /** At least one. */
  names: NameNode[];
}

/** A label or fifo name as written, without its `%`, `@` or `:`. */
export interface NameNode {
  name: string;
  offset: number;
}

export interface CommandNode {
  kind: 'command';
  /** Start of the machine, else of the label, else of the first word or redirection. */
  offset: number;
  /** `@db1`, `@db1:7020`, `@[::1]:7020`: where the command runs; null runs it on plumb's command-line machine. */
  machine: MachineNode | null;
  label: NameNode | null;
  /** Words and redirections in the order written; at least one of them. */
  elements: CommandElement[];
  terminator: TerminatorNode | null;
}

/** A machine as written after its `@`: a name, an address or an alias, optionally with `:PORT`. */
export interface MachineNode {
  text: string;
  offset: number;
}

export type CommandElement = WordNode | RedirectionNode;

/** One argv word after quote removal: may be empty (`''`), may hold spaces, `$`, `*` and any other character. */
export interface WordNode {
  kind: 'word';
  value: string;
  offset: number;
}

/** `&` (background) or `|` (pipe stdout to the next command), last on its line. */
export interface TerminatorNode {
  kind: '&' | '|';
  offset: number;
}

/**
 * One redirection. fd 0 is stdin, 1 stdout, 2 stderr. `op` `>&` duplicates: `2>&1` is fd 2 with target fd 1,
 * `>&2` is fd 1 with target fd 2. Only `<` uses fd 0.
 */
export interface RedirectionNode {
  kind: 'redirection';
  /** Start of the operator (of the `2` in `2>`). */
  offset: number;
  fd: 0 | 1 | 2;
  op: '<' | '>' | '>>' | '>&';
  target: RedirectionTarget;
}

export type RedirectionTarget =
  | { kind: 'file'; path: string; offset: number }
  | { kind: 'label'; name: string; offset: number }
  | { kind: 'fifo'; name: string; offset: number }
  | { kind: 'fd'; fd: 1 | 2; offset: number };
