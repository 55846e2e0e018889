// A TCP connection held to a byte rate in each direction (plumb -limit-rate, like rsync --bwlimit): what is sent
// waits its turn before it reaches the socket, and once what arrived is ahead of the rate the socket is not read
// until the rate has caught up, so TCP's own flow control holds the daemon back. The encrypted connection runs on it
// as on the socket itself.

import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

/** How far the pace may fall behind and then catch up at once: a short burst, not a long saving. */
const BURST_MS = 50;

/** Spaces bytes out at `bytesPerSecond`: a clock of when the bytes so far may have passed. */
export class Pacer {
  private due = 0;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Counts `bytes` as passing now; returns how many milliseconds to wait before anything more may pass. */
  take(bytes: number): number {
    const now = this.now();
    this.due = Math.max(this.due, now - BURST_MS) + (bytes * 1000) / this.bytesPerSecond;
    return Math.max(0, this.due - now);
  }
}

export class PacedTransport extends Duplex {
  private readonly outbound: Pacer;
  private readonly inbound: Pacer;
  /** The reader wants more (its last push was taken). */
  private wanted = true;
  /** Reading waits for the rate until this timer fires. */
  private holding: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    bytesPerSecond: number,
  ) {
    super({ allowHalfOpen: true });
    this.outbound = new Pacer(bytesPerSecond);
    this.inbound = new Pacer(bytesPerSecond);
    socket.on('data', (chunk: Buffer) => this.arrived(chunk));
    socket.on('end', () => this.push(null));
    socket.on('error', (error: Error) => this.destroy(error));
    socket.on('close', () => this.destroy());
  }

  private arrived(chunk: Buffer): void {
    const wait = this.inbound.take(chunk.length);
    this.wanted = this.push(chunk);
    if (wait > 0) {
      this.socket.pause();
      this.holding ??= setTimeout(() => {
        this.holding = undefined;
        if (this.wanted) this.socket.resume();
      }, wait);
    } else if (!this.wanted) {
      this.socket.pause();
    }
  }

  override _read(): void {
    this.wanted = true;
    if (this.holding === undefined) this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const send = (): void => {
      if (this.socket.destroyed) {
        callback(new Error('connection closed'));
        return;
      }
      if (this.socket.write(chunk)) callback();
      else this.socket.once('drain', () => callback());
    };
    const wait = this.outbound.take(chunk.length);
    if (wait > 0) setTimeout(send, wait);
    else send();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.holding !== undefined) clearTimeout(this.holding);
    this.socket.destroy();
    callback(error);
  }
}
