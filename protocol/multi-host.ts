// Encoders and decoders of the packets of a recipe that spans machines (PROTOCOL.md section 7.8): a machine's part
// (Start kind=part) and its Go, an edge's Start (kind=edge) from the daemon that writes it, the controller's
// EdgeConnect and RemoteStageEnd, the writer's EdgeDigest and each daemon's EdgeReport, and MintKey kind=edge.
// Decoders validate every field, so each end gets typed values or NP_BAD_REQUEST / NP_BAD_FIELDS.

import { BadRequestError, ErrorCode } from './errors.js';
import type { Entry, FieldList } from './fields.js';
import { replyMessage, type StartCommon } from './session.js';
import {
  EdgeConnectStatus,
  EdgeRoute,
  EdgeStatus,
  Field,
  MAX_EDGE_RATE,
  MAX_HOST_BYTES,
  MAX_ONE_TIME_KEY_SECONDS,
  MAX_PART_MACHINES,
  MAX_SOURCE_NAME_BYTES,
  MAX_STREAM_ID,
  MIN_EDGE_RATE,
  RUN_ID_PATTERN,
  StartKind,
} from './wire.js';

/** The most edges, and stages, one run may name: far above any recipe's command limit. */
const MAX_INDEX = 2 ** 31;
/** The largest count of bytes an edge may report: 2^53 - 1, exact in a JavaScript number. */
const MAX_EDGE_BYTES = Number.MAX_SAFE_INTEGER;
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** A placement as the recipe writes it after `@` (see recipe.peggy), or '' for the commands without one. */
const PLACEMENT = /^(?:(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?)?$/;

function decodeRun(fields: FieldList): string {
  const run = fields.require(Field.run);
  if (!RUN_ID_PATTERN.test(run)) throw new BadRequestError('malformed run id');
  return run;
}

function decodeSha256(fields: FieldList, name: string): string {
  const value = fields.require(name);
  if (!SHA256_HEX.test(value)) throw new BadRequestError(`malformed ${name}`);
  return value;
}

/**
 * One machine's part of a recipe that spans machines. The recipe is the whole text, checked whole by every daemon;
 * `machines` are the placements (as written after `@`, '' for the unplaced commands) whose commands run here.
 * Its streams, env and endpoints are a recipe Start's; `user` likewise.
 */
export interface PartRequest extends StartCommon {
  kind: StartKind.Part;
  run: string;
  source: string;
  text: string;
  machines: string[];
  /** The controller shows progress (plumb -progress): the daemon sends EdgeProgress for the edges it reads. */
  progress?: boolean;
  /** The daemon counts each command's bytes and sends StageBytes (plumb -json). */
  countBytes?: boolean;
}

/** The fields of a part that a recipe Start does not have; the rest are encoded as a recipe Start's. */
export function encodePartFields(request: Pick<PartRequest, 'run' | 'machines' | 'progress'>): Entry[] {
  return [[Field.run, request.run], ...request.machines.map((machine): Entry => [Field.machine, machine]), ...(request.progress === true ? [[Field.progress, '1'] as Entry] : [])];
}

/** The part's own fields: its run and its machines, each placement once. */
export function decodePartFields(fields: FieldList): Pick<PartRequest, 'run' | 'machines' | 'progress'> {
  const run = decodeRun(fields);
  const machines = fields.all(Field.machine);
  if (machines.length === 0) throw new BadRequestError('a part names at least one machine');
  if (machines.length > MAX_PART_MACHINES) throw new BadRequestError(`more than ${MAX_PART_MACHINES} machines in one part`);
  for (const machine of machines) {
    if (!PLACEMENT.test(machine) || Buffer.byteLength(machine) > MAX_HOST_BYTES) throw new BadRequestError('malformed machine');
  }
  if (new Set(machines).size !== machines.length) throw new BadRequestError('a machine named twice in one part');
  const progress = fields.optional(Field.progress);
  if (progress !== undefined && progress !== '1') throw new BadRequestError('malformed progress');
  return { run, machines, ...(progress === '1' ? { progress: true } : {}) };
}

/** The recipe fields of a part (as a recipe Start has them), checked as a recipe Start checks them. */
export function decodeRecipeSource(fields: FieldList): { source: string; text: string; countBytes?: true } {
  const source = fields.require(Field.source);
  if (source === '' || Buffer.byteLength(source) > MAX_SOURCE_NAME_BYTES) throw new BadRequestError('bad recipe source name');
  const count = fields.optional(Field.countBytes);
  if (count !== undefined && count !== '1') throw new BadRequestError('malformed count-bytes');
  return { source, text: fields.require(Field.recipe), ...(count === '1' ? { countBytes: true as const } : {}) };
}

/** The recipe fields of a recipe Start or a part: its source name, its text, and whether to count each command's bytes. */
export function encodeRecipeSource(request: { source: string; text: string; countBytes?: boolean }): Entry[] {
  return [[Field.source, request.source], [Field.recipe, request.text], ...(request.countBytes === true ? [[Field.countBytes, '1'] as Entry] : [])];
}

/** An edge's Start, from its writing daemon on a one-time key bound to exactly this run and edge. */
export interface EdgeRequest {
  kind: StartKind.Edge;
  run: string;
  edge: number;
  /** The stream whose bytes are the edge's, from the writer; opened before the Start. */
  stdin: number;
}

export function encodeEdgeRequest(request: EdgeRequest): Entry[] {
  return [
    [Field.kind, StartKind.Edge],
    [Field.run, request.run],
    [Field.edge, String(request.edge)],
    [Field.stdin, String(request.stdin)],
  ];
}

export function decodeEdgeRequest(fields: FieldList): EdgeRequest {
  if (fields.require(Field.kind) !== StartKind.Edge) throw new BadRequestError('not an edge Start');
  return { kind: StartKind.Edge, run: decodeRun(fields), edge: fields.requireInt(Field.edge, 0, MAX_INDEX), stdin: fields.requireInt(Field.stdin, 1, MAX_STREAM_ID) };
}

/** What a one-time key for an edge is bound to: that edge of that run, nothing else. */
export interface EdgeMintRequest {
  run: string;
  edge: number;
  lifetimeSeconds: number;
}

export function encodeEdgeMintRequest(request: EdgeMintRequest): Entry[] {
  return [
    [Field.kind, StartKind.Edge],
    [Field.run, request.run],
    [Field.edge, String(request.edge)],
    [Field.lifetime, String(request.lifetimeSeconds)],
  ];
}

export function decodeEdgeMintRequest(fields: FieldList): EdgeMintRequest {
  if (fields.require(Field.kind) !== StartKind.Edge) throw new BadRequestError('not an edge MintKey');
  return { run: decodeRun(fields), edge: fields.requireInt(Field.edge, 0, MAX_INDEX), lifetimeSeconds: fields.requireInt(Field.lifetime, 1, MAX_ONE_TIME_KEY_SECONDS) };
}

/** Where the reading daemon of an edge is, how to know it, and the key that lets its writer in. */
export interface DirectEdgeRoute {
  /** The reading daemon's address as the writing daemon reaches it. */
  host: string;
  port: number;
  /** The reading daemon's host key, an OpenSSH public key line: the only one the writer accepts. */
  hostKey: string;
  /** The one-time key's private half, PKCS#8 PEM, as MintKey gave it. */
  key: string;
  /** Bytes per second the edge's connection carries at most, each way (plumb's -limit-rate); absent: no limit. */
  limitRate?: number;
}

/**
 * The controller's word to the daemon that writes an edge: connect to its reader (route direct), or send its bytes
 * and digest to the controller, which relays them (route controller).
 */
export type EdgeConnectRequest = { edge: number } & (({ route: EdgeRoute.Direct } & DirectEdgeRoute) | { route: EdgeRoute.Controller });

export function encodeEdgeConnect(request: EdgeConnectRequest): Entry[] {
  if (request.route === EdgeRoute.Controller) {
    return [
      [Field.edge, String(request.edge)],
      [Field.route, EdgeRoute.Controller],
    ];
  }
  return [
    [Field.edge, String(request.edge)],
    [Field.host, request.host],
    [Field.port, String(request.port)],
    [Field.hostKey, request.hostKey],
    [Field.key, request.key],
    ...(request.limitRate === undefined ? [] : [[Field.limitRate, String(request.limitRate)] as Entry]),
  ];
}

export function decodeEdgeConnect(fields: FieldList): EdgeConnectRequest {
  const edge = fields.requireInt(Field.edge, 0, MAX_INDEX);
  const route = fields.optional(Field.route) ?? EdgeRoute.Direct;
  if (route === EdgeRoute.Controller) {
    // The controller carries the edge: an address or key with it says the sender meant something else.
    if ([Field.host, Field.port, Field.hostKey, Field.key, Field.limitRate].some((name) => fields.optional(name) !== undefined)) {
      throw new BadRequestError('an edge relayed through the controller names no address, key or rate');
    }
    return { edge, route };
  }
  if (route !== EdgeRoute.Direct) throw new BadRequestError(`unknown edge route ${route}`);
  const host = fields.require(Field.host);
  if (host === '' || Buffer.byteLength(host) > MAX_HOST_BYTES || /[\s/]/.test(host)) throw new BadRequestError('malformed host');
  return {
    edge,
    route,
    host,
    port: fields.requireInt(Field.port, 1, 65535),
    hostKey: fields.require(Field.hostKey),
    key: fields.require(Field.key),
    ...(fields.optional(Field.limitRate) === undefined ? {} : { limitRate: fields.requireInt(Field.limitRate, MIN_EDGE_RATE, MAX_EDGE_RATE) }),
  };
}

export type EdgeConnectReply =
  | { edge: number; status: EdgeConnectStatus.Connected }
  | { edge: number; status: EdgeConnectStatus.Refused; code: ErrorCode; message: string };

export function encodeEdgeConnectReply(reply: EdgeConnectReply): Entry[] {
  const entries: Entry[] = [
    [Field.edge, String(reply.edge)],
    [Field.status, reply.status],
  ];
  if (reply.status === EdgeConnectStatus.Refused) entries.push([Field.code, reply.code], [Field.message, replyMessage(reply.message)]);
  return entries;
}

export function decodeEdgeConnectReply(fields: FieldList, isCode: (value: string) => value is ErrorCode): EdgeConnectReply {
  const edge = fields.requireInt(Field.edge, 0, MAX_INDEX);
  const status = fields.require(Field.status);
  if (status === EdgeConnectStatus.Connected) return { edge, status };
  if (status !== EdgeConnectStatus.Refused) throw new BadRequestError(`unknown edge status ${status}`);
  const code = fields.require(Field.code);
  return { edge, status, code: isCode(code) ? code : ErrorCode.Internal, message: fields.require(Field.message) };
}

/** The writer's count and digest of an edge's bytes, sent after the last of them and before the stream's EOF. */
export interface EdgeDigest {
  /** Which edge: said only on a part's connection to its controller (a relayed edge); an edge's own connection has one. */
  edge?: number;
  bytes: number;
  sha256: string;
}

export function encodeEdgeDigest(digest: EdgeDigest): Entry[] {
  return [
    ...(digest.edge === undefined ? [] : [[Field.edge, String(digest.edge)] as Entry]),
    [Field.bytes, String(digest.bytes)],
    [Field.sha256, digest.sha256],
  ];
}

export function decodeEdgeDigest(fields: FieldList): EdgeDigest {
  const edge = fields.optionalInt(Field.edge, 0, MAX_INDEX);
  return { ...(edge === undefined ? {} : { edge }), bytes: fields.requireInt(Field.bytes, 0, MAX_EDGE_BYTES), sha256: decodeSha256(fields, Field.sha256) };
}

/**
 * A daemon's account of its end of an edge, to the controller: what passed it, and at the reading end whether that
 * equals what the writer says it read (`sent` is then the writer's digest, when it came).
 */
export type EdgeReport =
  | { edge: number; direction: 'out'; bytes: number; sha256: string }
  | { edge: number; direction: 'in'; bytes: number; sha256: string; status: EdgeStatus; sent?: EdgeDigest };

export function encodeEdgeReport(report: EdgeReport): Entry[] {
  const entries: Entry[] = [
    [Field.edge, String(report.edge)],
    [Field.direction, report.direction],
    [Field.bytes, String(report.bytes)],
    [Field.sha256, report.sha256],
  ];
  if (report.direction === 'in') {
    entries.push([Field.status, report.status]);
    if (report.sent !== undefined) entries.push([Field.sentBytes, String(report.sent.bytes)], [Field.sentSha256, report.sent.sha256]);
  }
  return entries;
}

export function decodeEdgeReport(fields: FieldList): EdgeReport {
  const edge = fields.requireInt(Field.edge, 0, MAX_INDEX);
  const direction = fields.require(Field.direction);
  const bytes = fields.requireInt(Field.bytes, 0, MAX_EDGE_BYTES);
  // A cut-short end may have no digest to give: it reports the empty string.
  const sha256 = fields.require(Field.sha256);
  if (sha256 !== '' && !SHA256_HEX.test(sha256)) throw new BadRequestError('malformed sha256');
  if (direction === 'out') return { edge, direction, bytes, sha256 };
  if (direction !== 'in') throw new BadRequestError(`unknown edge direction ${direction}`);
  const status = fields.require(Field.status);
  const known = Object.values(EdgeStatus).find((value) => value === status);
  if (known === undefined) throw new BadRequestError(`unknown edge status ${status}`);
  const sentBytes = fields.optionalInt(Field.sentBytes, 0, MAX_EDGE_BYTES);
  const report: EdgeReport = { edge, direction, bytes, sha256, status: known };
  if (sentBytes !== undefined) report.sent = { bytes: sentBytes, sha256: decodeSha256(fields, Field.sentSha256) };
  return report;
}

/** How many bytes of an edge a reading daemon has received so far (EdgeProgress). */
export interface EdgeProgress {
  edge: number;
  bytes: number;
}

export function encodeEdgeProgress(progress: EdgeProgress): Entry[] {
  return [
    [Field.edge, String(progress.edge)],
    [Field.bytes, String(progress.bytes)],
  ];
}

export function decodeEdgeProgress(fields: FieldList): EdgeProgress {
  return { edge: fields.requireInt(Field.edge, 0, MAX_INDEX), bytes: fields.requireInt(Field.bytes, 0, MAX_EDGE_BYTES) };
}

/** A part's account of plumb's own streams: the stdin it delivered to its command, the stdout it sent back. */
export interface StreamDigest {
  stream: 'stdin' | 'stdout';
  bytes: number;
  sha256: string;
}

export function encodeStreamDigest(digest: StreamDigest): Entry[] {
  return [
    [Field.stream, digest.stream],
    [Field.bytes, String(digest.bytes)],
    [Field.sha256, digest.sha256],
  ];
}

export function decodeStreamDigest(fields: FieldList): StreamDigest {
  const stream = fields.require(Field.stream);
  if (stream !== 'stdin' && stream !== 'stdout') throw new BadRequestError(`unknown stream ${stream}`);
  return { stream, bytes: fields.requireInt(Field.bytes, 0, MAX_EDGE_BYTES), sha256: decodeSha256(fields, Field.sha256) };
}

export function encodeRemoteStageEnd(stage: number): Entry[] {
  return [[Field.stage, String(stage)]];
}

export function decodeRemoteStageEnd(fields: FieldList): number {
  return fields.requireInt(Field.stage, 0, MAX_INDEX);
}

/**
 * The reading end's verdict on an edge: intact when it ended normally and the sender's count and digest equal its
 * own, a mismatch when both are known and differ, incomplete otherwise.
 */
export function edgeVerdict(delivered: { bytes: number; sha256: string; complete: boolean }, sent: EdgeDigest | undefined): EdgeStatus {
  if (!delivered.complete || sent === undefined) return EdgeStatus.Incomplete;
  return sent.bytes === delivered.bytes && sent.sha256 === delivered.sha256 ? EdgeStatus.Intact : EdgeStatus.Mismatch;
}
