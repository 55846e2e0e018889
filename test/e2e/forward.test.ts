// End to end: plumb -N, as ssh -N: no command, the named pipes and sockets joined until plumb is interrupted, which
// ends it with status 0 and removes what it and the daemon made. Asked without a socket or pipe, or with a command,
// it is a usage error.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { reportedCode, startNetplumb } from '../helpers/daemon.js';
import { connectWhenListening, startEchoService } from '../helpers/endpoints.js';
import { waitUntil } from '../helpers/processes.js';

const TIMEOUT_MS = 60_000;

/** One round trip through a Unix socket: writes `text`, half-closes, resolves with all that came back. */
async function roundTrip(path: string, text: string): Promise<string> {
  const socket = await connectWhenListening(path, 20_000, { allowHalfOpen: true });
  return await new Promise((resolve, reject) => {
    let reply = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (reply += chunk));
    socket.on('end', () => {
      socket.end();
      resolve(reply);
    });
    socket.on('error', reject);
    socket.end(text);
  });
}

test('-N -local-socket: connections reach the remote service for as long as plumb runs; SIGINT ends it with 0', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const service = join(np.dir, 'remote-service.sock');
  const echo = await startEchoService(t, service);
  const local = join(np.dir, 'local.sock');
  const plumb = np.spawnPlumb([], { options: ['-N', `-local-socket=${local}:${service}`] });
  // Several connections, one after another: the forward stays open without any command to keep it.
  assert.equal(await roundTrip(local, 'first'), 'first');
  assert.equal(await roundTrip(local, 'second'), 'second');
  assert.equal(echo.accepted(), 2);
  plumb.child.kill('SIGINT');
  const result = await plumb.result;
  assert.equal(result.code, 0, result.stderr);
  assert.doesNotMatch(result.stderr, /NP_/);
  assert.equal(existsSync(local), false, 'plumb removes its listening socket');
  // The daemon serves on.
  const after = await np.plumb(['true']);
  assert.equal(after.code, 0, after.stderr);
});

test('-N -socket: the daemon listens until plumb is told to stop (SIGTERM), and then removes its socket', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const service = join(np.dir, 'local-service.sock');
  await startEchoService(t, service);
  const remote = join(np.dir, 'daemon-side.sock');
  const plumb = np.spawnPlumb([], { options: ['-N', `-socket=${remote}:${service}`] });
  assert.equal(await roundTrip(remote, 'through the daemon'), 'through the daemon');
  plumb.child.kill('SIGTERM');
  const result = await plumb.result;
  assert.equal(result.code, 0, result.stderr);
  await waitUntil('the daemon removing its socket', () => !existsSync(remote), 10_000);
});

test('-N with a command, a recipe or exported variables, or with nothing to forward, is a usage error', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const cases: Array<[string[], string[], RegExp]> = [
    [['-N'], [], /-N keeps named pipes and sockets joined: give -socket, -local-socket, -infifo or -outfifo/],
    [['-N', '-socket=a.sock:b.sock'], ['true'], /-N runs no command/],
    [['-N', '-socket=a.sock:b.sock', '-t'], [], /-N runs no command/],
    [['-N', '-socket=a.sock:b.sock', '-export=HOME'], [], /-N runs no command/],
  ];
  for (const [options, command, message] of cases) {
    const result = await np.plumb(command, { options });
    assert.equal(result.code, 255, `${options.join(' ')}: ${result.stderr}`);
    assert.equal(reportedCode(result.stderr), 'NP_USAGE');
    assert.match(result.stderr, message);
  }
});
