// How a session runs what a Start asked for, whatever it is (a command, a recipe, a command on a terminal): the
// Runner contract the session drives, and what a Start readies for it. Runners touch processes and streams, never
// wire bytes; the session alone answers the client.

import type { FieldList } from '../protocol/fields.js';
import type { Mux, MuxStream } from '../protocol/mux.js';
import type { EdgeProgress, EdgeReport, StreamDigest } from '../protocol/multi-host.js';
import type { ExitStatus, ForwardableSignal, MintedKey, MintRequest, StageBytes, StageEnd, StartRequest } from '../protocol/session.js';

/** The three streams the client opened for a Start: the command's (or the recipe's) stdin, stdout and stderr. */
export interface SessionStreams {
  stdin: MuxStream;
  stdout: MuxStream;
  stderr: MuxStream;
}

export interface Runner {
  /**
   * Starts on the streams. Calls `started` the moment it runs, before it touches the streams; rejects (the
   * request's refusal) without having touched them when it cannot start.
   */
  start(streams: SessionStreams, started: () => void): Promise<void>;
  /** Forwards a signal to what runs. */
  signal(signal: ForwardableSignal): void;
  /** A terminal's new size; ignored by runners without one. */
  resize(cols: number, rows: number): void;
  /**
   * Ends every process it started (SIGTERM, then SIGKILL after the grace period), also those left behind after
   * it ended; resolves when none is left. `reason` is logged; undefined: the session is simply over.
   */
  abort(reason?: string): Promise<void>;
  /** Settles once it has ended and its output is out: the status Exit reports. */
  readonly outcome: Promise<ExitStatus>;
}

/** The named pipes and sockets a Start replicates, served beside the runner (daemon/endpoints.ts). */
export interface SessionEndpoints {
  /** Takes a stream the client opened for one of them; false: not one of theirs. */
  route(stream: MuxStream, fields: FieldList): boolean;
  /** Resolves when every out-FIFO round has gone out. */
  flush(): Promise<void>;
  close(): void;
}

/** What a Start readied: the runner, and the endpoints it serves. */
export interface Launch {
  runner: Runner;
  endpoints: SessionEndpoints;
}

export interface LaunchContext {
  /** The connection's mux: endpoints open their streams on it. */
  mux: Mux;
  /** True once the connection has gone: the launch is refused at its next step. */
  cancelled: () => boolean;
  /** A recipe command's end, to be told to the client. */
  stageEnded: (end: StageEnd) => void;
  /** A recipe command's counts, to be told to the client that asked for them (count-bytes=1). */
  stageBytes?: (bytes: StageBytes) => void;
  /** A part's edge end, to be told to the controller (PROTOCOL.md 7.8). */
  edgeReport?: (report: EdgeReport) => void;
  /** How much of an edge read here has arrived, to be told to a controller showing progress (EdgeProgress). */
  edgeProgress?: (progress: EdgeProgress) => void;
  /** A part's count and digest of plumb's stdin or stdout, to be told to the controller before Exit. */
  streamDigest?: (digest: StreamDigest) => void;
}

/** Turns a session's requests into runners (and one-time keys); the policy behind them is its own. */
export interface Launcher {
  /** The refusals that need nothing looked up, thrown at once. */
  check(request: StartRequest): void;
  /** Checks the request and readies everything it needs; rejects with the refusal. */
  launch(request: StartRequest, context: LaunchContext): Promise<Launch>;
  /** Mints a one-time key; undefined: this client may not. */
  readonly mint: ((request: MintRequest, cancelled: () => boolean) => Promise<MintedKey>) | undefined;
}
