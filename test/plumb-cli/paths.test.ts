// Tests for plumb-cli/paths: where plumb keeps its files, parsing a machine argument, the hosts alias file and
// resolving a target through it without a config file (aliases, ports, -port override); plus an alias used end to
// end against a real daemon.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { DEFAULT_PORT } from '../../protocol/wire.js';
import { emptyHostConfig, machineSettings } from '../../plumb-cli/host-config.js';
import { clientPaths, parseHostPort, readHostAliases, type Target } from '../../plumb-cli/paths.js';
import { startNetplumb } from '../helpers/daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'netplumb-paths-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
function hostsFileWith(text: string): string {
  counter += 1;
  const file = join(dir, `hosts-${counter}`);
  writeFileSync(file, text);
  return file;
}
const MISSING = join(dir, 'no-such-hosts-file');

/** Where the machine argument leads with this hosts file, no config file and -port (if given). */
function resolveTarget(machine: string, aliasesFile: string, port: number | undefined): Target {
  const paths = clientPaths({ NETPLUMB_HOME: dir });
  return machineSettings(machine, { port }, emptyHostConfig(paths.config), readHostAliases(aliasesFile), paths).target;
}

function withCode(code: string, check: (error: Error) => void = () => undefined): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as { code?: unknown }).code, code);
    check(error as Error);
    return true;
  };
}

describe('clientPaths', () => {
  test('NETPLUMB_HOME holds the identity, known_hosts, hosts and config files', () => {
    assert.deepEqual(clientPaths({ NETPLUMB_HOME: '/srv/np' }), {
      home: '/srv/np',
      identity: '/srv/np/identity',
      knownHosts: '/srv/np/known_hosts',
      hosts: '/srv/np/hosts',
      config: '/srv/np/config',
    });
  });

  test('without NETPLUMB_HOME the files live in ~/.netplumb', () => {
    const home = join(homedir(), '.netplumb');
    assert.deepEqual(clientPaths({}), {
      home,
      identity: join(home, 'identity'),
      knownHosts: join(home, 'known_hosts'),
      hosts: join(home, 'hosts'),
      config: join(home, 'config'),
    });
  });
});

describe('parseHostPort', () => {
  test('a host alone gets the default port', () => {
    assert.deepEqual(parseHostPort('build.example', 7020), { host: 'build.example', port: 7020 });
  });

  test('host:port gives that port', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:2222', 7020), { host: '127.0.0.1', port: 2222 });
  });

  test('[v6]:port gives the address without brackets and the port', () => {
    assert.deepEqual(parseHostPort('[::1]:2222', 7020), { host: '::1', port: 2222 });
  });

  test('[v6] without a port gets the default port', () => {
    assert.deepEqual(parseHostPort('[fe80::1]', 7020), { host: 'fe80::1', port: 7020 });
  });

  test('a bare IPv6 address is a host with the default port, not host:port', () => {
    assert.deepEqual(parseHostPort('::1', 7020), { host: '::1', port: 7020 });
    assert.deepEqual(parseHostPort('2001:db8::7', 7020), { host: '2001:db8::7', port: 7020 });
  });

  test('the highest and lowest ports are accepted', () => {
    assert.equal(parseHostPort('h:1', 7020).port, 1);
    assert.equal(parseHostPort('h:65535', 7020).port, 65535);
  });

  test('port 0 is refused with NP_USAGE', () => {
    assert.throws(() => parseHostPort('h:0', 7020), withCode(ErrorCode.Usage));
    assert.throws(() => parseHostPort('[::1]:0', 7020), withCode(ErrorCode.Usage));
  });

  test('port 65536 is refused with NP_USAGE', () => {
    assert.throws(() => parseHostPort('h:65536', 7020), withCode(ErrorCode.Usage));
    assert.throws(() => parseHostPort('[::1]:65536', 7020), withCode(ErrorCode.Usage));
  });

  test('malformed machine arguments are refused with NP_USAGE', () => {
    for (const bad of ['', 'host:', 'host:port', 'host:22:33', 'host name', '[::1', '::1]:22', '[host]:22', 'host:123456', '[::1]:x']) {
      assert.throws(() => parseHostPort(bad, 7020), withCode(ErrorCode.Usage), JSON.stringify(bad));
    }
  });
});

describe('readHostAliases', () => {
  test('a missing file means no aliases', () => {
    assert.equal(readHostAliases(MISSING).size, 0);
  });

  test('reads alias lines, skipping comments, blank lines and surrounding spaces', () => {
    const file = hostsFileWith('# build machines\n\nbuild  10.0.0.5:2222\n   # indented comment\n  db\t[::1]:7021  \r\nweb web.example\n');
    assert.deepEqual(
      readHostAliases(file),
      new Map([
        ['build', '10.0.0.5:2222'],
        ['db', '[::1]:7021'],
        ['web', 'web.example'],
      ]),
    );
  });

  test('a line with one word is refused with NP_CONFIG naming file:line', () => {
    const file = hostsFileWith('# aliases\nbuild 10.0.0.5\nlonely\n');
    assert.throws(() => readHostAliases(file), withCode(ErrorCode.Config, (error) => assert.ok(error.message.includes(`${file}:3`), error.message)));
  });

  test('a line with three words is refused with NP_CONFIG naming file:line', () => {
    const file = hostsFileWith('build 10.0.0.5 2222\n');
    assert.throws(() => readHostAliases(file), withCode(ErrorCode.Config, (error) => assert.ok(error.message.includes(`${file}:1`), error.message)));
  });

  test('a later line for the same alias wins', () => {
    const file = hostsFileWith('build old.example\nbuild new.example\n');
    assert.equal(readHostAliases(file).get('build'), 'new.example');
  });
});

describe('resolving a machine through the hosts file alone', () => {
  const aliases = hostsFileWith('build 10.0.0.5:2222\nplain plain.example\nsix [::1]:7021\n');

  test('an alias with a port resolves to its host and port, keeping the alias as the name', () => {
    assert.deepEqual(resolveTarget('build', aliases, undefined), { name: 'build', host: '10.0.0.5', port: 2222 });
  });

  test('an alias without a port gets the default port', () => {
    assert.deepEqual(resolveTarget('plain', aliases, undefined), { name: 'plain', host: 'plain.example', port: DEFAULT_PORT });
  });

  test('an alias followed by :port resolves to the alias host at that port', () => {
    assert.deepEqual(resolveTarget('build:3333', aliases, undefined), { name: 'build:3333', host: '10.0.0.5', port: 3333 });
    assert.deepEqual(resolveTarget('plain:3333', aliases, undefined), { name: 'plain:3333', host: 'plain.example', port: 3333 });
  });

  test('-port wins over the port typed after an alias', () => {
    assert.deepEqual(resolveTarget('build:3333', aliases, 9000), { name: 'build:3333', host: '10.0.0.5', port: 9000 });
  });

  test('an alias may point at a bracketed IPv6 address', () => {
    assert.deepEqual(resolveTarget('six', aliases, undefined), { name: 'six', host: '::1', port: 7021 });
  });

  test('-port wins over the port of an alias', () => {
    assert.deepEqual(resolveTarget('build', aliases, 9000), { name: 'build', host: '10.0.0.5', port: 9000 });
  });

  test('-port wins over the port in the machine argument', () => {
    assert.deepEqual(resolveTarget('127.0.0.1:2222', aliases, 9000), { name: '127.0.0.1:2222', host: '127.0.0.1', port: 9000 });
  });

  test('a machine that is not an alias is parsed as host[:port]', () => {
    assert.deepEqual(resolveTarget('other.example:1234', aliases, undefined), { name: 'other.example:1234', host: 'other.example', port: 1234 });
  });

  test('without a hosts file the machine argument is used as it is', () => {
    assert.deepEqual(resolveTarget('build', MISSING, undefined), { name: 'build', host: 'build', port: DEFAULT_PORT });
  });

  test('an alias pointing at a bad address is refused with NP_USAGE', () => {
    const file = hostsFileWith('broken host:0\n');
    assert.throws(() => resolveTarget('broken', file, undefined), withCode(ErrorCode.Usage));
  });
});

describe('host aliases end to end', () => {
  test('an alias in $NETPLUMB_HOME/hosts pointing at the daemon works as the machine', { timeout: 120_000 }, async (t) => {
    const np = await startNetplumb(t);
    mkdirSync(np.home, { recursive: true });
    writeFileSync(join(np.home, 'hosts'), `# test daemon\nlocal-daemon ${np.daemon.address}\n`);
    const result = await np.plumb(['echo', 'hi'], { machine: 'local-daemon' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'hi\n');
    // The key is pinned under the address the alias resolved to, not under the alias.
    const knownHosts = readFileSync(join(np.home, 'known_hosts'), 'utf8');
    assert.ok(knownHosts.includes(`[127.0.0.1]:${np.daemon.port} `), knownHosts);
    assert.ok(!knownHosts.includes('local-daemon'), knownHosts);
  });

  test('alias:port connects to the alias host at the typed port', { timeout: 120_000 }, async (t) => {
    const np = await startNetplumb(t);
    mkdirSync(np.home, { recursive: true });
    // The alias names no port, so only the typed port can reach this daemon.
    writeFileSync(join(np.home, 'hosts'), 'local-daemon 127.0.0.1\n');
    const result = await np.plumb(['echo', 'hi'], { machine: `local-daemon:${np.daemon.port}` });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), 'hi\n');
  });
});
