// A relay through the daemon that counts the bytes passing it, for a recipe run asked to count what each command
// took in and gave out (plumb -json). Between commands on one machine the bytes never pass the daemon, so there is
// nothing to count: with counting asked, each command writes into a tap of its own (one per stream), read here and
// written on into the pipe it was bound for, and a command that reads a pipe reads a tap of its own, fed from there.
//
// A relay keeps what a pipe between two commands promises:
// - EOF: the sink is closed once every source has reached EOF and all it gave is written, so the reader sees EOF
//   when the last writer has gone.
// - SIGPIPE: when the sink's reader has gone (EPIPE), every source is closed, so a writer's next write gets SIGPIPE
//   or EPIPE, as it would writing into a pipe with no reader.
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
export const PIPE_BUF_BYTES = 4096;

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

export interface RelayOptions {
  /**
   * Count exactly what the sink took, even of a write the sink's reader never lets finish (a command that stopped
   * reading but keeps its stdin open): the sink is written in PIPE_BUF pieces. Otherwise in whole chunks.
   */
  exactWritten?: boolean;
}

/**
 * Reads every source into one sink, counting what each source gave and what the sink took. The sink is a pipe's
 * write end the daemon alone holds (made non-blocking by the socket around it), or none: bytes for /dev/null are
 * counted and dropped. The relay owns every descriptor it is given.
 */
export class CountingRelay {
  readonly sources: readonly RelaySource[];
  /** Bytes the sink has taken; for a tap a command reads, what was delivered into its stdin. */
  written = 0;
  private readonly sink: Socket | undefined;
  private readonly pieceBytes: number;
  /** Read from the sources, not yet written; one write is in flight at a time. */
  private readonly held: Buffer[] = [];
  private heldBytes = 0;
  private writing = false;
  private live: number;

  constructor(sourceFds: readonly number[], sinkFd: number | undefined, options: RelayOptions = {}) {
    this.sink = sinkFd === undefined ? undefined : new Socket({ fd: sinkFd, readable: false, writable: true });
    this.pieceBytes = options.exactWritten === true ? PIPE_BUF_BYTES : Number.MAX_SAFE_INTEGER;
    this.sources = sourceFds.map((fd) => new RelaySource(fd));
    this.live = this.sources.length;
    // The reader has gone: the writers must learn it as they would from the pipe itself.
    this.sink?.on('error', () => this.cut());
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

  private take(source: RelaySource, chunk: Buffer): void {
    source.bytes += chunk.length;
    if (this.sink === undefined || this.sink.destroyed) return;
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes >= HELD_BYTES_LIMIT) for (const each of this.sources) each.socket.pause();
    this.writeNext();
  }

  /** Writes the next piece of what is held, if no write is in flight; ends the sink once all is written. */
  private writeNext(): void {
    const { sink } = this;
    if (sink === undefined || sink.destroyed || this.writing) return;
    const next = this.held[0];
    if (next === undefined) {
      // Every source is done and all they gave is written: the sink's reader sees EOF once it has read it.
      if (this.live === 0 && !sink.writableEnded) sink.end();
      return;
    }
    const piece = next.length <= this.pieceBytes ? next : next.subarray(0, this.pieceBytes);
    if (piece === next) this.held.shift();
    else this.held[0] = next.subarray(piece.length);
    this.heldBytes -= piece.length;
    this.writing = true;
    sink.write(piece, (error) => {
      this.writing = false;
      if (error !== undefined && error !== null) return;
      this.written += piece.length;
      if (this.heldBytes < HELD_BYTES_LIMIT) for (const source of this.sources) source.socket.resume();
      this.writeNext();
    });
  }

  /** The sink's reader has gone: every source is closed, and what they still held is dropped. */
  private cut(): void {
    for (const source of this.sources) source.socket.destroy();
    this.held.length = 0;
    this.heldBytes = 0;
    this.sink?.destroy();
  }

  /** Closes every source and the sink at once (the run is over): nothing more passes. */
  destroy(): void {
    this.cut();
  }
}
