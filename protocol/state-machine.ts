// One small state machine type for every stateful part of netplumb (connection, stream halves, session,
// FIFO bridges): the legal moves are a table, every change goes through `move`, and an illegal move is refused
// and reported instead of silently corrupting state (in the manner of OpenSSH's chan_set_istate).

/** For each state, the states it may move to. A state missing from its own list cannot be re-entered. */
export type TransitionTable<S extends string> = { readonly [From in S]: readonly S[] };

/** Told about a refused move; the default reporter is silent so that protocol/ writes no logs of its own. */
export type IllegalMoveReporter<S extends string> = (machine: string, from: S, to: S) => void;

/**
 * A state with a table of legal moves. `move(to)` changes state and returns true when the table allows it;
 * otherwise it leaves the state as it was, reports the attempt and returns false. Moving to the current state
 * is a no-op that returns false unless the table lists the state as reachable from itself.
 */
export class StateMachine<S extends string> {
  #state: S;

  constructor(
    /** Names the machine in reports, e.g. "connection" or "stream 7 read half". */
    readonly name: string,
    initial: S,
    private readonly table: TransitionTable<S>,
    private readonly reportIllegal: IllegalMoveReporter<S> = () => undefined,
  ) {
    this.#state = initial;
  }

  get state(): S {
    return this.#state;
  }

  /** True when the machine is in any of the given states. */
  is(...states: readonly S[]): boolean {
    return states.includes(this.#state);
  }

  /** True when the table allows a move from the current state to `to`. */
  canMove(to: S): boolean {
    return this.table[this.#state].includes(to);
  }

  /** Moves to `to` if the table allows it; reports and refuses otherwise. */
  move(to: S): boolean {
    if (!this.canMove(to)) {
      if (to !== this.#state) this.reportIllegal(this.name, this.#state, to);
      return false;
    }
    this.#state = to;
    return true;
  }
}
