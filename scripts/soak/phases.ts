// The soak's three phases, each on a fresh daemon and judged against its own bound: idle sessions held open, an
// unread `cat /dev/zero`, and stream open/close churn on one connection. Each returns PASS/FAIL, a line and figures.

import { spawnSync } from 'node:child_process';
import { ErrorCode } from '../../protocol/errors.js';
import { StartStatus } from '../../protocol/wire.js';
import { BIN } from '../../test/helpers/daemon.js';
import { crashReport, startSoakDaemon, type Fixture } from './daemon.js';
import { closeClient, connectClient, startCommand, type DriverClient } from './driver.js';
import { heapDifference, heapSummaryOf } from './heap.js';
import { ZERO_SETTLE_SECONDS, type Options } from './options.js';
import { cpuSecondsOf, delay, descendantsRunning, isAlive, memoryOf, mib, MIB, openFileLimit, signedMib, within, type Memory } from './proc.js';

/** The bounds each phase is judged on. */
const IDLE_MAX_RSS_BYTES = 400 * MIB;
const ZERO_MAX_GROWTH_BYTES = 32 * MIB;
const CHURN_MAX_GROWTH_BYTES = 64 * MIB;

/** Handshakes the driver keeps in flight: well under the daemon's max-unauthenticated (64 by default). */
const HANDSHAKES_IN_FLIGHT = 16;
/** Churn pairs sent between two looks at the socket's backpressure. */
const CHURN_BATCH_PAIRS = 500;
/** Time bounds of the waits; each loop below also stops at its count. */
const OPEN_TIMEOUT_PER_SESSION_MS = 100;
const OPEN_TIMEOUT_MIN_MS = 60_000;
const CLOSE_TIMEOUT_MS = 30_000;
const START_REPLY_TIMEOUT_MS = 10_000;
const PROCESS_GONE_TIMEOUT_MS = 10_000;
const PLUMB_TIMEOUT_MS = 30_000;
const CHURN_SEND_TIMEOUT_MS = 180_000;
const CHURN_ANSWER_TIMEOUT_MS = 60_000;
/** Codes with which a daemon that limits a session's streams may end the churn connection (a PASS). */
const LIMIT_CODES: ReadonlySet<string> = new Set([ErrorCode.TooManyStreams, ErrorCode.TooManyConnections]);

export interface PhaseResult {
  pass: boolean;
  line: string;
  figures: Record<string, unknown>;
}

/** 1,000 authenticated sessions left idle: the daemon's memory with all of them open, and a plumb run beside them. */
export async function idlePhase(fixture: Fixture, options: Options): Promise<PhaseResult> {
  const daemon = await startSoakDaemon(fixture, 'idle', options);
  const pid = daemon.process.pid;
  const fdLimits = { daemon: openFileLimit(pid), driver: openFileLimit(process.pid) };
  const fdsWanted = options.sessions + 256;
  if (fdLimits.daemon < fdsWanted || fdLimits.driver < fdsWanted) {
    throw new Error(`open-file limit too low for ${options.sessions} sessions (daemon ${fdLimits.daemon}, driver ${fdLimits.driver}); raise ulimit -n to ${fdsWanted}`);
  }
  const base = memoryOf(pid) as Memory;
  const cpuBefore = cpuSecondsOf(pid);
  const clients: DriverClient[] = [];
  const failures: string[] = [];
  const openStarted = performance.now();
  const openDeadline = Date.now() + Math.max(OPEN_TIMEOUT_MIN_MS, options.sessions * OPEN_TIMEOUT_PER_SESSION_MS);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < options.sessions && Date.now() < openDeadline && daemon.process.running) {
      next++;
      try {
        clients.push(await connectClient(fixture, daemon.port));
      } catch (error) {
        failures.push((error as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(HANDSHAKES_IN_FLIGHT, options.sessions) }, worker));
  const openSeconds = (performance.now() - openStarted) / 1000;
  const handshakeCpu = cpuSecondsOf(pid) - cpuBefore;
  // Let the daemon finish attaching the last sessions and settle before it is measured.
  await delay(2000);
  const open = memoryOf(pid);
  const driverRssBytes = process.memoryUsage().rss;

  const plumbStarted = performance.now();
  const plumb = spawnSync(process.execPath, [BIN.plumb, `-identity=${fixture.client.privateFile}`, '-accept-new', `127.0.0.1:${daemon.port}`, 'true'], {
    env: { ...process.env, NETPLUMB_HOME: fixture.plumbHome },
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: PLUMB_TIMEOUT_MS,
  });
  const plumbMs = performance.now() - plumbStarted;
  const plumbOk = plumb.status === 0;

  // Taken after the figures above: the snapshot itself grows the daemon's RSS.
  const heapOpen = options.heapSummary && daemon.process.running ? await heapSummaryOf(daemon) : undefined;

  const stillOpen = clients.filter((client) => !client.session.isEnded).length;
  const closeStarted = performance.now();
  const closed = await Promise.all(clients.map((client) => closeClient(client, CLOSE_TIMEOUT_MS)));
  const closeSeconds = (performance.now() - closeStarted) / 1000;
  await delay(2000);
  const after = memoryOf(pid);
  const heapClosed = heapOpen !== undefined && daemon.process.running ? await heapSummaryOf(daemon) : undefined;
  const heap = heapOpen !== undefined && heapClosed !== undefined ? heapDifference(heapOpen, heapClosed, 15) : undefined;
  const crashed = !daemon.process.running;
  const rssOpen = open?.rssBytes ?? NaN;
  const perSessionBytes = (rssOpen - base.rssBytes) / Math.max(1, clients.length);
  const allServed = clients.length === options.sessions && stillOpen === options.sessions;
  const pass = !crashed && allServed && rssOpen <= IDLE_MAX_RSS_BYTES && plumbOk;
  const figures = {
    sessions: options.sessions,
    opened: clients.length,
    openFailures: failures.length,
    firstFailure: failures[0],
    stillOpenAfterPlumb: stillOpen,
    openSeconds,
    daemonCpuSecondsOpening: handshakeCpu,
    daemonCpuMsPerSession: (handshakeCpu * 1000) / Math.max(1, clients.length),
    rssBaseBytes: base.rssBytes,
    rssOpenBytes: rssOpen,
    rssPerSessionBytes: perSessionBytes,
    rssPeakBytes: open?.peakBytes,
    rssAfterCloseBytes: after?.rssBytes,
    closedInOrder: closed.filter(Boolean).length,
    closeSeconds,
    driverRssBytes,
    openFileLimits: fdLimits,
    plumbTrue: { exitCode: plumb.status, ms: plumbMs, stderr: plumbOk ? undefined : plumb.stderr.toString().trim().slice(0, 300) },
    heap,
    crashed: crashed ? crashReport(daemon.process) : undefined,
  };
  const line =
    `idle: ${clients.length}/${options.sessions} sessions open in ${openSeconds.toFixed(1)} s (daemon CPU ${handshakeCpu.toFixed(2)} s, ` +
    `${figures.daemonCpuMsPerSession.toFixed(2)} ms/session), ${stillOpen} still open after plumb; daemon RSS ${mib(rssOpen)} MiB with all open ` +
    `(base ${mib(base.rssBytes)} MiB, ${(perSessionBytes / 1024).toFixed(1)} KiB/session, peak ${mib(open?.peakBytes ?? NaN)} MiB), ` +
    `${mib(after?.rssBytes ?? NaN)} MiB after close${heap === undefined ? '' : ' (and after a heap snapshot)'}; plumb true ${plumbOk ? 'ok' : `FAILED (${plumb.status ?? plumb.signal})`} in ${plumbMs.toFixed(0)} ms` +
    `${failures.length > 0 ? `; ${failures.length} failed to open (${failures[0]})` : ''}${crashed ? `; ${figures.crashed}` : ''}` +
    ` -- ${pass ? 'PASS' : 'FAIL'} (bound: all served, RSS <= ${mib(IDLE_MAX_RSS_BYTES)} MiB)`;
  await daemon.process.stop();
  return { pass, line, figures };
}

/** One `cat /dev/zero` whose stdout the driver never reads: the daemon's memory must stay within the windows. */
export async function zeroPhase(fixture: Fixture, options: Options): Promise<PhaseResult> {
  const daemon = await startSoakDaemon(fixture, 'zero', options);
  const pid = daemon.process.pid;
  const argv = ['cat', '/dev/zero'];
  const client = await connectClient(fixture, daemon.port);
  const { stdout, stderr } = startCommand(client, argv);
  // stdout is left paused with no reader; stderr (empty) is taken so that only stdout holds bytes back.
  stderr.resume();
  const reply = await within(client.session.startReply, START_REPLY_TIMEOUT_MS, undefined);
  if (reply?.status !== StartStatus.Started) {
    await closeClient(client, CLOSE_TIMEOUT_MS);
    await daemon.process.stop();
    const why = reply === undefined ? 'no Start reply' : reply.status === StartStatus.Refused ? `Start refused: ${reply.code} ${reply.message}` : `Start answered ${reply.status}`;
    return { pass: false, line: `zero: ${why} -- FAIL`, figures: { error: why } };
  }
  let catPids: number[] = [];
  for (const deadline = Date.now() + PROCESS_GONE_TIMEOUT_MS; catPids.length === 0 && Date.now() < deadline; ) {
    catPids = descendantsRunning(pid, argv);
    if (catPids.length === 0) await delay(50);
  }
  // Remembered so that the end of the run can kill the command's group even if the daemon did not.
  daemon.process.commandGroups();
  const cpuBefore = cpuSecondsOf(pid);
  const catCpuBefore = catPids.map(cpuSecondsOf);
  const samples: number[] = [];
  for (let second = 1; second <= options.zeroSeconds && daemon.process.running; second++) {
    await delay(1000);
    samples.push(memoryOf(pid)?.rssBytes ?? NaN);
  }
  const daemonCpu = cpuSecondsOf(pid) - cpuBefore;
  const catCpu = catPids.map(cpuSecondsOf).reduce((sum, value, index) => sum + value - (catCpuBefore[index] ?? 0), 0);
  const peak = memoryOf(pid)?.peakBytes ?? NaN;
  const heldAtDriverBytes = stdout.readableLength + stdout.queuedReceiveBytes;
  const crashed = !daemon.process.running;
  const from = samples[ZERO_SETTLE_SECONDS - 1] ?? NaN;
  const last = samples[samples.length - 1] ?? NaN;
  const growth = last - from;

  const closedInOrder = await closeClient(client, CLOSE_TIMEOUT_MS);
  const gone = async (): Promise<boolean> => {
    for (const deadline = Date.now() + PROCESS_GONE_TIMEOUT_MS; Date.now() < deadline; await delay(100)) {
      if (!catPids.some(isAlive)) return true;
    }
    return !catPids.some(isAlive);
  };
  const catGone = catPids.length > 0 && (await gone());
  const pass = !crashed && catPids.length > 0 && growth < ZERO_MAX_GROWTH_BYTES && catGone;
  const figures = {
    seconds: samples.length,
    rssSamplesBytes: samples,
    rssFromBytes: from,
    rssLastBytes: last,
    growthBytes: growth,
    rssPeakBytes: peak,
    daemonCpuSeconds: daemonCpu,
    catCpuSeconds: catCpu,
    catPids,
    heldAtDriverBytes,
    closedInOrder,
    catGone,
    crashed: crashed ? crashReport(daemon.process) : undefined,
  };
  const line =
    `zero: unread cat /dev/zero for ${samples.length} s: daemon RSS ${mib(from)} MiB at ${ZERO_SETTLE_SECONDS} s -> ${mib(last)} MiB ` +
    `(${signedMib(growth)} MiB, peak ${mib(peak)} MiB); CPU daemon ${daemonCpu.toFixed(2)} s, cat ${catCpu.toFixed(2)} s; ` +
    `${(heldAtDriverBytes / 1024).toFixed(0)} KiB held unread at the driver; cat ${catPids.length === 0 ? 'NOT FOUND' : catGone ? 'gone after close' : 'STILL RUNNING after close'}` +
    `${crashed ? `; ${figures.crashed}` : ''} -- ${pass ? 'PASS' : 'FAIL'} (bound: growth < ${mib(ZERO_MAX_GROWTH_BYTES)} MiB, cat gone)`;
  await daemon.process.stop();
  daemon.process.killLeftoverGroups();
  return { pass, line, figures };
}

/** StreamOpen then StreamClose, over and over on one connection: what the daemon keeps of streams that are gone. */
export async function churnPhase(fixture: Fixture, options: Options): Promise<PhaseResult> {
  const daemon = await startSoakDaemon(fixture, 'churn', options);
  const pid = daemon.process.pid;
  const client = await connectClient(fixture, daemon.port);
  await delay(500);
  const before = memoryOf(pid) as Memory;
  const cpuBefore = cpuSecondsOf(pid);
  const daemonGone = daemon.process.exited.then(() => 'gone' as const);
  const connectionGone = client.session.ended.then(() => 'gone' as const);
  const started = performance.now();
  const sendDeadline = Date.now() + CHURN_SEND_TIMEOUT_MS;
  let sent = 0;
  let stoppedBy: string | undefined;
  while (sent < options.churn) {
    if (client.session.isEnded || !daemon.process.running) break;
    if (Date.now() >= sendDeadline) {
      stoppedBy = `not all sent within ${CHURN_SEND_TIMEOUT_MS / 1000} s`;
      break;
    }
    const batchEnd = Math.min(options.churn, sent + CHURN_BATCH_PAIRS);
    try {
      for (; sent < batchEnd; sent++) client.mux.openStream().on('error', () => undefined).destroy();
    } catch (error) {
      stoppedBy = `openStream failed: ${(error as Error).message}`;
      break;
    }
    // What the socket could not take yet waits here, not in the driver's memory.
    if (client.socket.writableNeedDrain) {
      const drained = new Promise<'drained'>((resolve) => client.socket.once('drain', () => resolve('drained')));
      await within(Promise.race([drained, daemonGone, connectionGone]), Math.max(0, sendDeadline - Date.now()), 'late');
    } else {
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  const sendSeconds = (performance.now() - started) / 1000;

  // A command on the same connection answers only after every pair sent before it was taken (packets are in order).
  let outcome: string;
  let served = false;
  let limitClosed = false;
  if (!client.session.isEnded && daemon.process.running) {
    try {
      startCommand(client, ['true']);
    } catch {
      // The connection ended meanwhile; the race below says how.
    }
    const answer = await within(
      Promise.race([
        client.session.startReply.then((reply) => (reply.status === StartStatus.Started ? client.session.exit.then(() => 'served' as const) : ('refused' as const))),
        daemonGone,
        connectionGone,
      ]),
      CHURN_ANSWER_TIMEOUT_MS,
      'late' as const,
    );
    served = answer === 'served';
    outcome = served ? 'still served (a Start of `true` on a new stream was answered)' : answer === 'refused' ? 'Start refused afterwards' : answer === 'late' ? `no answer within ${CHURN_ANSWER_TIMEOUT_MS / 1000} s` : '';
  } else {
    outcome = '';
  }
  const answerSeconds = (performance.now() - started) / 1000 - sendSeconds;
  await delay(200);
  const crashed = !daemon.process.running;
  if (crashed) {
    outcome = crashReport(daemon.process);
  } else if (outcome === '' && client.session.isEnded) {
    const code = client.session.endedWith?.code;
    limitClosed = code !== undefined && LIMIT_CODES.has(code);
    outcome = `connection closed by the daemon (${code ?? 'in order'}: ${client.session.endedWith?.message ?? 'Goodbye'})`;
  }
  const after = memoryOf(pid);
  const cpu = cpuSecondsOf(pid) - cpuBefore;
  const growth = (after?.rssBytes ?? NaN) - before.rssBytes;
  const allSent = sent === options.churn;
  const pass = !crashed && allSent && (served || limitClosed) && growth < CHURN_MAX_GROWTH_BYTES;
  await closeClient(client, CLOSE_TIMEOUT_MS);
  const figures = {
    pairs: options.churn,
    sent,
    stoppedBy,
    sendSeconds,
    answerSeconds,
    pairsPerSecond: sent / sendSeconds,
    rssBeforeBytes: before.rssBytes,
    rssAfterBytes: after?.rssBytes,
    growthBytes: growth,
    rssPeakBytes: after?.peakBytes ?? memoryOf(pid)?.peakBytes,
    daemonCpuSeconds: cpu,
    daemonCpuMicrosecondsPerPair: (cpu * 1e6) / Math.max(1, sent),
    served,
    limitClosed,
    outcome,
    crashed,
  };
  const line =
    `churn: ${sent}/${options.churn} StreamOpen+StreamClose pairs in ${sendSeconds.toFixed(1)} s (${figures.pairsPerSecond.toFixed(0)}/s)${stoppedBy === undefined ? '' : ` [${stoppedBy}]`}, all taken ${answerSeconds.toFixed(1)} s later; ` +
    `daemon RSS ${mib(before.rssBytes)} -> ${crashed ? 'n/a' : `${mib(after?.rssBytes ?? NaN)} MiB (${signedMib(growth)} MiB, peak ${mib(after?.peakBytes ?? NaN)} MiB)`}; ` +
    `CPU ${Number.isNaN(cpu) ? 'n/a' : `${cpu.toFixed(2)} s (${figures.daemonCpuMicrosecondsPerPair.toFixed(1)} us/pair)`}; afterwards: ${outcome}` +
    ` -- ${pass ? 'PASS' : 'FAIL'} (bound: growth < ${mib(CHURN_MAX_GROWTH_BYTES)} MiB; still served or closed with a limit error)`;
  await daemon.process.stop();
  return { pass, line, figures };
}
