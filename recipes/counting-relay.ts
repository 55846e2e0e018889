// A relay through the daemon that counts the bytes passing it, for a recipe run asked to count what each command
// took in and gave out (plumb -json). Between commands on one machine the bytes never pass the daemon, so there is
// nothing to count: with counting asked, each command writes into a tap of its own (one per stream), read here and
// written on to where it was bound, and a command that reads a pipe reads a tap of its own, fed from there.
//
// A relay keeps what a pipe between two commands promises:
// - EOF: the sink is closed once every source has reached EOF and all it gave is written, so the reader sees EOF
//   when the last writer has gone.
// - SIGPIPE: once the sink's reader has gone (its write fails, or the stage meter knows the reader ended: cut()),
//   every source is closed, so a writer's next write gets SIGPIPE or EPIPE, as it would with no reader.
// - Backpressure: while the sink holds a pipe's worth not yet written, no source is read, so a writer blocks on its
//   full tap.
// - Atomic writes: each chunk read from a source is written whole, in order, one write at a time, and a read drains
//   the tap (a tap holds 64 KiB, a read takes up to 64 KiB), so writes of up to PIPE_BUF bytes that several commands
//   make into one label pipe still arrive unbroken.

import { Socket } from 'node:net';

/**
 * The largest write to a pipe that is all or nothing (POSIX PIPE_BUF on Linux). A relay that must know exactly
 * what its sink took writes pieces of this size: a piece is then either wholly in the pipe, its write done, or not
 * at all, even when the reader stops reading for good.
 */
const PIPE_BUF_BYTES = 4096;

/** Bytes a relay holds for its sink before it stops reading its sources: a pipe's worth. */
const HELD_BYTES_LIMIT = 64 * 1024;

/** One pipe a relay reads: the bytes it has read from it, and when it is done (EOF, or closed). */
export class RelaySource {
  /** Bytes read from the source so far. */
  bytes = 0;
  readonly socket: Socket;
  /** Resolves once the source is closed, at EOF or cut short. */
  readonly ended: Promise<void>;

  constructor(fd: number) {
    this.socket = new Socket({ fd, readable: true, writable: false });
    this.ended = new Promise((resolve) => this.socket.once('close', () => resolve()));
  }
}

/**
 * Where a relay writes: a pipe's write end the daemon alone holds, the relay's own (written through a socket, which
 * makes it non-blocking and waits for room), or nothing (/dev/null: counted, dropped).
 */
export type RelaySink = { pipe: number } | 'discard';

export interface RelayOptions {
  /**
   * Count exactly what the sink took, even of a write the sink's reader never lets finish (a command that stopped
   * reading but keeps its stdin open): the sink is written in PIPE_BUF pieces. Otherwise in whole chunks.
   */
  exactWritten?: boolean;
}

/** Reads every source into one sink, counting what each source gave and what the sink took. */
export class CountingRelay {
  readonly sources: readonly RelaySource[];
  /** Bytes the sink has taken; for a tap a command reads, what was delivered into its stdin. */
  written = 0;
  /** Undefined for /dev/null. */
  private readonly sink: Socket | undefined;
  private readonly pieceBytes: number;
  /** Read from the sources, not yet written; one write is in flight at a time. */
  private readonly held: Buffer[] = [];
  private heldBytes = 0;
  /** The piece being written, while a write is in flight. */
  private writing: Buffer | undefined;
  private live: number;
  private done = false;
  private readonly onCut: (() => void)[] = [];

  constructor(sourceFds: readonly number[], sink: RelaySink, options: RelayOptions = {}) {
    this.pieceBytes = options.exactWritten === true ? PIPE_BUF_BYTES : Number.MAX_SAFE_INTEGER;
    this.sink = sink === 'discard' ? undefined : new Socket({ fd: sink.pipe, readable: false, writable: true });
    // The reader has gone: the writers must learn it as they would from the pipe itself.
    this.sink?.on('error', () => this.cut());
    this.sources = sourceFds.map((fd) => new RelaySource(fd));
    this.live = this.sources.length;
    for (const source of this.sources) {
      source.socket.on('data', (chunk: Buffer) => this.take(source, chunk));
      // A read error ends that source as EOF would: what it gave has been passed on.
      source.socket.on('error', () => source.socket.destroy());
      source.socket.once('close', () => {
        this.live--;
        this.writeNext();
      });
    }
    this.writeNext();
  }

  /** Whether nothing more will pass: every source ended and all is written, or the relay was cut. */
  get finished(): boolean {
    return this.done;
  }

  /** Called once if the relay is cut: its sink's reader went, or cut() said so. */
  whenCut(callback: () => void): void {
    this.onCut.push(callback);
  }

  private take(source: RelaySource, chunk: Buffer): void {
    source.bytes += chunk.length;
    if (this.sink === undefined || this.done) return;
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes >= HELD_BYTES_LIMIT) for (const each of this.sources) each.socket.pause();
    this.writeNext();
  }

  /** Writes the next piece of what is held, if no write is in flight; ends the sink once all is written. */
  private writeNext(): void {
    const { sink } = this;
    if (sink === undefined || this.done || this.writing !== undefined) return;
    const next = this.held[0];
    if (next === undefined) {
      if (this.live === 0) {
        // Every source is done and all they gave is written: the sink's reader sees EOF once it has read it.
        this.done = true;
        sink.end();
      }
      return;
    }
    const piece = next.length <= this.pieceBytes ? next : next.subarray(0, this.pieceBytes);
    this.writing = piece;
    sink.write(piece, (error) => {
      this.writing = undefined;
      if (error !== undefined && error !== null) {
        this.cut();
        return;
      }
      // Cut meanwhile: Node reports a write the socket was destroyed under as done, whether or not it had reached
      // the pipe; cut() counted it if it had. What was held is dropped already.
      if (this.done) return;
      this.written += piece.length;
      // The piece was the start of the first chunk held.
      if (piece === next) this.held.shift();
      else this.held[0] = next.subarray(piece.length);
      this.heldBytes -= piece.length;
      if (this.heldBytes < HELD_BYTES_LIMIT) for (const source of this.sources) source.socket.resume();
      this.writeNext();
    });
  }

  /**
   * The sink's reader has gone (or the run is over): every source is closed, what they still held is dropped, and
   * whoever waits on the cut is told.
   */
  cut(): void {
    // A write in flight that libuv has wholly written (nothing left in its queue) is in the pipe: it counts. Node
    // keeps that queue's size on the socket's handle, as its own timeouts use it; without it, the write is not counted.
    if (this.writing !== undefined && !this.done && queuedBytes(this.sink) === 0) this.written += this.writing.length;
    this.writing = undefined;
    for (const source of this.sources) source.socket.destroy();
    this.held.length = 0;
    this.heldBytes = 0;
    this.done = true;
    this.sink?.destroy();
    for (const callback of this.onCut.splice(0)) callback();
  }
}

/** Bytes the socket's libuv handle has yet to write, or undefined where Node does not say. */
function queuedBytes(socket: Socket | undefined): number | undefined {
  const queued = (socket as unknown as { _handle?: { writeQueueSize?: unknown } } | undefined)?._handle?.writeQueueSize;
  return typeof queued === 'number' ? queued : undefined;
}
