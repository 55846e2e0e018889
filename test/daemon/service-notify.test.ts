// Type=notify: a real netplumbd with NOTIFY_SOCKET naming a datagram socket this test reads (helpers/notify-socket.ts)
// says READY=1 with the address once it listens, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM,
// and WATCHDOG=1 at half of WATCHDOG_USEC; as root every report carries the daemon's own pid. Without NOTIFY_SOCKET
// it runs no systemd-notify; with one nobody reads, it serves all the same. Also what takeNotifyTarget reads.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { takeNotifyTarget } from '../../daemon/service-notify.js';
import { startNetplumb, type Netplumb } from '../helpers/daemon.js';
import { listenForReports, type NotifySocket, type Report } from '../helpers/notify-socket.js';
import { childrenOf, delay } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';
import { STRACE, straceUnusable } from '../helpers/strace.js';

const TIMEOUT_MS = 120_000;
const RUNS_AS_ROOT = process.geteuid?.() === 0;

const has = (line: string) => (report: Report) => report.lines.includes(line);

/** A daemon reporting to a socket this test reads. */
async function notifyingDaemon(scope: Scope, env: NodeJS.ProcessEnv = {}): Promise<{ np: Netplumb; socket: NotifySocket }> {
  const socket = await listenForReports(scope, tempDir(scope, 'netplumb-notify-'));
  const np = await startNetplumb(scope, { daemonEnv: { NOTIFY_SOCKET: socket.path, ...env } });
  return { np, socket };
}

async function assertServes(np: Netplumb): Promise<void> {
  const result = await np.plumb(['echo', 'served']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'served\n');
}

describe('netplumbd under Type=notify', () => {
  test('says READY=1, with the address it listens on as STATUS, once it listens', { timeout: TIMEOUT_MS }, async (t) => {
    const { np, socket } = await notifyingDaemon(t);
    const reports = await socket.waitFor('READY=1', has('READY=1'));
    assert.deepEqual(reports[0]?.lines, ['READY=1', `STATUS=listening on ${np.daemon.address}`]);
    await assertServes(np);
  });

  test('as root, each report is sent in the daemon\'s name, so systemd needs no more than NotifyAccess=main', { skip: RUNS_AS_ROOT ? false : 'needs root to send in another process\'s name', timeout: TIMEOUT_MS }, async (t) => {
    const { np, socket } = await notifyingDaemon(t);
    await socket.waitFor('READY=1', has('READY=1'));
    np.daemon.kill('SIGHUP');
    await socket.waitFor('RELOADING=1', has('RELOADING=1'));
    await np.daemon.stop();
    const reports = await socket.waitFor('STOPPING=1', has('STOPPING=1'));
    assert.ok(reports.length >= 3);
    for (const report of reports) assert.equal(report.pid, np.daemon.pid, JSON.stringify(report));
  });

  test('a SIGHUP is reported as RELOADING=1, then READY=1 once the reload is done', { timeout: TIMEOUT_MS }, async (t) => {
    const { np, socket } = await notifyingDaemon(t);
    await socket.waitFor('READY=1', has('READY=1'));
    np.daemon.kill('SIGHUP');
    const reports = await socket.waitFor('a second READY=1', () => socket.reports().filter(has('READY=1')).length >= 2);
    const [first, reloading, ready] = reports;
    assert.deepEqual(first?.lines[0], 'READY=1');
    assert.equal(reloading?.lines[0], 'RELOADING=1');
    assert.match(reloading?.lines[1] ?? '', /^MONOTONIC_USEC=\d+$/);
    assert.equal(reloading?.lines[2], 'STATUS=reloading the authorized clients and gluepots');
    assert.deepEqual(ready?.lines, ['READY=1', `STATUS=listening on ${np.daemon.address}`]);
    assert.match(np.daemon.log(), /authorization reloaded/);
    await assertServes(np);
  });

  test('a refused reload is followed by READY=1 all the same, its STATUS saying so', { timeout: TIMEOUT_MS }, async (t) => {
    const { np, socket } = await notifyingDaemon(t);
    await socket.waitFor('READY=1', has('READY=1'));
    writeFileSync(np.clientsFile, 'not a key line\n');
    np.daemon.kill('SIGHUP');
    const reports = await socket.waitFor('a second READY=1', () => socket.reports().filter(has('READY=1')).length >= 2);
    assert.deepEqual(reports.at(-1)?.lines, ['READY=1', `STATUS=listening on ${np.daemon.address}; the last reload was refused (see the log)`]);
    assert.match(np.daemon.log(), /reload refused/);
  });

  test('SIGTERM is reported as STOPPING=1, and the daemon exits 0', { timeout: TIMEOUT_MS }, async (t) => {
    const { np, socket } = await notifyingDaemon(t);
    await socket.waitFor('READY=1', has('READY=1'));
    const exit = await np.daemon.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    // The daemon waits for systemd-notify before it exits: the report is there already.
    assert.deepEqual(socket.reports().at(-1)?.lines, ['STOPPING=1', 'STATUS=shutting down']);
  });

  test('pings WATCHDOG=1 at half of WATCHDOG_USEC', { timeout: TIMEOUT_MS }, async (t) => {
    const { np, socket } = await notifyingDaemon(t, { WATCHDOG_USEC: '400000' });
    await socket.waitFor('three WATCHDOG=1', () => socket.reports().filter(has('WATCHDOG=1')).length >= 3);
    // None before READY=1: systemd's watchdog runs from then on.
    const first = socket.reports()[0];
    assert.equal(first?.lines[0], 'READY=1');
    await np.daemon.stop();
    assert.deepEqual(socket.reports().at(-1)?.lines[0], 'STOPPING=1');
  });

  test('sends no watchdog ping when WATCHDOG_PID names another process', { timeout: TIMEOUT_MS }, async (t) => {
    const { np, socket } = await notifyingDaemon(t, { WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' });
    await socket.waitFor('READY=1', has('READY=1'));
    // Ten periods of 100 ms.
    await delay(1000);
    assert.deepEqual(socket.reports().filter(has('WATCHDOG=1')), []);
    await assertServes(np);
  });

  test('without NOTIFY_SOCKET it serves, reloads and stops, and never runs systemd-notify', { skip: straceUnusable(), timeout: TIMEOUT_MS }, async (t) => {
    const trace = join(tempDir(t, 'netplumb-notify-trace-'), 'trace');
    const np = await startNetplumb(t, { launcher: [STRACE, '-f', '-qq', '-e', 'trace=execve', '-o', trace], daemonEnv: { NOTIFY_SOCKET: undefined, WATCHDOG_USEC: '200000' } });
    await assertServes(np);
    // Signals go to the daemon itself: strace, its parent, does not pass them on.
    const [daemonPid] = childrenOf(np.daemon.pid);
    assert.ok(daemonPid !== undefined, 'the daemon under strace');
    process.kill(daemonPid, 'SIGHUP');
    await np.daemon.waitForLog(/authorization reloaded/);
    process.kill(daemonPid, 'SIGTERM');
    assert.deepEqual(await np.daemon.exited, { code: 0, signal: null });
    const execs = readFileSync(trace, 'utf8');
    assert.match(execs, /execve\("[^"]*\/echo"/, 'the trace must show what the daemon ran');
    assert.doesNotMatch(execs, /systemd-notify/);
  });

  test('with a NOTIFY_SOCKET nobody listens on, it serves all the same and warns once', { timeout: TIMEOUT_MS }, async (t) => {
    const nowhere = join(tempDir(t, 'netplumb-notify-'), 'nobody.sock');
    const np = await startNetplumb(t, { daemonEnv: { NOTIFY_SOCKET: nowhere } });
    await np.daemon.waitForLog(/service manager report failed/);
    np.daemon.kill('SIGHUP');
    await np.daemon.waitForLog(/authorization reloaded/);
    await assertServes(np);
    assert.deepEqual(await np.daemon.stop(), { code: 0, signal: null });
    assert.equal(np.daemon.log().match(/ warn service manager report failed/g)?.length, 1, np.daemon.log());
  });
});

describe('takeNotifyTarget', () => {
  test('reads NOTIFY_SOCKET and half of WATCHDOG_USEC, and removes all three variables', () => {
    const environment: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42', KEPT: 'yes' };
    assert.deepEqual(takeNotifyTarget(environment, 42), { socket: '/run/systemd/notify', watchdogIntervalMs: 15_000 });
    assert.deepEqual(environment, { KEPT: 'yes' });
  });

  test('an unset or empty NOTIFY_SOCKET means no reports', () => {
    assert.equal(takeNotifyTarget({}, 42), undefined);
    const environment: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '', WATCHDOG_USEC: '1000000' };
    assert.equal(takeNotifyTarget(environment, 42), undefined);
    assert.deepEqual(environment, {});
  });

  test('no watchdog for another process, nor for a WATCHDOG_USEC that is not a positive number', () => {
    assert.equal(takeNotifyTarget({ NOTIFY_SOCKET: '@notify', WATCHDOG_USEC: '1000000', WATCHDOG_PID: '7' }, 42)?.watchdogIntervalMs, undefined);
    assert.equal(takeNotifyTarget({ NOTIFY_SOCKET: '@notify', WATCHDOG_USEC: '0' }, 42)?.watchdogIntervalMs, undefined);
    assert.equal(takeNotifyTarget({ NOTIFY_SOCKET: '@notify', WATCHDOG_USEC: '-5' }, 42)?.watchdogIntervalMs, undefined);
    assert.equal(takeNotifyTarget({ NOTIFY_SOCKET: '@notify', WATCHDOG_USEC: '1000000' }, 42)?.watchdogIntervalMs, 500);
  });
});
