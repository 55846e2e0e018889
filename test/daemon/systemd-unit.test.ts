// The shipped systemd units: systemd-analyze verify accepts each without a warning (on a copy whose ExecStart names
// the built daemon, as verify needs the program to exist), and they keep the choices netplumbd(8) documents:
// Type=notify heard from the main process only, -check-config before a start or reload, KillMode=mixed, a stop
// timeout above both grace periods, no command-breaking sandboxing; a socket unit on the default port, Accept=no,
// that the service does not require.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CONFIG } from '../../daemon/config.js';
import { NETPLUMBD_NODE_OPTIONS } from '../../daemon/node-options.js';
import { DEFAULT_PORT } from '../../protocol/wire.js';

const here = dirname(fileURLToPath(import.meta.url));
const UNIT = join(here, '../../../daemon/netplumbd.service');
const SOCKET_UNIT = join(here, '../../../daemon/netplumbd.socket');
const DAEMON_MAIN = join(here, '../../daemon/main.js');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
if (!existsSync(SYSTEMD_ANALYZE)) {
  throw new Error(`${SYSTEMD_ANALYZE} is missing: install systemd (apt-get install systemd; .ci/run does this)`);
}

const dir = mkdtempSync(join(tmpdir(), 'netplumb-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const unitText = readFileSync(UNIT, 'utf8');
const socketUnitText = readFileSync(SOCKET_UNIT, 'utf8');

/** The unit with every netplumbd it runs pointing at this checkout's daemon, run by this node; the rest unchanged. */
function runnableUnit(): string {
  const lines = unitText.split('\n');
  const execStarts = lines.filter((line) => line.startsWith('ExecStart='));
  assert.equal(execStarts.length, 1, 'the unit must have exactly one ExecStart line');
  const daemon = /^(Exec[A-Za-z]*=)\/\S*\/netplumbd( .*)?$/;
  return lines.map((line) => line.replace(daemon, (_all, key: string, args: string | undefined) => `${key}"${process.execPath}" "${DAEMON_MAIN}"${args ?? ''}`)).join('\n');
}

/** systemd-analyze verify of the units named, each written with its text in one directory of its own. */
function verifyUnits(units: Readonly<Record<string, string>>, names: readonly string[] = Object.keys(units)): { status: number | null; stderr: string } {
  const subdir = mkdtempSync(join(dir, 'case-'));
  for (const [name, text] of Object.entries(units)) writeFileSync(join(subdir, name), text);
  const result = spawnSync(SYSTEMD_ANALYZE, ['verify', '--man=no', ...names.map((name) => join(subdir, name))], { encoding: 'utf8', timeout: 60_000 });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stderr: result.stderr };
}

function verify(text: string, name: string): { status: number | null; stderr: string } {
  return verifyUnits({ [name]: text });
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

  test('starts the daemon in the foreground as Type=notify, heard from its main process only, and reloads it with SIGHUP, each after -check-config', () => {
    const unit = settings(unitText);
    assert.equal(only(unit, 'Type'), 'notify');
    assert.equal(only(unit, 'NotifyAccess'), 'main');
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

describe('netplumbd.socket', () => {
  test('passes systemd-analyze verify without a warning, beside the service it starts', () => {
    const units = { 'netplumbd.service': runnableUnit(), 'netplumbd.socket': socketUnitText };
    const socketAlone = verifyUnits(units, ['netplumbd.socket']);
    assert.equal(socketAlone.stderr, '');
    assert.equal(socketAlone.status, 0);
    const both = verifyUnits(units);
    assert.equal(both.stderr, '');
    assert.equal(both.status, 0);
  });

  test('the verify check notices a socket unit without its service', () => {
    const result = verifyUnits({ 'netplumbd.socket': socketUnitText });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /netplumbd\.service not loaded/);
  });

  test('listens on the default port of every IPv4 address, with one listening socket for one daemon (Accept=no)', () => {
    const socket = settings(socketUnitText);
    assert.equal(only(socket, 'ListenStream'), `0.0.0.0:${DEFAULT_PORT}`);
    assert.equal(only(socket, 'Accept'), 'no');
    assert.equal(only(socket, 'WantedBy'), 'sockets.target');
  });

  test('the service neither requires nor enables the socket: it runs with it or without it', () => {
    const unit = settings(unitText);
    for (const key of ['Requires', 'BindsTo', 'Requisite', 'Also', 'Sockets']) assert.equal(unit.get(key), undefined, key);
  });
});

test("netplumbd's #! line runs node with the options the tests and scripts start it with", () => {
  const shebang = readFileSync(DAEMON_MAIN, 'utf8').split('\n')[0];
  assert.equal(shebang, `#!/usr/bin/env -S node ${NETPLUMBD_NODE_OPTIONS.join(' ')}`);
});
