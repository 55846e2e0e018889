// The inputs a post-auth connection sends that the daemon should survive: stream packets kept within the model's
// windows, Starts the safety check lets through, signals, resizes, key requests and pings, some mutated. Each
// generator returns undefined when it has nothing fitting; the seed alone decides what is drawn.

import { userInfo } from 'node:os';
import { ErrorCode } from '../../protocol/errors.js';
import { FORWARDABLE_SIGNALS } from '../../protocol/session.js';
import { Field, PacketType, StreamPurpose } from '../../protocol/wire.js';
import { MAX_UNCLAIMED_STREAMS } from '../../daemon/session.js';
import { mutateBytes, mutateEntries, ODD_INTEGERS, oddValue, rawFields, type RawEntry } from './mutate.js';
import type { PostAuthTarget, Profile } from './post-target.js';
import { dataInput, ODD_IDS, tryDecodeFields, type Input, type StreamModel, type StreamState } from './post-streams.js';
import type { Prng } from './prng.js';
import { startVerdict } from './safety.js';

/**
 * Streams this side keeps open at once: no more than a session keeps before its Start claims them (a fourth costs
 * the connection, which the e2e tests show; here it would only end connections early and starve the other inputs).
 */
const MAX_OPEN_STREAMS = MAX_UNCLAIMED_STREAMS;
/** Attempts at a Start the safety check lets through, before a plain refused one is sent instead. */
const START_ATTEMPTS = 8;

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

/** Draws a connection's survivable inputs; `churn` draws stream packets only, `mixed` every kind. */
export class SurvivableInputs {
  private readonly user = userInfo().username;
  /** The inputs the daemon should survive, by weight; a generator returns undefined when it has nothing fitting. */
  private readonly generators: readonly (readonly [number, () => Input | undefined])[];

  constructor(
    private readonly rng: Prng,
    profile: Profile,
    private readonly streams: StreamModel,
    private readonly target: PostAuthTarget,
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

  /** The next input, drawn by weight among the generators that have something fitting. */
  next(): Input {
    for (;;) {
      const input = this.rng.weighted(this.generators)();
      if (input !== undefined) return input;
    }
  }

  private streamOpen(): Input | undefined {
    const rng = this.rng;
    if (this.streams.size >= MAX_OPEN_STREAMS) return this.streamClose();
    const id = this.streams.nextId;
    const extra: RawEntry[] = [];
    // While a command runs, purpose and endpoint route the stream: they must then be well formed, so only these.
    if (rng.chance(0.3)) extra.push([Field.purpose, rng.pick([...Object.values(StreamPurpose), 'stdin', 'unknown-purpose'])], [Field.endpoint, String(rng.size(70))]);
    if (rng.chance(0.2)) extra.push([Field.round, rng.pick(ODD_INTEGERS)]);
    if (rng.chance(0.2)) extra.push(['unknown-field', oddValue(rng)]);
    const payload = rawFields([[Field.stream, String(id)], ...extra]);
    // A value from oddValue may not be UTF-8: such a packet would end the connection, so it is not sent here.
    if (tryDecodeFields(payload) === undefined) return undefined;
    this.streams.opened();
    return { kind: 'stream-open', type: PacketType.StreamOpen, payload };
  }

  private streamData(): Input | undefined {
    const rng = this.rng;
    if (rng.chance(0.1)) {
      const id = this.streams.someGone();
      return id === undefined ? undefined : dataInput('stream-data/closed', id, rng.bytes(rng.size(512)));
    }
    const id = this.streams.someOpen((state) => !state.eof && this.streams.windowLeft(state) > 0);
    if (id === undefined) return this.streamOpen();
    const state = this.streams.get(id) as StreamState;
    const length = Math.min(this.streams.windowLeft(state), rng.chance(0.02) ? rng.size(32 * 1024) : rng.size(256));
    state.sent += length;
    return dataInput('stream-data', id, rng.bytes(length));
  }

  private streamWindow(): Input | undefined {
    const rng = this.rng;
    const id = rng.chance(0.8) ? this.streams.someOpen() : this.streams.someGone();
    if (id === undefined) return undefined;
    const credit = rng.pick([1, 2 ** 31, rng.between(1, 2 ** 31), 4096]);
    return { kind: 'stream-window', type: PacketType.StreamWindow, payload: rawFields([[Field.stream, String(id)], [Field.credit, String(credit)]]) };
  }

  private streamEof(): Input | undefined {
    const id = this.rng.chance(0.8) ? this.streams.someOpen((state) => !state.eof) : this.streams.someGone();
    if (id === undefined) return undefined;
    const state = this.streams.get(id);
    if (state !== undefined) state.eof = true;
    return { kind: 'stream-eof', type: PacketType.StreamEof, payload: rawFields([[Field.stream, String(id)]]) };
  }

  private streamClose(): Input | undefined {
    const rng = this.rng;
    const id = rng.chance(0.85) ? this.streams.someOpen() : this.streams.someGone();
    if (id === undefined) return undefined;
    this.streams.close(id);
    const code: RawEntry[] = rng.chance(0.3) ? [[Field.code, rng.pick([ErrorCode.ConnectionLost, 'NP_NO_SUCH_CODE', '', 'x'.repeat(300)])]] : [];
    return { kind: 'stream-close', type: PacketType.StreamClose, payload: rawFields([[Field.stream, String(id)], ...code]) };
  }

  /** Start with every field drawn or mutated: kind, argv, pty, recipe, user, env, endpoints and the stream ids. */
  private start(): Input {
    const rng = this.rng;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      const entries = this.startEntries();
      const mutated = rng.chance(0.4) ? mutateEntries(entries, rng).entries : entries;
      const payload = rawFields(mutated);
      const verdict = startVerdict(payload, this.target.safety);
      if (verdict !== 'safe') continue;
      for (const [name, value] of mutated) {
        const state = [Field.stdin, Field.stdout, Field.stderr].includes(name as 'stdin') ? this.streams.get(Number(value)) : undefined;
        if (state !== undefined) state.named = true;
      }
      return { kind: `start/${entries[0]?.[1] === 'recipe' ? 'recipe' : 'exec'}${mutated === entries ? '' : '-mutated'}`, type: PacketType.Start, payload };
    }
    return { kind: 'start/fallback', type: PacketType.Start, payload: rawFields([[Field.kind, 'exec'], [Field.arg, 'np-fuzz-absent']]) };
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
    const open = this.streams.openIds((state) => !state.named);
    for (const name of [Field.stdin, Field.stdout, Field.stderr]) {
      const id = rng.chance(0.85) && open.length > 0 ? (open.splice(rng.below(open.length), 1)[0] as number) : rng.pick([...ODD_IDS, String(this.streams.unknownId())]);
      entries.push([name, String(id)]);
    }
    return entries;
  }

  /** A Signal the daemon forwards or refuses (an unknown name is refused, and the connection stays). */
  private signal(): Input {
    const rng = this.rng;
    const name = rng.chance(0.6) ? rng.pick(FORWARDABLE_SIGNALS) : rng.pick(['SIGSTOP', 'SIGSEGV', 'KILL', 'sigterm', '', '9', 'SIG'.repeat(1000), 'SIGRTMIN+1']);
    return { kind: 'signal', type: PacketType.Signal, payload: rawFields([[Field.signal, name]]) };
  }

  private resize(): Input {
    const rng = this.rng;
    const size = (): string => String(rng.pick([1, 10_000, rng.between(1, 10_000)]));
    return { kind: 'resize', type: PacketType.Resize, payload: rawFields([[Field.cols, size()], [Field.rows, size()]]) };
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
    const payload = rawFields(mutated);
    return tryDecodeFields(payload) === undefined ? undefined : { kind: 'mint-key', type: PacketType.MintKey, payload };
  }

  private ping(): Input | undefined {
    const rng = this.rng;
    const entries: RawEntry[] = rng.weighted<RawEntry[]>([
      [4, []],
      [2, [[Field.reply, '1']]],
      [2, [[Field.reply, String(oddValue(rng))]]],
      [2, [['unknown-field', oddValue(rng)]]],
    ]);
    const payload = rawFields(entries);
    return tryDecodeFields(payload) === undefined ? undefined : { kind: 'ping', type: PacketType.Ping, payload };
  }

  /** Start, MintKey or Ping payload bytes mutated; kept only if the field codec still takes them. */
  private mutatedButDecodable(): Input | undefined {
    const rng = this.rng;
    const base = rng.pick([this.start(), this.mintKey(), this.ping()]);
    if (base === undefined) return undefined;
    const payload = mutateBytes(base.payload, rng).bytes;
    const fieldsOf = tryDecodeFields(payload);
    if (fieldsOf === undefined) return undefined;
    if (base.type === PacketType.Start && startVerdict(payload, this.target.safety) !== 'safe') return undefined;
    if (base.type === PacketType.Ping && fieldsOf.all(Field.reply).length > 1) return undefined;
    return { kind: `${base.kind.split('/')[0] ?? base.kind}-bytes`, type: base.type, payload };
  }
}
