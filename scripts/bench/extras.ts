// The rows below the main table: a three-stage recipe beside the same pipeline under sh -c, -outfifo and -socket
// beside plain stdout, `plumb -user=` and a one-time key beside a plain `plumb host true`, and another session's echo
// while slow recipes are checked. Each A/B pair runs interleaved, like the main table's.

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROGRAMS } from '../built-programs.js';
import { ECHO_ROUNDS, LATENCY_RUNS, RECIPE_BULK, RUNS, STREAM_BULK } from './config.js';
import { SLOW_RECIPES, type RecipeEcho } from './recipe-echo.js';
import { runWorker } from './workers.js';
import { interleave, median, percentile, runShell, waitFor, type Meter } from './measure.js';
import { mbps, meets, ms, ratioOf, seconds, type Row } from './table.js';

/** The account the run-as row runs `true` as, when the bench runs as root. */
const OTHER_ACCOUNT = 'nobody';

export interface Context {
  port: number;
  home: string;
  env: NodeJS.ProcessEnv;
  meter: Meter;
  /** `node plumb.js 127.0.0.1:PORT`, for shell pipelines. */
  plumb: string;
  asRoot: boolean;
}

const wall = (ctx: Context, script: string) => (): Promise<number> => runShell(script, ctx.env);

export async function extraRows(ctx: Context, between: () => void): Promise<Row[]> {
  const rows: Row[] = [];
  rows.push(await recipeRow(ctx));
  between();
  rows.push(...(await streamRows(ctx)));
  between();
  rows.push(...(await latencyRows(ctx)));
  between();
  rows.push(...(await echoRows(ctx)));
  return rows;
}

/** A recipe of three stages moving RECIPE_BULK on the daemon's host, beside the same pipeline run by sh -c there. */
async function recipeRow(ctx: Context): Promise<Row> {
  const recipeFile = join(ctx.home, 'three-stages.rcp');
  writeFileSync(recipeFile, `# bench: ${RECIPE_BULK.text} through three stages\nhead -c ${RECIPE_BULK.text} /dev/zero |\ncat |\nwc -c\n`);
  const runs = await interleave(RUNS, {
    recipe: wall(ctx, `${ctx.plumb} -recipe=${recipeFile} >/dev/null`),
    shell: wall(ctx, `${ctx.plumb} sh -c 'head -c ${RECIPE_BULK.text} /dev/zero | cat | wc -c' >/dev/null`),
  });
  const recipe = median(runs.recipe ?? []);
  const shell = median(runs.shell ?? []);
  const ratio = ratioOf(recipe, shell);
  return { metric: `recipe, ${RECIPE_BULK.text} through 3 stages (wall)`, netplumb: seconds(recipe / 1000), peer: `sh -c there ${seconds(shell / 1000)}`, ratio, target: '<= 1.25x', met: meets(ratio, { atMost: 1.25 }) };
}

/**
 * Named pipes and sockets beside stdout over the same kind of connection, STREAM_BULK each. plumb runs in a
 * directory of its own, so its relative FIFO and the daemon's (in the spool) are two different files.
 */
async function streamRows(ctx: Context): Promise<Row[]> {
  const localDir = join(ctx.home, 'extras');
  mkdirSync(localDir, { recursive: true });
  const plumbHere = `cd ${localDir} && ${ctx.plumb}`;
  const fifo = join(localDir, 'bench.fifo');
  rmSync(fifo, { force: true });
  execFileSync('mkfifo', [fifo]);
  const runs = await interleave(RUNS, {
    stdout: wall(ctx, `${ctx.plumb} head -c ${STREAM_BULK.text} /dev/zero >/dev/null`),
    outFifo: wall(ctx, `${plumbHere} -outfifo=bench.fifo sh -c 'head -c ${STREAM_BULK.text} /dev/zero >"$NETPLUMB_SPOOL/bench.fifo"' & cat ${fifo} >/dev/null; wait $!`),
    socket: () => timeSocketTransfer(ctx, plumbHere, localDir),
  });
  const speed = (wallMs: number[] | undefined): number => mbps(STREAM_BULK.bytes, median(wallMs ?? []));
  const stdout = speed(runs.stdout);
  return (['outFifo', 'socket'] as const).map((name) => {
    const value = speed(runs[name]);
    const ratio = ratioOf(value, stdout);
    const metric = `${name === 'outFifo' ? '-outfifo' : '-socket'}, ${STREAM_BULK.text}`;
    return { metric, netplumb: `${value.toFixed(0)} MB/s`, peer: `plain stdout ${stdout.toFixed(0)} MB/s`, ratio, target: '>= 0.8x', met: meets(ratio, { atLeast: 0.8 }) };
  });
}

/**
 * Wall time of STREAM_BULK from a remote client through a -socket to a local service: the daemon listens on a
 * socket in its spool directory, the remote command connects and sends, plumb forwards to the local sink.
 */
async function timeSocketTransfer(ctx: Context, plumbHere: string, localDir: string): Promise<number> {
  const localSocket = join(localDir, 'sink.sock');
  rmSync(localSocket, { force: true });
  const sink = spawn(process.execPath, [PROGRAMS.unixPeer, 'sink', localSocket], { stdio: ['ignore', 'pipe', 'inherit'] });
  let said = '';
  sink.stdout?.on('data', (chunk: Buffer) => (said += chunk.toString()));
  try {
    await waitFor(() => said.includes('listening'), 'the socket sink to listen');
    const source = `${process.execPath} ${PROGRAMS.unixPeer} source "$NETPLUMB_SPOOL/bench.sock" ${STREAM_BULK.bytes}`;
    const elapsed = await runShell(`${plumbHere} -socket=bench.sock:${localSocket} sh -c '${source}'`, ctx.env);
    await waitFor(() => said.includes('received'), 'the socket sink to finish');
    if (!said.includes(`received ${STREAM_BULK.bytes}`)) throw new Error(`socket sink got ${said}`);
    return elapsed;
  } finally {
    if (sink.exitCode === null) sink.kill('SIGKILL');
  }
}

/** Running as another account (setpriv, the account looked up) and with a one-time key, beside the plain start. */
async function latencyRows(ctx: Context): Promise<Row[]> {
  const program = `${process.execPath} ${PROGRAMS.plumb}`;
  const target = `127.0.0.1:${ctx.port}`;
  let minted = 0;
  const runs = await interleave(LATENCY_RUNS, {
    plain: wall(ctx, `${ctx.plumb} true`),
    runAs: ctx.asRoot ? wall(ctx, `${program} -user=${OTHER_ACCOUNT} ${target} true`) : undefined,
    oneTimeKey: async () => {
      const keyFile = join(ctx.home, `bench-${minted++}.key`);
      // Minting is not timed: only the run with a key already made is.
      await runShell(`${program} -mint-key=${keyFile} ${target} true`, ctx.env);
      return runShell(`${program} -one-time-key=${keyFile} ${target} true`, ctx.env);
    },
  });
  const plain = median(runs.plain ?? []);
  const rows: Row[] = [];
  if (runs.runAs !== undefined) {
    const value = median(runs.runAs);
    rows.push({ metric: `\`plumb -user=${OTHER_ACCOUNT} host true\``, netplumb: ms(value), peer: `\`plumb host true\` ${ms(plain)}`, ratio: ratioOf(value, plain), target: 'none set (reference)', met: undefined });
  }
  const keyed = median(runs.oneTimeKey ?? []);
  rows.push({ metric: '`plumb -one-time-key=K host true` (key minted beforehand)', netplumb: ms(keyed), peer: `\`plumb host true\` ${ms(plain)}`, ratio: ratioOf(keyed, plain), target: 'none set (reference)', met: undefined });
  return rows;
}

/** Another session's echo beside bursts of slow recipe checks, in the bench's worker process (recipe-echo.ts). */
async function echoRows(ctx: Context): Promise<Row[]> {
  // Each round trip is a progress line; a burst's recipes get a minute, so two minutes without one is a hang.
  let echo: RecipeEcho;
  try {
    echo = await runWorker<RecipeEcho>(['recipe-echo', String(ctx.port), ctx.home, String(ECHO_ROUNDS)], { stallMs: 120_000, deadlineMs: 900_000 });
  } catch (error) {
    const why = error instanceof Error ? error.message.split('\n')[0] ?? '' : String(error);
    return [{ metric: `another session's echo while ${SLOW_RECIPES} recipes of 64 KiB are checked`, netplumb: `not measured: ${why}`, peer: '', ratio: undefined, target: 'none set (reference)', met: undefined }];
  }
  const { idle, checking } = echo;
  return (['p50', 'p99'] as const).map((name) => {
    const fraction = name === 'p50' ? 0.5 : 0.99;
    const busy = percentile(checking, fraction) * 1000;
    const quiet = percentile(idle, fraction) * 1000;
    return { metric: `another session's echo ${name} while ${SLOW_RECIPES} recipes of 64 KiB are checked`, netplumb: `${busy.toFixed(0)} µs`, peer: `no recipes ${quiet.toFixed(0)} µs`, ratio: ratioOf(busy, quiet), target: 'none set (reference)', met: undefined };
  });
}
