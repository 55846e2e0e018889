// The writing end of an edge of a recipe across machines (PROTOCOL.md 7.8), as a connection to the reading daemon:
// it accepts only the host key the controller verified, authenticates with the one-time key minted for that edge,
// opens the edge's stream and sends Start kind=edge. Once the reader has delivered every byte it says so with an
// Exit, and the connection is closed. The writing daemon dials it on the controller's EdgeConnect; plumb dials it
// itself for an edge it relays (-relay) because the writer cannot reach the reader.

import { PacedTransport } from '../bridges/paced-transport.js';
import { openSocket } from '../bridges/tcp-connect.js';
import { SecureConnection } from '../protocol/connection.js';
import { ConnectionLostError, errorFor, HostKeyChangedError, isErrorCode, KeyFormatError, UnexpectedPacketError, type NetplumbError } from '../protocol/errors.js';
import type { FieldList } from '../protocol/fields.js';
import { parsePrivateKeyPem, parsePublicKeyLine, sameIdentity, type PrivateIdentity, type PublicIdentity } from '../protocol/keys.js';
import type { ResolvedLimits } from '../protocol/limits.js';
import { encodeEdgeDigest, encodeEdgeRequest, type DirectEdgeRoute, type EdgeDigest } from '../protocol/multi-host.js';
import { Mux, type MuxStream, type SessionHandler } from '../protocol/mux.js';
import { decodeStartReply } from '../protocol/session.js';
import { Field, PacketType, StartKind, StartStatus } from '../protocol/wire.js';

/** How long the reading daemon has to answer the edge's Start once the handshake is through. */
const EDGE_START_TIMEOUT_MS = 10_000;

/** The sending end of an edge: where its bytes go, and how the writer's digest and the end reach the reader. */
export interface EdgeLink {
  /** Where the edge's bytes go. */
  stream: MuxStream;
  /** Sends the writer's count and digest, after the last byte and before the stream's EOF. */
  sendDigest(digest: EdgeDigest): void;
  /** Ends the connection once the reader has said it delivered everything (or has gone). */
  finish(): void;
  /** Ends the connection at once. */
  close(): void;
}

export interface EdgeDialOptions {
  limits: ResolvedLimits;
  connectTimeoutMs: number;
}

function keysOf(request: DirectEdgeRoute): { identity: PrivateIdentity; hostKey: PublicIdentity } {
  try {
    return { identity: parsePrivateKeyPem(request.key, 'netplumb edge key'), hostKey: parsePublicKeyLine(request.hostKey) };
  } catch (error) {
    throw new KeyFormatError(`the edge's key or host key cannot be used: ${(error as Error).message}`, { cause: error });
  }
}

/** Connects edge `request.edge` of run `run` to its reading daemon; resolves once the reader has accepted it. */
export async function dialEdge(run: string, request: DirectEdgeRoute & { edge: number }, options: EdgeDialOptions): Promise<EdgeLink> {
  const { identity, hostKey } = keysOf(request);
  const where = `${request.host} port ${request.port}`;
  const socket = await openSocket({ host: request.host, port: request.port }, options.connectTimeoutMs);
  const verifyHostKey = (presented: PublicIdentity): void => {
    if (!sameIdentity(presented, hostKey)) {
      throw new HostKeyChangedError(`the daemon at ${where} presents ${presented.fingerprint}, not ${hostKey.fingerprint} as the controller verified`);
    }
  };
  // plumb's -limit-rate holds this connection too: it is one a backup's bytes cross, though not through plumb.
  const transport = request.limitRate === undefined ? socket : new PacedTransport(socket, request.limitRate);
  const connection = await SecureConnection.connect(transport, { identity, verifyHostKey }, { limits: options.limits });
  let answered: (error: NetplumbError | undefined) => void = () => undefined;
  const answer = new Promise<NetplumbError | undefined>((resolve) => (answered = resolve));
  let delivered = false;
  let finishing = false;
  const handler: SessionHandler = {
    packet(type: PacketType, fields: FieldList) {
      if (type === PacketType.Start) {
        const reply = decodeStartReply(fields, isErrorCode);
        if (reply.status === StartStatus.Refused) answered(errorFor(reply.code, `the daemon at ${where} refused edge ${request.edge}: ${reply.message}`));
        else answered(reply.status === StartStatus.Started ? undefined : new UnexpectedPacketError(`the daemon at ${where} answered edge ${request.edge} with ${reply.status}`));
        return;
      }
      if (type === PacketType.Exit) {
        delivered = true;
        if (finishing) void connection.close();
        return;
      }
      throw new UnexpectedPacketError(`packet type ${type} not expected on an edge's connection`);
    },
    streamOpened(stream: MuxStream) {
      stream.destroy();
    },
    closed(error) {
      answered(error ?? new ConnectionLostError(`the daemon at ${where} closed edge ${request.edge}`));
    },
  };
  const mux = new Mux(
    connection,
    { side: 'client', maxStreams: 4, initialWindowBytes: options.limits.initialWindowBytes, maxWindowBytes: options.limits.maxWindowBytes, maxDataPayloadBytes: options.limits.maxDataPayloadBytes },
    handler,
  );
  connection.attach(mux);
  const stream = mux.openStream([[Field.purpose, 'edge']]);
  stream.on('error', () => undefined);
  // The reader never writes on the edge's stream; whatever it says ends it.
  stream.resume();
  connection.sendFields(PacketType.Start, encodeEdgeRequest({ kind: StartKind.Edge, run, edge: request.edge, stdin: stream.id }));
  const timer = setTimeout(() => answered(new ConnectionLostError(`the daemon at ${where} did not answer edge ${request.edge} within ${EDGE_START_TIMEOUT_MS} ms`)), EDGE_START_TIMEOUT_MS);
  const refusal = await answer;
  clearTimeout(timer);
  if (refusal !== undefined) {
    connection.fail(refusal);
    throw refusal;
  }
  return {
    stream,
    sendDigest: (digest) => connection.sendFields(PacketType.EdgeDigest, encodeEdgeDigest(digest)),
    finish: () => {
      finishing = true;
      if (delivered) void connection.close();
    },
    close: () => void connection.close(),
  };
}
