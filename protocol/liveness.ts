// The timers of one connection: the handshake deadline, the idle timeout, keepalive Pings, and the round trip
// measured with those Pings. It sends nothing itself: it asks its owner to ping, or tells it the peer went silent.

import type { Limits } from './wire.js';

/** Round trips timed before rttMs reports an estimate, and how often a flowing connection times another. */
const RTT_SAMPLES_NEEDED = 3;
const RTT_RESAMPLE_MS = 1000;

/** The shortest keepalive check period, so tiny test limits do not spin the event loop. */
const MIN_CHECK_PERIOD_MS = 10;

export interface LivenessOwner {
  /** Sends a Ping that asks for a reply. */
  ping(): void;
  /** Nothing was received for idleTimeoutMs. */
  idle(): void;
  /** The handshake did not complete within handshakeTimeoutMs. */
  handshakeExpired(): void;
}

export class Liveness {
  private lastReceivedMs = Date.now();
  private lastSentMs = Date.now();
  /** When our unanswered Ping left (performance.now()), to time the reply. */
  private pingSentAt: number | undefined;
  private lastPingAt = 0;
  private minRttMs: number | undefined;
  private rttSamples = 0;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly limits: Pick<Limits, 'handshakeTimeoutMs' | 'idleTimeoutMs' | 'keepaliveIntervalMs'>,
    private readonly owner: LivenessOwner,
  ) {}

  /** Starts the handshake deadline. */
  startHandshake(): void {
    this.handshakeTimer = setTimeout(() => this.owner.handshakeExpired(), this.limits.handshakeTimeoutMs);
  }

  /** The handshake is done: the deadline gives way to the idle timeout and keepalive. */
  startKeepalive(): void {
    clearTimeout(this.handshakeTimer);
    const { idleTimeoutMs, keepaliveIntervalMs } = this.limits;
    const period = Math.max(MIN_CHECK_PERIOD_MS, Math.min(keepaliveIntervalMs, idleTimeoutMs) / 2);
    this.keepaliveTimer = setInterval(() => {
      const now = Date.now();
      if (now - this.lastReceivedMs >= idleTimeoutMs) this.owner.idle();
      else if (now - this.lastSentMs >= keepaliveIntervalMs) this.ping();
    }, period);
    this.keepaliveTimer.unref();
  }

  stop(): void {
    clearTimeout(this.handshakeTimer);
    clearInterval(this.keepaliveTimer);
  }

  received(): void {
    this.lastReceivedMs = Date.now();
  }

  sent(): void {
    this.lastSentMs = Date.now();
  }

  /**
   * The smallest round trip seen so far, in ms, once RTT_SAMPLES_NEEDED Pings have been timed; undefined before.
   * The smallest, because a reply delayed by a busy peer says nothing of the path. The handshake's round trip
   * counts too (handshakeRoundTrip): Pings are timed while data flows, behind the bulk the peer has queued for us,
   * so on a short path they measure that queue, and a window grown on them would only lengthen it.
   */
  get rttMs(): number | undefined {
    return this.rttSamples >= RTT_SAMPLES_NEEDED ? this.minRttMs : undefined;
  }

  /** Times another round trip if none is under way and the estimate is young or stale. */
  sampleRtt(): void {
    if (this.pingSentAt !== undefined) return;
    if (this.rttSamples >= RTT_SAMPLES_NEEDED && performance.now() - this.lastPingAt < RTT_RESAMPLE_MS) return;
    this.ping();
  }

  /** A round trip of the handshake, timed before any stream data could queue ahead of the answer. */
  handshakeRoundTrip(sampleMs: number): void {
    this.minRttMs = Math.min(this.minRttMs ?? sampleMs, sampleMs);
  }

  /** The peer answered a Ping: times the oldest unanswered one. */
  pingAnswered(): void {
    if (this.pingSentAt === undefined) return;
    const sample = performance.now() - this.pingSentAt;
    this.pingSentAt = undefined;
    this.rttSamples++;
    this.minRttMs = Math.min(this.minRttMs ?? sample, sample);
  }

  private ping(): void {
    this.pingSentAt ??= performance.now();
    this.lastPingAt = this.pingSentAt;
    this.owner.ping();
  }
}
