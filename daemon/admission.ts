// Admission of connections that have not authenticated yet: a bounded pool in which a newcomer is never the one
// turned away, deadlines for a peer's first bytes and Hello, and, for sources outside the exempt networks, a cap
// per source and penalties for handshakes that fail. Pure policy over addresses and clock; server.ts owns sockets.
//
//   admit() --bytes--> Greeting --Hello--> Exchanging --settle('authenticated')--> (leaves the pool)
//     Silent ---------------\-----------------\--------- evicted, deadline, failed --> (leaves; the source pays)
//
// Why eviction rather than refusing the newcomer (sshd's MaxStartups drops new connections at random): a slot held
// by a connection that has sent nothing for seconds is worth less than a fresh one, and plumb sends its Hello the
// moment it connects, so under a flood of silent or slow connections a real client moves ahead of them at once.

import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { BadConfigError, ErrorCode } from '../protocol/errors.js';

/** How far a pending connection has come: the least advanced, then the oldest, is evicted first. */
export enum HandshakeStage {
  /** Accepted; nothing received yet. */
  Silent = 0,
  /** Bytes received, but no complete Hello. */
  Greeting = 1,
  /** Hello answered; the peer's key exchange is awaited. */
  Exchanging = 2,
}

export interface AdmissionSettings {
  /** Connections not yet authenticated, at most, all sources together (max-unauthenticated). */
  maxPending: number;
  /** Of those, at most this many from one source outside the exempt networks (max-unauthenticated-per-source). */
  maxPendingPerSource: number;
  /** Time from accept until the peer's Hello has been received and answered (hello-timeout-ms). */
  helloTimeoutMs: number;
  /** Penalty a source outside the exempt networks earns by each handshake that fails (penalty-ms; 0: none). */
  penaltyMs: number;
  /** A source is refused at accept while its penalty exceeds this (penalty-threshold-ms). */
  penaltyThresholdMs: number;
  /** A source's penalty never grows beyond this (max-penalty-ms). */
  maxPenaltyMs: number;
  /** Networks (CIDR) whose sources get no per-source cap and no penalty (penalty-exempt); loopback by default. */
  exempt: readonly string[];
}

export const DEFAULT_ADMISSION: Readonly<AdmissionSettings> = Object.freeze({
  maxPending: 64,
  maxPendingPerSource: 8,
  helloTimeoutMs: 3000,
  penaltyMs: 2000,
  penaltyThresholdMs: 10_000,
  maxPenaltyMs: 600_000,
  exempt: Object.freeze(['127.0.0.0/8', '::1/128']),
});

/** Sources whose penalties are remembered at most; beyond, the one penalised longest ago is forgotten. */
export const MAX_PENALISED_SOURCES = 65_536;

/** IPv6 sources are grouped by this prefix: one host commonly holds a whole /64. */
const IPV6_SOURCE_PREFIX_BITS = 64;

/** Why a pending connection is being ended by admission control, with the code its log line carries. */
export interface Eviction {
  code: ErrorCode;
  reason: string;
}

/** A connection admitted to the pool: the server reports its progress and how it ended. */
export interface PendingConnection {
  /** The source it is counted under (an IPv4 address, an IPv6 /64, or the address of an exempt source). */
  readonly source: string;
  advance(stage: HandshakeStage): void;
  /** Leaves the pool: authenticated, or failed (the source pays a penalty unless exempt), or already evicted. */
  settle(outcome: 'authenticated' | 'failed'): void;
}

export type Admitted = { admitted: PendingConnection } | { refused: Eviction };

interface Entry extends PendingConnection {
  readonly order: number;
  readonly exempt: boolean;
  stage: HandshakeStage;
  settled: boolean;
  deadline: NodeJS.Timeout | undefined;
  evict(why: Eviction): void;
}

/** Parses `penalty-exempt`: CIDR prefixes or addresses separated by commas or spaces; `none` exempts nothing. */
export function parseExemptList(value: string): string[] {
  const words = value.split(/[\s,]+/).filter((word) => word !== '');
  if (words.length === 1 && words[0] === 'none') return [];
  for (const word of words) exemptRule(word);
  return words;
}

function exemptRule(word: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [address = '', bits] = word.split('/');
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
  const max = family === 'ipv4' ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (family === undefined || !(prefix >= 0 && prefix <= max)) {
    throw new BadConfigError(`penalty-exempt: ${word} is not an address or ADDRESS/PREFIX`);
  }
  return { address, prefix, family };
}

/** An IPv4 address mapped into IPv6 (`::ffff:192.0.2.1`, as a dual-stack listener reports it) as plain IPv4. */
function unmapped(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped?.[1] ?? address;
}

/** The key a source is counted and penalised under: an IPv4 address, or the /64 of an IPv6 one. */
export function sourceKey(address: string): string {
  const plain = unmapped(address);
  if (!isIPv6(plain)) return plain;
  const groups = expandIPv6(plain).slice(0, IPV6_SOURCE_PREFIX_BITS / 16);
  return `${groups.join(':')}::/${IPV6_SOURCE_PREFIX_BITS}`;
}

/** The eight groups of an IPv6 address, `::` expanded (an embedded IPv4 tail taken as two groups). */
function expandIPv6(address: string): string[] {
  const withoutZone = address.split('%')[0] as string;
  const tail = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(withoutZone);
  const text = tail === null ? withoutZone : withoutZone.slice(0, tail.index) + ipv4Groups(tail.slice(1).map(Number));
  const [head = '', rest] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((group) => Number.parseInt(group, 16).toString(16));
}

function ipv4Groups(octets: number[]): string {
  const [a = 0, b = 0, c = 0, d = 0] = octets;
  return `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

export class Admission {
  private readonly pending = new Set<Entry>();
  private readonly perSource = new Map<string, number>();
  /** Per source outside the exempt networks: until when (clock ms) its penalty runs. */
  private readonly penalties = new Map<string, number>();
  private readonly exemptNetworks = new BlockList();
  private nextOrder = 0;

  constructor(
    private readonly settings: AdmissionSettings,
    private readonly now: () => number = () => performance.now(),
  ) {
    for (const word of settings.exempt) {
      const { address, prefix, family } = exemptRule(word);
      this.exemptNetworks.addSubnet(address, prefix, family);
    }
  }

  /** Connections admitted and not yet settled. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Sources whose penalty is remembered now. */
  get penalisedSources(): number {
    return this.penalties.size;
  }

  /**
   * A new connection from `address`. Refused only while its source serves a penalty; otherwise admitted, and when
   * the pool (or the source's share of it) is full, the least advanced and then oldest connection there is evicted
   * (`evict` of that connection is called first). `evict` is how this connection will be ended if it must go.
   */
  admit(address: string, evict: (why: Eviction) => void): Admitted {
    const source = sourceKey(address);
    const plain = unmapped(address);
    const exempt = this.exemptNetworks.check(plain, isIPv4(plain) ? 'ipv4' : 'ipv6');
    if (!exempt) {
      const penaltyLeftMs = (this.penalties.get(source) ?? 0) - this.now();
      if (penaltyLeftMs <= 0) this.penalties.delete(source);
      else if (penaltyLeftMs > this.settings.penaltyThresholdMs) {
        return { refused: { code: ErrorCode.TooManyConnections, reason: `source penalised for failed handshakes (${Math.ceil(penaltyLeftMs / 1000)} s left)` } };
      }
      if ((this.perSource.get(source) ?? 0) >= this.settings.maxPendingPerSource) {
        this.evictOne([...this.pending].filter((entry) => entry.source === source), `this source already has ${this.settings.maxPendingPerSource} connections in the handshake`);
      }
    }
    if (this.pending.size >= this.settings.maxPending) {
      this.evictOne([...this.pending], `${this.settings.maxPending} connections in the handshake`);
    }
    const entry = this.entry(source, exempt, evict);
    this.pending.add(entry);
    this.perSource.set(source, (this.perSource.get(source) ?? 0) + 1);
    return { admitted: entry };
  }

  private entry(source: string, exempt: boolean, evict: (why: Eviction) => void): Entry {
    const admission = this;
    const entry: Entry = {
      source,
      exempt,
      order: this.nextOrder++,
      stage: HandshakeStage.Silent,
      settled: false,
      deadline: undefined,
      advance(stage) {
        if (!entry.settled && stage > entry.stage) entry.stage = stage;
        if (stage >= HandshakeStage.Exchanging) clearTimeout(entry.deadline);
      },
      settle(outcome) {
        admission.leave(entry, outcome === 'failed');
      },
      evict(why) {
        admission.leave(entry, true);
        evict(why);
      },
    };
    entry.deadline = setTimeout(() => {
      entry.evict({ code: ErrorCode.HandshakeTimeout, reason: `no hello within ${this.settings.helloTimeoutMs} ms` });
    }, this.settings.helloTimeoutMs);
    entry.deadline.unref();
    return entry;
  }

  /** Evicts the least advanced, then oldest, of the candidates. */
  private evictOne(candidates: Entry[], why: string): void {
    let victim: Entry | undefined;
    for (const entry of candidates) {
      if (victim === undefined || entry.stage < victim.stage || (entry.stage === victim.stage && entry.order < victim.order)) victim = entry;
    }
    victim?.evict({ code: ErrorCode.TooManyConnections, reason: `evicted to make room: ${why}, and it had come least far` });
  }

  private leave(entry: Entry, failed: boolean): void {
    if (entry.settled) return;
    entry.settled = true;
    clearTimeout(entry.deadline);
    this.pending.delete(entry);
    const count = (this.perSource.get(entry.source) ?? 1) - 1;
    if (count > 0) this.perSource.set(entry.source, count);
    else this.perSource.delete(entry.source);
    if (failed && !entry.exempt && this.settings.penaltyMs > 0) this.penalise(entry.source);
  }

  /**
   * Adds one failure's penalty to a source, up to maxPenaltyMs from now. The table is kept in order of the latest
   * penalty (a Map keeps insertion order), so when it is full the source penalised longest ago is forgotten first,
   * in constant time: a flood from many addresses costs each failure the same.
   */
  private penalise(source: string): void {
    const now = this.now();
    const until = Math.min(Math.max(this.penalties.get(source) ?? now, now) + this.settings.penaltyMs, now + this.settings.maxPenaltyMs);
    this.penalties.delete(source);
    this.penalties.set(source, until);
    if (this.penalties.size > MAX_PENALISED_SOURCES) this.penalties.delete(this.penalties.keys().next().value as string);
  }
}
