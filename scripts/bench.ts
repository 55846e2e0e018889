// `npm run bench`: netplumb beside its peers in one run on this machine (see ../shared/BENCHMARKS.md):
// download and round-trip throughput, `plumb host true` latency and 50 concurrent runs, plain Node TCP, and
// OpenSSH (aes128-gcm) where a private sshd can be started on loopback; a three-stage recipe beside the same
// pipeline run by sh -c on the daemon's host; another session's echo while slow recipes are checked. Prints medians
// and ratios; never a test.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { spawn as spawnPty } from 'node-pty';
import { connectToDaemon } from '../plumb-cli/client.js';
import { runRemoteCommand, type RemoteJob } from '../plumb-cli/run.js';
import type { SecureConnection } from '../protocol/connection.js';
import { loadPrivateIdentity } from '../bridges/key-files.js';
import { DEFAULT_LIMITS, StartKind } from '../protocol/wire.js';
import { PROGRAMS, REPO_DIR } from './built-programs.js';

const bin = PROGRAMS;
const sshHelper = resolve(REPO_DIR, '..', 'shared', 'bench', 'openssh-loopback.sh');

const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
const BULK = process.env['BENCH_BULK'] ?? '2G';
const BULK_BYTES = parseSize(BULK);
const RECIPE_BULK = process.env['BENCH_RECIPE_BULK'] ?? '1G';
const STREAM_BULK = process.env['BENCH_STREAM_BULK'] ?? '1G';
const STREAM_BULK_BYTES = parseSize(STREAM_BULK);
const ECHO_KEYS = Number(process.env['BENCH_ECHO_KEYS'] ?? 200);
const LATENCY_RUNS = Number(process.env['BENCH_LATENCY_RUNS'] ?? 15);
const CONCURRENT = 50;
const ECHO_ROUNDS = Number(process.env['BENCH_ECHO_ROUNDS'] ?? 300);
/** Recipes sent, one every 5 ms, in each burst of the recipe-check row. */
const SLOW_RECIPES = 20;
/** 64 KiB of one-letter words: the daemon parses all of it, then refuses it (more than maxArgsPerCommand words). */
const SLOW_RECIPE = `echo${' a'.repeat(32_766)}`;

/** The account the run-as row runs `true` as, when the bench runs as root. */
const OTHER_ACCOUNT = 'nobody';

function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/.exec(text);
  if (match === null) throw new Error(`bad size ${text}`);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2] as '' | 'K' | 'M' | 'G'];
  return Number(match[1]) * unit;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Wall time of a shell pipeline, in ms; throws if it fails. */
function timeShell(script: string, env: NodeJS.ProcessEnv): number {
  const start = process.hrtime.bigint();
  const result = spawnSync('bash', ['-o', 'pipefail', '-c', script], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0) throw new Error(`failed (${result.status}): ${script}\n${result.stderr.toString()}`);
  return elapsed;
}

/** Wall time until every one of `count` copies of the pipeline has finished, all started at once. */
async function timeConcurrent(script: string, count: number, env: NodeJS.ProcessEnv): Promise<number> {
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: count }, () => new Promise<void>((done, fail) => {
      const child = spawn('bash', ['-c', script], { env, stdio: 'ignore' });
      child.once('exit', (code) => (code === 0 ? done() : fail(new Error(`concurrent run exited ${code}: ${script}`))));
    })),
  );
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const mbPerSecond = (ms: number): number => BULK_BYTES / 1e6 / (ms / 1000);
const streamMbPerSecond = (ms: number): number => STREAM_BULK_BYTES / 1e6 / (ms / 1000);

/**
 * Wall time of STREAM_BULK from a remote client through a -socket to a local service: the daemon listens on a
 * socket in its spool directory, the remote command connects and sends, plumb forwards to the local sink.
 */
async function timeSocketTransfer(plumbHere: string, localDir: string, env: NodeJS.ProcessEnv): Promise<number> {
  const localSocket = join(localDir, 'sink.sock');
  rmSync(localSocket, { force: true });
  const sink = spawn(process.execPath, [bin.unixPeer, 'sink', localSocket], { stdio: ['ignore', 'pipe', 'inherit'] });
  let said = '';
  sink.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()));
  await waitFor(() => said.includes('listening'), 'the socket sink to listen');
  const source = `${process.execPath} ${bin.unixPeer} source "$NETPLUMB_SPOOL/bench.sock" ${STREAM_BULK_BYTES}`;
  const elapsed = timeShell(`${plumbHere} -socket=bench.sock:${localSocket} sh -c '${source}'`, env);
  await waitFor(() => said.includes('received'), 'the socket sink to finish');
  if (!said.includes(`received ${STREAM_BULK_BYTES}`)) throw new Error(`socket sink got ${said}`);
  return elapsed;
}

/**
 * p99 of the time a key typed into `plumb -t` takes to come back as the remote pty's echo, while STREAM_BULK flows
 * from the same remote command through an -outfifo on the same connection (drained locally by cat).
 */
async function keystrokeEchoP99(port: number, localDir: string, env: NodeJS.ProcessEnv): Promise<number> {
  const fifo = join(localDir, 'bulk.fifo');
  rmSync(fifo, { force: true });
  execFileSync('mkfifo', [fifo]);
  const drain = spawn('sh', ['-c', `cat ${fifo} >/dev/null`], { stdio: 'ignore' });
  const remote = `head -c ${STREAM_BULK_BYTES} /dev/zero >"$NETPLUMB_SPOOL/bulk.fifo" & exec cat >/dev/null`;
  const terminal = spawnPty(process.execPath, [bin.plumb, '-t', '-outfifo=bulk.fifo', `127.0.0.1:${port}`, 'sh', '-c', remote], {
    cwd: localDir,
    env: env as Record<string, string>,
    cols: 80,
    rows: 24,
    encoding: null,
  });
  let seen = '';
  // Woken by the terminal's output itself: a polling loop here would take a core from the processes measured.
  let onOutput: (() => void) | undefined;
  terminal.onData((data: string | Buffer) => {
    seen += data.toString();
    onOutput?.();
  });
  const echoOf = (letter: string, before: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for a key echo')), 5000);
      onOutput = () => {
        if (!seen.slice(before).includes(letter)) return;
        clearTimeout(timer);
        onOutput = undefined;
        resolve();
      };
      onOutput();
    });
  const exited = new Promise<void>((resolve) => terminal.onExit(() => resolve()));
  try {
    // The remote cat is running once its terminal echoes a first key.
    terminal.write('s');
    await waitFor(() => seen.includes('s'), 'the remote terminal to echo');
    const delays: number[] = [];
    for (let key = 0; key < ECHO_KEYS; key++) {
      const letter = String.fromCharCode(97 + (key % 26));
      const before = seen.length;
      const start = process.hrtime.bigint();
      const echoed = echoOf(letter, before);
      terminal.write(letter);
      await echoed;
      delays.push(Number(process.hrtime.bigint() - start) / 1e6);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    delays.sort((a, b) => a - b);
    return delays[Math.min(delays.length - 1, Math.ceil(delays.length * 0.99) - 1)] as number;
  } finally {
    terminal.write('\x04');
    terminal.kill();
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
    drain.kill();
  }
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * fraction) - 1)] as number;
}

/** A connection as plumb makes one, for the client runs done in this process. */
function connectClient(port: number, home: string): Promise<SecureConnection> {
  return connectToDaemon(
    { name: `127.0.0.1:${port}`, host: '127.0.0.1', port },
    { identity: loadPrivateIdentity(join(home, 'identity')), knownHostsFile: join(home, 'known_hosts'), acceptNew: false, connectTimeoutMs: 10_000, note: () => undefined },
  );
}

function discard(): Writable {
  return new Writable({ write: (_chunk, _encoding, callback) => callback() });
}

function runClient(connection: SecureConnection, job: RemoteJob, stdin: Readable, stdout: Writable): Promise<number> {
  return runRemoteCommand(connection, {
    job,
    stdio: { stdin, stdout, stderr: discard() },
    signals: new EventEmitter(),
    maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
    initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
    maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
  });
}

/**
 * Round trips of a line through a remote cat: ECHO_ROUNDS of them on an idle daemon, then as many while bursts of
 * SLOW_RECIPES recipes of 64 KiB (sent one every 5 ms, each on a connection of its own) are being checked.
 */
async function echoBesideRecipeChecks(port: number, home: string): Promise<{ idle: number[]; checking: number[] }> {
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
  const exited = runClient(await connectClient(port, home), { kind: StartKind.Exec, argv: ['cat'] }, stdin, stdout);
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
    return Number(process.hrtime.bigint() - start) / 1e6;
  };
  const pause = (): Promise<void> => new Promise((resolvePause) => setTimeout(resolvePause, 2));
  for (let warm = 0; warm < 10; warm++) await roundTrip();
  const idle: number[] = [];
  while (idle.length < ECHO_ROUNDS) {
    idle.push(await roundTrip());
    await pause();
  }
  const checking: number[] = [];
  while (checking.length < ECHO_ROUNDS) {
    const connections = await Promise.all(Array.from({ length: SLOW_RECIPES }, () => connectClient(port, home)));
    let settled = 0;
    const burst = (async () => {
      for (const connection of connections) {
        const recipe = runClient(connection, { kind: StartKind.Recipe, text: SLOW_RECIPE, source: 'slow.rcp' }, Readable.from([]), discard());
        void recipe.catch(() => undefined).finally(() => settled++);
        await new Promise((resolveGap) => setTimeout(resolveGap, 5));
      }
    })();
    while (settled < SLOW_RECIPES) {
      checking.push(await roundTrip());
      await pause();
    }
    await burst;
  }
  stdin.end();
  await exited;
  return { idle, checking };
}

/** Polls check() every 20 ms until true; throws after timeoutMs. */
async function waitFor(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Row {
  metric: string;
  netplumb: number;
  peer: string;
  peerValue: number | undefined;
  unit: string;
  target: string;
}

function startDaemon(home: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const daemon = spawn(process.execPath, [bin.netplumbd, '-listen=127.0.0.1:0', `-hostkey=${join(home, 'host_key')}`, `-clients=${join(home, 'clients')}`, `-spool=${join(home, 'spool')}`, `-run-as=${userInfo().username}`, `-one-time-keys=${join(home, 'one-time-keys')}`, '-log-level=warn'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return new Promise((resolvePort, reject) => {
    let seen = '';
    daemon.stderr.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(seen);
      if (match !== null) {
        resolvePort({
          port: Number(match[1]),
          stop: () => new Promise((done) => {
            daemon.once('exit', () => done());
            daemon.kill('SIGTERM');
          }),
        });
      }
    });
    daemon.once('exit', () => reject(new Error(`netplumbd exited: ${seen}`)));
  });
}

function startOpenSsh(dir: string): string | undefined {
  if (!existsSync(sshHelper)) return undefined;
  try {
    const port = String(22000 + Math.floor(Math.random() * 2000));
    const out = execFileSync('bash', [sshHelper, 'start', dir, port], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    // The helper prints `ssh -F DIR/ssh_config anchor`; the host word is added per command here.
    return out.trim().split('\n').pop()?.replace(/ anchor$/, '');
  } catch (error) {
    process.stderr.write(`OpenSSH peer not available: ${(error as Error).message}\n`);
    return undefined;
  }
}

async function main(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'netplumb-bench-'));
  const sshDir = join(home, 'ssh');
  const env = { ...process.env, NETPLUMB_HOME: home };
  let stopDaemon: (() => Promise<void>) | undefined;
  let ssh: string | undefined;
  try {
    for (const name of ['host_key', 'identity']) execFileSync(process.execPath, [bin.keygen, '-f', join(home, name)], { stdio: 'ignore' });
    // A controller that may also run commands as `nobody` (when the daemon can switch: as root).
    const asRoot = process.geteuid?.() === 0;
    const users = asRoot ? `user="${userInfo().username},${OTHER_ACCOUNT}",` : '';
    writeFileSync(join(home, 'clients'), `${users}controller ${readFileSync(join(home, 'identity.pub'), 'utf8')}`);
    const daemon = await startDaemon(home);
    stopDaemon = daemon.stop;
    const plumb = `${process.execPath} ${bin.plumb} 127.0.0.1:${daemon.port}`;
    timeShell(`${process.execPath} ${bin.plumb} -accept-new 127.0.0.1:${daemon.port} true`, env);
    ssh = startOpenSsh(sshDir);
    const sshGcm = ssh === undefined ? undefined : `${ssh} -c aes128-gcm@openssh.com`;

    const measure = (script: string): number[] => Array.from({ length: RUNS }, () => timeShell(script, env));
    const rows: Row[] = [];
    process.stderr.write(`bench: ${RUNS} runs of ${BULK} each, ${LATENCY_RUNS} latency runs\n`);

    const download = median(measure(`${plumb} head -c ${BULK} /dev/zero >/dev/null`));
    const sshDownload = sshGcm === undefined ? undefined : median(measure(`${sshGcm} anchor 'head -c ${BULK} /dev/zero' >/dev/null`));
    const tcp = median(measure(`${process.execPath} ${bin.tcpPeer} ${BULK_BYTES}`));
    rows.push({ metric: `download (${BULK} via remote head -c)`, netplumb: mbPerSecond(download), peer: 'OpenSSH aes128-gcm', peerValue: sshDownload && mbPerSecond(sshDownload), unit: 'MB/s', target: '>= 1.2x' });
    rows.push({ metric: 'download vs plain Node TCP', netplumb: mbPerSecond(download), peer: 'Node TCP 64 KiB writes', peerValue: mbPerSecond(tcp), unit: 'MB/s', target: '>= 0.4x' });

    const roundTrip = median(measure(`head -c ${BULK} /dev/zero | ${plumb} cat >/dev/null`));
    const sshRoundTrip = sshGcm === undefined ? undefined : median(measure(`head -c ${BULK} /dev/zero | ${sshGcm} anchor cat >/dev/null`));
    rows.push({ metric: `round trip (${BULK} through remote cat)`, netplumb: mbPerSecond(roundTrip), peer: 'OpenSSH aes128-gcm', peerValue: sshRoundTrip && mbPerSecond(sshRoundTrip), unit: 'MB/s', target: '>= 1.2x' });

    const latency = median(Array.from({ length: LATENCY_RUNS }, () => timeShell(`${plumb} true`, env)));
    const sshLatency = ssh === undefined ? undefined : median(Array.from({ length: LATENCY_RUNS }, () => timeShell(`${ssh} anchor true`, env)));
    rows.push({ metric: '`plumb host true`, new connection', netplumb: latency, peer: 'ssh host true (default kex)', peerValue: sshLatency, unit: 'ms', target: '<= 0.6x' });

    // Running as another account (setpriv, the account looked up) and with a one-time key, beside the plain start.
    const otherAccount = asRoot ? median(Array.from({ length: LATENCY_RUNS }, () => timeShell(`${process.execPath} ${bin.plumb} -user=${OTHER_ACCOUNT} 127.0.0.1:${daemon.port} true`, env))) : undefined;
    if (otherAccount !== undefined) rows.push({ metric: `\`plumb -user=${OTHER_ACCOUNT} host true\``, netplumb: otherAccount, peer: '`plumb host true`', peerValue: latency, unit: 'ms', target: 'none set (reference)' });
    const keyUses: number[] = [];
    for (let run = 0; run < LATENCY_RUNS; run++) {
      const keyFile = join(home, `bench-${run}.key`);
      execFileSync(process.execPath, [bin.plumb, `-mint-key=${keyFile}`, `127.0.0.1:${daemon.port}`, 'true'], { env, stdio: 'ignore' });
      keyUses.push(timeShell(`${process.execPath} ${bin.plumb} -one-time-key=${keyFile} 127.0.0.1:${daemon.port} true`, env));
    }
    rows.push({ metric: '`plumb -one-time-key=K host true` (key minted beforehand)', netplumb: median(keyUses), peer: '`plumb host true`', peerValue: latency, unit: 'ms', target: 'none set (reference)' });

    const concurrent = median(await Promise.all([0].map(() => timeConcurrent(`${plumb} true`, CONCURRENT, env))));
    const sshConcurrent = ssh === undefined ? undefined : await timeConcurrent(`${ssh} anchor true`, CONCURRENT, env);
    rows.push({ metric: `${CONCURRENT} concurrent \`plumb host true\``, netplumb: concurrent, peer: 'the same with ssh', peerValue: sshConcurrent, unit: 'ms', target: '<= 0.8x' });

    // A recipe of three stages moving RECIPE_BULK on the daemon's host, beside the same pipeline run by sh -c there.
    const recipeFile = join(home, 'three-stages.rcp');
    writeFileSync(recipeFile, `# bench: ${RECIPE_BULK} through three stages\nhead -c ${RECIPE_BULK} /dev/zero |\ncat |\nwc -c\n`);
    const recipe = median(measure(`${plumb} -recipe=${recipeFile}`));
    const shellPipeline = median(measure(`${plumb} sh -c 'head -c ${RECIPE_BULK} /dev/zero | cat | wc -c'`));
    rows.push({ metric: `recipe, ${RECIPE_BULK} through 3 stages (wall)`, netplumb: recipe, peer: 'the same pipeline by sh -c there', peerValue: shellPipeline, unit: 'ms', target: '<= 1.25x' });

    // Named pipes and sockets beside stdout over the same kind of connection, STREAM_BULK each. plumb runs in a
    // directory of its own, so its relative FIFO and the daemon's (in the spool) are two different files.
    const localDir = join(home, 'local');
    mkdirSync(localDir);
    const plumbHere = `cd ${localDir} && ${plumb}`;
    const stdoutBulk = median(measure(`${plumb} head -c ${STREAM_BULK} /dev/zero >/dev/null`));
    execFileSync('mkfifo', [join(localDir, 'bench.fifo')]);
    const outFifo = median(
      measure(`${plumbHere} -outfifo=bench.fifo sh -c 'head -c ${STREAM_BULK} /dev/zero >"$NETPLUMB_SPOOL/bench.fifo"' & cat ${join(localDir, 'bench.fifo')} >/dev/null; wait $!`),
    );
    rows.push({ metric: `-outfifo, ${STREAM_BULK}`, netplumb: streamMbPerSecond(outFifo), peer: 'plain stdout, same bytes', peerValue: streamMbPerSecond(stdoutBulk), unit: 'MB/s', target: '>= 0.8x' });
    const socketRuns: number[] = [];
    for (let run = 0; run < RUNS; run++) socketRuns.push(await timeSocketTransfer(plumbHere, localDir, env));
    rows.push({ metric: `-socket, ${STREAM_BULK}`, netplumb: streamMbPerSecond(median(socketRuns)), peer: 'plain stdout, same bytes', peerValue: streamMbPerSecond(stdoutBulk), unit: 'MB/s', target: '>= 0.8x' });
    const echo = await keystrokeEchoP99(daemon.port, localDir, env);
    rows.push({ metric: `-t keystroke echo p99 (${ECHO_KEYS} keys) while ${STREAM_BULK} flows through an -outfifo`, netplumb: echo, peer: 'target', peerValue: undefined, unit: 'ms', target: '< 20 ms' });

    // The daemon checks recipes off its event loop: another session's echo beside bursts of slow recipe checks.
    const beside = await echoBesideRecipeChecks(daemon.port, home);
    for (const [name, fraction] of [['p50', 0.5], ['p99', 0.99]] as const) {
      rows.push({
        metric: `another session's echo ${name} while ${SLOW_RECIPES} recipes of 64 KiB are checked`,
        netplumb: percentile(beside.checking, fraction) * 1000,
        peer: 'the same, no recipes',
        peerValue: percentile(beside.idle, fraction) * 1000,
        unit: 'µs',
        target: 'none set (reference)',
      });
    }

    const nodeFloor = median(Array.from({ length: LATENCY_RUNS }, () => timeShell(`${process.execPath} -e 0`, env)));
    process.stdout.write('\n| metric | netplumb | peer | peer value | ratio | target |\n| --- | ---: | --- | ---: | ---: | --- |\n');
    for (const row of rows) {
      const ratio = row.peerValue === undefined ? 'n/a' : `${(row.netplumb / row.peerValue).toFixed(2)}x`;
      const peerValue = row.peerValue === undefined ? 'not measured' : `${row.peerValue.toFixed(0)} ${row.unit}`;
      process.stdout.write(`| ${row.metric} | ${row.netplumb.toFixed(0)} ${row.unit} | ${row.peer} | ${peerValue} | ${ratio} | ${row.target} |\n`);
    }
    process.stdout.write(`\n\`node -e 0\` on this machine: ${nodeFloor.toFixed(0)} ms (the floor under any Node CLI)\n`);
  } finally {
    if (ssh !== undefined) spawnSync('bash', [sshHelper, 'stop', sshDir], { stdio: 'ignore' });
    await stopDaemon?.();
    rmSync(home, { recursive: true, force: true });
  }
  // Optional, after the table and on daemons of its own: the soak (scripts/soak.ts), which prints its own PASS/FAIL.
  if (process.env['BENCH_SOAK'] === '1') spawnSync(process.execPath, [PROGRAMS.soak], { stdio: 'inherit' });
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
