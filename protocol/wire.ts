// The TAP1 wire vocabulary in one place: packet layout, packet types, field names, spec constants and the
// tunable limits with their defaults. Everything that crosses the wire is named here; PROTOCOL.md explains it.

/** ASCII "TAP1", the first four bytes of every packet. */
export const MAGIC = Buffer.from('TAP1', 'ascii');

/**
 * Packet layout (all integers big-endian):
 *
 *   offset  bytes  field
 *   0       4      magic "TAP1"
 *   4       4      size: the number of bytes after this field (CRC + sequence + type + payload)
 *   8       4      CRC-32 (IEEE, zlib.crc32) of every byte after the CRC field
 *   12      4      sequence number, 0..32767, per direction
 *   16      1      packet type
 *   17      ...    payload (for encrypted types: ciphertext followed by a 16-byte AEAD tag)
 */
export const MAGIC_OFFSET = 0;
export const SIZE_OFFSET = 4;
export const CRC_OFFSET = 8;
export const SEQUENCE_OFFSET = 12;
export const TYPE_OFFSET = 16;
export const HEADER_BYTES = 17;
/** Width of the size, CRC and sequence fields. */
export const SIZE_FIELD_BYTES = 4;
/** Bytes counted by the size field that are not payload: CRC (4) + sequence (4) + type (1). */
export const SIZE_OVERHEAD_BYTES = 9;
/** Bytes of a packet the size field does not count (magic and the size field itself): a packet is size + 8 bytes. */
export const UNCOUNTED_BYTES = SIZE_OFFSET + SIZE_FIELD_BYTES;
/** The AEAD's associated data: the size field (4), then sequence and type (5); the CRC is left out. */
export const ASSOCIATED_DATA_BYTES = SIZE_FIELD_BYTES + HEADER_BYTES - SEQUENCE_OFFSET;

/**
 * The smallest packet every implementation accepts, and so the smallest max-packet-bytes and initial-window-bytes
 * a peer may announce: what handshake packets, sent before the peer's limit is known, must fit in.
 */
export const MIN_PACKET_BYTES = 4096;
/** The largest max-packet-bytes and initial-window-bytes a peer may announce, and the largest window credit. */
export const MAX_ANNOUNCED_BYTES = 2 ** 31;
/** The largest maxWindowBytes a side may grant a stream (1 GiB). */
export const MAX_WINDOW_CEILING_BYTES = 2 ** 30;
/**
 * Room a sender leaves in a packet beyond its payload: a StreamData needs the header (17), stream id (4) and AEAD
 * tag (16), 37 bytes; 64 leaves margin for any packet whose payload is sized against max-packet-bytes.
 */
export const PACKET_ROOM_BYTES = 64;

/** Sequence numbers run 0..32767 and then start again at 0. */
export const SEQUENCE_MODULUS = 32768;

/** AEAD tag length of both ciphers. */
export const AEAD_TAG_BYTES = 16;
/** AEAD nonce: 4 zero bytes followed by the 64-bit per-direction record counter. */
export const AEAD_NONCE_BYTES = 12;
/** Symmetric key length of both ciphers. */
export const SESSION_KEY_BYTES = 32;

/** Binary prefix of a StreamData payload: the 4-byte stream id; the rest is raw stream bytes. */
export const STREAM_ID_BYTES = 4;
export const MAX_STREAM_ID = 0xffff_ffff;

/**
 * Packet types. Below 10: plaintext hello. 10: the signed session-key exchange. 20 and up: encrypted with
 * the negotiated keys. 99 is the error packet: plaintext while no key exists yet, encrypted afterwards.
 * A reply to a request carries the request's type.
 */
export enum PacketType {
  /** Both sides, plaintext: protocol version, algorithm lists, nonce, limits (and the host key, from the daemon). */
  Hello = 1,
  /** Both sides: ephemeral X25519 key, long-term public key, signature over the transcript. */
  KeyExchange = 10,
  /** Client asks the daemon to run something; the daemon's reply says whether it did. */
  Start = 20,
  /** The sender switches its sending direction to the next key (a one-way ratchet); no reply. */
  Rekey = 21,
  /** Keepalive; the reply repeats the type with reply=1. */
  Ping = 22,
  /** Orderly end of the connection: the sender will send nothing more. */
  Goodbye = 23,
  /** Opens a stream: stream id and purpose. */
  StreamOpen = 30,
  /** Binary payload: 4-byte stream id, then raw bytes. Consumes send window. */
  StreamData = 31,
  /** Returns receive window credit for one stream. */
  StreamWindow = 32,
  /** The sender will write no more bytes to that stream (half close). */
  StreamEof = 33,
  /** The sender drops the stream: it will neither send nor read any more (abort, or final close). */
  StreamClose = 34,
  /** Client forwards a signal to the running command. */
  Signal = 40,
  /** Daemon reports how the command ended: exit code or signal. For a recipe, the status of the whole recipe. */
  Exit = 41,
  /** Daemon reports how one command of a recipe ended, as it happens: stage, name, line, and code, signal or error. */
  StageEnd = 42,
  /** Client reports its terminal's new size, for a command on a pseudo-terminal: cols and rows. */
  Resize = 43,
  /**
   * A controller asks for a one-time key bound to one command or recipe (the Start fields of it, a user and a
   * lifetime); the daemon's reply carries the key, or why it was refused.
   */
  MintKey = 44,
  /** Controller to a daemon whose part of a recipe is ready (Start kind=part): start its commands now. */
  Go = 45,
  /** Controller to a daemon running a part: a command on another machine has ended (its stage index). */
  RemoteStageEnd = 46,
  /**
   * Controller to the daemon whose command writes an edge: connect to the edge's reading daemon with this one-time
   * key and carry the edge; the daemon's reply (same type) says whether the edge is connected.
   */
  EdgeConnect = 47,
  /** Writing daemon to reading daemon, on an edge's connection: the count and SHA-256 of the bytes it read. */
  EdgeDigest = 48,
  /** A daemon to its controller: what passed its end of an edge, and, at the reading end, whether the digests agree. */
  EdgeReport = 49,
  /** A part's daemon to its controller, before Exit: the count and SHA-256 of plumb's stdin it delivered, or of the stdout it sent. */
  StreamDigest = 50,
  /**
   * A part's daemon to its controller, about once a second while the part runs and only when its Start asked
   * (`progress=1`): how many bytes of an edge its commands read have arrived so far. Never sent otherwise.
   */
  EdgeProgress = 51,
  /**
   * Daemon to client, only when a recipe's Start (or a part's) asked with `count-bytes=1`: what one command took in
   * and gave out, once it has exited and its output is all in (after its StageEnd), or at the run's end; before Exit.
   */
  StageBytes = 52,
  /** A fatal or request-level error: a stable code and a message. */
  Error = 99,
}

/** The first type that is always encrypted. */
export const FIRST_ENCRYPTED_TYPE = 20;

export function isKnownPacketType(type: number): type is PacketType {
  return PacketType[type] !== undefined;
}

/** Field names used in name/value payloads. One place, so both ends spell them alike. */
export const Field = {
  // Hello
  protocol: 'protocol',
  software: 'software',
  nonce: 'nonce',
  kex: 'kex',
  ciphers: 'ciphers',
  signatures: 'signatures',
  cipher: 'cipher',
  hostKey: 'hostkey',
  maxPacketBytes: 'max-packet-bytes',
  initialWindowBytes: 'initial-window-bytes',
  // KeyExchange
  ephemeral: 'ephemeral',
  identity: 'identity',
  recipient: 'recipient',
  signature: 'signature',
  // Start
  kind: 'kind',
  arg: 'arg',
  stdin: 'stdin',
  stdout: 'stdout',
  stderr: 'stderr',
  status: 'status',
  // Streams
  stream: 'stream',
  purpose: 'purpose',
  credit: 'credit',
  // Start: exported environment variables, `NAME=VALUE` each
  env: 'env',
  // Start: replicated named pipes and sockets (paths on the daemon's host), in order; StreamOpen names one by index
  infifo: 'infifo',
  outfifo: 'outfifo',
  listenSocket: 'listen-socket',
  connectSocket: 'connect-socket',
  endpoint: 'endpoint',
  round: 'round',
  // Start on a pseudo-terminal, and Resize
  pty: 'pty',
  term: 'term',
  cols: 'cols',
  rows: 'rows',
  // Start of a recipe, and StageEnd
  recipe: 'recipe',
  source: 'source',
  stage: 'stage',
  name: 'name',
  line: 'line',
  error: 'error',
  startedAt: 'started-at',
  endedAt: 'ended-at',
  // Start of a recipe or part (count-bytes=1), and StageBytes
  countBytes: 'count-bytes',
  bytesIn: 'bytes-in',
  bytesOut: 'bytes-out',
  bytesErr: 'bytes-err',
  // Signal and Exit
  signal: 'signal',
  code: 'code',
  coreDumped: 'core-dumped',
  // Start and MintKey: the account the command runs as
  user: 'user',
  // MintKey
  lifetime: 'lifetime-seconds',
  key: 'key',
  fingerprint: 'fingerprint',
  expires: 'expires',
  // A recipe across machines: Start kind=part and kind=edge, EdgeConnect, EdgeDigest, EdgeReport
  run: 'run',
  machine: 'machine',
  edge: 'edge',
  host: 'host',
  port: 'port',
  route: 'route',
  bytes: 'bytes',
  sha256: 'sha256',
  direction: 'direction',
  sentBytes: 'sent-bytes',
  sentSha256: 'sent-sha256',
  progress: 'progress',
  limitRate: 'limit-rate',
  // Ping
  reply: 'reply',
  // Error
  message: 'message',
} as const;

/** The purpose of a stream beyond the three of a Start: each names its endpoint by index in the Start's list. */
export enum StreamPurpose {
  /** Client to daemon: one round of an -infifo (the bytes local writers put into the FIFO). */
  InFifo = 'infifo',
  /** Daemon to client: one round of an -outfifo. */
  OutFifo = 'outfifo',
  /** Daemon to client: a connection accepted on a listen-socket, for the client's local service. */
  ListenSocket = 'listen-socket',
  /** Client to daemon: a connection accepted by plumb, for the service at a connect-socket. */
  ConnectSocket = 'connect-socket',
  /** Daemon to controller, for an edge relayed through it (EdgeRoute.Controller): the edge's bytes; field `edge`. */
  Edge = 'edge',
}

/** What a Start packet asks for. */
export enum StartKind {
  /** One command, run as an argv. */
  Exec = 'exec',
  /** A recipe (recipes/): its text, checked again by the daemon. */
  Recipe = 'recipe',
  /**
   * No command: only the Start's named pipes and sockets, replicated until the client closes the connection
   * (`plumb -N`, as `ssh -N`). Refused without any.
   */
  Forward = 'forward',
  /**
   * One machine's part of a recipe that spans machines: the whole text, the run and the placements that are this
   * machine. Readied and held (reply `status=ready`) until the controller's Go.
   */
  Part = 'part',
  /** From the daemon that writes an edge, on a one-time key bound to it: the edge's bytes, for its reader here. */
  Edge = 'edge',
}

/** The status field of a Start reply. */
export enum StartStatus {
  Started = 'started',
  Refused = 'refused',
  /** A part is checked and its pipes are made; nothing runs before Go. */
  Ready = 'ready',
}

/** How an EdgeConnect carries its edge: the `route` field, `direct` when absent. */
export enum EdgeRoute {
  /** The writing daemon connects to the reading daemon with the edge's one-time key. */
  Direct = 'direct',
  /**
   * The writing daemon opens a stream (purpose `edge`) to the controller on the part's own connection and sends its
   * EdgeDigest there; the controller carries both on to the reader over an edge connection of its own (-relay).
   */
  Controller = 'controller',
}

/** The status field of an EdgeConnect reply. */
export enum EdgeConnectStatus {
  Connected = 'connected',
  Refused = 'refused',
}

/** The status field of an EdgeReport from an edge's reading end. */
export enum EdgeStatus {
  /** Every byte arrived: the count and the SHA-256 of what was delivered equal the sender's. */
  Intact = 'intact',
  /** The digests differ (NP_DIGEST_MISMATCH). */
  Mismatch = 'mismatch',
  /** The edge was cut short, or ended without the sender's digest: nothing can be said. */
  Incomplete = 'incomplete',
}

/** A run's id: 16 random bytes, as lower-case hex, chosen by the controller for one run of a recipe across machines. */
export const RUN_ID_PATTERN = /^[0-9a-f]{32}$/;
/** Most placements one Start kind=part may name as its machine. */
export const MAX_PART_MACHINES = 64;
/** Longest host name or address in an EdgeConnect. */
export const MAX_HOST_BYTES = 255;
/**
 * The bounds of an EdgeConnect's `limit-rate` (bytes per second): below 1 KiB/s a packet would take most of a
 * minute and the idle timeouts would fire first; above 2^40 it limits nothing.
 */
export const MIN_EDGE_RATE = 1024;
export const MAX_EDGE_RATE = 2 ** 40;

/** The status field of a MintKey reply. */
export enum MintStatus {
  Minted = 'minted',
  Refused = 'refused',
}

/** Version string carried in Hello. */
export const PROTOCOL_VERSION = 'TAP1/1';

/** Algorithms, in order of preference. */
export const KEX_ALGORITHMS = ['x25519'] as const;
export const CIPHER_ALGORITHMS = ['aes-256-gcm', 'chacha20-poly1305'] as const;
export const SIGNATURE_ALGORITHMS = ['ssh-ed25519', 'rsa-pss-sha256'] as const;
export type CipherAlgorithm = (typeof CIPHER_ALGORITHMS)[number];
export type SignatureAlgorithm = (typeof SIGNATURE_ALGORITHMS)[number];

/** Random bytes in each Hello nonce. */
export const HELLO_NONCE_BYTES = 32;
/** Smallest RSA modulus accepted for identity keys. */
export const MIN_RSA_BITS = 3072;

/**
 * Cipher safety limits (spec constants, not tunables). A sender ratchets its key (Rekey packet) after
 * REKEY_AFTER_BYTES or REKEY_AFTER_RECORDS under one key; a receiver refuses a key that has sealed more than
 * REJECT_AFTER_BYTES or REJECT_AFTER_RECORDS. The record limit keeps AES-GCM's per-key invocation count
 * far below 2^32 and the byte limit keeps the number of AES blocks under one key below 2^32 (64 GiB).
 */
export const REKEY_AFTER_BYTES = 2 ** 32;
export const REKEY_AFTER_RECORDS = 2 ** 24;
export const REJECT_AFTER_BYTES = 2 ** 36 - 2 ** 30;
export const REJECT_AFTER_RECORDS = 2 ** 28;

/** Default TCP port of netplumbd. */
export const DEFAULT_PORT = 7020;

/** Tunable limits, each with its unit in its name. One default each; resolveLimits (limits.ts) validates them once. */
export interface Limits {
  /** Largest packet accepted (the size field plus 8), checked from the header before the body is read. */
  maxPacketBytes: number;
  /** Largest StreamData payload a sender puts in one packet. */
  maxDataPayloadBytes: number;
  /** Time from TCP accept (or connect) until the key exchange has completed. */
  handshakeTimeoutMs: number;
  /** Connections the daemon serves at once; more are closed at accept. */
  maxConnections: number;
  /** Connections still in the handshake at once; more are closed at accept. */
  maxUnauthenticatedConnections: number;
  /** Streams open at once on one connection. */
  maxStreamsPerConnection: number;
  /** Receive window each stream starts with, per direction. */
  initialWindowBytes: number;
  /** Most a stream's receive window grows to while the window limits its throughput (long round trips). */
  maxWindowBytes: number;
  /** A connection from which nothing was received for this long is closed. */
  idleTimeoutMs: number;
  /** A side that has sent nothing for this long sends a Ping. */
  keepaliveIntervalMs: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxPacketBytes: 1024 * 1024,
  maxDataPayloadBytes: 64 * 1024,
  handshakeTimeoutMs: 10_000,
  maxConnections: 4096,
  maxUnauthenticatedConnections: 64,
  maxStreamsPerConnection: 256,
  initialWindowBytes: 1024 * 1024,
  maxWindowBytes: 16 * 1024 * 1024,
  idleTimeoutMs: 90_000,
  keepaliveIntervalMs: 30_000,
});

// Request limits: what one Start or MintKey may ask for; a request beyond them is NP_BAD_REQUEST.

/** Longest argv accepted in a Start request, in words. */
export const MAX_ARGV_WORDS = 4096;
/** Most variables one Start may export. */
export const MAX_EXPORTED_VARIABLES = 256;
/** Most named pipes and sockets one Start may replicate, all kinds together. */
export const MAX_ENDPOINTS = 64;
/** Longest endpoint path in a Start, in bytes. */
export const MAX_ENDPOINT_PATH_BYTES = 4096;
/** Terminal sizes accepted, in character cells. */
export const MAX_TERMINAL_CELLS = 10_000;
/** Longest recipe file name carried in a Start request, in bytes. */
export const MAX_SOURCE_NAME_BYTES = 1024;
/**
 * Longest `message` a Start or MintKey refusal or a StageEnd carries, in bytes of UTF-8. A refusal may quote what
 * the client sent (a program name thousands of bytes long), and the packet must still fit the smallest
 * max-packet-bytes a peer may announce (MIN_PACKET_BYTES).
 */
export const MAX_REPLY_MESSAGE_BYTES = 2048;
/** Longest stage name in a StageEnd, in bytes (labels are short; `line N` shorter). */
export const MAX_STAGE_NAME_BYTES = 256;
/** Longest lifetime a one-time key may be given, in seconds: a week. */
export const MAX_ONE_TIME_KEY_SECONDS = 7 * 24 * 3600;
