// The TAP1 key exchange as create/consume pairs over explicit states, for the client and for the daemon.
// Pure: it builds and checks payloads and derives keys; the connection layer moves the packets and decides trust.
//
//   client                                       daemon
//   Hello  (versions, algorithms, nonce)   --->
//                                          <---  Hello  (choices, nonce, host key)
//   KeyExchange (ephemeral, identity,      --->  [daemon checks the signature, then authorization]
//     recipient = host key, signature)
//                                          <---  KeyExchange (ephemeral, recipient = client key, signature)
//   [client checks the signature]                both derive: c2s and s2c keys, session id
//
// Each signature covers a hash of every handshake payload so far plus the signer's own fields, so algorithm
// lists cannot be downgraded and each side's signature is bound to the other side's public key.

import { createHash, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import {
  BadFieldsError,
  BadSignatureError,
  NoCommonAlgorithmError,
  UnexpectedPacketError,
} from './errors.js';
import { decodeFields, encodeFields, type Entry, type FieldList } from './fields.js';
import {
  curvePublicKey,
  parsePublicKeyLine,
  rawCurvePublicKey,
  signTranscript,
  verifyTranscript,
  type PrivateIdentity,
  type PublicIdentity,
} from './keys.js';
import {
  CIPHER_ALGORITHMS,
  type CipherAlgorithm,
  Field,
  HELLO_NONCE_BYTES,
  KEX_ALGORITHMS,
  type Limits,
  MAX_ANNOUNCED_BYTES,
  MIN_PACKET_BYTES,
  PROTOCOL_VERSION,
  SESSION_KEY_BYTES,
  SIGNATURE_ALGORITHMS,
} from './wire.js';

export const SOFTWARE_VERSION = 'netplumb/0.1.0';
const CLIENT_SIGNATURE_CONTEXT = Buffer.from('netplumb TAP1 client signature\0', 'ascii');
const SERVER_SIGNATURE_CONTEXT = Buffer.from('netplumb TAP1 server signature\0', 'ascii');
const CLIENT_TO_SERVER_INFO = Buffer.from('netplumb TAP1 key client to daemon', 'ascii');
const SERVER_TO_CLIENT_INFO = Buffer.from('netplumb TAP1 key daemon to client', 'ascii');

/** What both sides know once the exchange has completed. Keys are the caller's to zero. */
export interface SessionKeys {
  cipher: CipherAlgorithm;
  clientToServer: Buffer;
  serverToClient: Buffer;
  /** Hash of the whole transcript: unique to this connection, usable to bind later credentials to it. */
  sessionId: Buffer;
  /** What the peer declared it accepts. */
  peerMaxPacketBytes: number;
  peerInitialWindowBytes: number;
}

/** Limits a side announces in its Hello. */
export type AnnouncedLimits = Pick<Limits, 'maxPacketBytes' | 'initialWindowBytes'>;

interface Ephemeral {
  privateKey: KeyObject;
  publicRaw: string;
}

function newEphemeral(): Ephemeral {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  // The wire carries the raw key as base64url (what JWK calls x), taken from its DER form: see keys.ts.
  return { privateKey, publicRaw: rawCurvePublicKey(publicKey, 'X25519').toString('base64url') };
}

function sharedSecret(own: Ephemeral, peerRaw: string): Buffer {
  if (!/^[A-Za-z0-9_-]{43}$/.test(peerRaw)) throw new BadFieldsError('malformed ephemeral key');
  let secret: Buffer;
  try {
    const publicKey = curvePublicKey(Buffer.from(peerRaw, 'base64url'), 'X25519');
    secret = diffieHellman({ privateKey: own.privateKey, publicKey });
  } catch (error) {
    throw new BadSignatureError('ephemeral key rejected', { cause: error });
  }
  // A low-order peer point gives an all-zero secret: the exchange would have no secret in it at all.
  if (secret.every((byte) => byte === 0)) throw new BadSignatureError('degenerate ephemeral key');
  return secret;
}

/** SHA-256 over length-prefixed parts, so no two transcripts hash the same parts the same way. */
function transcriptHash(parts: readonly Buffer[]): Buffer {
  const hash = createHash('sha256');
  const length = Buffer.alloc(4);
  for (const part of parts) {
    length.writeUInt32BE(part.length, 0);
    hash.update(length);
    hash.update(part);
  }
  return hash.digest();
}

function deriveKeys(secret: Buffer, sessionId: Buffer): { clientToServer: Buffer; serverToClient: Buffer } {
  const clientToServer = Buffer.from(hkdfSync('sha256', secret, sessionId, CLIENT_TO_SERVER_INFO, SESSION_KEY_BYTES));
  const serverToClient = Buffer.from(hkdfSync('sha256', secret, sessionId, SERVER_TO_CLIENT_INFO, SESSION_KEY_BYTES));
  secret.fill(0);
  return { clientToServer, serverToClient };
}

function helloEntries(limits: AnnouncedLimits): Entry[] {
  return [
    [Field.protocol, PROTOCOL_VERSION],
    [Field.software, SOFTWARE_VERSION],
    [Field.nonce, randomBytes(HELLO_NONCE_BYTES).toString('hex')],
    [Field.maxPacketBytes, String(limits.maxPacketBytes)],
    [Field.initialWindowBytes, String(limits.initialWindowBytes)],
  ];
}

/**
 * Most characters of a peer's value an error quotes: NP_NO_COMMON_ALGORITHM goes back to the peer in a plaintext
 * Error, which must fit the MIN_PACKET_BYTES every implementation accepts.
 */
const QUOTED_VALUE_CHARS = 64;

function quoted(value: string): string {
  return value.length <= QUOTED_VALUE_CHARS ? value : `${value.slice(0, QUOTED_VALUE_CHARS)}...`;
}

/** A Hello nonce as sent: its bytes as lowercase hex digits. */
const HELLO_NONCE_PATTERN = new RegExp(`^[0-9a-f]{${HELLO_NONCE_BYTES * 2}}$`);

function checkProtocol(fields: FieldList): void {
  const protocol = fields.require(Field.protocol);
  if (protocol !== PROTOCOL_VERSION) throw new NoCommonAlgorithmError(`unsupported protocol ${quoted(protocol)}`);
  if (!HELLO_NONCE_PATTERN.test(fields.require(Field.nonce))) throw new BadFieldsError('malformed nonce');
}

function peerLimits(fields: FieldList): { peerMaxPacketBytes: number; peerInitialWindowBytes: number } {
  return {
    peerMaxPacketBytes: fields.requireInt(Field.maxPacketBytes, MIN_PACKET_BYTES, MAX_ANNOUNCED_BYTES),
    peerInitialWindowBytes: fields.requireInt(Field.initialWindowBytes, MIN_PACKET_BYTES, MAX_ANNOUNCED_BYTES),
  };
}

function parseKey(line: string): PublicIdentity {
  try {
    return parsePublicKeyLine(line);
  } catch (error) {
    throw new BadFieldsError('malformed public key in handshake', { cause: error });
  }
}

function signatureOf(fields: FieldList): Buffer {
  const value = fields.require(Field.signature);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) throw new BadFieldsError('malformed signature');
  return Buffer.from(value, 'base64');
}

/** Fields of a signed payload other than the signature, re-encoded: the exact bytes the signer covered. */
function unsignedPart(fields: FieldList): Buffer {
  const last = fields.entries[fields.entries.length - 1];
  if (last === undefined || last[0] !== Field.signature) throw new BadFieldsError('signature must be the last field');
  return encodeFields(fields.without(Field.signature).entries);
}

/**
 * What both halves keep: the transcript so far, this side's ephemeral key, the chosen cipher, the peer's
 * announced limits, and a state that each step checks before it runs (any other order fails for good).
 */
abstract class HandshakeSide<State extends number> {
  protected clientHello: Buffer = Buffer.alloc(0);
  protected serverHello: Buffer = Buffer.alloc(0);
  protected clientKeyExchange: Buffer = Buffer.alloc(0);
  protected readonly ephemeral = newEphemeral();
  protected cipher: CipherAlgorithm = CIPHER_ALGORITHMS[0];
  protected limitsOfPeer = { peerMaxPacketBytes: 0, peerInitialWindowBytes: 0 };

  protected constructor(
    protected state: State,
    private readonly failedState: State,
  ) {}

  protected expect(state: State, step: string): void {
    if (this.state !== state) {
      this.state = this.failedState;
      throw new UnexpectedPacketError(`${step} out of order`);
    }
  }
}

const enum ClientState {
  Initial,
  HelloSent,
  HelloReceived,
  KeyExchangeSent,
  Done,
  Failed,
}

/** The client's half of the exchange. Call the methods in the order of the diagram; any other order throws. */
export class ClientHandshake extends HandshakeSide<ClientState> {
  private hostKey: PublicIdentity | undefined;

  constructor(
    private readonly identity: PrivateIdentity,
    private readonly limits: AnnouncedLimits,
    private readonly ciphers: readonly CipherAlgorithm[] = CIPHER_ALGORITHMS,
  ) {
    super(ClientState.Initial, ClientState.Failed);
  }

  createHello(): Buffer {
    this.expect(ClientState.Initial, 'hello');
    this.clientHello = encodeFields([
      ...helloEntries(this.limits),
      [Field.kex, KEX_ALGORITHMS.join(',')],
      [Field.ciphers, this.ciphers.join(',')],
      [Field.signatures, SIGNATURE_ALGORITHMS.join(',')],
    ]);
    this.state = ClientState.HelloSent;
    return this.clientHello;
  }

  /** Checks the daemon's Hello and returns the host key it presented; the caller decides whether to trust it. */
  consumeHello(payload: Buffer): PublicIdentity {
    this.expect(ClientState.HelloSent, 'daemon hello');
    const fields = decodeFields(payload);
    checkProtocol(fields);
    if (fields.require(Field.kex) !== KEX_ALGORITHMS[0]) throw new NoCommonAlgorithmError('no common key exchange');
    const chosen = fields.require(Field.cipher);
    const cipher = this.ciphers.find((name) => name === chosen);
    if (cipher === undefined) throw new NoCommonAlgorithmError(`daemon chose unoffered cipher ${quoted(chosen)}`);
    const hostKey = parseKey(fields.require(Field.hostKey));
    if (!fields.requireList(Field.signatures).includes(this.identity.publicIdentity.signatureAlgorithm)) {
      throw new NoCommonAlgorithmError('daemon does not accept this identity key type');
    }
    this.limitsOfPeer = peerLimits(fields);
    this.cipher = cipher;
    this.hostKey = hostKey;
    this.serverHello = payload;
    this.state = ClientState.HelloReceived;
    return hostKey;
  }

  createKeyExchange(): Buffer {
    this.expect(ClientState.HelloReceived, 'key exchange');
    const unsigned = encodeFields([
      [Field.ephemeral, this.ephemeral.publicRaw],
      [Field.identity, this.identity.publicIdentity.line],
      [Field.recipient, (this.hostKey as PublicIdentity).line],
    ]);
    const signed = Buffer.concat([CLIENT_SIGNATURE_CONTEXT, transcriptHash([this.clientHello, this.serverHello, unsigned])]);
    const signature = signTranscript(this.identity, signed).toString('base64');
    this.clientKeyExchange = encodeFields([...decodeFields(unsigned).entries, [Field.signature, signature]]);
    this.state = ClientState.KeyExchangeSent;
    return this.clientKeyExchange;
  }

  /** Verifies the daemon's signature and derives the session keys. */
  consumeKeyExchange(payload: Buffer): SessionKeys {
    this.expect(ClientState.KeyExchangeSent, 'daemon key exchange');
    const fields = decodeFields(payload);
    const hostKey = this.hostKey as PublicIdentity;
    const unsigned = unsignedPart(fields);
    if (fields.require(Field.recipient) !== this.identity.publicIdentity.line) {
      throw new BadSignatureError('daemon key exchange is addressed to another client');
    }
    const signed = Buffer.concat([
      SERVER_SIGNATURE_CONTEXT,
      transcriptHash([this.clientHello, this.serverHello, this.clientKeyExchange, unsigned]),
    ]);
    if (!verifyTranscript(hostKey, signed, signatureOf(fields))) {
      throw new BadSignatureError('daemon signature does not verify');
    }
    const secret = sharedSecret(this.ephemeral, fields.require(Field.ephemeral));
    const sessionId = transcriptHash([this.clientHello, this.serverHello, this.clientKeyExchange, payload]);
    this.state = ClientState.Done;
    return { cipher: this.cipher, sessionId, ...deriveKeys(secret, sessionId), ...this.limitsOfPeer };
  }
}

const enum ServerState {
  Initial,
  HelloSent,
  KeyExchangeReceived,
  Done,
  Failed,
}

/** The daemon's half of the exchange. */
export class ServerHandshake extends HandshakeSide<ServerState> {
  private client: PublicIdentity | undefined;
  private clientEphemeral = '';

  constructor(
    private readonly hostKey: PrivateIdentity,
    private readonly limits: AnnouncedLimits,
    private readonly ciphers: readonly CipherAlgorithm[] = CIPHER_ALGORITHMS,
  ) {
    super(ServerState.Initial, ServerState.Failed);
  }

  /** Checks the client's Hello, picks the cipher (the client's first choice that the daemon allows), and answers. */
  consumeHelloAndReply(payload: Buffer): Buffer {
    this.expect(ServerState.Initial, 'client hello');
    const fields = decodeFields(payload);
    checkProtocol(fields);
    if (!fields.requireList(Field.kex).includes(KEX_ALGORITHMS[0])) throw new NoCommonAlgorithmError('no common key exchange');
    const offered = fields.requireList(Field.ciphers);
    const cipher = offered.map((name) => this.ciphers.find((own) => own === name)).find((name) => name !== undefined);
    if (cipher === undefined) throw new NoCommonAlgorithmError('no common cipher');
    if (!fields.requireList(Field.signatures).includes(this.hostKey.publicIdentity.signatureAlgorithm)) {
      throw new NoCommonAlgorithmError('client does not accept the host key type');
    }
    this.limitsOfPeer = peerLimits(fields);
    this.cipher = cipher;
    this.clientHello = payload;
    this.serverHello = encodeFields([
      ...helloEntries(this.limits),
      [Field.kex, KEX_ALGORITHMS[0]],
      [Field.cipher, cipher],
      [Field.signatures, SIGNATURE_ALGORITHMS.join(',')],
      [Field.hostKey, this.hostKey.publicIdentity.line],
    ]);
    this.state = ServerState.HelloSent;
    return this.serverHello;
  }

  /**
   * Verifies the client's signature (bound to this daemon's host key) and returns the client's identity; the
   * caller checks authorization before calling createKeyExchange.
   */
  consumeKeyExchange(payload: Buffer): PublicIdentity {
    this.expect(ServerState.HelloSent, 'client key exchange');
    const fields = decodeFields(payload);
    const unsigned = unsignedPart(fields);
    if (fields.require(Field.recipient) !== this.hostKey.publicIdentity.line) {
      throw new BadSignatureError('client key exchange is addressed to another host key');
    }
    const client = parseKey(fields.require(Field.identity));
    const signed = Buffer.concat([CLIENT_SIGNATURE_CONTEXT, transcriptHash([this.clientHello, this.serverHello, unsigned])]);
    if (!verifyTranscript(client, signed, signatureOf(fields))) {
      throw new BadSignatureError('client signature does not verify');
    }
    this.clientEphemeral = fields.require(Field.ephemeral);
    this.client = client;
    this.clientKeyExchange = payload;
    this.state = ServerState.KeyExchangeReceived;
    return client;
  }

  /** Signs the daemon's half and derives the keys; returns the payload to send and the keys. */
  createKeyExchange(): { payload: Buffer; keys: SessionKeys } {
    this.expect(ServerState.KeyExchangeReceived, 'key exchange');
    const client = this.client as PublicIdentity;
    const unsigned = encodeFields([
      [Field.ephemeral, this.ephemeral.publicRaw],
      [Field.recipient, client.line],
    ]);
    const signed = Buffer.concat([
      SERVER_SIGNATURE_CONTEXT,
      transcriptHash([this.clientHello, this.serverHello, this.clientKeyExchange, unsigned]),
    ]);
    const signature = signTranscript(this.hostKey, signed).toString('base64');
    const payload = encodeFields([...decodeFields(unsigned).entries, [Field.signature, signature]]);
    const secret = sharedSecret(this.ephemeral, this.clientEphemeral);
    const sessionId = transcriptHash([this.clientHello, this.serverHello, this.clientKeyExchange, payload]);
    this.state = ServerState.Done;
    return { payload, keys: { cipher: this.cipher, sessionId, ...deriveKeys(secret, sessionId), ...this.limitsOfPeer } };
  }
}
