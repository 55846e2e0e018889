// End to end: a client whose authorized-clients line names a gluepot runs only what it lists. Allowed commands run;
// others (sh -c included, and a program reached through an exported PATH and a symlink) are refused with
// NP_NOT_PERMITTED in one line, exit 255; a recipe with one refused command runs nothing; redirections and named
// pipes or sockets outside the spool directory need a `path` line; recipe redirections never follow a symlink.
// Every refusal leaves nothing running and nothing made.

import assert from 'node:assert/strict';
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode, startNetplumb, type Netplumb, type PlumbCallOptions } from '../helpers/daemon.js';
import { deterministicSha256 } from '../helpers/payloads.js';
import { type ProcessResult } from '../helpers/processes.js';
import { tempDir, type Scope } from '../helpers/scope.js';
import { HASH_CLIENT, parseHashLine, specialFilesIn, spawnPlumbIn, startEchoService, startOnTerminal } from '../helpers/endpoints.js';

const TIMEOUT_MS = 120_000;
const GLUEPOT = 'restricted';
const SH = realpathSync('/bin/sh');

interface GluepotNetplumb {
  np: Netplumb;
  /** The daemon's spool directory (exists, empty at first). */
  spool: string;
  /** A directory outside the spool directory, for files a gluepot may or may not allow. */
  outside: string;
  /** plumb's working directory, for the local ends of named pipes and sockets. */
  local: string;
  /** Where recipe files are written (not the spool). */
  recipes: string;
  plumb(command: readonly string[], options?: PlumbCallOptions): Promise<ProcessResult>;
  /** Writes a recipe file and runs it. */
  recipe(text: string, options?: PlumbCallOptions): Promise<ProcessResult>;
}

/**
 * A daemon with a gluepot directory holding `restricted` (the text, or what the function makes of the outside
 * directory), and its client's line naming it. The host key is pinned first (while the line names no gluepot yet),
 * then the line is changed and SIGHUP reloads it.
 */
async function startGluepotNetplumb(
  scope: Scope,
  gluepot: string | ((outside: string) => string),
  daemonArgs: readonly string[] = [],
): Promise<GluepotNetplumb> {
  const gluepots = tempDir(scope, 'netplumb-gluepots-');
  const spool = tempDir(scope, 'netplumb-spool-');
  const outside = tempDir(scope, 'netplumb-outside-');
  const local = tempDir(scope, 'netplumb-local-');
  const recipes = tempDir(scope, 'netplumb-recipes-');
  writeFileSync(join(gluepots, GLUEPOT), typeof gluepot === 'string' ? gluepot : gluepot(outside));
  const np = await startNetplumb(scope, { daemonArgs: [`-gluepots=${gluepots}`, `-spool=${spool}`, ...daemonArgs] });
  const pin = await np.plumb(['true']);
  assert.equal(pin.code, 0, pin.stderr);
  writeFileSync(np.clientsFile, `gluepot=${GLUEPOT} ${np.client.publicLine}\n`);
  np.daemon.kill('SIGHUP');
  await np.daemon.waitForLog(/authorization reloaded/);
  let recipeCount = 0;
  const plumb = (command: readonly string[], options: PlumbCallOptions = {}): Promise<ProcessResult> => spawnPlumbIn(scope, np, local, command, options).result;
  return {
    np,
    spool,
    outside,
    local,
    recipes,
    plumb,
    recipe(text, options = {}) {
      const file = join(recipes, `recipe-${++recipeCount}.rcp`);
      writeFileSync(file, text);
      return plumb([`-recipe=${file}`], options);
    },
  };
}

/** A refused Start: exit 255, one line ending in NP_NOT_PERMITTED, naming each of `mentions`. */
function assertNotPermitted(result: ProcessResult, ...mentions: string[]): void {
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.NotPermitted, result.stderr);
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line: ${result.stderr}`);
  assert.match(lines[0] ?? '', /^plumb: /);
  for (const word of mentions) assert.ok(result.stderr.includes(word), `the message names ${word}: ${result.stderr}`);
  assert.equal(result.stdout.length, 0);
}

/** Nothing of a refused request runs, and nothing was made in the spool directory (or in `others`). */
function assertNothingLeft(env: GluepotNetplumb, ...others: string[]): void {
  assert.deepEqual(env.np.daemon.commandGroups(), [], 'no command of the daemon runs');
  assert.deepEqual(readdirSync(env.spool), [], 'nothing was made in the spool directory');
  for (const dir of others) assert.deepEqual(specialFilesIn(dir), [], `no named pipe or socket left in ${dir}`);
}

test('an allowed command runs; an unlisted one is refused with NP_NOT_PERMITTED naming it and the gluepot', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, '# echo only\n/bin/echo\n');
  const allowed = await env.plumb(['echo', 'hello', 'there']);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.equal(allowed.stdout.toString(), 'hello there\n');
  assert.equal((await env.plumb(['/usr/bin/echo', 'by', 'path'])).stdout.toString(), 'by path\n');
  const marker = join(env.outside, 'touched');
  const refused = await env.plumb(['touch', marker]);
  assertNotPermitted(refused, 'touch', GLUEPOT);
  assert.equal(existsSync(marker), false, 'the refused command never ran');
  assertNothingLeft(env);
  assert.match(env.np.daemon.log(), /start refused .*code=NP_NOT_PERMITTED/);
});

test('argument patterns: a command whose arguments do not match is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, '/bin/echo allowed-* ...\n');
  const allowed = await env.plumb(['echo', 'allowed-1', 'and', 'more']);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.equal(allowed.stdout.toString(), 'allowed-1 and more\n');
  assertNotPermitted(await env.plumb(['echo', 'other']), 'echo', GLUEPOT);
  assertNotPermitted(await env.plumb(['echo']), 'echo');
  assertNothingLeft(env);
});

test('sh -c is refused unless sh is listed', { timeout: TIMEOUT_MS }, async (t) => {
  const marker = join(tempDir(t), 'ran');
  const strict = await startGluepotNetplumb(t, '/usr/bin/touch\n');
  assertNotPermitted(await strict.plumb(['sh', '-c', 'touch "$0"', marker]), 'sh', SH, GLUEPOT);
  assert.equal(existsSync(marker), false);
  assertNothingLeft(strict);
  const lenient = await startGluepotNetplumb(t, '/bin/sh -c ...\n');
  const result = await lenient.plumb(['sh', '-c', 'touch "$0" && echo done', marker]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'done\n');
  assert.equal(existsSync(marker), true);
});

test('an exported PATH with a symlink named like a listed program is checked as its target: tar -> sh is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, '/usr/bin/tar ...\n', ['-accept-env=PATH']);
  const trick = tempDir(t, 'netplumb-trick-');
  symlinkSync('/bin/sh', join(trick, 'tar'));
  const marker = join(env.outside, 'shell-ran');
  const plumbEnv = { ...env.np.plumbEnv(), PATH: `${trick}:${process.env['PATH'] ?? '/usr/bin:/bin'}` };
  const refused = await env.plumb(['tar', '-c', 'touch "$0"', marker], { options: ['-export=PATH'], env: plumbEnv });
  assertNotPermitted(refused, 'tar', SH, GLUEPOT);
  assert.equal(existsSync(marker), false, 'the shell behind the tar symlink never ran');
  assertNothingLeft(env);
  // The same PATH with a symlink to the real tar: allowed, because the target is what counts.
  const honest = tempDir(t, 'netplumb-honest-');
  symlinkSync('/usr/bin/tar', join(honest, 'tar'));
  const allowed = await env.plumb(['tar', '--version'], { options: ['-export=PATH'], env: { ...plumbEnv, PATH: `${honest}:/usr/bin:/bin` } });
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.match(allowed.stdout.toString(), /tar/);
});

test('a single command keeps argv[0] as written while the resolved file runs', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, `${process.execPath} -p process.argv0\n`);
  const result = await env.plumb(['node', '-p', 'process.argv0']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'node\n');
});

test('a recipe with one refused command runs none of its commands and makes nothing in the spool directory', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, '/usr/bin/touch ...\n/bin/echo ...\n/bin/cat\n');
  const result = await env.recipe(
    ['fifo hop', 'touch first-stage-ran', 'echo through >@hop &', 'cat <@hop >copied.txt', 'env', ''].join('\n'),
  );
  assertNotPermitted(result, 'env', GLUEPOT);
  assert.equal(existsSync(join(env.spool, 'first-stage-ran')), false, 'the first command never ran');
  assertNothingLeft(env);
  // The same recipe without the refused command runs.
  const allowed = await env.recipe(['fifo hop', 'touch first-stage-ran', 'echo through >@hop &', 'cat <@hop >copied.txt', ''].join('\n'));
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.equal(readFileSync(join(env.spool, 'copied.txt'), 'utf8'), 'through\n');
});

test('a recipe redirection to an absolute file outside the spool directory is refused, both ways', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, '/bin/echo ...\n/bin/cat\n');
  const stolen = join(env.outside, 'stolen.txt');
  assertNotPermitted(await env.recipe(`echo secret >${stolen}\n`), stolen, GLUEPOT);
  assert.equal(existsSync(stolen), false);
  const secret = join(env.outside, 'secret.txt');
  writeFileSync(secret, 'the secret\n');
  assertNotPermitted(await env.recipe(`cat <${secret}\n`), secret, GLUEPOT);
  assertNotPermitted(await env.recipe(`echo x >>${secret}\n`), secret);
  assert.equal(readFileSync(secret, 'utf8'), 'the secret\n');
  // A relative name that climbs out through an absolute spool path is normalised first.
  assertNotPermitted(await env.recipe(`echo x >${env.spool}/../escaped.txt\n`), GLUEPOT);
  assertNothingLeft(env);
});

test('a path line allows redirections outside the spool directory under it', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, (outside) => `/bin/echo ...\n/bin/cat\npath ${outside}/allowed/*\n`);
  mkdirSync(join(env.outside, 'allowed'));
  writeFileSync(join(env.outside, 'allowed', 'in.txt'), 'from outside\n');
  const result = await env.recipe(`echo data >${env.outside}/allowed/out.txt\ncat <${env.outside}/allowed/in.txt\n`);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'from outside\n');
  assert.equal(readFileSync(join(env.outside, 'allowed', 'out.txt'), 'utf8'), 'data\n');
  assertNotPermitted(await env.recipe(`echo data >${env.outside}/elsewhere.txt\n`), `${env.outside}/elsewhere.txt`);
  assert.equal(existsSync(join(env.outside, 'elsewhere.txt')), false);
});

test('a symlink in the spool directory is never followed by a redirection: the command fails with status 1', { timeout: TIMEOUT_MS }, async (t) => {
  // The path line lets the check pass for the link's target, so only O_NOFOLLOW stands between the link and it.
  const env = await startGluepotNetplumb(t, (outside) => `/bin/echo ...\n/bin/cat\npath ${outside}/allowed/*\n`);
  mkdirSync(join(env.outside, 'allowed'));
  const target = join(env.outside, 'allowed', 'target.txt');
  writeFileSync(target, 'original\n');
  symlinkSync(target, join(env.spool, 'link'));
  for (const text of ['echo pwned >link\n', 'echo pwned >>link\n', 'cat <link\n']) {
    const result = await env.recipe(text);
    assert.equal(result.code, 1, `${text}: ${result.stderr}`);
    assert.match(result.stderr, /redirection failed/, result.stderr);
    assert.equal(result.stdout.toString().includes('original'), false, 'nothing of the target was read');
    assert.equal(readFileSync(target, 'utf8'), 'original\n', 'the target is untouched');
  }
  assert.ok(lstatSync(join(env.spool, 'link')).isSymbolicLink(), 'the link is left as it was');
  // A dangling link pointing outside passes the check as a new file in the spool, and is not followed either.
  const missing = join(env.outside, 'not-allowed', 'created-through-link.txt');
  mkdirSync(join(env.outside, 'not-allowed'));
  symlinkSync(missing, join(env.spool, 'dangling'));
  const result = await env.recipe('echo pwned >dangling\n');
  assert.equal(result.code, 1, result.stderr);
  assert.equal(existsSync(missing), false, 'no file was made through the link');
});

test('.. after a symlinked directory in a redirection cannot reach outside the spool directory', { timeout: TIMEOUT_MS }, async (t) => {
  // spool/link -> outside/sub: the system opens spool/link/../escaped.txt as outside/escaped.txt.
  const env = await startGluepotNetplumb(t, '/bin/echo ...\n');
  mkdirSync(join(env.outside, 'sub'));
  symlinkSync(join(env.outside, 'sub'), join(env.spool, 'link'));
  const escaped = join(env.outside, 'escaped.txt');
  const result = await env.recipe(`echo pwned >${env.spool}/link/../escaped.txt\n`);
  assert.equal(existsSync(escaped), false, `a file was written outside the spool directory: ${result.stderr}`);
  assertNotPermitted(result, GLUEPOT);
});

test('a directory symlink an allowed command makes during the recipe cannot carry a later redirection outside', { timeout: TIMEOUT_MS }, async (t) => {
  // When the recipe is checked, spool/d does not exist and d/stolen.txt is inside the spool; by the time the second
  // command starts, ln has made d a link to the outside. The open itself checks where the directory really is.
  const env = await startGluepotNetplumb(t, '/bin/ln -s * *\n/bin/echo ...\n/bin/cat\n');
  const stolen = join(env.outside, 'stolen.txt');
  const result = await env.recipe(`ln -s ${env.outside} d\necho pwned >d/stolen.txt\n`);
  assert.equal(existsSync(stolen), false, `a file was written outside the spool directory: ${result.stderr}`);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /redirection failed: .*outside the spool directory.*restricted/, result.stderr);
  // A recipe reading through the link made in the same run is stopped the same way.
  writeFileSync(join(env.outside, 'secret.txt'), 'the secret\n');
  const read = await env.recipe(`ln -s ${env.outside} e\ncat <e/secret.txt\n`);
  assert.equal(read.code, 1, read.stderr);
  assert.equal(read.stdout.toString().includes('the secret'), false, 'nothing outside was read');
  assert.match(read.stderr, /outside the spool directory/, read.stderr);
  // Once the link is there, the check before anything runs already sees where it leads.
  assertNotPermitted(await env.recipe('echo pwned >d/stolen.txt\n'), env.outside, GLUEPOT);
  assert.equal(existsSync(stolen), false);
});

test('a hard link in the spool to a file outside is refused by a redirection, and the file is left whole', { timeout: TIMEOUT_MS }, async (t) => {
  // The check sees the spool name; the file has another name outside it. > must not even truncate it.
  const env = await startGluepotNetplumb(t, '/bin/echo ...\n/bin/cat\n');
  const secret = join(env.outside, 'secret.txt');
  writeFileSync(secret, 'precious data\n');
  linkSync(secret, join(env.spool, 'link'));
  for (const text of ['echo overwritten >link\n', 'echo appended >>link\n', 'cat <link\n']) {
    const result = await env.recipe(text);
    assert.equal(result.code, 1, `${text}: ${result.stderr}`);
    assert.match(result.stderr, /hard links/, result.stderr);
    assert.equal(result.stdout.toString(), '', 'nothing of the file was read');
    assert.equal(readFileSync(secret, 'utf8'), 'precious data\n', `the file outside is untouched after ${text}`);
  }
});

test('a named pipe through a directory symlink in the spool is refused, and nothing is made outside', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, '/bin/true\n');
  symlinkSync(env.outside, join(env.spool, 'd'));
  // The same relative path names plumb's local end, in its own working directory.
  mkdirSync(join(env.local, 'd'));
  for (const option of ['-outfifo=d/out.fifo', '-infifo=d/in.fifo']) {
    const result = await env.plumb(['true'], { options: [option] });
    assertNotPermitted(result, env.outside, GLUEPOT);
    assert.deepEqual(specialFilesIn(env.outside), [], `nothing is left outside the spool directory after ${option}`);
  }
});

test('named pipes and sockets at absolute paths outside the spool directory are refused without a path line', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, '/bin/true\n');
  const remote = (name: string): string => join(env.outside, name);
  for (const option of [
    `-outfifo=${remote('out.fifo')}`,
    `-infifo=${remote('in.fifo')}`,
    `-socket=${remote('remote.sock')}:${join(env.local, 'service.sock')}`,
    `-local-socket=${join(env.local, 'here.sock')}:${remote('service.sock')}`,
  ]) {
    const result = await env.plumb(['true'], { options: [option] });
    assertNotPermitted(result, env.outside, GLUEPOT);
    assertNothingLeft(env, env.outside, env.local);
  }
});

test('a path line allows an -outfifo and a -socket outside the spool directory', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, (outside) => `/bin/true\n${process.execPath} -e * ...\npath ${outside}/*\n`);
  const { outside } = env;
  const fifo = join(outside, 'out.fifo');
  const viaFifo = await env.plumb(['true'], { options: [`-outfifo=${fifo}`] });
  assert.equal(viaFifo.code, 0, viaFifo.stderr);
  assert.deepEqual(specialFilesIn(outside), [], 'the named pipe made for the command is removed after it');
  const service = join(env.local, 'service.sock');
  await startEchoService(t, service);
  const remoteSocket = join(outside, 'remote.sock');
  const bytes = 100_000;
  const viaSocket = await env.plumb([process.execPath, '-e', HASH_CLIENT, remoteSocket, 'gluepot-socket', String(bytes)], {
    options: [`-socket=${remoteSocket}:${service}`],
  });
  assert.equal(viaSocket.code, 0, viaSocket.stderr);
  assert.deepEqual(parseHashLine(viaSocket.stdout), { bytes, sha256: deterministicSha256('gluepot-socket', bytes) });
});

test('on a terminal the command is checked too: an unlisted login shell is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, '/bin/echo ...\n');
  const term = startOnTerminal(t, env.np.plumbArgv([]), { cols: 80, rows: 24, env: env.np.plumbEnv(), cwd: env.local });
  const { exitCode } = await term.exit();
  assert.equal(exitCode, 255, term.screen());
  assert.match(term.screen(), /NP_NOT_PERMITTED/);
  assertNothingLeft(env);
});

test('on a terminal an allowed command runs as the file checked (argv[0] is that file: node-pty sets no argv0)', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startGluepotNetplumb(t, `${process.execPath} -p process.argv0\n`);
  const term = startOnTerminal(t, env.np.plumbArgv(['node', '-p', 'process.argv0'], { options: ['-t'] }), { cols: 80, rows: 24, env: env.np.plumbEnv(), cwd: env.local });
  const { exitCode } = await term.exit();
  assert.equal(exitCode, 0, term.screen());
  assert.ok(term.screen().includes(realpathSync(process.execPath)), term.screen());
});
