// Tests for protocol/session.ts: Start requests of both kinds with exported variables, named pipes, sockets and a
// pty round-trip through the name/value codec; StageEnd, StageBytes and Resize too; every malformed field is refused with
// NP_BAD_REQUEST or NP_BAD_FIELDS, never taken.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, isErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { decodeFields, encodeFields, type Entry } from '../../protocol/fields.js';
import {
  decodeResize,
  decodeStageBytes,
  decodeStageEnd,
  decodeStartRequest,
  encodeResize,
  encodeMintReply,
  encodeStageBytes,
  encodeStageEnd,
  encodeStartReply,
  encodeStartRequest,
  NO_ENDPOINTS,
  type StageEnd,
  type StartRequest,
} from '../../protocol/session.js';
import {
  AEAD_TAG_BYTES,
  Field,
  HEADER_BYTES,
  MAX_ENDPOINTS,
  MAX_EXPORTED_VARIABLES,
  MAX_REPLY_MESSAGE_BYTES,
  MintStatus,
  StartKind,
  StartStatus,
} from '../../protocol/wire.js';

const STREAMS = { stdin: 1, stdout: 3, stderr: 5 };

/** Entries through the real codec, as the daemon would see them. */
function wire(entries: readonly Entry[]): ReturnType<typeof decodeFields> {
  return decodeFields(encodeFields(entries));
}

function refusedWith(code: string): (error: unknown) => boolean {
  return (error) => (error as NetplumbError).code === code;
}

function execEntries(extra: readonly Entry[] = []): Entry[] {
  return [[Field.kind, StartKind.Exec], [Field.arg, 'true'], [Field.stdin, '1'], [Field.stdout, '3'], [Field.stderr, '5'], ...extra];
}

describe('Start requests', () => {
  test('an exec request with env, endpoints and a pty survives the codec unchanged', () => {
    const request: StartRequest = {
      kind: StartKind.Exec,
      argv: ['sh', '-c', 'echo "$A" > x'],
      env: [
        ['A', 'value with = and spaces '],
        ['LC_ALL', 'C'],
      ],
      endpoints: { inFifos: ['in.fifo'], outFifos: ['/srv/out.fifo'], listenSockets: ['r.sock'], connectSockets: ['/run/pg/.s.PGSQL.5432'] },
      pty: { term: 'xterm-256color', cols: 132, rows: 43 },
      ...STREAMS,
    };
    assert.deepEqual(decodeStartRequest(wire(encodeStartRequest(request))), request);
  });

  test('a recipe request keeps its text byte for byte, trailing spaces and newlines included', () => {
    const request: StartRequest = { kind: StartKind.Recipe, text: 'log: cat >>l &  \n\necho "x"  \n', source: 'b.rcp', env: [], endpoints: { ...NO_ENDPOINTS }, ...STREAMS };
    assert.deepEqual(decodeStartRequest(wire(encodeStartRequest(request))), { ...request, endpoints: { inFifos: [], outFifos: [], listenSockets: [], connectSockets: [] } });
  });

  test('a forward names its named pipes and sockets and nothing to run; one with none, or with variables, is refused', () => {
    const request: StartRequest = { kind: StartKind.Forward, user: 'backup', env: [], endpoints: { ...NO_ENDPOINTS, listenSockets: ['r.sock'] }, ...STREAMS };
    assert.deepEqual(decodeStartRequest(wire(encodeStartRequest(request))), { ...request, endpoints: { inFifos: [], outFifos: [], listenSockets: ['r.sock'], connectSockets: [] } });
    const empty: StartRequest = { kind: StartKind.Forward, env: [], endpoints: { ...NO_ENDPOINTS }, ...STREAMS };
    assert.throws(() => decodeStartRequest(wire(encodeStartRequest(empty))), refusedWith(ErrorCode.BadRequest));
    const withEnv: StartRequest = { ...request, env: [['A', 'b']] };
    assert.throws(() => decodeStartRequest(wire(encodeStartRequest(withEnv))), refusedWith(ErrorCode.BadRequest));
  });

  test('an unknown kind is refused', () => {
    const entries = execEntries().map(([name, value]): Entry => [name, name === Field.kind ? 'telepathy' : value]);
    assert.throws(() => decodeStartRequest(wire(entries)), refusedWith(ErrorCode.BadRequest));
  });

  test('an exec request without argv is refused unless it asks for a pty', () => {
    const noArgs = execEntries().filter(([name]) => name !== Field.arg);
    assert.throws(() => decodeStartRequest(wire(noArgs)), refusedWith(ErrorCode.BadRequest));
    const shell = decodeStartRequest(wire([...noArgs, [Field.pty, '1'], [Field.term, 'vt100'], [Field.cols, '80'], [Field.rows, '24']]));
    assert.equal(shell.kind, StartKind.Exec);
    assert.deepEqual(shell.kind === StartKind.Exec ? shell.argv : undefined, []);
  });

  for (const [what, entry] of [
    ['a variable without =', [Field.env, 'NOEQUALS']],
    ['a variable name with a space', [Field.env, 'A B=1']],
    ['a variable name starting with a digit', [Field.env, '1A=1']],
    ['an empty variable name', [Field.env, '=1']],
  ] as const) {
    test(`${what} is refused`, () => {
      assert.throws(() => decodeStartRequest(wire(execEntries([entry]))), refusedWith(ErrorCode.BadRequest));
    });
  }

  test('a variable exported twice is refused', () => {
    assert.throws(() => decodeStartRequest(wire(execEntries([[Field.env, 'A=1'], [Field.env, 'A=2']]))), refusedWith(ErrorCode.BadRequest));
  });

  test(`more than ${MAX_EXPORTED_VARIABLES} variables are refused`, () => {
    const many = Array.from({ length: MAX_EXPORTED_VARIABLES + 1 }, (_, i): Entry => [Field.env, `V${i}=x`]);
    assert.throws(() => decodeStartRequest(wire(execEntries(many))), refusedWith(ErrorCode.BadRequest));
  });

  test(`more than ${MAX_ENDPOINTS} named pipes and sockets are refused`, () => {
    const many = Array.from({ length: MAX_ENDPOINTS + 1 }, (_, i): Entry => [i % 2 === 0 ? Field.infifo : Field.listenSocket, `p${i}`]);
    assert.throws(() => decodeStartRequest(wire(execEntries(many))), refusedWith(ErrorCode.BadRequest));
  });

  test('an empty or over-long endpoint path is refused', () => {
    assert.throws(() => decodeStartRequest(wire(execEntries([[Field.outfifo, '']]))), refusedWith(ErrorCode.BadRequest));
    assert.throws(() => decodeStartRequest(wire(execEntries([[Field.connectSocket, 'x'.repeat(4097)]]))), refusedWith(ErrorCode.BadRequest));
  });

  for (const [what, fields] of [
    ['a terminal type with a space', [[Field.term, 'x term'], [Field.cols, '80'], [Field.rows, '24']]],
    ['a terminal type that is missing', [[Field.cols, '80'], [Field.rows, '24']]],
    ['zero columns', [[Field.term, 'vt100'], [Field.cols, '0'], [Field.rows, '24']]],
    ['too many rows', [[Field.term, 'vt100'], [Field.cols, '80'], [Field.rows, '10001']]],
    ['a size that is not a number', [[Field.term, 'vt100'], [Field.cols, '80x'], [Field.rows, '24']]],
  ] as const) {
    test(`a pty request with ${what} is refused`, () => {
      const entries = execEntries([[Field.pty, '1'], ...(fields as readonly Entry[])]);
      assert.throws(
        () => decodeStartRequest(wire(entries)),
        (error) => [ErrorCode.BadRequest, ErrorCode.BadFields].includes((error as NetplumbError).code as 'NP_BAD_REQUEST'),
      );
    });
  }

  test('a recipe request without source, or with an over-long one, is refused', () => {
    const base: Entry[] = [[Field.kind, StartKind.Recipe], [Field.recipe, 'true\n'], [Field.stdin, '1'], [Field.stdout, '3'], [Field.stderr, '5']];
    assert.throws(() => decodeStartRequest(wire(base)), refusedWith(ErrorCode.BadFields));
    assert.throws(() => decodeStartRequest(wire([...base, [Field.source, 's'.repeat(1025)]])), refusedWith(ErrorCode.BadRequest));
  });
});

describe('StageEnd and Resize', () => {
  const ends: StageEnd[] = [
    { stage: 4, name: 'timed', line: 9, status: { code: 0 }, startedAt: 1_733_300_000_000, endedAt: 1_733_300_000_250 },
    { stage: 0, name: 'log', line: 3, status: { code: 0 } },
    { stage: 4, name: 'line 9', line: 9, status: { signal: 'SIGPIPE' } },
    { stage: 2, name: 'tar', line: 5, status: { error: ErrorCode.CommandNotFound, message: 'command not found: tarr', code: 127 } },
  ];
  for (const end of ends) {
    test(`StageEnd ${JSON.stringify(end.status)} survives the codec`, () => {
      assert.deepEqual(decodeStageEnd(wire(encodeStageEnd(end)), isErrorCode), end);
    });
  }

  test('a StageEnd with an unknown error code is reported as NP_INTERNAL, never taken as given', () => {
    const entries: Entry[] = [[Field.stage, '1'], [Field.name, 'x'], [Field.line, '2'], [Field.code, '1'], [Field.error, 'NP_MADE_UP'], [Field.message, 'm']];
    const end = decodeStageEnd(wire(entries), isErrorCode);
    assert.deepEqual(end.status, { error: ErrorCode.Internal, message: 'm', code: 1 });
  });

  for (const [what, entries] of [
    ['no name', [[Field.stage, '1'], [Field.line, '2'], [Field.code, '0']]],
    ['an empty name', [[Field.stage, '1'], [Field.name, ''], [Field.line, '2'], [Field.code, '0']]],
    ['line 0', [[Field.stage, '1'], [Field.name, 'x'], [Field.line, '0'], [Field.code, '0']]],
    ['a negative stage', [[Field.stage, '-1'], [Field.name, 'x'], [Field.line, '2'], [Field.code, '0']]],
    ['a status over 255', [[Field.stage, '1'], [Field.name, 'x'], [Field.line, '2'], [Field.code, '256']]],
    ['a malformed signal', [[Field.stage, '1'], [Field.name, 'x'], [Field.line, '2'], [Field.signal, 'kill']]],
    ['an error without its message', [[Field.stage, '1'], [Field.name, 'x'], [Field.line, '2'], [Field.code, '1'], [Field.error, 'NP_SPAWN_FAILED']]],
  ] as const) {
    test(`a StageEnd with ${what} is refused`, () => {
      assert.throws(
        () => decodeStageEnd(wire(entries as readonly Entry[]), isErrorCode),
        (error) => [ErrorCode.BadRequest, ErrorCode.BadFields].includes((error as NetplumbError).code as 'NP_BAD_REQUEST'),
      );
    });
  }

  test('StageBytes round-trips with any of its counts absent, and refuses counts that are not whole bytes', () => {
    for (const bytes of [{ stage: 3, bytesIn: 0, bytesOut: 2 ** 40, bytesErr: 12 }, { stage: 0, bytesOut: 5 }, { stage: 7 }]) {
      assert.deepEqual(decodeStageBytes(wire(encodeStageBytes(bytes))), bytes);
    }
    for (const entries of [[[Field.stage, '1'], [Field.bytesIn, '-1']], [[Field.stage, '1'], [Field.bytesOut, '1.5']], [[Field.bytesErr, '3']], [[Field.stage, '1'], [Field.bytesIn, `${2 ** 60}`]]] as const) {
      assert.throws(() => decodeStageBytes(wire(entries as readonly Entry[])), refusedWith(ErrorCode.BadFields), JSON.stringify(entries));
    }
  });

  test('a recipe Start or a part asks for counts with count-bytes=1 only', () => {
    const recipe: StartRequest = { kind: StartKind.Recipe, source: 'r.rcp', text: 'true\n', countBytes: true, env: [], endpoints: NO_ENDPOINTS, ...STREAMS };
    assert.deepEqual(decodeStartRequest(wire(encodeStartRequest(recipe))), recipe);
    const part: StartRequest = { kind: StartKind.Part, run: 'a'.repeat(32), machines: ['db1'], source: 'r.rcp', text: '@db1 true\n', countBytes: true, env: [], endpoints: NO_ENDPOINTS, ...STREAMS };
    assert.deepEqual(decodeStartRequest(wire(encodeStartRequest(part))), part);
    const { countBytes: _asked, ...uncounted } = recipe;
    assert.deepEqual(decodeStartRequest(wire(encodeStartRequest(uncounted))), uncounted);
    const entries = encodeStartRequest(uncounted);
    for (const value of ['0', 'yes', '']) {
      assert.throws(() => decodeStartRequest(wire([...entries, [Field.countBytes, value]])), refusedWith(ErrorCode.BadRequest), value);
    }
  });

  test('Resize round-trips and refuses sizes out of range', () => {
    assert.deepEqual(decodeResize(wire(encodeResize({ cols: 200, rows: 60 }))), { cols: 200, rows: 60 });
    assert.throws(() => decodeResize(wire([[Field.cols, '0'], [Field.rows, '24']])), refusedWith(ErrorCode.BadFields));
    assert.throws(() => decodeResize(wire([[Field.cols, '80']])), refusedWith(ErrorCode.BadFields));
  });
});

describe('reply messages', () => {
  /** The smallest max-packet-bytes a peer may announce. */
  const SMALLEST_PACKET_BYTES = 4096;
  const quoted = `command not found: ${'x'.repeat(5000)}\u{1f600}`;
  const replies: [string, Entry[]][] = [
    ['a refused Start', encodeStartReply({ status: StartStatus.Refused, code: ErrorCode.CommandNotFound, message: quoted })],
    ['a refused MintKey', encodeMintReply({ status: MintStatus.Refused, code: ErrorCode.CommandNotFound, message: quoted })],
    ['a StageEnd', encodeStageEnd({ stage: 0, name: 'line 1', line: 1, status: { error: ErrorCode.CommandNotFound, message: quoted, code: 127 } })],
  ];
  for (const [what, entries] of replies) {
    test(`${what} quoting a long program name is cut to fit the smallest packet a peer may announce`, () => {
      const payload = encodeFields(entries);
      assert.ok(HEADER_BYTES + payload.length + AEAD_TAG_BYTES <= SMALLEST_PACKET_BYTES, `${payload.length} bytes`);
      const message = decodeFields(payload).require(Field.message);
      assert.ok(Buffer.byteLength(message) <= MAX_REPLY_MESSAGE_BYTES);
      assert.ok(quoted.startsWith(message.slice(0, -3)));
    });
  }

  test('a short message is sent as it is', () => {
    const entries = encodeStartReply({ status: StartStatus.Refused, code: ErrorCode.CommandNotFound, message: 'command not found: tarr' });
    assert.equal(wire(entries).require(Field.message), 'command not found: tarr');
  });
});
