// End to end: plumb -export sets variables of plumb's environment for the remote command, as far as the daemon's
// -accept-env allows: names accepted by default (LANG, LC_*, TZ), patterns with a trailing *, `none`, a refused
// name (NP_ENV_REFUSED, the command never runs) and a name not set here (NP_USAGE, nothing is sent).

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode, startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { type ProcessResult } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';

const TIMEOUT_MS = 120_000;

/** A remote command printing the named variables as JSON (null for one that is not set). */
function printVariables(...names: string[]): string[] {
  return [process.execPath, '-e', 'console.log(JSON.stringify(process.argv.slice(1).map((n)=>process.env[n]??null)))', ...names];
}

function runWith(np: Netplumb, env: Record<string, string>, options: string[], command: string[]): Promise<ProcessResult> {
  return np.plumb(command, { options, env: { ...np.plumbEnv(), ...env } });
}

/** The failure line of a plumb run, without the line that pins a new daemon key. */
function failureLines(stderr: string): string[] {
  return stderr
    .trimEnd()
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('plumb: Permanently added'));
}

test('-export: the names the daemon accepts by default arrive with their values', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await runWith(np, { TZ: 'Europe/Paris', LC_TIME: 'fr_FR.UTF-8', LANG: 'de_DE.UTF-8' }, ['-export=TZ,LC_TIME', '-export=LANG'], printVariables('TZ', 'LC_TIME', 'LANG'));
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout.toString()), ['Europe/Paris', 'fr_FR.UTF-8', 'de_DE.UTF-8']);
});

test('-export: nothing is exported unless asked for', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const result = await runWith(np, { TZ: 'Asia/Tokyo', NP_SECRET: 'never sent' }, [], printVariables('TZ', 'NP_SECRET'));
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout.toString()), [null, null]);
});

test('-accept-env patterns: a trailing * accepts a prefix, values arrive exactly (spaces, newlines, =, UTF-8, empty)', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: ['-accept-env=APP_*,EXACT'] });
  const values = { APP_ONE: 'with spaces and = signs', APP_TWO: 'line one\nline two', APP_: 'prefix itself', EXACT: 'héllo wörld ✓', APP_EMPTY: '' };
  const names = Object.keys(values);
  const result = await runWith(np, values, [`-export=${names.slice(0, 2).join(',')}`, `-export=${names.slice(2).join(',')}`, '-export=EXACT'], printVariables(...names));
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout.toString()), Object.values(values));
});

test('a name the daemon does not accept: Start refused with NP_ENV_REFUSED in one line, the command never runs', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: ['-accept-env=APP_*,EXACT'] });
  const marker = join(tempDir(t), 'ran');
  const cases: [string, Record<string, string>][] = [
    ['NOT_LISTED', { NOT_LISTED: 'x' }],
    // A pattern is a prefix with *, nothing more: APPX does not start with APP_, EXACTLY is not EXACT.
    ['APPX', { APPX: 'x' }],
    ['EXACTLY', { EXACTLY: 'x' }],
    // The defaults are replaced by the daemon's list.
    ['TZ', { TZ: 'UTC' }],
  ];
  for (const [name, env] of cases) {
    const result = await runWith(np, { ...env, APP_OK: 'fine' }, [`-export=APP_OK,${name}`], ['touch', marker]);
    assert.equal(result.code, 255, `${name}: ${result.stderr}`);
    assert.equal(reportedCode(result.stderr), ErrorCode.EnvRefused, result.stderr);
    const lines = failureLines(result.stderr);
    assert.equal(lines.length, 1, result.stderr);
    assert.ok(lines[0]?.includes(name), `the refused name is named: ${result.stderr}`);
    assert.equal(lines[0]?.includes('APP_OK'), false, `only refused names are named: ${result.stderr}`);
    assert.equal(existsSync(marker), false, `${name}: the command must not run`);
  }
});

test('-accept-env=none refuses every name, even the default ones', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: ['-accept-env=none'] });
  const refused = await runWith(np, { LANG: 'C.UTF-8' }, ['-export=LANG'], printVariables('LANG'));
  assert.equal(refused.code, 255, refused.stderr);
  assert.equal(reportedCode(refused.stderr), ErrorCode.EnvRefused, refused.stderr);
  const plain = await runWith(np, {}, [], ['true']);
  assert.equal(plain.code, 0, 'without -export a daemon that accepts nothing still runs commands');
});

test('-accept-env=* accepts any name', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: ['-accept-env=*'] });
  const result = await runWith(np, { ANYTHING_AT_ALL: 'yes', _x: 'underscore' }, ['-export=ANYTHING_AT_ALL,_x'], printVariables('ANYTHING_AT_ALL', '_x'));
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout.toString()), ['yes', 'underscore']);
});

test('-export of a name not set here, or not a variable name: NP_USAGE before anything is sent', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const env = { ...np.plumbEnv() };
  delete env['TZ'];
  for (const [option, mentions] of [
    ['-export=TZ', 'TZ'],
    ['-export=1BAD', '1BAD'],
    ['-export=LANG,', '""'],
    ['-export=A-B', 'A-B'],
  ] as const) {
    const result = await np.plumb(['true'], { options: [option], env });
    assert.equal(result.code, 255, `${option}: ${result.stderr}`);
    assert.equal(reportedCode(result.stderr), ErrorCode.Usage, result.stderr);
    const lines = failureLines(result.stderr);
    assert.equal(lines.length, 1, result.stderr);
    assert.ok(lines[0]?.includes(mentions), `${option}: ${result.stderr}`);
  }
  assert.equal(/command started|start refused/.test(np.daemon.log()), false, `nothing reached the daemon: ${np.daemon.log()}`);
});
