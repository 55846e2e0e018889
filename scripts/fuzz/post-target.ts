// What the post-authentication fuzzer aims at and what it counts: the daemon and its client keys, the two kinds of
// connection (profiles), and the stats its report is made from.

import type { PrivateIdentity, PublicIdentity } from '../../protocol/keys.js';
import type { SafetyScope } from './safety.js';

/**
 * What a connection sends: `mixed`, packets of every type; `churn`, stream packets only (opens and closes above all)
 * on one connection kept for a whole run, where whatever a connection accumulates per stream adds up until the
 * daemon's capped heap gives out.
 */
export type Profile = 'mixed' | 'churn';

export interface PostAuthClient {
  /** 'open' (no restriction) or 'gluepot'. */
  label: string;
  identity: PrivateIdentity;
}

export interface PostAuthTarget {
  port: number;
  hostKey: PublicIdentity;
  clients: readonly PostAuthClient[];
  /** The daemon's maxPacketBytes and the window it grants each stream. */
  maxPacketBytes: number;
  initialWindowBytes: number;
  safety: SafetyScope;
}

export interface PostAuthStats {
  /** Inputs sent. */
  inputs: number;
  /** Inputs the daemon is known to have read: a later reply proves it. */
  confirmed: number;
  connections: number;
  connectFailures: number;
  handshakeFailures: Record<string, number>;
  /** Inputs sent alone to end a connection; how many did, and how many the daemon took without closing. */
  fatalProbes: number;
  fatalClosed: number;
  fatalSurvived: Record<string, number>;
  /** Connections the daemon ended while only inputs it should survive were in flight, by what this side saw. */
  unexpectedCloses: Record<string, number>;
  /** The first reason this side gave for each code of unexpectedCloses. */
  unexpectedCloseReasons: Record<string, string>;
  /** Confirmations or closes that never came in time (post-session.ts, REPLY_TIMEOUT_MS). */
  replyTimeouts: number;
  /** Start replies: `started` or `refused:CODE`. */
  startReplies: Record<string, number>;
  mintReplies: Record<string, number>;
  /** Codes in replies that are not among the project's error codes. */
  unknownCodes: Record<string, number>;
  /** Other packets the daemon sent, by type. */
  daemonPackets: Record<string, number>;
  kinds: Record<string, number>;
}

export function emptyPostAuthStats(): PostAuthStats {
  return {
    inputs: 0,
    confirmed: 0,
    connections: 0,
    connectFailures: 0,
    handshakeFailures: {},
    fatalProbes: 0,
    fatalClosed: 0,
    fatalSurvived: {},
    unexpectedCloses: {},
    unexpectedCloseReasons: {},
    replyTimeouts: 0,
    startReplies: {},
    mintReplies: {},
    unknownCodes: {},
    daemonPackets: {},
    kinds: {},
  };
}
