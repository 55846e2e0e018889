// End to end: the library, imported by the package's name as a backup component written in Node imports it, against
// a real netplumbd. A directory goes out as a tar stream into a local tar and comes back the other way; a recipe's
// commands end as stage events; a controller mints a one-time key that a node uses once; and what fails does so
// with the error codes plumb reports (unknown host key, missing command), close() included, leaving nothing running.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { connect, ErrorCode, NetplumbError, type StageBytes, type StageEnd } from 'netplumb';
import { treeDigest } from '../helpers/payloads.js';
import { BIN, startNetplumb } from '../helpers/daemon.js';
import { appendTo, markerLines, startControllerNetplumb } from '../helpers/one-time-keys.js';
import { killMarkedAtCleanup, processesWithMarker, runProcess, uniqueMarker, waitUntil } from '../helpers/processes.js';
import { markedSleep } from '../helpers/recipes.js';
import { tempDir } from '../helpers/scope.js';

const TIMEOUT_MS = 60_000;

/** A local program with its stdio piped, and the promise of its exit code. */
function local(argv: readonly string[]): { child: ReturnType<typeof spawn>; code: Promise<number | null> } {
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  return { child, code: new Promise((resolve) => child.on('close', resolve)) };
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<NetplumbError> {
  const error = await promise.then(
    () => assert.fail(`resolved; expected a rejection with ${code}`),
    (failure: unknown) => failure,
  );
  assert.ok(error instanceof NetplumbError, String(error));
  assert.equal(error.code, code, error.message);
  return error;
}

test('backup and restore through the library: a tar stream out into a local tar, and back in from one, on one Machine', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t, { daemonArgs: ['-accept-env=BACKUP_*'] });
  const work = tempDir(t, 'netplumb-library-');
  const source = join(work, 'source');
  mkdirSync(join(source, 'etc'), { recursive: true });
  writeFileSync(join(source, 'etc', 'hosts'), '127.0.0.1 localhost\n');
  writeFileSync(join(source, 'blob.bin'), Buffer.from(Array.from({ length: 300_000 }, (_, index) => (index * 7919) % 256)));
  const notes: string[] = [];
  const machine = await connect(np.daemon.address, { identity: np.client.privateFile, home: np.home, acceptNew: true, onNote: (line) => notes.push(line) });
  assert.match(machine.hostKeyFingerprint, /^SHA256:/);
  assert.equal(machine.hostKeyFingerprint, np.hostKey.fingerprint);
  assert.ok(notes.some((line) => line.startsWith('authenticated')), notes.join('\n'));
  assert.match(readFileSync(join(np.home, 'known_hosts'), 'utf8'), /ssh-ed25519 /, 'acceptNew pinned the host key');

  // Backup: the machine's tar writes the archive; a local tar unpacks it as it arrives.
  const copy = join(work, 'copy');
  mkdirSync(copy);
  const unpack = local(['tar', '-xf', '-', '-C', copy]);
  const backup = machine.run(['tar', '-cf', '-', '-C', source, '.']);
  assert.ok(backup.stdout !== null && backup.stdin !== null && backup.stderr !== null);
  backup.stdin.end();
  backup.stdout.pipe(unpack.child.stdin!);
  let errors = '';
  backup.stderr.setEncoding('utf8').on('data', (text: string) => (errors += text));
  assert.equal(await backup.exit, 0, errors);
  assert.equal(await unpack.code, 0);
  assert.equal(errors, '');
  assert.deepEqual(treeDigest(copy), treeDigest(source));
  assert.ok(backup.wireBytes().received > 300_000, JSON.stringify(backup.wireBytes()));

  // Restore, on a second connection of the same Machine: a local tar writes, the machine's tar unpacks.
  const restored = join(work, 'restored');
  mkdirSync(restored);
  const pack = local(['tar', '-cf', '-', '-C', source, '.']);
  const restore = machine.run(['tar', '-xf', '-', '-C', restored], { stdin: pack.child.stdout! });
  assert.equal(restore.stdin, null, 'stdin was given: the run offers none of its own');
  assert.equal(await restore.exit, 0);
  assert.equal(await pack.code, 0);
  assert.deepEqual(treeDigest(restored), treeDigest(source));

  // A status other than 0, and a variable set for the command.
  const failing = machine.run(['sh', '-c', 'printf %s "$BACKUP_SET"; exit 3'], { env: { BACKUP_SET: 'nightly' } });
  failing.stdin!.end();
  const output: Buffer[] = [];
  failing.stdout!.on('data', (chunk: Buffer) => output.push(chunk));
  assert.equal(await failing.exit, 3);
  await finished(failing.stdout!);
  assert.equal(Buffer.concat(output).toString(), 'nightly');
  // A variable no shell could set is refused at once, before any connection is taken.
  assert.throws(() => machine.run(['true'], { env: { 'NOT-A-NAME': 'x' } }), (error: unknown) => error instanceof NetplumbError && error.code === ErrorCode.Usage);
  await machine.close();
});

test('a recipe through the library: its output on the run, each command ending as a stage event in recipe order', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  const machine = await connect(np.daemon.address, { identity: np.client.privateFile, home: np.home, acceptNew: true });
  const run = machine.runRecipe({ text: 'upper: tr a-z A-Z &\necho one >%upper\nsh -c "exit 4"\n', source: 'inline.rcp' });
  const stages: StageEnd[] = [];
  run.on('stage', (end) => stages.push(end));
  let uncounted = 0;
  run.on('bytes', () => uncounted++);
  run.stdin!.end();
  const output: Buffer[] = [];
  run.stdout!.on('data', (chunk: Buffer) => output.push(chunk));
  assert.equal(await run.exit, 4, 'the first failing command in recipe order gives the status');
  assert.equal(Buffer.concat(output).toString(), 'ONE\n');
  assert.deepEqual(stages.map((end) => [end.stage, end.name]).sort(), [[0, 'upper'], [1, 'line 2'], [2, 'line 3']]);
  const failed = stages.find((end) => end.stage === 2);
  assert.deepEqual(failed?.status, { code: 4 });
  assert.ok(stages.every((end) => typeof end.startedAt === 'number' && typeof end.endedAt === 'number'));

  // With countBytes, each command's counts come as a bytes event after its stage event; without, none come.
  const counted = machine.runRecipe({ text: 'upper: tr a-z A-Z &\necho one >%upper\nsh -c "exit 4"\n', source: 'inline.rcp' }, { countBytes: true });
  const events: string[] = [];
  const counts: StageBytes[] = [];
  counted.on('stage', (end) => events.push(`stage ${end.stage}`));
  counted.on('bytes', (bytes) => {
    events.push(`bytes ${bytes.stage}`);
    counts.push(bytes);
  });
  counted.stdin!.end();
  counted.stdout!.resume();
  assert.equal(await counted.exit, 4);
  assert.deepEqual(
    counts.sort((a, b) => a.stage - b.stage),
    [
      { stage: 0, bytesIn: 4, bytesOut: 4, bytesErr: 0 },
      { stage: 1, bytesIn: 0, bytesOut: 4, bytesErr: 0 },
      { stage: 2, bytesIn: 0, bytesOut: 0, bytesErr: 0 },
    ],
  );
  for (const stage of [0, 1, 2]) assert.ok(events.indexOf(`stage ${stage}`) < events.indexOf(`bytes ${stage}`), events.join(', '));
  assert.equal(uncounted, 0, 'no counts unless asked');

  // A recipe the local check refuses never reaches the daemon: the exit rejects with the recipe error's code.
  const bad = machine.runRecipe({ text: 'echo >%nowhere\n', source: 'bad.rcp' });
  await rejectsWithCode(bad.exit, ErrorCode.RecipeInvalid);
  await machine.close();
});

test('one-time keys through the library: a controller mints one, a node runs the bound command once, then is refused', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startControllerNetplumb(t);
  const marker = join(env.work, 'marker');
  const controller = await connect(env.np.daemon.address, { identity: env.np.client.privateFile, home: env.np.home, acceptNew: true });
  const key = await controller.mintKey({ argv: appendTo(marker) }, { lifetimeSeconds: 600 });
  await controller.close();
  assert.match(key.fingerprint, /^SHA256:/);
  assert.ok(key.expiresAt.getTime() > Date.now() + 500_000);
  assert.match(key.keyFile, /^daemon-host-key ssh-ed25519 /m);
  assert.deepEqual(markerLines(marker), [], 'minting ran nothing');
  const keyFile = join(env.work, 'node.key');
  writeFileSync(keyFile, key.keyFile, { mode: 0o600 });

  // plumb with a local mistake (an -infifo path that is a plain file) fails before connecting: the key is not spent.
  const notFifo = join(env.work, 'plain-file');
  writeFileSync(notFifo, '');
  const refusedLocally = await runProcess(t, [process.execPath, BIN.plumb, `-one-time-key=${keyFile}`, `-infifo=${notFifo}`, env.np.daemon.address, ...appendTo(marker)], { env: { ...process.env, NETPLUMB_HOME: tempDir(t) } });
  assert.equal(refusedLocally.code, 255, refusedLocally.stderr);
  assert.match(refusedLocally.stderr, /exists and is not a named pipe \(NP_ENDPOINT\)/);

  // The node: no identity and no known_hosts of its own, only the key file.
  const nodeHome = tempDir(t, 'netplumb-library-node-');
  const node = await connect(env.np.daemon.address, { oneTimeKey: keyFile, home: nodeHome });
  const ran = node.run(appendTo(marker));
  ran.stdin!.end();
  ran.stdout!.resume();
  ran.stderr!.resume();
  assert.equal(await ran.exit, 0);
  // The key was good for that one connection: a second run cannot make another with it.
  await rejectsWithCode(node.run(['true']).exit, ErrorCode.Usage);
  await node.close();
  assert.deepEqual(markerLines(marker), ['ran']);
  assert.deepEqual(readdirSync(nodeHome), [], 'the node wrote nothing');
  await rejectsWithCode(connect(env.np.daemon.address, { oneTimeKey: keyFile, home: nodeHome }), ErrorCode.NotAuthorized);
});

test('failures through the library carry plumb\'s codes, and close() ends a command still running', { timeout: TIMEOUT_MS }, async (t) => {
  const np = await startNetplumb(t);
  // A host key not pinned, without acceptNew: refused before anything is sent, and nothing is written.
  await rejectsWithCode(connect(np.daemon.address, { identity: np.client.privateFile, home: np.home }), ErrorCode.HostKeyUnknown);
  assert.equal(existsSync(join(np.home, 'known_hosts')), false, 'the refused key was not pinned');

  const machine = await connect(np.daemon.address, { identity: np.client.privateFile, home: np.home, acceptNew: true });
  const missing = machine.run(['/nonexistent/netplumb-library-command']);
  await rejectsWithCode(missing.exit, ErrorCode.CommandNotFound);
  assert.throws(() => machine.run([]), (error: unknown) => error instanceof NetplumbError && error.code === ErrorCode.Usage);

  // signal() reaches the command, and only it: the emitter given as `signals` hears nothing of it.
  const sleeps = tempDir(t, 'netplumb-library-sleep-');
  const signalled = uniqueMarker('library-signal');
  killMarkedAtCleanup(t, signalled);
  const callerSignals = new EventEmitter();
  let callerHeard = 0;
  callerSignals.on('SIGTERM', () => callerHeard++);
  const termed = machine.run([markedSleep(sleeps, signalled), '30'], { signals: callerSignals });
  await waitUntil('the remote sleep to be signalled', () => processesWithMarker(signalled).length > 0);
  termed.signal('SIGTERM');
  assert.equal(await termed.exit, 128 + 15);
  assert.equal(callerHeard, 0);

  // A long command, then close(): its exit rejects as a lost connection, the output piped on fails with it rather
  // than ending as if whole, and the daemon ends the command.
  const marker = uniqueMarker('library-close');
  killMarkedAtCleanup(t, marker);
  const sleeper = machine.run([markedSleep(sleeps, marker), '30']);
  const piped = pipeline(sleeper.stdout!, new Writable({ write: (_chunk, _encoding, done) => done() }));
  await waitUntil('the remote sleep', () => processesWithMarker(marker).length > 0);
  await machine.close();
  await rejectsWithCode(sleeper.exit, ErrorCode.ConnectionLost);
  await rejectsWithCode(piped, ErrorCode.ConnectionLost);
  await waitUntil('the remote sleep to be ended', () => processesWithMarker(marker).length === 0, 15_000);
  await rejectsWithCode(machine.run(['true']).exit, ErrorCode.Usage);
});
