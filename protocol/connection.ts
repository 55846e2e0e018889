// One TAP1 connection over any Duplex transport: runs the handshake, then seals and opens packets, ratchets
// keys, keeps the connection alive and closes it on the first bad packet. It knows packet types but no
// meaning beyond its own (Hello, KeyExchange, Rekey, Ping, Goodbye, Error); everything else goes to the handler.
//
//   handshaking --keys--> open --close()--> goodbye-sent --peer's Goodbye--> goodbye-received --> closed
//                           \--peer's Goodbye, answered with ours---------->/
//   Every state but closed moves to closed on a failure, or when the transport is gone.

import type { Duplex } from 'node:stream';
import { PacketOpener, PacketSealer, SPEC_CIPHER_LIMITS, type CipherLimits } from './cipher.js';
import type { ClientTrust, ConnectionHandler, ConnectionOptions, HandshakeStep, PeerInfo, ServerTrust } from './connection-types.js';
import {
  asNetplumbError,
  ConnectionLostError,
  ErrorCode,
  HandshakeTimeoutError,
  IdleTimeoutError,
  InternalError,
  isErrorCode,
  NetplumbError,
  RemoteError,
  TruncatedError,
  UnexpectedPacketError,
  UnknownTypeError,
} from './errors.js';
import { decodeFields, encodeFields, type Entry } from './fields.js';
import { FrameReader, joinPayload, encodeHeader, type Frame } from './frame.js';
import { ClientHandshake, ServerHandshake, type SessionKeys } from './handshake.js';
import type { PublicIdentity } from './keys.js';
import { resolveLimits, type ResolvedLimits } from './limits.js';
import { Liveness } from './liveness.js';
import { PacketWriter } from './packet-writer.js';
import { StateMachine, type IllegalMoveReporter, type TransitionTable } from './state-machine.js';
import { AEAD_TAG_BYTES, FIRST_ENCRYPTED_TYPE, Field, PacketType, isKnownPacketType } from './wire.js';
import { errorFields, peerIsTold } from './error-reply.js';

/** The types live in connection-types.ts; users import them from here, with the connection. */
export type { ClientTrust, ConnectionHandler, ConnectionOptions, HandshakeStep, PeerInfo, ServerTrust };

export type ConnectionState = 'handshaking' | 'open' | 'goodbye-sent' | 'goodbye-received' | 'closed';

/** Goodbye-received also means ours has gone: a peer's Goodbye is answered with one. */
export const CONNECTION_MOVES: TransitionTable<ConnectionState> = {
  handshaking: ['open', 'closed'],
  open: ['goodbye-sent', 'goodbye-received', 'closed'],
  'goodbye-sent': ['goodbye-received', 'closed'],
  'goodbye-received': ['closed'],
  closed: [],
};

/** How long an Error packet gets to reach the peer before the transport is torn down. */
const ERROR_LINGER_MS = 2000;
/**
 * The same for a handshake aborted from outside: shorter, since a daemon under a flood aborts many, and each holds
 * its descriptor while it lingers; a peer that wants the answer reads it within a round trip.
 */
const ABORT_LINGER_MS = 500;

export class SecureConnection {
  readonly limits: ResolvedLimits;
  readonly reportIllegalMove: IllegalMoveReporter<string>;
  private readonly state: StateMachine<ConnectionState>;
  private readonly reader: FrameReader;
  private readonly writer: PacketWriter;
  private readonly liveness: Liveness;
  private sealer: PacketSealer | undefined;
  private opener: PacketOpener | undefined;
  private handler: ConnectionHandler | undefined;
  private readonly early: Frame[] = [];
  private info: PeerInfo | undefined;
  private presented: PublicIdentity | undefined;
  private peerMax = { maxPacketBytes: 0, initialWindowBytes: 0 };
  private closeError: NetplumbError | undefined;
  private handshakeDone: { resolve: (info: PeerInfo) => void; reject: (error: NetplumbError) => void } | undefined;
  private readonly handshakeProgress: ((step: HandshakeStep) => void) | undefined;
  private readonly abortHandshake: AbortSignal | undefined;
  private bytesReceived = false;

  private constructor(
    private readonly transport: Duplex,
    options: ConnectionOptions,
    private readonly cipherLimits: CipherLimits,
  ) {
    this.limits = options.limits ?? resolveLimits();
    this.reportIllegalMove = options.reportIllegalMove ?? (() => undefined);
    this.state = new StateMachine<ConnectionState>('connection', 'handshaking', CONNECTION_MOVES, this.reportIllegalMove);
    this.writer = new PacketWriter(transport);
    this.liveness = new Liveness(this.limits, {
      ping: () => this.sendFields(PacketType.Ping, []),
      idle: () => this.fail(new IdleTimeoutError(`nothing received for ${this.limits.idleTimeoutMs} ms`)),
      handshakeExpired: () => this.fail(new HandshakeTimeoutError(`no key exchange within ${this.limits.handshakeTimeoutMs} ms`)),
    });
    this.reader = new FrameReader(
      this.limits.maxPacketBytes,
      (frame) => this.handleFrame(frame),
      (frame) => this.authenticate(frame),
    );
    this.handshakeProgress = options.handshakeProgress;
    this.abortHandshake = options.abortHandshake;
  }

  /** Runs the client side of the handshake over transport; resolves once keys are in place. */
  static async connect(transport: Duplex, trust: ClientTrust, options: ConnectionOptions = {}): Promise<SecureConnection> {
    const connection = new SecureConnection(transport, options, options.cipherLimits ?? SPEC_CIPHER_LIMITS);
    const handshake = new ClientHandshake(trust.identity, connection.limits, options.ciphers);
    let hostKey: PublicIdentity | undefined;
    await connection.runHandshake((frame) => {
      if (hostKey === undefined) {
        hostKey = handshake.consumeHello(connection.handshakePayload(frame, PacketType.Hello));
        trust.verifyHostKey(hostKey);
        connection.sendPlain(PacketType.KeyExchange, handshake.createKeyExchange());
        return undefined;
      }
      const keys = handshake.consumeKeyExchange(connection.handshakePayload(frame, PacketType.KeyExchange));
      return connection.installKeys(keys, 'client', hostKey);
    }, () => connection.sendPlain(PacketType.Hello, handshake.createHello()));
    return connection;
  }

  /** Runs the daemon side of the handshake over transport; resolves once the client is authenticated and authorized. */
  static async accept(transport: Duplex, trust: ServerTrust, options: ConnectionOptions = {}): Promise<SecureConnection> {
    const connection = new SecureConnection(transport, options, options.cipherLimits ?? SPEC_CIPHER_LIMITS);
    const handshake = new ServerHandshake(trust.hostKey, connection.limits, options.ciphers);
    let helloSeen = false;
    await connection.runHandshake((frame) => {
      if (!helloSeen) {
        helloSeen = true;
        connection.sendPlain(PacketType.Hello, handshake.consumeHelloAndReply(connection.handshakePayload(frame, PacketType.Hello)));
        connection.handshakeProgress?.('hello');
        return undefined;
      }
      const client = handshake.consumeKeyExchange(connection.handshakePayload(frame, PacketType.KeyExchange));
      connection.presented = client;
      trust.authorize(client);
      const { payload, keys } = handshake.createKeyExchange();
      connection.sendPlain(PacketType.KeyExchange, payload);
      return connection.installKeys(keys, 'server', client);
    }, () => undefined);
    return connection;
  }

  /** The peer's identity and the session's parameters; throws before the handshake has completed. */
  get peer(): PeerInfo {
    if (this.info === undefined || this.state.is('handshaking')) throw new InternalError('handshake not complete');
    return this.info;
  }

  /** The identity the peer presented, once its signature verified (also when authorization then failed). */
  get presentedIdentity(): PublicIdentity | undefined {
    return this.presented;
  }

  /** Largest packet the peer accepts and the window it grants each new stream. */
  get peerLimits(): Readonly<{ maxPacketBytes: number; initialWindowBytes: number }> {
    return this.peerMax;
  }

  /** The transport can take more without buffering beyond its high-water mark. */
  get writable(): boolean {
    return this.state.is('open') && !this.transport.writableNeedDrain;
  }

  get isOpen(): boolean {
    return this.state.is('open');
  }

  /** Where the connection is in its life (see the diagram at the top). */
  get connectionState(): ConnectionState {
    return this.state.state;
  }

  /** Takes over packets and events; packets that arrived before are delivered now, in order. */
  attach(handler: ConnectionHandler): void {
    this.handler = handler;
    this.transport.resume();
    try {
      while (this.early.length > 0 && this.state.is('open')) this.deliver(this.early.shift() as Frame);
    } catch (error) {
      // As in receive(): a bad early packet fails the connection (which reports closed()), not the caller.
      const failure = asNetplumbError(error);
      this.fail(failure, peerIsTold(failure));
      return;
    }
    if (this.state.is('closed')) handler.closed(this.closeError);
  }

  /** Seals and writes one packet. Payload slices are not copied. */
  send(type: PacketType, payload: readonly Buffer[] | Buffer): void {
    if (!this.state.is('open')) return;
    const pieces = Buffer.isBuffer(payload) ? [payload] : payload;
    let plaintextBytes = 0;
    for (const piece of pieces) plaintextBytes += piece.length;
    const sealer = this.sealer as PacketSealer;
    if (sealer.needsRekey) {
      this.writer.writeSealed(sealer, PacketType.Rekey, [encodeFields([])], 1);
      sealer.rekey();
    }
    this.writer.writeSealed(sealer, type, pieces, plaintextBytes);
    this.liveness.sent();
  }

  sendFields(type: PacketType, entries: Iterable<Entry>): void {
    this.send(type, encodeFields(entries));
  }

  /** Batches the writes that follow into one system call (until uncork). */
  cork(): void {
    this.transport.cork();
  }

  uncork(): void {
    this.transport.uncork();
  }

  /**
   * Orderly close: says Goodbye and ends the transport; reports closed() when it is gone. Resolves once the
   * Goodbye has been handed to the operating system, which is all a peer about to exit must wait for.
   */
  close(): Promise<void> {
    const flushed = new Promise<void>((resolve) => {
      if (this.transport.writableFinished || this.transport.destroyed) resolve();
      this.transport.once('finish', resolve);
      this.transport.once('close', resolve);
    });
    if (this.state.is('open')) {
      this.sendFields(PacketType.Goodbye, []);
      this.state.move('goodbye-sent');
      this.transport.end();
    }
    return flushed;
  }

  /** Ends the connection at once. A RemoteError-worthy code is sent to the peer when keys allow it. */
  fail(error: NetplumbError, tellPeer = false, lingerMs = ERROR_LINGER_MS): void {
    if (this.state.is('closed')) return;
    if (tellPeer) this.sendError(error);
    this.finish(error, tellPeer ? lingerMs : undefined);
  }

  /**
   * Turns a transport away before any handshake: a plaintext Error packet as the first and only packet, then the
   * transport closes once it has been sent (what arrives meanwhile is read and dropped, so no reset overtakes it).
   */
  static refuse(transport: Duplex, error: NetplumbError): void {
    const payload = encodeFields([
      ...errorFields(error),
    ]);
    transport.on('error', () => undefined);
    transport.resume();
    transport.end(Buffer.concat([encodeHeader(0, PacketType.Error, [payload]), payload]));
    setTimeout(() => transport.destroy(), ABORT_LINGER_MS).unref();
  }

  private sendError(error: NetplumbError): void {
    const entries: Entry[] = [
      ...errorFields(error),
    ];
    try {
      if (this.state.is('open')) this.sendFields(PacketType.Error, entries);
      else if (this.state.is('handshaking')) this.sendPlain(PacketType.Error, encodeFields(entries));
    } catch {
      // The transport may already be gone; the close below reports the real error.
    }
  }

  private runHandshake(step: (frame: Frame) => PeerInfo | undefined, begin: () => void): Promise<PeerInfo> {
    return new Promise<PeerInfo>((resolve, reject) => {
      this.handshakeDone = { resolve, reject };
      this.handshakeStep = step;
      this.liveness.startHandshake();
      this.transport.on('data', (chunk: Buffer) => this.receive(chunk));
      this.transport.on('end', () => this.transportEnded());
      this.transport.on('close', () => this.transportEnded());
      this.transport.on('error', (error: Error) => {
        // After the peer's Goodbye it has said all it will: a reset while we answer it is no failure.
        if (this.state.is('goodbye-received')) this.finish(undefined);
        else this.finish(new ConnectionLostError(`transport error: ${error.message}`, { cause: error }));
      });
      this.transport.on('drain', () => this.drained());
      const { abortHandshake } = this;
      abortHandshake?.addEventListener('abort', () => {
        if (!this.state.is('handshaking')) return;
        const reason = asNetplumbError(abortHandshake.reason);
        this.fail(reason, peerIsTold(reason), ABORT_LINGER_MS);
      }, { once: true });
      try {
        begin();
      } catch (error) {
        this.fail(asNetplumbError(error));
      }
    });
  }

  private handshakeStep: (frame: Frame) => PeerInfo | undefined = () => undefined;
  /** When our last handshake packet left (performance.now()): the peer's next one answers it. */
  private plainSentAt: number | undefined;

  private installKeys(keys: SessionKeys, role: 'client' | 'server', peer: PublicIdentity): PeerInfo {
    const [sending, receiving] = role === 'client' ? [keys.clientToServer, keys.serverToClient] : [keys.serverToClient, keys.clientToServer];
    this.sealer = new PacketSealer(keys.cipher, sending, this.cipherLimits);
    this.opener = new PacketOpener(keys.cipher, receiving, this.cipherLimits);
    sending.fill(0);
    receiving.fill(0);
    this.peerMax = { maxPacketBytes: keys.peerMaxPacketBytes, initialWindowBytes: keys.peerInitialWindowBytes };
    this.info = { peer, cipher: keys.cipher, sessionId: keys.sessionId };
    this.presented = peer;
    return this.info;
  }

  private handshakePayload(frame: Frame, expected: PacketType): Buffer {
    const payload = joinPayload(frame.payload, frame.payloadBytes);
    if (frame.type === PacketType.Error) throw remoteError(payload);
    if (frame.type !== expected) {
      throw new UnexpectedPacketError(`handshake expected type ${expected}, got ${frame.type}`);
    }
    return payload;
  }

  private sendPlain(type: PacketType, payload: Buffer): void {
    this.writer.writePlain(type, payload);
    this.liveness.sent();
    this.plainSentAt = performance.now();
  }

  private receive(chunk: Buffer): void {
    if (this.state.is('closed')) return;
    if (!this.bytesReceived) {
      this.bytesReceived = true;
      this.handshakeProgress?.('first-bytes');
    }
    this.liveness.received();
    try {
      this.reader.push(chunk);
    } catch (error) {
      const failure = asNetplumbError(error);
      this.fail(failure, peerIsTold(failure));
    }
  }

  /**
   * The frame reader's authenticate step: once keys are in place, a packet is opened before the reader counts it.
   * Handshake packets pass as they are; the handshake's signatures authenticate them.
   */
  private authenticate(frame: Frame): Frame {
    return this.state.is('handshaking', 'closed') ? frame : this.open(frame);
  }

  /** Called by the frame reader for each authenticated packet; a throw here fails the connection (via receive). */
  private handleFrame(frame: Frame): void {
    if (this.state.is('closed')) return;
    if (this.state.is('handshaking')) {
      // The client's Hello is answered at once; the daemon's Hello is answered after the client's key work, so
      // its sample is longer than the path, which a minimum can afford.
      if (this.plainSentAt !== undefined) this.liveness.handshakeRoundTrip(performance.now() - this.plainSentAt);
      this.plainSentAt = undefined;
      const info = this.handshakeStep(frame);
      if (info !== undefined) this.handshakeCompleted(info);
      return;
    }
    if (this.handler === undefined) {
      // The packets after a Rekey are opened now, not at attach, so the ratchet must move now too.
      if (frame.type === PacketType.Rekey) (this.opener as PacketOpener).rekey();
      else this.early.push(frame);
      this.transport.pause();
      return;
    }
    this.deliver(frame);
  }

  /** Authenticates and decrypts first; only then is the type looked at. */
  private open(frame: Frame): Frame {
    if (frame.type < FIRST_ENCRYPTED_TYPE) {
      throw new UnexpectedPacketError(`plaintext packet type ${frame.type} after the key exchange`);
    }
    const payload = (this.opener as PacketOpener).open(frame.header, frame.payload, frame.payloadBytes);
    if (!isKnownPacketType(frame.type)) throw new UnknownTypeError(`unknown packet type ${frame.type}`);
    return { ...frame, payload, payloadBytes: frame.payloadBytes - AEAD_TAG_BYTES };
  }

  private deliver(frame: Frame): void {
    const type = frame.type as PacketType;
    switch (type) {
      case PacketType.Rekey:
        (this.opener as PacketOpener).rekey();
        return;
      case PacketType.Ping: {
        const fields = decodeFields(joinPayload(frame.payload, frame.payloadBytes));
        if (fields.optional(Field.reply) === undefined) this.sendFields(PacketType.Ping, [[Field.reply, '1']]);
        else this.liveness.pingAnswered();
        return;
      }
      case PacketType.Goodbye:
        // A repeated Goodbye says nothing new.
        if (this.state.is('goodbye-received')) return;
        if (this.state.is('open')) this.sendFields(PacketType.Goodbye, []);
        this.state.move('goodbye-received');
        this.transport.end();
        return;
      case PacketType.Error:
        throw remoteError(joinPayload(frame.payload, frame.payloadBytes));
      case PacketType.Hello:
      case PacketType.KeyExchange:
        throw new UnexpectedPacketError('handshake packet after the key exchange');
      default:
        if (!this.state.is('open')) return;
        (this.handler as ConnectionHandler).packet(type, frame.payload, frame.payloadBytes);
    }
  }

  /**
   * The smallest round trip seen so far, in ms, once a few Pings have been timed; undefined before. Pings are timed
   * only while the stream layer asks (sampleRtt) and for keepalive, so an idle connection sends nothing more.
   */
  get rttMs(): number | undefined {
    return this.liveness.rttMs;
  }

  /**
   * Times another round trip if none is under way and the estimate is young or stale: the stream layer calls this
   * while data flows, so the estimate follows the path at no cost when the connection is idle.
   */
  sampleRtt(): void {
    if (this.state.is('open')) this.liveness.sampleRtt();
  }

  private handshakeCompleted(info: PeerInfo): void {
    this.state.move('open');
    this.liveness.startKeepalive();
    this.handshakeDone?.resolve(info);
    this.handshakeDone = undefined;
  }

  private drained(): void {
    if (this.transport.isPaused() && this.handler !== undefined) this.transport.resume();
    if (this.state.is('open')) this.handler?.drain();
  }

  private transportEnded(): void {
    if (this.state.is('closed')) return;
    if (this.reader.midPacket) {
      this.finish(new TruncatedError('connection ended inside a packet'));
    } else if (this.state.is('goodbye-sent', 'goodbye-received')) {
      this.finish(undefined);
    } else {
      this.finish(new ConnectionLostError('connection closed by peer without goodbye'));
    }
  }

  /** Ends the connection; with lingerMs, the transport is only ended (an Error is on its way) and destroyed later. */
  private finish(error: NetplumbError | undefined, lingerMs?: number): void {
    if (!this.state.move('closed')) return;
    this.closeError = error;
    this.liveness.stop();
    this.sealer?.destroy();
    this.opener?.destroy();
    if (error === undefined) {
      this.transport.end();
    } else if (lingerMs !== undefined) {
      this.transport.end();
      setTimeout(() => this.transport.destroy(), lingerMs).unref();
    } else {
      this.transport.destroy();
    }
    if (this.handshakeDone !== undefined) {
      this.handshakeDone.reject(error ?? new ConnectionLostError('connection closed during handshake'));
      this.handshakeDone = undefined;
      return;
    }
    this.handler?.closed(error);
  }
}

/**
 * Most characters of a peer's Error message kept: it is logged, and an Error with a peer-visible code is echoed
 * back, before the handshake too, where only 4096-byte packets are sure to be accepted.
 */
const MAX_REMOTE_MESSAGE_CHARS = 1024;

function remoteError(payload: Buffer): RemoteError {
  const fields = decodeFields(payload);
  const code = fields.optional(Field.code) ?? ErrorCode.Internal;
  const message = fields.optional(Field.message) ?? 'peer reported an error';
  const kept = message.length > MAX_REMOTE_MESSAGE_CHARS ? `${message.slice(0, MAX_REMOTE_MESSAGE_CHARS)}...` : message;
  return new RemoteError(isErrorCode(code) ? code : ErrorCode.Internal, kept);
}
