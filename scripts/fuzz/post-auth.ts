// The post-authentication fuzzer: authorized clients (one unrestricted, one gluepot-bound) send sealed packets of every
// type, mutated, through SecureConnection. Survivable inputs go in batches, each closed by an empty Start whose refusal
// proves the batch was read; a fatal one goes alone once all before it is confirmed, then a new connection follows.

import { connect, type Socket } from 'node:net';
import { userInfo } from 'node:os';
import { MAX_UNCLAIMED_STREAMS } from '../../daemon/session.js';
import { SPEC_CIPHER_LIMITS } from '../../protocol/cipher.js';
import { SecureConnection, type ConnectionHandler, type ConnectionOptions } from '../../protocol/connection.js';
import { ErrorCode, HandshakeError, isErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { decodeFields, type FieldList } from '../../protocol/fields.js';
import { joinPayload } from '../../protocol/frame.js';
import { sameIdentity, type PrivateIdentity, type PublicIdentity } from '../../protocol/keys.js';
import { FORWARDABLE_SIGNALS } from '../../protocol/session.js';
import { DEFAULT_LIMITS, Field, MAX_STREAM_ID, PacketType, StreamPurpose, STREAM_ID_BYTES, isKnownPacketType } from '../../protocol/wire.js';
import { count, type Ledger } from './ledger.js';
import { fuzzErrorMessage, mutateBytes, mutateEntries, ODD_INTEGERS, oddValue, rawFields, type RawEntry } from './mutate.js';
import type { Prng } from './prng.js';
import { startVerdict, type SafetyScope } from './safety.js';

/** Connections at once: two per client line. */
export const POST_AUTH_WORKERS = 4;
/** Batches sent and not yet confirmed, per connection: enough to keep both ends busy, few enough to stay bounded. */
const MAX_BATCHES_IN_FLIGHT = 4;
const MIN_BATCH_INPUTS = 16;
const MAX_BATCH_INPUTS = 128;
/** Share of connections kept open for a long run of inputs of every kind. */
const LONG_CONNECTION_SHARE = 0.01;
const LONG_CONNECTION_INPUTS = [20_000, 60_000] as const;
/** Inputs before a short connection's last one (the lengths are skewed: most connections are short). */
const SHORT_CONNECTION_MAX_INPUTS = 2000;
/** A confirmation, or the close a fatal input should cause, that takes longer than this is reported. */
const REPLY_TIMEOUT_MS = 20_000;
/**
 * Streams this side keeps open at once: no more than a session keeps before its Start claims them (a fourth costs
 * the connection, which the e2e tests show; here it would only end connections early and starve the other inputs).
 */
const MAX_OPEN_STREAMS = MAX_UNCLAIMED_STREAMS;
/** Stream ids remembered after they closed, for packets to closed streams. */
const GONE_STREAMS_KEPT = 64;
/** Attempts at a Start the safety check lets through, before a plain refused one is sent instead. */
const START_ATTEMPTS = 8;

/**
 * What a connection sends: `mixed`, packets of every type; `churn`, stream packets only (opens and closes above all)
 * on one connection kept for a whole run, where whatever a connection accumulates per stream adds up until the
 * daemon's capped heap gives out.
 */
export type Profile = 'mixed' | 'churn';

export interface PostAuthClient {
  /** 'open' (no restriction) or 'gluepot'. */
  label: string;
  identity: PrivateIdentity;
}

export interface PostAuthTarget {
  port: number;
  hostKey: PublicIdentity;
  clients: readonly PostAuthClient[];
  /** The daemon's maxPacketBytes and the window it grants each stream. */
  maxPacketBytes: number;
  initialWindowBytes: number;
  safety: SafetyScope;
}

export interface PostAuthStats {
  /** Inputs sent. */
  inputs: number;
  /** Inputs the daemon is known to have read: a later reply proves it. */
  confirmed: number;
  connections: number;
  connectFailures: number;
  handshakeFailures: Record<string, number>;
  /** Inputs sent alone to end a connection; how many did, and how many the daemon took without closing. */
  fatalProbes: number;
  fatalClosed: number;
  fatalSurvived: Record<string, number>;
  /** Connections the daemon ended while only inputs it should survive were in flight, by what this side saw. */
  unexpectedCloses: Record<string, number>;
  /** The first reason this side gave for each code of unexpectedCloses. */
  unexpectedCloseReasons: Record<string, string>;
  /** Confirmations or closes that never came within REPLY_TIMEOUT_MS. */
  replyTimeouts: number;
  /** Start replies: `started` or `refused:CODE`. */
  startReplies: Record<string, number>;
  mintReplies: Record<string, number>;
  /** Codes in replies that are not among the project's error codes. */
  unknownCodes: Record<string, number>;
  /** Other packets the daemon sent, by type. */
  daemonPackets: Record<string, number>;
  kinds: Record<string, number>;
}

export function emptyPostAuthStats(): PostAuthStats {
  return {
    inputs: 0,
    confirmed: 0,
    connections: 0,
    connectFailures: 0,
    handshakeFailures: {},
    fatalProbes: 0,
    fatalClosed: 0,
    fatalSurvived: {},
    unexpectedCloses: {},
    unexpectedCloseReasons: {},
    replyTimeouts: 0,
    startReplies: {},
    mintReplies: {},
    unknownCodes: {},
    daemonPackets: {},
    kinds: {},
  };
}

/** One sealed packet to send. */
interface Input {
  kind: string;
  type: number;
  payload: Buffer;
}

interface StreamState {
  eof: boolean;
  /** Bytes sent on it; the daemon does not read a stream no Start claimed, so this stays within its window. */
  sent: number;
  /** Named in a Start already: it may be claimed or dropped by the daemon by now. */
  named: boolean;
}

function fields(entries: readonly RawEntry[]): Buffer {
  return rawFields(entries);
}

/** Field values for stream ids: the edges of the id range, and spellings the codec refuses. */
const ODD_IDS = ['0', String(MAX_STREAM_ID), String(MAX_STREAM_ID + 1), '2', '-1', '01', '1.5', '', 'x', '99999999999999999999'] as const;

/** Argument words for a harmless program: shell syntax that must stay plain words, long ones, odd text. */
function argument(rng: Prng): string {
  return rng.weighted<() => string>([
    [4, () => rng.pick(['hello', '-n', '-e', '--', '--help', '$HOME', '`id`', '; rm -rf /', '*', '~', '%s%n', '\\', "'"])],
    [2, () => 'a'.repeat(rng.size(20_000))],
    [2, () => rng.pick(['', ' ', 'é漢字\u{1f600}', '\u202e', '\r\n', '\t'])],
    [2, () => rng.bytes(rng.size(32)).toString('base64')],
  ])();
}

/** argv[0]: harmless programs by several spellings, names that do not exist, and odd words. */
function program(rng: Prng): string {
  return rng.weighted<() => string>([
    [6, () => rng.pick(['true', 'false', 'echo', '/usr/bin/true', '/bin/echo'])],
    [2, () => `np-fuzz-absent-${rng.bytes(4).toString('hex')}`],
    [1, () => rng.pick(['', ' ', '-', 'TRUE', 'tr\u00fce', 'x'.repeat(5000), './true', '../true', '/usr/bin/./true', '/nonexistent/true'])],
  ])();
}

/** Lines of harmless recipes: every kind of redirection, labels, fifos, pipes, quoting and comments. */
const RECIPE_LINES = [
  'true',
  'false',
  'echo hello',
  `echo "quoted \\" word" 'single' \\$x`,
  'cat <%stdin',
  'echo x >out.txt',
  'echo y >>out.txt',
  'cat <out.txt',
  'fifo f1',
  'echo a >@f1 &',
  'cat <@f1',
  'lbl: cat &',
  'echo z >%lbl',
  'echo e 2>%lbl',
  'echo p |',
  'cat',
  'echo w 2>&1',
  'echo w >&2',
  '# a comment',
  '',
  'true &',
  'np-fuzz-absent-cmd',
] as const;

function recipeText(rng: Prng): string {
  const lines = Array.from({ length: rng.between(1, 8) }, () => rng.pick(RECIPE_LINES));
  let text = `${lines.join('\n')}\n`;
  const variant = rng.weighted<string>([
    [6, 'as-is'],
    [4, 'bytes'],
    [1, 'huge'],
    [1, 'many'],
    [1, 'crlf'],
  ]);
  if (variant === 'bytes') text = mutateBytes(Buffer.from(text), rng).bytes.toString('utf8');
  if (variant === 'huge') text = `echo ${'w'.repeat(rng.pick([4096, 4097, 65_536, 70_000]))}\n`;
  if (variant === 'many') text = 'true\n'.repeat(rng.pick([9, 256, 257]));
  if (variant === 'crlf') text = text.replaceAll('\n', '\r\n');
  return text;
}

export class PostAuthWorker {
  private sent = 0;
  private socket: Socket | undefined;

  constructor(
    private readonly name: string,
    private readonly rng: Prng,
    private readonly profile: Profile,
    private readonly client: PostAuthClient,
    private readonly target: PostAuthTarget,
    private readonly ledger: Ledger,
    private readonly stats: PostAuthStats,
  ) {
    ledger.onStop(() => this.socket?.destroy());
  }

  async run(): Promise<void> {
    while (!this.ledger.exhausted) await this.oneConnection();
  }

  private connectSocket(): Promise<Socket | undefined> {
    return new Promise((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: this.target.port, noDelay: true });
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        resolve(socket);
      });
      socket.once('error', () => resolve(undefined));
    });
  }

  /** Options that vary per connection: cipher, announced limits, and for some a key ratchet every few records. */
  private connectionOptions(): ConnectionOptions {
    const rng = this.rng;
    return {
      ciphers: rng.chance(0.3) ? ['chacha20-poly1305'] : ['aes-256-gcm'],
      limits: {
        maxPacketBytes: rng.pick([4096, 65_536, DEFAULT_LIMITS.maxPacketBytes]),
        initialWindowBytes: rng.pick([4096, DEFAULT_LIMITS.initialWindowBytes]),
      },
      ...(rng.chance(0.2) ? { cipherLimits: { ...SPEC_CIPHER_LIMITS, rekeyAfterRecords: rng.between(16, 2000) } } : {}),
    };
  }

  private async oneConnection(): Promise<void> {
    const socket = await this.connectSocket();
    if (socket === undefined || this.ledger.stopped) {
      this.stats.connectFailures++;
      socket?.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      return;
    }
    this.socket = socket;
    this.stats.connections++;
    const hostKey = this.target.hostKey;
    let connection: SecureConnection;
    try {
      connection = await SecureConnection.connect(
        socket,
        {
          identity: this.client.identity,
          verifyHostKey: (presented) => {
            if (!sameIdentity(presented, hostKey)) throw new HandshakeError(ErrorCode.HostKeyChanged, 'not the fuzz daemon');
          },
        },
        this.connectionOptions(),
      );
    } catch (error) {
      count(this.stats.handshakeFailures, (error as NetplumbError).code ?? 'unknown');
      socket.destroy();
      return;
    }
    const session = new PostSession(this.rng, this.profile, connection, this.target, this.ledger, this.stats, (input) => this.note(input));
    connection.attach(session);
    try {
      await session.drive(this.lifetime());
    } finally {
      socket.destroy();
    }
  }

  private lifetime(): number {
    const rng = this.rng;
    if (this.profile === 'churn') return Number.POSITIVE_INFINITY;
    return rng.chance(LONG_CONNECTION_SHARE) ? rng.between(...LONG_CONNECTION_INPUTS) : 1 + rng.size(SHORT_CONNECTION_MAX_INPUTS);
  }

  private note(input: Input): void {
    this.sent++;
    count(this.stats.kinds, input.kind);
    this.ledger.note('post', `${this.name}/${this.client.label}`, this.sent, input.kind, input.payload);
  }
}

/** One authenticated connection: the stream model, the generators, and the confirmations. */
class PostSession implements ConnectionHandler {
  private isClosed = false;
  private closeCode: string | undefined;
  private closeReason: string | undefined;
  private startsSent = 0;
  private startReplies = 0;
  /** Batches sent and not yet confirmed: the Starts sent up to and including each one's closing Start. */
  private readonly unconfirmed: { startsThrough: number; inputs: number }[] = [];
  private wake: (() => void) | undefined;
  private nextStreamId = 1;
  private readonly streams = new Map<number, StreamState>();
  private readonly gone: number[] = [];
  private readonly user = userInfo().username;
  /** The inputs the daemon should survive, by weight; a generator returns undefined when it has nothing fitting. */
  private readonly generators: readonly (readonly [number, () => Input | undefined])[];

  constructor(
    private readonly rng: Prng,
    profile: Profile,
    private readonly connection: SecureConnection,
    private readonly target: PostAuthTarget,
    private readonly ledger: Ledger,
    private readonly stats: PostAuthStats,
    private readonly note: (input: Input) => void,
  ) {
    this.generators =
      profile === 'churn'
        ? [
            [40, () => this.streamOpen()],
            [35, () => this.streamClose()],
            [10, () => this.streamData()],
            [8, () => this.streamWindow()],
            [7, () => this.streamEof()],
          ]
        : [
            [12, () => this.streamOpen()],
            [18, () => this.streamData()],
            [8, () => this.streamWindow()],
            [5, () => this.streamEof()],
            [7, () => this.streamClose()],
            [16, () => this.start()],
            [4, () => this.signal()],
            [3, () => this.resize()],
            [5, () => this.mintKey()],
            [6, () => this.ping()],
            [6, () => this.mutatedButDecodable()],
          ];
  }

  // ---- the daemon's side -----------------------------------------------------------------------------------

  packet(type: PacketType, payload: readonly Buffer[], payloadBytes: number): void {
    const body = joinPayload(payload, payloadBytes);
    switch (type) {
      case PacketType.Start:
        this.startReplies++;
        count(this.stats.startReplies, this.replyStatus(body));
        this.confirm();
        break;
      case PacketType.MintKey:
        count(this.stats.mintReplies, this.replyStatus(body));
        break;
      // A StreamClose from the daemon leaves the model as it is: packets for a stream it dropped are ignored, so
      // they stay survivable, and the inputs stay a function of the seed rather than of when replies arrive.
      default:
        count(this.stats.daemonPackets, PacketType[type] ?? `type-${type}`);
    }
    this.wake?.();
  }

  drain(): void {
    this.wake?.();
  }

  closed(error: NetplumbError | undefined): void {
    this.isClosed = true;
    this.closeCode = error?.code ?? 'goodbye';
    this.closeReason = error?.message ?? 'goodbye';
    this.wake?.();
  }

  private decode(body: Buffer): FieldList | undefined {
    try {
      return decodeFields(body);
    } catch {
      return undefined;
    }
  }

  /** `started`, `minted`, or `refused:CODE`; a code the project does not know is counted apart. */
  private replyStatus(body: Buffer): string {
    const fields = this.decode(body);
    const status = fields?.optional(Field.status) ?? 'malformed';
    const code = fields?.optional(Field.code);
    if (code !== undefined && !isErrorCode(code)) count(this.stats.unknownCodes, code);
    return code === undefined ? status : `${status}:${code}`;
  }

  private confirm(): void {
    while (this.unconfirmed.length > 0 && (this.unconfirmed[0] as { startsThrough: number }).startsThrough <= this.startReplies) {
      const batch = this.unconfirmed.shift() as { inputs: number };
      this.stats.confirmed += batch.inputs;
      this.ledger.progress();
    }
  }

  /** Resolves once ready() holds, the connection closed, or the time is up (false then). */
  private async until(ready: () => boolean, timeoutMs = REPLY_TIMEOUT_MS): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!ready() && !this.isClosed && !this.ledger.stopped) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return true;
  }

  // ---- driving -----------------------------------------------------------------------------------------------

  /** Sends up to `lifetime` inputs the daemon should survive, then ends the connection, mostly with a fatal input. */
  async drive(lifetime: number): Promise<void> {
    let used = 0;
    while (used < lifetime && !this.isClosed) {
      const granted = this.ledger.take(Math.min(lifetime - used, this.rng.between(MIN_BATCH_INPUTS, MAX_BATCH_INPUTS)));
      if (granted === 0) break;
      used += granted;
      this.sendBatch(granted);
      const settled = await this.until(() => this.unconfirmed.length < MAX_BATCHES_IN_FLIGHT && this.connection.writable);
      if (!settled) return this.timedOut();
    }
    if (!(await this.until(() => this.unconfirmed.length === 0))) return this.timedOut();
    if (this.isClosed) return this.closedUnexpectedly();
    if (!this.ledger.stopped && this.ledger.take(1) === 1) {
      if (this.rng.chance(0.9)) return this.probe();
      this.stats.inputs++;
      this.stats.confirmed++;
      count(this.stats.kinds, 'goodbye-from-client');
    }
    await this.connection.close();
  }

  private closedUnexpectedly(): void {
    const code = this.closeCode ?? 'unknown';
    count(this.stats.unexpectedCloses, code);
    this.stats.unexpectedCloseReasons[code] ??= this.closeReason ?? '';
    this.unconfirmed.length = 0;
  }

  private timedOut(): void {
    if (this.isClosed) return this.closedUnexpectedly();
    if (this.ledger.stopped) return;
    this.stats.replyTimeouts++;
  }

  private send(input: Input): void {
    this.note(input);
    this.stats.inputs++;
    if (input.type === PacketType.Start) this.startsSent++;
    this.connection.send(input.type as PacketType, input.payload);
  }

  /** An empty Start: refused at once, and its reply confirms everything sent before it. */
  private sendConfirmation(inputs: number): void {
    this.connection.sendFields(PacketType.Start, []);
    this.startsSent++;
    this.unconfirmed.push({ startsThrough: this.startsSent, inputs });
  }

  private sendBatch(inputs: number): void {
    this.connection.cork();
    try {
      for (let i = 0; i < inputs; i++) this.send(this.survivable());
      this.sendConfirmation(inputs);
    } finally {
      this.connection.uncork();
    }
  }

  /** One input meant to end the connection, after everything before it was confirmed. */
  private async probe(): Promise<void> {
    const input = this.fatal();
    this.stats.fatalProbes++;
    this.send(input);
    this.sendConfirmation(1);
    if (!(await this.until(() => this.unconfirmed.length === 0))) return this.timedOut();
    if (this.isClosed) {
      // Everything before it was confirmed: this input is what the daemon refused.
      this.stats.fatalClosed++;
      this.stats.confirmed++;
      this.ledger.progress();
      return;
    }
    count(this.stats.fatalSurvived, input.kind);
    await this.connection.close();
  }

  // ---- the stream model --------------------------------------------------------------------------------------

  private forget(id: number): void {
    this.gone.push(id);
    if (this.gone.length > GONE_STREAMS_KEPT) this.gone.shift();
  }

  private openIds(filter: (state: StreamState) => boolean = () => true): number[] {
    return [...this.streams.entries()].filter(([, state]) => filter(state)).map(([id]) => id);
  }

  /** A stream id of one still open on this side, or undefined. */
  private someOpen(filter?: (state: StreamState) => boolean): number | undefined {
    const ids = this.openIds(filter);
    return ids.length === 0 ? undefined : this.rng.pick(ids);
  }

  /** A stream id this side opened and saw closed: the daemon ignores packets for it. */
  private someGone(): number | undefined {
    return this.gone.length === 0 ? undefined : this.rng.pick(this.gone);
  }

  /** An odd id never opened, or an even one the daemon never opened: a packet for it ends the connection. */
  private unknownId(): number {
    return this.rng.chance(0.5) ? this.nextStreamId + 2 * this.rng.between(0, 1000) : 2 * this.rng.between(1000, 100_000);
  }

  private streamWindowLeft(state: StreamState): number {
    return this.target.initialWindowBytes - state.sent;
  }

  // ---- inputs the daemon should survive ----------------------------------------------------------------------

  private survivable(): Input {
    for (;;) {
      const input = this.rng.weighted(this.generators)();
      if (input !== undefined) return input;
    }
  }

  private streamOpen(): Input | undefined {
    const rng = this.rng;
    if (this.streams.size >= MAX_OPEN_STREAMS) return this.streamClose();
    const id = this.nextStreamId;
    const extra: RawEntry[] = [];
    // While a command runs, purpose and endpoint route the stream: they must then be well formed, so only these.
    if (rng.chance(0.3)) extra.push([Field.purpose, rng.pick([...Object.values(StreamPurpose), 'stdin', 'unknown-purpose'])], [Field.endpoint, String(rng.size(70))]);
    if (rng.chance(0.2)) extra.push([Field.round, rng.pick(ODD_INTEGERS)]);
    if (rng.chance(0.2)) extra.push(['unknown-field', oddValue(rng)]);
    const payload = fields([[Field.stream, String(id)], ...extra]);
    // A value from oddValue may not be UTF-8: such a packet would end the connection, so it is not sent here.
    if (this.decode(payload) === undefined) return undefined;
    this.nextStreamId += 2;
    this.streams.set(id, { eof: false, sent: 0, named: false });
    return { kind: 'stream-open', type: PacketType.StreamOpen, payload };
  }

  private streamData(): Input | undefined {
    const rng = this.rng;
    if (rng.chance(0.1)) {
      const id = this.someGone();
      return id === undefined ? undefined : this.data('stream-data/closed', id, rng.bytes(rng.size(512)));
    }
    const id = this.someOpen((state) => !state.eof && this.streamWindowLeft(state) > 0);
    if (id === undefined) return this.streamOpen();
    const state = this.streams.get(id) as StreamState;
    const length = Math.min(this.streamWindowLeft(state), rng.chance(0.02) ? rng.size(32 * 1024) : rng.size(256));
    state.sent += length;
    return this.data('stream-data', id, rng.bytes(length));
  }

  private data(kind: string, id: number, bytes: Buffer): Input {
    const payload = Buffer.allocUnsafe(STREAM_ID_BYTES + bytes.length);
    payload.writeUInt32BE(id >>> 0, 0);
    bytes.copy(payload, STREAM_ID_BYTES);
    return { kind, type: PacketType.StreamData, payload };
  }

  private streamWindow(): Input | undefined {
    const rng = this.rng;
    const id = rng.chance(0.8) ? this.someOpen() : this.someGone();
    if (id === undefined) return undefined;
    const credit = rng.pick([1, 2 ** 31, rng.between(1, 2 ** 31), 4096]);
    return { kind: 'stream-window', type: PacketType.StreamWindow, payload: fields([[Field.stream, String(id)], [Field.credit, String(credit)]]) };
  }

  private streamEof(): Input | undefined {
    const id = this.rng.chance(0.8) ? this.someOpen((state) => !state.eof) : this.someGone();
    if (id === undefined) return undefined;
    const state = this.streams.get(id);
    if (state !== undefined) state.eof = true;
    return { kind: 'stream-eof', type: PacketType.StreamEof, payload: fields([[Field.stream, String(id)]]) };
  }

  private streamClose(): Input | undefined {
    const rng = this.rng;
    const id = rng.chance(0.85) ? this.someOpen() : this.someGone();
    if (id === undefined) return undefined;
    if (this.streams.delete(id)) this.forget(id);
    const code: RawEntry[] = rng.chance(0.3) ? [[Field.code, rng.pick([ErrorCode.ConnectionLost, 'NP_NO_SUCH_CODE', '', 'x'.repeat(300)])]] : [];
    return { kind: 'stream-close', type: PacketType.StreamClose, payload: fields([[Field.stream, String(id)], ...code]) };
  }

  /** Start with every field drawn or mutated: kind, argv, pty, recipe, user, env, endpoints and the stream ids. */
  private start(): Input {
    const rng = this.rng;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      const entries = this.startEntries();
      const mutated = rng.chance(0.4) ? mutateEntries(entries, rng).entries : entries;
      const payload = fields(mutated);
      const verdict = startVerdict(payload, this.target.safety);
      if (verdict !== 'safe') continue;
      for (const [name, value] of mutated) {
        const state = [Field.stdin, Field.stdout, Field.stderr].includes(name as 'stdin') ? this.streams.get(Number(value)) : undefined;
        if (state !== undefined) state.named = true;
      }
      return { kind: `start/${entries[0]?.[1] === 'recipe' ? 'recipe' : 'exec'}${mutated === entries ? '' : '-mutated'}`, type: PacketType.Start, payload };
    }
    return { kind: 'start/fallback', type: PacketType.Start, payload: fields([[Field.kind, 'exec'], [Field.arg, 'np-fuzz-absent']]) };
  }

  private startEntries(): RawEntry[] {
    const rng = this.rng;
    const kind = rng.weighted<string>([
      [80, 'exec'],
      [15, 'recipe'],
      [5, rng.pick(['', 'EXEC', 'shell', 'exec '])],
    ]);
    const entries: RawEntry[] = [[Field.kind, kind]];
    if (kind === 'recipe') {
      entries.push([Field.source, rng.pick(['fuzz.rcp', '-', '', 'x'.repeat(rng.pick([1024, 1025])), 'dir/name.rcp'])], [Field.recipe, recipeText(rng)]);
    } else {
      const words = [program(rng), ...Array.from({ length: rng.size(6) }, () => argument(rng))];
      if (rng.chance(0.05)) words.length = 0;
      if (rng.chance(0.01)) words.push(...Array.from({ length: rng.pick([4096, 4097]) }, () => 'w'));
      for (const word of words) entries.push([Field.arg, word]);
      if (rng.chance(0.1)) {
        entries.push(
          [Field.pty, rng.pick(['1', '0', '', 'yes'])],
          [Field.term, rng.pick(['xterm-256color', 'dumb', '', 'x'.repeat(65), 'bad term', 'vt100;rm'])],
          [Field.cols, rng.pick(['80', '1', '10000', '10001', '0', '-1'])],
          [Field.rows, rng.pick(['24', '1', '10000', '10001', '0', 'x'])],
        );
      }
    }
    if (rng.chance(0.1)) entries.push([Field.user, rng.pick([this.user, 'nobody', 'root', '..', '.', 'a'.repeat(65), 'Bad Name', 'name$', 'np-fuzz-no-such-user'])]);
    if (rng.chance(0.15)) {
      for (let i = rng.between(1, 4); i > 0; i--) entries.push([Field.env, rng.pick(['LANG=C.UTF-8', 'TZ=UTC', 'LC_ALL=C', 'PATH=/tmp', 'LD_PRELOAD=x', 'A', '=x', '1A=x', 'TZ=', `LANG=${'x'.repeat(rng.size(10_000))}`])]);
    }
    if (rng.chance(0.1)) {
      for (let i = rng.between(1, 3); i > 0; i--) {
        const field = rng.pick([Field.infifo, Field.outfifo, Field.listenSocket, Field.connectSocket]);
        entries.push([field, rng.pick([`fz-${rng.below(8)}`, '../escape', '', 'a/b/c', `${this.target.safety.tempDir}/outside/fz-${rng.below(4)}`, 'x'.repeat(4097), '/etc/np-fuzz-never'])]);
      }
      if (rng.chance(0.05)) for (let i = 0; i < 65; i++) entries.push([Field.infifo, `fz-many-${i}`]);
    }
    // Three streams this side opened make the Start valid as far as streams go; others make it refused.
    const open = this.openIds((state) => !state.named);
    for (const name of [Field.stdin, Field.stdout, Field.stderr]) {
      const id = rng.chance(0.85) && open.length > 0 ? (open.splice(rng.below(open.length), 1)[0] as number) : rng.pick([...ODD_IDS, String(this.unknownId())]);
      entries.push([name, String(id)]);
    }
    return entries;
  }

  /** A Signal the daemon forwards or refuses (an unknown name is refused, and the connection stays). */
  private signal(): Input {
    const rng = this.rng;
    const name = rng.chance(0.6) ? rng.pick(FORWARDABLE_SIGNALS) : rng.pick(['SIGSTOP', 'SIGSEGV', 'KILL', 'sigterm', '', '9', 'SIG'.repeat(1000), 'SIGRTMIN+1']);
    return { kind: 'signal', type: PacketType.Signal, payload: fields([[Field.signal, name]]) };
  }

  private resize(): Input {
    const rng = this.rng;
    const size = (): string => String(rng.pick([1, 10_000, rng.between(1, 10_000)]));
    return { kind: 'resize', type: PacketType.Resize, payload: fields([[Field.cols, size()], [Field.rows, size()]]) };
  }

  /** A MintKey request: the daemon checks it as it would the Start and mints or refuses; it runs nothing. */
  private mintKey(): Input | undefined {
    const rng = this.rng;
    const entries: RawEntry[] = rng.chance(0.8)
      ? [[Field.kind, 'exec'], [Field.arg, program(rng)], ...Array.from({ length: rng.size(4) }, (): RawEntry => [Field.arg, argument(rng)])]
      : [[Field.kind, 'recipe'], [Field.source, 'fuzz.rcp'], [Field.recipe, recipeText(rng)]];
    if (rng.chance(0.2)) entries.push([Field.user, rng.pick([this.user, 'nobody', '', 'a'.repeat(70)])]);
    if (rng.chance(0.1)) entries.push([rng.pick([Field.infifo, Field.outfifo, Field.listenSocket, Field.connectSocket]), rng.pick(['fz-mint', '', '/etc/np-fuzz-never'])]);
    // Most requests are refused on purpose: every key minted is a file and a key pair made by the daemon.
    entries.push([Field.lifetime, rng.chance(0.2) ? rng.pick(['1', '60', '604800']) : rng.pick(['0', '604801', '', '-1', '1e3', '01', String(2 ** 53)])]);
    const mutated = rng.chance(0.3) ? mutateEntries(entries, rng).entries : entries;
    const payload = fields(mutated);
    return this.decode(payload) === undefined ? undefined : { kind: 'mint-key', type: PacketType.MintKey, payload };
  }

  private ping(): Input | undefined {
    const rng = this.rng;
    const entries: RawEntry[] = rng.weighted<RawEntry[]>([
      [4, []],
      [2, [[Field.reply, '1']]],
      [2, [[Field.reply, String(oddValue(rng))]]],
      [2, [['unknown-field', oddValue(rng)]]],
    ]);
    const payload = fields(entries);
    return this.decode(payload) === undefined ? undefined : { kind: 'ping', type: PacketType.Ping, payload };
  }

  /** Start, MintKey or Ping payload bytes mutated; kept only if the field codec still takes them. */
  private mutatedButDecodable(): Input | undefined {
    const rng = this.rng;
    const base = rng.pick([this.start(), this.mintKey(), this.ping()]);
    if (base === undefined) return undefined;
    const payload = mutateBytes(base.payload, rng).bytes;
    const fieldsOf = this.decode(payload);
    if (fieldsOf === undefined) return undefined;
    if (base.type === PacketType.Start && startVerdict(payload, this.target.safety) !== 'safe') return undefined;
    if (base.type === PacketType.Ping && fieldsOf.all(Field.reply).length > 1) return undefined;
    return { kind: `${base.kind.split('/')[0] ?? base.kind}-bytes`, type: base.type, payload };
  }

  // ---- inputs meant to end the connection --------------------------------------------------------------------

  private fatal(): Input {
    const rng = this.rng;
    for (;;) {
      const input = rng.weighted<() => Input | undefined>([
        [3, () => this.unknownType()],
        [1, () => ({ kind: 'fatal/handshake-type', type: rng.pick([PacketType.Hello, PacketType.KeyExchange, 0, 19]), payload: fields([]) })],
        [2, () => ({ kind: 'fatal/daemon-only-type', type: rng.pick([PacketType.Exit, PacketType.StageEnd, PacketType.Error]), payload: fields([[Field.code, rng.pick(['0', 'NP_BAD_TAG', 'NP_NOPE'])], [Field.message, fuzzErrorMessage(rng)]]) })],
        [2, () => ({ kind: 'fatal/empty-payload', type: rng.pick([PacketType.Start, PacketType.Ping, PacketType.StreamOpen, PacketType.StreamData, PacketType.StreamWindow, PacketType.StreamEof, PacketType.StreamClose, PacketType.Signal, PacketType.Resize, PacketType.MintKey]), payload: Buffer.alloc(0) })],
        [4, () => this.undecodable()],
        [3, () => this.badStreamOpen()],
        [3, () => this.badStreamData()],
        [2, () => this.badStreamWindow()],
        [2, () => this.badStreamEofOrClose()],
        [1, () => ({ kind: 'fatal/signal-missing', type: PacketType.Signal, payload: fields(rng.chance(0.5) ? [] : [[Field.signal, 'SIGINT'], [Field.signal, 'SIGINT']]) })],
        [1, () => ({ kind: 'fatal/resize-out-of-range', type: PacketType.Resize, payload: fields([[Field.cols, rng.pick(['0', '10001', '', 'x'])], [Field.rows, '24']]) })],
        [1, () => ({ kind: 'fatal/ping-reply-twice', type: PacketType.Ping, payload: fields([[Field.reply, '1'], [Field.reply, '1']]) })],
        [1, () => ({ kind: 'fatal/goodbye', type: PacketType.Goodbye, payload: fields(rng.chance(0.5) ? [] : [['unknown-field', 'x']]) })],
        // A Rekey this side does not follow: the daemon ratchets, and the next packet fails its tag.
        [1, () => ({ kind: 'fatal/rekey-unfollowed', type: PacketType.Rekey, payload: fields([]) })],
        [1, () => this.oversized()],
      ])();
      if (input !== undefined) return input;
    }
  }

  private unknownType(): Input {
    const rng = this.rng;
    let type: number;
    do type = rng.between(20, 255);
    while (isKnownPacketType(type));
    return { kind: 'fatal/unknown-type', type, payload: rng.chance(0.5) ? fields([]) : rng.bytes(rng.size(256)) };
  }

  /** A payload of a fields type that the codec refuses: bytes mutated until it does. */
  private undecodable(): Input | undefined {
    const rng = this.rng;
    const type = rng.pick([PacketType.Start, PacketType.StreamOpen, PacketType.StreamWindow, PacketType.StreamEof, PacketType.StreamClose, PacketType.Signal, PacketType.Resize, PacketType.MintKey, PacketType.Ping]);
    const base = fields([[Field.stream, '1'], [Field.kind, 'exec'], [Field.arg, 'true'], [Field.signal, 'SIGINT']]);
    const payload = mutateBytes(base, rng).bytes;
    return this.decode(payload) === undefined ? { kind: 'fatal/undecodable', type, payload } : undefined;
  }

  private badStreamOpen(): Input {
    const rng = this.rng;
    // Below the next id is a reused one; with none opened yet, that is an even (daemon's) id.
    const reused = this.nextStreamId > 1 ? this.nextStreamId - 2 : 2;
    const id = rng.pick([String(this.nextStreamId + 1), String(reused), '0', String(MAX_STREAM_ID + 2), 'x', '01', '']);
    const entries: RawEntry[] = rng.chance(0.1) ? [] : [[Field.stream, id]];
    // Repeated: the second copy alone would be a good open.
    if (entries.length > 0 && rng.chance(0.2)) entries.push([Field.stream, String(this.nextStreamId)]);
    return { kind: 'fatal/stream-open', type: PacketType.StreamOpen, payload: fields(entries) };
  }

  private badStreamData(): Input {
    const rng = this.rng;
    const variant = rng.pick(['unknown-id', 'short', 'over-window', 'after-eof'] as const);
    switch (variant) {
      case 'unknown-id':
        return this.data('fatal/stream-data-unknown', this.unknownId(), rng.bytes(rng.size(64)));
      case 'short':
        return { kind: 'fatal/stream-data-short', type: PacketType.StreamData, payload: rng.bytes(rng.below(STREAM_ID_BYTES)) };
      case 'over-window': {
        const id = this.someOpen((state) => !state.eof);
        if (id === undefined) return this.data('fatal/stream-data-unknown', this.unknownId(), Buffer.alloc(1));
        const state = this.streams.get(id) as StreamState;
        return this.data('fatal/stream-data-over-window', id, Buffer.alloc(this.streamWindowLeft(state) + 1));
      }
      case 'after-eof': {
        const id = this.someOpen((state) => state.eof);
        return id === undefined ? this.data('fatal/stream-data-unknown', this.unknownId(), Buffer.alloc(1)) : this.data('fatal/stream-data-after-eof', id, Buffer.from('late'));
      }
    }
  }

  private badStreamWindow(): Input {
    const rng = this.rng;
    const id = this.someOpen() ?? 1;
    const entries: RawEntry[] = rng.chance(0.3)
      ? [[Field.stream, String(this.unknownId())], [Field.credit, '1']]
      : [[Field.stream, String(id)], [Field.credit, rng.pick(['0', String(2 ** 31 + 1), '-1', '', 'x', '99999999999999999999'])]];
    return { kind: 'fatal/stream-window', type: PacketType.StreamWindow, payload: fields(entries) };
  }

  private badStreamEofOrClose(): Input {
    const rng = this.rng;
    const eofTwice = this.someOpen((state) => state.eof);
    if (eofTwice !== undefined && rng.chance(0.5)) return { kind: 'fatal/stream-eof-twice', type: PacketType.StreamEof, payload: fields([[Field.stream, String(eofTwice)]]) };
    const type = rng.pick([PacketType.StreamEof, PacketType.StreamClose]);
    return { kind: 'fatal/stream-end-unknown', type, payload: fields([[Field.stream, rng.chance(0.5) ? String(this.unknownId()) : rng.pick(ODD_IDS)]]) };
  }

  /** A sealed packet larger than the daemon's maxPacketBytes: refused from its header. */
  private oversized(): Input {
    return this.data('fatal/oversized', 1, Buffer.alloc(this.target.maxPacketBytes));
  }
}

/**
 * Runs POST_AUTH_WORKERS workers, alternating between the client lines, until the ledger's budget or deadline is
 * spent; the last worker churns streams on one connection, the others send every kind of packet.
 */
export async function runPostAuth(target: PostAuthTarget, rng: Prng, ledger: Ledger, workers = POST_AUTH_WORKERS): Promise<PostAuthStats> {
  const stats = emptyPostAuthStats();
  const running = Array.from({ length: workers }, (_, i) => {
    const client = target.clients[i % target.clients.length] as PostAuthClient;
    const profile: Profile = i === workers - 1 ? 'churn' : 'mixed';
    return new PostAuthWorker(`post-${i}`, rng.fork(`post-${i}`), profile, client, target, ledger, stats).run();
  });
  await Promise.all(running);
  return stats;
}
