// Another session's echo beside recipe checks, run inside the bench's worker process (worker.ts): round trips of a
// line through a remote cat on an idle daemon, then as many while bursts of SLOW_RECIPES recipes of 64 KiB (sent one
// every 5 ms, each on a connection of its own) are being checked. The daemon checks recipes off its event loop, so
// the echo should barely move.

import { PassThrough, Readable, Writable } from 'node:stream';
import { StartKind } from '../../protocol/wire.js';
import { ConnectionLostError } from '../../protocol/errors.js';
import { connectClient, discard, runClient } from './client.js';
import { sleep, withTimeout } from './measure.js';

/** Recipes sent, one every 5 ms, in each burst. */
export const SLOW_RECIPES = 20;
/** 64 KiB of one-letter words: the daemon parses all of it, then refuses it (more than maxArgsPerCommand words). */
const SLOW_RECIPE = `echo${' a'.repeat(32_766)}`;

/** Round-trip times in ms, without and with recipes being checked. */
export interface RecipeEcho {
  idle: number[];
  checking: number[];
}

export async function echoBesideRecipeChecks(port: number, home: string, rounds: number, progress: (done: number) => void): Promise<RecipeEcho> {
  const stdin = new PassThrough();
  let seen = '';
  let onOutput: (() => void) | undefined;
  const stdout = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      seen += chunk.toString();
      onOutput?.();
      callback();
    },
  });
  const connection = await withTimeout(connectClient(port, home), 30_000, 'connecting the echo session');
  const exited = runClient(connection, { kind: StartKind.Exec, argv: ['cat'] }, stdin, stdout);
  exited.catch(() => undefined);
  let round = 0;
  const roundTrip = async (): Promise<number> => {
    const line = `round ${round++}\n`;
    const start = process.hrtime.bigint();
    await new Promise<void>((resolveEcho, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for an echo')), 10_000);
      onOutput = () => {
        if (!seen.includes(line)) return;
        clearTimeout(timer);
        seen = '';
        resolveEcho();
      };
      stdin.write(line);
    });
    progress(round);
    return Number(process.hrtime.bigint() - start) / 1e6;
  };
  const idle: number[] = [];
  const checking: number[] = [];
  try {
    for (let warm = 0; warm < 10; warm++) await roundTrip();
    while (idle.length < rounds) {
      idle.push(await roundTrip());
      await sleep(2);
    }
    // Bounded: each burst adds at least one round trip, and stops once all its recipes have been answered.
    while (checking.length < rounds) {
      const connections = await withTimeout(Promise.all(Array.from({ length: SLOW_RECIPES }, () => connectClient(port, home))), 30_000, 'connecting a burst of recipe sessions');
      const answered = new Set<number>();
      const burst = (async () => {
        for (const [index, each] of connections.entries()) {
          const recipe = runClient(each, { kind: StartKind.Recipe, text: SLOW_RECIPE, source: 'slow.rcp' }, Readable.from([]), discard());
          void recipe.catch(() => undefined).finally(() => answered.add(index));
          await sleep(5);
        }
      })();
      const burstEnds = Date.now() + 60_000;
      do {
        checking.push(await roundTrip());
        await sleep(2);
      } while (answered.size < SLOW_RECIPES && Date.now() < burstEnds);
      await withTimeout(burst, 60_000, 'a burst of recipe checks');
      // A recipe still unanswered after a minute is given up on, its connection with it.
      for (const [index, each] of connections.entries()) if (!answered.has(index)) each.fail(new ConnectionLostError('bench gave up on the recipe'));
    }
  } finally {
    stdin.end();
    await withTimeout(exited, 10_000, 'the echo session to end').catch(() => connection.close());
  }
  return { idle, checking };
}
