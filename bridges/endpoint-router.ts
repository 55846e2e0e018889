// One end's share of a session's replicated named pipes and sockets, the same at both ends with the roles mirrored:
// each round of a FIFO read here and each connection accepted here opens a stream to the peer; each stream the
// peer opens is written into a FIFO here or connected to a socket here. Endpoints are numbered in the order added.

import type { Duplex } from 'node:stream';
import type { FieldList } from '../protocol/fields.js';
import type { Mux } from '../protocol/mux.js';
import { Field, StreamPurpose } from '../protocol/wire.js';
import type { PathCheck } from './checked-open.js';
import { FifoSource, openFifo, type FifoOpener, type FifoSink, type FifoSourceState } from './fifo.js';
import type { IllegalMoveReporter } from '../protocol/state-machine.js';
import { OWN_IDENTITY, type CommandIdentity } from './identity.js';
import { SOCKET_DRAIN_MS, SocketListener } from './unix-socket.js';
import { EndpointError } from '../protocol/errors.js';

/** The purposes of the streams one end opens and takes; the other end's are the same, swapped. */
export interface EndpointRoles {
  /** A round of a FIFO read here, on its way into the peer's FIFO of the same number. */
  readsFifo: StreamPurpose;
  /** A connection accepted on a socket here, on its way to the peer's service of the same number. */
  listens: StreamPurpose;
  /** A round the peer read, written here into a FIFO. */
  writesFifo: StreamPurpose;
  /** A connection the peer accepted, joined here to a service's socket. */
  connects: StreamPurpose;
}

export const DAEMON_ROLES: Readonly<EndpointRoles> = Object.freeze({
  readsFifo: StreamPurpose.OutFifo,
  listens: StreamPurpose.ListenSocket,
  writesFifo: StreamPurpose.InFifo,
  connects: StreamPurpose.ConnectSocket,
});

export const CLIENT_ROLES: Readonly<EndpointRoles> = Object.freeze({
  readsFifo: StreamPurpose.InFifo,
  listens: StreamPurpose.ConnectSocket,
  writesFifo: StreamPurpose.OutFifo,
  connects: StreamPurpose.ListenSocket,
});

/** Where a stream for a connecting endpoint goes: each end decides with whose rights and through which check. */
export type SocketConnector = (stream: Duplex) => void;

/** The part of the mux the router needs: opening a stream that carries its purpose and endpoint number. */
export type StreamOpener = Pick<Mux, 'openStream'>;

export class EndpointRouter {
  private readonly sources: FifoSource[] = [];
  private readonly sinks: FifoSink[] = [];
  private readonly connectors: SocketConnector[] = [];
  private readonly listeners: SocketListener[] = [];

  constructor(private readonly roles: EndpointRoles) {}

  /** The next FIFO the peer's rounds are written into. */
  addSink(sink: FifoSink): void {
    this.sinks.push(sink);
  }

  /** The next socket the peer's connections are joined to. */
  addConnector(connect: SocketConnector): void {
    this.connectors.push(connect);
  }

  /** Starts reading the next FIFO here: every round opens a stream to the peer. */
  readFifo(path: string, mux: StreamOpener, failed: (error: EndpointError) => void, open: FifoOpener = openFifo, reportIllegalMove?: IllegalMoveReporter<FifoSourceState>): void {
    const endpoint = String(this.sources.length);
    const source = new FifoSource(
      path,
      (round) => mux.openStream([[Field.purpose, this.roles.readsFifo], [Field.endpoint, endpoint], [Field.round, String(round)]]),
      failed,
      open,
      reportIllegalMove,
    );
    this.sources.push(source);
    source.start();
  }

  /** Listens on the next socket here: every connection opens a stream to the peer. Resolves once it accepts. */
  async listen(path: string, mux: StreamOpener, identity: CommandIdentity = OWN_IDENTITY, check?: PathCheck): Promise<void> {
    const endpoint = String(this.listeners.length);
    const listener = new SocketListener(path, () => mux.openStream([[Field.purpose, this.roles.listens], [Field.endpoint, endpoint]]));
    this.listeners.push(listener);
    await listener.listen(identity, check);
  }

  /**
   * Takes a stream the peer opened; false when its purpose is not an endpoint's. A number no endpoint has drops the
   * stream (it is still ours to answer for); a stopped FIFO drops it too.
   */
  route(stream: Duplex, fields: FieldList): boolean {
    const purpose = fields.optional(Field.purpose);
    if (purpose !== this.roles.writesFifo && purpose !== this.roles.connects) return false;
    const index = fields.requireInt(Field.endpoint, 0, 1 << 20);
    if (purpose === this.roles.writesFifo) {
      const sink = this.sinks[index];
      if (sink === undefined) stream.destroy();
      else sink.add(stream);
    } else {
      const connect = this.connectors[index];
      if (connect === undefined) stream.destroy();
      else connect(stream);
    }
    return true;
  }

  /** Resolves once every FIFO read here has sent its last round (a writer still holding it ends its round first). */
  async readsFinished(): Promise<void> {
    await Promise.all(this.sources.map((source) => source.finish()));
  }

  /** Resolves once every round received so far has been taken by a reader of its FIFO here. */
  async writesDelivered(): Promise<void> {
    await Promise.all(this.sinks.map((sink) => sink.idle()));
  }

  /** Resolves once the connections accepted here have ended, or SOCKET_DRAIN_MS passed. */
  async connectionsDrained(): Promise<void> {
    await Promise.all(this.listeners.map((listener) => listener.drained(SOCKET_DRAIN_MS)));
  }

  /** Stops every bridge and drops their streams; removing the FIFOs an end made is that end's business. */
  close(): void {
    for (const source of this.sources) source.stop();
    for (const sink of this.sinks) sink.stop();
    for (const listener of this.listeners) listener.close();
  }
}
