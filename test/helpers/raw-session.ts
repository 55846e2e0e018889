// An authenticated connection to a real daemon that sends what a test wants, packet by packet: the project's own
// handshake and mux, with none of plumb's manners. For hostile-client tests (stream churn, limits, bad requests).

import { connectToDaemon } from '../../plumb-cli/client.js';
import { SecureConnection } from '../../protocol/connection.js';
import { ConnectionLostError, type NetplumbError } from '../../protocol/errors.js';
import type { FieldList } from '../../protocol/fields.js';
import { loadPrivateIdentity } from '../../bridges/key-files.js';
import { Mux, type MuxStream, type SessionHandler } from '../../protocol/mux.js';
import { DEFAULT_LIMITS, type PacketType } from '../../protocol/wire.js';
import { type Netplumb } from './daemon.js';
import { onCleanup, type Scope } from './scope.js';

export interface RawSession {
  connection: SecureConnection;
  mux: Mux;
  /** Session packets from the daemon (Start replies, Exit, ...), in order of arrival. */
  packets: { type: PacketType; fields: FieldList }[];
  /** Streams the daemon opened, with their StreamOpen fields, in order; each is read and its bytes kept. */
  opened: { stream: MuxStream; fields: FieldList; bytes: () => Buffer }[];
  /** Settles when the connection is gone: with its error, or undefined after an orderly close. */
  closed: Promise<NetplumbError | undefined>;
  /** Resolves with the first packet of that type from now on (or already received after `since`). */
  nextPacket(type: PacketType, timeoutMs?: number): Promise<FieldList>;
  /** Waits until the transport can take more, so a loop of sends does not buffer without bound here. */
  writable(): Promise<void>;
}

/** Connects to the fixture's daemon as its authorized client (the host key pinned on first use). */
export async function openRawSession(scope: Scope, np: Netplumb, identityFile = np.client.privateFile): Promise<RawSession> {
  const connection = await connectToDaemon(
    { name: '127.0.0.1', host: '127.0.0.1', port: np.daemon.port },
    {
      identity: loadPrivateIdentity(identityFile),
      knownHostsFile: `${np.home}/raw-session-known-hosts`,
      acceptNew: true,
      connectTimeoutMs: 10_000,
      note: () => undefined,
    },
  );
  const packets: { type: PacketType; fields: FieldList }[] = [];
  const opened: RawSession['opened'] = [];
  const waiters: { type: PacketType; from: number; resolve: (fields: FieldList) => void }[] = [];
  let settleClosed: (error: NetplumbError | undefined) => void = () => undefined;
  const closed = new Promise<NetplumbError | undefined>((resolve) => (settleClosed = resolve));
  const handler: SessionHandler = {
    packet(type, fields) {
      packets.push({ type, fields });
      for (const waiter of [...waiters]) {
        if (waiter.type !== type) continue;
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(fields);
      }
    },
    streamOpened(stream: MuxStream, fields: FieldList) {
      stream.on('error', () => undefined);
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      opened.push({ stream, fields, bytes: () => Buffer.concat(chunks) });
    },
    closed: (error) => settleClosed(error),
  };
  const mux = new Mux(
    connection,
    {
      side: 'client',
      maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
      initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
      maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
    },
    handler,
  );
  connection.attach(mux);
  onCleanup(scope, () => connection.fail(new ConnectionLostError('test over')));
  return {
    connection,
    mux,
    packets,
    opened,
    closed,
    nextPacket(type, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no packet of type ${type} within ${timeoutMs} ms`)), timeoutMs);
        const waiter = {
          type,
          from: packets.length,
          resolve: (fields: FieldList) => {
            clearTimeout(timer);
            resolve(fields);
          },
        };
        waiters.push(waiter);
        void closed.then((error) => {
          if (!waiters.includes(waiter)) return;
          clearTimeout(timer);
          reject(new Error(`connection closed (${error?.code ?? 'in order'}) before a packet of type ${type}`));
        });
      });
    },
    async writable() {
      // The transport drains while the event loop turns; a closed connection takes nothing and waits for nothing.
      while (connection.isOpen && !connection.writable) await new Promise((resolve) => setImmediate(resolve));
    },
  };
}
