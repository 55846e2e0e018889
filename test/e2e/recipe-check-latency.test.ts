// End to end: the daemon's recipe check does not hold up other sessions. While 20 clients send, one right after the
// other, a 64 KiB recipe that takes the check tens of ms, another session's echo round trips through a running cat
// stay far below what 20 such checks on the daemon's event loop would cost.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { ErrorCode, NetplumbError } from '../../protocol/errors.js';
import type { SecureConnection } from '../../protocol/connection.js';
import { loadPrivateIdentity } from '../../bridges/key-files.js';
import { DEFAULT_LIMITS, StartKind } from '../../protocol/wire.js';
import { connectToDaemon } from '../../plumb-cli/client.js';
import { runRemoteCommand, type RemoteJob } from '../../plumb-cli/run.js';
import { checkRecipe } from '../../recipes/check.js';
import { type Netplumb } from '../helpers/daemon.js';
import { delay } from '../helpers/processes.js';
import { collector, startRecipeNetplumb, withinMs } from '../helpers/recipes.js';

const TIMEOUT_MS = 180_000;
const SENDERS = 20;
const SEND_GAP_MS = 5;
/** 64 KiB of one-letter words: the whole text is parsed before it is refused for maxArgsPerCommand. */
const PATHOLOGICAL = `echo${' a'.repeat(32_766)}`;

async function connect(np: Netplumb): Promise<SecureConnection> {
  return connectToDaemon(
    { name: np.daemon.address, host: '127.0.0.1', port: np.daemon.port },
    {
      identity: loadPrivateIdentity(np.client.privateFile),
      knownHostsFile: join(np.home, 'known_hosts'),
      acceptNew: false,
      connectTimeoutMs: 30_000,
      note: () => undefined,
    },
  );
}

function run(connection: SecureConnection, job: RemoteJob, stdin: Readable, stdout: Writable): Promise<number> {
  return runRemoteCommand(connection, {
    job,
    stdio: { stdin, stdout, stderr: collector().stream },
    signals: new EventEmitter(),
    maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
    initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
    maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
  });
}

function sendRecipe(connection: SecureConnection): Promise<number> {
  return run(connection, { kind: StartKind.Recipe, text: PATHOLOGICAL, source: 'slow.rcp' }, Readable.from([]), collector().stream);
}

/** A remote cat on its own connection; roundTrip() sends a line and resolves with the ms until it came back. */
async function startEcho(np: Netplumb): Promise<{ roundTrip(): Promise<number>; end(): Promise<number> }> {
  const stdin = new PassThrough();
  let seen = '';
  let waiting: (() => void) | undefined;
  const stdout = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      seen += chunk.toString();
      waiting?.();
      callback();
    },
  });
  const exited = run(await connect(np), { kind: StartKind.Exec, argv: ['cat'] }, stdin, stdout);
  let round = 0;
  const roundTrip = async (): Promise<number> => {
    const line = `round ${round++}\n`;
    const started = performance.now();
    const back = new Promise<void>((resolve) => {
      waiting = () => {
        if (seen.includes(line)) resolve();
      };
    });
    stdin.write(line);
    await withinMs(back, 60_000, 'an echo');
    return performance.now() - started;
  };
  return { roundTrip, end: () => (stdin.end(), exited) };
}

test('20 recipes of 64 KiB sent in a row do not hold up another session', { timeout: TIMEOUT_MS }, async (t) => {
  const { np } = await startRecipeNetplumb(t);
  // One recipe first, so the checker's worker has started (once in the daemon's life): what is measured is the checks.
  await assert.rejects(sendRecipe(await connect(np)), { code: ErrorCode.RecipeTooLarge });
  const echo = await startEcho(np);
  // The cat is running and the paths are warm once a few lines came back.
  for (let round = 0; round < 5; round++) await echo.roundTrip();
  const idle: number[] = [];
  for (let round = 0; round < 20; round++) idle.push(await echo.roundTrip());

  // What one check costs here once warm, so what 20 of them would hold an event loop for.
  const checkMs: number[] = [];
  for (let round = 0; round < 8; round++) {
    const started = performance.now();
    assert.throws(() => checkRecipe(PATHOLOGICAL, { sourceName: 'slow.rcp', spoolDir: '/spool' }), { code: ErrorCode.RecipeTooLarge });
    if (round >= 3) checkMs.push(performance.now() - started);
  }
  const oneCheckMs = [...checkMs].sort((a, b) => a - b)[2] as number;
  const onEventLoopMs = SENDERS * oneCheckMs;

  // Every sender is connected before the first recipe goes; then one goes every SEND_GAP_MS, faster than the
  // checks can keep up with, so on an event loop they would run back to back.
  const connections = await Promise.all(Array.from({ length: SENDERS }, () => connect(np)));
  let settled = 0;
  const send = (connection: SecureConnection): Promise<string> =>
    sendRecipe(connection).then(
      (status) => {
        settled++;
        return `ran, exit ${status}`;
      },
      (error: unknown) => {
        settled++;
        return error instanceof NetplumbError ? error.code : String(error);
      },
    );
  const sending = (async (): Promise<string[]> => {
    const outcomes: Promise<string>[] = [];
    for (const connection of connections) {
      outcomes.push(send(connection));
      await delay(SEND_GAP_MS);
    }
    return Promise.all(outcomes);
  })();
  const during: number[] = [];
  while (settled < SENDERS) {
    during.push(await echo.roundTrip());
    await delay(2);
  }
  assert.deepEqual(await sending, Array<string>(SENDERS).fill(ErrorCode.RecipeTooLarge));
  assert.equal(await echo.end(), 0);

  const worst = Math.max(...during);
  const median = [...during].sort((a, b) => a - b)[during.length >> 1] as number;
  const report =
    `echo while checking: worst ${worst.toFixed(1)} ms, median ${median.toFixed(1)} ms over ${during.length} rounds (idle: worst ${Math.max(...idle).toFixed(1)} ms); ` +
    `one check ${oneCheckMs.toFixed(1)} ms, 20 on an event loop ${onEventLoopMs.toFixed(0)} ms`;
  t.diagnostic(report);
  assert.ok(worst < onEventLoopMs / 4, report);
});
