// The tunable limits resolved once: DEFAULT_LIMITS (protocol/wire.ts) with overrides applied, checked to be
// positive integers that work together, and frozen. A SecureConnection takes only ResolvedLimits, so no
// connection runs with limits nobody validated; the daemon's configuration resolves its own the same way.

import { BadConfigError } from './errors.js';
import { DEFAULT_LIMITS, MAX_WINDOW_CEILING_BYTES, MIN_PACKET_BYTES, PACKET_ROOM_BYTES, type Limits } from './wire.js';

declare const resolvedBrand: unique symbol;

/** Limits that went through resolveLimits: complete, validated and frozen. */
export type ResolvedLimits = Readonly<Limits> & { readonly [resolvedBrand]: true };

/** The longest delay a Node timer holds; a longer one fires after 1 ms (with only a warning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const LIMIT_NAMES = Object.keys(DEFAULT_LIMITS) as (keyof Limits)[];

/**
 * The defaults with `overrides` applied, validated (validateLimits) and frozen. Throws ConfigError (NP_CONFIG) for
 * a limit that is not a positive safe integer or limits that cannot work together.
 */
export function resolveLimits(overrides: Partial<Limits> = {}): ResolvedLimits {
  const limits: Limits = { ...DEFAULT_LIMITS };
  for (const name of LIMIT_NAMES) {
    const value = overrides[name];
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 1) throw new BadConfigError(`limit ${name} must be a positive integer, not ${String(value)}`);
    limits[name] = value;
  }
  validateLimits(limits);
  return Object.freeze(limits) as ResolvedLimits;
}

/** Rejects limits that cannot work together (ConfigError, NP_CONFIG), naming them as the daemon's settings do. */
export function validateLimits(limits: Readonly<Limits>): void {
  const timers: [string, number][] = [
    ['handshake-timeout-ms', limits.handshakeTimeoutMs],
    ['idle-timeout-ms', limits.idleTimeoutMs],
    ['keepalive-interval-ms', limits.keepaliveIntervalMs],
  ];
  for (const [name, ms] of timers) {
    if (ms > MAX_TIMER_MS) throw new BadConfigError(`${name} must be at most ${MAX_TIMER_MS}`);
  }
  if (limits.maxPacketBytes < MIN_PACKET_BYTES) throw new BadConfigError(`max-packet-bytes must be at least ${MIN_PACKET_BYTES}`);
  if (limits.maxDataPayloadBytes + PACKET_ROOM_BYTES > limits.maxPacketBytes) {
    throw new BadConfigError(`max-data-payload-bytes must leave ${PACKET_ROOM_BYTES} bytes of room in max-packet-bytes`);
  }
  if (limits.initialWindowBytes < MIN_PACKET_BYTES) throw new BadConfigError(`initial-window-bytes must be at least ${MIN_PACKET_BYTES}`);
  if (limits.maxWindowBytes < limits.initialWindowBytes) throw new BadConfigError('max-window-bytes cannot be below initial-window-bytes');
  if (limits.maxWindowBytes > MAX_WINDOW_CEILING_BYTES) throw new BadConfigError('max-window-bytes must be at most 1 GiB');
  if (limits.maxUnauthenticatedConnections > limits.maxConnections) {
    throw new BadConfigError('max-unauthenticated cannot exceed max-connections');
  }
  if (limits.keepaliveIntervalMs >= limits.idleTimeoutMs) {
    throw new BadConfigError('keepalive-interval-ms must be shorter than idle-timeout-ms');
  }
}
