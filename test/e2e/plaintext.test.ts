// End to end: what crosses the wire, recorded by a proxy. The command, its arguments, the payload on stdin and
// the output never appear in clear; only the handshake is plaintext.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { PROTOCOL_VERSION } from '../../protocol/wire.js';
import { startNetplumb } from '../helpers/daemon.js';
import { startTamperProxy } from '../helpers/tamper-proxy.js';

const TIMEOUT_MS = 120_000;

test('command, arguments, input and output never appear in the recorded bytes', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const proxy = await startTamperProxy(t, { targetPort: np.daemon.port, record: true });
  const tag = randomBytes(6).toString('hex');
  const argument = `secret-argument-${tag}`;
  const script = `cat; echo secret-output-${tag}; echo secret-error-${tag} >&2`;
  const payload = Buffer.from(`secret-payload-${tag}\n`.repeat(2000));
  const result = await np.plumb(['sh', '-c', script, argument], { machine: proxy.address, stdin: payload });
  assert.equal(result.code, 0, result.stderr);
  // The run did carry all of them, so their absence below means something.
  assert.ok(result.stdout.equals(Buffer.concat([payload, Buffer.from(`secret-output-${tag}\n`)])));
  assert.match(result.stderr, new RegExp(`secret-error-${tag}`));

  const [connection] = proxy.connections;
  assert.ok(connection !== undefined);
  await connection.closed;
  const toDaemon = connection.recordedBytes('toDaemon');
  const toClient = connection.recordedBytes('toClient');
  assert.ok(toDaemon.length > payload.length, 'the recording holds the upload');
  // The recorder sees plaintext where there is some: the hello names the protocol in clear.
  assert.ok(toDaemon.includes(PROTOCOL_VERSION) && toClient.includes(PROTOCOL_VERSION));
  // The argv would travel as `arg=WORD` fields of the Start request, were it in clear.
  for (const secret of [tag, 'secret-', argument, script, 'cat; echo', 'arg=sh\0', 'arg=-c\0', 'kind=exec']) {
    assert.equal(toDaemon.includes(secret), false, `${JSON.stringify(secret)} went to the daemon in clear`);
    assert.equal(toClient.includes(secret), false, `${JSON.stringify(secret)} came back in clear`);
  }
});

test('the same input sent twice looks different on the wire', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const proxy = await startTamperProxy(t, { targetPort: np.daemon.port, record: true });
  const payload = Buffer.alloc(256 * 1024, 0x41);
  for (let run = 0; run < 2; run++) {
    const result = await np.plumb(['wc', '-c'], { machine: proxy.address, stdin: payload });
    assert.equal(result.code, 0, result.stderr);
  }
  const [first, second] = proxy.connections;
  assert.ok(first !== undefined && second !== undefined);
  await Promise.all([first.closed, second.closed]);
  const a = first.recordedBytes('toDaemon');
  const b = second.recordedBytes('toDaemon');
  // A run of the payload's byte as long as a data packet would show an unencrypted stream.
  const run = Buffer.alloc(64, 0x41);
  assert.equal(a.includes(run), false);
  assert.equal(b.includes(run), false);
  // Fresh keys per connection: the encrypted tails differ although the input is the same.
  assert.notDeepEqual(a.subarray(a.length - 4096), b.subarray(b.length - 4096));
});
