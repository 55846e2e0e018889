// Tests for daemon/config: the config file parser, listen addresses, how file and command line combine over the
// defaults (the limit checks are in test/protocol/limits.test.ts); plus netplumbd started from a config file, and refusing a bad one, end to end.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { admissionSettings, buildConfig, DEFAULT_CONFIG, parseConfigFile, parseListenAddress, readConfigFile, SETTING_NAMES } from '../../daemon/config.js';
import { ErrorCode } from '../../protocol/errors.js';
import { DEFAULT_LIMITS, DEFAULT_PORT } from '../../protocol/wire.js';
import { baseDaemonConfig, BIN, reportedCode, writeKeyPair } from '../helpers/daemon.js';
import { runProcess, spawnProcess } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';

const NO_FLAGS = { stdio: false, foreground: false };
const NONE: ReadonlyMap<string, string> = new Map();

function withCode(code: string, check: (error: Error) => void = () => undefined): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: unknown }).code, code);
    check(error as Error);
    return true;
  };
}

function mentions(text: string): (error: Error) => void {
  return (error) => assert.ok(error.message.includes(text), `${JSON.stringify(error.message)} should name ${text}`);
}

describe('parseConfigFile', () => {
  test('reads name value lines, skipping comments and blank lines, each with the line it is on', () => {
    const text = '# netplumbd\n\nlisten 127.0.0.1:7021\n   # indented comment\n  hostkey   /etc/np/key  \nmax-connections\t10\r\n';
    const parsed = parseConfigFile(text, 'netplumbd.conf');
    assert.deepEqual(
      new Map(parsed),
      new Map([
        ['listen', '127.0.0.1:7021'],
        ['hostkey', '/etc/np/key'],
        ['max-connections', '10'],
      ]),
    );
    assert.deepEqual(
      parsed.where,
      new Map([
        ['listen', 'netplumbd.conf:3'],
        ['hostkey', 'netplumbd.conf:5'],
        ['max-connections', 'netplumbd.conf:6'],
      ]),
    );
  });

  test('an empty file or one with only comments gives no settings', () => {
    assert.equal(parseConfigFile('', 'a.conf').size, 0);
    assert.equal(parseConfigFile('# nothing\n\n#\n', 'a.conf').size, 0);
  });

  test('a value may hold spaces', () => {
    assert.equal(parseConfigFile('spool /var/spool/net plumb\n', 'a.conf').get('spool'), '/var/spool/net plumb');
  });

  test('a later line for the same setting wins', () => {
    assert.equal(parseConfigFile('max-streams 8\nmax-streams 16\n', 'a.conf').get('max-streams'), '16');
  });

  test('every setting name is accepted', () => {
    const text = SETTING_NAMES.map((name) => `${name} 1`).join('\n');
    assert.equal(parseConfigFile(text, 'a.conf').size, SETTING_NAMES.length);
  });

  test('an unknown setting is refused with NP_CONFIG naming source:line', () => {
    const text = '# ok\nlisten 127.0.0.1:7021\nmax-conections 10\n';
    assert.throws(() => parseConfigFile(text, '/etc/np.conf'), withCode(ErrorCode.Config, mentions('/etc/np.conf:3')));
  });

  test('config is not a setting of the file itself', () => {
    assert.throws(() => parseConfigFile('config /other.conf\n', 'a.conf'), withCode(ErrorCode.Config, mentions('a.conf:1')));
  });

  test('a name without a value is refused with NP_CONFIG naming source:line', () => {
    assert.throws(() => parseConfigFile('listen 127.0.0.1:1\nhostkey\n', 'a.conf'), withCode(ErrorCode.Config, mentions('a.conf:2')));
  });

  test('name=value lines and upper-case names are malformed', () => {
    assert.throws(() => parseConfigFile('listen=127.0.0.1:1\n', 'a.conf'), withCode(ErrorCode.Config, mentions('a.conf:1')));
    assert.throws(() => parseConfigFile('\nListen 127.0.0.1:1\n', 'a.conf'), withCode(ErrorCode.Config, mentions('a.conf:2')));
  });

  test('a config file that cannot be read is refused with NP_CONFIG', (t) => {
    const dir = tempDir(t, 'netplumb-config-');
    assert.throws(() => readConfigFile(join(dir, 'missing.conf')), withCode(ErrorCode.Config));
  });
});

describe('parseListenAddress', () => {
  test('host:port', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:7021'), { host: '127.0.0.1', port: 7021 });
  });

  test('[v6]:port gives the address without brackets', () => {
    assert.deepEqual(parseListenAddress('[::1]:7021'), { host: '::1', port: 7021 });
  });

  test('a host alone gets the default port', () => {
    assert.deepEqual(parseListenAddress('0.0.0.0'), { host: '0.0.0.0', port: DEFAULT_PORT });
    assert.deepEqual(parseListenAddress('[::]'), { host: '::', port: DEFAULT_PORT });
  });

  test('port 0 is accepted: it asks for a free port', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  });

  test('malformed addresses and ports beyond 65535 are refused with NP_CONFIG', () => {
    for (const bad of ['', 'host:', 'host:port', '::1', '[::1', '[::1]:', 'a:1:2', '127.0.0.1:65536', '127.0.0.1:123456']) {
      assert.throws(() => parseListenAddress(bad), withCode(ErrorCode.Config), JSON.stringify(bad));
    }
  });
});

describe('buildConfig', () => {
  test('with no settings every value is the default', () => {
    assert.deepEqual(buildConfig(NONE, NONE, NO_FLAGS), { ...DEFAULT_CONFIG, limits: { ...DEFAULT_LIMITS } });
  });

  test('file settings replace the defaults', () => {
    const config = buildConfig(new Map([['listen', '127.0.0.1:1'], ['max-streams', '8'], ['log-level', 'debug']]), NONE, NO_FLAGS);
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 1 });
    assert.equal(config.limits.maxStreamsPerConnection, 8);
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.hostKeyFile, DEFAULT_CONFIG.hostKeyFile);
  });

  test('a command-line setting wins over the same setting in the file', () => {
    const file = new Map([
      ['listen', '127.0.0.1:1'],
      ['hostkey', '/file/key'],
      ['max-connections', '100'],
    ]);
    const cli = new Map([
      ['listen', '127.0.0.1:2'],
      ['max-connections', '200'],
    ]);
    const config = buildConfig(file, cli, NO_FLAGS);
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 2 });
    assert.equal(config.limits.maxConnections, 200);
    assert.equal(config.hostKeyFile, '/file/key', 'a file setting the command line does not name stays');
  });

  test('every path and duration setting reaches its field', () => {
    const config = buildConfig(
      new Map([
        ['clients', '/c'],
        ['spool', '/s'],
        ['shutdown-grace-ms', '1500'],
        ['kill-grace-ms', '250'],
        ['handshake-timeout-ms', '1000'],
        ['max-unauthenticated', '2'],
        ['max-connections', '3'],
      ]),
      NONE,
      NO_FLAGS,
    );
    assert.equal(config.clientsFile, '/c');
    assert.equal(config.spoolDir, '/s');
    assert.equal(config.shutdownGraceMs, 1500);
    assert.equal(config.killGraceMs, 250);
    assert.equal(config.limits.handshakeTimeoutMs, 1000);
    assert.equal(config.limits.maxUnauthenticatedConnections, 2);
    assert.equal(config.limits.maxConnections, 3);
  });

  test('the stdio and foreground flags are taken as given', () => {
    const config = buildConfig(NONE, NONE, { stdio: true, foreground: true });
    assert.equal(config.stdio, true);
    assert.equal(config.foreground, true);
  });

  test('building a config leaves the defaults untouched', () => {
    buildConfig(new Map([['listen', '127.0.0.1:1'], ['max-streams', '8']]), NONE, NO_FLAGS);
    assert.deepEqual(DEFAULT_CONFIG.listen, { host: '0.0.0.0', port: DEFAULT_PORT });
    assert.deepEqual(DEFAULT_CONFIG.limits, DEFAULT_LIMITS);
  });

  test('a number setting that is not a positive integer is refused with NP_CONFIG', () => {
    for (const bad of ['0', '-1', '1.5', 'ten', '1e3', '', '01', '99999999999999']) {
      assert.throws(() => buildConfig(new Map([['max-streams', bad]]), NONE, NO_FLAGS), withCode(ErrorCode.Config), JSON.stringify(bad));
      assert.throws(() => buildConfig(NONE, new Map([['kill-grace-ms', bad]]), NO_FLAGS), withCode(ErrorCode.Config), JSON.stringify(bad));
    }
  });

  test('an unknown log level is refused with NP_CONFIG', () => {
    assert.throws(() => buildConfig(new Map([['log-level', 'verbose']]), NONE, NO_FLAGS), withCode(ErrorCode.Config));
  });

  test('an unknown setting name is refused with NP_CONFIG', () => {
    assert.throws(() => buildConfig(NONE, new Map([['no-such-setting', '1']]), NO_FLAGS), withCode(ErrorCode.Config));
  });

  test('a bad listen address is refused with NP_CONFIG', () => {
    assert.throws(() => buildConfig(NONE, new Map([['listen', 'nowhere:']]), NO_FLAGS), withCode(ErrorCode.Config));
  });

  test('the limits are checked after file and command line are combined', () => {
    // Each source alone is fine against the defaults; together max-unauthenticated exceeds max-connections.
    const file = new Map([['max-unauthenticated', '5']]);
    const cli = new Map([['max-connections', '4']]);
    assert.doesNotThrow(() => buildConfig(file, NONE, NO_FLAGS));
    assert.doesNotThrow(() => buildConfig(NONE, new Map([['max-connections', '64']]), NO_FLAGS));
    assert.throws(() => buildConfig(file, cli, NO_FLAGS), withCode(ErrorCode.Config));
  });
});

describe('netplumbd with a config file', () => {
  const TIMEOUT_MS = 120_000;

  test('starts from a config file holding the listen address and key paths, and serves', { timeout: TIMEOUT_MS }, async (t) => {
    const dir = tempDir(t, 'netplumb-config-e2e-');
    const hostKey = writeKeyPair(dir, 'host_key');
    const client = writeKeyPair(dir, 'identity');
    const clientsFile = join(dir, 'authorized_clients');
    writeFileSync(clientsFile, `${client.publicLine}\n`);
    const configFile = join(dir, 'netplumbd.conf');
    writeFileSync(configFile, `# test daemon\n${baseDaemonConfig(dir)}listen 127.0.0.1:0\nhostkey ${hostKey.privateFile}\nclients ${clientsFile}\n\nhandshake-timeout-ms 20000\n`);
    const daemon = spawnProcess(t, [process.execPath, BIN.netplumbd, `-config=${configFile}`]);
    const log = await daemon.waitForStderr(/listening on 127\.0\.0\.1:\d+\n/, 20_000);
    const port = Number(/listening on 127\.0\.0\.1:(\d+)\n/.exec(log)?.[1]);
    // The key fingerprint in the log shows the host key came from the file's path.
    assert.ok(log.includes(hostKey.fingerprint), log);
    const plumb = await runProcess(t, [process.execPath, BIN.plumb, `-identity=${client.privateFile}`, '-accept-new', `127.0.0.1:${port}`, 'echo', 'from-config'], {
      env: { ...process.env, NETPLUMB_HOME: join(dir, 'home') },
    });
    assert.equal(plumb.code, 0, plumb.stderr);
    assert.equal(plumb.stdout.toString(), 'from-config\n');
    daemon.child.kill('SIGTERM');
    const stopped = await daemon.result;
    assert.equal(stopped.code, 0, stopped.stderr);
  });

  test('an unknown setting in the file makes netplumbd exit 1 with one line naming NP_CONFIG and file:line', { timeout: TIMEOUT_MS }, async (t) => {
    const dir = tempDir(t, 'netplumb-config-e2e-');
    const hostKey = writeKeyPair(dir, 'host_key');
    const clientsFile = join(dir, 'authorized_clients');
    writeFileSync(clientsFile, '');
    const configFile = join(dir, 'netplumbd.conf');
    writeFileSync(configFile, `listen 127.0.0.1:0\nhostkey ${hostKey.privateFile}\nclients ${clientsFile}\nmax-conections 10\n`);
    const result = await runProcess(t, [process.execPath, BIN.netplumbd, `-config=${configFile}`], { timeoutMs: 30_000 });
    assert.equal(result.code, 1);
    const lines = result.stderr.split('\n').filter((line) => line !== '');
    assert.equal(lines.length, 1, result.stderr);
    assert.equal(reportedCode(result.stderr), ErrorCode.Config);
    assert.ok(result.stderr.includes(`${configFile}:4`), result.stderr);
    assert.doesNotMatch(result.stderr, /listening on/);
  });

  test('a command-line setting overrides the config file in a running netplumbd', { timeout: TIMEOUT_MS }, async (t) => {
    const dir = tempDir(t, 'netplumb-config-e2e-');
    const hostKey = writeKeyPair(dir, 'host_key');
    const clientsFile = join(dir, 'authorized_clients');
    writeFileSync(clientsFile, '');
    const configFile = join(dir, 'netplumbd.conf');
    // The file names port 1; the command line's port 0 (a free port) must win.
    writeFileSync(configFile, `${baseDaemonConfig(dir)}listen 127.0.0.1:1\nhostkey ${hostKey.privateFile}\nclients ${clientsFile}\n`);
    const daemon = spawnProcess(t, [process.execPath, BIN.netplumbd, `-config=${configFile}`, '-listen=127.0.0.1:0']);
    await daemon.waitForStderr(/listening on 127\.0\.0\.1:\d+\n/, 20_000);
    assert.doesNotMatch(daemon.stderrSoFar(), /listening on 127\.0\.0\.1:1\n/);
    daemon.child.kill('SIGTERM');
    assert.equal((await daemon.result).code, 0);
  });
});

describe('admission settings', () => {
  const build = (settings: [string, string][]) => buildConfig(new Map(settings), NONE, NO_FLAGS);

  test('default to a share of 8 per source, a 3 s hello deadline, 2 s penalties refused beyond 10 s, loopback exempt', () => {
    assert.deepEqual(DEFAULT_CONFIG.admission, {
      maxPendingPerSource: 8,
      helloTimeoutMs: 3000,
      penaltyMs: 2000,
      penaltyThresholdMs: 10_000,
      maxPenaltyMs: 600_000,
      exempt: ['127.0.0.0/8', '::1/128'],
    });
  });

  test('each is read from its setting', () => {
    const config = build([
      ['max-unauthenticated-per-source', '4'],
      ['hello-timeout-ms', '1500'],
      ['penalty-ms', '5000'],
      ['penalty-threshold-ms', '20000'],
      ['max-penalty-ms', '60000'],
      ['penalty-exempt', '10.0.0.0/8, 2001:db8::/32'],
    ]);
    assert.deepEqual(config.admission, {
      maxPendingPerSource: 4,
      helloTimeoutMs: 1500,
      penaltyMs: 5000,
      penaltyThresholdMs: 20_000,
      maxPenaltyMs: 60_000,
      exempt: ['10.0.0.0/8', '2001:db8::/32'],
    });
  });

  test('penalty-ms 0 turns penalties off; penalty-exempt none exempts nothing', () => {
    const config = build([
      ['penalty-ms', '0'],
      ['penalty-exempt', 'none'],
    ]);
    assert.equal(config.admission.penaltyMs, 0);
    assert.deepEqual(config.admission.exempt, []);
  });

  test('a share above the pool, or a hello deadline beyond the handshake timeout, yields to the larger setting', () => {
    const settings = admissionSettings(build([
      ['max-unauthenticated', '4'],
      ['max-unauthenticated-per-source', '16'],
      ['handshake-timeout-ms', '1000'],
    ]));
    assert.equal(settings.maxPending, 4);
    assert.equal(settings.maxPendingPerSource, 4);
    assert.equal(settings.helloTimeoutMs, 1000);
  });

  test('a threshold above max-penalty-ms, a bad network or a zero share is NP_CONFIG', () => {
    assert.throws(() => build([['penalty-threshold-ms', '700000']]), withCode(ErrorCode.Config, mentions('penalty-threshold-ms')));
    assert.throws(() => build([['penalty-exempt', '10.0.0.0/40']]), withCode(ErrorCode.Config, mentions('10.0.0.0/40')));
    assert.throws(() => build([['max-unauthenticated-per-source', '0']]), withCode(ErrorCode.Config));
    assert.throws(() => build([['hello-timeout-ms', '-5']]), withCode(ErrorCode.Config));
  });
});
