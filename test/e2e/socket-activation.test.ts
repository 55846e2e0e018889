// End to end: socket activation. systemd-socket-activate (systemd's own tool) listens on 127.0.0.1 and, at the first
// connection, execs netplumbd with the socket as fd 3 and LISTEN_PID/LISTEN_FDS set, as a socket unit with
// Accept=no does. The daemon serves plumb on that socket, ignoring its listen setting, logs each client's own
// address (not stdio), and what it starts inherits none of the variables. LISTEN_PID naming another process is
// ignored, as sd_listen_fds(3) does; two sockets, or a LISTEN_PID that is no number, are refused (NP_CONFIG).

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { takeListenActivation } from '../../daemon/socket-activation.js';
import { NETPLUMBD_NODE_OPTIONS } from '../../daemon/node-options.js';
import { baseDaemonConfig, BIN, startNetplumb, writeKeyPair, type KeyFiles } from '../helpers/daemon.js';
import { listenForReports } from '../helpers/notify-socket.js';
import { childrenOf, runProcess, spawnProcess, type RunningProcess } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';
import { STRACE, straceUnusable } from '../helpers/strace.js';

const TIMEOUT_MS = 120_000;
const SOCKET_ACTIVATE = '/usr/bin/systemd-socket-activate';

/** A port nothing listens on now, on 127.0.0.1 (the kernel's pick, released at once). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

interface Activated {
  dir: string;
  home: string;
  client: KeyFiles;
  /** The 127.0.0.1 port systemd-socket-activate listens on. */
  port: number;
  /** systemd-socket-activate (or what runs it), which becomes netplumbd (same pid) at the first connection. */
  process: RunningProcess;
  /** The daemon's pid once it runs: the process's own, or its child's under strace (which keeps signals to itself). */
  daemonPid(): number | undefined;
}

/**
 * systemd-socket-activate listening on 127.0.0.1 (one -l per port given, a free one by default), ready to exec
 * netplumbd, whose own listen setting names another port; `before` is put in front (strace), `setenv` passed on.
 * Resolves once it listens.
 */
async function socketActivated(scope: Scope, options: { setenv?: Record<string, string>; before?: readonly string[]; extraPorts?: number } = {}): Promise<Activated> {
  const dir = tempDir(scope);
  const hostKey = writeKeyPair(dir, 'host_key');
  const client = writeKeyPair(dir, 'identity');
  writeFileSync(join(dir, 'authorized_clients'), `${client.publicLine}\n`);
  writeFileSync(join(dir, 'netplumbd.conf'), baseDaemonConfig(dir));
  const ports = [await freePort()];
  for (let extra = 0; extra < (options.extraPorts ?? 0); extra++) ports.push(await freePort());
  const argv = [
    ...(options.before ?? []),
    SOCKET_ACTIVATE,
    ...ports.map((port) => `--listen=127.0.0.1:${port}`),
    // The daemon gets only what systemd-socket-activate passes on: TERM, PATH, USER, HOME and these.
    ...Object.entries(options.setenv ?? {}).map(([name, value]) => `--setenv=${name}=${value}`),
    process.execPath,
    ...NETPLUMBD_NODE_OPTIONS,
    BIN.netplumbd,
    `-config=${join(dir, 'netplumbd.conf')}`,
    // Not used: the socket passed wins. A port that cannot be bound (privileged, in use) would fail the daemon.
    '-listen=127.0.0.1:1',
    `-hostkey=${hostKey.privateFile}`,
    `-clients=${join(dir, 'authorized_clients')}`,
  ];
  const running = spawnProcess(scope, argv, { timeoutMs: TIMEOUT_MS });
  await running.waitForStderr(new RegExp(`Listening on 127\\.0\\.0\\.1:${ports.at(-1)} as ${2 + ports.length}\\.`));
  const daemonPid = (): number | undefined => (options.before === undefined ? running.child.pid : childrenOf(running.child.pid as number)[0]);
  return { dir, home: join(dir, 'home'), client, port: ports[0] as number, process: running, daemonPid };
}

function plumb(scope: Scope, activated: Activated, command: readonly string[]) {
  return runProcess(scope, [process.execPath, BIN.plumb, `-identity=${activated.client.privateFile}`, '-accept-new', `127.0.0.1:${activated.port}`, ...command], {
    env: { ...process.env, NETPLUMB_HOME: activated.home },
  });
}

async function stop(activated: Activated): Promise<number | null> {
  const pid = activated.daemonPid();
  assert.ok(pid !== undefined, 'the daemon is running');
  process.kill(pid, 'SIGTERM');
  return (await activated.process.result).code;
}

test('a socket-activated daemon serves plumb on the socket it was passed and logs the client\'s own address', { timeout: TIMEOUT_MS }, async (t) => {
  const activated = await socketActivated(t);
  const result = await plumb(t, activated, ['echo', 'activated']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'activated\n');
  const log = activated.process.stderrSoFar();
  assert.match(log, /info listening on the socket systemd passed: the listen setting is not used fd=3 listen=127\.0\.0\.1:1\n/);
  assert.match(log, new RegExp(`info listening on 127\\.0\\.0\\.1:${activated.port}\\n`));
  const peers = [...log.matchAll(/client authenticated .*\bpeer=(\S+)/g)].map((match) => match[1]);
  assert.equal(peers.length, 1, log);
  assert.match(peers[0] ?? '', /^127\.0\.0\.1:\d+$/);
  assert.notEqual(peers[0], `127.0.0.1:${activated.port}`, 'the client\'s end, not the listening socket');
  assert.doesNotMatch(log, /peer=stdio/);
  assert.equal(await stop(activated), 0);
});

test('socket-activated under Type=notify, it says READY=1 with the address of the socket it was passed', { timeout: TIMEOUT_MS }, async (t) => {
  const reports = await listenForReports(t, tempDir(t, 'netplumb-notify-'));
  const activated = await socketActivated(t, { setenv: { NOTIFY_SOCKET: reports.path } });
  const result = await plumb(t, activated, ['true']);
  assert.equal(result.code, 0, result.stderr);
  const seen = await reports.waitFor('READY=1', (report) => report.lines.includes('READY=1'));
  assert.deepEqual(seen[0]?.lines, ['READY=1', `STATUS=listening on 127.0.0.1:${activated.port}`]);
  assert.equal(await stop(activated), 0);
});

test('nothing the daemon starts inherits LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES or NOTIFY_SOCKET', { skip: straceUnusable(), timeout: TIMEOUT_MS }, async (t) => {
  const trace = join(tempDir(t, 'netplumb-activation-trace-'), 'trace');
  // -v: whole environments; -s: long enough strings to hold every variable.
  const activated = await socketActivated(t, { before: [STRACE, '-f', '-qq', '-v', '-s', '4096', '-e', 'trace=execve', '-o', trace], setenv: { NOTIFY_SOCKET: join(tempDir(t, 'netplumb-notify-'), 'nobody.sock') } });
  const result = await plumb(t, activated, ['sh', '-c', 'env; ls /proc/$$/fd']);
  assert.equal(result.code, 0, result.stderr);
  const output = result.stdout.toString();
  assert.doesNotMatch(output, /LISTEN_|NOTIFY_SOCKET/);
  // The command's shell holds its three standard streams and no listening socket.
  assert.deepEqual(output.trim().split('\n').filter((line) => /^\d+$/.test(line)), ['0', '1', '2']);
  assert.equal(await stop(activated), 0);
  const execs = readFileSync(trace, 'utf8').split('\n').filter((line) => line.includes('execve('));
  const daemonExec = execs.findIndex((line) => line.includes(`execve("${process.execPath}"`) && line.includes(BIN.netplumbd));
  assert.ok(daemonExec >= 0, 'the trace must show netplumbd started');
  assert.match(execs[daemonExec] ?? '', /"LISTEN_FDS=1"/, 'netplumbd itself was given the socket');
  const started = execs.slice(daemonExec + 1);
  assert.ok(started.some((line) => /execve\("[^"]*\/sh"/.test(line)), 'the trace must show what the daemon ran');
  assert.deepEqual(started.filter((line) => /"LISTEN_(PID|FDS|FDNAMES)=/.test(line)), []);
  // systemd-notify is given NOTIFY_SOCKET and nothing else; no other program gets it.
  assert.deepEqual(started.filter((line) => /"NOTIFY_SOCKET=/.test(line) && !/execve\("\/usr\/bin\/systemd-notify"/.test(line)), []);
  assert.ok(started.some((line) => /execve\("\/usr\/bin\/systemd-notify"/.test(line)), 'the daemon tried to report READY=1');
});

test('LISTEN_PID naming another process is ignored: the daemon listens on its listen setting', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonEnv: { LISTEN_PID: '1', LISTEN_FDS: '1' } });
  assert.match(np.daemon.log(), /info LISTEN_FDS ignored: it is for another process listenPid=1 listen=127\.0\.0\.1:0\n/);
  const result = await np.plumb(['echo', 'own socket']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'own socket\n');
});

test('two sockets passed are refused with NP_CONFIG: the daemon serves one', { timeout: TIMEOUT_MS }, async (t) => {
  const activated = await socketActivated(t, { extraPorts: 1 });
  // The first connection starts the daemon, which refuses to run.
  await plumb(t, activated, ['true']);
  const { code, stderr } = await activated.process.result;
  assert.equal(code, 1);
  assert.match(stderr, new RegExp(`error netplumbd: LISTEN_FDS=2: systemd passed 2 sockets, netplumbd serves one .*\\(${ErrorCode.Config}\\)\\n`));
});

test('takeListenActivation reads LISTEN_PID and LISTEN_FDS as sd_listen_fds does, and removes the variables', () => {
  const mine = { LISTEN_PID: '42', LISTEN_FDS: '1', LISTEN_FDNAMES: 'netplumbd.socket', KEPT: 'yes' };
  assert.deepEqual(takeListenActivation(mine, 42), { kind: 'socket', fd: 3 });
  assert.deepEqual(mine, { KEPT: 'yes' });
  const another = { LISTEN_PID: '7', LISTEN_FDS: '1' };
  assert.deepEqual(takeListenActivation(another, 42), { kind: 'not-ours', listenPid: 7 });
  assert.deepEqual(another, {});
  assert.deepEqual(takeListenActivation({ LISTEN_FDS: '1' }, 42), { kind: 'none' });
  assert.deepEqual(takeListenActivation({ LISTEN_PID: '42' }, 42), { kind: 'none' });
  assert.deepEqual(takeListenActivation({ LISTEN_PID: '42', LISTEN_FDS: '0' }, 42), { kind: 'none' });
  for (const bad of [{ LISTEN_PID: 'x', LISTEN_FDS: '1' }, { LISTEN_PID: '42', LISTEN_FDS: 'one' }, { LISTEN_PID: '42', LISTEN_FDS: '3' }]) {
    const environment: NodeJS.ProcessEnv = { ...bad };
    assert.throws(() => takeListenActivation(environment, 42), (error: { code?: string }) => error.code === ErrorCode.Config);
    assert.deepEqual(environment, {}, 'removed even when refused');
  }
});

test('a LISTEN_PID that is not a process id stops the daemon with NP_CONFIG', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = tempDir(t);
  const hostKey = writeKeyPair(dir, 'host_key');
  writeFileSync(join(dir, 'clients'), '');
  writeFileSync(join(dir, 'netplumbd.conf'), baseDaemonConfig(dir));
  const result = await runProcess(t, [process.execPath, BIN.netplumbd, `-config=${join(dir, 'netplumbd.conf')}`, '-listen=127.0.0.1:0', `-hostkey=${hostKey.privateFile}`, `-clients=${join(dir, 'clients')}`], {
    env: { ...process.env, LISTEN_PID: 'self', LISTEN_FDS: '1' },
  });
  assert.equal(result.code, 1);
  assert.match(result.stderr, new RegExp(`error netplumbd: LISTEN_PID=self: not a process id \\(${ErrorCode.Config}\\)\\n`));
});
