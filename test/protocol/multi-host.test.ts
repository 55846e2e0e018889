// Tests for protocol/multi-host: every packet of a recipe across machines survives its encoding (through the real
// field codec, bytes and back), and every malformed field is refused with NP_BAD_REQUEST or NP_BAD_FIELDS, never
// taken; the reading end's verdict on an edge from the two digests.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, isErrorCode } from '../../protocol/errors.js';
import { decodeFields, encodeFields, type Entry, type FieldList } from '../../protocol/fields.js';
import {
  decodeEdgeConnect,
  decodeEdgeConnectReply,
  decodeEdgeDigest,
  decodeEdgeMintRequest,
  decodeEdgeProgress,
  decodeEdgeReport,
  decodeEdgeRequest,
  decodePartFields,
  decodeRecipeSource,
  decodeRemoteStageEnd,
  edgeVerdict,
  encodeEdgeConnect,
  encodeEdgeConnectReply,
  encodeEdgeDigest,
  encodeEdgeMintRequest,
  encodeEdgeProgress,
  encodeEdgeReport,
  encodeEdgeRequest,
  encodePartFields,
  encodeRemoteStageEnd,
  type EdgeReport,
} from '../../protocol/multi-host.js';
import { EdgeConnectStatus, EdgeRoute, EdgeStatus, Field, MAX_EDGE_RATE, MIN_EDGE_RATE, StartKind } from '../../protocol/wire.js';

const RUN = '0123456789abcdef0123456789abcdef';
const SHA = 'a'.repeat(64);

/** Through the bytes of a real payload, as the peer would get it. */
function wire(entries: Entry[]): FieldList {
  return decodeFields(encodeFields(entries));
}

function refused(decode: () => unknown, code: string = ErrorCode.BadRequest): void {
  assert.throws(decode, (error: Error & { code?: string }) => error.code === code);
}

describe('multi-host packets: round trips', () => {
  test('a part names its run and the placements that are this machine, the unplaced ones as the empty name', () => {
    const part = { run: RUN, machines: ['db1', '', '[::1]:7020', 'vault.example:7021'] };
    assert.deepEqual(decodePartFields(wire(encodePartFields(part))), part);
    // A controller showing progress says so; one that does not sends no field at all.
    assert.deepEqual(decodePartFields(wire(encodePartFields({ ...part, progress: true }))), { ...part, progress: true });
    assert.equal(encodePartFields({ ...part, progress: false }).some(([name]) => name === Field.progress), false);
  });

  test('EdgeProgress: an edge and the bytes of it that have arrived', () => {
    assert.deepEqual(decodeEdgeProgress(wire(encodeEdgeProgress({ edge: 2, bytes: 2 ** 40 }))), { edge: 2, bytes: 2 ** 40 });
  });

  test('an edge Start, an edge MintKey, EdgeConnect and its replies, EdgeDigest and RemoteStageEnd', () => {
    const request = { kind: StartKind.Edge as const, run: RUN, edge: 3, stdin: 7 };
    assert.deepEqual(decodeEdgeRequest(wire(encodeEdgeRequest(request))), request);
    const mint = { run: RUN, edge: 0, lifetimeSeconds: 600 };
    assert.deepEqual(decodeEdgeMintRequest(wire(encodeEdgeMintRequest(mint))), mint);
    const connect = { edge: 1, route: EdgeRoute.Direct as const, host: '127.0.0.3', port: 7020, hostKey: 'ssh-ed25519 AAAA host', key: '-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n' };
    assert.deepEqual(decodeEdgeConnect(wire(encodeEdgeConnect(connect))), connect);
    // A direct EdgeConnect goes without a route field (as before routes were named); one that names it means the same.
    assert.equal(encodeEdgeConnect(connect).some(([name]) => name === Field.route), false);
    assert.deepEqual(decodeEdgeConnect(wire([...encodeEdgeConnect(connect), [Field.route, 'direct']])), connect);
    const relayed = { edge: 4, route: EdgeRoute.Controller as const };
    assert.deepEqual(decodeEdgeConnect(wire(encodeEdgeConnect(relayed))), relayed);
    assert.deepEqual(encodeEdgeConnect(relayed), [[Field.edge, '4'], [Field.route, 'controller']]);
    const connected = { edge: 1, status: EdgeConnectStatus.Connected as const };
    assert.deepEqual(decodeEdgeConnectReply(wire(encodeEdgeConnectReply(connected)), isErrorCode), connected);
    const refusedReply = { edge: 2, status: EdgeConnectStatus.Refused as const, code: ErrorCode.ConnectFailed, message: 'cannot connect to 127.0.0.3 port 7020' };
    assert.deepEqual(decodeEdgeConnectReply(wire(encodeEdgeConnectReply(refusedReply)), isErrorCode), refusedReply);
    assert.deepEqual(decodeEdgeDigest(wire(encodeEdgeDigest({ bytes: 2 ** 40, sha256: SHA }))), { bytes: 2 ** 40, sha256: SHA });
    assert.deepEqual(decodeEdgeDigest(wire(encodeEdgeDigest({ edge: 5, bytes: 0, sha256: SHA }))), { edge: 5, bytes: 0, sha256: SHA });
    assert.equal(decodeRemoteStageEnd(wire(encodeRemoteStageEnd(12))), 12);
  });

  test('an EdgeConnect with the rate its connection is held to, and one refused out of bounds or on a relayed edge', () => {
    const unlimited = { edge: 1, route: EdgeRoute.Direct as const, host: '127.0.0.3', port: 7020, hostKey: 'ssh-ed25519 AAAA host', key: 'k' };
    const connect = { ...unlimited, limitRate: 1024 * 1024 };
    assert.deepEqual(decodeEdgeConnect(wire(encodeEdgeConnect(connect))), connect);
    assert.equal(decodeEdgeConnect(wire(encodeEdgeConnect(unlimited))).route === EdgeRoute.Direct && !('limitRate' in decodeEdgeConnect(wire(encodeEdgeConnect(unlimited)))), true);
    const withRate = (rate: string): FieldList => wire([...encodeEdgeConnect(unlimited), [Field.limitRate, rate]]);
    assert.equal(decodeEdgeConnect(withRate(String(MIN_EDGE_RATE))).route === EdgeRoute.Direct, true);
    for (const rate of ['0', '1023', String(MAX_EDGE_RATE + 1), '1.5M', '']) refused(() => decodeEdgeConnect(withRate(rate)), ErrorCode.BadFields);
    refused(() => decodeEdgeConnect(wire([[Field.edge, '4'], [Field.route, 'controller'], [Field.limitRate, '2048']])));
  });

  test("each end's EdgeReport: the writer's count and digest, the reader's with its verdict and the writer's digest", () => {
    const reports: EdgeReport[] = [
      { edge: 0, direction: 'out', bytes: 10, sha256: SHA },
      { edge: 0, direction: 'in', bytes: 10, sha256: SHA, status: EdgeStatus.Intact, sent: { bytes: 10, sha256: SHA } },
      { edge: 1, direction: 'in', bytes: 4, sha256: '', status: EdgeStatus.Incomplete },
    ];
    for (const report of reports) assert.deepEqual(decodeEdgeReport(wire(encodeEdgeReport(report))), report);
  });

  test("a part's recipe fields are a recipe Start's", () => {
    assert.deepEqual(decodeRecipeSource(wire([[Field.source, 'offsite.rcp'], [Field.recipe, '@a echo\n']])), { source: 'offsite.rcp', text: '@a echo\n' });
  });
});

describe('multi-host packets: refusals', () => {
  test('a run id that is not 32 lower-case hex digits', () => {
    for (const run of ['', 'ABCDEF0123456789abcdef0123456789', `${RUN}0`, RUN.slice(1), '../etc/passwd']) {
      refused(() => decodePartFields(wire([[Field.run, run], [Field.machine, 'a']])));
    }
  });

  test('a progress field other than 1, and an EdgeProgress without its edge or with a count that is no count', () => {
    refused(() => decodePartFields(wire([[Field.run, RUN], [Field.machine, 'a'], [Field.progress, 'yes']])));
    refused(() => decodePartFields(wire([[Field.run, RUN], [Field.machine, 'a'], [Field.progress, '1'], [Field.progress, '1']])), ErrorCode.BadFields);
    refused(() => decodeEdgeProgress(wire([[Field.bytes, '5']])), ErrorCode.BadFields);
    for (const bytes of ['-1', '1.5', 'many']) refused(() => decodeEdgeProgress(wire([[Field.edge, '0'], [Field.bytes, bytes]])), ErrorCode.BadFields);
  });

  test('a part with no machine, a malformed one, one named twice, or too many', () => {
    refused(() => decodePartFields(wire([[Field.run, RUN]])));
    for (const machine of ['-x', 'a b', 'a/b', '[zz]', 'a:', 'a:123456', '@a']) {
      refused(() => decodePartFields(wire([[Field.run, RUN], [Field.machine, machine]])));
    }
    refused(() => decodePartFields(wire([[Field.run, RUN], [Field.machine, 'a'], [Field.machine, 'a']])));
    refused(() => decodePartFields(wire([[Field.run, RUN], ...Array.from({ length: 65 }, (_, index): Entry => [Field.machine, `m${index}`])])));
  });

  test('a missing or malformed field of an edge Start, MintKey or EdgeConnect', () => {
    refused(() => decodeEdgeRequest(wire([[Field.kind, StartKind.Recipe], [Field.run, RUN], [Field.edge, '0'], [Field.stdin, '1']])));
    refused(() => decodeEdgeRequest(wire([[Field.kind, StartKind.Edge], [Field.run, RUN], [Field.stdin, '1']])), ErrorCode.BadFields);
    refused(() => decodeEdgeRequest(wire([[Field.kind, StartKind.Edge], [Field.run, RUN], [Field.edge, '-1'], [Field.stdin, '1']])), ErrorCode.BadFields);
    refused(() => decodeEdgeMintRequest(wire([[Field.kind, StartKind.Edge], [Field.run, RUN], [Field.edge, '0'], [Field.lifetime, '0']])), ErrorCode.BadFields);
    const connect = (host: string, port: string): Entry[] => [[Field.edge, '0'], [Field.host, host], [Field.port, port], [Field.hostKey, 'k'], [Field.key, 'p']];
    refused(() => decodeEdgeConnect(wire(connect('', '7020'))));
    refused(() => decodeEdgeConnect(wire(connect('a b', '7020'))));
    refused(() => decodeEdgeConnect(wire(connect('h'.repeat(256), '7020'))));
    refused(() => decodeEdgeConnect(wire(connect('host', '0'))), ErrorCode.BadFields);
    refused(() => decodeEdgeConnect(wire(connect('host', '65536'))), ErrorCode.BadFields);
    refused(() => decodeEdgeConnect(wire([...connect('host', '7020'), [Field.route, 'carrier-pigeon']])));
    refused(() => decodeEdgeConnect(wire([[Field.route, EdgeRoute.Controller]])), ErrorCode.BadFields);
    refused(() => decodeEdgeConnect(wire([[Field.edge, '0'], [Field.route, EdgeRoute.Controller], [Field.host, '127.0.0.3']])));
    refused(() => decodeEdgeDigest(wire([[Field.edge, 'x'], [Field.bytes, '1'], [Field.sha256, SHA]])), ErrorCode.BadFields);
  });

  test('a digest that is not 64 lower-case hex digits, an unknown direction or status', () => {
    refused(() => decodeEdgeDigest(wire([[Field.bytes, '1'], [Field.sha256, 'A'.repeat(64)]])));
    refused(() => decodeEdgeDigest(wire([[Field.bytes, '1'], [Field.sha256, 'a'.repeat(63)]])));
    refused(() => decodeEdgeReport(wire([[Field.edge, '0'], [Field.direction, 'sideways'], [Field.bytes, '1'], [Field.sha256, SHA]])));
    refused(() => decodeEdgeReport(wire([[Field.edge, '0'], [Field.direction, 'in'], [Field.bytes, '1'], [Field.sha256, SHA], [Field.status, 'fine']])));
    refused(() => decodeEdgeConnectReply(wire([[Field.edge, '0'], [Field.status, 'maybe']]), isErrorCode));
  });

  test('an unknown error code in a refused EdgeConnect reads as NP_INTERNAL', () => {
    const reply = decodeEdgeConnectReply(wire([[Field.edge, '0'], [Field.status, 'refused'], [Field.code, 'NP_FROM_THE_FUTURE'], [Field.message, 'x']]), isErrorCode);
    assert.equal(reply.status === EdgeConnectStatus.Refused && reply.code, ErrorCode.Internal);
  });
});

describe('edgeVerdict', () => {
  test('intact only when complete and both count and digest agree', () => {
    const delivered = { bytes: 5, sha256: SHA, complete: true };
    assert.equal(edgeVerdict(delivered, { bytes: 5, sha256: SHA }), EdgeStatus.Intact);
    assert.equal(edgeVerdict(delivered, { bytes: 5, sha256: 'b'.repeat(64) }), EdgeStatus.Mismatch);
    assert.equal(edgeVerdict(delivered, { bytes: 6, sha256: SHA }), EdgeStatus.Mismatch);
    assert.equal(edgeVerdict(delivered, undefined), EdgeStatus.Incomplete);
    assert.equal(edgeVerdict({ ...delivered, complete: false }, { bytes: 5, sha256: SHA }), EdgeStatus.Incomplete);
  });
});
