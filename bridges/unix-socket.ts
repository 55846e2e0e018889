// Unix-domain sockets replicated over mux streams, the same way at both ends. SocketListener listens on a path and
// sends every connection made to it as its own stream; connectStream() joins such a stream to a new connection to
// the service's socket at the other end. Half-close travels both ways (a socket's end() is the stream's EOF and the
// reverse); a close or failure on either side drops the other.

import { lstatSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { EndpointError, NetplumbError } from '../protocol/errors.js';
import { holdDirectory, reasonFor, type HeldDirectory, type PathCheck } from './checked-open.js';
import { OWN_IDENTITY, type CommandIdentity } from './identity.js';

/** Longest socket path Linux takes (sun_path is 108 bytes with the NUL); Node would cut a longer one silently. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** How long the end of a command waits for its forwarded socket connections to finish by themselves. */
export const SOCKET_DRAIN_MS = 2000;

/** Mode of the socket files a listener creates: only the owner may connect. */
export const SOCKET_FILE_MODE = 0o600;

/** Refuses a path the kernel would truncate. */
export function checkSocketPath(path: string): void {
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new EndpointError(`socket path ${path} is ${bytes} bytes, longer than the ${MAX_SOCKET_PATH_BYTES} a Unix socket allows`);
  }
}

/**
 * Clears the way for a listener: nothing there is fine; a socket file nobody listens on (left by a killed process)
 * is removed; a live socket or any other file is refused.
 */
async function removeStaleSocket(path: string, identity: CommandIdentity): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new EndpointError(`cannot use ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (!isSocket) throw new EndpointError(`${path} exists and is not a socket`);
  let probeError: NodeJS.ErrnoException | undefined;
  const live = await new Promise<boolean>((resolve) => {
    // connect(2) happens here, synchronously: with the rights of whoever will listen.
    const probe = identity.asUser(() => connect(path));
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (error: NodeJS.ErrnoException) => {
      probeError = error;
      resolve(error.code !== 'ECONNREFUSED');
    });
  });
  // Only a refused connection proves the file stale; a busy service (EAGAIN) is alive.
  if (probeError?.code === 'EACCES') throw new EndpointError(`cannot use ${path}: permission denied`);
  if (live) throw new EndpointError(`${path} is in use: another process listens on it`);
  try {
    identity.asUser(() => unlinkSync(path));
  } catch (error) {
    throw new EndpointError(`cannot remove the stale socket ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Joins a local socket and a stream both ways, keeping half-closes apart; resolves when both are done. */
export function joinSocketAndStream(socket: Socket, stream: Duplex): Promise<void> {
  return new Promise((resolve) => {
    let closed = 0;
    const oneClosed = (): void => {
      if (++closed === 2) resolve();
    };
    socket.on('error', () => stream.destroy());
    stream.on('error', () => socket.destroy());
    socket.on('close', () => {
      // A socket that closed without its stream having ended both ways was cut off: drop the stream too.
      if (!stream.writableEnded || !stream.readableEnded) stream.destroy();
      oneClosed();
    });
    stream.on('close', () => {
      if (!socket.writableEnded || !socket.readableEnded) socket.destroy();
      oneClosed();
    });
    socket.pipe(stream);
    stream.pipe(socket);
  });
}

/** Listens on a Unix socket path; every accepted connection goes to the far side as a new stream. */
export class SocketListener {
  private server: Server | undefined;
  private readonly connections = new Set<Socket>();
  /**
   * The directory the socket file was made in, held until the server is closed: the server listens by a name that
   * goes through it, and so closing it (libuv unlinks the file by that name) removes the file from that directory,
   * wherever its path leads by then.
   */
  private directory: HeldDirectory | undefined;
  private identity: CommandIdentity = OWN_IDENTITY;

  constructor(
    readonly path: string,
    private readonly openStream: () => Duplex,
  ) {}

  /**
   * Creates the socket file (mode 0600, stale file removed first); resolves once it accepts connections. The
   * bind(2) runs inside `identity.asUser`, so the file belongs to the account the command runs as, in the directory
   * `check` saw (its real path) at that moment.
   */
  async listen(identity: CommandIdentity = OWN_IDENTITY, check?: PathCheck): Promise<void> {
    checkSocketPath(this.path);
    this.identity = identity;
    await removeStaleSocket(this.path, identity);
    const server = createServer({ allowHalfOpen: true }, (socket) => this.accepted(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const pinned = (): string => this.directory?.pinned ?? this.path;
      server.once('error', (error) => {
        const message = error.message.replace(pinned(), this.path);
        this.directory?.release();
        this.directory = undefined;
        reject(new EndpointError(`cannot listen on ${this.path}: ${message}`, { cause: error }));
      });
      // The umask decides the socket file's mode at bind(): set it around listen so the file is never more open.
      const previous = process.umask(0o777 & ~SOCKET_FILE_MODE);
      try {
        identity.asUser(() => {
          this.directory = holdDirectory(this.path, check);
          server.listen(this.directory.pinned, () => resolve());
        });
      } catch (error) {
        reject(error instanceof NetplumbError ? error : new EndpointError(`cannot listen on ${this.path}: ${reasonFor(error, this.path)}`, { cause: error }));
      } finally {
        process.umask(previous);
      }
    });

    // Accept failures (EMFILE) come as 'error' from now on: logged by dropping them, never an unhandled crash.
    server.on('error', () => undefined);
  }

  /**
   * Resolves once every forwarded connection has ended by itself, or after timeoutMs: what a command sent just
   * before it exited is still delivered before close() cuts the rest.
   */
  async drained(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  /**
   * Stops listening, drops every forwarded connection and removes the socket file it created: libuv unlinks it as
   * the server closes, by the name that goes through the directory held, and with the listener's rights.
   */
  close(): void {
    this.identity.asUser(() => this.server?.close());
    this.server = undefined;
    this.directory?.release();
    this.directory = undefined;
    for (const socket of this.connections) socket.destroy();
    this.connections.clear();
  }

  private accepted(socket: Socket): void {
    this.connections.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => this.connections.delete(socket));
    let stream: Duplex;
    try {
      stream = this.openStream();
    } catch {
      // No more streams on this connection (the limit): refuse this one connection only.
      socket.destroy();
      return;
    }
    void joinSocketAndStream(socket, stream);
  }
}

/**
 * Connects a stream from the far side to the service listening on path; a service that is not there drops it.
 * Errors name `shownPath`: the path as the user gave it, when `path` is another name for it.
 */
export function connectStream(path: string, stream: Duplex, onError: (error: EndpointError) => void, shownPath = path): void {
  stream.on('error', () => undefined);
  const socket = connect({ path, allowHalfOpen: true });
  let connected = false;
  // Nothing goes to the service before it accepted; the stream's bytes wait in its window meanwhile.
  socket.once('connect', () => {
    connected = true;
    // The far end may have dropped the stream while the service was accepting.
    if (stream.destroyed) socket.destroy();
    else void joinSocketAndStream(socket, stream);
  });
  stream.once('close', () => {
    if (!connected) socket.destroy();
  });
  socket.once('error', (error) => {
    if (connected) return;
    stream.destroy();
    onError(new EndpointError(`cannot connect to ${shownPath}: ${error.message.replace(path, shownPath)}`, { cause: error }));
  });
}
