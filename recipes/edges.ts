// The ends of a recipe's streams that cross machines (RecipePlan.edges), as one machine's run holds them. An outlet
// reads the pipe that local commands write into and hands the bytes on; an inlet writes bytes that arrived into the
// pipe a local command reads. Each keeps a SHA-256 and a count of the bytes it passed, so the two machines can show
// the stream arrived whole: the sender's digest is over what it read from its pipe, the receiver's over what it
// wrote into its own, and any byte lost, added or changed between the two commands makes them differ.

import { closeSync, constants as fs, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { copiesWrittenBytes, PooledFdReader } from '../bridges/pooled-reader.js';
import { RunningDigest } from '../bridges/running-digest.js';

/** What passed one end of an edge: complete only when its stream ended normally (EOF), not cut short. */
export interface EdgeTally {
  edge: number;
  direction: 'out' | 'in';
  bytes: number;
  /** Lower-case hex SHA-256 of the bytes, in order. */
  sha256: string;
  complete: boolean;
}

/** Where an edge leaving this machine sends its bytes, and who hears its tally just before that stream ends. */
export interface EdgeOutput {
  stream: Writable;
  /** Called once EOF was read from the pipe, before `stream` is ended: the digest can travel with the end. */
  readAll?: (tally: EdgeTally) => void;
}

/** Passes chunks through unchanged, hashing and counting them; tells the totals once the input has ended. */
class Tallying extends Transform {
  readonly running = new RunningDigest();

  constructor(private readonly atEnd: (bytes: number, sha256: string) => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.running.add(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.atEnd(this.running.bytes, this.running.digest());
    callback();
  }
}

/** The daemon's reading end of the pipe local commands write an outgoing edge into (the only reader of that pipe). */
export class EdgeOutlet {
  private socket: Socket | undefined;
  private closed = false;

  constructor(
    readonly edge: number,
    private readonly readFd: number,
  ) {}

  /**
   * Reads the pipe into `output.stream` until EOF, then ends it. Resolves with the tally once the stream has taken
   * everything, or, cut short (the stream failed, or destroy()), with what had passed by then.
   */
  async pipeTo(output: EdgeOutput): Promise<EdgeTally> {
    const tally: EdgeTally = { edge: this.edge, direction: 'out', bytes: 0, sha256: '', complete: false };
    if (this.closed) return tally;
    if (copiesWrittenBytes(output.stream)) return this.pipePooled(output, tally);
    const socket = new Socket({ fd: this.readFd, readable: true, writable: false });
    this.socket = socket;
    const tallying = new Tallying((bytes, sha256) => {
      Object.assign(tally, { bytes, sha256, complete: true });
      output.readAll?.({ ...tally });
    });
    try {
      await pipeline(socket, tallying, output.stream);
    } catch {
      tally.complete = false;
      tally.bytes = tallying.running.bytes;
    }
    return tally;
  }

  /**
   * The bulk path, for a sink that copies what it is given (a mux stream): the pipe read into a ring of reused
   * buffers (bridges/pooled-reader.ts), each chunk hashed where it lies and handed on, with no stream in between.
   */
  private async pipePooled(output: EdgeOutput, tally: EdgeTally): Promise<EdgeTally> {
    const { stream } = output;
    const running = new RunningDigest();
    const reader = new PooledFdReader(this.readFd, (chunk, giveBack) => {
      running.add(chunk);
      stream.write(chunk, giveBack);
    });
    this.socket = reader.socket;
    reader.socket.on('end', () => {
      Object.assign(tally, { bytes: running.bytes, sha256: running.digest(), complete: true });
      output.readAll?.({ ...tally });
      stream.end();
    });
    reader.socket.on('error', (error: Error) => stream.destroy(error));
    try {
      await finished(stream, { readable: false });
    } catch {
      Object.assign(tally, { bytes: running.bytes, complete: false });
      reader.socket.destroy();
    }
    return tally;
  }

  /** Stops reading: the commands' next write gets EPIPE or SIGPIPE once no one else holds the pipe. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.socket !== undefined) this.socket.destroy();
    else closeSync(this.readFd);
  }
}

/**
 * A write end of its own into the pipe an incoming edge feeds: the pipe's file opened again through /proc, so it is
 * a separate open file that can be non-blocking for the daemon while the commands' ends stay blocking, and so that
 * several edges and local commands can write into one label pipe, its reader seeing EOF only once all have closed.
 */
export function openEdgeInlet(edge: number, pipeWriteFd: number): EdgeInlet {
  // libuv opens every file close-on-exec: the commands started later never inherit this end.
  return new EdgeInlet(edge, openSync(`/proc/self/fd/${pipeWriteFd}`, fs.O_WRONLY | fs.O_NONBLOCK));
}

/** The daemon's write end for one incoming edge. */
export class EdgeInlet {
  private socket: Socket | undefined;
  private closed = false;

  constructor(
    readonly edge: number,
    private readonly writeFd: number,
  ) {}

  /**
   * Writes `input` into the pipe until it ends, then closes this end. Resolves with the tally once every byte is in
   * the pipe, or, cut short (the reader left, the input failed, or destroy()), with what had passed by then.
   */
  async deliver(input: Readable): Promise<EdgeTally> {
    const tally: EdgeTally = { edge: this.edge, direction: 'in', bytes: 0, sha256: '', complete: false };
    if (this.closed) {
      input.destroy();
      return tally;
    }
    const socket = new Socket({ fd: this.writeFd, readable: false, writable: true });
    this.socket = socket;
    // Hashed as each chunk is written, with no stream in between: this is the bulk path into the reader's pipe.
    const running = new RunningDigest();
    input.on('data', (chunk: Buffer) => {
      running.add(chunk);
      if (!socket.write(chunk)) input.pause();
    });
    socket.on('drain', () => input.resume());
    input.once('end', () => socket.end());
    // The reader left (EPIPE) or the input failed: the other side goes too, as with a pipe between two commands.
    input.once('error', (error: Error) => socket.destroy(error));
    socket.once('error', (error: Error) => input.destroy(error));
    socket.once('close', () => {
      if (!input.readableEnded) input.destroy();
    });
    // An input destroyed without an error (its connection went) would leave this end open, and the reader waiting.
    input.once('close', () => {
      if (!input.readableEnded) socket.destroy();
    });
    try {
      await Promise.all([finished(input, { writable: false }), finished(socket, { readable: false })]);
      Object.assign(tally, { sha256: running.digest(), complete: true });
    } catch {
      // Cut short: what passed is counted, and no digest is given.
    }
    tally.bytes = running.bytes;
    return tally;
  }

  /** Closes this end without delivering: the reader sees EOF once the pipe's other writers are gone. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.socket !== undefined) this.socket.destroy();
    else closeSync(this.writeFd);
  }
}
