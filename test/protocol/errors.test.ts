// The error model: every code has exactly one failure class that fixes it, the categories group them, and the two
// mappings (to what a peer is told, to plumb's exit status) give each code its documented answer.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CommanderError } from 'commander';
import { errorFields, errorReply, peerIsTold } from '../../protocol/error-reply.js';
import {
  asNetplumbError,
  BadConfigError,
  BadTagError,
  CommandNotExecutableError,
  CommandNotFoundError,
  ConfigError,
  ErrorCode,
  errorFor,
  FAILURE_CLASSES,
  HandshakeError,
  InternalError,
  KeyFormatError,
  KeyUsedUpError,
  NetplumbError,
  NoCommonAlgorithmError,
  NotAuthorizedError,
  PacketError,
  recipeError,
  RecipeError,
  RecipeSetupError,
  RecipeSyntaxError,
  RemoteError,
  RequestError,
  SpawnFailedError,
  TooManyConnectionsError,
  withContext,
} from '../../protocol/errors.js';
import { Field } from '../../protocol/wire.js';
import {
  EXIT_COMMAND_NOT_EXECUTABLE,
  EXIT_COMMAND_NOT_FOUND,
  EXIT_PLUMB_FAILURE,
  EXIT_RECIPE_REFUSED,
  exitStatusCode,
  failureExitStatus,
} from '../../plumb-cli/exit-status.js';

const ALL_CODES = Object.values(ErrorCode);
const PLACE = { source: 'r.rcp', line: 2, column: 5 };

describe('failure classes', () => {
  test('every code has exactly one failure class', () => {
    const codes = FAILURE_CLASSES.map((made) => made.code);
    assert.deepEqual([...codes].sort(), [...ALL_CODES].sort());
  });

  test('an instance carries the code of its class, whatever its message', () => {
    for (const made of FAILURE_CLASSES) {
      const error = new made('anything at all');
      assert.equal(error.code, made.code, made.name);
      assert.ok(error instanceof NetplumbError, made.name);
      assert.equal(error.name, made.name);
    }
  });

  test('a failure belongs to its category', () => {
    assert.ok(new BadTagError('x') instanceof PacketError);
    assert.ok(new NoCommonAlgorithmError('x') instanceof HandshakeError);
    assert.ok(new SpawnFailedError('x') instanceof RequestError);
    assert.ok(new KeyFormatError('x') instanceof ConfigError);
    assert.ok(!(new BadTagError('x') instanceof RequestError));
  });

  test('a spent one-time key is refused as not authorized', () => {
    const error = new KeyUsedUpError('one-time key already used');
    assert.ok(error instanceof NotAuthorizedError);
    assert.equal(error.code, ErrorCode.NotAuthorized);
  });

  test('the cause is kept', () => {
    const cause = new Error('underneath');
    assert.equal(new SpawnFailedError('x', { cause }).cause, cause);
  });

  test('errorFor rebuilds a code as the instance of its class', () => {
    for (const code of ALL_CODES) {
      const error = errorFor(code, 'rebuilt');
      assert.equal(error.code, code);
      assert.equal(error.constructor, FAILURE_CLASSES.find((made) => made.code === code));
    }
  });

  test('withContext puts the context before the message and keeps code and cause', () => {
    const original = new BadConfigError('bad option');
    const error = withContext(original, 'clients:3');
    assert.ok(error instanceof BadConfigError);
    assert.equal(error.message, 'clients:3: bad option');
    assert.equal(error.cause, original);
  });

  test('asNetplumbError makes anything else an internal error with the original as cause', () => {
    const plain = new Error('boom');
    const error = asNetplumbError(plain);
    assert.ok(error instanceof InternalError);
    assert.equal(error.code, ErrorCode.Internal);
    assert.equal(error.cause, plain);
  });

  test('a remote error carries the code the peer sent', () => {
    assert.equal(new RemoteError(ErrorCode.EnvRefused, 'no').code, ErrorCode.EnvRefused);
  });
});

describe('recipe errors', () => {
  test('a located recipe error names its place in its message and keeps the reason apart', () => {
    const error = recipeError(ErrorCode.RecipeSyntax, 'expected a word', PLACE, 'cat | | wc');
    assert.ok(error instanceof RecipeSyntaxError && error instanceof RecipeError);
    assert.equal(error.message, 'r.rcp:2:5: expected a word');
    assert.equal(error.reason, 'expected a word');
    assert.deepEqual(error.location, PLACE);
  });

  test('a located recipe error renders its line with a caret under the column', () => {
    const error = recipeError(ErrorCode.RecipeInvalid, 'no such label', PLACE, 'cat | | wc');
    assert.equal(error.render(), 'r.rcp:2:5: no such label\ncat | | wc\n    ^');
  });

  test('an unlocated recipe error renders as its message', () => {
    const error = new RecipeSyntaxError('told by the daemon');
    assert.equal(error.location, undefined);
    assert.equal(error.render(), 'told by the daemon');
  });
});

describe('errorReply', () => {
  test('a connection failure is told to the peer only for the codes it may learn', () => {
    const told = ALL_CODES.filter((code) => peerIsTold(errorFor(code, 'x')));
    assert.deepEqual(told.sort(), [ErrorCode.HostKeyChanged, ErrorCode.HostKeyUnknown, ErrorCode.NoCommonAlgorithm, ErrorCode.NotAuthorized, ErrorCode.TooManyConnections].sort());
  });

  test('a packet integrity failure ending the connection tells the peer nothing', () => {
    assert.equal(errorReply(new BadTagError('tag mismatch'), 'connection'), undefined);
  });

  test('a refused request tells the peer its code and message', () => {
    assert.deepEqual(errorReply(new CommandNotFoundError('command not found: nope'), 'request'), {
      code: ErrorCode.CommandNotFound,
      message: 'command not found: nope',
    });
  });

  test('a refused recipe is told rendered', () => {
    const error = recipeError(ErrorCode.RecipeInvalid, 'no such label', PLACE, 'cat | | wc');
    assert.deepEqual(errorReply(error, 'request'), { code: ErrorCode.RecipeInvalid, message: error.render() });
  });

  test('anything not a netplumb error is told as internal', () => {
    assert.equal(errorReply(new TypeError('oops'), 'request').code, ErrorCode.Internal);
  });

  test('errorFields gives the code and message fields of an Error packet', () => {
    assert.deepEqual(errorFields(new TooManyConnectionsError('busy')), [
      [Field.code, ErrorCode.TooManyConnections],
      [Field.message, 'busy'],
    ]);
  });
});

describe('failureExitStatus', () => {
  test('a recipe refused locally exits 2', () => {
    assert.equal(failureExitStatus(recipeError(ErrorCode.RecipeTooLarge, 'too many stages', PLACE, '')), EXIT_RECIPE_REFUSED);
  });

  test('a recipe refused by the daemon exits 2, whatever the refusal', () => {
    for (const code of [ErrorCode.RecipeSyntax, ErrorCode.RecipeInvalid, ErrorCode.RecipeTooLarge, ErrorCode.RecipeSetup]) {
      assert.equal(failureExitStatus(new RemoteError(code, 'refused')), EXIT_RECIPE_REFUSED, code);
    }
    assert.equal(failureExitStatus(new RecipeSetupError('fifo exists')), EXIT_RECIPE_REFUSED);
  });

  test('a command the daemon cannot find exits 127 and one it cannot run exits 126', () => {
    assert.equal(failureExitStatus(new RemoteError(ErrorCode.CommandNotFound, 'x')), EXIT_COMMAND_NOT_FOUND);
    assert.equal(failureExitStatus(new CommandNotExecutableError('x')), EXIT_COMMAND_NOT_EXECUTABLE);
  });

  test('every other failure exits 255', () => {
    const special = new Set<string>([ErrorCode.RecipeSyntax, ErrorCode.RecipeInvalid, ErrorCode.RecipeTooLarge, ErrorCode.RecipeSetup, ErrorCode.CommandNotFound, ErrorCode.CommandNotExecutable]);
    for (const code of ALL_CODES.filter((each) => !special.has(each))) assert.equal(failureExitStatus(errorFor(code, 'x')), EXIT_PLUMB_FAILURE, code);
    assert.equal(failureExitStatus(new Error('plain')), EXIT_PLUMB_FAILURE);
  });

  test('a command line that only asked for help exits 0, a bad one 255', () => {
    assert.equal(failureExitStatus(new CommanderError(0, 'commander.helpDisplayed', 'help')), 0);
    assert.equal(failureExitStatus(new CommanderError(1, 'commander.unknownOption', 'bad')), EXIT_PLUMB_FAILURE);
  });

  test('a remote command ended by a signal exits 128 plus its number', () => {
    assert.equal(exitStatusCode({ signal: 'SIGTERM' }), 128 + 15);
    assert.equal(exitStatusCode({ code: 3 }), 3);
  });
});
