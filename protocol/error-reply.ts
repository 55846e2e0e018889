// What a peer is told of a failure: the one mapping from any error to the code and message of an Error packet or a
// refused request's reply. A failure that ends the connection is told only when its code is one the peer may
// learn; every other ends it silently, so a probing peer learns nothing about which check it failed.

import { asNetplumbError, ErrorCode, RecipeError } from './errors.js';
import type { Entry } from './fields.js';
import { Field } from './wire.js';

/** The code and message of an Error packet, a refused Start or a refused mint. */
export interface ErrorReply {
  code: ErrorCode;
  message: string;
}

/**
 * Where the failure happened: `connection` ends the connection (the peer is told only some codes); `request`
 * refuses one request and keeps the connection (the peer is told every code: the request was its own).
 */
export type ReplyScope = 'connection' | 'request';

/**
 * Codes that may end a connection with an Error packet (plaintext or sealed); every other code closes silently. A
 * client that refuses the daemon's host key says so: the daemon's log then tells its operator why the client left
 * (a key changed, or a client that never pinned it), which a hang-up alone does not; the client gives away nothing
 * the daemon cannot see from the hang-up.
 */
const CONNECTION_CODES_TOLD: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.NotAuthorized,
  ErrorCode.NoCommonAlgorithm,
  ErrorCode.TooManyConnections,
  ErrorCode.HostKeyUnknown,
  ErrorCode.HostKeyChanged,
]);

/**
 * The reply a peer gets for `error`, or undefined when it is told nothing. A recipe refusal is told rendered
 * (its line and a caret), so the far end can show it as the check wrote it.
 */
export function errorReply(error: unknown, scope: 'request'): ErrorReply;
export function errorReply(error: unknown, scope: ReplyScope): ErrorReply | undefined;
export function errorReply(error: unknown, scope: ReplyScope): ErrorReply | undefined {
  const failure = asNetplumbError(error);
  if (scope === 'connection' && !CONNECTION_CODES_TOLD.has(failure.code)) return undefined;
  return { code: failure.code, message: failure instanceof RecipeError ? failure.render() : failure.message };
}

/** Whether a failure that ends the connection is told to the peer. */
export function peerIsTold(error: unknown): boolean {
  return errorReply(error, 'connection') !== undefined;
}

/** The fields of an Error packet for `error`, as a request's refusal would tell it. */
export function errorFields(error: unknown): Entry[] {
  const reply = errorReply(error, 'request');
  return [
    [Field.code, reply.code],
    [Field.message, reply.message],
  ];
}
