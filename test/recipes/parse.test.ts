// Tests for recipes/parse (and so recipes/recipe.peggy): every construct of the language gives the expected syntax
// tree, and every syntax error is a RecipeError NP_RECIPE_SYNTAX at the line and column of the mistake.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, RecipeError } from '../../protocol/errors.js';
import type { CommandNode, RecipeAst, RedirectionNode } from '../../recipes/ast.js';
import { parseRecipe } from '../../recipes/parse.js';

function commands(ast: RecipeAst): CommandNode[] {
  return ast.items.filter((item): item is CommandNode => item.kind === 'command');
}

/** The argv words of each command, redirections left out. */
function words(text: string): string[][] {
  return commands(parseRecipe(text, 't.rcp')).map((command) =>
    command.elements.flatMap((element) => (element.kind === 'word' ? [element.value] : [])),
  );
}

function redirections(text: string): RedirectionNode[] {
  return commands(parseRecipe(text, 't.rcp')).flatMap((command) =>
    command.elements.filter((element): element is RedirectionNode => element.kind === 'redirection'),
  );
}

/** Parses text expecting a syntax error; returns it for its location. */
function syntaxError(text: string): RecipeError {
  try {
    parseRecipe(text, 't.rcp');
  } catch (error) {
    assert.ok(error instanceof RecipeError, `not a RecipeError: ${String(error)}`);
    assert.equal(error.code, ErrorCode.RecipeSyntax);
    return error;
  }
  assert.fail(`parsed without error: ${JSON.stringify(text)}`);
}

function assertSyntaxErrorAt(text: string, line: number, column: number): RecipeError {
  const error = syntaxError(text);
  assert.deepEqual(error.location, { source: 't.rcp', line, column }, error.render());
  return error;
}

describe('parseRecipe: lines, words and quoting', () => {
  test('splits a command into words at spaces and tabs', () => {
    assert.deepEqual(words('tar  -cf\t- /etc'), [['tar', '-cf', '-', '/etc']]);
  });

  test('gives one command per line and skips blank and comment lines', () => {
    assert.deepEqual(words('\n# a comment\necho one   # trailing comment\n\n   \n\techo two\n'), [['echo', 'one'], ['echo', 'two']]);
  });

  test('keeps # inside a word or inside quotes', () => {
    assert.deepEqual(words(`echo a#b '#c' "#d"`), [['echo', 'a#b', '#c', '#d']]);
  });

  test('accepts CRLF line ends', () => {
    assert.deepEqual(words('echo one\r\necho two\r\n'), [['echo', 'one'], ['echo', 'two']]);
  });

  test('takes single-quoted text literally, backslashes and newlines included', () => {
    assert.deepEqual(words(`printf 'a \\n "b" $c\nd'`), [['printf', 'a \\n "b" $c\nd']]);
  });

  test('removes the backslash before " \\ $ and ` inside double quotes and keeps any other', () => {
    assert.deepEqual(words('echo "q\\" s\\\\ d\\$ b\\` n\\n"'), [['echo', 'q" s\\ d$ b` n\\n']]);
  });

  test('removes a backslash-newline inside double quotes and keeps a plain newline', () => {
    assert.deepEqual(words('echo "a\\\nb" "c\nd"'), [['echo', 'ab', 'c\nd']]);
  });

  test('joins quoted and unquoted parts into one word', () => {
    assert.deepEqual(words(`echo 'a b'"c"d\\ e`), [['echo', 'a bcd e']]);
  });

  test('gives an empty word for empty quotes', () => {
    assert.deepEqual(words(`printf '%s|' '' ""`), [['printf', '%s|', '', '']]);
  });

  test('makes any character ordinary after a backslash outside quotes', () => {
    assert.deepEqual(words('echo \\> \\| \\& \\; \\# \\\' \\" \\\\'), [['echo', '>', '|', '&', ';', '#', "'", '"', '\\']]);
  });

  test('joins lines at a backslash-newline, inside a word and between words', () => {
    assert.deepEqual(words('echo ab\\\ncd \\\n  ef\\\r\ngh'), [['echo', 'abcd', 'efgh']]);
  });

  test('treats $, *, ?, ~, %, @, ` and parentheses as plain characters', () => {
    assert.deepEqual(words('echo $HOME *.txt a? ~ %s user@host `x` (y)'), [['echo', '$HOME', '*.txt', 'a?', '~', '%s', 'user@host', '`x`', '(y)']]);
  });

  test('gives the offset of every word', () => {
    const [command] = commands(parseRecipe('\n  echo "a b" c', 't.rcp'));
    assert.deepEqual(
      command?.elements.map((element) => element.offset),
      [3, 8, 14],
    );
  });
});

describe('parseRecipe: labels, fifo declarations and terminators', () => {
  test('reads a label before a command', () => {
    const [command] = commands(parseRecipe('  log: cat >>backup.log &', 't.rcp'));
    assert.deepEqual(command?.label, { name: 'log', offset: 2 });
    assert.equal(command?.offset, 2);
  });

  test('reads a label without a space after its colon', () => {
    const [command] = commands(parseRecipe('up:tr a-z A-Z', 't.rcp'));
    assert.equal(command?.label?.name, 'up');
    assert.deepEqual(words('up:tr a-z A-Z'), [['tr', 'a-z', 'A-Z']]);
  });

  test('takes a quoted first word with a colon as a program, not a label', () => {
    const [command] = commands(parseRecipe(`'a:b' c`, 't.rcp'));
    assert.equal(command?.label, null);
    assert.deepEqual(words(`'a:b' c`), [['a:b', 'c']]);
  });

  test('reads a fifo declaration with several names', () => {
    const ast = parseRecipe('fifo one two.txt _3  # pipes\n', 't.rcp');
    assert.deepEqual(ast.items, [
      {
        kind: 'fifo-declaration',
        offset: 0,
        names: [
          { name: 'one', offset: 5 },
          { name: 'two.txt', offset: 9 },
          { name: '_3', offset: 17 },
        ],
      },
    ]);
  });

  test("runs a program called fifo when it is quoted or followed by more letters", () => {
    assert.deepEqual(words(`'fifo' a\n\\fifo b\nfifos c`), [['fifo', 'a'], ['fifo', 'b'], ['fifos', 'c']]);
  });

  test('reads fifo: as a label', () => {
    const [command] = commands(parseRecipe('fifo: cat', 't.rcp'));
    assert.equal(command?.label?.name, 'fifo');
  });

  test('reads a trailing & and | with their offsets, also before a comment', () => {
    const ast = commands(parseRecipe('a &\nb |   # to c\nc\nd&', 't.rcp'));
    assert.deepEqual(
      ast.map((command) => command.terminator),
      [{ kind: '&', offset: 2 }, { kind: '|', offset: 6 }, null, { kind: '&', offset: 20 }],
    );
  });
});

describe('parseRecipe: redirections', () => {
  test('reads every output operator to a file, with and without a space before the target', () => {
    const found = redirections('cmd >a >> b 2>c 2>> d').map(({ fd, op, target }) => ({ fd, op, target }));
    assert.deepEqual(found, [
      { fd: 1, op: '>', target: { kind: 'file', path: 'a', offset: 5 } },
      { fd: 1, op: '>>', target: { kind: 'file', path: 'b', offset: 10 } },
      { fd: 2, op: '>', target: { kind: 'file', path: 'c', offset: 14 } },
      { fd: 2, op: '>>', target: { kind: 'file', path: 'd', offset: 20 } },
    ]);
  });

  test('reads < from a file, %stdin and a fifo', () => {
    const found = redirections('a <in.txt\nb < %stdin\nc <@f').map(({ fd, op, target }) => ({ fd, op, target }));
    assert.deepEqual(found, [
      { fd: 0, op: '<', target: { kind: 'file', path: 'in.txt', offset: 3 } },
      { fd: 0, op: '<', target: { kind: 'label', name: 'stdin', offset: 14 } },
      { fd: 0, op: '<', target: { kind: 'fifo', name: 'f', offset: 24 } },
    ]);
  });

  test('reads label and fifo targets of stdout and stderr', () => {
    const found = redirections('a >%log 2>%log\nb >@p 2> @q').map(({ fd, target }) => ({ fd, target }));
    assert.deepEqual(found, [
      { fd: 1, target: { kind: 'label', name: 'log', offset: 3 } },
      { fd: 2, target: { kind: 'label', name: 'log', offset: 10 } },
      { fd: 1, target: { kind: 'fifo', name: 'p', offset: 18 } },
      { fd: 2, target: { kind: 'fifo', name: 'q', offset: 24 } },
    ]);
  });

  test('reads 2>&1 and >&2 as duplications, in order', () => {
    const found = redirections('cmd >f 2>&1 >&2').map(({ fd, op, target, offset }) => ({ fd, op, target, offset }));
    assert.deepEqual(found, [
      { fd: 1, op: '>', target: { kind: 'file', path: 'f', offset: 5 }, offset: 4 },
      { fd: 2, op: '>&', target: { kind: 'fd', fd: 1, offset: 10 }, offset: 7 },
      { fd: 1, op: '>&', target: { kind: 'fd', fd: 2, offset: 14 }, offset: 12 },
    ]);
  });

  test('ends a word at an operator, as a shell does', () => {
    assert.deepEqual(words('echo a>f b2>g'), [['echo', 'a', 'b2']]);
    assert.deepEqual(
      redirections('echo a>f b2>g').map((redirection) => redirection.fd),
      [1, 1],
    );
  });

  test('accepts redirections before the program', () => {
    assert.deepEqual(words('<in.txt 2>/dev/null sort -n'), [['sort', '-n']]);
  });

  test('takes a quoted %name or @name target as a file name', () => {
    const targets = redirections(`a >'%x' 2>"@y"`).map((redirection) => redirection.target);
    assert.deepEqual(targets, [
      { kind: 'file', path: '%x', offset: 3 },
      { kind: 'file', path: '@y', offset: 10 },
    ]);
  });

  test('accepts a target with spaces in quotes', () => {
    assert.deepEqual(redirections(`a > "my file.txt"`)[0]?.target, { kind: 'file', path: 'my file.txt', offset: 4 });
  });
});

describe('parseRecipe: syntax errors', () => {
  test('refuses an unterminated single quote at the quote', () => {
    assertSyntaxErrorAt("echo ok\necho 'abc\nmore", 2, 6);
  });

  test('refuses an unterminated double quote at the quote', () => {
    assertSyntaxErrorAt('echo "abc', 1, 6);
  });

  test('refuses a backslash at the very end', () => {
    assertSyntaxErrorAt('echo a \\', 1, 8);
  });

  test('refuses | in the middle of a line', () => {
    assertSyntaxErrorAt('ls -l | wc -l', 1, 7);
  });

  test('refuses & in the middle of a line', () => {
    assertSyntaxErrorAt('sleep 1 & echo', 1, 9);
  });

  test('refuses && and ||', () => {
    assertSyntaxErrorAt('make && make install', 1, 6);
    assertSyntaxErrorAt('a\nfalse || true', 2, 7);
  });

  test('refuses ; as a command separator', () => {
    assertSyntaxErrorAt('cd /; ls', 1, 5);
  });

  test('refuses a line that starts with | or &', () => {
    assertSyntaxErrorAt('echo a\n  | wc', 2, 3);
    assertSyntaxErrorAt('x: &', 1, 4);
  });

  test('refuses a label without a command on its line', () => {
    assertSyntaxErrorAt('echo a\nlog:\ncat', 2, 1);
  });

  test('refuses a fifo declaration without a name', () => {
    assertSyntaxErrorAt('fifo   # none', 1, 1);
  });

  test('refuses a fifo name with a slash or other characters', () => {
    assertSyntaxErrorAt('fifo good a/b', 1, 11);
    assertSyntaxErrorAt("fifo 'q'", 1, 6);
    assertSyntaxErrorAt('fifo .hidden', 1, 6);
  });

  test('refuses a fifo declaration with a redirection or terminator', () => {
    assertSyntaxErrorAt('fifo a &', 1, 8);
    assertSyntaxErrorAt('fifo a>x', 1, 6);
    assertSyntaxErrorAt('fifo>x', 1, 1);
  });

  test('refuses a label on a fifo declaration', () => {
    assertSyntaxErrorAt('p: fifo a', 1, 4);
  });

  test('refuses file descriptors other than 2 before an operator', () => {
    assertSyntaxErrorAt('head -n 10>out', 1, 9);
    assertSyntaxErrorAt('cat 0<in', 1, 5);
    assertSyntaxErrorAt('cmd 1>out', 1, 5);
  });

  test('refuses duplications other than 2>&1 and >&2', () => {
    assertSyntaxErrorAt('cmd 2>&2', 1, 5);
    assertSyntaxErrorAt('cmd 2>&1x', 1, 5);
    assertSyntaxErrorAt('cmd >&1', 1, 5);
    assertSyntaxErrorAt('cmd >&file', 1, 5);
  });

  test('refuses here-documents', () => {
    assertSyntaxErrorAt('cat <<EOF', 1, 5);
  });

  test('refuses a redirection without its target, where the target should be', () => {
    assertSyntaxErrorAt('echo a >', 1, 9);
    assertSyntaxErrorAt('echo a >   # comment', 1, 12);
    assertSyntaxErrorAt('echo a >> |', 1, 11);
    assertSyntaxErrorAt('cat <\necho', 1, 6);
    assertSyntaxErrorAt('cat 2> >f', 1, 8);
  });

  test('refuses % and @ not followed by a valid name', () => {
    assertSyntaxErrorAt('cmd >%', 1, 6);
    assertSyntaxErrorAt('cmd >%1abc', 1, 6);
    assertSyntaxErrorAt('cmd >%a.b', 1, 6);
    assertSyntaxErrorAt('cmd <@-x', 1, 6);
    assertSyntaxErrorAt("cmd 2>@a'b'", 1, 7);
  });

  test('counts columns in characters, not UTF-16 units', () => {
    assertSyntaxErrorAt('echo 😀 a | b', 1, 10);
  });

  test('names the source, and renders the line with a caret under the column', () => {
    let error: unknown;
    try {
      parseRecipe('echo ok\n\tls -l | wc', 'plans/x.rcp');
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof RecipeError);
    assert.equal(error.message.split(':').slice(0, 3).join(':'), 'plans/x.rcp:2:8');
    const [first, line, caret] = error.render().split('\n');
    assert.ok(first?.startsWith('plans/x.rcp:2:8: '));
    assert.equal(line, '\tls -l | wc');
    assert.equal(caret, '\t      ^');
  });
});
