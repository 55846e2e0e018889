// End to end: the keys and requests of recipes across machines, against a real daemon, from a hand-driven controller
// (the project's own handshake and mux, no plumb manners): an edge key is good once and only for its edge, every key
// of a part is gone with the part, a part is a controller's alone, and Go, EdgeConnect and edge keys come only after a
// part is ready, and an edge relayed through the controller comes on the part's own connection. The daemon keeps
// serving through all of it.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { finished } from 'node:stream/promises';
import { test } from 'node:test';
import { dialEdge } from '../../bridges/edge-dial.js';
import { ErrorCode, isErrorCode } from '../../protocol/errors.js';
import { encodePrivateKeyPem, generateIdentity } from '../../protocol/keys.js';
import { resolveLimits } from '../../protocol/limits.js';
import { decodeEdgeConnectReply, decodeEdgeDigest, encodeEdgeConnect, encodeEdgeMintRequest } from '../../protocol/multi-host.js';
import { decodeMintReply, decodeStartReply, encodeStartRequest, NO_ENDPOINTS, type MintedKey } from '../../protocol/session.js';
import { EdgeConnectStatus, EdgeRoute, Field, MintStatus, PacketType, StartKind, StartStatus } from '../../protocol/wire.js';
import { startNetplumb } from '../helpers/daemon.js';
import { startControllerNetplumb } from '../helpers/one-time-keys.js';
import { waitUntil } from '../helpers/processes.js';
import { openRawSession, type RawSession } from '../helpers/raw-session.js';

const TIMEOUT_MS = 120_000;
const RUN = 'c0ffee00c0ffee00c0ffee00c0ffee00';
/** Two edges read on this machine (y): edge 0 into label l, edge 1 into label m. */
const RECIPE = '@x echo a >%l &\n@x echo b >%m &\n@y l: cat &\n@y m: cat\n';

/** Sends Start kind=part for `machine` of `text` (default: y of RECIPE); resolves with the daemon's reply. */
async function startPart(raw: RawSession, machine = 'y', text = RECIPE): Promise<ReturnType<typeof decodeStartReply>> {
  const open = (purpose: string): number => {
    const stream = raw.mux.openStream([[Field.purpose, purpose]]);
    // Its errors only echo the connection's end, which the test looks at itself.
    stream.on('error', () => undefined);
    return stream.id;
  };
  const streams = { stdin: open('stdin'), stdout: open('stdout'), stderr: open('stderr') };
  raw.connection.sendFields(PacketType.Start, encodeStartRequest({ kind: StartKind.Part, run: RUN, source: 'parts.rcp', text, machines: [machine], env: [], endpoints: NO_ENDPOINTS, ...streams }));
  return decodeStartReply(await raw.nextPacket(PacketType.Start), isErrorCode);
}

async function mintEdgeKey(raw: RawSession, edge: number): Promise<ReturnType<typeof decodeMintReply>> {
  raw.connection.sendFields(PacketType.MintKey, encodeEdgeMintRequest({ run: RUN, edge, lifetimeSeconds: 60 }));
  return decodeMintReply(await raw.nextPacket(PacketType.MintKey), isErrorCode);
}

function keyOf(reply: ReturnType<typeof decodeMintReply>): MintedKey {
  assert.equal(reply.status, MintStatus.Minted, JSON.stringify(reply));
  if (reply.status !== MintStatus.Minted) throw new Error('not minted');
  return reply.key;
}

/** Delivers `edge` with the key, as a writing daemon would; resolves with the refusal's code, or undefined when accepted. */
async function deliver(port: number, hostKeyLine: string, key: MintedKey, edge: number): Promise<string | undefined> {
  try {
    const link = await dialEdge(RUN, { edge, host: '127.0.0.1', port, hostKey: hostKeyLine, key: key.privateKeyPem }, { limits: resolveLimits(), connectTimeoutMs: 10_000 });
    link.close();
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

test('an edge key is good once and only for its own edge, and every key of a part is gone with the part', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const hostKeyLine = readFileSync(env.np.hostKey.publicFile, 'utf8').trim();
  const raw = await openRawSession(t, env.np);
  assert.deepEqual(await startPart(raw), { status: StartStatus.Ready });

  const first = keyOf(await mintEdgeKey(raw, 0));
  assert.equal(await deliver(env.np.daemon.port, hostKeyLine, first, 1), ErrorCode.NotPermitted, 'a key of edge 0 delivers no other edge');
  const second = keyOf(await mintEdgeKey(raw, 0));
  assert.equal(await deliver(env.np.daemon.port, hostKeyLine, second, 0), undefined);
  assert.equal(await deliver(env.np.daemon.port, hostKeyLine, second, 0), ErrorCode.NotAuthorized, 'a used key is spent');

  const unused = keyOf(await mintEdgeKey(raw, 1));
  // An edge this machine does not read gets no key.
  raw.connection.sendFields(PacketType.MintKey, encodeEdgeMintRequest({ run: RUN, edge: 7, lifetimeSeconds: 60 }));
  const refused = decodeMintReply(await raw.nextPacket(PacketType.MintKey), isErrorCode);
  assert.equal(refused.status === MintStatus.Refused && refused.code, ErrorCode.BadRequest);

  // The controller goes: its part ends, and the key it never used with it.
  raw.connection.close();
  await raw.closed;
  // The daemon ends the part once it sees the connection go: a moment after the close here.
  let code: string | undefined;
  for (let attempt = 0; attempt < 20; attempt++) {
    code = await deliver(env.np.daemon.port, hostKeyLine, unused, 1);
    if (code === ErrorCode.NotAuthorized) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(code, ErrorCode.NotAuthorized);
  const after = await env.np.plumb(['true']);
  assert.equal(after.code, 0, after.stderr);
});

test("a part is a controller's alone, and Go, EdgeConnect and edge keys come only after one is ready", { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const plain = await openRawSession(t, np);
  const reply = await startPart(plain);
  assert.equal(reply.status === StartStatus.Refused && reply.code, ErrorCode.NotPermitted);

  const env = await startControllerNetplumb(t);
  const early = await openRawSession(t, env.np);
  const mint = await mintEdgeKey(early, 0);
  assert.equal(mint.status === MintStatus.Refused && mint.code, ErrorCode.BadRequest);
  early.connection.sendFields(PacketType.Go, []);
  // A protocol error ends the connection; the peer is not told which (PROTOCOL.md section 11), the log says it.
  await early.closed;
  await env.np.daemon.waitForLog(/code=NP_UNEXPECTED_PACKET/, 10_000);
  const after = await env.np.plumb(['true']);
  assert.equal(after.code, 0, after.stderr);
});

test('a second EdgeConnect for one edge is refused, and the daemon goes on serving', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const hostKeyLine = readFileSync(env.np.hostKey.publicFile, 'utf8').trim();
  const raw = await openRawSession(t, env.np);
  assert.deepEqual(await startPart(raw, 'x'), { status: StartStatus.Ready });
  // Aimed at a listener that accepts and then says nothing: the first dial hangs in its handshake while the second comes.
  const accepted: Socket[] = [];
  const silent = createServer((socket) => {
    socket.on('error', () => undefined);
    accepted.push(socket);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as AddressInfo).port;
  const key = encodePrivateKeyPem(generateIdentity('ed25519', 'test edge key'));
  const connect = encodeEdgeConnect({ edge: 0, route: EdgeRoute.Direct, host: '127.0.0.1', port, hostKey: hostKeyLine, key });
  raw.connection.sendFields(PacketType.EdgeConnect, connect);
  raw.connection.sendFields(PacketType.EdgeConnect, connect);
  const second = decodeEdgeConnectReply(await raw.nextPacket(PacketType.EdgeConnect), isErrorCode);
  assert.equal(second.status === 'refused' && second.code, ErrorCode.BadRequest, 'a repeat is refused before it is dialled');
  // Let the first dial go: its connection ends, and so does the dial, refused.
  for (const socket of accepted) socket.destroy();
  silent.close();
  await waitUntil('the first reply', () => raw.packets.filter((packet) => packet.type === PacketType.EdgeConnect).length === 2, 20_000);
  const after = await env.np.plumb(['true']);
  assert.equal(after.code, 0, after.stderr);
  assert.ok(env.np.daemon.running);
});

test('EdgeConnect route=controller: the writing part opens the edge to its controller, with its digest; refused for an edge it does not write or one connected already', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const raw = await openRawSession(t, env.np);
  assert.deepEqual(await startPart(raw, 'x'), { status: StartStatus.Ready });
  const ask = async (entries: ReturnType<typeof encodeEdgeConnect>): Promise<ReturnType<typeof decodeEdgeConnectReply>> => {
    raw.connection.sendFields(PacketType.EdgeConnect, entries);
    return decodeEdgeConnectReply(await raw.nextPacket(PacketType.EdgeConnect), isErrorCode);
  };
  assert.deepEqual(await ask(encodeEdgeConnect({ edge: 0, route: EdgeRoute.Controller })), { edge: 0, status: EdgeConnectStatus.Connected });
  // The stream came first, on the same connection, named by its purpose and edge.
  assert.equal(raw.opened.length, 1);
  const relayed = raw.opened[0] as RawSession['opened'][number];
  assert.deepEqual([relayed.fields.optional(Field.purpose), relayed.fields.optional(Field.edge)], ['edge', '0']);
  for (const entries of [
    encodeEdgeConnect({ edge: 0, route: EdgeRoute.Controller }),
    encodeEdgeConnect({ edge: 0, route: EdgeRoute.Direct, host: '127.0.0.1', port: 9, hostKey: 'k', key: 'p' }),
    encodeEdgeConnect({ edge: 7, route: EdgeRoute.Controller }),
  ]) {
    const reply = await ask(entries);
    assert.equal(reply.status === EdgeConnectStatus.Refused && reply.code, ErrorCode.BadRequest, JSON.stringify(reply));
  }
  assert.equal(raw.opened.length, 1, 'no stream for a refused request');
  raw.connection.sendFields(PacketType.Go, []);
  const digest = decodeEdgeDigest(await raw.nextPacket(PacketType.EdgeDigest));
  // It may have ended already: finished() settles for a stream whose end has come and gone.
  await finished(relayed.stream, { writable: false });
  assert.equal(relayed.bytes().toString(), 'a\n');
  assert.deepEqual(digest, { edge: 0, bytes: 2, sha256: createHash('sha256').update('a\n').digest('hex') });
  const after = await env.np.plumb(['true']);
  assert.equal(after.code, 0, after.stderr);
});

test('a part whose controller leaves while it is readied is let go: the run id can be held again', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const fifoRecipe = 'fifo f\n@y cat <@f &\n@y echo x >@f\n@x echo a >%l &\n@y l: cat\n';
  const first = await openRawSession(t, env.np);
  const open = (purpose: string): number => {
    const stream = first.mux.openStream([[Field.purpose, purpose]]);
    stream.on('error', () => undefined);
    return stream.id;
  };
  const streams = { stdin: open('stdin'), stdout: open('stdout'), stderr: open('stderr') };
  first.connection.sendFields(PacketType.Start, encodeStartRequest({ kind: StartKind.Part, run: RUN, source: 'parts.rcp', text: fifoRecipe, machines: ['y'], env: [], endpoints: NO_ENDPOINTS, ...streams }));
  first.connection.close();
  await first.closed;
  let reply: ReturnType<typeof decodeStartReply> | undefined;
  for (let attempt = 0; attempt < 30; attempt++) {
    const again = await openRawSession(t, env.np);
    reply = await startPart(again, 'y', fifoRecipe);
    again.connection.close();
    await again.closed;
    if (reply.status === StartStatus.Ready) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.deepEqual(reply, { status: StartStatus.Ready });
});
