// Tests for bridges/endpoint-router: the routing both ends share, over real FIFOs and sockets. Streams the router
// opens come from a stand-in for the mux that hands out one end of an in-memory pair and records the fields.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { CLIENT_ROLES, DAEMON_ROLES, EndpointRouter, type StreamOpener } from '../../bridges/endpoint-router.js';
import { FifoSink } from '../../bridges/fifo.js';
import { decodeFields, encodeFields, type Entry } from '../../protocol/fields.js';
import { Field, StreamPurpose } from '../../protocol/wire.js';
import { waitUntil } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';
import { collect, halfClosePair, mkfifo, readRound, writeInto } from '../helpers/endpoints.js';

const TIMEOUT_MS = 60_000;

interface Opened {
  fields: Record<string, string>;
  far: Duplex;
}

function recordingOpener(): { mux: StreamOpener; opened: Opened[] } {
  const opened: Opened[] = [];
  const mux = {
    openStream(entries: readonly Entry[] = []) {
      const { near, far } = halfClosePair();
      opened.push({ fields: Object.fromEntries(entries), far });
      return near;
    },
  } as StreamOpener;
  return { mux, opened };
}

function fields(entries: readonly Entry[]) {
  return decodeFields(encodeFields(entries));
}

function ignoreErrors(): void {}

test('the client takes exactly the streams the daemon opens, and the daemon those the client opens', () => {
  assert.equal(CLIENT_ROLES.writesFifo, DAEMON_ROLES.readsFifo);
  assert.equal(CLIENT_ROLES.connects, DAEMON_ROLES.listens);
  assert.equal(DAEMON_ROLES.writesFifo, CLIENT_ROLES.readsFifo);
  assert.equal(DAEMON_ROLES.connects, CLIENT_ROLES.listens);
});

test('a stream whose purpose is no endpoint of this end is left to the caller', () => {
  const router = new EndpointRouter(DAEMON_ROLES);
  const { near } = halfClosePair();
  assert.equal(router.route(near, fields([[Field.purpose, 'stdin']])), false);
  assert.equal(router.route(near, fields([[Field.purpose, StreamPurpose.OutFifo], [Field.endpoint, '0']])), false);
  assert.equal(near.destroyed, false);
});

test('a round the peer sends is written into the FIFO of its number', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const router = new EndpointRouter(CLIENT_ROLES);
  t.after(() => router.close());
  for (const name of ['a', 'b']) {
    mkfifo(join(dir, name));
    router.addSink(new FifoSink(join(dir, name), ignoreErrors));
  }
  const round = halfClosePair();
  round.far.end('into b\n');
  assert.equal(router.route(round.near, fields([[Field.purpose, StreamPurpose.OutFifo], [Field.endpoint, '1'], [Field.round, '0']])), true);
  assert.equal((await readRound(t, join(dir, 'b'))).toString(), 'into b\n');
});

test('a stream for an endpoint number nobody named is dropped', () => {
  const router = new EndpointRouter(DAEMON_ROLES);
  const stray = halfClosePair().near;
  assert.equal(router.route(stray, fields([[Field.purpose, StreamPurpose.ConnectSocket], [Field.endpoint, '3']])), true);
  assert.ok(stray.destroyed);
});

test('a connecting stream goes to the connector of its number', () => {
  const router = new EndpointRouter(DAEMON_ROLES);
  const reached: string[] = [];
  router.addConnector(() => reached.push('first'));
  router.addConnector(() => reached.push('second'));
  assert.equal(router.route(halfClosePair().near, fields([[Field.purpose, StreamPurpose.ConnectSocket], [Field.endpoint, '1']])), true);
  assert.deepEqual(reached, ['second']);
});

test('each round of a FIFO read here opens a stream naming the endpoint and the round', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const { mux, opened } = recordingOpener();
  const router = new EndpointRouter(CLIENT_ROLES);
  t.after(() => router.close());
  for (const name of ['a', 'b']) {
    mkfifo(join(dir, name));
    router.readFifo(join(dir, name), mux, ignoreErrors);
  }
  assert.equal((await writeInto(t, join(dir, 'b'), 'from b\n').result).code, 0);
  await waitUntil('the round stream', () => opened.length === 1);
  const round = opened[0] as Opened;
  assert.deepEqual(round.fields, { [Field.purpose]: StreamPurpose.InFifo, [Field.endpoint]: '1', [Field.round]: '0' });
  assert.equal((await collect(round.far)).toString(), 'from b\n');
});

test('a connection accepted here opens a stream naming the listening endpoint', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const { mux, opened } = recordingOpener();
  const router = new EndpointRouter(DAEMON_ROLES);
  t.after(() => router.close());
  await router.listen(join(dir, 'l.sock'), mux);
  const client = connect(join(dir, 'l.sock'));
  client.on('error', ignoreErrors);
  await waitUntil('the connection stream', () => opened.length === 1);
  assert.deepEqual(opened[0]?.fields, { [Field.purpose]: StreamPurpose.ListenSocket, [Field.endpoint]: '0' });
  client.destroy();
  await router.connectionsDrained();
});

test('after close a round for a FIFO is dropped', { timeout: TIMEOUT_MS }, (t) => {
  const dir = tempDir(t);
  mkfifo(join(dir, 'in'));
  const router = new EndpointRouter(DAEMON_ROLES);
  router.addSink(new FifoSink(join(dir, 'in'), ignoreErrors));
  router.close();
  const round = halfClosePair().near;
  assert.equal(router.route(round, fields([[Field.purpose, StreamPurpose.InFifo], [Field.endpoint, '0']])), true);
  assert.ok(round.destroyed);
});
