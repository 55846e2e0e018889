// Tests for daemon/one-time-keys.ts on a real store directory: a minted key is spent exactly once (also across a
// restart and across racing processes), an expired key is refused and its record removed, purging keeps only live
// records, the record never holds the private key, the store is private; and checkBinding lets through only the
// exact command or recipe the key was bound to.

import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { checkBinding, MAX_STORED_ONE_TIME_KEYS, OneTimeKeyStore } from '../../daemon/one-time-keys.js';
import { ErrorCode, type NetplumbError } from '../../protocol/errors.js';
import { formatPublicKeyLine, generateIdentity, parsePrivateKeyPem, type PublicIdentity } from '../../protocol/keys.js';
import type { Endpoints, ExecRequest, KeyBinding, RecipeRequest } from '../../protocol/session.js';
import { StartKind } from '../../protocol/wire.js';
import { spawnProcess } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';

const TIMEOUT_MS = 30_000;
const CONTROLLER = generateIdentity('ed25519', 'controller of the tests').publicIdentity;
const HOST_KEY = generateIdentity('ed25519', 'host of the tests').publicIdentity;
const MINUTE_MS = 60_000;
/** Compiled next to this file's build output, so children import the same code the tests exercise. */
const STORE_MODULE = fileURLToPath(new URL('../../daemon/one-time-keys.js', import.meta.url));
const KEYS_MODULE = fileURLToPath(new URL('../../protocol/keys.js', import.meta.url));

function endpoints(partial: Partial<Endpoints> = {}): Endpoints {
  return { inFifos: [], outFifos: [], listenSockets: [], connectSockets: [], ...partial };
}

const BOUND_ARGV = ['sh', '-c', 'cat in.fifo > result'];
const EXEC_BINDING: KeyBinding & { user: string } = {
  kind: StartKind.Exec,
  argv: BOUND_ARGV,
  user: 'builder',
  endpoints: endpoints({ inFifos: ['in.fifo'], outFifos: ['/srv/out.fifo'], listenSockets: ['l.sock'], connectSockets: ['/run/pg.sock'] }),
};

/** A settable clock, so expiry is tested without waiting. */
class Clock {
  constructor(public ms = Date.UTC(2030, 0, 1)) {}
  readonly now = (): number => this.ms;
}

function storeIn(scope: Scope, clock = new Clock()): { dir: string; store: OneTimeKeyStore; clock: Clock } {
  const dir = join(tempDir(scope, 'netplumb-otk-'), 'one-time-keys');
  return { dir, store: new OneTimeKeyStore(dir, clock.now), clock };
}

/** Mints a key and returns the public identity a node would authenticate with. */
function mintKey(store: OneTimeKeyStore, lifetimeSeconds = 600, binding = EXEC_BINDING): { identity: PublicIdentity; pem: string } {
  const { key, record } = store.mint(CONTROLLER, binding, lifetimeSeconds, HOST_KEY);
  const identity = parsePrivateKeyPem(key.privateKeyPem).publicIdentity;
  assert.equal(identity.fingerprint, key.fingerprint);
  assert.equal(record.fingerprint, key.fingerprint);
  return { identity, pem: key.privateKeyPem };
}

function refusedBecause(code: string, words: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.equal((error as NetplumbError).code, code, String(error));
    assert.match((error as Error).message, words);
    return true;
  };
}

function storeFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

describe('OneTimeKeyStore', () => {
  test('a minted key carries its fingerprint, expiry, account and the host key line', { timeout: TIMEOUT_MS }, (t) => {
    const { store, clock } = storeIn(t);
    const { key, record } = store.mint(CONTROLLER, EXEC_BINDING, 90, HOST_KEY);
    assert.equal(key.expiresAt, clock.ms + 90_000);
    assert.equal(key.user, 'builder');
    assert.equal(key.hostKey, formatPublicKeyLine(HOST_KEY));
    assert.equal(record.controller, CONTROLLER.fingerprint);
    assert.deepEqual(record.binding, EXEC_BINDING);
    const second = store.mint(CONTROLLER, EXEC_BINDING, 90, HOST_KEY);
    assert.notEqual(second.key.fingerprint, key.fingerprint, 'every mint makes a new key');
  });

  test('a key is spent once: the first spend returns its record, later ones throw "already used"', { timeout: TIMEOUT_MS }, (t) => {
    const { dir, store } = storeIn(t);
    const { identity } = mintKey(store);
    assert.equal(storeFiles(dir).filter((name) => name.endsWith('.key')).length, 1);
    const record = store.spend(identity);
    assert.ok(record !== undefined);
    assert.equal(record.fingerprint, identity.fingerprint);
    assert.deepEqual(record.binding, EXEC_BINDING);
    assert.deepEqual(
      storeFiles(dir).map((name) => name.replace(/^[0-9a-f]{64}/, 'ID')),
      ['ID.spent'],
    );
    for (let attempt = 0; attempt < 3; attempt++) {
      assert.throws(() => store.spend(identity), refusedBecause(ErrorCode.NotAuthorized, /already used/));
    }
  });

  test('a key never minted here is unknown (undefined), in an empty store and in a missing one', { timeout: TIMEOUT_MS }, (t) => {
    const { dir, store } = storeIn(t);
    const stranger = generateIdentity('ed25519', 'stranger').publicIdentity;
    assert.equal(store.spend(stranger), undefined, 'store directory not made yet');
    mintKey(store);
    assert.equal(store.spend(stranger), undefined, 'store holding other keys');
    assert.equal(storeFiles(dir).length, 1, 'looking a key up leaves nothing behind');
  });

  test('an expired key throws "expired", its record is removed, and after that it is unknown', { timeout: TIMEOUT_MS }, (t) => {
    const { dir, store, clock } = storeIn(t);
    const { identity } = mintKey(store, 60);
    clock.ms += 60_000; // expiresAt is exclusive: at that instant the key is no longer good
    assert.throws(() => store.spend(identity), refusedBecause(ErrorCode.NotAuthorized, /expired/));
    assert.deepEqual(storeFiles(dir), []);
    assert.equal(store.spend(identity), undefined);
  });

  test('a key one millisecond before expiry is still good', { timeout: TIMEOUT_MS }, (t) => {
    const { store, clock } = storeIn(t);
    const { identity } = mintKey(store, 60);
    clock.ms += 60_000 - 1;
    assert.ok(store.spend(identity) !== undefined);
  });

  test('purgeExpired removes expired good and spent records and keeps live ones of both kinds', { timeout: TIMEOUT_MS }, (t) => {
    const { dir, store, clock } = storeIn(t);
    const shortGood = mintKey(store, 60);
    const shortSpent = mintKey(store, 60);
    const longGood = mintKey(store, 3600);
    const longSpent = mintKey(store, 3600);
    assert.ok(store.spend(shortSpent.identity) !== undefined);
    assert.ok(store.spend(longSpent.identity) !== undefined);
    assert.equal(store.purgeExpired(), 4, 'nothing has expired yet');
    clock.ms += 10 * MINUTE_MS;
    assert.equal(store.purgeExpired(), 2);
    const left = storeFiles(dir);
    assert.equal(left.length, 2, left.join(' '));
    assert.equal(left.filter((name) => name.endsWith('.key')).length, 1);
    assert.equal(left.filter((name) => name.endsWith('.spent')).length, 1);
    assert.equal(store.spend(shortGood.identity), undefined, 'the expired good record is gone');
    assert.throws(() => store.spend(longSpent.identity), refusedBecause(ErrorCode.NotAuthorized, /already used/));
    assert.ok(store.spend(longGood.identity) !== undefined, 'the live good key still works');
  });

  test('purgeExpired leaves unreadable records and files of other kinds alone, and counts the unreadable ones', { timeout: TIMEOUT_MS }, (t) => {
    const { dir, store } = storeIn(t);
    mintKey(store);
    writeFileSync(join(dir, 'garbage.key'), 'not json');
    writeFileSync(join(dir, 'notes.txt'), 'kept');
    assert.equal(store.purgeExpired(), 2);
    assert.ok(existsSync(join(dir, 'garbage.key')));
    assert.ok(existsSync(join(dir, 'notes.txt')));
  });

  test('a store made anew on the same directory (a restart) still finds a spent key spent and a good key good', { timeout: TIMEOUT_MS }, (t) => {
    const { dir, store, clock } = storeIn(t);
    const spent = mintKey(store);
    const good = mintKey(store);
    assert.ok(store.spend(spent.identity) !== undefined);
    const restarted = new OneTimeKeyStore(dir, clock.now);
    assert.throws(() => restarted.spend(spent.identity), refusedBecause(ErrorCode.NotAuthorized, /already used/));
    const record = restarted.spend(good.identity);
    assert.equal(record?.fingerprint, good.identity.fingerprint);
    assert.throws(() => new OneTimeKeyStore(dir, clock.now).spend(good.identity), refusedBecause(ErrorCode.NotAuthorized, /already used/));
  });

  test('the record never holds the private key', { timeout: TIMEOUT_MS }, (t) => {
    const { dir, store } = storeIn(t);
    const { pem } = mintKey(store);
    const body = pem
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('-----'))
      .join('');
    assert.ok(body.length > 40, 'the PEM has a body to look for');
    const [name] = storeFiles(dir);
    assert.ok(name !== undefined);
    const text = readFileSync(join(dir, name), 'utf8');
    assert.ok(!text.includes(body), 'PEM body found in the record');
    for (const line of pem.split('\n').filter((line) => line.length >= 16 && !line.startsWith('-----'))) {
      assert.ok(!text.includes(line), `PEM line ${line} found in the record`);
    }
    assert.doesNotMatch(text, /PRIVATE KEY/);
    // The raw 32-byte seed, in any encoding the record might use.
    const seed = Buffer.from(parsePrivateKeyPem(pem).privateKey.export({ format: 'jwk' }).d ?? '', 'base64url');
    assert.equal(seed.length, 32);
    for (const encoded of [seed.toString('hex'), seed.toString('base64'), seed.toString('base64url')]) {
      assert.ok(!text.includes(encoded), 'private seed found in the record');
    }
  });

  test('the store directory is made 0700 and its records are 0600, good and spent alike', { timeout: TIMEOUT_MS }, (t) => {
    const { dir, store } = storeIn(t);
    const { identity } = mintKey(store);
    mintKey(store);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.ok(store.spend(identity) !== undefined);
    const names = storeFiles(dir);
    assert.deepEqual(names.map((name) => name.slice(64)).sort(), ['.key', '.spent']);
    for (const name of names) assert.equal(statSync(join(dir, name)).mode & 0o777, 0o600, name);
  });

  test('a store already holding the most records refuses another mint with NP_TOO_MANY_CONNECTIONS', { timeout: TIMEOUT_MS }, (t) => {
    const { dir, store } = storeIn(t);
    mintKey(store); // makes the directory
    // Unreadable records count too (they are kept for someone to look at), and are the cheapest to make.
    for (let index = 1; index < MAX_STORED_ONE_TIME_KEYS; index++) writeFileSync(join(dir, `filler-${index}.key`), '');
    assert.throws(() => store.mint(CONTROLLER, EXEC_BINDING, 60, HOST_KEY), refusedBecause(ErrorCode.TooManyConnections, /one-time keys/));
    assert.equal(storeFiles(dir).length, MAX_STORED_ONE_TIME_KEYS);
  });

  test('a store directory others may write to, or that is not the daemon\'s, is refused for mint and spend alike', { timeout: TIMEOUT_MS }, (t) => {
    // Records grant what they name: anyone who could write one would mint keys of their own.
    const { dir, store } = storeIn(t);
    const { identity } = mintKey(store);
    for (const mode of [0o777, 0o720, 0o702]) {
      chmodSync(dir, mode);
      assert.throws(() => store.mint(CONTROLLER, EXEC_BINDING, 60, HOST_KEY), refusedBecause(ErrorCode.Config, /group and others cannot write/), mode.toString(8));
      assert.throws(() => store.spend(identity), refusedBecause(ErrorCode.NotAuthorized, /group and others cannot write/), mode.toString(8));
    }
    chmodSync(dir, 0o700);
    if (process.geteuid?.() === 0) {
      chownSync(dir, 65534, 65534);
      assert.throws(() => store.spend(identity), refusedBecause(ErrorCode.NotAuthorized, /daemon's own/));
      chownSync(dir, 0, 0);
    }
    assert.ok(store.spend(identity) !== undefined, 'once the directory is right again, the key is good');
  });

  test('processes racing to spend one key: exactly one gets the record, the others "already used"', { timeout: TIMEOUT_MS }, async (t) => {
    const RACERS = 6;
    // Several keys raced in turn: every key is a fresh race, and one set of processes makes many of them.
    const KEYS = 12;
    const { dir, store, clock } = storeIn(t);
    const identities = Array.from({ length: KEYS }, () => mintKey(store).identity);
    // Each child loads the store, says ready, then at "go" spends every key in the same order as all the others.
    const script = `
      import { OneTimeKeyStore } from ${JSON.stringify(STORE_MODULE)};
      import { parsePublicKeyLine } from ${JSON.stringify(KEYS_MODULE)};
      const store = new OneTimeKeyStore(process.env.STORE_DIR, () => Number(process.env.STORE_NOW));
      const identities = JSON.parse(process.env.KEY_LINES).map((line) => parsePublicKeyLine(line));
      process.stdout.write('ready\\n');
      process.stdin.once('data', () => {
        const outcomes = identities.map((identity) => {
          try {
            const record = store.spend(identity);
            return record === undefined ? { result: 'unknown' } : { result: 'record', fingerprint: record.fingerprint };
          } catch (error) {
            return { result: 'refused', code: error.code, message: error.message };
          }
        });
        process.stdout.write(JSON.stringify(outcomes) + '\\n');
        process.exit(0);
      });
    `;
    const env = { ...process.env, STORE_DIR: dir, STORE_NOW: String(clock.ms), KEY_LINES: JSON.stringify(identities.map((identity) => formatPublicKeyLine(identity))) };
    const racers = Array.from({ length: RACERS }, () => spawnProcess(t, [process.execPath, '--input-type=module', '-e', script], { stdin: 'open', env, timeoutMs: 20_000 }));
    await Promise.all(racers.map((racer) => racer.waitForStdout(/^ready\n/, 15_000)));
    for (const racer of racers) racer.child.stdin?.write('go\n');
    const results = await Promise.all(racers.map((racer) => racer.result));
    type Outcome = { result: string; fingerprint?: string; code?: string; message?: string };
    const byRacer = results.map((result, index): Outcome[] => {
      assert.equal(result.code, 0, `racer ${index}: ${result.stderr}`);
      return JSON.parse(result.stdout.toString().split('\n')[1] ?? '') as Outcome[];
    });
    identities.forEach((identity, key) => {
      const outcomes = byRacer.map((outcomes) => outcomes[key] as Outcome);
      const winners = outcomes.filter((outcome) => outcome.result === 'record');
      assert.equal(winners.length, 1, `key ${key}: ${JSON.stringify(outcomes)}`);
      assert.equal(winners[0]?.fingerprint, identity.fingerprint);
      for (const loser of outcomes.filter((outcome) => outcome.result !== 'record')) {
        assert.equal(loser.result, 'refused', JSON.stringify(loser));
        assert.equal(loser.code, ErrorCode.NotAuthorized);
        assert.match(loser.message ?? '', /already used/);
      }
      assert.throws(() => store.spend(identity), refusedBecause(ErrorCode.NotAuthorized, /already used/));
    });
    assert.equal(storeFiles(dir).filter((name) => name.endsWith('.spent')).length, KEYS);
  });
});

const STREAMS = { stdin: 1, stdout: 3, stderr: 5 };

function execRequest(overrides: Partial<ExecRequest> = {}): ExecRequest {
  return { kind: StartKind.Exec, argv: [...BOUND_ARGV], env: [], endpoints: endpoints(), ...STREAMS, ...overrides };
}

const RECIPE_TEXT = 'cat in.fifo | sort > sorted\n';
const RECIPE_BINDING: KeyBinding = { kind: StartKind.Recipe, text: RECIPE_TEXT, source: 'sort.rcp', user: 'builder', endpoints: endpoints({ inFifos: ['in.fifo'] }) };

function recipeRequest(overrides: Partial<RecipeRequest> = {}): RecipeRequest {
  return { kind: StartKind.Recipe, text: RECIPE_TEXT, source: 'sort.rcp', env: [], endpoints: endpoints(), ...STREAMS, ...overrides };
}

function notAllowed(error: unknown): boolean {
  assert.equal((error as NetplumbError).code, ErrorCode.NotPermitted, String(error));
  assert.match((error as Error).message, /this one-time key does not allow that/);
  return true;
}

describe('checkBinding', () => {
  test('the exact bound argv is allowed, as the bound user or with no user asked', () => {
    checkBinding(EXEC_BINDING, execRequest());
    checkBinding(EXEC_BINDING, execRequest({ user: 'builder' }));
  });

  for (const [what, argv] of [
    ['an extra argument', [...BOUND_ARGV, 'extra']],
    ['a missing argument', BOUND_ARGV.slice(0, -1)],
    ['a changed argument', ['sh', '-c', 'cat in.fifo > elsewhere']],
    ['the same words joined differently', ['sh', '-c cat', 'in.fifo > result']],
    ['an argument with a trailing space', ['sh', '-c', 'cat in.fifo > result ']],
    ['another program', ['bash', '-c', 'cat in.fifo > result']],
    ['an empty argv', []],
  ] as const) {
    test(`${what} is refused`, () => {
      assert.throws(() => checkBinding(EXEC_BINDING, execRequest({ argv: [...argv] })), notAllowed);
    });
  }

  test('a pseudo-terminal is refused even for the bound argv', () => {
    assert.throws(() => checkBinding(EXEC_BINDING, execRequest({ pty: { term: 'xterm', cols: 80, rows: 24 } })), notAllowed);
  });

  test('another user than the bound one is refused', () => {
    assert.throws(() => checkBinding(EXEC_BINDING, execRequest({ user: 'root' })), (error) => notAllowed(error) && /builder/.test((error as Error).message));
    assert.throws(() => checkBinding(RECIPE_BINDING, recipeRequest({ user: 'root' })), notAllowed);
  });

  test('endpoints within the bound ones are allowed, kind by kind', () => {
    checkBinding(EXEC_BINDING, execRequest({ endpoints: EXEC_BINDING.endpoints }));
    checkBinding(EXEC_BINDING, execRequest({ endpoints: endpoints({ inFifos: ['in.fifo'], connectSockets: ['/run/pg.sock'] }) }));
  });

  for (const [what, asked] of [
    ['an unbound named pipe', endpoints({ inFifos: ['other.fifo'] })],
    ['a bound path asked as another kind', endpoints({ outFifos: ['in.fifo'] })],
    ['a bound listen socket asked as a connect socket', endpoints({ connectSockets: ['l.sock'] })],
    ['one unbound path among bound ones', endpoints({ inFifos: ['in.fifo'], listenSockets: ['l.sock', 'x.sock'] })],
    ['a relative path where an absolute one is bound', endpoints({ outFifos: ['srv/out.fifo'] })],
  ] as const) {
    test(`${what} is refused`, () => {
      assert.throws(() => checkBinding(EXEC_BINDING, execRequest({ endpoints: asked })), notAllowed);
    });
  }

  test('the bound recipe text is allowed, even under another source name', () => {
    checkBinding(RECIPE_BINDING, recipeRequest({ endpoints: endpoints({ inFifos: ['in.fifo'] }) }));
    checkBinding(RECIPE_BINDING, recipeRequest({ source: 'renamed.rcp' }));
  });

  test('a recipe whose text differs at all is refused', () => {
    for (const text of [RECIPE_TEXT.trimEnd(), `${RECIPE_TEXT}rm -rf sorted\n`, RECIPE_TEXT.replace('sort', 'sort -r'), '']) {
      assert.throws(() => checkBinding(RECIPE_BINDING, recipeRequest({ text })), notAllowed, JSON.stringify(text));
    }
  });

  test('a command for a recipe key and a recipe for a command key are refused', () => {
    assert.throws(() => checkBinding(RECIPE_BINDING, execRequest()), notAllowed);
    assert.throws(() => checkBinding(EXEC_BINDING, recipeRequest({ text: 'sh -c "cat in.fifo > result"\n' })), notAllowed);
  });
});
