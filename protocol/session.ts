// Encoders and decoders of the session packets both ends share: Start (request and reply), Exit, StageEnd and Signal.
// Decoders validate every field, so the daemon and the client each get typed values or NP_BAD_REQUEST.

import { BadRequestError, ErrorCode } from './errors.js';
import type { Entry, FieldList } from './fields.js';
import { decodePartFields, decodeRecipeSource, encodePartFields, encodeRecipeSource, type PartRequest } from './multi-host.js';
import {
  Field,
  MAX_ARGV_WORDS,
  MAX_ENDPOINT_PATH_BYTES,
  MAX_ENDPOINTS,
  MAX_EXPORTED_VARIABLES,
  MAX_ONE_TIME_KEY_SECONDS,
  MAX_REPLY_MESSAGE_BYTES,
  MAX_STAGE_NAME_BYTES,
  MAX_STREAM_ID,
  MAX_TERMINAL_CELLS,
  MintStatus,
  StartKind,
  StartStatus,
} from './wire.js';

/** Signals a client may forward to a running command. */
export const FORWARDABLE_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGKILL', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const;
export type ForwardableSignal = (typeof FORWARDABLE_SIGNALS)[number];

/** Environment variables the client exports to the command(s), in the order given; names are unique. */
export type ExportedEnv = readonly (readonly [name: string, value: string])[];

/** What an environment variable's name must look like to be exported (as POSIX shells accept them). */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Named pipes and sockets replicated for a Start, as paths on the daemon's host (relative ones: in its spool). */
export interface Endpoints {
  /** FIFOs the command reads; the client sends one stream per round. */
  inFifos: string[];
  /** FIFOs the command writes; the daemon sends one stream per round. */
  outFifos: string[];
  /** Sockets the daemon listens on; each connection goes to the client as a stream. */
  listenSockets: string[];
  /** Sockets of services on the daemon's host; each stream the client opens for one becomes a connection. */
  connectSockets: string[];
}

export const NO_ENDPOINTS: Readonly<Endpoints> = Object.freeze({ inFifos: [], outFifos: [], listenSockets: [], connectSockets: [] });

/** A pseudo-terminal for the command: the terminal type and size of the client's terminal. */
export interface PtyRequest {
  term: string;
  cols: number;
  rows: number;
}

/** What every kind of Start carries: the account, the exported variables, the endpoints and the three streams. */
export interface StartCommon {
  /** The account to run as (`-user`); absent: the client's default. */
  user?: string;
  env: ExportedEnv;
  endpoints: Endpoints;
  stdin: number;
  stdout: number;
  stderr: number;
}

export interface ExecRequest extends StartCommon {
  kind: StartKind.Exec;
  /** Empty only with a pty: then the daemon runs the user's login shell. */
  argv: string[];
  pty?: PtyRequest;
}

/** A recipe's text as the user wrote it; the daemon parses and checks it itself. */
export interface RecipeRequest extends StartCommon {
  kind: StartKind.Recipe;
  text: string;
  /** The file name error messages cite (the client's name for the recipe). */
  source: string;
  /** The daemon counts each command's bytes and sends StageBytes (plumb -json). */
  countBytes?: boolean;
}

/**
 * No command: the named pipes and sockets alone, until the client closes the connection; made and opened with
 * the rights of `user`. Its env is always empty.
 */
export interface ForwardRequest extends StartCommon {
  kind: StartKind.Forward;
}

export type StartRequest = ExecRequest | RecipeRequest | PartRequest | ForwardRequest;

function streamEntries(request: StartRequest): Entry[] {
  return [
    ...(request.user === undefined ? [] : [[Field.user, request.user] as Entry]),
    ...request.env.map(([name, value]): Entry => [Field.env, `${name}=${value}`]),
    ...encodeEndpoints(request.endpoints),
    [Field.stdin, String(request.stdin)],
    [Field.stdout, String(request.stdout)],
    [Field.stderr, String(request.stderr)],
  ];
}

export function encodeStartRequest(request: StartRequest): Entry[] {
  switch (request.kind) {
    case StartKind.Exec:
      return [
        [Field.kind, request.kind],
        ...request.argv.map((word): Entry => [Field.arg, word]),
        ...(request.pty === undefined ? [] : encodePty(request.pty)),
        ...streamEntries(request),
      ];
    case StartKind.Recipe:
      return [[Field.kind, request.kind], ...encodeRecipeSource(request), ...streamEntries(request)];
    case StartKind.Part:
      return [[Field.kind, request.kind], ...encodeRecipeSource(request), ...encodePartFields(request), ...streamEntries(request)];
    case StartKind.Forward:
      return [[Field.kind, request.kind], ...streamEntries(request)];
  }
}

export function decodeStartRequest(fields: FieldList): StartRequest {
  const kind = fields.require(Field.kind);
  const user = decodeUser(fields);
  const streams = {
    ...(user === undefined ? {} : { user }),
    stdin: fields.requireInt(Field.stdin, 1, MAX_STREAM_ID),
    stdout: fields.requireInt(Field.stdout, 1, MAX_STREAM_ID),
    stderr: fields.requireInt(Field.stderr, 1, MAX_STREAM_ID),
    env: decodeEnv(fields.all(Field.env)),
    endpoints: decodeEndpoints(fields),
  };
  switch (kind) {
    case StartKind.Exec: {
      const argv = fields.all(Field.arg);
      const pty = fields.optional(Field.pty) === '1' ? decodePty(fields) : undefined;
      if ((argv.length === 0 && pty === undefined) || argv[0] === '') throw new BadRequestError('empty command');
      if (argv.length > MAX_ARGV_WORDS) throw new BadRequestError(`more than ${MAX_ARGV_WORDS} arguments`);
      return pty === undefined ? { kind, argv, ...streams } : { kind, argv, pty, ...streams };
    }
    case StartKind.Recipe:
      return { kind, ...decodeRecipeSource(fields), ...streams };
    case StartKind.Part:
      return { kind, ...decodeRecipeSource(fields), ...decodePartFields(fields), ...streams };
    case StartKind.Forward: {
      const { endpoints } = streams;
      if (Object.values(endpoints).every((paths: readonly string[]) => paths.length === 0)) throw new BadRequestError('a forward names no named pipe or socket');
      if (streams.env.length > 0) throw new BadRequestError('a forward runs no command: it takes no environment');
      return { kind, ...streams };
    }
    default:
      throw new BadRequestError(`unknown start kind ${kind}`);
  }
}

function encodePty(pty: PtyRequest): Entry[] {
  return [[Field.pty, '1'], [Field.term, pty.term], ...encodeResize(pty)];
}

function decodePty(fields: FieldList): PtyRequest {
  const term = fields.require(Field.term);
  if (!/^[A-Za-z0-9._+-]{1,64}$/.test(term)) throw new BadRequestError('malformed terminal type');
  return { term, ...decodeResize(fields) };
}

export function encodeResize(size: { cols: number; rows: number }): Entry[] {
  return [
    [Field.cols, String(size.cols)],
    [Field.rows, String(size.rows)],
  ];
}

export function decodeResize(fields: FieldList): { cols: number; rows: number } {
  return { cols: fields.requireInt(Field.cols, 1, MAX_TERMINAL_CELLS), rows: fields.requireInt(Field.rows, 1, MAX_TERMINAL_CELLS) };
}

/**
 * What a user name may look like (on the wire, in `user=` and in run-as); the daemon's lookup decides whether it
 * exists. Never `.` or `..`, which would name directories in the spool.
 */
export const USER_NAME_PATTERN = /^(?!\.{1,2}$)[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}\$?$/;

function decodeUser(fields: FieldList): string | undefined {
  const user = fields.optional(Field.user);
  if (user !== undefined && !USER_NAME_PATTERN.test(user)) throw new BadRequestError('malformed user name');
  return user;
}

function encodeEndpoints(endpoints: Endpoints): Entry[] {
  return [
    ...endpoints.inFifos.map((path): Entry => [Field.infifo, path]),
    ...endpoints.outFifos.map((path): Entry => [Field.outfifo, path]),
    ...endpoints.listenSockets.map((path): Entry => [Field.listenSocket, path]),
    ...endpoints.connectSockets.map((path): Entry => [Field.connectSocket, path]),
  ];
}

function decodeEndpoints(fields: FieldList): Endpoints {
  const endpoints: Endpoints = {
    inFifos: fields.all(Field.infifo),
    outFifos: fields.all(Field.outfifo),
    listenSockets: fields.all(Field.listenSocket),
    connectSockets: fields.all(Field.connectSocket),
  };
  const paths = Object.values(endpoints).flat();
  if (paths.length > MAX_ENDPOINTS) throw new BadRequestError(`more than ${MAX_ENDPOINTS} named pipes and sockets`);
  for (const path of paths) {
    if (path === '' || Buffer.byteLength(path) > MAX_ENDPOINT_PATH_BYTES) throw new BadRequestError('empty or over-long endpoint path');
  }
  return endpoints;
}

function decodeEnv(entries: readonly string[]): ExportedEnv {
  if (entries.length > MAX_EXPORTED_VARIABLES) throw new BadRequestError(`more than ${MAX_EXPORTED_VARIABLES} exported variables`);
  const seen = new Set<string>();
  return entries.map((entry) => {
    const equals = entry.indexOf('=');
    const name = equals < 0 ? entry : entry.slice(0, equals);
    if (equals < 0 || !ENV_NAME_PATTERN.test(name)) throw new BadRequestError(`malformed exported variable ${JSON.stringify(name)}`);
    if (seen.has(name)) throw new BadRequestError(`variable ${name} exported twice`);
    seen.add(name);
    return [name, entry.slice(equals + 1)] as const;
  });
}

export type StartReply = { status: StartStatus.Started | StartStatus.Ready } | { status: StartStatus.Refused; code: ErrorCode; message: string };

/** The message as sent: longer ones are cut at a character boundary, `...` marking the cut. */
export function replyMessage(message: string): string {
  if (Buffer.byteLength(message) <= MAX_REPLY_MESSAGE_BYTES) return message;
  let bytes = 0;
  let end = 0;
  for (const char of message) {
    bytes += Buffer.byteLength(char);
    if (bytes > MAX_REPLY_MESSAGE_BYTES - 3) break;
    end += char.length;
  }
  return `${message.slice(0, end)}...`;
}

export function encodeStartReply(reply: StartReply): Entry[] {
  if (reply.status !== StartStatus.Refused) return [[Field.status, reply.status]];
  return [
    [Field.status, reply.status],
    [Field.code, reply.code],
    [Field.message, replyMessage(reply.message)],
  ];
}

export function decodeStartReply(fields: FieldList, isCode: (value: string) => value is ErrorCode): StartReply {
  const status = fields.require(Field.status);
  if (status === StartStatus.Started || status === StartStatus.Ready) return { status };
  if (status !== StartStatus.Refused) throw new BadRequestError(`unknown start status ${status}`);
  const code = fields.require(Field.code);
  return { status, code: isCode(code) ? code : ErrorCode.Internal, message: fields.require(Field.message) };
}

/** How a command ended: an exit code, or the signal that killed it. */
export type ExitStatus = { code: number } | { signal: string };

export function encodeExit(status: ExitStatus): Entry[] {
  return 'code' in status ? [[Field.code, String(status.code)]] : [[Field.signal, status.signal]];
}

export function decodeExit(fields: FieldList): ExitStatus {
  const signal = fields.optional(Field.signal);
  if (signal !== undefined) {
    if (!/^SIG[A-Z0-9]{1,12}$/.test(signal)) throw new BadRequestError('malformed signal name');
    return { signal };
  }
  return { code: fields.requireInt(Field.code, 0, 255) };
}

/** How one recipe command ended: like ExitStatus, or it never started (error says why; code is the shell's 126/127/1). */
export type StageStatus = ExitStatus | { error: ErrorCode; message: string; code: number };

/** One recipe command's end, as the daemon reports it while the recipe runs. */
export interface StageEnd {
  /** 0-based position in the recipe. */
  stage: number;
  /** The command's label, or `line N`. */
  name: string;
  /** 1-based line of the recipe where the command starts. */
  line: number;
  status: StageStatus;
  /** When the command started and ended, in milliseconds since 1970-01-01 UTC (absent when it never started). */
  startedAt?: number;
  endedAt?: number;
}

export function encodeStageEnd(end: StageEnd): Entry[] {
  const entries: Entry[] = [
    [Field.stage, String(end.stage)],
    [Field.name, end.name],
    [Field.line, String(end.line)],
  ];
  const { status } = end;
  if ('error' in status) entries.push([Field.code, String(status.code)], [Field.error, status.error], [Field.message, replyMessage(status.message)]);
  else entries.push(...encodeExit(status));
  if (end.startedAt !== undefined) entries.push([Field.startedAt, String(end.startedAt)]);
  if (end.endedAt !== undefined) entries.push([Field.endedAt, String(end.endedAt)]);
  return entries;
}

export function decodeStageEnd(fields: FieldList, isCode: (value: string) => value is ErrorCode): StageEnd {
  const name = fields.require(Field.name);
  if (name === '' || Buffer.byteLength(name) > MAX_STAGE_NAME_BYTES) throw new BadRequestError('bad stage name');
  const error = fields.optional(Field.error);
  const status: StageStatus =
    error === undefined
      ? decodeExit(fields)
      : { error: isCode(error) ? error : ErrorCode.Internal, message: fields.require(Field.message), code: fields.requireInt(Field.code, 1, 255) };
  const end: StageEnd = { stage: fields.requireInt(Field.stage, 0, 2 ** 31), name, line: fields.requireInt(Field.line, 1, 2 ** 31), status };
  const startedAt = fields.optionalInt(Field.startedAt, 0, Number.MAX_SAFE_INTEGER);
  const endedAt = fields.optionalInt(Field.endedAt, 0, Number.MAX_SAFE_INTEGER);
  if (startedAt !== undefined) end.startedAt = startedAt;
  if (endedAt !== undefined) end.endedAt = endedAt;
  return end;
}

/**
 * What one command of a recipe took in and gave out, as its daemon counted it (StageBytes, sent only when the Start
 * asked with count-bytes=1). Each count is absent where it could not be known: a device other than /dev/null.
 */
export interface StageBytes {
  stage: number;
  /** The bytes delivered into its stdin, or read from its stdin file. */
  bytesIn?: number;
  /** The bytes it wrote to stdout, and to stderr where that goes to the same place (2>&1, >%x 2>%x). */
  bytesOut?: number;
  /** The bytes it wrote to stderr, where that goes elsewhere than stdout. */
  bytesErr?: number;
}

const STAGE_BYTE_FIELDS = [
  ['bytesIn', Field.bytesIn],
  ['bytesOut', Field.bytesOut],
  ['bytesErr', Field.bytesErr],
] as const;

export function encodeStageBytes(bytes: StageBytes): Entry[] {
  const entries: Entry[] = [[Field.stage, String(bytes.stage)]];
  for (const [key, field] of STAGE_BYTE_FIELDS) {
    const count = bytes[key];
    if (count !== undefined) entries.push([field, String(count)]);
  }
  return entries;
}

export function decodeStageBytes(fields: FieldList): StageBytes {
  const bytes: StageBytes = { stage: fields.requireInt(Field.stage, 0, 2 ** 31) };
  for (const [key, field] of STAGE_BYTE_FIELDS) {
    const count = fields.optionalInt(field, 0, Number.MAX_SAFE_INTEGER);
    if (count !== undefined) bytes[key] = count;
  }
  return bytes;
}

export function encodeSignal(signal: ForwardableSignal): Entry[] {
  return [[Field.signal, signal]];
}

export function decodeSignal(fields: FieldList): ForwardableSignal {
  const signal = fields.require(Field.signal);
  const known = FORWARDABLE_SIGNALS.find((name) => name === signal);
  if (known === undefined) throw new BadRequestError(`signal ${signal} cannot be forwarded`);
  return known;
}

/**
 * What a one-time key lets its holder start: exactly this command (argv) or recipe (text), as this account, with
 * at most these named pipes and sockets. No pseudo-terminal and no exported variables.
 */
export type KeyBinding =
  | { kind: StartKind.Exec; argv: string[]; user?: string; endpoints: Endpoints }
  | { kind: StartKind.Recipe; text: string; source: string; user?: string; endpoints: Endpoints };

/** A controller's MintKey request: the binding, and how long the key stays good. */
export interface MintRequest {
  binding: KeyBinding;
  lifetimeSeconds: number;
}

export function encodeMintRequest(request: MintRequest): Entry[] {
  const { binding } = request;
  const what: Entry[] =
    binding.kind === StartKind.Exec
      ? [[Field.kind, binding.kind], ...binding.argv.map((word): Entry => [Field.arg, word])]
      : [[Field.kind, binding.kind], [Field.source, binding.source], [Field.recipe, binding.text]];
  return [
    ...what,
    ...(binding.user === undefined ? [] : [[Field.user, binding.user] as Entry]),
    ...encodeEndpoints(binding.endpoints),
    [Field.lifetime, String(request.lifetimeSeconds)],
  ];
}

export function decodeMintRequest(fields: FieldList): MintRequest {
  const lifetimeSeconds = fields.requireInt(Field.lifetime, 1, MAX_ONE_TIME_KEY_SECONDS);
  const user = decodeUser(fields);
  const common = { ...(user === undefined ? {} : { user }), endpoints: decodeEndpoints(fields) };
  const kind = fields.require(Field.kind);
  switch (kind) {
    case StartKind.Exec: {
      const argv = fields.all(Field.arg);
      if (argv.length === 0 || argv[0] === '') throw new BadRequestError('empty command');
      if (argv.length > MAX_ARGV_WORDS) throw new BadRequestError(`more than ${MAX_ARGV_WORDS} arguments`);
      return { binding: { kind, argv, ...common }, lifetimeSeconds };
    }
    case StartKind.Recipe: {
      // A key is bound to a recipe's text; whether the run counts its bytes is the run's own choice.
      const { source, text } = decodeRecipeSource(fields);
      return { binding: { kind, source, text, ...common }, lifetimeSeconds };
    }
    default:
      throw new BadRequestError(`unknown start kind ${kind}`);
  }
}

/** A minted key: its private key (PKCS#8 PEM), fingerprint, expiry (ms since the epoch) and the daemon's host key line. */
export interface MintedKey {
  privateKeyPem: string;
  fingerprint: string;
  expiresAt: number;
  hostKey: string;
  /** The account the bound command will run as. */
  user: string;
}

export type MintReply = { status: MintStatus.Minted; key: MintedKey } | { status: MintStatus.Refused; code: ErrorCode; message: string };

export function encodeMintReply(reply: MintReply): Entry[] {
  if (reply.status === MintStatus.Refused) {
    return [
      [Field.status, reply.status],
      [Field.code, reply.code],
      [Field.message, replyMessage(reply.message)],
    ];
  }
  const { key } = reply;
  return [
    [Field.status, reply.status],
    [Field.key, key.privateKeyPem],
    [Field.fingerprint, key.fingerprint],
    [Field.expires, String(key.expiresAt)],
    [Field.hostKey, key.hostKey],
    [Field.user, key.user],
  ];
}

export function decodeMintReply(fields: FieldList, isCode: (value: string) => value is ErrorCode): MintReply {
  const status = fields.require(Field.status);
  if (status === MintStatus.Refused) {
    const code = fields.require(Field.code);
    return { status, code: isCode(code) ? code : ErrorCode.Internal, message: fields.require(Field.message) };
  }
  if (status !== MintStatus.Minted) throw new BadRequestError(`unknown mint status ${status}`);
  return {
    status,
    key: {
      privateKeyPem: fields.require(Field.key),
      fingerprint: fields.require(Field.fingerprint),
      expiresAt: fields.requireInt(Field.expires, 0, Number.MAX_SAFE_INTEGER),
      hostKey: fields.require(Field.hostKey),
      user: fields.require(Field.user),
    },
  };
}
