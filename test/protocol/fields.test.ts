// Tests for protocol/fields: the name/value codec round-trips byte-exactly (values keep trailing spaces and any
// UTF-8), and every malformed payload or accessor misuse is NP_BAD_FIELDS.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { MAX_ENTRIES, decodeFields, encodeFields, type Entry } from '../../protocol/fields.js';

function withCode(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: unknown }).code, code);
    return true;
  };
}

const badFields = withCode(ErrorCode.BadFields);

function raw(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

describe('name/value codec', () => {
  test('entries round-trip in order, with the exact bytes', () => {
    const entries: Entry[] = [
      ['protocol', 'TAP1/1'],
      ['arg', 'ls'],
      ['arg', '-la'],
      ['empty', ''],
      ['x-1', 'a=b=c'],
    ];
    const bytes = encodeFields(entries);
    assert.deepEqual(bytes, raw('protocol=TAP1/1\0arg=ls\0arg=-la\0empty=\0x-1=a=b=c\0\0'));
    const decoded = decodeFields(bytes);
    assert.deepEqual(decoded.entries, entries);
    assert.deepEqual(encodeFields(decoded.entries), bytes);
  });

  test('an empty list is a single NUL', () => {
    assert.deepEqual(encodeFields([]), Buffer.from([0]));
    assert.deepEqual(decodeFields(Buffer.from([0])).entries, []);
  });

  test('values keep trailing and leading spaces', () => {
    const entries: Entry[] = [['arg', '  two spaces  '], ['message', 'tab\tand newline\n ']];
    assert.deepEqual(decodeFields(encodeFields(entries)).entries, entries);
  });

  test('values carry multi-byte UTF-8 unchanged', () => {
    const entries: Entry[] = [['arg', 'grüße 😀 日本 \ufffd']];
    const bytes = encodeFields(entries);
    assert.deepEqual(decodeFields(bytes).entries, entries);
  });

  test('accessors read single, repeated, numeric and list fields', () => {
    const fields = decodeFields(encodeFields([
      ['stream', '7'],
      ['arg', 'a'],
      ['arg', 'b'],
      ['ciphers', 'aes-256-gcm,chacha20-poly1305'],
    ]));
    assert.equal(fields.require('stream'), '7');
    assert.equal(fields.requireInt('stream', 1, 10), 7);
    assert.equal(fields.optional('missing'), undefined);
    assert.equal(fields.optionalInt('missing', 0, 1), undefined);
    assert.deepEqual(fields.all('arg'), ['a', 'b']);
    assert.deepEqual(fields.requireList('ciphers'), ['aes-256-gcm', 'chacha20-poly1305']);
    assert.deepEqual(fields.without('arg').entries, [
      ['stream', '7'],
      ['ciphers', 'aes-256-gcm,chacha20-poly1305'],
    ]);
  });

  test('refuses to encode a name outside [a-z0-9-]', () => {
    assert.throws(() => encodeFields([['Upper', 'x']]), badFields);
    assert.throws(() => encodeFields([['a=b', 'x']]), badFields);
    assert.throws(() => encodeFields([['', 'x']]), badFields);
    assert.throws(() => encodeFields([['n'.repeat(65), 'x']]), badFields);
  });

  test('refuses to encode a value holding NUL', () => {
    assert.throws(() => encodeFields([['arg', 'a\0b']]), badFields);
  });

  const malformed: [string, Buffer][] = [
    ['an empty payload', Buffer.alloc(0)],
    ['a list without the closing empty entry', raw('name=value\0')],
    ['an entry without its NUL', raw('name=value')],
    ['an entry without "="', raw('name\0\0')],
    ['an entry with an empty name', raw('=value\0\0')],
    ['a name with an upper-case letter', raw('Name=value\0\0')],
    ['a name with a space', raw('na me=value\0\0')],
    ['a name longer than 64 bytes', raw(`${'n'.repeat(65)}=value\0\0`)],
    ['a name with a non-ASCII byte', Buffer.concat([raw('n'), Buffer.from([0xc3, 0xa9]), raw('=v\0\0')])],
    ['bytes after the closing entry', raw('name=value\0\0x')],
    ['a second closing entry', raw('name=value\0\0\0')],
    ['an entry after the closing entry', raw('a=1\0\0b=2\0\0')],
    ['invalid UTF-8 in a value', Buffer.concat([raw('arg='), Buffer.from([0xff, 0xfe]), raw('\0\0')])],
    ['a truncated UTF-8 sequence in a value', Buffer.concat([raw('arg=a'), Buffer.from([0xe6, 0x97]), raw('\0\0')])],
    ['an overlong UTF-8 encoding in a value', Buffer.concat([raw('arg='), Buffer.from([0xc0, 0xaf]), raw('\0\0')])],
    ['a UTF-8 encoded surrogate in a value', Buffer.concat([raw('arg='), Buffer.from([0xed, 0xa0, 0x80]), raw('\0\0')])],
  ];
  for (const [what, payload] of malformed) {
    test(`refuses ${what} with NP_BAD_FIELDS`, () => {
      assert.throws(() => decodeFields(payload), badFields);
    });
  }

  test(`refuses more than ${MAX_ENTRIES} entries`, () => {
    const many = Array.from({ length: MAX_ENTRIES + 1 }, (): Entry => ['arg', 'x']);
    assert.throws(() => decodeFields(Buffer.concat([raw('arg=x\0'.repeat(MAX_ENTRIES + 1)), Buffer.from([0])])), badFields);
    assert.doesNotThrow(() => decodeFields(encodeFields(many.slice(1))));
  });

  test('a repeated single-valued field is malformed', () => {
    const fields = decodeFields(raw('stream=1\0stream=1\0\0'));
    assert.throws(() => fields.optional('stream'), badFields);
    assert.throws(() => fields.require('stream'), badFields);
    assert.throws(() => fields.requireInt('stream', 0, 10), badFields);
  });

  test('a missing required field is malformed', () => {
    assert.throws(() => decodeFields(raw('\0')).require('stream'), badFields);
  });

  const badIntegers = ['', '-1', '+1', '01', '1.0', '1e3', ' 1', '1 ', '0x10', '99999999999999999'];
  for (const value of badIntegers) {
    test(`refuses ${JSON.stringify(value)} as an integer`, () => {
      const fields = decodeFields(encodeFields([['credit', value]]));
      assert.throws(() => fields.requireInt('credit', 0, Number.MAX_SAFE_INTEGER), badFields);
    });
  }

  test('refuses an integer outside its range', () => {
    const fields = decodeFields(encodeFields([['credit', '11']]));
    assert.throws(() => fields.requireInt('credit', 0, 10), badFields);
    assert.throws(() => fields.requireInt('credit', 12, 20), badFields);
    assert.equal(fields.requireInt('credit', 11, 11), 11);
  });
});
