// The daemon's side of replicated named pipes and sockets: how client paths map into the spool directory, what
// prepare() makes (and removes on failure and at close), and how rounds and connections are routed to streams.
// Real FIFOs and sockets; a stand-in for the mux that only opens in-memory streams.

import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { test } from 'node:test';
import { DaemonEndpoints, resolveDaemonPath } from '../../daemon/endpoints.js';
import { createLogger } from '../../daemon/log.js';
import { EndpointError, ErrorCode } from '../../protocol/errors.js';
import { decodeFields, encodeFields, type Entry } from '../../protocol/fields.js';
import type { Mux, MuxStream } from '../../protocol/mux.js';
import { NO_ENDPOINTS, type Endpoints } from '../../protocol/session.js';
import { Field, StreamPurpose } from '../../protocol/wire.js';
import { waitUntil } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';
import { collect, halfClosePair, mkfifo, readRound, specialFilesIn, startEchoService, writeInto } from '../helpers/endpoints.js';

const TIMEOUT_MS = 60_000;
const log = createLogger('error');

function isEndpointError(error: unknown): boolean {
  assert.ok(error instanceof EndpointError, String(error));
  assert.equal(error.code, ErrorCode.Endpoint);
  return true;
}

/** Stands in for the mux: every stream the daemon opens is one end of an in-memory pair; the far end is recorded. */
function recordingMux(): { mux: Mux; opened: { fields: Record<string, string>; far: Duplex }[] } {
  const opened: { fields: Record<string, string>; far: Duplex }[] = [];
  const mux = {
    openStream(entries: readonly Entry[]): Duplex {
      const { near, far } = halfClosePair();
      opened.push({ fields: Object.fromEntries(entries), far });
      return near;
    },
  } as unknown as Mux;
  return { mux, opened };
}

function endpoints(parts: Partial<Endpoints>): Endpoints {
  return { ...NO_ENDPOINTS, ...parts } as Endpoints;
}

function fields(entries: readonly Entry[]) {
  return decodeFields(encodeFields(entries));
}

test('resolveDaemonPath: absolute paths as they are, relative ones inside the spool directory only', () => {
  const spool = '/var/spool/np';
  assert.equal(resolveDaemonPath('/tmp/a/../b', spool), '/tmp/b');
  assert.equal(resolveDaemonPath('in', spool), '/var/spool/np/in');
  assert.equal(resolveDaemonPath('./sub/in', spool), '/var/spool/np/sub/in');
  for (const path of ['..', '../etc/passwd', 'a/../../b', 'a/..']) assert.throws(() => resolveDaemonPath(path, spool), isEndpointError, path);
  assert.throws(() => resolveDaemonPath('in\0x', spool), isEndpointError);
});

test('prepare makes relative FIFOs and sockets in a new 0700 spool directory and close removes them', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = join(tempDir(t), 'spool');
  const { mux } = recordingMux();
  const prepared = await DaemonEndpoints.prepare(endpoints({ inFifos: ['in'], outFifos: ['out'], listenSockets: ['listen.sock'] }), spool, mux, log);
  t.after(() => prepared.close());
  assert.equal(lstatSync(spool).mode & 0o777, 0o700);
  assert.ok(lstatSync(join(spool, 'in')).isFIFO());
  assert.ok(lstatSync(join(spool, 'out')).isFIFO());
  const socket = lstatSync(join(spool, 'listen.sock'));
  assert.ok(socket.isSocket());
  assert.equal(socket.mode & 0o777, 0o600);
  prepared.close();
  assert.deepEqual(specialFilesIn(spool), []);
});

test('close keeps a FIFO that was there before', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const existing = join(dir, 'existing');
  mkfifo(existing);
  const { mux } = recordingMux();
  const prepared = await DaemonEndpoints.prepare(endpoints({ inFifos: [existing] }), join(dir, 'spool'), mux, log);
  prepared.close();
  assert.ok(lstatSync(existing).isFIFO());
  assert.equal(existsSync(join(dir, 'spool')), false, 'no spool directory is made when nothing goes there');
});

test('a path that cannot be used fails prepare with NP_ENDPOINT and leaves nothing behind', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const spool = join(dir, 'spool');
  const file = join(dir, 'plain');
  writeFileSync(file, 'a regular file');
  const live = join(dir, 'live.sock');
  await startEchoService(t, live);
  const cases: [string, Endpoints][] = [
    ['FIFO under a regular file', endpoints({ inFifos: ['first'], outFifos: [join(file, 'x')] })],
    ['regular file as FIFO', endpoints({ inFifos: ['first', file] })],
    ['missing directory', endpoints({ outFifos: ['first', join(dir, 'missing', 'x')] })],
    ['relative path leaving the spool', endpoints({ inFifos: ['first', '../escape'] })],
    ['live socket', endpoints({ inFifos: ['first'], listenSockets: ['mine.sock', live] })],
    ['over-long listen socket', endpoints({ inFifos: ['first'], listenSockets: [join(dir, 'x'.repeat(120))] })],
    ['over-long connect socket', endpoints({ inFifos: ['first'], connectSockets: [join(dir, 'x'.repeat(120))] })],
  ];
  for (const [what, request] of cases) {
    const { mux } = recordingMux();
    await assert.rejects(DaemonEndpoints.prepare(request, spool, mux, log), isEndpointError, what);
    assert.deepEqual(specialFilesIn(spool), [], `${what}: left behind`);
  }
  assert.ok(lstatSync(file).isFile());
  assert.ok(lstatSync(live).isSocket(), 'the live socket is left alone');
});

test('route: an in-FIFO round reaches the FIFO reader; other purposes are not the endpoints\' business', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = join(tempDir(t), 'spool');
  mkdirSync(spool);
  const { mux } = recordingMux();
  const prepared = await DaemonEndpoints.prepare(endpoints({ inFifos: ['in'] }), spool, mux, log);
  t.after(() => prepared.close());
  assert.equal(prepared.route(halfClosePair().near as unknown as MuxStream, fields([[Field.purpose, 'stdin']])), false);
  const round = halfClosePair();
  round.far.end('one round\n');
  assert.equal(prepared.route(round.near as unknown as MuxStream, fields([[Field.purpose, StreamPurpose.InFifo], [Field.endpoint, '0'], [Field.round, '0']])), true);
  assert.equal((await readRound(t, join(spool, 'in'))).toString(), 'one round\n');
  // An endpoint number the Start did not name: the stream is dropped.
  const stray = halfClosePair().near;
  assert.equal(prepared.route(stray as unknown as MuxStream, fields([[Field.purpose, StreamPurpose.InFifo], [Field.endpoint, '5']])), true);
  assert.ok(stray.destroyed);
});

test('route: a connect-socket stream becomes a connection to the service on the daemon host', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const service = join(dir, 'service.sock');
  await startEchoService(t, service);
  const { mux } = recordingMux();
  const prepared = await DaemonEndpoints.prepare(endpoints({ connectSockets: [service] }), join(dir, 'spool'), mux, log);
  t.after(() => prepared.close());
  const { near, far } = halfClosePair();
  assert.equal(prepared.route(near as unknown as MuxStream, fields([[Field.purpose, StreamPurpose.ConnectSocket], [Field.endpoint, '0']])), true);
  const echoed = collect(far);
  far.end('through the daemon\n');
  assert.equal((await echoed).toString(), 'through the daemon\n');
});

test('an out-FIFO round and a listen-socket connection each open a stream naming their endpoint', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = join(tempDir(t), 'spool');
  const { mux, opened } = recordingMux();
  const prepared = await DaemonEndpoints.prepare(endpoints({ outFifos: ['a', 'b'], listenSockets: ['l.sock'] }), spool, mux, log);
  t.after(() => prepared.close());
  assert.equal((await writeInto(t, join(spool, 'b'), 'into b\n').result).code, 0);
  await waitUntil('the out-FIFO stream', () => opened.length === 1);
  const outRound = opened[0] as { fields: Record<string, string>; far: Duplex };
  assert.deepEqual(outRound.fields, { [Field.purpose]: StreamPurpose.OutFifo, [Field.endpoint]: '1', [Field.round]: '0' });
  assert.equal((await collect(outRound.far)).toString(), 'into b\n');
  const client = connect(join(spool, 'l.sock'));
  client.on('error', () => undefined);
  await waitUntil('the listen-socket stream', () => opened.length === 2);
  assert.deepEqual(opened[1]?.fields, { [Field.purpose]: StreamPurpose.ListenSocket, [Field.endpoint]: '0' });
  client.destroy();
  // flush() settles at once when every writer has gone.
  await prepared.flush();
});
