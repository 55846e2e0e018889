// Admission control of connections not yet authenticated: the pool evicts the least advanced and oldest, never the
// newcomer; deadlines for the Hello; per-source caps and penalties outside the exempt networks; bounded memory.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Admission, DEFAULT_ADMISSION, HandshakeStage, MAX_PENALISED_SOURCES, parseExemptList, sourceKey, type AdmissionSettings, type Eviction, type PendingConnection } from '../../daemon/admission.js';
import { ErrorCode } from '../../protocol/errors.js';

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let time = 1_000_000;
  return { now: () => time, advance: (ms) => (time += ms) };
}

interface Tracked {
  pending: PendingConnection;
  evicted: Eviction | undefined;
}

/** Admits a connection from `address`, recording its eviction; fails the test if it was refused. */
function admit(admission: Admission, address: string): Tracked {
  const tracked: Tracked = { pending: undefined as unknown as PendingConnection, evicted: undefined };
  const result = admission.admit(address, (why) => (tracked.evicted = why));
  assert.ok('admitted' in result, 'refused' in result ? `refused: ${result.refused.reason}` : '');
  tracked.pending = result.admitted;
  return tracked;
}

function settings(overrides: Partial<AdmissionSettings> = {}): AdmissionSettings {
  return { ...DEFAULT_ADMISSION, helloTimeoutMs: 60_000, ...overrides };
}

function release(...tracked: Tracked[]): void {
  for (const { pending } of tracked) pending.settle('authenticated');
}

test('a full pool admits the newcomer and evicts the oldest silent connection', () => {
  const admission = new Admission(settings({ maxPending: 3 }));
  const [first, second, third] = [admit(admission, '127.0.0.1'), admit(admission, '127.0.0.1'), admit(admission, '127.0.0.1')];
  const fourth = admit(admission, '127.0.0.1');
  assert.equal(first.evicted?.code, ErrorCode.TooManyConnections);
  assert.equal(second.evicted, undefined);
  assert.equal(third.evicted, undefined);
  assert.equal(admission.pendingCount, 3);
  release(second, third, fourth);
});

test('a connection that has sent bytes outranks a silent one, however much newer the silent one is', () => {
  const admission = new Admission(settings({ maxPending: 2 }));
  const talking = admit(admission, '127.0.0.1');
  talking.pending.advance(HandshakeStage.Greeting);
  const silent = admit(admission, '127.0.0.1');
  const newcomer = admit(admission, '127.0.0.1');
  assert.equal(talking.evicted, undefined);
  assert.ok(silent.evicted !== undefined);
  release(talking, newcomer);
});

test('connections in the key exchange are evicted last, the oldest of them first', () => {
  const admission = new Admission(settings({ maxPending: 3 }));
  const [older, younger] = [admit(admission, '127.0.0.1'), admit(admission, '127.0.0.1')];
  for (const { pending } of [older, younger]) pending.advance(HandshakeStage.Exchanging);
  const greeting = admit(admission, '127.0.0.1');
  greeting.pending.advance(HandshakeStage.Greeting);
  const silent = admit(admission, '127.0.0.1');
  assert.ok(greeting.evicted !== undefined, 'a greeting one goes before those exchanging keys');
  const next = admit(admission, '127.0.0.1');
  assert.ok(silent.evicted !== undefined, 'a silent one goes before those exchanging keys, however young');
  next.pending.advance(HandshakeStage.Exchanging);
  const last = admit(admission, '127.0.0.1');
  assert.ok(older.evicted !== undefined, 'among equals, the oldest goes');
  assert.equal(younger.evicted, undefined);
  assert.equal(next.evicted, undefined);
  release(younger, next, last);
});

test('a stage never goes back, and a settled connection is no longer counted', () => {
  const admission = new Admission(settings({ maxPending: 1 }));
  const first = admit(admission, '127.0.0.1');
  first.pending.advance(HandshakeStage.Exchanging);
  first.pending.advance(HandshakeStage.Greeting);
  first.pending.settle('authenticated');
  assert.equal(admission.pendingCount, 0);
  const second = admit(admission, '127.0.0.1');
  assert.equal(first.evicted, undefined);
  release(second);
});

test('a connection without a Hello within hello-timeout-ms is ended with NP_HANDSHAKE_TIMEOUT', async () => {
  const admission = new Admission(settings({ helloTimeoutMs: 30 }));
  const silent = admit(admission, '127.0.0.1');
  const greeting = admit(admission, '127.0.0.1');
  greeting.pending.advance(HandshakeStage.Greeting);
  const helloed = admit(admission, '127.0.0.1');
  helloed.pending.advance(HandshakeStage.Exchanging);
  await new Promise((resolve) => setTimeout(resolve, 120));
  assert.equal(silent.evicted?.code, ErrorCode.HandshakeTimeout);
  assert.equal(greeting.evicted?.code, ErrorCode.HandshakeTimeout);
  assert.equal(helloed.evicted, undefined, 'its Hello came in time: the handshake timeout is the connection layer’s');
  assert.equal(admission.pendingCount, 1);
  release(helloed);
});

test('a source outside the exempt networks takes at most its share of the pool: its own oldest goes', () => {
  const admission = new Admission(settings({ maxPending: 10, maxPendingPerSource: 2, penaltyMs: 0 }));
  const other = admit(admission, '198.51.100.7');
  const [first, second] = [admit(admission, '192.0.2.1'), admit(admission, '192.0.2.1')];
  const third = admit(admission, '192.0.2.1');
  assert.ok(first.evicted !== undefined);
  assert.match(first.evicted?.reason ?? '', /this source/);
  assert.equal(second.evicted, undefined);
  assert.equal(other.evicted, undefined);
  release(other, second, third);
});

test('loopback is exempt by default: no share, no penalty', () => {
  const clock = manualClock();
  const admission = new Admission(settings({ maxPending: 10, maxPendingPerSource: 2 }), clock.now);
  const all = Array.from({ length: 5 }, () => admit(admission, '127.0.0.1'));
  assert.ok(all.every(({ evicted }) => evicted === undefined));
  for (const { pending } of all) pending.settle('failed');
  for (const address of ['127.0.0.1', '::1', '127.3.4.5']) {
    const again = admit(admission, address);
    again.pending.settle('failed');
  }
  assert.equal(admission.penalisedSources, 0);
});

test('failed handshakes earn a source a penalty; beyond the threshold it is refused at accept, until it runs down', () => {
  const clock = manualClock();
  const admission = new Admission(settings({ penaltyMs: 2000, penaltyThresholdMs: 5000, maxPenaltyMs: 60_000 }), clock.now);
  for (let failure = 0; failure < 3; failure++) admit(admission, '192.0.2.9').pending.settle('failed');
  // 6 s of penalty: over the 5 s threshold.
  const refused = admission.admit('192.0.2.9', () => undefined);
  assert.ok('refused' in refused);
  assert.equal(refused.refused.code, ErrorCode.TooManyConnections);
  assert.match(refused.refused.reason, /penalised/);
  // Another source is not touched by it.
  release(admit(admission, '192.0.2.10'));
  clock.advance(1500);
  release(admit(admission, '192.0.2.9'));
});

test('an authenticated connection costs its source nothing', () => {
  const clock = manualClock();
  const admission = new Admission(settings({ penaltyMs: 2000, penaltyThresholdMs: 1000 }), clock.now);
  for (let i = 0; i < 10; i++) admit(admission, '192.0.2.9').pending.settle('authenticated');
  release(admit(admission, '192.0.2.9'));
  assert.equal(admission.penalisedSources, 0);
});

test('an evicted connection counts as failed for its source', () => {
  const clock = manualClock();
  const admission = new Admission(settings({ maxPending: 1, penaltyMs: 2000, penaltyThresholdMs: 1000, exempt: [] }), clock.now);
  const first = admit(admission, '192.0.2.20');
  const second = admit(admission, '192.0.2.21');
  assert.ok(first.evicted !== undefined);
  assert.equal(admission.penalisedSources, 1);
  assert.ok('refused' in admission.admit('192.0.2.20', () => undefined));
  release(second);
});

test('a penalty never exceeds max-penalty-ms', () => {
  const clock = manualClock();
  const admission = new Admission(settings({ penaltyMs: 10_000, penaltyThresholdMs: 1000, maxPenaltyMs: 20_000, maxPendingPerSource: 64 }), clock.now);
  for (let i = 0; i < 50; i++) {
    const result = admission.admit('192.0.2.30', () => undefined);
    if ('admitted' in result) result.admitted.settle('failed');
  }
  clock.advance(19_001);
  release(admit(admission, '192.0.2.30'));
});

test('the penalty table stays bounded however many sources fail', () => {
  const admission = new Admission(settings({ maxPending: 4 }), manualClock().now);
  for (let i = 0; i < MAX_PENALISED_SOURCES + 100; i++) {
    const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    admit(admission, address).pending.settle('failed');
  }
  assert.equal(admission.penalisedSources, MAX_PENALISED_SOURCES);
  assert.equal(admission.pendingCount, 0);
});

test('IPv6 sources are counted by their /64, IPv4-mapped ones as IPv4', () => {
  assert.equal(sourceKey('2001:db8:1:2:3:4:5:6'), sourceKey('2001:db8:1:2::9'));
  assert.notEqual(sourceKey('2001:db8:1:2::9'), sourceKey('2001:db8:1:3::9'));
  assert.equal(sourceKey('2001:DB8:0:0:1::1'), sourceKey('2001:db8::1:0:0:2'));
  assert.equal(sourceKey('::ffff:192.0.2.1'), '192.0.2.1');
  assert.equal(sourceKey('192.0.2.1'), '192.0.2.1');
  assert.equal(sourceKey('::ffff:c000:201'), sourceKey('::ffff:c000:299'));
});

test('a /64 shares one cap: addresses of one IPv6 host network cannot multiply their share', () => {
  const admission = new Admission(settings({ maxPending: 10, maxPendingPerSource: 2, penaltyMs: 0 }));
  const tracked = ['2001:db8:5:5::1', '2001:db8:5:5::2', '2001:db8:5:5::3'].map((address) => admit(admission, address));
  assert.ok(tracked[0]?.evicted !== undefined);
});

test('penalty-exempt takes addresses and prefixes, or none; anything else is NP_CONFIG', () => {
  assert.deepEqual(parseExemptList('10.0.0.0/8, 192.0.2.1 2001:db8::/32'), ['10.0.0.0/8', '192.0.2.1', '2001:db8::/32']);
  assert.deepEqual(parseExemptList('none'), []);
  for (const bad of ['10.0.0.0/33', 'example.org', '::1/129', '10.0.0.0/x', '1.2.3']) {
    assert.throws(() => parseExemptList(bad), (error: { code?: string }) => error.code === ErrorCode.Config, bad);
  }
});

test('an exempt list of other networks leaves loopback to the per-source rules', () => {
  const admission = new Admission(settings({ maxPending: 10, maxPendingPerSource: 1, penaltyMs: 0, exempt: ['10.0.0.0/8'] }));
  const first = admit(admission, '127.0.0.2');
  const second = admit(admission, '127.0.0.2');
  assert.ok(first.evicted !== undefined);
  const lan = [admit(admission, '10.1.2.3'), admit(admission, '10.1.2.3')];
  assert.ok(lan.every(({ evicted }) => evicted === undefined));
  release(second, ...lan);
});
