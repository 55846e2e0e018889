// Tests for protocol/limits: resolveLimits fills in the defaults, validates and freezes; validateLimits refuses
// limits that cannot work together, each with NP_CONFIG.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { resolveLimits, validateLimits } from '../../protocol/limits.js';
import { DEFAULT_LIMITS, type Limits } from '../../protocol/wire.js';

const CONFIG_ERROR = { code: ErrorCode.Config };

describe('resolveLimits', () => {
  test('no overrides give the defaults, frozen', () => {
    const limits = resolveLimits();
    assert.deepEqual({ ...limits }, { ...DEFAULT_LIMITS });
    assert.equal(Object.isFrozen(limits), true);
  });

  test('an override replaces its default and leaves the others', () => {
    const limits = resolveLimits({ maxStreamsPerConnection: 8 });
    assert.equal(limits.maxStreamsPerConnection, 8);
    assert.equal(limits.maxPacketBytes, DEFAULT_LIMITS.maxPacketBytes);
  });

  test('a limit that is not a positive integer is refused with NP_CONFIG', () => {
    assert.throws(() => resolveLimits({ maxStreamsPerConnection: 0 }), CONFIG_ERROR);
    assert.throws(() => resolveLimits({ idleTimeoutMs: 1.5 }), CONFIG_ERROR);
    assert.throws(() => resolveLimits({ maxConnections: Number.NaN }), CONFIG_ERROR);
  });

  test('overrides that do not work together with the defaults are refused with NP_CONFIG', () => {
    assert.throws(() => resolveLimits({ maxPacketBytes: 8192 }), CONFIG_ERROR);
    assert.doesNotThrow(() => resolveLimits({ maxPacketBytes: 8192, maxDataPayloadBytes: 8192 - 64 }));
  });
});

describe('validateLimits', () => {
  function limitsWith(changes: Partial<Limits>): Limits {
    return { ...DEFAULT_LIMITS, ...changes };
  }

  test('the default limits pass', () => {
    assert.doesNotThrow(() => validateLimits({ ...DEFAULT_LIMITS }));
  });

  test('max-packet-bytes below 4096 is refused', () => {
    assert.throws(() => validateLimits(limitsWith({ maxPacketBytes: 4095, maxDataPayloadBytes: 1024 })), CONFIG_ERROR);
    assert.doesNotThrow(() => validateLimits(limitsWith({ maxPacketBytes: 4096, maxDataPayloadBytes: 1024 })));
  });

  test('max-data-payload-bytes that leaves less than 64 bytes of room in a packet is refused', () => {
    assert.throws(() => validateLimits(limitsWith({ maxPacketBytes: 8192, maxDataPayloadBytes: 8192 - 63 })), CONFIG_ERROR);
    assert.doesNotThrow(() => validateLimits(limitsWith({ maxPacketBytes: 8192, maxDataPayloadBytes: 8192 - 64 })));
  });

  test('initial-window-bytes below 4096 is refused', () => {
    assert.throws(() => validateLimits(limitsWith({ initialWindowBytes: 4095 })), CONFIG_ERROR);
    assert.doesNotThrow(() => validateLimits(limitsWith({ initialWindowBytes: 4096 })));
  });

  test('max-unauthenticated above max-connections is refused, equal is accepted', () => {
    assert.throws(() => validateLimits(limitsWith({ maxConnections: 2, maxUnauthenticatedConnections: 3 })), CONFIG_ERROR);
    assert.doesNotThrow(() => validateLimits(limitsWith({ maxConnections: 2, maxUnauthenticatedConnections: 2 })));
  });

  test('keepalive-interval-ms not shorter than idle-timeout-ms is refused', () => {
    assert.throws(() => validateLimits(limitsWith({ keepaliveIntervalMs: 5000, idleTimeoutMs: 5000 })), CONFIG_ERROR);
    assert.throws(() => validateLimits(limitsWith({ keepaliveIntervalMs: 6000, idleTimeoutMs: 5000 })), CONFIG_ERROR);
    assert.doesNotThrow(() => validateLimits(limitsWith({ keepaliveIntervalMs: 4999, idleTimeoutMs: 5000 })));
  });

  test('a timeout longer than a Node timer can hold (2^31-1 ms) is refused rather than firing at once', () => {
    const maxTimerMs = 2 ** 31 - 1;
    assert.throws(() => validateLimits(limitsWith({ handshakeTimeoutMs: maxTimerMs + 1 })), CONFIG_ERROR);
    assert.throws(() => validateLimits(limitsWith({ idleTimeoutMs: maxTimerMs + 1 })), CONFIG_ERROR);
    assert.throws(() => validateLimits(limitsWith({ keepaliveIntervalMs: maxTimerMs + 1, idleTimeoutMs: maxTimerMs + 2 })), CONFIG_ERROR);
    assert.doesNotThrow(() => validateLimits(limitsWith({ handshakeTimeoutMs: maxTimerMs, idleTimeoutMs: maxTimerMs, keepaliveIntervalMs: maxTimerMs - 1 })));
  });
});
