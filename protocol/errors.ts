// Typed errors with stable codes. Every failure netplumb reports carries one of these codes; the man pages list
// them. Tests assert codes, never message text. Codes marked "wire" may travel in an Error packet.

export const ErrorCode = {
  // Framing and packet integrity (the peer is never told which of these it was).
  BadMagic: 'NP_BAD_MAGIC',
  BadSize: 'NP_BAD_SIZE',
  Truncated: 'NP_TRUNCATED',
  BadCrc: 'NP_BAD_CRC',
  BadSequence: 'NP_BAD_SEQUENCE',
  BadTag: 'NP_BAD_TAG',
  UnknownType: 'NP_UNKNOWN_TYPE',
  UnexpectedPacket: 'NP_UNEXPECTED_PACKET',
  BadFields: 'NP_BAD_FIELDS',
  // Handshake and trust.
  HandshakeTimeout: 'NP_HANDSHAKE_TIMEOUT',
  NoCommonAlgorithm: 'NP_NO_COMMON_ALGORITHM',
  BadSignature: 'NP_BAD_SIGNATURE',
  NotAuthorized: 'NP_NOT_AUTHORIZED',
  HostKeyUnknown: 'NP_HOST_KEY_UNKNOWN',
  HostKeyChanged: 'NP_HOST_KEY_CHANGED',
  CipherLimit: 'NP_CIPHER_LIMIT',
  // Limits and liveness.
  TooManyConnections: 'NP_TOO_MANY_CONNECTIONS',
  TooManyStreams: 'NP_TOO_MANY_STREAMS',
  WindowExceeded: 'NP_WINDOW_EXCEEDED',
  IdleTimeout: 'NP_IDLE_TIMEOUT',
  ConnectionLost: 'NP_CONNECTION_LOST',
  ConnectFailed: 'NP_CONNECT_FAILED',
  ShuttingDown: 'NP_SHUTTING_DOWN',
  // Requests.
  BadRequest: 'NP_BAD_REQUEST',
  CommandNotFound: 'NP_COMMAND_NOT_FOUND',
  CommandNotExecutable: 'NP_COMMAND_NOT_EXECUTABLE',
  SpawnFailed: 'NP_SPAWN_FAILED',
  EnvRefused: 'NP_ENV_REFUSED',
  NotPermitted: 'NP_NOT_PERMITTED',
  // Replicated named pipes and sockets.
  Endpoint: 'NP_ENDPOINT',
  // Running recipes (the language's own codes are below).
  RecipeSetup: 'NP_RECIPE_SETUP',
  // Local configuration and usage.
  KeyFormat: 'NP_KEY_FORMAT',
  Config: 'NP_CONFIG',
  Usage: 'NP_USAGE',
  Internal: 'NP_INTERNAL',
  // Recipes (checked whole before anything runs; see netplumb-recipe.5).
  RecipeSyntax: 'NP_RECIPE_SYNTAX',
  RecipeInvalid: 'NP_RECIPE_INVALID',
  RecipeTooLarge: 'NP_RECIPE_TOO_LARGE',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const knownCodes = new Set<string>(Object.values(ErrorCode));

export function isErrorCode(value: string): value is ErrorCode {
  return knownCodes.has(value);
}

/** Base of every netplumb error: a stable code, a human message, an optional cause. */
export class NetplumbError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * A packet failed a framing or integrity check. The connection closes; the peer learns nothing about which
 * check failed, so the message is for the local log only.
 */
export class PacketError extends NetplumbError {}

/** The key exchange or the trust decision failed. */
export class HandshakeError extends NetplumbError {}

/** A configured or protocol limit was reached. */
export class LimitError extends NetplumbError {}

/** The connection ended or could not be made. */
export class ConnectionError extends NetplumbError {}

/** A request (Start, Signal, stream operation) was refused; the connection stays up. */
export class RequestError extends NetplumbError {}

/** A key, config or authorization file could not be read or parsed. */
export class ConfigError extends NetplumbError {}

/** The peer sent an Error packet. */
export class RemoteError extends NetplumbError {}

/** Wraps anything into a NetplumbError, keeping the original as cause. */
export function asNetplumbError(error: unknown): NetplumbError {
  if (error instanceof NetplumbError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new NetplumbError(ErrorCode.Internal, message, { cause: error });
}
