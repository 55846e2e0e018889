// Tests for the MintKey messages of protocol/session.ts and the `user` field of Start: requests binding a command or
// a recipe and replies carrying a key or a refusal round-trip through the name/value codec; a lifetime out of
// range, an empty command, a malformed user name, an unknown kind or status are refused, never taken.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, isErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { decodeFields, encodeFields, type Entry } from '../../protocol/fields.js';
import { encodePrivateKeyPem, formatPublicKeyLine, generateIdentity } from '../../protocol/keys.js';
import {
  decodeMintReply,
  decodeMintRequest,
  decodeStartRequest,
  encodeMintReply,
  encodeMintRequest,
  encodeStartRequest,
  type MintReply,
  type MintRequest,
  type StartRequest,
} from '../../protocol/session.js';
import { Field, MAX_ONE_TIME_KEY_SECONDS, MintStatus, StartKind } from '../../protocol/wire.js';

/** Entries through the real codec, as the other side would see them. */
function wire(entries: readonly Entry[]): ReturnType<typeof decodeFields> {
  return decodeFields(encodeFields(entries));
}

function refusedWith(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as NetplumbError).code, code, String(error));
    return true;
  };
}

/** Either code of a refused field: the codec's own (range, syntax) or the request's (meaning). */
function refusedAsMalformed(error: unknown): boolean {
  const code = (error as NetplumbError).code;
  assert.ok(code === ErrorCode.BadFields || code === ErrorCode.BadRequest, String(error));
  return true;
}

const EXEC_MINT: MintRequest = {
  binding: {
    kind: StartKind.Exec,
    argv: ['sh', '-c', 'cat in.fifo > "out put"  '],
    user: 'np-runas',
    endpoints: { inFifos: ['in.fifo'], outFifos: ['/srv/out.fifo'], listenSockets: ['l.sock'], connectSockets: ['/run/pg/.s.PGSQL.5432'] },
  },
  lifetimeSeconds: 600,
};

const RECIPE_MINT: MintRequest = {
  binding: { kind: StartKind.Recipe, text: 'sort <in.fifo >sorted  \n\n', source: 'jobs/sort.rcp', endpoints: { inFifos: ['in.fifo'], outFifos: [], listenSockets: [], connectSockets: [] } },
  lifetimeSeconds: 1,
};

/** The entries of a good exec MintKey request with the named field's value replaced (or removed, for undefined). */
function execMintWith(name: string, value: string | undefined): Entry[] {
  const entries = encodeMintRequest(EXEC_MINT).filter(([entryName]) => entryName !== name);
  return value === undefined ? entries : [...entries, [name, value]];
}

describe('MintKey requests', () => {
  test('a command binding with a user and every kind of endpoint survives the codec unchanged', () => {
    assert.deepEqual(decodeMintRequest(wire(encodeMintRequest(EXEC_MINT))), EXEC_MINT);
  });

  test('a recipe binding without a user keeps its text byte for byte and has no user after decoding', () => {
    const decoded = decodeMintRequest(wire(encodeMintRequest(RECIPE_MINT)));
    assert.deepEqual(decoded, RECIPE_MINT);
    assert.ok(!('user' in decoded.binding));
  });

  test('the longest lifetime is accepted', () => {
    const request = { ...EXEC_MINT, lifetimeSeconds: MAX_ONE_TIME_KEY_SECONDS };
    assert.equal(MAX_ONE_TIME_KEY_SECONDS, 7 * 24 * 3600);
    assert.equal(decodeMintRequest(wire(encodeMintRequest(request))).lifetimeSeconds, MAX_ONE_TIME_KEY_SECONDS);
  });

  for (const [what, value] of [
    ['a lifetime of 0', '0'],
    ['a lifetime one second over the longest', String(MAX_ONE_TIME_KEY_SECONDS + 1)],
    ['a lifetime of ten years', String(10 * 365 * 24 * 3600)],
    ['a negative lifetime', '-60'],
    ['a lifetime that is not a number', 'ten minutes'],
    ['a lifetime with a unit', '10m'],
    ['a fractional lifetime', '1.5'],
    ['a lifetime with a leading zero', '0600'],
    ['an empty lifetime', ''],
    ['a missing lifetime', undefined],
  ] as const) {
    test(`${what} is refused`, () => {
      assert.throws(() => decodeMintRequest(wire(execMintWith(Field.lifetime, value))), refusedWith(ErrorCode.BadFields));
    });
  }

  test('a repeated lifetime is refused', () => {
    assert.throws(() => decodeMintRequest(wire([...encodeMintRequest(EXEC_MINT), [Field.lifetime, '60']])), refusedWith(ErrorCode.BadFields));
  });

  test('an empty argv, or one whose program is empty, is refused', () => {
    const noArgs = encodeMintRequest(EXEC_MINT).filter(([name]) => name !== Field.arg);
    assert.throws(() => decodeMintRequest(wire(noArgs)), refusedWith(ErrorCode.BadRequest));
    const emptyProgram: MintRequest = { ...EXEC_MINT, binding: { ...EXEC_MINT.binding, kind: StartKind.Exec, argv: ['', 'x'] } };
    assert.throws(() => decodeMintRequest(wire(encodeMintRequest(emptyProgram))), refusedWith(ErrorCode.BadRequest));
  });

  test('empty words after the program are kept: they are part of the bound command', () => {
    const request: MintRequest = { ...EXEC_MINT, binding: { ...EXEC_MINT.binding, kind: StartKind.Exec, argv: ['printf', '%s|', '', ' '] } };
    assert.deepEqual(decodeMintRequest(wire(encodeMintRequest(request))), request);
  });

  for (const [what, user] of [
    ['an empty user name', ''],
    ['a user name with a slash', '../root'],
    ['a user name with a space', 'np runas'],
    ['a user name with a colon', 'root:0'],
    ['a user name starting with a dash', '-root'],
    ['a user name with a comma', 'root,np'],
    ['a user name of 65 characters', 'u'.repeat(65)],
    ['a user name with a newline', 'root\n'],
  ] as const) {
    test(`${what} is refused in a MintKey request`, () => {
      assert.throws(() => decodeMintRequest(wire(execMintWith(Field.user, user))), refusedWith(ErrorCode.BadRequest));
    });
  }

  test('user names of the usual shapes are accepted: dots, dashes, digits, underscores, a Samba-style trailing $', () => {
    for (const user of ['np-runas', 'a.b_c', '_apt', 'u'.repeat(64), 'host01$', '0day']) {
      const decoded = decodeMintRequest(wire(execMintWith(Field.user, user)));
      assert.equal(decoded.binding.user, user);
    }
  });

  test('a repeated user is refused', () => {
    assert.throws(() => decodeMintRequest(wire([...encodeMintRequest(EXEC_MINT), [Field.user, 'root']])), refusedWith(ErrorCode.BadFields));
  });

  test('an unknown kind, or none, is refused', () => {
    assert.throws(() => decodeMintRequest(wire(execMintWith(Field.kind, 'shell'))), refusedWith(ErrorCode.BadRequest));
    assert.throws(() => decodeMintRequest(wire(execMintWith(Field.kind, undefined))), refusedAsMalformed);
  });

  test('a recipe binding without text, or with an empty or overlong source name, is refused', () => {
    const entries = encodeMintRequest(RECIPE_MINT);
    const without = (name: string): Entry[] => entries.filter(([entryName]) => entryName !== name);
    assert.throws(() => decodeMintRequest(wire(without(Field.recipe))), refusedWith(ErrorCode.BadFields));
    assert.throws(() => decodeMintRequest(wire([...without(Field.source), [Field.source, '']])), refusedWith(ErrorCode.BadRequest));
    assert.throws(() => decodeMintRequest(wire([...without(Field.source), [Field.source, 'r'.repeat(1025)]])), refusedWith(ErrorCode.BadRequest));
  });
});

describe('MintKey replies', () => {
  // Made at test time: the codec must carry a real PEM (multi-line) and a real host key line.
  const oneTimeKey = generateIdentity('ed25519', 'one-time key of the codec tests');
  const MINTED: MintReply = {
    status: MintStatus.Minted,
    key: {
      privateKeyPem: encodePrivateKeyPem(oneTimeKey),
      fingerprint: oneTimeKey.publicIdentity.fingerprint,
      expiresAt: Date.UTC(2030, 0, 1, 12),
      hostKey: formatPublicKeyLine(generateIdentity('ed25519', 'host of the codec tests').publicIdentity),
      user: 'np-runas',
    },
  };

  test('a minted key survives the codec unchanged, PEM newlines included', () => {
    assert.deepEqual(decodeMintReply(wire(encodeMintReply(MINTED)), isErrorCode), MINTED);
  });

  test('a refusal keeps its code and message', () => {
    const reply: MintReply = { status: MintStatus.Refused, code: ErrorCode.NotPermitted, message: 'only a controller may mint one-time keys' };
    assert.deepEqual(decodeMintReply(wire(encodeMintReply(reply)), isErrorCode), reply);
  });

  test('a refusal with a code this side does not know becomes NP_INTERNAL, message kept', () => {
    const entries: Entry[] = [[Field.status, MintStatus.Refused], [Field.code, 'NP_FROM_THE_FUTURE'], [Field.message, 'why']];
    assert.deepEqual(decodeMintReply(wire(entries), isErrorCode), { status: MintStatus.Refused, code: ErrorCode.Internal, message: 'why' });
  });

  test('an unknown status is refused', () => {
    const entries = encodeMintReply(MINTED).map(([name, value]): Entry => [name, name === Field.status ? 'maybe' : value]);
    assert.throws(() => decodeMintReply(wire(entries), isErrorCode), refusedWith(ErrorCode.BadRequest));
  });

  for (const field of [Field.key, Field.fingerprint, Field.expires, Field.hostKey, Field.user]) {
    test(`a minted reply without ${field} is refused`, () => {
      const entries = encodeMintReply(MINTED).filter(([name]) => name !== field);
      assert.throws(() => decodeMintReply(wire(entries), isErrorCode), refusedWith(ErrorCode.BadFields));
    });
  }

  for (const expires of ['soon', '-1', '1e12', '']) {
    test(`a minted reply with expiry ${JSON.stringify(expires)} is refused`, () => {
      const entries = encodeMintReply(MINTED).map(([name, value]): Entry => [name, name === Field.expires ? expires : value]);
      assert.throws(() => decodeMintReply(wire(entries), isErrorCode), refusedWith(ErrorCode.BadFields));
    });
  }
});

describe('the user field of Start', () => {
  const STREAMS = { stdin: 1, stdout: 3, stderr: 5 };
  const NO_ENDPOINTS = { inFifos: [], outFifos: [], listenSockets: [], connectSockets: [] };

  test('an exec and a recipe Start with a user survive the codec, and without one decode with none', () => {
    const exec: StartRequest = { kind: StartKind.Exec, user: 'np-runas', argv: ['id', '-u'], env: [], endpoints: NO_ENDPOINTS, ...STREAMS };
    const recipe: StartRequest = { kind: StartKind.Recipe, user: 'root', text: 'id -u\n', source: 'id.rcp', env: [], endpoints: NO_ENDPOINTS, ...STREAMS };
    assert.deepEqual(decodeStartRequest(wire(encodeStartRequest(exec))), exec);
    assert.deepEqual(decodeStartRequest(wire(encodeStartRequest(recipe))), recipe);
    const { user: _dropped, ...withoutUser } = exec;
    const decoded = decodeStartRequest(wire(encodeStartRequest(withoutUser)));
    assert.ok(!('user' in decoded));
  });

  // `.` and `..` would name directories where an account's spool is made.
  for (const user of ['', '.', '..', '../etc', 'a b', '-x', 'root:0', 'u'.repeat(65)]) {
    test(`a Start with user ${JSON.stringify(user)} is refused`, () => {
      const entries: Entry[] = [[Field.kind, StartKind.Exec], [Field.arg, 'true'], [Field.stdin, '1'], [Field.stdout, '3'], [Field.stderr, '5'], [Field.user, user]];
      assert.throws(() => decodeStartRequest(wire(entries)), refusedWith(ErrorCode.BadRequest));
    });
  }

  test('a Start with two users is refused', () => {
    const entries: Entry[] = [[Field.kind, StartKind.Exec], [Field.arg, 'true'], [Field.stdin, '1'], [Field.stdout, '3'], [Field.stderr, '5'], [Field.user, 'a'], [Field.user, 'b']];
    assert.throws(() => decodeStartRequest(wire(entries)), refusedWith(ErrorCode.BadFields));
  });
});
