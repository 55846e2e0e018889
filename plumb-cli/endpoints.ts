// plumb's end of the replicated named pipes and sockets: parses -infifo, -outfifo, -socket and -local-socket,
// makes the local FIFOs (removing only those it made), and joins each round or connection to a stream once the
// remote command runs. plumb exits only after every round of an -outfifo has been taken by a local reader.

import { removeMadeFile, type MadeFile } from '../bridges/checked-open.js';
import { CLIENT_ROLES, EndpointRouter } from '../bridges/endpoint-router.js';
import { ensureFifo, FifoSink } from '../bridges/fifo.js';
import { checkSocketPath, connectStream } from '../bridges/unix-socket.js';
import { EndpointError, UsageError } from '../protocol/errors.js';
import type { FieldList } from '../protocol/fields.js';
import type { Mux, MuxStream } from '../protocol/mux.js';
import type { Endpoints } from '../protocol/session.js';

/** One replicated socket: the path on the daemon's host and the one here. */
export interface SocketPair {
  remote: string;
  local: string;
}

/** What the command line asked to replicate, with local paths as given (relative to plumb's working directory). */
export interface EndpointOptions {
  inFifos: string[];
  outFifos: string[];
  /** -socket: the daemon listens on remote; connections reach the service on local. */
  sockets: SocketPair[];
  /** -local-socket: plumb listens on local; connections reach the service on remote. */
  localSockets: SocketPair[];
}

export const NO_ENDPOINT_OPTIONS: Readonly<EndpointOptions> = Object.freeze({ inFifos: [], outFifos: [], sockets: [], localSockets: [] });

/** The options of all of `parts` together, in order, as a new object (none: a new empty one). */
export function joinEndpointOptions(...parts: readonly EndpointOptions[]): EndpointOptions {
  return {
    inFifos: parts.flatMap((part) => part.inFifos),
    outFifos: parts.flatMap((part) => part.outFifos),
    sockets: parts.flatMap((part) => part.sockets),
    localSockets: parts.flatMap((part) => part.localSockets),
  };
}

/**
 * `PATH` (the same path at both ends) or `FIRST:SECOND`. For -socket FIRST is the daemon's path and SECOND the
 * local one; for -local-socket the other way round, as each option names its listening end first.
 */
export function parseSocketOption(value: string, option: 'socket' | 'local-socket'): SocketPair {
  const colon = value.indexOf(':');
  const first = colon < 0 ? value : value.slice(0, colon);
  const second = colon < 0 ? value : value.slice(colon + 1);
  if (first === '' || second === '') throw new UsageError(`-${option}=${value}: expected PATH or PATH:PATH`);
  return option === 'socket' ? { remote: first, local: second } : { local: first, remote: second };
}

/** The Start request's part: paths on the daemon's host. */
export function remoteEndpoints(options: EndpointOptions): Endpoints {
  return {
    inFifos: [...options.inFifos],
    outFifos: [...options.outFifos],
    listenSockets: options.sockets.map((pair) => pair.remote),
    connectSockets: options.localSockets.map((pair) => pair.remote),
  };
}

export class ClientEndpoints {
  private readonly router = new EndpointRouter(CLIENT_ROLES);
  private readonly createdFifos: MadeFile[] = [];

  private constructor(
    /** What was asked for, local paths as given. */
    readonly options: EndpointOptions,
    private readonly report: (error: EndpointError) => void,
  ) {
    for (const path of options.outFifos) this.router.addSink(new FifoSink(path, (error) => this.failed(error)));
    for (const pair of options.sockets) this.router.addConnector((stream) => connectStream(pair.local, stream, (error) => this.failed(error)));
  }

  /**
   * Makes the local FIFOs that are missing and checks socket paths, before connecting. report() hears of a local
   * FIFO or socket that fails later, while the command runs (once per failure).
   */
  static async prepare(options: EndpointOptions, report: (error: EndpointError) => void): Promise<ClientEndpoints> {
    const self = new ClientEndpoints(options, report);
    try {
      for (const pair of [...options.sockets, ...options.localSockets]) checkSocketPath(pair.local);
      for (const path of [...options.inFifos, ...options.outFifos]) {
        const fifo = await ensureFifo(path);
        if (fifo.created) self.createdFifos.push(fifo.made);
      }
    } catch (error) {
      self.close();
      throw error;
    }
    return self;
  }

  /** The Start request's part: paths on the daemon's host. */
  get remote(): Endpoints {
    return remoteEndpoints(this.options);
  }

  /** Whether streams of these endpoints may still carry bytes after Exit: out-FIFO rounds, -local-socket connections. */
  get outliveExit(): boolean {
    return this.options.outFifos.length > 0 || this.options.localSockets.length > 0;
  }

  /** The remote command runs: read the in-FIFOs and listen on the local sockets. */
  async start(mux: Mux): Promise<void> {
    for (const path of this.options.inFifos) this.router.readFifo(path, mux, (error) => this.failed(error));
    for (const pair of this.options.localSockets) await this.router.listen(pair.local, mux);
  }

  /** Takes a stream the daemon opened; false when it is not one of ours. */
  route(stream: MuxStream, fields: FieldList): boolean {
    return this.router.route(stream, fields);
  }

  /**
   * Resolves once every out-FIFO round received so far has been taken by a local reader, and the connections on
   * -local-socket listeners have ended (or SOCKET_DRAIN_MS passed).
   */
  async delivered(): Promise<void> {
    await Promise.all([this.router.writesDelivered(), this.router.connectionsDrained()]);
  }

  /** Stops every bridge and removes the FIFOs plumb created. */
  close(): void {
    this.router.close();
    for (const fifo of this.createdFifos.splice(0)) removeMadeFile(fifo);
  }

  private failed(error: EndpointError): void {
    this.report(error);
  }
}
