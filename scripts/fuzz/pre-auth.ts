// The pre-authentication fuzzer: raw TCP connections that send netplumbd mutated Hello and KeyExchange packets (and
// garbage, cut packets, sizes at every limit) built with the project's own codecs and handshake. Each connection
// carries one or two inputs: the daemon closes a connection at its first bad packet, and then a new one is opened.

import { connect, type Socket } from 'node:net';
import { crc32 } from 'node:zlib';
import { decodeFields, type FieldList } from '../../protocol/fields.js';
import { FrameReader, joinPayload } from '../../protocol/frame.js';
import { ClientHandshake, ServerHandshake } from '../../protocol/handshake.js';
import type { PrivateIdentity } from '../../protocol/keys.js';
import { DEFAULT_LIMITS, Field, HEADER_BYTES, MAGIC, PacketType, SIZE_OVERHEAD_BYTES } from '../../protocol/wire.js';
import { count, type Ledger } from './ledger.js';
import { EDGE_U32, fuzzErrorMessage, mutateBytes, mutateEntries, oddValue, packet, rawFields, type RawEntry } from './mutate.js';
import type { Prng } from './prng.js';

/** Connections open at once: under the daemon's pool of pending connections (max-unauthenticated, 64). */
export const PRE_AUTH_CONCURRENCY = 24;
/** A connection the daemon has neither closed nor finished with after this long is reported as stuck. */
const STUCK_MS = 15_000;
/** Template handshakes each worker prepares, to mutate copies of rather than pay for key generation per input. */
const TEMPLATES_PER_WORKER = 6;
/** Most single-byte writes in one input; the rest of its bytes go in one write. */
const MAX_BYTE_WRITES = 400;
/** Ceiling of what the fuzzer reads back as one packet: generous, so that larger packets can be counted. */
const REPLY_MAX_PACKET_BYTES = 4 * 1024 * 1024;
/**
 * The largest packet every implementation must accept (PROTOCOL.md section 1): handshake packets go out before the
 * peer's own limit is known, so a daemon sending more may lose a conforming client.
 */
const SMALLEST_PACKET_LIMIT_BYTES = 4096;

export interface PreAuthTarget {
  port: number;
  /** The daemon's maxPacketBytes. */
  maxPacketBytes: number;
  /** The daemon's host key: a locally made daemon Hello then holds the real host key, and a KeyExchange gets past the recipient check. */
  hostKey: PrivateIdentity;
  /** An identity the daemon authorizes. */
  authorized: PrivateIdentity;
  /** Identities it does not know. */
  strangers: readonly PrivateIdentity[];
}

export interface PreAuthStats {
  inputs: number;
  connections: number;
  /** Connections the daemon ended (what it should do with bad input). */
  closedByDaemon: number;
  /** Connections neither served nor closed by the daemon within STUCK_MS. */
  stuck: number;
  connectFailures: number;
  /** Error packets the daemon sent, by code. */
  errorCodes: Record<string, number>;
  /** Packets the daemon answered with, by type name. */
  replies: Record<string, number>;
  /** Answers that are not well-formed TAP1 packets: the daemon's own framing is wrong. */
  badReplies: number;
  /** Handshake answers longer than SMALLEST_PACKET_LIMIT_BYTES, by type. */
  oversizedReplies: Record<string, number>;
  /** Inputs by kind. */
  kinds: Record<string, number>;
}

export function emptyPreAuthStats(): PreAuthStats {
  return { inputs: 0, connections: 0, closedByDaemon: 0, stuck: 0, connectFailures: 0, errorCodes: {}, replies: {}, badReplies: 0, oversizedReplies: {}, kinds: {} };
}

/** What one connection sends. */
interface Script {
  kind: string;
  inputs: number;
  /** Each element is one write(). */
  writes: Buffer[];
  /** Once the daemon's Hello has arrived: further writes made from it (the KeyExchange a real client would send). */
  afterHello?: (daemonHello: Buffer) => Buffer[];
  /** end: half-close after writing (the daemon sees the end at once); reset: RST; none: wait for the daemon. */
  finish: 'end' | 'reset' | 'none';
}

/** A client Hello and a KeyExchange signed over a transcript with a daemon Hello made locally with the real host key. */
interface Template {
  hello: Buffer;
  keyExchange: Buffer;
}

function makeTemplate(target: PreAuthTarget, identity: PrivateIdentity): Template {
  const limits = { maxPacketBytes: DEFAULT_LIMITS.maxPacketBytes, initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes };
  const client = new ClientHandshake(identity, limits);
  const hello = client.createHello();
  client.consumeHello(new ServerHandshake(target.hostKey, limits).consumeHelloAndReply(hello));
  return { hello, keyExchange: client.createKeyExchange() };
}

function entriesOf(payload: Buffer): RawEntry[] {
  return [...decodeFields(payload).entries];
}

/** Values of the Hello fields that its checks turn on, and others close to them. */
const HELLO_VALUES: Readonly<Record<string, readonly string[]>> = {
  [Field.protocol]: ['TAP1/1', 'TAP1/2', 'TAP1/0', 'tap1/1', 'TAP1/1 ', 'TAP1', '', 'TAP1/1\u0000', `TAP1/${'9'.repeat(5000)}`],
  [Field.nonce]: ['0'.repeat(64), '0'.repeat(63), '0'.repeat(65), 'A'.repeat(64), 'g'.repeat(64), ''],
  [Field.maxPacketBytes]: ['4095', '4096', '2147483648', '2147483649', '0', '01', '-4096', '9007199254740993', '1048576'],
  [Field.initialWindowBytes]: ['4095', '4096', '2147483648', '2147483649', '0', '', '1e9'],
  [Field.kex]: ['x25519', '', ',,,', 'X25519', 'x25519,'.repeat(2000), 'curve25519,x448', 'x25519 '],
  [Field.ciphers]: ['aes-256-gcm', 'chacha20-poly1305', 'none', '', 'AES-256-GCM', 'aes-256-gcm,'.repeat(3000), 'aes-128-gcm'],
  [Field.signatures]: ['ssh-ed25519', 'rsa-pss-sha256', '', 'ssh-rsa', 'ssh-ed25519,'.repeat(3000)],
};

/** Values of KeyExchange fields: malformed keys (bad base64, wrong type, short blobs, huge RSA), odd signatures. */
function keyExchangeValue(rng: Prng, name: string, current: string | Buffer): string | Buffer {
  const text = typeof current === 'string' ? current : current.toString('latin1');
  switch (name) {
    case Field.ephemeral:
      return rng.pick(['A'.repeat(43), 'A'.repeat(42), '_'.repeat(43), `${text.slice(0, 42)}=`, '', 'AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', text.toUpperCase()]);
    case Field.identity:
    case Field.recipient: {
      const [type = '', blob = ''] = text.split(' ');
      return rng.pick([
        `${type} ${blob.slice(0, rng.below(blob.length + 1))}`,
        `${type} ${blob}=`,
        `ssh-rsa ${blob}`,
        `ssh-dss ${blob}`,
        `${type}`,
        ` ${blob}`,
        `${type} ${blob} comment with spaces`,
        `${type} ${Buffer.from(rng.bytes(rng.size(4096))).toString('base64')}`,
        `ssh-rsa ${Buffer.concat([sshString('ssh-rsa'), sshString(Buffer.from([1, 0, 1])), sshString(rng.bytes(rng.pick([1, 256, 384, 2048, 2049])))]).toString('base64')}`,
        `ssh-ed25519 ${Buffer.concat([sshString('ssh-ed25519'), sshString(rng.bytes(rng.pick([0, 31, 32, 33])))]).toString('base64')}`,
      ]);
    }
    case Field.signature:
      return rng.pick(['', '=', 'AAAA', text.slice(0, rng.below(text.length + 1)), `${text}AAAA`, '!'.repeat(88), Buffer.from(rng.bytes(rng.size(2048))).toString('base64')]);
    default:
      return oddValue(rng);
  }
}

function sshString(value: string | Buffer): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length, 0);
  return Buffer.concat([length, bytes]);
}

/** A header written field by field; the CRC is computed over sequence, type and body unless told to be wrong. */
function header(options: { magic?: Buffer; size: number; sequence: number; type: number; body: Buffer; crcRight: boolean }): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  (options.magic ?? MAGIC).copy(out, 0, 0, 4);
  out.writeUInt32BE(options.size >>> 0, 4);
  out.writeUInt32BE(options.sequence >>> 0, 12);
  out.writeUInt8(options.type & 0xff, 16);
  const crc = crc32(options.body, crc32(out.subarray(12, HEADER_BYTES)));
  out.writeUInt32BE(options.crcRight ? crc : (crc ^ 0x0000_0100) >>> 0, 8);
  return out;
}

/** A Hello payload of exactly `length` bytes (its software field padded), or cut to it when the fields are longer. */
function helloOfLength(hello: Buffer, length: number): Buffer {
  const entries = entriesOf(hello);
  const base = rawFields(entries);
  if (length <= base.length) return base.subarray(0, length);
  const padded = entries.map(([name, value]): RawEntry => (name === Field.software ? [name, `${String(value)}${'s'.repeat(length - base.length)}`] : [name, value]));
  return rawFields(padded);
}

export class PreAuthWorker {
  private readonly templates: Template[];
  private sent = 0;
  /** The connection under way, ended at once when the run stops. */
  private current: Socket | undefined;

  constructor(
    private readonly name: string,
    private readonly rng: Prng,
    private readonly target: PreAuthTarget,
    private readonly ledger: Ledger,
    private readonly stats: PreAuthStats,
  ) {
    const identities = [target.authorized, ...target.strangers];
    this.templates = Array.from({ length: TEMPLATES_PER_WORKER }, (_, i) => makeTemplate(target, identities[i % identities.length] as PrivateIdentity));
    ledger.onStop(() => this.current?.destroy());
  }

  async run(): Promise<void> {
    for (;;) {
      const script = this.script();
      const granted = this.ledger.take(script.inputs);
      if (granted === 0) return;
      this.sent += 1;
      this.stats.inputs += granted;
      count(this.stats.kinds, script.kind);
      this.ledger.note('pre', this.name, this.sent, script.kind, script.writes.length === 1 ? (script.writes[0] as Buffer) : Buffer.concat(script.writes));
      await this.runScript(script);
    }
  }

  private get template(): Template {
    return this.rng.pick(this.templates);
  }

  private helloPacket(): Buffer {
    return packet(0, PacketType.Hello, this.template.hello);
  }

  private script(): Script {
    const rng = this.rng;
    return rng.weighted<() => Script>([
      [22, () => this.helloFields()],
      [12, () => this.helloBytes()],
      [10, () => this.packetBytes()],
      [10, () => this.headerAtLimits()],
      [8, () => this.truncated()],
      [12, () => this.keyExchangePipelined()],
      [4, () => this.keyExchangeRoundTrip()],
      [5, () => this.manyPackets()],
      [5, () => this.bytePerWrite()],
      [3, () => this.garbage()],
      [2, () => this.errorPacket()],
      [1, () => ({ kind: 'empty', inputs: 1, writes: [], finish: rng.chance(0.5) ? 'end' : 'reset' })],
      // A Hello and then silence: the daemon's handshake timeout must end it (rare: it holds a slot that long).
      [0.01, () => ({ kind: 'stall', inputs: 1, writes: [this.helloPacket()], finish: 'none' })],
    ])();
  }

  /** A Hello whose fields are mutated, reframed so it reaches the handshake's checks; now and then a KeyExchange follows. */
  private helloFields(): Script {
    const rng = this.rng;
    const template = this.template;
    let entries = entriesOf(template.hello);
    let kind = 'hello-fields';
    if (rng.chance(0.5)) {
      const name = rng.pick(Object.keys(HELLO_VALUES));
      entries = entries.map(([entryName, value]): RawEntry => (entryName === name ? [entryName, rng.pick(HELLO_VALUES[name] as readonly string[])] : [entryName, value]));
      kind = `hello-value/${name}`;
    }
    if (rng.chance(0.7)) entries = mutateEntries(entries, rng).entries;
    const writes = [packet(0, PacketType.Hello, rawFields(entries, rng.chance(0.97)))];
    if (rng.chance(0.3)) {
      const exchange = rng.chance(0.5) ? template.keyExchange : rawFields(mutateEntries(entriesOf(template.keyExchange), rng).entries);
      writes.push(packet(1, PacketType.KeyExchange, exchange));
      return { kind, inputs: 2, writes: rng.chance(0.5) ? [Buffer.concat(writes)] : writes, finish: 'end' };
    }
    return { kind, inputs: 1, writes, finish: 'end' };
  }

  /** Hello payload bytes mutated, with a correct header: the field codec sees the damage. */
  private helloBytes(): Script {
    const { bytes } = mutateBytes(this.template.hello, this.rng);
    return { kind: 'hello-bytes', inputs: 1, writes: [packet(0, PacketType.Hello, bytes)], finish: 'end' };
  }

  /** Whole packet bytes mutated, header included: magic, size, CRC and sequence see the damage. */
  private packetBytes(): Script {
    const { bytes } = mutateBytes(this.helloPacket(), this.rng);
    return { kind: 'packet-bytes', inputs: 1, writes: [bytes], finish: 'end' };
  }

  /** Sizes at every limit, and wrong magic, CRC, sequence or type, each with a body that fits the claim or is cut short. */
  private headerAtLimits(): Script {
    const rng = this.rng;
    const max = this.target.maxPacketBytes;
    // size counts the bytes after the size field, so a packet of maxPacketBytes has size max - 8.
    const size = rng.pick([0, 1, 8, SIZE_OVERHEAD_BYTES, SIZE_OVERHEAD_BYTES + 1, 4096 - 8, max - 9, max - 8, max - 7, max, 2 ** 31, 2 ** 32 - 1, rng.pick(EDGE_U32)]);
    const bodyLength = Math.max(0, size - SIZE_OVERHEAD_BYTES);
    const wanted = bodyLength > max ? 0 : bodyLength;
    // A body the whole claimed length, sent now and then only when large: a MiB per input would slow the run.
    const whole = wanted <= 64 * 1024 || rng.chance(0.03);
    const body = helloOfLength(this.template.hello, whole ? wanted : Math.min(wanted, rng.below(64 * 1024)));
    const magic = rng.chance(0.15) ? rng.pick([Buffer.from('TAP2'), Buffer.from('tap1'), Buffer.from('PAT1'), Buffer.alloc(4), Buffer.from('TAP\u00b1', 'latin1')]) : MAGIC;
    const sequence = rng.chance(0.15) ? rng.pick([1, 2, 32767, 32768, 0xffff_ffff]) : 0;
    const type = rng.chance(0.2) ? rng.pick([0, 2, 9, 10, 11, 19, 20, 21, 22, 23, 30, 31, 44, 98, 99, 100, 255]) : PacketType.Hello;
    const head = header({ magic, size, sequence, type, body, crcRight: !rng.chance(0.1) });
    const kind = `header/size-${size === max - 8 ? 'at-max' : size === max - 7 ? 'over-max' : size === max - 9 ? 'under-max' : size}`;
    return { kind, inputs: 1, writes: rng.chance(0.5) ? [Buffer.concat([head, body])] : [head, body], finish: 'end' };
  }

  /** A good Hello (and KeyExchange) cut at a boundary: inside the magic, the header, the fields, or one byte short. */
  private truncated(): Script {
    const rng = this.rng;
    const template = this.template;
    const whole = Buffer.concat([packet(0, PacketType.Hello, template.hello), ...(rng.chance(0.3) ? [packet(1, PacketType.KeyExchange, template.keyExchange)] : [])]);
    const cut = rng.chance(0.5) ? rng.below(HEADER_BYTES + 2) : rng.chance(0.3) ? whole.length - 1 : rng.below(whole.length);
    return { kind: 'truncated', inputs: 1, writes: [whole.subarray(0, cut)], finish: 'end' };
  }

  /** A good Hello and, in the same write, a KeyExchange mutated by field or by byte (its signature never verifies). */
  private keyExchangePipelined(): Script {
    const rng = this.rng;
    const template = this.template;
    let exchange: Buffer;
    let kind: string;
    if (rng.chance(0.6)) {
      let entries = entriesOf(template.keyExchange);
      if (rng.chance(0.6)) {
        const at = rng.below(entries.length);
        const [name, value] = entries[at] as RawEntry;
        entries[at] = [name, keyExchangeValue(rng, name, value)];
        kind = `kex-value/${name}`;
      } else kind = 'kex-fields';
      if (rng.chance(0.5)) entries = mutateEntries(entries, rng).entries;
      exchange = rawFields(entries, rng.chance(0.97));
    } else {
      exchange = mutateBytes(template.keyExchange, rng).bytes;
      kind = 'kex-bytes';
    }
    const sequence = rng.chance(0.1) ? rng.pick([0, 2, 3]) : 1;
    // Error packets are errorPacket()'s alone, so that their messages carry FUZZ_ERROR_MESSAGE.
    const type = rng.chance(0.1) ? rng.pick([PacketType.Hello, PacketType.Start, 11]) : PacketType.KeyExchange;
    const writes = [packet(0, PacketType.Hello, template.hello), packet(sequence, type, exchange)];
    return { kind, inputs: 1, writes: rng.chance(0.5) ? [Buffer.concat(writes)] : writes, finish: 'end' };
  }

  /**
   * A real handshake: the KeyExchange is made from the daemon's own Hello, so it verifies unless mutated. Sent as is
   * by an authorized key it completes (then garbage follows); by a stranger it gets NP_NOT_AUTHORIZED.
   */
  private keyExchangeRoundTrip(): Script {
    const rng = this.rng;
    const identity = rng.chance(0.5) ? this.target.authorized : rng.pick(this.target.strangers);
    const limits = { maxPacketBytes: DEFAULT_LIMITS.maxPacketBytes, initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes };
    const client = new ClientHandshake(identity, limits);
    const hello = client.createHello();
    const mutate = rng.chance(0.6);
    const garbageAfter = rng.chance(0.5);
    const draw = rng.fork(rng.u32());
    return {
      kind: `kex-round-trip/${identity === this.target.authorized ? 'authorized' : 'stranger'}${mutate ? '-mutated' : ''}`,
      inputs: 1,
      writes: [packet(0, PacketType.Hello, hello)],
      finish: 'end',
      afterHello: (daemonHello) => {
        client.consumeHello(daemonHello);
        let exchange = client.createKeyExchange();
        if (mutate) exchange = draw.chance(0.5) ? rawFields(mutateEntries(entriesOf(exchange), draw).entries) : mutateBytes(exchange, draw).bytes;
        const writes = [packet(1, PacketType.KeyExchange, exchange)];
        // After a completed handshake only sealed packets are valid: a plaintext one, or noise, must end it.
        if (garbageAfter) writes.push(draw.chance(0.5) ? packet(2, draw.between(20, 44), draw.bytes(draw.size(256))) : draw.bytes(draw.size(512)));
        return writes;
      },
    };
  }

  /** Many packets in one write: repeated Hellos, a Hello and many KeyExchanges, or a mix of mutated ones. */
  private manyPackets(): Script {
    const rng = this.rng;
    const template = this.template;
    const n = rng.between(2, 64);
    const packets: Buffer[] = [];
    const variant = rng.pick(['hellos', 'exchanges', 'mixed'] as const);
    for (let i = 0; i < n; i++) {
      if (variant === 'hellos') packets.push(packet(rng.chance(0.5) ? i : 0, PacketType.Hello, template.hello));
      else if (variant === 'exchanges') packets.push(i === 0 ? packet(0, PacketType.Hello, template.hello) : packet(i, PacketType.KeyExchange, template.keyExchange));
      else packets.push(packet(i, rng.pick([PacketType.Hello, PacketType.KeyExchange, 31]), mutateBytes(rng.chance(0.5) ? template.hello : template.keyExchange, rng).bytes));
    }
    return { kind: `many-packets/${variant}`, inputs: 1, writes: [Buffer.concat(packets)], finish: 'end' };
  }

  /** A Hello (good or mutated), and maybe a KeyExchange, one byte per write: the reader sees every cut. */
  private bytePerWrite(): Script {
    const rng = this.rng;
    const template = this.template;
    let bytes: Buffer = Buffer.concat([packet(0, PacketType.Hello, template.hello), ...(rng.chance(0.3) ? [packet(1, PacketType.KeyExchange, template.keyExchange)] : [])]);
    if (rng.chance(0.5)) bytes = mutateBytes(bytes, rng).bytes;
    const writes: Buffer[] = [];
    const singles = Math.min(bytes.length, MAX_BYTE_WRITES);
    for (let i = 0; i < singles; i++) writes.push(bytes.subarray(i, i + 1));
    if (bytes.length > singles) writes.push(bytes.subarray(singles));
    return { kind: 'byte-per-write', inputs: 1, writes, finish: 'end' };
  }

  /** Bytes that are not TAP1 at all, or only look like it at first. */
  private garbage(): Script {
    const rng = this.rng;
    const bytes = rng.weighted<() => Buffer>([
      [3, () => rng.bytes(rng.size(64 * 1024))],
      [1, () => Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')],
      [1, () => Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')],
      [1, () => Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, ...rng.bytes(32)])],
      [1, () => Buffer.alloc(rng.size(8192), 'T')],
      [1, () => Buffer.from('TAP1'.repeat(rng.between(1, 5000)))],
      [1, () => Buffer.alloc(rng.size(8192))],
    ])();
    return { kind: 'garbage', inputs: 1, writes: [bytes], finish: 'end' };
  }

  /**
   * An Error packet from the client during the handshake: known, unknown and malformed codes, messages missing or
   * repeated. Its message always starts with FUZZ_ERROR_MESSAGE, so the log tells the daemon's own failures apart.
   */
  private errorPacket(): Script {
    const rng = this.rng;
    const code: RawEntry[] = rng.pick([[], [[Field.code, 'NP_NOT_AUTHORIZED']], [[Field.code, 'NP_NOPE']], [[Field.code, '']], [[Field.code, 'np_bad_size']], [[Field.code, 'NP_BAD_TAG'], [Field.code, 'NP_BAD_TAG']]]);
    const message: RawEntry[] = rng.pick([[], [[Field.message, fuzzErrorMessage(rng)]], [[Field.message, fuzzErrorMessage(rng)], [Field.message, 'again']]]);
    const error = rawFields(rng.chance(0.5) ? [...code, ...message] : [...message, ...code], rng.chance(0.95));
    const writes = rng.chance(0.5) ? [packet(0, PacketType.Error, error)] : [this.helloPacket(), packet(1, PacketType.Error, error)];
    return { kind: 'error-packet', inputs: 1, writes, finish: 'end' };
  }

  private runScript(script: Script): Promise<void> {
    const stats = this.stats;
    stats.connections++;
    return new Promise((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: this.target.port, noDelay: true });
      this.current = socket;
      let connected = false;
      let closedHere = false;
      let helloSeen = false;
      const finish = (): void => {
        if (script.finish === 'end') socket.end();
        else if (script.finish === 'reset') {
          closedHere = true;
          socket.resetAndDestroy();
        }
      };
      const onFrame = (type: number, payload: Buffer): void => {
        count(stats.replies, PacketType[type] ?? `type-${type}`);
        if (HEADER_BYTES + payload.length > SMALLEST_PACKET_LIMIT_BYTES) count(stats.oversizedReplies, PacketType[type] ?? `type-${type}`);
        if (type === PacketType.Error) {
          let fields: FieldList | undefined;
          try {
            fields = decodeFields(payload);
          } catch {
            // Sealed (after a completed handshake): its code is not for this side to read.
          }
          count(stats.errorCodes, fields?.optional(Field.code) ?? 'sealed');
        }
        if (type === PacketType.Hello && !helloSeen && script.afterHello !== undefined) {
          helloSeen = true;
          let writes: Buffer[];
          try {
            writes = script.afterHello(payload);
          } catch {
            // The daemon's Hello did not satisfy the client's checks: a reply the daemon should not give.
            stats.badReplies++;
            writes = [];
          }
          for (const write of writes) socket.write(write);
          finish();
        }
      };
      const reader = new FrameReader(REPLY_MAX_PACKET_BYTES, (frame) => onFrame(frame.type, joinPayload(frame.payload, frame.payloadBytes)));
      let readerFailed = false;
      socket.on('data', (chunk: Buffer) => {
        if (readerFailed) return;
        try {
          reader.push(chunk);
        } catch {
          readerFailed = true;
          stats.badReplies++;
        }
      });
      socket.on('error', () => undefined);
      socket.once('connect', () => {
        connected = true;
        for (const write of script.writes) socket.write(write);
        if (script.afterHello === undefined) finish();
      });
      const timer = setTimeout(() => {
        if (connected) stats.stuck++;
        closedHere = true;
        socket.destroy();
      }, STUCK_MS);
      socket.once('close', () => {
        clearTimeout(timer);
        this.ledger.progress();
        if (this.ledger.stopped) closedHere = true;
        if (!connected) stats.connectFailures++;
        else if (!closedHere) stats.closedByDaemon++;
        resolve();
      });
    });
  }
}

/** Runs `concurrency` workers until the ledger's budget or deadline is spent. */
export async function runPreAuth(target: PreAuthTarget, rng: Prng, ledger: Ledger, concurrency = PRE_AUTH_CONCURRENCY): Promise<PreAuthStats> {
  const stats = emptyPreAuthStats();
  const workers = Array.from({ length: concurrency }, (_, i) => new PreAuthWorker(`pre-${i}`, rng.fork(`pre-${i}`), target, ledger, stats));
  await Promise.all(workers.map((worker) => worker.run()));
  return stats;
}
