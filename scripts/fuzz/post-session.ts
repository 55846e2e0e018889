// One authenticated post-auth connection: survivable inputs go in batches, each closed by an empty Start whose
// refusal confirms the batch was read; at the end a fatal input goes alone, once all before it is confirmed.

import type { SecureConnection, ConnectionHandler } from '../../protocol/connection.js';
import { isErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { joinPayload } from '../../protocol/frame.js';
import { Field, PacketType } from '../../protocol/wire.js';
import { count, type Ledger } from './ledger.js';
import { FatalInputs } from './post-fatal.js';
import { SurvivableInputs } from './post-inputs.js';
import { StreamModel, tryDecodeFields, type Input } from './post-streams.js';
import type { PostAuthStats, PostAuthTarget, Profile } from './post-target.js';
import type { Prng } from './prng.js';

/** Batches sent and not yet confirmed, per connection: enough to keep both ends busy, few enough to stay bounded. */
const MAX_BATCHES_IN_FLIGHT = 4;
const MIN_BATCH_INPUTS = 16;
const MAX_BATCH_INPUTS = 128;
/** A confirmation, or the close a fatal input should cause, that takes longer than this is reported. */
const REPLY_TIMEOUT_MS = 20_000;

/** One authenticated connection: what the daemon sends back, the batches and their confirmations, the last probe. */
export class PostSession implements ConnectionHandler {
  private isClosed = false;
  private closeCode: string | undefined;
  private closeReason: string | undefined;
  private startsSent = 0;
  private startReplies = 0;
  /** Batches sent and not yet confirmed: the Starts sent up to and including each one's closing Start. */
  private readonly unconfirmed: { startsThrough: number; inputs: number }[] = [];
  private wake: (() => void) | undefined;
  private readonly inputs: SurvivableInputs;
  private readonly fatalInputs: FatalInputs;

  constructor(
    private readonly rng: Prng,
    profile: Profile,
    private readonly connection: SecureConnection,
    target: PostAuthTarget,
    private readonly ledger: Ledger,
    private readonly stats: PostAuthStats,
    private readonly note: (input: Input) => void,
  ) {
    const streams = new StreamModel(rng, target.initialWindowBytes);
    this.inputs = new SurvivableInputs(rng, profile, streams, target);
    this.fatalInputs = new FatalInputs(rng, streams, target);
  }

  // ---- the daemon's side -----------------------------------------------------------------------------------

  packet(type: PacketType, payload: readonly Buffer[], payloadBytes: number): void {
    const body = joinPayload(payload, payloadBytes);
    switch (type) {
      case PacketType.Start:
        this.startReplies++;
        count(this.stats.startReplies, this.replyStatus(body));
        this.confirm();
        break;
      case PacketType.MintKey:
        count(this.stats.mintReplies, this.replyStatus(body));
        break;
      // A StreamClose from the daemon leaves the model as it is: packets for a stream it dropped are ignored, so
      // they stay survivable, and the inputs stay a function of the seed rather than of when replies arrive.
      default:
        count(this.stats.daemonPackets, PacketType[type] ?? `type-${type}`);
    }
    this.wake?.();
  }

  drain(): void {
    this.wake?.();
  }

  closed(error: NetplumbError | undefined): void {
    this.isClosed = true;
    this.closeCode = error?.code ?? 'goodbye';
    this.closeReason = error?.message ?? 'goodbye';
    this.wake?.();
  }

  /** `started`, `minted`, or `refused:CODE`; a code the project does not know is counted apart. */
  private replyStatus(body: Buffer): string {
    const fields = tryDecodeFields(body);
    const status = fields?.optional(Field.status) ?? 'malformed';
    const code = fields?.optional(Field.code);
    if (code !== undefined && !isErrorCode(code)) count(this.stats.unknownCodes, code);
    return code === undefined ? status : `${status}:${code}`;
  }

  private confirm(): void {
    while (this.unconfirmed.length > 0 && (this.unconfirmed[0] as { startsThrough: number }).startsThrough <= this.startReplies) {
      const batch = this.unconfirmed.shift() as { inputs: number };
      this.stats.confirmed += batch.inputs;
      this.ledger.progress();
    }
  }

  /** Resolves once ready() holds, the connection closed, or the time is up (false then). */
  private async until(ready: () => boolean, timeoutMs = REPLY_TIMEOUT_MS): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!ready() && !this.isClosed && !this.ledger.stopped) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return true;
  }

  // ---- driving -----------------------------------------------------------------------------------------------

  /** Sends up to `lifetime` inputs the daemon should survive, then ends the connection, mostly with a fatal input. */
  async drive(lifetime: number): Promise<void> {
    let used = 0;
    while (used < lifetime && !this.isClosed) {
      const granted = this.ledger.take(Math.min(lifetime - used, this.rng.between(MIN_BATCH_INPUTS, MAX_BATCH_INPUTS)));
      if (granted === 0) break;
      used += granted;
      this.sendBatch(granted);
      const settled = await this.until(() => this.unconfirmed.length < MAX_BATCHES_IN_FLIGHT && this.connection.writable);
      if (!settled) return this.timedOut();
    }
    if (!(await this.until(() => this.unconfirmed.length === 0))) return this.timedOut();
    if (this.isClosed) return this.closedUnexpectedly();
    if (!this.ledger.stopped && this.ledger.take(1) === 1) {
      if (this.rng.chance(0.9)) return this.probe();
      this.stats.inputs++;
      this.stats.confirmed++;
      count(this.stats.kinds, 'goodbye-from-client');
    }
    await this.connection.close();
  }

  private closedUnexpectedly(): void {
    const code = this.closeCode ?? 'unknown';
    count(this.stats.unexpectedCloses, code);
    this.stats.unexpectedCloseReasons[code] ??= this.closeReason ?? '';
    this.unconfirmed.length = 0;
  }

  private timedOut(): void {
    if (this.isClosed) return this.closedUnexpectedly();
    if (this.ledger.stopped) return;
    this.stats.replyTimeouts++;
  }

  private send(input: Input): void {
    this.note(input);
    this.stats.inputs++;
    if (input.type === PacketType.Start) this.startsSent++;
    this.connection.send(input.type as PacketType, input.payload);
  }

  /** An empty Start: refused at once, and its reply confirms everything sent before it. */
  private sendConfirmation(inputs: number): void {
    this.connection.sendFields(PacketType.Start, []);
    this.startsSent++;
    this.unconfirmed.push({ startsThrough: this.startsSent, inputs });
  }

  private sendBatch(inputs: number): void {
    this.connection.cork();
    try {
      for (let i = 0; i < inputs; i++) this.send(this.inputs.next());
      this.sendConfirmation(inputs);
    } finally {
      this.connection.uncork();
    }
  }

  /** One input meant to end the connection, after everything before it was confirmed. */
  private async probe(): Promise<void> {
    const input = this.fatalInputs.next();
    this.stats.fatalProbes++;
    this.send(input);
    this.sendConfirmation(1);
    if (!(await this.until(() => this.unconfirmed.length === 0))) return this.timedOut();
    if (this.isClosed) {
      // Everything before it was confirmed: this input is what the daemon refused.
      this.stats.fatalClosed++;
      this.stats.confirmed++;
      this.ledger.progress();
      return;
    }
    count(this.stats.fatalSurvived, input.kind);
    await this.connection.close();
  }
}
