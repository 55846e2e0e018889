// The post-authentication fuzzer: authorized clients (one unrestricted, one gluepot-bound) send sealed packets of every
// type, mutated, through SecureConnection. Here are its workers, each opening one connection after another with options
// of its own; post-session.ts drives a connection, post-inputs.ts and post-fatal.ts draw what it sends.

import { connect, type Socket } from 'node:net';
import { SPEC_CIPHER_LIMITS } from '../../protocol/cipher.js';
import { SecureConnection, type ConnectionOptions } from '../../protocol/connection.js';
import { HostKeyChangedError, type NetplumbError } from '../../protocol/errors.js';
import { sameIdentity } from '../../protocol/keys.js';
import { resolveLimits, type ResolvedLimits } from '../../protocol/limits.js';
import { DEFAULT_LIMITS, PACKET_ROOM_BYTES } from '../../protocol/wire.js';
import { count, type Ledger } from './ledger.js';
import { PostSession } from './post-session.js';
import type { Input } from './post-streams.js';
import { emptyPostAuthStats, type PostAuthClient, type PostAuthStats, type PostAuthTarget, type Profile } from './post-target.js';
import type { Prng } from './prng.js';

/** Connections at once: two per client line. */
export const POST_AUTH_WORKERS = 4;
/** Share of connections kept open for a long run of inputs of every kind. */
const LONG_CONNECTION_SHARE = 0.01;
const LONG_CONNECTION_INPUTS = [20_000, 60_000] as const;
/** Inputs before a short connection's last one (the lengths are skewed: most connections are short). */
const SHORT_CONNECTION_MAX_INPUTS = 2000;

/** One client line's worker: connections one after another until the ledger's budget or deadline is spent. */
export class PostAuthWorker {
  private sent = 0;
  private socket: Socket | undefined;

  constructor(
    private readonly name: string,
    private readonly rng: Prng,
    private readonly profile: Profile,
    private readonly client: PostAuthClient,
    private readonly target: PostAuthTarget,
    private readonly ledger: Ledger,
    private readonly stats: PostAuthStats,
  ) {
    ledger.onStop(() => this.socket?.destroy());
  }

  async run(): Promise<void> {
    while (!this.ledger.exhausted) await this.oneConnection();
  }

  private connectSocket(): Promise<Socket | undefined> {
    return new Promise((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: this.target.port, noDelay: true });
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        resolve(socket);
      });
      socket.once('error', () => resolve(undefined));
    });
  }

  /** Options that vary per connection: cipher, announced limits, and for some a key ratchet every few records. */
  private connectionOptions(): ConnectionOptions {
    const rng = this.rng;
    return {
      ciphers: rng.chance(0.3) ? ['chacha20-poly1305'] : ['aes-256-gcm'],
      limits: announcedLimits(rng.pick([4096, 65_536, DEFAULT_LIMITS.maxPacketBytes]), rng.pick([4096, DEFAULT_LIMITS.initialWindowBytes])),
      ...(rng.chance(0.2) ? { cipherLimits: { ...SPEC_CIPHER_LIMITS, rekeyAfterRecords: rng.between(16, 2000) } } : {}),
    };
  }

  private async oneConnection(): Promise<void> {
    const socket = await this.connectSocket();
    if (socket === undefined || this.ledger.stopped) {
      this.stats.connectFailures++;
      socket?.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      return;
    }
    this.socket = socket;
    this.stats.connections++;
    const hostKey = this.target.hostKey;
    let connection: SecureConnection;
    try {
      connection = await SecureConnection.connect(
        socket,
        {
          identity: this.client.identity,
          verifyHostKey: (presented) => {
            if (!sameIdentity(presented, hostKey)) throw new HostKeyChangedError('not the fuzz daemon');
          },
        },
        this.connectionOptions(),
      );
    } catch (error) {
      count(this.stats.handshakeFailures, (error as NetplumbError).code ?? 'unknown');
      socket.destroy();
      return;
    }
    const session = new PostSession(this.rng, this.profile, connection, this.target, this.ledger, this.stats, (input) => this.note(input));
    connection.attach(session);
    try {
      await session.drive(this.lifetime());
    } finally {
      socket.destroy();
    }
  }

  private lifetime(): number {
    const rng = this.rng;
    if (this.profile === 'churn') return Number.POSITIVE_INFINITY;
    return rng.chance(LONG_CONNECTION_SHARE) ? rng.between(...LONG_CONNECTION_INPUTS) : 1 + rng.size(SHORT_CONNECTION_MAX_INPUTS);
  }

  private note(input: Input): void {
    this.sent++;
    count(this.stats.kinds, input.kind);
    this.ledger.note('post', `${this.name}/${this.client.label}`, this.sent, input.kind, input.payload);
  }
}

/**
 * Runs POST_AUTH_WORKERS workers, alternating between the client lines, until the ledger's budget or deadline is
 * spent; the last worker churns streams on one connection, the others send every kind of packet.
 */
export async function runPostAuth(target: PostAuthTarget, rng: Prng, ledger: Ledger, workers = POST_AUTH_WORKERS): Promise<PostAuthStats> {
  const stats = emptyPostAuthStats();
  const running = Array.from({ length: workers }, (_, i) => {
    const client = target.clients[i % target.clients.length] as PostAuthClient;
    const profile: Profile = i === workers - 1 ? 'churn' : 'mixed';
    return new PostAuthWorker(`post-${i}`, rng.fork(`post-${i}`), profile, client, target, ledger, stats).run();
  });
  await Promise.all(running);
  return stats;
}

/** Limits announcing the given sizes; the own data payload shrinks to fit a small packet, as resolveLimits requires. */
function announcedLimits(maxPacketBytes: number, initialWindowBytes: number): ResolvedLimits {
  const maxDataPayloadBytes = Math.min(DEFAULT_LIMITS.maxDataPayloadBytes, maxPacketBytes - PACKET_ROOM_BYTES);
  return resolveLimits({ maxPacketBytes, initialWindowBytes, maxDataPayloadBytes });
}
