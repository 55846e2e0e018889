// The driver's side of a session, speaking TAP1 itself as plumb would: an authenticated connection with a Mux,
// a Start whose streams the caller reads only as it chooses, and an orderly close that gives up after a timeout.

import { connect as tcpConnect, type Socket } from 'node:net';
import { SecureConnection } from '../../protocol/connection.js';
import { isErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { encodeFields, type FieldList } from '../../protocol/fields.js';
import { sameIdentity } from '../../protocol/keys.js';
import { Mux, type MuxStream, type SessionHandler } from '../../protocol/mux.js';
import { decodeExit, decodeStartReply, encodeStartRequest, NO_ENDPOINTS, type ExitStatus, type StartReply } from '../../protocol/session.js';
import { DEFAULT_LIMITS, Field, PacketType, StartKind } from '../../protocol/wire.js';
import type { Fixture } from './daemon.js';
import { within } from './proc.js';

/** What the driver's sessions hear from the daemon: the Start reply, the Exit, and how the connection ended. */
export class DriverSession implements SessionHandler {
  readonly startReply: Promise<StartReply>;
  readonly exit: Promise<ExitStatus>;
  readonly ended: Promise<NetplumbError | undefined>;
  endedWith: NetplumbError | undefined;
  isEnded = false;
  private resolveStart: (reply: StartReply) => void = () => undefined;
  private resolveExit: (status: ExitStatus) => void = () => undefined;
  private resolveEnded: (error: NetplumbError | undefined) => void = () => undefined;

  constructor() {
    this.startReply = new Promise((resolve) => (this.resolveStart = resolve));
    this.exit = new Promise((resolve) => (this.resolveExit = resolve));
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  packet(type: PacketType, fields: FieldList): void {
    if (type === PacketType.Start) this.resolveStart(decodeStartReply(fields, isErrorCode));
    else if (type === PacketType.Exit) this.resolveExit(decodeExit(fields));
  }

  streamOpened(stream: MuxStream): void {
    stream.destroy();
  }

  closed(error: NetplumbError | undefined): void {
    this.isEnded = true;
    this.endedWith = error;
    this.resolveEnded(error);
  }
}

export interface DriverClient {
  socket: Socket;
  connection: SecureConnection;
  mux: Mux;
  session: DriverSession;
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port, noDelay: true });
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** An authenticated connection with a Mux attached, as plumb makes one, and nothing started on it. */
export async function connectClient(fixture: Fixture, port: number): Promise<DriverClient> {
  const socket = await openSocket(port);
  const connection = await SecureConnection.connect(socket, {
    identity: fixture.identity,
    verifyHostKey: (hostKey) => {
      if (!sameIdentity(hostKey, fixture.hostPublic)) throw new Error(`unexpected host key ${hostKey.fingerprint}`);
    },
  });
  const session = new DriverSession();
  const mux = new Mux(
    connection,
    {
      side: 'client',
      maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
      initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
      maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
    },
    session,
  );
  connection.attach(mux);
  return { socket, connection, mux, session };
}

/** Opens stdin, stdout and stderr as plumb does and sends Start for argv; the streams are the caller's. */
export function startCommand(client: DriverClient, argv: string[]): { stdin: MuxStream; stdout: MuxStream; stderr: MuxStream } {
  const stdin = client.mux.openStream([[Field.purpose, 'stdin']]);
  const stdout = client.mux.openStream([[Field.purpose, 'stdout']]);
  const stderr = client.mux.openStream([[Field.purpose, 'stderr']]);
  for (const stream of [stdin, stdout, stderr]) stream.on('error', () => undefined);
  const request = encodeStartRequest({ kind: StartKind.Exec, argv, env: [], endpoints: NO_ENDPOINTS, stdin: stdin.id, stdout: stdout.id, stderr: stderr.id });
  client.connection.send(PacketType.Start, encodeFields(request));
  // The driver never writes to the command and only reads what it chooses to.
  stdin.end();
  stdout.end();
  stderr.end();
  return { stdin, stdout, stderr };
}

/** Closes with Goodbye and waits until the daemon has ended the connection too (or timeoutMs has passed). */
export async function closeClient(client: DriverClient, timeoutMs: number): Promise<boolean> {
  if (client.session.isEnded) return true;
  void client.connection.close();
  const ended = await within(client.session.ended.then(() => true), timeoutMs, false);
  if (!ended) client.socket.destroy();
  return ended;
}
