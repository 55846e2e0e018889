// One post-auth connection's model of its streams (ids this side opened, their EOF and bytes sent, ids seen closed),
// and what every generator of inputs builds on: the Input shape, the DATA payload, a field decode that never throws.

import { decodeFields, type FieldList } from '../../protocol/fields.js';
import { MAX_STREAM_ID, PacketType, STREAM_ID_BYTES } from '../../protocol/wire.js';
import type { Prng } from './prng.js';

/** Stream ids remembered after they closed, for packets to closed streams. */
const GONE_STREAMS_KEPT = 64;

export interface Input {
  kind: string;
  type: number;
  payload: Buffer;
}

export interface StreamState {
  eof: boolean;
  /** Bytes sent on it; the daemon does not read a stream no Start claimed, so this stays within its window. */
  sent: number;
  /** Named in a Start already: it may be claimed or dropped by the daemon by now. */
  named: boolean;
}

/** Field values for stream ids: the edges of the id range, and spellings the codec refuses. */
export const ODD_IDS = ['0', String(MAX_STREAM_ID), String(MAX_STREAM_ID + 1), '2', '-1', '01', '1.5', '', 'x', '99999999999999999999'] as const;

/** The fields of a payload, or undefined where the codec refuses it (such an input would end the connection). */
export function tryDecodeFields(body: Buffer): FieldList | undefined {
  try {
    return decodeFields(body);
  } catch {
    return undefined;
  }
}

/** A StreamData input: the stream id, then the bytes. */
export function dataInput(kind: string, id: number, bytes: Buffer): Input {
  const payload = Buffer.allocUnsafe(STREAM_ID_BYTES + bytes.length);
  payload.writeUInt32BE(id >>> 0, 0);
  bytes.copy(payload, STREAM_ID_BYTES);
  return { kind, type: PacketType.StreamData, payload };
}

/** The streams this side opened and still has open, and those it closed (a few, the latest). */
export class StreamModel {
  /** The id this side opens next (odd: a client's). */
  nextId = 1;
  private readonly open = new Map<number, StreamState>();
  private readonly gone: number[] = [];

  constructor(
    private readonly rng: Prng,
    private readonly initialWindowBytes: number,
  ) {}

  get size(): number {
    return this.open.size;
  }

  get(id: number): StreamState | undefined {
    return this.open.get(id);
  }

  /** The stream nextId is open now; nextId moves on to the one after. */
  opened(): void {
    this.open.set(this.nextId, { eof: false, sent: 0, named: false });
    this.nextId += 2;
  }

  /** The stream is closed: remembered among the gone if it was open. */
  close(id: number): void {
    if (this.open.delete(id)) this.forget(id);
  }

  private forget(id: number): void {
    this.gone.push(id);
    if (this.gone.length > GONE_STREAMS_KEPT) this.gone.shift();
  }

  /** The ids of the open streams that pass the filter, in the order they were opened. */
  openIds(filter: (state: StreamState) => boolean = () => true): number[] {
    return [...this.open.entries()].filter(([, state]) => filter(state)).map(([id]) => id);
  }

  /** A stream id of one still open on this side, or undefined. */
  someOpen(filter?: (state: StreamState) => boolean): number | undefined {
    const ids = this.openIds(filter);
    return ids.length === 0 ? undefined : this.rng.pick(ids);
  }

  /** A stream id this side opened and saw closed: the daemon ignores packets for it. */
  someGone(): number | undefined {
    return this.gone.length === 0 ? undefined : this.rng.pick(this.gone);
  }

  /** An odd id never opened, or an even one the daemon never opened: a packet for it ends the connection. */
  unknownId(): number {
    return this.rng.chance(0.5) ? this.nextId + 2 * this.rng.between(0, 1000) : 2 * this.rng.between(1000, 100_000);
  }

  /** Bytes the daemon's window for this stream still takes. */
  windowLeft(state: StreamState): number {
    return this.initialWindowBytes - state.sent;
  }
}
