// End to end: $NETPLUMB_HOME/config against real daemons. A Host block's address, port, identity, known hosts file
// and AcceptNew are what plumb connects with; the command line wins over them; User asks for the account as -user
// does; a bad line stops plumb before it connects, naming file:line; the hosts alias file still works beside it;
// -mint-key and the machines of a recipe across machines are resolved through it too.

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { BIN, reportedCode, rewriteClients, startNetplumb, writeKeyPair, type Netplumb } from '../helpers/daemon.js';
import { startMachines } from '../helpers/machines.js';
import { spawnProcess, type ProcessResult } from '../helpers/processes.js';
import type { Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 120_000;
/** An account no authorized-clients line of these tests allows. */
const FORBIDDEN_ACCOUNT = 'np-config-nobody';

/** Writes $NETPLUMB_HOME/config (and the directory), not writable by others, as plumb requires. */
function writeConfig(home: string, lines: readonly string[]): string {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const file = join(home, 'config');
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

/** plumb with these arguments alone (no -identity, no -accept-new), its home the test daemon's. */
function plumb(scope: Scope, np: Netplumb, args: readonly string[]): Promise<ProcessResult> {
  return spawnProcess(scope, [process.execPath, BIN.plumb, ...args], { env: np.plumbEnv() }).result;
}

/** A Host block that leads `name` to the test daemon with the client's key. */
function daemonBlock(np: Netplumb, name: string, extra: readonly string[] = []): string[] {
  return [`Host ${name}`, '  HostName 127.0.0.1', `  Port ${np.daemon.port}`, `  IdentityFile ${np.client.privateFile}`, ...extra];
}

test("a Host block's address, port, identity, known hosts file and AcceptNew are the only way to the daemon", { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const pinned = join(np.dir, 'pinned_hosts');
  const config = writeConfig(np.home, ['# the test daemon', ...daemonBlock(np, 'db1', [`  KnownHostsFile ${pinned}`, '  AcceptNew yes'])]);
  const result = await plumb(t, np, ['-v', 'db1', 'echo', 'hi']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'hi\n');
  assert.match(result.stderr, new RegExp(`^plumb: config: ${config} line 2 applies to host db1$`, 'm'));
  assert.match(result.stderr, new RegExp(`^plumb: connected to 127\\.0\\.0\\.1 port ${np.daemon.port}$`, 'm'));
  // Pinned under the address connected to, in the file the block names, not in $NETPLUMB_HOME/known_hosts.
  assert.ok(readFileSync(pinned, 'utf8').includes(`[127.0.0.1]:${np.daemon.port} `));
  assert.equal(existsSync(join(np.home, 'known_hosts')), false);
  const again = await plumb(t, np, ['db1', 'echo', 'again']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stderr, '', 'a key pinned in the configured file gives no notes');
});

test('the command line wins over the config file: -port, a typed port, -identity and -known-hosts', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const stranger = writeKeyPair(np.dir, 'stranger');
  const fromConfig = join(np.dir, 'known_from_config');
  const fromCommandLine = join(np.dir, 'known_from_command_line');
  // Port 1 has no daemon and the stranger's key is not authorized: only the command line's values can work.
  writeConfig(np.home, ['Host db1', '  HostName 127.0.0.1', '  Port 1', `  IdentityFile ${stranger.privateFile}`, `  KnownHostsFile ${fromConfig}`, '  AcceptNew yes']);
  const withOptions = await plumb(t, np, [`-port=${np.daemon.port}`, `-identity=${np.client.privateFile}`, `-known-hosts=${fromCommandLine}`, 'db1', 'echo', 'options']);
  assert.equal(withOptions.code, 0, withOptions.stderr);
  assert.equal(withOptions.stdout.toString(), 'options\n');
  assert.ok(readFileSync(fromCommandLine, 'utf8').includes(`[127.0.0.1]:${np.daemon.port} `));
  assert.equal(existsSync(fromConfig), false);
  const typedPort = await plumb(t, np, [`-identity=${np.client.privateFile}`, `-known-hosts=${fromCommandLine}`, `db1:${np.daemon.port}`, 'echo', 'typed']);
  assert.equal(typedPort.code, 0, typedPort.stderr);
  assert.equal(typedPort.stdout.toString(), 'typed\n');
  // Without the options, the file's values are used, and fail as they must.
  const fileAlone = await plumb(t, np, ['db1', 'echo', 'file']);
  assert.equal(fileAlone.code, 255);
  assert.equal(reportedCode(fileAlone.stderr), ErrorCode.ConnectFailed, fileAlone.stderr);
});

test('User asks for the account as -user does, and -user wins over it', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  writeConfig(np.home, daemonBlock(np, 'db1', [`  User ${FORBIDDEN_ACCOUNT}`, '  AcceptNew yes']));
  const refused = await plumb(t, np, ['db1', 'echo', 'hi']);
  assert.equal(refused.code, 255);
  assert.equal(reportedCode(refused.stderr), ErrorCode.NotPermitted, refused.stderr);
  assert.ok(refused.stderr.includes(`may not run commands as ${FORBIDDEN_ACCOUNT}`), refused.stderr);
  assert.equal(refused.stdout.toString(), '');
  // The daemon's own account needs no user= on the line.
  const own = userInfo().username;
  const overridden = await plumb(t, np, [`-user=${own}`, 'db1', 'id', '-un']);
  assert.equal(overridden.code, 0, overridden.stderr);
  assert.equal(overridden.stdout.toString(), `${own}\n`);
});

test('a bad line stops plumb before it connects, naming file:line, with the status of a usage error', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const flag = join(np.dir, 'ran');
  const config = writeConfig(np.home, [...daemonBlock(np, 'db1', ['  AcceptNew yes']), 'Host other', '  Prot 7021']);
  const result = await plumb(t, np, ['db1', 'touch', flag]);
  assert.equal(result.code, 255);
  assert.equal(reportedCode(result.stderr), ErrorCode.Config, result.stderr);
  assert.ok(result.stderr.includes(`${config}:7: unknown keyword "Prot"`), result.stderr);
  const usage = await plumb(t, np, ['-port=nonsense', 'db1', 'true']);
  assert.equal(usage.code, result.code, 'a bad config line ends plumb as a bad option does');
  assert.equal(existsSync(flag), false);
  assert.doesNotMatch(np.daemon.log(), /client authenticated/);
});

test('the hosts alias file still works beside the config, and a HostName wins over an alias of the same name', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  mkdirSync(np.home, { recursive: true, mode: 0o700 });
  // 192.0.2.1 is TEST-NET-1: never the daemon.
  writeFileSync(join(np.home, 'hosts'), `aliased ${np.daemon.address}\nshadowed 192.0.2.1:1\n`);
  writeConfig(np.home, [...daemonBlock(np, 'shadowed'), 'Host *', `  IdentityFile ${np.client.privateFile}`, '  AcceptNew yes']);
  const aliased = await plumb(t, np, ['aliased', 'echo', 'alias']);
  assert.equal(aliased.code, 0, aliased.stderr);
  assert.equal(aliased.stdout.toString(), 'alias\n');
  const shadowed = await plumb(t, np, ['shadowed', 'echo', 'config']);
  assert.equal(shadowed.code, 0, shadowed.stderr);
  assert.equal(shadowed.stdout.toString(), 'config\n');
  // Both pinned under the one address they reached, not under their names.
  const knownHosts = readFileSync(join(np.home, 'known_hosts'), 'utf8');
  assert.ok(knownHosts.includes(`[127.0.0.1]:${np.daemon.port} `), knownHosts);
  assert.doesNotMatch(knownHosts, /aliased|shadowed/);
});

test('-mint-key reaches the machine through the config file', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  await rewriteClients(np.daemon, np.clientsFile, `controller ${np.client.publicLine}\n`);
  writeConfig(np.home, daemonBlock(np, 'db1', ['  AcceptNew yes']));
  const keyFile = join(np.dir, 'echo.key');
  const result = await plumb(t, np, [`-mint-key=${keyFile}`, 'db1', 'echo', 'minted']);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /one-time key .* for db1 written to/);
  assert.ok(readFileSync(keyFile, 'utf8').includes('echo minted'));
});

test('the machines of a recipe across machines are resolved through the config file, each with its own User', { timeout: 180_000 }, async (t) => {
  const m = await startMachines(t, { one: { address: '127.0.0.2' }, two: { address: '127.0.0.3' } });
  const [one, two] = [m.machine('one').daemon, m.machine('two').daemon];
  // No aliases: the recipe's names reach the daemons only through the config.
  writeFileSync(join(m.home, 'hosts'), '');
  const blocks = (userOfDst: string): string[] => [
    'Host src',
    `  HostName ${one.host}`,
    `  Port ${one.port}`,
    'Host dst',
    `  HostName ${two.host}`,
    `  Port ${two.port}`,
    `  User ${userOfDst}`,
  ];
  const config = writeConfig(m.home, blocks(userInfo().username));
  const recipe = m.recipe('hello.rcp', '@src echo hello from src |\n@dst cat\n');
  const ran = await m.plumb(['-v', `-recipe=${recipe}`]);
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stdout.toString(), 'hello from src\n');
  assert.match(ran.stderr, new RegExp(`^plumb: config: ${config} line 1 applies to host src$`, 'm'));
  assert.match(ran.stderr, new RegExp(`^plumb: config: ${config} line 4 applies to host dst$`, 'm'));
  writeConfig(m.home, blocks(FORBIDDEN_ACCOUNT));
  const refused = await m.plumb([`-recipe=${recipe}`]);
  assert.equal(refused.code, 255);
  assert.equal(reportedCode(refused.stderr), ErrorCode.NotPermitted, refused.stderr);
  assert.ok(refused.stderr.includes(`may not run commands as ${FORBIDDEN_ACCOUNT}`), refused.stderr);
});
