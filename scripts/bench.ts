// `npm run bench`: netplumb beside OpenSSH (aes128-gcm on the data rows) in one run on this machine, as
// ../shared/BENCHMARKS.md asks: wall time and CPU seconds (client + server) of a download and a round trip, `true`
// latency and its CPU, 20 concurrent runs, the daemon's CPU per session, a load generator's sessions/s, keystroke echo
// under bulk, and plain Node TCP as the ceiling; then the extra rows (scripts/bench/extras.ts). Each A/B pair runs
// interleaved and medians are printed, with the machine's load beside them, since on a shared machine only a ratio
// taken in one run means anything. Never a test. Sizes and counts: scripts/bench/config.ts.

import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { PROGRAMS } from './built-programs.js';
import { BULK, CONCURRENCY, CONCURRENT, LATENCY_RUNS, ROUND_TRIP, RUNS, SESSIONS, SSH_CIPHER, STREAM_BULK, TRUE_RUNS, type Size } from './bench/config.js';
import { plumbEchoUnderBulk, sshEchoUnderBulk, type EchoResult } from './bench/echo.js';
import { extraRows } from './bench/extras.js';
import { acrossRows } from './bench/across.js';
import { SESSION_TIMEOUT_MS, type LoadResult } from './bench/load-generator.js';
import { killWorkers, runWorker } from './bench/workers.js';
import { interleave, killRunning, serverCpuDuring, LoadWatch, loadAverage, median, Meter, percentile, runShell, summarize, type Concurrent, type Sample, type Server, type Summary } from './bench/measure.js';
import { startDaemon, startOpenSsh, stopOpenSsh, type Daemon, type OpenSsh } from './bench/servers.js';
import { mbps, meets, ms, printTable, ratioOf, seconds, type Row } from './bench/table.js';

/** BENCHMARKS.md's targets. */
const TARGET = {
  speed: 1.0,
  cpu: 1.25,
  trueLatency: 0.6,
  concurrent: 1.0,
  sessionsPerSecond: 150,
  daemonCpuPerSessionMs: 6.7,
  echoP99Ms: 20,
};

const say = (text: string): void => void process.stderr.write(`bench: ${text}\n`);

/** Client + server CPU, with the two parts (medians over the runs). */
const cpuText = (summary: Summary): string => `${seconds(summary.cpu)} (${summary.clientCpu.toFixed(2)} + ${summary.serverCpu.toFixed(2)})`;
const speedText = (summary: Summary, size: Size): string => `${seconds(summary.wallMs / 1000)}, ${mbps(size.bytes, summary.wallMs).toFixed(0)} MB/s`;

/** The two rows of a data-path pair: speed (wall, MB/s) and CPU seconds, netplumb beside OpenSSH. */
function dataRows(what: string, size: Size, netplumb: Summary, ssh: Summary | undefined): Row[] {
  const speed = ratioOf(mbps(size.bytes, netplumb.wallMs), ssh && mbps(size.bytes, ssh.wallMs));
  const cpu = ratioOf(netplumb.cpu, ssh?.cpu);
  return [
    { metric: `${what}: wall, speed`, netplumb: speedText(netplumb, size), peer: ssh === undefined ? 'OpenSSH not measured' : `OpenSSH ${speedText(ssh, size)}`, ratio: speed, target: `>= ${TARGET.speed.toFixed(1)}x`, met: meets(speed, { atLeast: TARGET.speed }) },
    { metric: `${what}: CPU s, client + server`, netplumb: cpuText(netplumb), peer: ssh === undefined ? 'OpenSSH not measured' : `OpenSSH ${cpuText(ssh)}`, ratio: cpu, target: `<= ${TARGET.cpu}x (aim 1.0x)`, met: meets(cpu, { atMost: TARGET.cpu }) },
  ];
}

const summaryOf = (samples: Sample[] | undefined): Summary | undefined => (samples === undefined ? undefined : summarize(samples));

function printMachine(load: LoadWatch): void {
  const uptime = spawnSync('uptime', { encoding: 'utf8' }).stdout?.trim() ?? 'uptime unavailable';
  const model = cpus()[0]?.model ?? 'unknown CPU';
  process.stdout.write(`## netplumb bench, ${new Date().toISOString()}\n\n`);
  process.stdout.write(`node ${process.version}, ${cpus().length} CPUs (${model}); runs per side ${RUNS}, interleaved; bulk ${BULK.text}, round trip ${ROUND_TRIP.text}, stream bulk ${STREAM_BULK.text}\n`);
  process.stdout.write(`uptime at start: ${uptime}\n`);
  process.stdout.write(`1-min load at start: ${load.atStart.toFixed(2)}\n`);
  if (load.atStart > 1.0) process.stdout.write(`WARNING: the 1-min load at start was ${load.atStart.toFixed(2)} (above 1.0): figures taken under load prove little.\n`);
}

async function main(): Promise<void> {
  const load = new LoadWatch();
  printMachine(load);
  const home = mkdtempSync(join(tmpdir(), 'netplumb-bench-'));
  // Commands run as another account (the run-as row) must be able to pass through to their spool under home/spool.
  chmodSync(home, 0o711);
  const env = { ...process.env, NETPLUMB_HOME: home };
  const sshDir = join(home, 'ssh');
  let daemon: Daemon | undefined;
  let ssh: OpenSsh | undefined;
  // Ctrl-C or a kill still stops the daemon and sshd and removes the temp dir (finally blocks do not run on a signal).
  let interrupted = false;
  const cleanUp = async (): Promise<void> => {
    killRunning();
    killWorkers();
    await stopOpenSsh(sshDir);
    await daemon?.stop();
    rmSync(home, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    say(`${signal}: stopping`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (const name of ['host_key', 'identity']) execFileSync(process.execPath, [PROGRAMS.keygen, '-f', join(home, name)], { stdio: 'ignore' });
    // A controller that may also run commands as `nobody` (when the daemon can switch: as root).
    const asRoot = process.geteuid?.() === 0;
    const users = asRoot ? `user="${userInfo().username},nobody",` : '';
    writeFileSync(join(home, 'clients'), `${users}controller ${readFileSync(join(home, 'identity.pub'), 'utf8')}`);
    mkdirSync(join(home, 'spool'), { mode: 0o711 });
    chmodSync(join(home, 'spool'), 0o711);
    daemon = await startDaemon(home);
    const daemonServer: Server = { pid: daemon.pid, name: 'netplumbd' };
    const target = `127.0.0.1:${daemon.port}`;
    const plumb = `${process.execPath} ${PROGRAMS.plumb} ${target}`;
    await runShell(`${process.execPath} ${PROGRAMS.plumb} -accept-new ${target} true`, env);
    ssh = await startOpenSsh(sshDir);
    const sshServer: Server | undefined = ssh && { pid: ssh.pid, name: 'sshd' };
    const sshGcm = ssh && `${ssh.command} -c ${SSH_CIPHER} anchor`;
    const scratch = join(home, 'scratch');
    mkdirSync(scratch);
    const meter = new Meter(scratch, env);
    const rows: Row[] = [];

    say(`1 of 8: download, ${BULK.text}, ${RUNS} runs per side (netplumb, OpenSSH, Node TCP in turn)`);
    const download = await interleave(RUNS, {
      netplumb: () => meter.sample((time) => `${time} ${plumb} head -c ${BULK.text} /dev/zero >/dev/null`, daemonServer),
      ssh: sshGcm === undefined || sshServer === undefined ? undefined : () => meter.sample((time) => `${time} ${sshGcm} 'head -c ${BULK.text} /dev/zero' >/dev/null`, sshServer),
      // The sender and the receiving process it starts, both in /usr/bin/time's figure (the receiver is reaped).
      tcp: () => meter.sample((time) => `${time} ${process.execPath} ${PROGRAMS.tcpPeer} ${BULK.bytes}`),
    });
    const downloadNetplumb = summarize(download.netplumb ?? []);
    rows.push(...dataRows(`1. download ${BULK.text}`, BULK, downloadNetplumb, summaryOf(download.ssh)));
    load.note();

    say(`2 of 8: round trip through remote cat, ${ROUND_TRIP.text}`);
    const roundTrip = await interleave(RUNS, {
      netplumb: () => meter.sample((time) => `head -c ${ROUND_TRIP.text} /dev/zero | ${time} ${plumb} cat >/dev/null`, daemonServer),
      ssh: sshGcm === undefined || sshServer === undefined ? undefined : () => meter.sample((time) => `head -c ${ROUND_TRIP.text} /dev/zero | ${time} ${sshGcm} cat >/dev/null`, sshServer),
    });
    rows.push(...dataRows(`2. round trip ${ROUND_TRIP.text} through remote cat`, ROUND_TRIP, summarize(roundTrip.netplumb ?? []), summaryOf(roundTrip.ssh)));
    load.note();

    // Rows 3 and 5 from the same runs: each run's server CPU is read once its children are reaped, so their sum over
    // the runs is the server's CPU delta over TRUE_RUNS sequential sessions.
    say(`3 and 5 of 8: \`true\`, ${TRUE_RUNS} sequential runs per side`);
    const trueRuns = await interleave(TRUE_RUNS, {
      netplumb: () => meter.sample((time) => `${time} ${plumb} true`, daemonServer),
      ssh: ssh && sshServer && (() => meter.sample((time) => `${time} ${ssh?.command} anchor true`, sshServer)),
    });
    const trueNetplumb = summarize(trueRuns.netplumb ?? []);
    const trueSsh = summaryOf(trueRuns.ssh);
    const latencyRatio = ratioOf(trueNetplumb.wallMs, trueSsh?.wallMs);
    rows.push({ metric: '3. `plumb host true`, new connection: median latency', netplumb: ms(trueNetplumb.wallMs), peer: trueSsh === undefined ? 'ssh not measured' : `ssh host true (default kex) ${ms(trueSsh.wallMs)}`, ratio: latencyRatio, target: `<= ${TARGET.trueLatency}x`, met: meets(latencyRatio, { atMost: TARGET.trueLatency }) });
    const perRunCpu = (summary: Summary): string => `${ms(summary.cpu * 1000)} (${ms(summary.clientCpu * 1000)} + ${ms(summary.serverCpu * 1000)})`;
    rows.push({ metric: '3. `true`: CPU per run, client + server', netplumb: perRunCpu(trueNetplumb), peer: trueSsh === undefined ? 'ssh not measured' : `ssh ${perRunCpu(trueSsh)}`, ratio: ratioOf(trueNetplumb.cpu, trueSsh?.cpu), target: 'none set', met: undefined });
    load.note();

    say(`4 of 8: ${CONCURRENT} concurrent \`true\`, ${RUNS} runs per side`);
    const concurrent = await interleave(RUNS, {
      netplumb: () => meter.concurrent(`${plumb} true`, CONCURRENT),
      ssh: ssh && (() => meter.concurrent(`${ssh?.command} anchor true`, CONCURRENT)),
    });
    const concurrentText = (runs: Concurrent[]): string => {
      const failed = runs.reduce((sum, run) => sum + run.failed, 0);
      const firstError = runs.find((run) => run.firstError !== undefined)?.firstError?.split('\n').slice(-1)[0];
      return `${ms(median(runs.map((run) => run.wallMs)))}${failed === 0 ? '' : ` (${failed} of ${runs.length * CONCURRENT} runs failed: ${firstError ?? ''})`}`;
    };
    const concurrentFailed = (runs: Concurrent[] | undefined): boolean => (runs ?? []).some((run) => run.failed > 0);
    const concurrentNetplumb = median((concurrent.netplumb ?? []).map((run) => run.wallMs));
    const concurrentSsh = concurrent.ssh && median(concurrent.ssh.map((run) => run.wallMs));
    const concurrentRatio = ratioOf(concurrentNetplumb, concurrentSsh);
    rows.push({
      metric: `4. ${CONCURRENT} concurrent \`plumb host true\`: wall`,
      netplumb: concurrentText(concurrent.netplumb ?? []),
      peer: concurrent.ssh === undefined ? 'ssh not measured' : `the same with ssh ${concurrentText(concurrent.ssh)}`,
      ratio: concurrentRatio,
      target: `<= ${TARGET.concurrent.toFixed(1)}x`,
      met: concurrentFailed(concurrent.netplumb) ? false : meets(concurrentRatio, { atMost: TARGET.concurrent }),
    });
    load.note();

    const perSession = (samples: Sample[]): number => (samples.reduce((sum, sample) => sum + sample.serverCpu, 0) / samples.length) * 1000;
    const daemonPerSession = perSession(trueRuns.netplumb ?? []);
    const sshdPerSession = trueRuns.ssh && perSession(trueRuns.ssh);
    rows.push({ metric: `5. server CPU per \`true\` session (own + children), ${TRUE_RUNS} sequential`, netplumb: ms(daemonPerSession), peer: sshdPerSession === undefined ? 'sshd not measured' : `sshd ${ms(sshdPerSession)}`, ratio: ratioOf(daemonPerSession, sshdPerSession), target: `<= ${TARGET.daemonCpuPerSessionMs} ms`, met: meets(daemonPerSession, { atMost: TARGET.daemonCpuPerSessionMs }) });

    say(`6 of 8: load generator, ${SESSIONS} sessions of \`true\`, ${CONCURRENCY} in flight, from one Node process`);
    const loadMetric = `6. load generator: ${SESSIONS} sessions, ${CONCURRENCY} in flight from one process: sessions/s`;
    try {
      // A worker process runs the sessions (a hung client is killed there: no session for SESSION_TIMEOUT_MS plus a
      // margin); the daemon's CPU is read around it here.
      const { result: generated, cpu: daemonCpu } = await serverCpuDuring(daemonServer, () =>
        runWorker<LoadResult>(['load', String(daemon?.port), home, String(SESSIONS), String(CONCURRENCY)], { stallMs: SESSION_TIMEOUT_MS + 15_000, deadlineMs: SESSIONS * 5_000 + 60_000 }),
      );
      const served = generated.sessions - generated.failed;
      const perSecond = served / (generated.wallMs / 1000);
      const loadDaemonMs = (daemonCpu / Math.max(1, served)) * 1000;
      const failures = generated.failed === 0 ? '' : `; ${generated.failed} failed (${generated.firstError ?? ''})`;
      rows.push({ metric: loadMetric, netplumb: `${perSecond.toFixed(0)}/s${failures}`, peer: '', ratio: undefined, target: `>= ${TARGET.sessionsPerSecond}/s`, met: generated.failed === 0 ? meets(perSecond, { atLeast: TARGET.sessionsPerSecond }) : false });
      rows.push({ metric: '6. load generator: daemon CPU per session (own + children)', netplumb: ms(loadDaemonMs), peer: sshdPerSession === undefined ? '' : `sshd ${ms(sshdPerSession)} (row 5)`, ratio: ratioOf(loadDaemonMs, sshdPerSession), target: `<= ${TARGET.daemonCpuPerSessionMs} ms`, met: meets(loadDaemonMs, { atMost: TARGET.daemonCpuPerSessionMs }) });
      rows.push({ metric: '6. load generator: its own CPU per session (the clients)', netplumb: ms((generated.clientCpu / generated.sessions) * 1000), peer: '', ratio: undefined, target: 'information', met: undefined });
    } catch (error) {
      const why = error instanceof Error ? error.message.split('\n')[0] ?? '' : String(error);
      say(`load generator failed: ${why}`);
      rows.push({ metric: loadMetric, netplumb: `not measured: ${why}`, peer: '', ratio: undefined, target: `>= ${TARGET.sessionsPerSecond}/s`, met: false });
    }
    load.note();

    say(`7 of 8: keystroke echo while ${STREAM_BULK.text} flows on the same connection, ${RUNS} runs per side`);
    const localDir = join(home, 'echo');
    mkdirSync(localDir);
    // The ssh side is the peer's setup (a unix-socket remote forward): if it fails, the row says why and keeps
    // netplumb's figure rather than failing the bench.
    let sshEchoFailure: string | undefined;
    const sshEcho = (peer: OpenSsh) => async (): Promise<EchoResult> => {
      if (sshEchoFailure !== undefined) return { delays: [] };
      try {
        return await sshEchoUnderBulk(peer, localDir);
      } catch (error) {
        sshEchoFailure = error instanceof Error ? error.message.split('\n')[0] : String(error);
        say(`ssh echo under bulk failed: ${sshEchoFailure}`);
        return { delays: [] };
      }
    };
    const echoes = await interleave(RUNS, {
      netplumb: () => plumbEchoUnderBulk(daemon?.port ?? 0, localDir, env),
      ssh: ssh && sshEcho(ssh),
    });
    const echoDelays = (echoes.netplumb ?? []).flatMap((result) => result.delays);
    const sshEchoDelays = sshEchoFailure === undefined ? echoes.ssh?.flatMap((result) => result.delays) : undefined;
    const echoP99 = echoDelays.length === 0 ? undefined : percentile(echoDelays, 0.99);
    const sshEchoP99 = sshEchoDelays === undefined || sshEchoDelays.length === 0 ? undefined : percentile(sshEchoDelays, 0.99);
    const noKeys = 'no key typed while the bulk flowed (raise BENCH_STREAM_BULK)';
    rows.push({
      metric: `7. keystroke echo p99 under ${STREAM_BULK.text} bulk on the same connection (keys typed while it flowed)`,
      netplumb: echoP99 === undefined ? noKeys : `${ms(echoP99)} (${echoDelays.length} keys, -t + -outfifo)`,
      peer:
        sshEchoFailure !== undefined ? `ssh not measured: ${sshEchoFailure}`
        : sshEchoDelays === undefined ? 'ssh not measured'
        : sshEchoP99 === undefined ? `ssh: ${noKeys}`
        : `ssh -t + -R unix socket ${ms(sshEchoP99)} (${sshEchoDelays.length} keys)`,
      ratio: echoP99 === undefined ? undefined : ratioOf(echoP99, sshEchoP99),
      target: `p99 <= ${TARGET.echoP99Ms} ms`,
      met: meets(echoP99, { atMost: TARGET.echoP99Ms }),
    });
    load.note();

    // Row 8 came from row 1's runs (interleaved with them).
    const tcp = summarize(download.tcp ?? []);
    const tcpRatio = ratioOf(mbps(BULK.bytes, downloadNetplumb.wallMs), mbps(BULK.bytes, tcp.wallMs));
    rows.push({ metric: `8. plain Node TCP between two processes, ${BULK.text} (the ceiling): speed, CPU`, netplumb: `${mbps(BULK.bytes, downloadNetplumb.wallMs).toFixed(0)} MB/s, CPU ${seconds(downloadNetplumb.cpu)}`, peer: `Node TCP ${speedText(tcp, BULK)}, CPU ${seconds(tcp.clientCpu)}`, ratio: tcpRatio, target: 'none set (ceiling)', met: undefined });

    say('extra rows: recipe, -outfifo/-socket, run-as/one-time key, echo beside recipe checks');
    const extras = await extraRows({ port: daemon.port, home, env, meter, plumb, asRoot }, () => load.note());
    load.note();
    say('row 9: a recipe across two daemons (127.0.0.1 and 127.0.0.2)');
    extras.push(...(await acrossRows({ port: daemon.port, home, env, meter, plumb, asRoot }, daemon.pid)));
    load.note();

    const floor = median(await interleave(LATENCY_RUNS, { node: () => runShell(`${process.execPath} -e 0`, env) }).then((runs) => runs.node ?? []));

    printTable('netplumb beside OpenSSH (medians of interleaved runs; CPU = client process + server with its children)', rows);
    printTable('extra rows', extras);
    process.stdout.write(`\n\`node -e 0\` on this machine: ${ms(floor)} (the floor under any Node CLI's latency)\n`);
    process.stdout.write(`1-min load: ${load.atStart.toFixed(2)} at start, ${loadAverage().toFixed(2)} at the end, highest seen between rows ${load.highest.toFixed(2)}\n`);
    if (load.atStart > 1.0) process.stdout.write(`WARNING: the 1-min load at start was ${load.atStart.toFixed(2)} (above 1.0): figures taken under load prove little.\n`);
  } finally {
    if (!interrupted) await cleanUp();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  // Optional, after the table and on daemons of its own: the soak (scripts/soak.ts), which prints its own PASS/FAIL.
  if (process.env['BENCH_SOAK'] === '1') spawnSync(process.execPath, [PROGRAMS.soak], { stdio: 'inherit' });
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
