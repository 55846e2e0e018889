// The daemon proper: loads the host key and the authorized clients, accepts connections (TCP or one on stdio),
// enforces the connection limits at accept (admission.ts ranks and bounds those not yet authenticated), and gives
// each authenticated client its own session.
// Shutdown: stop accepting, let sessions run for the grace period, then end their process groups; a session whose
// command has ended is left to its client's Goodbye within the same bounds, so the client gets its Exit and output.

import { createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { userInfo } from 'node:os';
import { allowedUsers, AuthorizedClients, loadAuthorizedClients, type AuthorizedClient } from './authorized-clients.js';
import { OneTimeKeyStore, type OneTimeKeyRecord } from './one-time-keys.js';
import { PartRegistry, type EdgeGrant } from './parts.js';
import { accountKnown, chooseAccountName } from './accounts.js';
import { loadGluepot, type Gluepot } from './gluepots.js';
import { admissionSettings, type DaemonConfig, type ListenAddress } from './config.js';
import { Admission, HandshakeStage, type PendingConnection } from './admission.js';
import { Session } from './session.js';
import { SessionLauncher } from './session-launcher.js';
import type { Logger } from './log.js';
import { SecureConnection, type HandshakeStep, type ServerTrust } from '../protocol/connection.js';
import {
  asNetplumbError,
  BadConfigError,
  ErrorCode,
  errorFor,
  KeyUsedUpError,
  NotAuthorizedError,
  ShuttingDownError,
  TooManyConnectionsError,
  type NetplumbError,
} from '../protocol/errors.js';
import { loadPrivateIdentity } from '../bridges/key-files.js';
import type { PrivateIdentity, PublicIdentity } from '../protocol/keys.js';
import { Mux } from '../protocol/mux.js';
import { StartKind } from '../protocol/wire.js';
import { pipeStock } from '../recipes/pipe-stock.js';

/** Who may connect, and what each may run. Replaced whole on reload. */
interface Authorization {
  clients: AuthorizedClients;
  gluepots: Map<string, Gluepot>;
}

interface LiveConnection {
  transport: Duplex;
  session: Session | undefined;
  connection: SecureConnection | undefined;
  /** Why the handshake failed, if it did. */
  failure: NetplumbError | undefined;
}

/** How long a daemon waits to reach another daemon for an edge of a recipe across machines. */
const EDGE_CONNECT_TIMEOUT_MS = 10_000;

/**
 * The account commands run as when a client's line names none: run-as, which a daemon running as root must set
 * (root only when configured explicitly), or the daemon's own. One the daemon cannot use is refused here, at start,
 * rather than at every client's first command.
 */
export function defaultAccount(config: Pick<DaemonConfig, 'runAs'>): string {
  const own = userInfo().username;
  if (config.runAs === undefined && process.geteuid?.() === 0) {
    throw new BadConfigError('netplumbd runs as root: set run-as to the account commands run as by default (run-as root, to run them as root)');
  }
  const runAs = config.runAs ?? own;
  if (runAs !== own) {
    if (process.geteuid?.() !== 0) throw new BadConfigError(`run-as ${runAs}: netplumbd runs as ${own}, not as root, and can run commands only as itself`);
    if (!accountKnown(runAs)) throw new BadConfigError(`run-as ${runAs}: no such account on this host`);
  }
  return runAs;
}

export class Daemon {
  private server: Server | undefined;
  private readonly live = new Set<LiveConnection>();
  private stopping = false;
  private shutdownDone: Promise<void> | undefined;
  private readonly hostKey: PrivateIdentity;
  private authorization: Authorization;
  /** The account commands run as when a client's line names none. */
  private readonly runAs: string;
  private readonly oneTimeKeys: OneTimeKeyStore;
  /** The parts of recipes across machines held for controllers, and their edge keys. */
  private readonly parts = new PartRegistry();
  /** Connections not yet authenticated: a bounded pool, deadlines, per-source caps and penalties. */
  private readonly admission: Admission;

  constructor(
    readonly config: DaemonConfig,
    private readonly log: Logger,
  ) {
    this.runAs = defaultAccount(config);
    this.admission = new Admission(admissionSettings(config));
    this.hostKey = loadPrivateIdentity(config.hostKeyFile);
    this.oneTimeKeys = new OneTimeKeyStore(config.oneTimeKeyDir);
    this.oneTimeKeys.purgeExpired();
    this.authorization = this.loadAuthorization(false);
    log.info('host key loaded', { fingerprint: this.hostKey.publicIdentity.fingerprint, runAs: this.runAs });
    // The first sessions find their pipes ready instead of waiting for the stock's first batch.
    pipeStock.warm();
  }

  /**
   * Reads the authorized clients and the gluepots they name. At start-up a bad line or gluepot only drops the
   * clients it concerns (never into running unrestricted); on reload (strict) any problem refuses the whole reload.
   */
  private loadAuthorization(strict: boolean): Authorization {
    const file = loadAuthorizedClients(this.config.clientsFile);
    if (strict && file.errors.length > 0) throw file.errors[0];
    for (const error of file.errors) this.log.warn('authorized clients: line ignored', { code: error.code, reason: error.message });
    const gluepots = new Map<string, Gluepot>();
    const clients: AuthorizedClient[] = [];
    for (const client of file.clients) {
      const name = client.options.get('gluepot');
      if (typeof name !== 'string') {
        this.log.warn('client may run any command: its line names no gluepot', { fingerprint: client.identity.fingerprint, line: client.line });
        clients.push(client);
        continue;
      }
      try {
        if (!gluepots.has(name)) gluepots.set(name, loadGluepot(this.config.gluepotDir, name));
        clients.push(client);
      } catch (error) {
        if (strict) throw error;
        const failure = asNetplumbError(error);
        this.log.warn('authorized clients: line ignored, its gluepot cannot be used', { line: client.line, code: failure.code, reason: failure.message });
      }
    }
    if (clients.length === 0) this.log.warn('no authorized clients: every connection will be refused', { file: this.config.clientsFile });
    return { clients: new AuthorizedClients(clients), gluepots };
  }

  /**
   * SIGHUP: reads the authorized clients and gluepots again. Running sessions keep what they started with; a file
   * that cannot be read or has a bad line refuses the reload, and the settings in force stay.
   */
  reload(): boolean {
    try {
      this.authorization = this.loadAuthorization(true);
      this.log.info('authorization reloaded', { clients: this.authorization.clients.size, gluepots: this.authorization.gluepots.size });
      return true;
    } catch (error) {
      const failure = asNetplumbError(error);
      this.log.error('reload refused: the settings in force stay', { code: failure.code, reason: failure.message });
      return false;
    }
  }

  /** The gluepot a client's line names (undefined: unrestricted). */
  private gluepotOf(identity: PublicIdentity): Gluepot | undefined {
    const name = this.authorization.clients.find(identity)?.options.get('gluepot');
    return typeof name === 'string' ? this.authorization.gluepots.get(name) : undefined;
  }

  /** Whether a client, as its line reads now, may run commands as this account. */
  private accountAllowed(user: string, client: AuthorizedClient): boolean {
    try {
      return chooseAccountName(user, allowedUsers(client), this.runAs) === user;
    } catch {
      return false;
    }
  }

  /** Puts an authenticated connection's session to work on its own mux. */
  private runSession(live: LiveConnection, connection: SecureConnection, session: Session): void {
    live.session = session;
    const mux = new Mux(
      connection,
      {
        side: 'daemon',
        maxStreams: this.config.limits.maxStreamsPerConnection,
        initialWindowBytes: this.config.limits.initialWindowBytes,
        maxWindowBytes: this.config.limits.maxWindowBytes,
        maxDataPayloadBytes: this.config.limits.maxDataPayloadBytes,
      },
      session,
    );
    session.attach(mux);
    connection.attach(mux);
    if (this.stopping) connection.close();
  }

  /** How a controller's session mints one-time keys: recorded in the store, logged with both fingerprints. */
  private minter(controller: AuthorizedClient, log: Logger) {
    return (binding: OneTimeKeyRecord['binding'], lifetimeSeconds: number) => {
      const { key } = this.oneTimeKeys.mint(controller.identity, binding, lifetimeSeconds, this.hostKey.publicIdentity);
      const what = binding.kind === StartKind.Exec ? { argv: binding.argv } : { recipe: binding.source };
      log.info('one-time key minted', { key: key.fingerprint, controller: controller.identity.fingerprint, user: binding.user, ...what, expires: new Date(key.expiresAt).toISOString() });
      return key;
    };
  }

  /**
   * Listens on the configured address, or on the listening socket inheritedFd when systemd passed one (the listen
   * setting is then not used); resolves with the address actually bound (port 0 picks one).
   */
  listen(inheritedFd?: number): Promise<ListenAddress> {
    const server = createServer({ noDelay: true, pauseOnConnect: false }, (socket) => this.accept(socket));
    this.server = server;
    const where = inheritedFd === undefined ? `${this.config.listen.host}:${this.config.listen.port}` : `the socket systemd passed (fd ${inheritedFd})`;
    return new Promise((resolve, reject) => {
      server.once('error', (error) => reject(new BadConfigError(`cannot listen on ${where}: ${error.message}`, { cause: error })));
      server.listen(inheritedFd === undefined ? { host: this.config.listen.host, port: this.config.listen.port } : { fd: inheritedFd }, () => {
        const address = server.address();
        if (address === null || typeof address === 'string') {
          server.close();
          reject(new BadConfigError(`${where} is not a TCP socket`));
          return;
        }
        server.on('error', (error) => this.log.error('listener error', { error: error.message }));
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  /** Serves exactly one connection over the given streams (stdin/stdout under inetd or systemd Accept=yes). */
  /** Resolves with how the connection failed, or undefined when it ended in order. */
  async serveOne(transport: Duplex, peer: string): Promise<NetplumbError | undefined> {
    const live = this.serve(transport, peer);
    await new Promise<void>((resolve) => transport.once('close', () => resolve()));
    await live.session?.done;
    return live.failure ?? live.session?.closeError;
  }

  private accept(socket: Socket): void {
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.stopping) {
      socket.destroy();
      return;
    }
    if (this.live.size >= this.config.limits.maxConnections) {
      this.log.warn('connection refused', { peer, code: ErrorCode.TooManyConnections });
      // Said, so that plumb knows the daemon is busy and may try again shortly.
      SecureConnection.refuse(socket, new TooManyConnectionsError('the daemon serves as many connections as it may; try again later'));
      return;
    }
    const eviction = new AbortController();
    const admission = this.admission.admit(socket.remoteAddress ?? '', (why) => eviction.abort(errorFor(why.code, why.reason)));
    if ('refused' in admission) {
      // A source serving a penalty gets nothing, not even a word.
      this.log.warn('connection refused', { peer, code: admission.refused.code, reason: admission.refused.reason });
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    this.serve(socket, peer, { pending: admission.admitted, eviction: eviction.signal });
  }

  /**
   * Runs the handshake and then the session of one connection. A connection accepted from the network is in the
   * admission pool until it authenticates: its progress is reported there, and it may be evicted meanwhile.
   */
  private serve(transport: Duplex, peer: string, admitted?: { pending: PendingConnection; eviction: AbortSignal }): LiveConnection {
    const live: LiveConnection = { transport, session: undefined, connection: undefined, failure: undefined };
    this.live.add(live);
    transport.once('close', () => {
      this.live.delete(live);
    });
    transport.on('error', () => undefined);
    const log = this.log.child({ peer });
    /** Set when the client authenticated with a one-time key, which the handshake has spent. */
    let oneTime: OneTimeKeyRecord | undefined;
    /** Set when the client authenticated with a key minted for one edge of a part held here, now spent. */
    let edgeGrant: EdgeGrant | undefined;
    const trust: ServerTrust = {
      hostKey: this.hostKey,
      authorize: (client: PublicIdentity) => {
        if (this.authorization.clients.find(client) !== undefined) return;
        try {
          edgeGrant = this.parts.spend(client);
          if (edgeGrant !== undefined) return;
          oneTime = this.oneTimeKeys.spend(client);
        } catch (error) {
          const failure = asNetplumbError(error);
          log.warn('one-time key refused', { key: client.fingerprint, reason: failure.message });
          throw new NotAuthorizedError(error instanceof KeyUsedUpError ? error.message : 'not authorized');
        }
        if (oneTime === undefined) {
          log.warn('client not authorized', { fingerprint: client.fingerprint });
          throw new NotAuthorizedError('not authorized');
        }
      },
    };
    const handshakeProgress = (step: HandshakeStep): void => {
      admitted?.pending.advance(step === 'first-bytes' ? HandshakeStage.Greeting : HandshakeStage.Exchanging);
    };
    const abortHandshake = admitted === undefined ? {} : { abortHandshake: admitted.eviction };
    const reportIllegalMove = (machine: string, from: string, to: string): void => void log.error('illegal state change refused', { machine, from, to });
    SecureConnection.accept(transport, trust, { limits: this.config.limits, handshakeProgress, reportIllegalMove, ...abortHandshake }).then(
      (connection) => {
        admitted?.pending.settle('authenticated');
        live.connection = connection;
        const clientLog = log.child({ client: connection.peer.peer.fingerprint });
        clientLog.info('client authenticated', { cipher: connection.peer.cipher });
        if (edgeGrant !== undefined) {
          clientLog.info('edge key used', { key: edgeGrant.fingerprint, run: edgeGrant.run, edge: edgeGrant.edge });
          this.runSession(live, connection, new Session(clientLog, new SessionLauncher(clientLog, {
            killGraceMs: this.config.killGraceMs,
            spoolDir: this.config.spoolDir,
            acceptEnv: [],
            accounts: { allowed: [], configured: this.runAs },
            edge: { grant: edgeGrant, registry: this.parts },
          })));
          return;
        }
        // A one-time key acts for its controller: the controller's line and gluepot as they are now.
        const client = oneTime === undefined ? this.authorization.clients.find(connection.peer.peer) : this.authorization.clients.findByFingerprint(oneTime.controller);
        // Fail closed: a client (or a key's controller) a reload removed gets nothing, never an unrestricted session.
        const refuse = (why: string, details: Record<string, unknown> = {}): void => {
          clientLog.warn(why, details);
          connection.fail(new NotAuthorizedError('not authorized'), true);
        };
        if (client === undefined || (oneTime !== undefined && client.options.get('controller') !== true)) {
          if (oneTime === undefined) refuse('client no longer authorized after a reload');
          else refuse('the controller of this one-time key is no longer authorized', { key: oneTime.fingerprint, controller: oneTime.controller });
          return;
        }
        // The key's account must still be one its controller may use: a key grants nothing its controller lost.
        if (oneTime !== undefined && !this.accountAllowed(oneTime.binding.user, client)) {
          refuse('the controller of this one-time key may no longer run commands as its account', { key: oneTime.fingerprint, controller: oneTime.controller, user: oneTime.binding.user });
          return;
        }
        if (oneTime !== undefined) {
          clientLog.info('one-time key used', { key: oneTime.fingerprint, node: connection.peer.peer.fingerprint, controller: oneTime.controller, user: oneTime.binding.user });
        }
        const gluepot = this.gluepotOf(client.identity);
        const session = new Session(clientLog, new SessionLauncher(clientLog, {
          killGraceMs: this.config.killGraceMs,
          spoolDir: this.config.spoolDir,
          acceptEnv: this.config.acceptEnv,
          ...(gluepot === undefined ? {} : { gluepot }),
          ...(oneTime === undefined
            ? { accounts: { allowed: allowedUsers(client), configured: this.runAs } }
            : { accounts: { allowed: [oneTime.binding.user], configured: oneTime.binding.user }, binding: oneTime.binding }),
          ...(oneTime === undefined && client.options.get('controller') === true
            ? { mint: this.minter(client, clientLog), parts: { registry: this.parts, hostKey: this.hostKey.publicIdentity, limits: this.config.limits, connectTimeoutMs: EDGE_CONNECT_TIMEOUT_MS } }
            : {}),
        }));
        this.runSession(live, connection, session);
      },
      (error: unknown) => {
        admitted?.pending.settle('failed');
        const failure = asNetplumbError(error);
        live.failure = failure;
        // A client that refused this daemon's host key says so (NP_HOST_KEY_UNKNOWN or _CHANGED): its operator may
        // have a key to hand out, or a client to warn of a changed one.
        const keyRefused = failure.code === ErrorCode.HostKeyUnknown || failure.code === ErrorCode.HostKeyChanged;
        log.warn(keyRefused ? 'client refused the host key' : 'handshake failed', { code: failure.code, reason: failure.message });
      },
    );
    return live;
  }

  /**
   * Stops accepting; sessions may finish within shutdownGraceMs; then their process groups are ended and the
   * connections still open are closed with NP_SHUTTING_DOWN. Resolves when nothing is left.
   */
  shutdown(): Promise<void> {
    this.shutdownDone ??= this.stop();
    return this.shutdownDone;
  }

  private async stop(): Promise<void> {
    this.stopping = true;
    this.log.info('shutting down', { connections: this.live.size, graceMs: this.config.shutdownGraceMs });
    const closed = new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
    if (!(await this.sessionsIdle(this.config.shutdownGraceMs))) {
      for (const live of this.live) if (live.session?.running === true) live.session.endProcessGroup('daemon shutting down');
      await this.sessionsIdle(this.config.killGraceMs + 1000);
    }
    const sessions = [...this.live].map((live) => live.session?.done);
    for (const live of this.live) {
      if (live.connection === undefined) live.transport.destroy();
      else live.connection.fail(new ShuttingDownError('daemon shutting down'), true);
    }
    await Promise.all(sessions);
    await closed;
    this.log.info('stopped');
  }

  /**
   * Waits until no session has a running command, nor an ended one whose client has not yet closed the connection
   * (its Goodbye), for at most limitMs; says whether that happened. An ended command's client may not have read its
   * Exit yet, and out-FIFO rounds may still follow Exit: closing the connection before the Goodbye cuts both short.
   */
  private async sessionsIdle(limitMs: number): Promise<boolean> {
    const deadline = Date.now() + limitMs;
    for (;;) {
      if ([...this.live].every((live) => live.session?.running !== true && live.session?.exitSent !== true)) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
