// Tests for plumb-cli/host-config: parsing $NETPLUMB_HOME/config (keywords, both value forms, quoting, comments,
// errors at file:line), matching hosts (globs, negation, the lines before any Host, first value wins), the
// precedence of the command line over the file over the hosts alias file, and the file's permissions.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DEFAULT_CONNECT_TIMEOUT_MS, hostSettingsFor, machineSettings, parseHostConfig, readHostConfig, type HostConfig, type MachineOverrides } from '../../plumb-cli/host-config.js';
import { clientPaths } from '../../plumb-cli/paths.js';
import { ErrorCode } from '../../protocol/errors.js';
import { DEFAULT_PORT } from '../../protocol/wire.js';

const FILE = '/np/config';
const BASE = { home: '/home/ann', dir: '/np' };
const PATHS = clientPaths({ NETPLUMB_HOME: '/np' });

function parse(text: string): HostConfig {
  return parseHostConfig(text, FILE, BASE);
}

function settings(text: string, name: string): ReturnType<typeof hostSettingsFor>['settings'] {
  return hostSettingsFor(parse(text), name).settings;
}

/** A check for assert.throws: the error has this code and its message names `where`. */
function refusedAt(code: string, where: string): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: unknown }).code, code);
    assert.ok((error as Error).message.startsWith(`${where}: `), (error as Error).message);
    return true;
  };
}

describe('parseHostConfig', () => {
  test('reads every keyword, in any case, as Keyword value', () => {
    const text = [
      'Host db1',
      '  hostname 10.0.0.7',
      '  PORT 7021',
      '  IdentityFile /keys/db',
      '  User backup',
      '  KnownHostsFile /keys/known',
      '  acceptnew yes',
      '  LimitRate 10M',
      '  ConnectTimeout 3',
    ].join('\n');
    assert.deepEqual(settings(text, 'db1'), {
      hostName: '10.0.0.7',
      port: 7021,
      identityFile: '/keys/db',
      user: 'backup',
      knownHostsFile: '/keys/known',
      acceptNew: true,
      limitRate: 10 * 1024 * 1024,
      connectTimeoutMs: 3000,
    });
  });

  test('accepts Keyword=value and Keyword = value as well', () => {
    assert.deepEqual(settings('Host=db1\nPort=7021\nUser = backup\nLimitRate= 500K\nAcceptNew =no\n', 'db1'), { port: 7021, user: 'backup', limitRate: 500 * 1024, acceptNew: false });
  });

  test('skips blank lines, comment lines and the rest of a line after a # word', () => {
    assert.deepEqual(settings('# my machines\n\n   # indented\nHost db1 # the database\n\tPort 7021   # not 7020\r\n', 'db1'), { port: 7021 });
  });

  test('a value in double quotes may hold blanks and #', () => {
    assert.deepEqual(settings('IdentityFile "/keys/my key #2"\n', 'any'), { identityFile: '/keys/my key #2' });
    assert.deepEqual(settings('KnownHostsFile="/keys/known hosts"\n', 'any'), { knownHostsFile: '/keys/known hosts' });
  });

  test('expands ~ and ~/ to the home directory and takes other relative paths from the config file\'s directory', () => {
    assert.deepEqual(settings('Host a\nIdentityFile ~/.netplumb/a\nKnownHostsFile ~\nHost b\nIdentityFile keys/b\nKnownHostsFile /abs/known\n', 'a'), { identityFile: '/home/ann/.netplumb/a', knownHostsFile: '/home/ann' });
    assert.deepEqual(settings('Host a\nIdentityFile ~/.netplumb/a\nKnownHostsFile ~\nHost b\nIdentityFile keys/b\nKnownHostsFile /abs/known\n', 'b'), { identityFile: '/np/keys/b', knownHostsFile: '/abs/known' });
  });

  test('HostName may be an IPv6 address, bracketed or bare', () => {
    assert.deepEqual(settings('Host a\nHostName [::1]\nHost b\nHostName fe80::7\n', 'a'), { hostName: '::1' });
    assert.deepEqual(settings('Host a\nHostName [::1]\nHost b\nHostName fe80::7\n', 'b'), { hostName: 'fe80::7' });
  });

  test('an unknown keyword is refused with NP_CONFIG naming file:line', () => {
    assert.throws(() => parse('Host db1\n  Port 7021\n  Hostnme db1.example\n'), refusedAt(ErrorCode.Config, `${FILE}:3`));
  });

  test('a bad value of each keyword is refused with NP_CONFIG naming file:line', () => {
    const bad = ['HostName db1:7021', 'HostName bad host', 'Port 0', 'Port 65536', 'Port ssh', 'AcceptNew maybe', 'LimitRate 10', 'LimitRate fast', 'ConnectTimeout 0', 'ConnectTimeout 1.5', 'ConnectTimeout 86401', 'IdentityFile ~ann/key', 'User'];
    for (const line of bad) assert.throws(() => parse(`# header\n${line}\n`), refusedAt(ErrorCode.Config, `${FILE}:2`), line);
  });

  test('a keyword with two values, a Host without patterns and an open quote are refused at their line', () => {
    assert.throws(() => parse('Host a\nPort 7021 7022\n'), refusedAt(ErrorCode.Config, `${FILE}:2`));
    assert.throws(() => parse('Port 7021\nHost\n'), refusedAt(ErrorCode.Config, `${FILE}:2`));
    assert.throws(() => parse('\n\nIdentityFile "/keys/a\n'), refusedAt(ErrorCode.Config, `${FILE}:3`));
  });

  test('a bad line is refused even in a block that matches no host', () => {
    assert.throws(() => parse('Host never-used\nPort none\n'), refusedAt(ErrorCode.Config, `${FILE}:2`));
  });
});

describe('hostSettingsFor', () => {
  test('* matches any run of characters and ? exactly one', () => {
    const text = 'Host db?\nPort 7001\nHost *.example.org\nPort 7002\n';
    assert.deepEqual(settings(text, 'db1'), { port: 7001 });
    assert.deepEqual(settings(text, 'db12'), {});
    assert.deepEqual(settings(text, 'backup.example.org'), { port: 7002 });
    assert.deepEqual(settings(text, 'example.org'), {});
  });

  test('patterns match whole names, without regard to case, and take . literally', () => {
    const text = 'Host db1.lan\nPort 7001\n';
    assert.deepEqual(settings(text, 'DB1.LAN'), { port: 7001 });
    assert.deepEqual(settings(text, 'db1xlan'), {});
    assert.deepEqual(settings(text, 'db1.lan.example'), {});
  });

  test('a Host line matches when any of its patterns does', () => {
    const text = 'Host db1 web? backup\nUser ops\n';
    for (const name of ['db1', 'web2', 'backup']) assert.deepEqual(settings(text, name), { user: 'ops' }, name);
    assert.deepEqual(settings(text, 'db2'), {});
  });

  test('a !pattern that matches keeps the block from applying, whatever else matches', () => {
    const text = 'Host * !bastion !10.*\nUser ops\n';
    assert.deepEqual(settings(text, 'db1'), { user: 'ops' });
    assert.deepEqual(settings(text, 'bastion'), {});
    assert.deepEqual(settings(text, '10.0.0.7'), {});
  });

  test('a block of negated patterns alone applies to no host', () => {
    assert.deepEqual(settings('Host !bastion\nUser ops\n', 'db1'), {});
  });

  test('of each setting the first value wins, across and within blocks', () => {
    const text = 'Host db1\nPort 7001\nPort 7009\nHost db*\nPort 7002\nUser ops\nHost *\nUser nobody\nLimitRate 1M\n';
    assert.deepEqual(settings(text, 'db1'), { port: 7001, user: 'ops', limitRate: 1024 * 1024 });
    assert.deepEqual(settings(text, 'db2'), { port: 7002, user: 'ops', limitRate: 1024 * 1024 });
    assert.deepEqual(settings(text, 'web'), { user: 'nobody', limitRate: 1024 * 1024 });
  });

  test('lines before any Host line apply to every host, and win over later blocks', () => {
    const text = 'User ops\nLimitRate 2M\n\nHost db1\nUser root\nPort 7001\n';
    assert.deepEqual(settings(text, 'db1'), { user: 'ops', limitRate: 2 * 1024 * 1024, port: 7001 });
    assert.deepEqual(settings(text, 'web'), { user: 'ops', limitRate: 2 * 1024 * 1024 });
  });

  test('says which lines applied to the host', () => {
    const text = 'User ops\nLimitRate 2M\nHost web\nPort 1\nHost db1\nPort 7001\nHost *\nAcceptNew yes\nHost nothing-here\n';
    assert.deepEqual(hostSettingsFor(parse(text), 'db1').applied, [
      `${FILE} lines 1-2 (before any Host) apply to host db1`,
      `${FILE} line 5 applies to host db1`,
      `${FILE} line 7 applies to host db1`,
    ]);
  });

  test('an empty file sets nothing', () => {
    assert.deepEqual(hostSettingsFor(parse(''), 'db1'), { settings: {}, applied: [] });
  });
});

describe('machineSettings', () => {
  const CONFIG = parse(
    ['Host db1', 'HostName 10.0.0.7', 'Port 7021', 'IdentityFile /keys/db', 'User backup', 'KnownHostsFile /keys/known', 'AcceptNew yes', 'LimitRate 1M', 'ConnectTimeout 3', 'Host web', 'Port 7022'].join('\n'),
  );
  const ALIASES = new Map([
    ['db1', '192.168.1.1:9999'],
    ['web', 'web.example.org:9998'],
    ['mail', 'mail.example.org'],
  ]);
  const resolve = (machine: string, overrides: MachineOverrides = {}): ReturnType<typeof machineSettings> => machineSettings(machine, overrides, CONFIG, ALIASES, PATHS);

  test('a host block gives the address, port, identity, account, known hosts and options', () => {
    const db1 = resolve('db1');
    assert.deepEqual(db1.target, { name: 'db1', host: '10.0.0.7', port: 7021 });
    assert.equal(db1.identityFile, '/keys/db');
    assert.equal(db1.user, 'backup');
    assert.equal(db1.knownHostsFile, '/keys/known');
    assert.equal(db1.acceptNew, true);
    assert.equal(db1.limitRate, 1024 * 1024);
    assert.equal(db1.connectTimeoutMs, 3000);
  });

  test('each option of the command line wins over the file', () => {
    const db1 = resolve('db1', { port: 1234, identity: '/cli/key', user: 'root', knownHosts: '/cli/known', limitRate: 4096 });
    assert.deepEqual(db1.target, { name: 'db1', host: '10.0.0.7', port: 1234 });
    assert.equal(db1.identityFile, '/cli/key');
    assert.equal(db1.user, 'root');
    assert.equal(db1.knownHostsFile, '/cli/known');
    assert.equal(db1.limitRate, 4096);
  });

  test('with a one-time key the account is the one the key binds, not the file\'s User', () => {
    assert.equal(resolve('db1', { oneTimeKey: '/keys/once' }).user, undefined);
    assert.equal(resolve('db1', { oneTimeKey: '/keys/once', user: 'backup' }).user, 'backup');
  });

  test('a port typed after the machine wins over the file', () => {
    assert.deepEqual(resolve('db1:4444').target, { name: 'db1:4444', host: '10.0.0.7', port: 4444 });
  });

  test("-accept-new turns the setting on whatever the file says; absent, the file decides; the library's false wins", () => {
    const config = parse('Host no\nAcceptNew no\nHost yes\nAcceptNew yes\n');
    assert.equal(machineSettings('no', { acceptNew: true }, config, new Map(), PATHS).acceptNew, true);
    assert.equal(machineSettings('no', {}, config, new Map(), PATHS).acceptNew, false);
    assert.equal(machineSettings('yes', {}, config, new Map(), PATHS).acceptNew, true);
    assert.equal(machineSettings('other', {}, config, new Map(), PATHS).acceptNew, false);
    // connect(machine, { acceptNew: false }) is a program saying no: the file does not turn it on.
    assert.equal(machineSettings('yes', { acceptNew: false }, config, new Map(), PATHS).acceptNew, false);
  });

  test("the file's Port wins over an alias's port, and the alias still gives the address", () => {
    assert.deepEqual(resolve('web').target, { name: 'web', host: 'web.example.org', port: 7022 });
  });

  test('a host the file says nothing of resolves through the hosts alias file with the defaults', () => {
    const mail = resolve('mail');
    assert.deepEqual(mail.target, { name: 'mail', host: 'mail.example.org', port: DEFAULT_PORT });
    assert.equal(mail.identityFile, PATHS.identity);
    assert.equal(mail.knownHostsFile, PATHS.knownHosts);
    assert.equal(mail.user, undefined);
    assert.equal(mail.acceptNew, false);
    assert.equal(mail.limitRate, undefined);
    assert.equal(mail.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
    assert.deepEqual(mail.applied, []);
  });

  test('the patterns are matched against the alias as typed, never against where it points', () => {
    const config = parse('Host mail.example.org\nPort 1111\n');
    assert.equal(machineSettings('mail', {}, config, ALIASES, PATHS).target.port, DEFAULT_PORT);
    assert.equal(machineSettings('mail.example.org', {}, config, ALIASES, PATHS).target.port, 1111);
  });

  test('host:port is matched by its host', () => {
    const config = parse('Host 127.0.0.*\nUser ops\n');
    assert.equal(machineSettings('127.0.0.1:7021', {}, config, new Map(), PATHS).user, 'ops');
  });
});

describe('readHostConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplumb-host-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a missing file sets nothing', () => {
    assert.deepEqual(readHostConfig(join(dir, 'none')).blocks, []);
  });

  test('reads the file, relative paths taken from its directory', () => {
    const file = join(dir, 'config');
    writeFileSync(file, 'Host db1\nIdentityFile db1.key\n', { mode: 0o600 });
    chmodSync(file, 0o600);
    assert.deepEqual(hostSettingsFor(readHostConfig(file, '/home/ann'), 'db1').settings, { identityFile: join(dir, 'db1.key') });
  });

  test('a file others may write is refused with NP_CONFIG', () => {
    const file = join(dir, 'config-open');
    writeFileSync(file, 'User ops\n');
    chmodSync(file, 0o666);
    assert.throws(() => readHostConfig(file), (error: unknown) => {
      assert.equal((error as { code?: unknown }).code, ErrorCode.Config);
      assert.ok((error as Error).message.includes(file), (error as Error).message);
      return true;
    });
  });
});
