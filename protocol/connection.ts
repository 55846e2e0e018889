// One TAP1 connection over any Duplex transport: runs the handshake, then seals and opens packets, ratchets
// keys, keeps the connection alive and closes it on the first bad packet. It knows packet types but no
// meaning beyond its own (Hello, KeyExchange, Rekey, Ping, Goodbye, Error); everything else goes to the handler.
//
//   Handshaking --keys--> Open --Goodbye sent/received--> Closing --transport closed--> Closed
//        \__________________\___ any failure ___________________________________________/

import type { Duplex } from 'node:stream';
import { PacketOpener, PacketSealer, SPEC_CIPHER_LIMITS, type CipherLimits } from './cipher.js';
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
import { FrameReader, finishHeader, joinPayload, prepareHeader, nextSequence, encodeHeader, type Frame } from './frame.js';
import { ClientHandshake, ServerHandshake, type SessionKeys } from './handshake.js';
import type { PrivateIdentity, PublicIdentity } from './keys.js';
import {
  AEAD_TAG_BYTES,
  type CipherAlgorithm,
  DEFAULT_LIMITS,
  FIRST_ENCRYPTED_TYPE,
  Field,
  type Limits,
  PacketType,
  isKnownPacketType,
} from './wire.js';
import { errorFields, peerIsTold } from './error-reply.js';

/** Receives what the connection does not handle itself. A throw from packet() fails the connection. */
export interface ConnectionHandler {
  packet(type: PacketType, payload: readonly Buffer[], payloadBytes: number): void;
  /** The transport can take more data again (after write backpressure). */
  drain(): void;
  /** The connection is gone; error is undefined after an orderly Goodbye exchange. */
  closed(error: NetplumbError | undefined): void;
}

export interface ConnectionOptions {
  limits?: Partial<Limits>;
  cipherLimits?: CipherLimits;
  ciphers?: readonly CipherAlgorithm[];
  /** Told as the peer's side of the handshake advances: its first bytes arrived, then its Hello was answered. */
  handshakeProgress?: (step: HandshakeStep) => void;
  /**
   * Aborting it ends a handshake still under way with the signal's reason (a NetplumbError), told to the peer in a
   * plaintext Error packet when its code is one peers are told (NP_TOO_MANY_CONNECTIONS: try again), else silently
   * (a timeout): how a daemon makes room among connections that have not authenticated.
   */
  abortHandshake?: AbortSignal;
}

/** What a peer has done so far in the handshake, for whoever ranks connections that have not authenticated. */
export type HandshakeStep = 'first-bytes' | 'hello';

export interface ClientTrust {
  identity: PrivateIdentity;
  /** Throws (NP_HOST_KEY_UNKNOWN, NP_HOST_KEY_CHANGED) to refuse the daemon before any key is exchanged. */
  verifyHostKey(hostKey: PublicIdentity): void;
}

export interface ServerTrust {
  hostKey: PrivateIdentity;
  /** Throws (NP_NOT_AUTHORIZED) to refuse a client whose signature has verified. */
  authorize(client: PublicIdentity): void;
}

/** What the handshake established. */
export interface PeerInfo {
  /** The client's identity (on the daemon) or the daemon's host key (on the client). */
  peer: PublicIdentity;
  cipher: CipherAlgorithm;
  sessionId: Buffer;
}

const enum State {
  Handshaking,
  Open,
  Closing,
  Closed,
}

/** How long an Error packet gets to reach the peer before the transport is torn down. */
const ERROR_LINGER_MS = 2000;
/**
 * The same for a handshake aborted from outside: shorter, since a daemon under a flood aborts many, and each holds
 * its descriptor while it lingers; a peer that wants the answer reads it within a round trip.
 */
const ABORT_LINGER_MS = 500;

/** Round trips timed before rttMs reports an estimate, and how often a flowing connection times another. */
const RTT_SAMPLES_NEEDED = 3;
const RTT_RESAMPLE_MS = 1000;

/** Pause reading while this much is waiting to be written: a peer that does not read cannot grow our buffers. */
const MAX_UNSENT_BYTES = 4 * 1024 * 1024;

export class SecureConnection {
  readonly limits: Readonly<Limits>;
  private state = State.Handshaking;
  private readonly reader: FrameReader;
  private sendSequence = 0;
  private sealer: PacketSealer | undefined;
  private opener: PacketOpener | undefined;
  private handler: ConnectionHandler | undefined;
  private readonly early: Frame[] = [];
  private info: PeerInfo | undefined;
  private presented: PublicIdentity | undefined;
  private peerMax = { maxPacketBytes: 0, initialWindowBytes: 0 };
  private lastReceivedMs = Date.now();
  /** When our unanswered Ping left (performance.now()), to time the reply. */
  private pingSentAt: number | undefined;
  private lastPingAt = 0;
  private minRttMs: number | undefined;
  private rttSamples = 0;
  private lastSentMs = Date.now();
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private goodbyeSent = false;
  private goodbyeReceived = false;
  private closeError: NetplumbError | undefined;
  private handshakeDone: { resolve: (info: PeerInfo) => void; reject: (error: NetplumbError) => void } | undefined;
  private readonly onFrame: (frame: Frame) => void;
  private readonly handshakeProgress: ((step: HandshakeStep) => void) | undefined;
  private readonly abortHandshake: AbortSignal | undefined;
  private bytesReceived = false;

  private constructor(
    private readonly transport: Duplex,
    options: ConnectionOptions,
    private readonly cipherLimits: CipherLimits,
  ) {
    this.limits = Object.freeze({ ...DEFAULT_LIMITS, ...options.limits });
    this.onFrame = (frame) => this.handleFrame(frame);
    this.reader = new FrameReader(this.limits.maxPacketBytes, this.onFrame);
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
    if (this.info === undefined || this.state === State.Handshaking) throw new InternalError('handshake not complete');
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
    return this.state === State.Open && !this.transport.writableNeedDrain;
  }

  get isOpen(): boolean {
    return this.state === State.Open;
  }

  /** Takes over packets and events; packets that arrived before are delivered now, in order. */
  attach(handler: ConnectionHandler): void {
    this.handler = handler;
    this.transport.resume();
    try {
      while (this.early.length > 0 && this.state === State.Open) this.deliver(this.early.shift() as Frame);
    } catch (error) {
      // As in receive(): a bad early packet fails the connection (which reports closed()), not the caller.
      const failure = asNetplumbError(error);
      this.fail(failure, peerIsTold(failure));
      return;
    }
    if (this.state === State.Closed) handler.closed(this.closeError);
  }

  /** Seals and writes one packet. Payload slices are not copied. */
  send(type: PacketType, payload: readonly Buffer[] | Buffer): void {
    if (this.state !== State.Open) return;
    const pieces = Buffer.isBuffer(payload) ? [payload] : payload;
    let plaintextBytes = 0;
    for (const piece of pieces) plaintextBytes += piece.length;
    const sealer = this.sealer as PacketSealer;
    if (sealer.needsRekey) {
      this.writeSealed(sealer, PacketType.Rekey, [encodeFields([])], 1);
      sealer.rekey();
    }
    this.writeSealed(sealer, type, pieces, plaintextBytes);
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
    if (this.state === State.Open) {
      this.sendGoodbye();
      this.state = State.Closing;
      this.transport.end();
    }
    return flushed;
  }

  /** Ends the connection at once. A RemoteError-worthy code is sent to the peer when keys allow it. */
  fail(error: NetplumbError, tellPeer = false, lingerMs = ERROR_LINGER_MS): void {
    if (this.state === State.Closed) return;
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

  private sendGoodbye(): void {
    if (this.goodbyeSent) return;
    this.goodbyeSent = true;
    this.sendFields(PacketType.Goodbye, []);
  }

  private sendError(error: NetplumbError): void {
    const entries: Entry[] = [
      ...errorFields(error),
    ];
    try {
      if (this.state === State.Open) this.sendFields(PacketType.Error, entries);
      else if (this.state === State.Handshaking) this.sendPlain(PacketType.Error, encodeFields(entries));
    } catch {
      // The transport may already be gone; the close below reports the real error.
    }
  }

  private runHandshake(step: (frame: Frame) => PeerInfo | undefined, begin: () => void): Promise<PeerInfo> {
    return new Promise<PeerInfo>((resolve, reject) => {
      this.handshakeDone = { resolve, reject };
      this.handshakeStep = step;
      this.handshakeTimer = setTimeout(() => {
        this.fail(new HandshakeTimeoutError(`no key exchange within ${this.limits.handshakeTimeoutMs} ms`));
      }, this.limits.handshakeTimeoutMs);
      this.transport.on('data', (chunk: Buffer) => this.receive(chunk));
      this.transport.on('end', () => this.transportEnded());
      this.transport.on('close', () => this.transportEnded());
      this.transport.on('error', (error: Error) => {
        // After the peer's Goodbye it has said all it will: a reset while we answer it is no failure.
        if (this.goodbyeReceived) this.finish(undefined);
        else this.finish(new ConnectionLostError(`transport error: ${error.message}`, { cause: error }));
      });
      this.transport.on('drain', () => this.drained());
      const { abortHandshake } = this;
      abortHandshake?.addEventListener('abort', () => {
        if (this.state !== State.Handshaking) return;
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
    const header = encodeHeader(this.sendSequence, type, [payload]);
    this.sendSequence = nextSequence(this.sendSequence);
    this.transport.cork();
    this.transport.write(header);
    this.transport.write(payload);
    this.transport.uncork();
    this.lastSentMs = Date.now();
  }

  private writeSealed(sealer: PacketSealer, type: PacketType, pieces: readonly Buffer[], plaintextBytes: number): void {
    const header = prepareHeader(this.sendSequence, type, plaintextBytes + AEAD_TAG_BYTES);
    const sealed = sealer.seal(header, pieces, plaintextBytes);
    finishHeader(header, sealed);
    this.sendSequence = nextSequence(this.sendSequence);
    this.transport.cork();
    this.transport.write(header);
    for (const piece of sealed) this.transport.write(piece);
    this.transport.uncork();
    this.lastSentMs = Date.now();
    if (this.transport.writableLength > MAX_UNSENT_BYTES) this.transport.pause();
  }

  private receive(chunk: Buffer): void {
    if (this.state === State.Closed) return;
    if (!this.bytesReceived) {
      this.bytesReceived = true;
      this.handshakeProgress?.('first-bytes');
    }
    this.lastReceivedMs = Date.now();
    try {
      this.reader.push(chunk);
    } catch (error) {
      const failure = asNetplumbError(error);
      this.fail(failure, peerIsTold(failure));
    }
  }

  /** Called by the frame reader for each packet; a throw here fails the connection (via receive). */
  private handleFrame(frame: Frame): void {
    if (this.state === State.Closed) return;
    if (this.state === State.Handshaking) {
      const info = this.handshakeStep(frame);
      if (info !== undefined) this.handshakeCompleted(info);
      return;
    }
    if (this.handler === undefined) {
      const opened = this.open(frame);
      // The packets after a Rekey are opened now, not at attach, so the ratchet must move now too.
      if (opened.type === PacketType.Rekey) (this.opener as PacketOpener).rekey();
      else this.early.push(opened);
      this.transport.pause();
      return;
    }
    this.deliver(this.open(frame));
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
        else this.pingAnswered();
        return;
      }
      case PacketType.Goodbye:
        this.goodbyeReceived = true;
        this.sendGoodbye();
        this.state = State.Closing;
        this.transport.end();
        return;
      case PacketType.Error:
        throw remoteError(joinPayload(frame.payload, frame.payloadBytes));
      case PacketType.Hello:
      case PacketType.KeyExchange:
        throw new UnexpectedPacketError('handshake packet after the key exchange');
      default:
        if (this.state !== State.Open) return;
        (this.handler as ConnectionHandler).packet(type, frame.payload, frame.payloadBytes);
    }
  }

  /**
   * The smallest round trip seen so far, in ms, once RTT_SAMPLES_NEEDED Pings have been timed; undefined before.
   * Pings are timed only while the stream layer asks (sampleRtt) and for keepalive, so an idle connection sends
   * nothing more. The smallest, because a reply delayed by a busy peer says nothing of the path.
   */
  get rttMs(): number | undefined {
    return this.rttSamples >= RTT_SAMPLES_NEEDED ? this.minRttMs : undefined;
  }

  /**
   * Times another round trip if none is under way and the estimate is young or stale: the stream layer calls this
   * while data flows, so the estimate follows the path at no cost when the connection is idle.
   */
  sampleRtt(): void {
    if (this.state !== State.Open || this.pingSentAt !== undefined) return;
    if (this.rttSamples >= RTT_SAMPLES_NEEDED && performance.now() - this.lastPingAt < RTT_RESAMPLE_MS) return;
    this.sendPing();
  }

  private sendPing(): void {
    this.pingSentAt ??= performance.now();
    this.lastPingAt = this.pingSentAt;
    this.sendFields(PacketType.Ping, []);
  }

  private pingAnswered(): void {
    if (this.pingSentAt === undefined) return;
    const sample = performance.now() - this.pingSentAt;
    this.pingSentAt = undefined;
    this.rttSamples++;
    this.minRttMs = Math.min(this.minRttMs ?? sample, sample);
  }

  private handshakeCompleted(info: PeerInfo): void {
    clearTimeout(this.handshakeTimer);
    this.state = State.Open;
    this.startKeepalive();
    this.handshakeDone?.resolve(info);
    this.handshakeDone = undefined;
  }

  private startKeepalive(): void {
    const period = Math.max(10, Math.min(this.limits.keepaliveIntervalMs, this.limits.idleTimeoutMs) / 2);
    this.keepaliveTimer = setInterval(() => {
      const now = Date.now();
      if (now - this.lastReceivedMs >= this.limits.idleTimeoutMs) {
        this.fail(new IdleTimeoutError(`nothing received for ${this.limits.idleTimeoutMs} ms`));
      } else if (now - this.lastSentMs >= this.limits.keepaliveIntervalMs) {
        this.sendPing();
      }
    }, period);
    this.keepaliveTimer.unref();
  }

  private drained(): void {
    if (this.transport.isPaused() && this.handler !== undefined) this.transport.resume();
    if (this.state === State.Open) this.handler?.drain();
  }

  private transportEnded(): void {
    if (this.state === State.Closed) return;
    if (this.reader.midPacket) {
      this.finish(new TruncatedError('connection ended inside a packet'));
    } else if (this.state === State.Closing) {
      this.finish(undefined);
    } else {
      this.finish(new ConnectionLostError('connection closed by peer without goodbye'));
    }
  }

  /** Ends the connection; with lingerMs, the transport is only ended (an Error is on its way) and destroyed later. */
  private finish(error: NetplumbError | undefined, lingerMs?: number): void {
    if (this.state === State.Closed) return;
    this.state = State.Closed;
    this.closeError = error;
    clearTimeout(this.handshakeTimer);
    clearInterval(this.keepaliveTimer);
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
