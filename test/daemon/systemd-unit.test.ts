// The shipped systemd unit: systemd-analyze verify accepts it without a warning (on a copy whose ExecStart names
// the built daemon, as verify needs the program to exist), and it keeps the choices netplumbd(8) documents:
// Type=exec, -check-config before a start or reload, KillMode=mixed, a stop timeout above both grace periods, no command-breaking sandboxing.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CONFIG } from '../../daemon/config.js';
import { NETPLUMBD_NODE_OPTIONS } from '../../daemon/node-options.js';

const here = dirname(fileURLToPath(import.meta.url));
const UNIT = join(here, '../../../daemon/netplumbd.service');
const DAEMON_MAIN = join(here, '../../daemon/main.js');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
if (!existsSync(SYSTEMD_ANALYZE)) {
  throw new Error(`${SYSTEMD_ANALYZE} is missing: install systemd (apt-get install systemd; .ci/run does this)`);
}

const dir = mkdtempSync(join(tmpdir(), 'netplumb-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const unitText = readFileSync(UNIT, 'utf8');

/** The unit with every netplumbd it runs pointing at this checkout's daemon, run by this node; the rest unchanged. */
function runnableUnit(): string {
  const lines = unitText.split('\n');
  const execStarts = lines.filter((line) => line.startsWith('ExecStart='));
  assert.equal(execStarts.length, 1, 'the unit must have exactly one ExecStart line');
  const daemon = /^(Exec[A-Za-z]*=)\/\S*\/netplumbd( .*)?$/;
  return lines.map((line) => line.replace(daemon, (_all, key: string, args: string | undefined) => `${key}"${process.execPath}" "${DAEMON_MAIN}"${args ?? ''}`)).join('\n');
}

function verify(text: string, name: string): { status: number | null; stderr: string } {
  const subdir = mkdtempSync(join(dir, 'case-'));
  const path = join(subdir, name);
  writeFileSync(path, text);
  const result = spawnSync(SYSTEMD_ANALYZE, ['verify', '--man=no', path], { encoding: 'utf8', timeout: 60_000 });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stderr: result.stderr };
}

/** Every value of each key in the unit (later lines last), ignoring comments and section headers. */
function settings(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue;
    const equals = line.indexOf('=');
    assert.ok(equals > 0, `not a key=value line: ${line}`);
    const key = line.slice(0, equals);
    map.set(key, [...(map.get(key) ?? []), line.slice(equals + 1)]);
  }
  return map;
}

function only(map: Map<string, string[]>, key: string): string | undefined {
  const values = map.get(key);
  if (values === undefined) return undefined;
  assert.equal(values.length, 1, `${key} is set more than once`);
  return values[0];
}

/** systemd time span in seconds: `30s`, `1min 30s`, `90` (seconds), `500ms`. */
function seconds(span: string): number {
  let total = 0;
  const units: Record<string, number> = { ms: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600 };
  for (const part of span.trim().split(/\s+/)) {
    const match = /^(\d+)([a-z]*)$/.exec(part);
    assert.ok(match !== null, `cannot read time span ${span}`);
    const unit = units[match[2] === '' ? 's' : (match[2] as string)];
    assert.ok(unit !== undefined, `unknown time unit in ${span}`);
    total += Number(match[1]) * unit;
  }
  return total;
}

describe('netplumbd.service', () => {
  test('passes systemd-analyze verify without a warning when its ExecStart exists', () => {
    const result = verify(runnableUnit(), 'netplumbd.service');
    assert.equal(result.stderr, '');
    assert.equal(result.status, 0);
  });

  test('the verify check notices a misspelt key, which systemd-analyze only warns about', () => {
    const result = verify(`${runnableUnit()}\nKillMod=mixed\n`, 'netplumbd.service');
    assert.match(result.stderr, /KillMod/);
  });

  test('starts the daemon in the foreground as Type=exec and reloads it with SIGHUP, each after -check-config', () => {
    const unit = settings(unitText);
    assert.equal(only(unit, 'Type'), 'exec');
    assert.match(only(unit, 'ExecStart') ?? '', /^\/\S*\/netplumbd -foreground$/);
    assert.match(only(unit, 'ExecStartPre') ?? '', /^\/\S*\/netplumbd -check-config$/);
    const reload = unit.get('ExecReload') ?? [];
    assert.equal(reload.length, 2);
    assert.match(reload[0] ?? '', /^\/\S*\/netplumbd -check-config$/);
    assert.equal(reload[1], '/bin/kill -HUP $MAINPID');
  });

  test('stops with KillMode=mixed and a stop timeout longer than both grace periods together', () => {
    const unit = settings(unitText);
    assert.equal(only(unit, 'KillMode'), 'mixed');
    const graceSeconds = (DEFAULT_CONFIG.shutdownGraceMs + DEFAULT_CONFIG.killGraceMs + 1000) / 1000;
    assert.ok(seconds(only(unit, 'TimeoutStopSec') ?? '0') > graceSeconds, `TimeoutStopSec must exceed ${graceSeconds}s`);
  });

  test('sets none of the sandboxing that would break the commands it runs', () => {
    const unit = settings(unitText);
    const forbidden = [
      'NoNewPrivileges',
      'RestrictSUIDSGID',
      'ProtectSystem',
      'ProtectHome',
      'PrivateTmp',
      'PrivateDevices',
      'ProtectKernelTunables',
      'ProtectKernelModules',
      'ProtectKernelLogs',
      'ProtectControlGroups',
      'ProtectClock',
      'ProtectHostname',
      'MemoryDenyWriteExecute',
      'ReadOnlyPaths',
      'InaccessiblePaths',
      'User',
    ];
    assert.deepEqual(forbidden.filter((key) => unit.has(key)), []);
  });
});

test("netplumbd's #! line runs node with the options the tests and scripts start it with", () => {
  const shebang = readFileSync(DAEMON_MAIN, 'utf8').split('\n')[0];
  assert.equal(shebang, `#!/usr/bin/env -S node ${NETPLUMBD_NODE_OPTIONS.join(' ')}`);
});
