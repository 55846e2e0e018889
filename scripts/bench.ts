// `npm run bench`: netplumb beside its peers in one run on this machine (see ../shared/BENCHMARKS.md):
// download and round-trip throughput, `plumb host true` latency and 50 concurrent runs, plain Node TCP, and
// OpenSSH (aes128-gcm) where a private sshd can be started on loopback; a three-stage recipe beside the same
// pipeline run by sh -c on the daemon's host. Prints medians and ratios; never a test.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const buildDir = dirname(dirname(fileURLToPath(import.meta.url)));
const repoDir = dirname(buildDir);
const bin = {
  plumb: join(buildDir, 'plumb-cli', 'main.js'),
  netplumbd: join(buildDir, 'daemon', 'main.js'),
  keygen: join(buildDir, 'plumb-cli', 'keygen-main.js'),
  tcpSink: join(buildDir, 'scripts', 'tcp-peer.js'),
};
const sshHelper = resolve(repoDir, '..', 'shared', 'bench', 'openssh-loopback.sh');

const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
const BULK = process.env['BENCH_BULK'] ?? '2G';
const BULK_BYTES = parseSize(BULK);
const RECIPE_BULK = process.env['BENCH_RECIPE_BULK'] ?? '1G';
const LATENCY_RUNS = Number(process.env['BENCH_LATENCY_RUNS'] ?? 15);
const CONCURRENT = 50;

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

interface Row {
  metric: string;
  netplumb: number;
  peer: string;
  peerValue: number | undefined;
  unit: string;
  target: string;
}

function startDaemon(home: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const daemon = spawn(process.execPath, [bin.netplumbd, '-listen=127.0.0.1:0', `-hostkey=${join(home, 'host_key')}`, `-clients=${join(home, 'clients')}`, `-spool=${join(home, 'spool')}`, '-log-level=warn'], {
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
    writeFileSync(join(home, 'clients'), readFileSync(join(home, 'identity.pub')));
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
    const tcp = median(measure(`${process.execPath} ${bin.tcpSink} ${BULK_BYTES}`));
    rows.push({ metric: `download (${BULK} via remote head -c)`, netplumb: mbPerSecond(download), peer: 'OpenSSH aes128-gcm', peerValue: sshDownload && mbPerSecond(sshDownload), unit: 'MB/s', target: '>= 1.2x' });
    rows.push({ metric: 'download vs plain Node TCP', netplumb: mbPerSecond(download), peer: 'Node TCP 64 KiB writes', peerValue: mbPerSecond(tcp), unit: 'MB/s', target: '>= 0.4x' });

    const roundTrip = median(measure(`head -c ${BULK} /dev/zero | ${plumb} cat >/dev/null`));
    const sshRoundTrip = sshGcm === undefined ? undefined : median(measure(`head -c ${BULK} /dev/zero | ${sshGcm} anchor cat >/dev/null`));
    rows.push({ metric: `round trip (${BULK} through remote cat)`, netplumb: mbPerSecond(roundTrip), peer: 'OpenSSH aes128-gcm', peerValue: sshRoundTrip && mbPerSecond(sshRoundTrip), unit: 'MB/s', target: '>= 1.2x' });

    const latency = median(Array.from({ length: LATENCY_RUNS }, () => timeShell(`${plumb} true`, env)));
    const sshLatency = ssh === undefined ? undefined : median(Array.from({ length: LATENCY_RUNS }, () => timeShell(`${ssh} anchor true`, env)));
    rows.push({ metric: '`plumb host true`, new connection', netplumb: latency, peer: 'ssh host true (default kex)', peerValue: sshLatency, unit: 'ms', target: '<= 0.6x' });

    const concurrent = median(await Promise.all([0].map(() => timeConcurrent(`${plumb} true`, CONCURRENT, env))));
    const sshConcurrent = ssh === undefined ? undefined : await timeConcurrent(`${ssh} anchor true`, CONCURRENT, env);
    rows.push({ metric: `${CONCURRENT} concurrent \`plumb host true\``, netplumb: concurrent, peer: 'the same with ssh', peerValue: sshConcurrent, unit: 'ms', target: '<= 0.8x' });

    // A recipe of three stages moving RECIPE_BULK on the daemon's host, beside the same pipeline run by sh -c there.
    const recipeFile = join(home, 'three-stages.rcp');
    writeFileSync(recipeFile, `# bench: ${RECIPE_BULK} through three stages\nhead -c ${RECIPE_BULK} /dev/zero |\ncat |\nwc -c\n`);
    const recipe = median(measure(`${plumb} -recipe=${recipeFile}`));
    const shellPipeline = median(measure(`${plumb} sh -c 'head -c ${RECIPE_BULK} /dev/zero | cat | wc -c'`));
    rows.push({ metric: `recipe, ${RECIPE_BULK} through 3 stages (wall)`, netplumb: recipe, peer: 'the same pipeline by sh -c there', peerValue: shellPipeline, unit: 'ms', target: '<= 1.25x' });

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
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
