// What each stream of a run has carried, by name: plumb's stdin, stdout and stderr, and each named pipe and socket
// (all rounds or connections of one path together). The mux tells the meter of every stream as it opens; the
// meter reads the streams' own counters when asked, so counting costs nothing per byte here. Used by -progress and
// by the -json report.

import type { Entry } from '../protocol/fields.js';
import type { MuxStream } from '../protocol/mux.js';
import { Field, StreamPurpose } from '../protocol/wire.js';
import type { EndpointOptions } from './endpoints.js';

/** One named stream's totals. `bytesOut` went from here to the machine, `bytesIn` came from it. */
export interface StreamTotals {
  /** `stdin`, `stdout`, `stderr`, `infifo PATH`, `outfifo PATH`, `socket PATH`, `local-socket PATH`, or `edge N`. */
  name: string;
  bytesOut: number;
  bytesIn: number;
  /** Streams under this name so far: rounds of a named pipe, connections of a socket; 1 for stdio. */
  streams: number;
  /** Of those, how many are still open. */
  open: number;
  /** When the first opened and, once none is open, when the last closed (ms since 1970-01-01 UTC). */
  startedAt: number;
  endedAt?: number;
}

interface Tally {
  name: string;
  /** The open streams, each with when one of its halves last ended (a stream plumb only writes never ends its other). */
  live: Map<MuxStream, number | undefined>;
  /** What closed streams of this name carried. */
  doneOut: number;
  doneIn: number;
  streams: number;
  startedAt: number;
  endedAt?: number;
}

export class StreamMeter {
  private readonly tallies = new Map<string, Tally>();

  /** `endpoints` names the named pipes and sockets by their local paths, as the command line gave them. */
  constructor(private readonly endpoints: Readonly<EndpointOptions> | undefined, private readonly prefix = '') {}

  /** The mux's observeStream: counts the stream under its name until it closes. */
  readonly observe = (stream: MuxStream, fields: readonly Entry[]): void => {
    const name = `${this.prefix}${this.nameOf(fields)}`;
    let tally = this.tallies.get(name);
    if (tally === undefined) {
      tally = { name, live: new Map(), doneOut: 0, doneIn: 0, streams: 0, startedAt: stream.openedAt };
      this.tallies.set(name, tally);
    }
    const counted = tally;
    counted.streams++;
    counted.live.set(stream, undefined);
    delete counted.endedAt;
    const halfEnded = (): void => {
      if (counted.live.has(stream)) counted.live.set(stream, Date.now());
    };
    stream.once('finish', halfEnded);
    stream.once('end', halfEnded);
    stream.once('close', () => this.retire(counted, stream, Date.now()));
  };

  /**
   * The run is over: every stream still counted as open is done, ended when its last half did (stdin, which plumb
   * only writes, when its EOF went), or now.
   */
  settle(): void {
    const now = Date.now();
    for (const tally of this.tallies.values()) for (const [stream, endedAt] of [...tally.live]) this.retire(tally, stream, endedAt ?? now);
  }

  /** Every name's totals now, in the order the names first appeared. */
  totals(): StreamTotals[] {
    return [...this.tallies.values()].map((tally) => {
      let bytesOut = tally.doneOut;
      let bytesIn = tally.doneIn;
      for (const stream of tally.live.keys()) {
        bytesOut += stream.bytesSent;
        bytesIn += stream.bytesReceived;
      }
      return {
        name: tally.name,
        bytesOut,
        bytesIn,
        streams: tally.streams,
        open: tally.live.size,
        startedAt: tally.startedAt,
        ...(tally.endedAt === undefined ? {} : { endedAt: tally.endedAt }),
      };
    });
  }

  private retire(tally: Tally, stream: MuxStream, endedAt: number): void {
    if (!tally.live.delete(stream)) return;
    tally.doneOut += stream.bytesSent;
    tally.doneIn += stream.bytesReceived;
    if (tally.live.size === 0) tally.endedAt = Math.max(endedAt, tally.endedAt ?? 0);
  }

  private nameOf(fields: readonly Entry[]): string {
    const field = (name: string): string | undefined => fields.find(([entry]) => entry === name)?.[1];
    const purpose = field(Field.purpose);
    const index = Number(field(Field.endpoint) ?? -1);
    const pathOf = (paths: readonly string[] | undefined): string => paths?.[index] ?? `#${index}`;
    switch (purpose) {
      case StreamPurpose.InFifo:
        return `infifo ${pathOf(this.endpoints?.inFifos)}`;
      case StreamPurpose.OutFifo:
        return `outfifo ${pathOf(this.endpoints?.outFifos)}`;
      case StreamPurpose.ListenSocket:
        return `socket ${pathOf(this.endpoints?.sockets.map((pair) => pair.local))}`;
      case StreamPurpose.ConnectSocket:
        return `local-socket ${pathOf(this.endpoints?.localSockets.map((pair) => pair.local))}`;
      case StreamPurpose.Edge:
        return `edge ${field(Field.edge) ?? '?'}`;
      default:
        return purpose ?? 'stream';
    }
  }
}
