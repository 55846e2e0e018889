// Encoders and decoders of the session packets both ends share: Start (request and reply), Exit and Signal.
// Decoders validate every field, so the daemon and the client each get typed values or NP_BAD_REQUEST.

import { ErrorCode, RequestError } from './errors.js';
import type { Entry, FieldList } from './fields.js';
import { Field, MAX_STREAM_ID, StartKind, StartStatus } from './wire.js';

/** Signals a client may forward to a running command. */
export const FORWARDABLE_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGKILL', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const;
export type ForwardableSignal = (typeof FORWARDABLE_SIGNALS)[number];

/** Longest argv accepted in a Start request, in words. */
export const MAX_ARGV_WORDS = 4096;

export interface ExecRequest {
  kind: StartKind.Exec;
  argv: string[];
  stdin: number;
  stdout: number;
  stderr: number;
}

export function encodeExecRequest(request: ExecRequest): Entry[] {
  return [
    [Field.kind, request.kind],
    ...request.argv.map((word): Entry => [Field.arg, word]),
    [Field.stdin, String(request.stdin)],
    [Field.stdout, String(request.stdout)],
    [Field.stderr, String(request.stderr)],
  ];
}

export function decodeStartRequest(fields: FieldList): ExecRequest {
  const kind = fields.require(Field.kind);
  if (kind !== StartKind.Exec) throw new RequestError(ErrorCode.BadRequest, `unknown start kind ${kind}`);
  const argv = fields.all(Field.arg);
  if (argv.length === 0 || argv[0] === '') throw new RequestError(ErrorCode.BadRequest, 'empty command');
  if (argv.length > MAX_ARGV_WORDS) throw new RequestError(ErrorCode.BadRequest, `more than ${MAX_ARGV_WORDS} arguments`);
  return {
    kind,
    argv,
    stdin: fields.requireInt(Field.stdin, 1, MAX_STREAM_ID),
    stdout: fields.requireInt(Field.stdout, 1, MAX_STREAM_ID),
    stderr: fields.requireInt(Field.stderr, 1, MAX_STREAM_ID),
  };
}

export type StartReply = { status: StartStatus.Started } | { status: StartStatus.Refused; code: ErrorCode; message: string };

export function encodeStartReply(reply: StartReply): Entry[] {
  if (reply.status === StartStatus.Started) return [[Field.status, reply.status]];
  return [
    [Field.status, reply.status],
    [Field.code, reply.code],
    [Field.message, reply.message],
  ];
}

export function decodeStartReply(fields: FieldList, isCode: (value: string) => value is ErrorCode): StartReply {
  const status = fields.require(Field.status);
  if (status === StartStatus.Started) return { status };
  if (status !== StartStatus.Refused) throw new RequestError(ErrorCode.BadRequest, `unknown start status ${status}`);
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
    if (!/^SIG[A-Z0-9]{1,12}$/.test(signal)) throw new RequestError(ErrorCode.BadRequest, 'malformed signal name');
    return { signal };
  }
  return { code: fields.requireInt(Field.code, 0, 255) };
}

export function encodeSignal(signal: ForwardableSignal): Entry[] {
  return [[Field.signal, signal]];
}

export function decodeSignal(fields: FieldList): ForwardableSignal {
  const signal = fields.require(Field.signal);
  const known = FORWARDABLE_SIGNALS.find((name) => name === signal);
  if (known === undefined) throw new RequestError(ErrorCode.BadRequest, `signal ${signal} cannot be forwarded`);
  return known;
}
