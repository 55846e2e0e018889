// plumb's connection to a daemon: TCP connect, the handshake with this user's identity, and the host-key
// decision against known_hosts (pinned: go on; unknown: refuse unless -accept-new; changed: refuse loudly).

import { SecureConnection, type ConnectionOptions } from '../protocol/connection.js';
import type { Socket } from 'node:net';
import { openSocket } from '../bridges/tcp-connect.js';
import { PacedTransport } from '../bridges/paced-transport.js';
import {
  ErrorCode,
  HostKeyChangedError,
  HostKeyUnknownError,
  RemoteError,
} from '../protocol/errors.js';

export { openSocket } from '../bridges/tcp-connect.js';
import { sameIdentity, type PrivateIdentity, type PublicIdentity } from '../protocol/keys.js';
import { addHostKey, checkHostKey, hostKeyName } from './known-hosts.js';
import type { Target } from './paths.js';

export interface DaemonConnectOptions {
  identity: PrivateIdentity;
  knownHostsFile: string;
  acceptNew: boolean;
  connectTimeoutMs: number;
  /** Says what happens (with -v) and warns about what the user should know (new host key recorded). */
  note: (line: string) => void;
  connection?: ConnectionOptions;
  /** The only host key accepted (a one-time key file names it); known_hosts is then neither read nor written. */
  pinnedHostKey?: PublicIdentity;
  /** -limit-rate: the bytes per second the connection carries at most, each way. */
  bytesPerSecond?: number;
}

/**
 * The host-key decision, as the handshake's verifyHostKey callback. A new key accepted with -accept-new is only
 * recorded by pinAccepted(), once the daemon has proven (by its signature) that it holds the private key.
 */
export function hostKeyVerifier(target: Target, options: Pick<DaemonConnectOptions, 'knownHostsFile' | 'acceptNew' | 'note'>) {
  let accepted: PublicIdentity | undefined;
  const verify = (hostKey: PublicIdentity): void => {
    const name = hostKeyName(target.host, target.port);
    const result = checkHostKey(options.knownHostsFile, target.host, target.port, hostKey);
    for (const warning of result.warnings) options.note(`warning: ${warning}`);
    switch (result.status) {
      case 'match':
        return;
      case 'unknown':
        if (options.acceptNew) {
          accepted = hostKey;
          return;
        }
        throw new HostKeyUnknownError(`host key of ${name} is not known: fingerprint ${hostKey.fingerprint}; ` +
            `check it against the daemon's (ssh-keygen -lf /etc/netplumb/host_key.pub on that host), then run again with -accept-new to record it`,
        );
      case 'changed':
        throw new HostKeyChangedError(`HOST KEY OF ${name} HAS CHANGED: it now presents ${hostKey.fingerprint}, but ${options.knownHostsFile}:${result.line} ` +
            `pins ${result.pinned.fingerprint}. Someone may be intercepting the connection. Not connecting. ` +
            `If the daemon's key was replaced on purpose, remove that line.`,
        );
    }
  };
  const pinAccepted = (): void => {
    if (accepted === undefined) return;
    addHostKey(options.knownHostsFile, target.host, target.port, accepted);
    options.note(`Permanently added ${hostKeyName(target.host, target.port)} (${accepted.fingerprint}) to ${options.knownHostsFile}.`);
  };
  return { verify, pinAccepted };
}

/**
 * How long plumb keeps trying again when the daemon says it is busy (NP_TOO_MANY_CONNECTIONS) before the handshake
 * is through: a daemon makes room in its pool of unauthenticated connections by ending some, and serves at most
 * max-connections; a new attempt a moment later is admitted.
 */
export const HANDSHAKE_RETRY_MS = 2500;
/** The first pause before another attempt; each pause doubles (with jitter), up to the last. */
const HANDSHAKE_RETRY_FIRST_PAUSE_MS = 25;
const HANDSHAKE_RETRY_LAST_PAUSE_MS = 400;

/**
 * Connects and authenticates; the returned connection is open and ready for a Mux. A connection the daemon ends
 * during the handshake saying it is busy (nothing has run: nothing can, before it) is tried again for up to
 * HANDSHAKE_RETRY_MS; any other failure, a refused or silently closed connection included, is final at once.
 */
/** The TCP socket under each connection plumb made, for what it carried (bytes on the wire, framing and all). */
const sockets = new WeakMap<SecureConnection, Socket>();

/** The bytes a connection has sent and received on the wire so far; undefined for one plumb did not make. */
export function wireBytes(connection: SecureConnection): { sent: number; received: number } | undefined {
  const socket = sockets.get(connection);
  return socket === undefined ? undefined : { sent: socket.bytesWritten, received: socket.bytesRead };
}

export async function connectToDaemon(target: Target, options: DaemonConnectOptions): Promise<SecureConnection> {
  const giveUpAt = Date.now() + HANDSHAKE_RETRY_MS;
  for (let pauseMs = HANDSHAKE_RETRY_FIRST_PAUSE_MS; ; pauseMs = Math.min(pauseMs * 2, HANDSHAKE_RETRY_LAST_PAUSE_MS)) {
    try {
      return await connectOnce(target, options);
    } catch (error) {
      const busy = error instanceof RemoteError && error.code === ErrorCode.TooManyConnections;
      const waitMs = pauseMs / 2 + Math.random() * pauseMs;
      if (!busy || Date.now() + waitMs >= giveUpAt) throw error;
      options.note(`the daemon is busy (${error.message}); trying again`);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

async function connectOnce(target: Target, options: DaemonConnectOptions): Promise<SecureConnection> {
  const socket = await openSocket(target, options.connectTimeoutMs);
  options.note(`connected to ${target.host} port ${target.port}`);
  const transport = options.bytesPerSecond === undefined ? socket : new PacedTransport(socket, options.bytesPerSecond);
  const { pinnedHostKey } = options;
  const hostKeys =
    pinnedHostKey === undefined
      ? hostKeyVerifier(target, options)
      : {
          verify: (hostKey: PublicIdentity): void => {
            if (sameIdentity(hostKey, pinnedHostKey)) return;
            throw new HostKeyChangedError(`host key of ${hostKeyName(target.host, target.port)} is ${hostKey.fingerprint}, not ${pinnedHostKey.fingerprint} as the one-time key says. Someone may be intercepting the connection. Not connecting.`,
            );
          },
          pinAccepted: (): void => undefined,
        };
  const connection = await SecureConnection.connect(transport, { identity: options.identity, verifyHostKey: hostKeys.verify }, options.connection ?? {});
  sockets.set(connection, socket);
  hostKeys.pinAccepted();
  options.note(`authenticated; host key ${connection.peer.peer.fingerprint}, cipher ${connection.peer.cipher}`);
  return connection;
}
