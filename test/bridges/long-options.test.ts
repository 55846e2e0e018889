// Tests for bridges/long-options: single-dash long options rewritten for commander, options after the machine moved
// before it, and the remote command's own words (flags included) passed on untouched; plus plumb end to end.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { normaliseLongOptions, type LongOptionSpec } from '../../bridges/long-options.js';
import { BIN, startNetplumb } from '../helpers/daemon.js';
import { runProcess } from '../helpers/processes.js';

/** The spelling plumb's main uses: one machine word before the remote command. */
const PLUMB: LongOptionSpec = {
  withValue: ['identity', 'known-hosts', 'port'],
  flags: ['accept-new', 'verbose'],
  shortWithValue: ['i', 'p'],
};

function plumbArgs(...argv: string[]): string[] {
  return normaliseLongOptions(argv, PLUMB, 1);
}

describe('normaliseLongOptions: long options', () => {
  test('-name=value becomes --name=value', () => {
    assert.deepEqual(plumbArgs('-identity=/k/id', 'host', 'true'), ['--identity=/k/id', 'host', 'true']);
  });

  test('-name value (two words) becomes one --name=value word', () => {
    assert.deepEqual(plumbArgs('-identity', '/k/id', 'host', 'true'), ['--identity=/k/id', 'host', 'true']);
  });

  test('--name=value stays as it is', () => {
    assert.deepEqual(plumbArgs('--identity=/k/id', 'host', 'true'), ['--identity=/k/id', 'host', 'true']);
  });

  test('--name value (two words) also becomes --name=value', () => {
    assert.deepEqual(plumbArgs('--known-hosts', '/k/kh', 'host', 'true'), ['--known-hosts=/k/kh', 'host', 'true']);
  });

  test('a value may itself hold = signs and start with a dash', () => {
    assert.deepEqual(plumbArgs('-identity=a=b', '-port', '-7', 'host', 'true'), ['--identity=a=b', '--port=-7', 'host', 'true']);
  });

  test('an empty inline value is kept as an empty value', () => {
    assert.deepEqual(plumbArgs('-identity=', 'host', 'true'), ['--identity=', 'host', 'true']);
  });

  test('a value option as the last word is left for commander to report its missing value', () => {
    assert.deepEqual(plumbArgs('-identity'), ['--identity']);
  });

  test('-flag and --flag become --flag and take no value from the next word', () => {
    assert.deepEqual(plumbArgs('-accept-new', '--verbose', 'host', 'true'), ['--accept-new', '--verbose', 'host', 'true']);
  });

  test('a flag written with =value is passed on unchanged, so commander refuses it', () => {
    assert.deepEqual(plumbArgs('-accept-new=yes', 'host', 'true'), ['-accept-new=yes', 'host', 'true']);
  });

  test('an unknown single-dash word is passed on unchanged', () => {
    assert.deepEqual(plumbArgs('-nosuch=1', 'host', 'true'), ['-nosuch=1', 'host', 'true']);
  });
});

describe('normaliseLongOptions: short options', () => {
  test('a short option with a value skips its value, so the value is not taken for the machine', () => {
    assert.deepEqual(plumbArgs('-p', '22', 'host', 'true'), ['-p', '22', 'host', 'true']);
  });

  test('-i FILE keeps FILE as the option value', () => {
    assert.deepEqual(plumbArgs('-i', '/k/id', 'host', 'true'), ['-i', '/k/id', 'host', 'true']);
  });

  test('a short flag without a value does not swallow the machine', () => {
    assert.deepEqual(plumbArgs('-v', 'host', 'true'), ['-v', 'host', 'true']);
  });

  test('a short option with its value attached (-p22) is one word', () => {
    assert.deepEqual(plumbArgs('-p22', 'host', 'true'), ['-p22', 'host', 'true']);
  });

  test('a lone dash is a positional word, not an option', () => {
    assert.deepEqual(plumbArgs('host', 'cat', '-'), ['host', 'cat', '-']);
  });
});

describe('normaliseLongOptions: the machine and the remote command', () => {
  test('options after the machine are moved before it', () => {
    assert.deepEqual(plumbArgs('host', '-identity=/k/id', '-v', 'true'), ['--identity=/k/id', '-v', 'host', 'true']);
  });

  test('a short option with a value after the machine moves with its value', () => {
    assert.deepEqual(plumbArgs('host', '-p', '2222', 'true'), ['-p', '2222', 'host', 'true']);
  });

  test("the remote command's own flags after the command word are untouched", () => {
    assert.deepEqual(plumbArgs('host', 'ls', '-la', '-identity=x'), ['host', 'ls', '-la', '-identity=x']);
  });

  test('known option names after the command word are not rewritten', () => {
    assert.deepEqual(plumbArgs('-v', 'host', 'grep', '-verbose', '-p', '22', '--port=1'), ['-v', 'host', 'grep', '-verbose', '-p', '22', '--port=1']);
  });

  test('-- before the machine stops the scan and is kept for commander', () => {
    assert.deepEqual(plumbArgs('-v', '--', 'host', '-identity=x'), ['-v', '--', 'host', '-identity=x']);
  });

  test('-- after the machine keeps the machine first and the rest untouched', () => {
    assert.deepEqual(plumbArgs('host', '-accept-new', '--', '-identity=x', 'y'), ['--accept-new', 'host', '--', '-identity=x', 'y']);
  });

  test('with no positional words before the stop, scanning ends at the first one', () => {
    const spec: LongOptionSpec = { withValue: ['listen'], flags: ['stdio'] };
    assert.deepEqual(normaliseLongOptions(['-stdio', '-listen', 'a:1', 'extra', '-listen=b'], spec), ['--stdio', '--listen=a:1', 'extra', '-listen=b']);
  });

  test('the input array is not modified', () => {
    const argv = ['host', '-identity', 'x', 'true'];
    normaliseLongOptions(argv, PLUMB, 1);
    assert.deepEqual(argv, ['host', '-identity', 'x', 'true']);
  });
});

describe('normaliseLongOptions: options whose value is optional', () => {
  const spec: LongOptionSpec = { withValue: ['recipe'], flags: [], optionalValue: { json: '-' } };

  test('a bare -json stands for its default value, so the machine after it is never taken for a value', () => {
    assert.deepEqual(normaliseLongOptions(['host', '-recipe=r', '-json'], spec, 1), ['--recipe=r', '--json=-', 'host']);
    assert.deepEqual(normaliseLongOptions(['-json', 'host', 'cmd'], spec, 1), ['--json=-', 'host', 'cmd']);
  });

  test('-json=FILE and --json=FILE keep their value', () => {
    assert.deepEqual(normaliseLongOptions(['-json=out.json', 'host'], spec, 1), ['--json=out.json', 'host']);
    assert.deepEqual(normaliseLongOptions(['--json=a=b', 'host'], spec, 1), ['--json=a=b', 'host']);
  });
});

describe('plumb options end to end', () => {
  const TIMEOUT_MS = 120_000;

  test('options mixed before and after the machine work, and the command keeps its own flags', { timeout: TIMEOUT_MS }, async (t) => {
    const np = await startNetplumb(t);
    const argv = [
      process.execPath,
      BIN.plumb,
      `-identity=${np.client.privateFile}`,
      np.daemon.address,
      '-accept-new',
      '-v',
      'sh',
      '-c',
      'echo "$0" "$@"',
      'x',
      '-identity=y',
      '-la',
    ];
    const result = await runProcess(t, argv, { env: np.plumbEnv() });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'x -identity=y -la\n');
    // -v after the machine still reached plumb: it says where it connected.
    assert.match(result.stderr, /^plumb: connected to 127\.0\.0\.1 port \d+$/m);
  });

  test('-p PORT before a machine without a port and -identity FILE as two words connect', { timeout: TIMEOUT_MS }, async (t) => {
    const np = await startNetplumb(t);
    const argv = [process.execPath, BIN.plumb, '-p', String(np.daemon.port), '-identity', np.client.privateFile, '-accept-new', '127.0.0.1', 'echo', 'via-p'];
    const result = await runProcess(t, argv, { env: np.plumbEnv() });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'via-p\n');
  });
});
