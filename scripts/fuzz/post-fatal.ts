// The inputs meant to end a post-auth connection: unknown and daemon-only packet types, payloads the codec refuses,
// stream packets for the wrong id, past the window or after EOF, bad values, and a packet over maxPacketBytes.

import { isKnownPacketType, Field, MAX_STREAM_ID, PacketType, STREAM_ID_BYTES } from '../../protocol/wire.js';
import { fuzzErrorMessage, mutateBytes, rawFields, type RawEntry } from './mutate.js';
import type { PostAuthTarget } from './post-target.js';
import { dataInput, ODD_IDS, tryDecodeFields, type Input, type StreamModel, type StreamState } from './post-streams.js';
import type { Prng } from './prng.js';

/** Draws the one input that should end a connection, against the connection's stream model. */
export class FatalInputs {
  constructor(
    private readonly rng: Prng,
    private readonly streams: StreamModel,
    private readonly target: PostAuthTarget,
  ) {}

  /** The next fatal input, drawn by weight. */
  next(): Input {
    const rng = this.rng;
    for (;;) {
      const input = rng.weighted<() => Input | undefined>([
        [3, () => this.unknownType()],
        [1, () => ({ kind: 'fatal/handshake-type', type: rng.pick([PacketType.Hello, PacketType.KeyExchange, 0, 19]), payload: rawFields([]) })],
        [2, () => ({ kind: 'fatal/daemon-only-type', type: rng.pick([PacketType.Exit, PacketType.StageEnd, PacketType.Error]), payload: rawFields([[Field.code, rng.pick(['0', 'NP_BAD_TAG', 'NP_NOPE'])], [Field.message, fuzzErrorMessage(rng)]]) })],
        [2, () => ({ kind: 'fatal/empty-payload', type: rng.pick([PacketType.Start, PacketType.Ping, PacketType.StreamOpen, PacketType.StreamData, PacketType.StreamWindow, PacketType.StreamEof, PacketType.StreamClose, PacketType.Signal, PacketType.Resize, PacketType.MintKey]), payload: Buffer.alloc(0) })],
        [4, () => this.undecodable()],
        [3, () => this.badStreamOpen()],
        [3, () => this.badStreamData()],
        [2, () => this.badStreamWindow()],
        [2, () => this.badStreamEofOrClose()],
        [1, () => ({ kind: 'fatal/signal-missing', type: PacketType.Signal, payload: rawFields(rng.chance(0.5) ? [] : [[Field.signal, 'SIGINT'], [Field.signal, 'SIGINT']]) })],
        [1, () => ({ kind: 'fatal/resize-out-of-range', type: PacketType.Resize, payload: rawFields([[Field.cols, rng.pick(['0', '10001', '', 'x'])], [Field.rows, '24']]) })],
        [1, () => ({ kind: 'fatal/ping-reply-twice', type: PacketType.Ping, payload: rawFields([[Field.reply, '1'], [Field.reply, '1']]) })],
        [1, () => ({ kind: 'fatal/goodbye', type: PacketType.Goodbye, payload: rawFields(rng.chance(0.5) ? [] : [['unknown-field', 'x']]) })],
        // A Rekey this side does not follow: the daemon ratchets, and the next packet fails its tag.
        [1, () => ({ kind: 'fatal/rekey-unfollowed', type: PacketType.Rekey, payload: rawFields([]) })],
        [1, () => this.oversized()],
      ])();
      if (input !== undefined) return input;
    }
  }

  private unknownType(): Input {
    const rng = this.rng;
    let type: number;
    do type = rng.between(20, 255);
    while (isKnownPacketType(type));
    return { kind: 'fatal/unknown-type', type, payload: rng.chance(0.5) ? rawFields([]) : rng.bytes(rng.size(256)) };
  }

  /** A payload of a fields type that the codec refuses: bytes mutated until it does. */
  private undecodable(): Input | undefined {
    const rng = this.rng;
    const type = rng.pick([PacketType.Start, PacketType.StreamOpen, PacketType.StreamWindow, PacketType.StreamEof, PacketType.StreamClose, PacketType.Signal, PacketType.Resize, PacketType.MintKey, PacketType.Ping]);
    const base = rawFields([[Field.stream, '1'], [Field.kind, 'exec'], [Field.arg, 'true'], [Field.signal, 'SIGINT']]);
    const payload = mutateBytes(base, rng).bytes;
    return tryDecodeFields(payload) === undefined ? { kind: 'fatal/undecodable', type, payload } : undefined;
  }

  private badStreamOpen(): Input {
    const rng = this.rng;
    // Below the next id is a reused one; with none opened yet, that is an even (daemon's) id.
    const reused = this.streams.nextId > 1 ? this.streams.nextId - 2 : 2;
    const id = rng.pick([String(this.streams.nextId + 1), String(reused), '0', String(MAX_STREAM_ID + 2), 'x', '01', '']);
    const entries: RawEntry[] = rng.chance(0.1) ? [] : [[Field.stream, id]];
    // Repeated: the second copy alone would be a good open.
    if (entries.length > 0 && rng.chance(0.2)) entries.push([Field.stream, String(this.streams.nextId)]);
    return { kind: 'fatal/stream-open', type: PacketType.StreamOpen, payload: rawFields(entries) };
  }

  private badStreamData(): Input {
    const rng = this.rng;
    const variant = rng.pick(['unknown-id', 'short', 'over-window', 'after-eof'] as const);
    switch (variant) {
      case 'unknown-id':
        return dataInput('fatal/stream-data-unknown', this.streams.unknownId(), rng.bytes(rng.size(64)));
      case 'short':
        return { kind: 'fatal/stream-data-short', type: PacketType.StreamData, payload: rng.bytes(rng.below(STREAM_ID_BYTES)) };
      case 'over-window': {
        const id = this.streams.someOpen((state) => !state.eof);
        if (id === undefined) return dataInput('fatal/stream-data-unknown', this.streams.unknownId(), Buffer.alloc(1));
        const state = this.streams.get(id) as StreamState;
        return dataInput('fatal/stream-data-over-window', id, Buffer.alloc(this.streams.windowLeft(state) + 1));
      }
      case 'after-eof': {
        const id = this.streams.someOpen((state) => state.eof);
        return id === undefined ? dataInput('fatal/stream-data-unknown', this.streams.unknownId(), Buffer.alloc(1)) : dataInput('fatal/stream-data-after-eof', id, Buffer.from('late'));
      }
    }
  }

  private badStreamWindow(): Input {
    const rng = this.rng;
    const id = this.streams.someOpen() ?? 1;
    const entries: RawEntry[] = rng.chance(0.3)
      ? [[Field.stream, String(this.streams.unknownId())], [Field.credit, '1']]
      : [[Field.stream, String(id)], [Field.credit, rng.pick(['0', String(2 ** 31 + 1), '-1', '', 'x', '99999999999999999999'])]];
    return { kind: 'fatal/stream-window', type: PacketType.StreamWindow, payload: rawFields(entries) };
  }

  private badStreamEofOrClose(): Input {
    const rng = this.rng;
    const eofTwice = this.streams.someOpen((state) => state.eof);
    if (eofTwice !== undefined && rng.chance(0.5)) return { kind: 'fatal/stream-eof-twice', type: PacketType.StreamEof, payload: rawFields([[Field.stream, String(eofTwice)]]) };
    const type = rng.pick([PacketType.StreamEof, PacketType.StreamClose]);
    return { kind: 'fatal/stream-end-unknown', type, payload: rawFields([[Field.stream, rng.chance(0.5) ? String(this.streams.unknownId()) : rng.pick(ODD_IDS)]]) };
  }

  /** A sealed packet larger than the daemon's maxPacketBytes: refused from its header. */
  private oversized(): Input {
    return dataInput('fatal/oversized', 1, Buffer.alloc(this.target.maxPacketBytes));
  }
}
