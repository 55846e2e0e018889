// Every error netplumb reports: one class per failure, its stable code fixed by the class (the man pages list the
// codes), grouped under abstract categories. Tests assert codes, never message text. The codes a peer may be told
// are chosen in error-reply.ts; plumb's exit status for each in plumb-cli/exit-status.ts.

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
  /** A stream between machines arrived other than it left: its reader's count or SHA-256 differs from its writer's. */
  DigestMismatch: 'NP_DIGEST_MISMATCH',
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

export interface ErrorOptions {
  cause?: unknown;
}

/** Base of every netplumb error: a stable code (fixed by the class, see failure()), a message, an optional cause. */
export abstract class NetplumbError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * A packet failed a framing or integrity check. The connection closes; the peer learns nothing about which
 * check failed, so the message is for the local log only.
 */
export abstract class PacketError extends NetplumbError {}

/** The key exchange or the trust decision failed. */
export abstract class HandshakeError extends NetplumbError {}

/** A configured or protocol limit was reached. */
export abstract class LimitError extends NetplumbError {}

/** The connection ended or could not be made. */
export abstract class ConnectionError extends NetplumbError {}

/** A request (Start, Signal, mint, stream operation) was refused; the connection stays up. */
export abstract class RequestError extends NetplumbError {}

/** A key, config or authorization file, or the command line, could not be used. */
export abstract class ConfigError extends NetplumbError {}

/** A place in a recipe's text: 1-based line, 1-based column in code points. */
export interface SourceLocation {
  source: string;
  line: number;
  column: number;
}

/** Where a recipe was refused: the place, the text of its line (without the newline), the reason alone. */
export interface RecipePlace {
  location: SourceLocation;
  lineText: string;
  reason: string;
}

export interface RecipeErrorOptions extends ErrorOptions {
  at?: RecipePlace;
}

/** Code points of a line shown around the column when the line is longer than this. */
const SHOWN_LINE_CODE_POINTS = 160;

/**
 * A recipe was refused before anything of it ran. Located (by recipeError()) when the check found the place:
 * then `message` is `source:line:column: reason` and render() adds the line and a caret. Refusals told by a
 * daemon arrive already rendered and carry no place.
 */
export abstract class RecipeError extends NetplumbError {
  readonly location: SourceLocation | undefined;
  /** The message without its location. */
  readonly reason: string;
  /** The text of the line the location points into, without its newline ('' when unlocated). */
  readonly lineText: string;

  constructor(code: ErrorCode, message: string, options?: RecipeErrorOptions) {
    super(code, message, options);
    this.location = options?.at?.location;
    this.reason = options?.at?.reason ?? message;
    this.lineText = options?.at?.lineText ?? '';
  }

  /**
   * `source:line:column: reason`, then the line (control characters shown as U+FFFD, long lines cut around the
   * column) and a caret under the column. No trailing newline. Unlocated: the message alone.
   */
  render(): string {
    if (this.location === undefined) return this.message;
    let points = Array.from(this.lineText.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\ufeff]/g, '\ufffd'));
    let caretIndex = Math.min(Math.max(this.location.column - 1, 0), points.length);
    if (points.length > SHOWN_LINE_CODE_POINTS) {
      const half = SHOWN_LINE_CODE_POINTS / 2;
      const start = Math.max(0, Math.min(caretIndex - half, points.length - SHOWN_LINE_CODE_POINTS));
      const shown = points.slice(start, start + SHOWN_LINE_CODE_POINTS);
      points = [...(start > 0 ? ['…'] : []), ...shown, ...(start + SHOWN_LINE_CODE_POINTS < points.length ? ['…'] : [])];
      caretIndex = caretIndex - start + (start > 0 ? 1 : 0);
    }
    const pad = points
      .slice(0, caretIndex)
      .map((point) => (point === '\t' ? '\t' : ' '))
      .join('');
    return `${this.message}\n${points.join('')}\n${pad}^`;
  }
}

/**
 * The peer sent an Error packet or refused a request. The one error whose code is not fixed by its class: it is
 * what the peer said (an unknown code arrives as NP_INTERNAL).
 */
export class RemoteError extends NetplumbError {}

type Category<T extends NetplumbError, O extends ErrorOptions> = abstract new (code: ErrorCode, message: string, options?: O) => T;

/** A class of failure: its instances all carry `code`, also readable from the class itself. */
export interface FailureClass<C extends ErrorCode, T extends NetplumbError, O extends ErrorOptions = ErrorOptions> {
  readonly code: C;
  new (message: string, options?: O): T & { readonly code: C };
}

/** The base for the class of one failure: a subclass of `category` whose code is always `code`. */
function failure<C extends ErrorCode, T extends NetplumbError, O extends ErrorOptions>(category: Category<T, O>, code: C): FailureClass<C, T, O> {
  const Base = category as unknown as new (code: ErrorCode, message: string, options?: O) => NetplumbError;
  return class extends Base {
    static readonly code = code;
    constructor(message: string, options?: O) {
      super(code, message, options);
    }
  } as unknown as FailureClass<C, T, O>;
}

export class BadMagicError extends failure(PacketError, ErrorCode.BadMagic) {}
export class BadSizeError extends failure(PacketError, ErrorCode.BadSize) {}
export class TruncatedError extends failure(PacketError, ErrorCode.Truncated) {}
export class BadCrcError extends failure(PacketError, ErrorCode.BadCrc) {}
export class BadSequenceError extends failure(PacketError, ErrorCode.BadSequence) {}
export class BadTagError extends failure(PacketError, ErrorCode.BadTag) {}
export class UnknownTypeError extends failure(PacketError, ErrorCode.UnknownType) {}
export class UnexpectedPacketError extends failure(PacketError, ErrorCode.UnexpectedPacket) {}
export class BadFieldsError extends failure(PacketError, ErrorCode.BadFields) {}

export class HandshakeTimeoutError extends failure(HandshakeError, ErrorCode.HandshakeTimeout) {}
export class NoCommonAlgorithmError extends failure(HandshakeError, ErrorCode.NoCommonAlgorithm) {}
export class BadSignatureError extends failure(HandshakeError, ErrorCode.BadSignature) {}
export class NotAuthorizedError extends failure(HandshakeError, ErrorCode.NotAuthorized) {}
export class HostKeyUnknownError extends failure(HandshakeError, ErrorCode.HostKeyUnknown) {}
export class HostKeyChangedError extends failure(HandshakeError, ErrorCode.HostKeyChanged) {}

/**
 * A one-time key that was good once and is no more: spent or expired. Its holder has just proven it holds the key,
 * so the refusal may say which; every other refusal of a key tells the peer only "not authorized".
 */
export class KeyUsedUpError extends NotAuthorizedError {}

export class CipherLimitError extends failure(LimitError, ErrorCode.CipherLimit) {}
export class TooManyConnectionsError extends failure(LimitError, ErrorCode.TooManyConnections) {}
export class TooManyStreamsError extends failure(LimitError, ErrorCode.TooManyStreams) {}
export class WindowExceededError extends failure(LimitError, ErrorCode.WindowExceeded) {}

export class IdleTimeoutError extends failure(ConnectionError, ErrorCode.IdleTimeout) {}
export class ConnectionLostError extends failure(ConnectionError, ErrorCode.ConnectionLost) {}
export class ConnectFailedError extends failure(ConnectionError, ErrorCode.ConnectFailed) {}
export class ShuttingDownError extends failure(ConnectionError, ErrorCode.ShuttingDown) {}

export class BadRequestError extends failure(RequestError, ErrorCode.BadRequest) {}
export class CommandNotFoundError extends failure(RequestError, ErrorCode.CommandNotFound) {}
export class CommandNotExecutableError extends failure(RequestError, ErrorCode.CommandNotExecutable) {}
export class SpawnFailedError extends failure(RequestError, ErrorCode.SpawnFailed) {}
export class EnvRefusedError extends failure(RequestError, ErrorCode.EnvRefused) {}
export class NotPermittedError extends failure(RequestError, ErrorCode.NotPermitted) {}
/** A named pipe or socket path that cannot be used: missing directory, wrong file type, permission, length. */
export class EndpointError extends failure(RequestError, ErrorCode.Endpoint) {}
/** The recipe could not be readied (a named pipe exists already, the spool directory cannot be made, ...). */
export class RecipeSetupError extends failure(RequestError, ErrorCode.RecipeSetup) {}
/** The bytes a stream between machines delivered are not the bytes its writer read (PROTOCOL.md section 7.8). */
export class DigestMismatchError extends failure(ConnectionError, ErrorCode.DigestMismatch) {}

export class KeyFormatError extends failure(ConfigError, ErrorCode.KeyFormat) {}
export class BadConfigError extends failure(ConfigError, ErrorCode.Config) {}
export class UsageError extends failure(ConfigError, ErrorCode.Usage) {}

export class RecipeSyntaxError extends failure(RecipeError, ErrorCode.RecipeSyntax) {}
export class RecipeInvalidError extends failure(RecipeError, ErrorCode.RecipeInvalid) {}
export class RecipeTooLargeError extends failure(RecipeError, ErrorCode.RecipeTooLarge) {}

/** A bug or an impossible state: never the peer's doing. */
export class InternalError extends failure(NetplumbError, ErrorCode.Internal) {}

/** The class of each code: one each, so a code names its failure and its category. */
export const FAILURE_CLASSES = [
  BadMagicError, BadSizeError, TruncatedError, BadCrcError, BadSequenceError, BadTagError, UnknownTypeError, UnexpectedPacketError, BadFieldsError,
  HandshakeTimeoutError, NoCommonAlgorithmError, BadSignatureError, NotAuthorizedError, HostKeyUnknownError, HostKeyChangedError,
  CipherLimitError, TooManyConnectionsError, TooManyStreamsError, WindowExceededError,
  IdleTimeoutError, ConnectionLostError, ConnectFailedError, ShuttingDownError,
  BadRequestError, CommandNotFoundError, CommandNotExecutableError, SpawnFailedError, EnvRefusedError, NotPermittedError, EndpointError, RecipeSetupError, DigestMismatchError,
  KeyFormatError, BadConfigError, UsageError,
  RecipeSyntaxError, RecipeInvalidError, RecipeTooLargeError,
  InternalError,
] as const;

const classOfCode = new Map<ErrorCode, FailureClass<ErrorCode, NetplumbError, RecipeErrorOptions>>(FAILURE_CLASSES.map((made) => [made.code, made]));

/** The failure a code names, as an error of that code's class (an error reported elsewhere, rebuilt here). */
export function errorFor(code: ErrorCode, message: string, options?: ErrorOptions): NetplumbError {
  const made = classOfCode.get(code) ?? InternalError;
  return new made(message, options);
}

export type RecipeErrorCode = typeof ErrorCode.RecipeSyntax | typeof ErrorCode.RecipeInvalid | typeof ErrorCode.RecipeTooLarge;

/** A recipe refusal located in its text: `message` is `source:line:column: reason`. */
export function recipeError(code: RecipeErrorCode, reason: string, location: SourceLocation, lineText: string, options?: ErrorOptions): RecipeError {
  const made = code === ErrorCode.RecipeSyntax ? RecipeSyntaxError : code === ErrorCode.RecipeInvalid ? RecipeInvalidError : RecipeTooLargeError;
  return new made(`${location.source}:${location.line}:${location.column}: ${reason}`, { ...options, at: { location, lineText, reason } });
}

/** The same failure with more said in front of its message (`prefix: message`), the original kept as cause. */
export function withContext(error: NetplumbError, prefix: string): NetplumbError {
  return errorFor(error.code, `${prefix}: ${error.message}`, { cause: error });
}

/** Wraps anything into a NetplumbError, keeping the original as cause. */
export function asNetplumbError(error: unknown): NetplumbError {
  if (error instanceof NetplumbError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new InternalError(message, { cause: error });
}
