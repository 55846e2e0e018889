// Reading a pipe (or any stream descriptor) into a small ring of reused buffers instead of a new buffer per read.
// Node's ordinary reads allocate 64 KiB for each one, and on a bulk path those allocations, counted as external
// memory, are what drives V8 into repeated full collections. Each chunk read here goes to the sink as a slice of a
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

export interface PooledReader {
  /** The socket over the descriptor: its 'end', 'error' and 'close' are the reader's; destroy() stops it. */
  readonly socket: Socket;
  /** Buffers in the ring now: neither out with the sink nor the one the socket keeps for its next read. */
  readonly freeBuffers: number;
}

/**
 * Reads `fd` (a pipe, FIFO or socket; the socket takes ownership of it) and writes each chunk to `sink`, ending
 * the sink at EOF. A read error destroys the sink with it.
 */
export function pipeFdPooled(fd: number, sink: CopyingWritable, buffers = POOLED_READ_BUFFERS, bufferBytes = POOLED_READ_BYTES): PooledReader {
  const free: Buffer[] = Array.from({ length: buffers }, () => Buffer.allocUnsafeSlow(bufferBytes));
  let stopped = false;
  const resumeAt = Math.min(RESUME_AT_FREE, buffers - 1);
  const giveBack = (buffer: Buffer): void => {
    free.push(buffer);
    if (stopped && free.length >= resumeAt && !socket.destroyed) {
      stopped = false;
      socket.resume();
    }
  };
  // Node honours onread for a socket it is given a descriptor for, though its types list the option for connect() only.
  const options: SocketConstructorOpts & ConnectOpts = {
    fd,
    readable: true,
    writable: false,
    onread: {
      // Called once at the start and once after every read: there is always one to take (see the callback).
      buffer: () => free.pop() as Buffer,
      callback: (bytes: number, buffer: Uint8Array): boolean => {
        const taken = buffer as Buffer;
        sink.write(taken.subarray(0, bytes), () => giveBack(taken));
        // The next read's buffer is taken right after this returns; with one left, that one is the last, so reading
        // stops until enough come back.
        if (free.length > 1) return true;
        stopped = true;
        return false;
      },
    },
  };
  const socket = new Socket(options);
  socket.on('end', () => sink.end());
  socket.on('error', (error: Error) => sink.destroy(error));
  return {
    socket,
    get freeBuffers() {
      return free.length;
    },
  };
}
