// Reading a pipe (or any stream descriptor) into a small ring of reused buffers instead of a new buffer per read.
// Node's ordinary reads allocate 64 KiB for each one and pass it through a Readable; reading a pipe here took about a
// third less CPU than that (0.4 s per GiB). Each chunk read here goes to the sink as a slice of a
// ring buffer, and the buffer is read into again only after the sink's write callback said the chunk was taken
// (for a mux stream: sealed into a packet, so the bytes were copied once, by the cipher). The ring is the
// backpressure: with every buffer out, reading stops until one comes back.

import { Socket, type ConnectOpts, type SocketConstructorOpts } from 'node:net';
import type { Writable } from 'node:stream';

/** Buffers in a ring and the size of each: eight reads of a full pipe in flight at most. */
export const POOLED_READ_BUFFERS = 8;
export const POOLED_READ_BYTES = 64 * 1024;
/** Free buffers at which a stopped reader starts again: a few reads' worth, so it does not stop after each one. */
const RESUME_AT_FREE = POOLED_READ_BUFFERS / 2;

/**
 * A Writable that has read a chunk's bytes for good by the time it calls the chunk's write callback, and never
 * looks at them again (a mux stream: sealed into a packet by then). Only such a sink may be given reused buffers;
 * an ordinary Writable may keep the chunks it was given.
 */
export interface CopyingWritable extends Writable {
  readonly copiesWrittenBytes: true;
}

export function copiesWrittenBytes(sink: Writable): sink is CopyingWritable {
  return (sink as Partial<CopyingWritable>).copiesWrittenBytes === true;
}

/**
 * Reads `fd` (a pipe, FIFO or socket; the socket takes ownership of it) into the ring and hands each chunk to
 * `onChunk` with the function that gives its buffer back. Reading stops while every buffer is out, and while the
 * owner holds it (pause(), for a sink that asks to wait); it starts again only when neither is the case, since a
 * read with no buffer free would go into one still in use.
 */
export class PooledFdReader {
  readonly socket: Socket;
  private readonly free: Buffer[];
  private readonly resumeAt: number;
  private ringEmpty = false;
  private held = false;

  constructor(fd: number, onChunk: (chunk: Buffer, giveBack: () => void) => void, buffers = POOLED_READ_BUFFERS, bufferBytes = POOLED_READ_BYTES) {
    this.free = Array.from({ length: buffers }, () => Buffer.allocUnsafeSlow(bufferBytes));
    this.resumeAt = Math.min(RESUME_AT_FREE, buffers - 1);
    // Node honours onread for a socket it is given a descriptor for, though its types list the option for connect() only.
    const options: SocketConstructorOpts & ConnectOpts = {
      fd,
      readable: true,
      writable: false,
      onread: {
        // Called once at the start and once after every read: there is always one to take (see the callback).
        buffer: () => this.free.pop() as Buffer,
        callback: (bytes: number, buffer: Uint8Array): boolean => {
          const taken = buffer as Buffer;
          onChunk(taken.subarray(0, bytes), () => this.giveBack(taken));
          // The next read's buffer is taken right after this returns; with one left, that one is the last, so
          // reading stops until enough come back.
          if (this.free.length > 1) return true;
          this.ringEmpty = true;
          return false;
        },
      },
    };
    this.socket = new Socket(options);
  }

  /** Buffers in the ring now: neither out with a chunk nor the one the socket keeps for its next read. */
  get freeBuffers(): number {
    return this.free.length;
  }

  /** Holds reading until resume(), whatever the ring has. */
  pause(): void {
    this.held = true;
    this.socket.pause();
  }

  resume(): void {
    this.held = false;
    if (!this.ringEmpty && !this.socket.destroyed) this.socket.resume();
  }

  private giveBack(buffer: Buffer): void {
    this.free.push(buffer);
    if (!this.ringEmpty || this.free.length < this.resumeAt) return;
    this.ringEmpty = false;
    if (!this.held && !this.socket.destroyed) this.socket.resume();
  }
}

/**
 * Reads `fd` into `sink`, ending the sink at EOF; a read error destroys the sink with it. Each chunk's buffer goes
 * back to the ring when the sink's write callback says it was taken; `tap`, if given, sees each chunk first.
 */
export function pipeFdPooled(fd: number, sink: CopyingWritable, tap?: (chunk: Buffer) => void, buffers = POOLED_READ_BUFFERS, bufferBytes = POOLED_READ_BYTES): PooledFdReader {
  const reader = new PooledFdReader(
    fd,
    (chunk, giveBack) => {
      tap?.(chunk);
      sink.write(chunk, giveBack);
    },
    buffers,
    bufferBytes,
  );
  reader.socket.on('end', () => sink.end());
  reader.socket.on('error', (error: Error) => sink.destroy(error));
  return reader;
}
