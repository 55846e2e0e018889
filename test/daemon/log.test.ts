// The daemon's log lines: every string that came from a peer or a file is escaped before any format sees it (message,
// context values, argv arrays, child-logger context), and plain values read as before.

import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createLogger, escapeForLog } from '../../daemon/log.js';

/** Logs through `use` and returns the lines written. */
async function linesOf(use: (log: ReturnType<typeof createLogger>) => void): Promise<string[]> {
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (chunk: Buffer) => chunks.push(chunk));
  const log = createLogger('debug', sink);
  use(log);
  await new Promise((resolve) => setImmediate(resolve));
  return Buffer.concat(chunks).toString('utf8').split('\n').filter((line) => line !== '');
}

test('escapeForLog writes C0 and C1 controls, DEL and reordering marks as escapes', () => {
  assert.equal(escapeForLog('a\x1b[31mb'), 'a\\x1b[31mb');
  assert.equal(escapeForLog('\b\x00\x7f'), '\\x08\\x00\\x7f');
  assert.equal(escapeForLog('\n\r\t'), '\\n\\r\\t');
  assert.equal(escapeForLog('\u009b2J'), '\\x9b2J');
  assert.equal(escapeForLog('\u202eevil\u2066\u2028'), '\\u202eevil\\u2066\\u2028');
});

test('escapeForLog doubles a backslash, so an escape in the log always means an escape', () => {
  assert.equal(escapeForLog('C:\\x1b'), 'C:\\\\x1b');
});

test('escapeForLog leaves printable text alone, non-ASCII included', () => {
  assert.equal(escapeForLog('/srv/backup/ünïcode täxt 日本'), '/srv/backup/ünïcode täxt 日本');
});

test('a line escapes the message, context values, arrays and child context alike', async () => {
  const [line] = await linesOf((log) =>
    log.child({ peer: 'host\x1b[2J' }).warn('refused \x1b]0;title\x07', { reason: 'bad\bname', argv: ['rm', '-rf\r/'], nested: { path: '/tmp/\x1bx' } }),
  );
  assert.ok(line !== undefined);
  assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f]/);
  assert.match(line, / warn refused \\x1b\]0;title\\x07 /);
  assert.match(line, / peer=host\\x1b\[2J/);
  assert.match(line, / reason=bad\\x08name/);
  assert.match(line, / argv=\["rm","-rf\\r\/"\]/);
  assert.match(line, / nested=\{"path":"\/tmp\/\\x1bx"\}/);
});

test('a peer cannot add a line: a newline in a value stays in its line', async () => {
  const lines = await linesOf((log) => log.info('handshake failed', { reason: 'x\n2026-01-01T00:00:00.000Z info client authenticated' }));
  assert.equal(lines.length, 1);
  assert.match(lines[0] as string, /reason="x\\n2026-01-01T00:00:00.000Z info client authenticated"/);
});

test('plain values read as before: bare words, quoted phrases, numbers', async () => {
  const [line] = await linesOf((log) => log.info('connection closed', { code: 'NP_TOO_MANY_STREAMS', reason: 'two words', pid: 42, pty: false }));
  assert.match(line as string, / info connection closed code=NP_TOO_MANY_STREAMS reason="two words" pid=42 pty=false$/);
});

test('a quote inside a quoted value is escaped', async () => {
  const [line] = await linesOf((log) => log.info('x', { reason: 'say "hi" now' }));
  assert.match(line as string, / reason="say \\"hi\\" now"$/);
});
