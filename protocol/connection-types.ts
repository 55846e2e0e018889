// What a SecureConnection's users implement or get: the handler of its packets, its options, the trust each side
// brings to the handshake, and what the handshake established. Kept apart so connection.ts holds only behaviour.

import type { CipherLimits } from './cipher.js';
import type { NetplumbError } from './errors.js';
import type { PrivateIdentity, PublicIdentity } from './keys.js';
import type { ResolvedLimits } from './limits.js';
import type { IllegalMoveReporter } from './state-machine.js';
import type { CipherAlgorithm, PacketType } from './wire.js';

/** Receives what the connection does not handle itself. A throw from packet() fails the connection. */
export interface ConnectionHandler {
  packet(type: PacketType, payload: readonly Buffer[], payloadBytes: number): void;
  /** The transport can take more data again (after write backpressure). */
  drain(): void;
  /** The connection is gone; error is undefined after an orderly Goodbye exchange. */
  closed(error: NetplumbError | undefined): void;
}

export interface ConnectionOptions {
  /** From resolveLimits (default: resolveLimits()), so a connection never runs with limits nobody validated. */
  limits?: ResolvedLimits;
  cipherLimits?: CipherLimits;
  ciphers?: readonly CipherAlgorithm[];
  /** Told as the peer's side of the handshake advances: its first bytes arrived, then its Hello was answered. */
  handshakeProgress?: (step: HandshakeStep) => void;
  /**
   * Aborting it ends a handshake still under way with the signal's reason (a NetplumbError), told to the peer in a
   * plaintext Error packet when its code is one peers are told (NP_TOO_MANY_CONNECTIONS: try again), else silently
   * (a timeout): how a daemon makes room among connections that have not authenticated.
   */
  abortHandshake?: AbortSignal;
  /** Told of a state change the connection's or its streams' tables do not allow (a bug, refused): for a log. */
  reportIllegalMove?: IllegalMoveReporter<string>;
}

/** What a peer has done so far in the handshake, for whoever ranks connections that have not authenticated. */
export type HandshakeStep = 'first-bytes' | 'hello';

export interface ClientTrust {
  identity: PrivateIdentity;
  /** Throws (NP_HOST_KEY_UNKNOWN, NP_HOST_KEY_CHANGED) to refuse the daemon before any key is exchanged. */
  verifyHostKey(hostKey: PublicIdentity): void;
}

export interface ServerTrust {
  hostKey: PrivateIdentity;
  /** Throws (NP_NOT_AUTHORIZED) to refuse a client whose signature has verified. */
  authorize(client: PublicIdentity): void;
}

/** What the handshake established. */
export interface PeerInfo {
  /** The client's identity (on the daemon) or the daemon's host key (on the client). */
  peer: PublicIdentity;
  cipher: CipherAlgorithm;
  sessionId: Buffer;
}
