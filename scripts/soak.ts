// `npm run soak`: one netplumbd on 127.0.0.1 held under three loads, each on a fresh daemon: 1,000 idle authenticated
// sessions, an unread `cat /dev/zero`, and 300,000 stream open/close pairs on one connection. Prints the daemon's
// RSS and CPU seconds and PASS/FAIL against each phase's bound (or one JSON object with --json); never a test.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecureConnection } from '../protocol/connection.js';
import { ErrorCode, isErrorCode, type NetplumbError } from '../protocol/errors.js';
import { encodeFields, type FieldList } from '../protocol/fields.js';
import { loadPrivateIdentity } from '../bridges/key-files.js';
import { parsePublicKeyLine, sameIdentity, type PrivateIdentity, type PublicIdentity } from '../protocol/keys.js';
import { Mux, type MuxStream, type SessionHandler } from '../protocol/mux.js';
import { decodeExit, decodeStartReply, encodeStartRequest, NO_ENDPOINTS, type ExitStatus, type StartReply } from '../protocol/session.js';
import { DEFAULT_LIMITS, Field, PacketType, StartKind, StartStatus } from '../protocol/wire.js';
import { baseDaemonConfig, BIN, DaemonProcess, statFields, writeKeyPair, type KeyFiles } from '../test/helpers/daemon.js';

const MIB = 1024 * 1024;

/** The bounds each phase is judged on. */
const IDLE_MAX_RSS_BYTES = 400 * MIB;
const ZERO_MAX_GROWTH_BYTES = 32 * MIB;
const CHURN_MAX_GROWTH_BYTES = 64 * MIB;

/** The daemon's old space is capped so that a leak ends in a crash the soak reports, not in a swapping machine. */
const DAEMON_MAX_OLD_SPACE_MB = 512;
/** Handshakes the driver keeps in flight: well under the daemon's max-unauthenticated (64 by default). */
const HANDSHAKES_IN_FLIGHT = 16;
/** The zero phase's growth is taken from this sample on: the first seconds fill the windows and warm the daemon. */
const ZERO_SETTLE_SECONDS = 2;
/** Churn pairs sent between two looks at the socket's backpressure. */
const CHURN_BATCH_PAIRS = 500;
/** Time bounds of the waits; each loop below also stops at its count. */
const DAEMON_START_TIMEOUT_MS = 20_000;
const OPEN_TIMEOUT_PER_SESSION_MS = 100;
const OPEN_TIMEOUT_MIN_MS = 60_000;
const CLOSE_TIMEOUT_MS = 30_000;
const START_REPLY_TIMEOUT_MS = 10_000;
const PROCESS_GONE_TIMEOUT_MS = 10_000;
const PLUMB_TIMEOUT_MS = 30_000;
const CHURN_SEND_TIMEOUT_MS = 180_000;
const CHURN_ANSWER_TIMEOUT_MS = 60_000;
const HEAP_SNAPSHOT_TIMEOUT_MS = 120_000;
/** Codes with which a daemon that limits a session's streams may end the churn connection (a PASS). */
const LIMIT_CODES: ReadonlySet<string> = new Set([ErrorCode.TooManyStreams, ErrorCode.TooManyConnections]);

type PhaseName = 'idle' | 'zero' | 'churn';

interface Options {
  sessions: number;
  churn: number;
  zeroSeconds: number;
  only: PhaseName | undefined;
  json: boolean;
  /** Snapshots the daemon's heap with the idle sessions open and after they closed; sums the difference by constructor. */
  heapSummary: boolean;
}

const USAGE = 'usage: soak [--sessions=N] [--churn=N] [--zero-seconds=N] [--only=idle|zero|churn] [--json] [--heap-summary]';

function parseOptions(argv: readonly string[]): Options {
  const options: Options = { sessions: 1000, churn: 300_000, zeroSeconds: 20, only: undefined, json: false, heapSummary: false };
  const count = (name: string, value: string | undefined, min: number): number => {
    const parsed = Number(value);
    if (value === undefined || !/^\d+$/.test(value) || parsed < min) throw new Error(`--${name} wants a whole number of at least ${min}\n${USAGE}`);
    return parsed;
  };
  for (const arg of argv) {
    const [name, value] = arg.startsWith('--') ? [arg.slice(2).split('=')[0], arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : undefined] : [undefined, undefined];
    switch (name) {
      case 'sessions':
        options.sessions = count(name, value, 1);
        break;
      case 'churn':
        options.churn = count(name, value, 1);
        break;
      case 'zero-seconds':
        options.zeroSeconds = count(name, value, ZERO_SETTLE_SECONDS + 1);
        break;
      case 'only':
        if (value !== 'idle' && value !== 'zero' && value !== 'churn') throw new Error(`--only wants idle, zero or churn\n${USAGE}`);
        options.only = value;
        break;
      case 'json':
        options.json = true;
        break;
      case 'heap-summary':
        options.heapSummary = true;
        break;
      default:
        throw new Error(`unknown argument ${arg}\n${USAGE}`);
    }
  }
  return options;
}

// ---- /proc figures -------------------------------------------------------------------------------------------

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

interface Memory {
  /** Resident set now (VmRSS), bytes. */
  rssBytes: number;
  /** Highest resident set since the process started (VmHWM), bytes. */
  peakBytes: number;
}

function memoryOf(pid: number): Memory | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rssBytes: kib('VmRSS'), peakBytes: kib('VmHWM') };
}

/** User plus system CPU seconds the process itself has used (fields 14 and 15). */
function cpuSecondsOf(pid: number): number {
  const fields = statFields(pid);
  if (fields === undefined) return NaN;
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** Live (not zombie) descendants of a process whose command line is exactly argv. */
function descendantsRunning(root: number, argv: readonly string[]): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields !== undefined && fields[0] !== 'Z') parentOf.set(Number(entry), Number(fields[1]));
  }
  const isDescendant = (pid: number): boolean => {
    for (let parent = parentOf.get(pid), hops = 0; parent !== undefined && hops < 64; parent = parentOf.get(parent), hops++) {
      if (parent === root) return true;
    }
    return false;
  };
  const wanted = argv.join('\0');
  return [...parentOf.keys()].filter((pid) => {
    if (!isDescendant(pid)) return false;
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '') === wanted;
    } catch {
      return false;
    }
  });
}

function isAlive(pid: number): boolean {
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== 'Z';
}

function openFileLimit(pid: number): number {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  return Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1] ?? NaN);
}

function loadAverage(): string {
  return execFileSync('uptime', { encoding: 'utf8' }).trim();
}

const mib = (bytes: number): string => (bytes / MIB).toFixed(1);
const signedMib = (bytes: number): string => `${bytes >= 0 ? '+' : ''}${mib(bytes)}`;
const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the promise's value, or with `late` once ms have passed. */
function within<T, L>(promise: Promise<T>, ms: number, late: L): Promise<T | L> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<L>((resolve) => (timer = setTimeout(() => resolve(late), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- The daemon and its keys -----------------------------------------------------------------------------------

interface Fixture {
  dir: string;
  hostKey: KeyFiles;
  hostPublic: PublicIdentity;
  client: KeyFiles;
  identity: PrivateIdentity;
  clientsFile: string;
  configFile: string;
  /** NETPLUMB_HOME of the plumb run (its known_hosts). */
  plumbHome: string;
}

function makeFixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'netplumb-soak-'));
  const hostKey = writeKeyPair(dir, 'host_key');
  const client = writeKeyPair(dir, 'identity');
  const clientsFile = join(dir, 'authorized_clients');
  writeFileSync(clientsFile, `${client.publicLine}\n`);
  const configFile = join(dir, 'netplumbd.conf');
  writeFileSync(configFile, baseDaemonConfig(dir));
  const plumbHome = join(dir, 'home');
  mkdirSync(plumbHome);
  return {
    dir,
    hostKey,
    hostPublic: parsePublicKeyLine(hostKey.publicLine),
    client,
    identity: loadPrivateIdentity(client.privateFile),
    clientsFile,
    configFile,
    plumbHome,
  };
}

interface Daemon {
  process: DaemonProcess;
  port: number;
  /** Where the daemon runs and writes heap snapshots. */
  cwd: string;
}

/** Every daemon started, so the end of the run stops whatever is left of them. */
const daemons: DaemonProcess[] = [];

async function startSoakDaemon(fixture: Fixture, phase: PhaseName, options: Options): Promise<Daemon> {
  const cwd = mkdtempSync(join(fixture.dir, `${phase}-`));
  const nodeFlags = [`--max-old-space-size=${DAEMON_MAX_OLD_SPACE_MB}`, ...(phase === 'idle' && options.heapSummary ? ['--heapsnapshot-signal=SIGUSR2'] : [])];
  const child = spawn(
    process.execPath,
    [
      ...nodeFlags,
      BIN.netplumbd,
      `-config=${fixture.configFile}`,
      '-listen=127.0.0.1:0',
      `-hostkey=${fixture.hostKey.privateFile}`,
      `-clients=${fixture.clientsFile}`,
      `-spool=${join(cwd, 'spool')}`,
      `-max-connections=${Math.max(DEFAULT_LIMITS.maxConnections, options.sessions + 64)}`,
      '-log-level=warn',
    ],
    { cwd, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const daemon = new DaemonProcess(child);
  daemons.push(daemon);
  const log = await daemon.waitForLog(/listening on 127\.0\.0\.1:\d+\n/, DAEMON_START_TIMEOUT_MS);
  daemon.port = Number(/listening on 127\.0\.0\.1:(\d+)\n/.exec(log)?.[1]);
  return { process: daemon, port: daemon.port, cwd };
}

/** How a daemon that is gone ended, with the last lines of its log (V8's out-of-memory report among them). */
function crashReport(daemon: DaemonProcess): string {
  const exit = daemon.child.exitCode !== null ? `exit ${daemon.child.exitCode}` : `signal ${daemon.child.signalCode ?? '?'}`;
  const tail = daemon
    .log()
    .trim()
    .split('\n')
    .filter((line) => line.trim() !== '')
    .slice(-3)
    .join(' | ');
  return `daemon crashed (${exit})${tail === '' ? '' : `: ${tail.slice(0, 300)}`}`;
}

// ---- The driver's side of a session ----------------------------------------------------------------------------

/** What the driver's sessions hear from the daemon: the Start reply, the Exit, and how the connection ended. */
class DriverSession implements SessionHandler {
  readonly startReply: Promise<StartReply>;
  readonly exit: Promise<ExitStatus>;
  readonly ended: Promise<NetplumbError | undefined>;
  endedWith: NetplumbError | undefined;
  isEnded = false;
  private resolveStart: (reply: StartReply) => void = () => undefined;
  private resolveExit: (status: ExitStatus) => void = () => undefined;
  private resolveEnded: (error: NetplumbError | undefined) => void = () => undefined;

  constructor() {
    this.startReply = new Promise((resolve) => (this.resolveStart = resolve));
    this.exit = new Promise((resolve) => (this.resolveExit = resolve));
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  packet(type: PacketType, fields: FieldList): void {
    if (type === PacketType.Start) this.resolveStart(decodeStartReply(fields, isErrorCode));
    else if (type === PacketType.Exit) this.resolveExit(decodeExit(fields));
  }

  streamOpened(stream: MuxStream): void {
    stream.destroy();
  }

  closed(error: NetplumbError | undefined): void {
    this.isEnded = true;
    this.endedWith = error;
    this.resolveEnded(error);
  }
}

interface DriverClient {
  socket: Socket;
  connection: SecureConnection;
  mux: Mux;
  session: DriverSession;
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port, noDelay: true });
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** An authenticated connection with a Mux attached, as plumb makes one, and nothing started on it. */
async function connectClient(fixture: Fixture, port: number): Promise<DriverClient> {
  const socket = await openSocket(port);
  const connection = await SecureConnection.connect(socket, {
    identity: fixture.identity,
    verifyHostKey: (hostKey) => {
      if (!sameIdentity(hostKey, fixture.hostPublic)) throw new Error(`unexpected host key ${hostKey.fingerprint}`);
    },
  });
  const session = new DriverSession();
  const mux = new Mux(
    connection,
    {
      side: 'client',
      maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
      initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
      maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
    },
    session,
  );
  connection.attach(mux);
  return { socket, connection, mux, session };
}

/** Opens stdin, stdout and stderr as plumb does and sends Start for argv; the streams are the caller's. */
function startCommand(client: DriverClient, argv: string[]): { stdin: MuxStream; stdout: MuxStream; stderr: MuxStream } {
  const stdin = client.mux.openStream([[Field.purpose, 'stdin']]);
  const stdout = client.mux.openStream([[Field.purpose, 'stdout']]);
  const stderr = client.mux.openStream([[Field.purpose, 'stderr']]);
  for (const stream of [stdin, stdout, stderr]) stream.on('error', () => undefined);
  const request = encodeStartRequest({ kind: StartKind.Exec, argv, env: [], endpoints: NO_ENDPOINTS, stdin: stdin.id, stdout: stdout.id, stderr: stderr.id });
  client.connection.send(PacketType.Start, encodeFields(request));
  // The driver never writes to the command and only reads what it chooses to.
  stdin.end();
  stdout.end();
  stderr.end();
  return { stdin, stdout, stderr };
}

/** Closes with Goodbye and waits until the daemon has ended the connection too (or timeoutMs has passed). */
async function closeClient(client: DriverClient, timeoutMs: number): Promise<boolean> {
  if (client.session.isEnded) return true;
  void client.connection.close();
  const ended = await within(client.session.ended.then(() => true), timeoutMs, false);
  if (!ended) client.socket.destroy();
  return ended;
}

// ---- Heap snapshot summary -------------------------------------------------------------------------------------

interface HeapRow {
  what: string;
  count: number;
  bytes: number;
}

interface HeapSummary {
  /** Self sizes of every node, bytes. */
  totalBytes: number;
  nodes: number;
  rows: Map<string, HeapRow>;
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self sizes of a V8 heap snapshot summed by constructor (objects) or by kind (strings, code, arrays...). */
function summariseSnapshot(file: string): HeapSummary {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = parsed.snapshot.meta.node_fields;
  const typeNames = parsed.snapshot.meta.node_types[0];
  const stride = fields.length;
  const [typeAt, nameAt, sizeAt] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  const rows = new Map<string, HeapRow>();
  let totalBytes = 0;
  for (let at = 0; at < parsed.nodes.length; at += stride) {
    const type = typeNames[parsed.nodes[at + typeAt] as number] ?? '?';
    const bytes = parsed.nodes[at + sizeAt] as number;
    const name = parsed.strings[parsed.nodes[at + nameAt] as number] ?? '?';
    const what = type === 'object' ? name : type === 'closure' ? '(closures)' : type === 'native' ? `(native) ${name.slice(0, 40)}` : `(${type})`;
    totalBytes += bytes;
    const row = rows.get(what) ?? { what, count: 0, bytes: 0 };
    row.count++;
    row.bytes += bytes;
    rows.set(what, row);
  }
  return { totalBytes, nodes: parsed.nodes.length / stride, rows };
}

/** What the sessions add to the heap: the snapshot with them open less the one after they closed, largest first. */
interface HeapDifference {
  openBytes: number;
  closedBytes: number;
  top: HeapRow[];
}

function heapDifference(open: HeapSummary, closed: HeapSummary, rows: number): HeapDifference {
  const top = [...open.rows.values()]
    .map((row) => ({ what: row.what, count: row.count - (closed.rows.get(row.what)?.count ?? 0), bytes: row.bytes - (closed.rows.get(row.what)?.bytes ?? 0) }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, rows);
  return { openBytes: open.totalBytes, closedBytes: closed.totalBytes, top };
}

function tailOf(path: string, size: number, bytes: number): string {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(Math.min(bytes, size));
    readSync(fd, buffer, 0, buffer.length, size - buffer.length);
    return buffer.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

async function heapSummaryOf(daemon: Daemon): Promise<HeapSummary> {
  const file = await takeHeapSnapshot(daemon);
  try {
    return summariseSnapshot(file);
  } finally {
    rmSync(file, { force: true });
  }
}

/** Signals the daemon to write a heap snapshot into its directory and waits until the file is whole. */
async function takeHeapSnapshot(daemon: Daemon): Promise<string> {
  daemon.process.child.kill('SIGUSR2');
  const deadline = Date.now() + HEAP_SNAPSHOT_TIMEOUT_MS;
  let lastSize = -1;
  while (Date.now() < deadline) {
    await delay(500);
    const file = readdirSync(daemon.cwd).find((name) => name.endsWith('.heapsnapshot'));
    if (file === undefined) continue;
    const path = join(daemon.cwd, file);
    const size = statSync(path).size;
    // V8 writes the snapshot in one go on the main thread: a size that held still for a poll ends with the strings' `]}`.
    if (size === lastSize && size > 0 && tailOf(path, size, 16).trimEnd().endsWith(']}')) return path;
    lastSize = size;
  }
  throw new Error(`no heap snapshot within ${HEAP_SNAPSHOT_TIMEOUT_MS} ms`);
}

// ---- Phases ----------------------------------------------------------------------------------------------------

interface PhaseResult {
  pass: boolean;
  line: string;
  figures: Record<string, unknown>;
}

/** 1,000 authenticated sessions left idle: the daemon's memory with all of them open, and a plumb run beside them. */
async function idlePhase(fixture: Fixture, options: Options): Promise<PhaseResult> {
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
async function zeroPhase(fixture: Fixture, options: Options): Promise<PhaseResult> {
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
    const why = reply === undefined ? 'no Start reply' : `Start refused: ${reply.code} ${reply.message}`;
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
async function churnPhase(fixture: Fixture, options: Options): Promise<PhaseResult> {
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

// ---- Main ------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`soak: ${(error as Error).message}\n`);
    return 2;
  }
  // With --json, stdout carries the one object and the running commentary goes to stderr.
  const say = (text: string): void => void (options.json ? process.stderr : process.stdout).write(`${text}\n`);
  const loadStart = loadAverage();
  say(`soak: load at start: ${loadStart}`);
  say(`soak: ${options.sessions} idle sessions, ${options.zeroSeconds} s of unread cat /dev/zero, ${options.churn} churn pairs; daemon heap capped at ${DAEMON_MAX_OLD_SPACE_MB} MB`);
  const fixture = makeFixture();
  const phases: Partial<Record<PhaseName, PhaseResult>> = {};
  const run: [PhaseName, (fixture: Fixture, options: Options) => Promise<PhaseResult>][] = [
    ['idle', idlePhase],
    ['zero', zeroPhase],
    ['churn', churnPhase],
  ];
  let failure: string | undefined;
  try {
    for (const [name, phase] of run) {
      if (options.only !== undefined && options.only !== name) continue;
      const result = await phase(fixture, options);
      phases[name] = result;
      say(result.line);
      const heap = (result.figures as { heap?: HeapDifference }).heap;
      if (heap !== undefined) {
        const sessions = options.sessions;
        say(`  daemon heap (snapshot self sizes): ${mib(heap.openBytes)} MiB with the sessions open, ${mib(heap.closedBytes)} MiB after they closed; ` + `${((heap.openBytes - heap.closedBytes) / sessions / 1024).toFixed(1)} KiB/session. What the sessions add, largest first:`);
        say(`    ${'MiB'.padStart(7)}  ${'B/session'.padStart(9)}  ${'count'.padStart(7)}  ${'per session'.padStart(11)}  what`);
        for (const row of heap.top) {
          say(`    ${mib(row.bytes).padStart(7)}  ${(row.bytes / sessions).toFixed(0).padStart(9)}  ${String(row.count).padStart(7)}  ${(row.count / sessions).toFixed(1).padStart(11)}  ${row.what}`);
        }
      }
    }
  } catch (error) {
    failure = error instanceof Error ? error.message : String(error);
    say(`soak failed: ${failure}`);
  } finally {
    for (const daemon of daemons) {
      await daemon.stop(5000);
      daemon.killLeftoverGroups();
    }
    rmSync(fixture.dir, { recursive: true, force: true });
  }
  const loadEnd = loadAverage();
  say(`soak: load at end: ${loadEnd}`);
  const pass = failure === undefined && Object.values(phases).every((phase) => phase.pass);
  if (options.json) {
    const figures = Object.fromEntries(Object.entries(phases).map(([name, phase]) => [name, { pass: phase.pass, ...phase.figures }]));
    process.stdout.write(`${JSON.stringify({ load: { start: loadStart, end: loadEnd }, options, phases: figures, failure, pass })}\n`);
  }
  return failure !== undefined ? 2 : pass ? 0 : 1;
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`soak failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 2;
  },
);
