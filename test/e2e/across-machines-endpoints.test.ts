// End to end: replicated named pipes and sockets with a recipe across machines. Each -infifo, -outfifo, -socket and
// -local-socket attaches to the machine whose commands use its path, or to the one the option names
// (-socket=@b:PATH:PATH); a path no command uses, or one used on two machines, is a usage error before anything runs.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { reportedCode } from '../helpers/daemon.js';
import { startMachines } from '../helpers/machines.js';
import { connectWhenListening, readRound, writeInto } from '../helpers/endpoints.js';

const TIMEOUT_MS = 120_000;

/** What a spool holds besides the files a test expects: a named pipe or socket left behind, say. */
function strays(spool: string, expected: readonly string[] = []): string[] {
  if (!existsSync(spool)) return [];
  return readdirSync(spool).filter((name) => !expected.includes(name) && name !== 'users');
}

test('an -infifo attaches to the machine whose command reads it and an -outfifo to the one whose command writes it', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const here = join(m.dir, 'here');
  mkdirSync(here);
  for (const name of ['in.fifo', 'out.fifo']) execFileSync('mkfifo', [join(here, name)]);
  const recipe = m.recipe('fifos.rcp', ['@a cat in.fifo |', '@b tr a-z A-Z |', '@b tee out.fifo >copy', ''].join('\n'));
  // Local programs on the other ends of the two pipes, in children, so no open here blocks.
  const writer = writeInto(t, join(here, 'in.fifo'), "from plumb's machine\n");
  const fromPipe = readRound(t, join(here, 'out.fifo'));
  const result = await m.plumb([`-recipe=${recipe}`, '-infifo=in.fifo', '-outfifo=out.fifo'], { cwd: here });
  assert.equal(result.code, 0, result.stderr);
  assert.equal((await writer.result).code, 0);
  assert.equal((await fromPipe).toString(), "FROM PLUMB'S MACHINE\n");
  assert.equal(readFileSync(join(m.machine('b').spool, 'copy'), 'utf8'), "FROM PLUMB'S MACHINE\n");
  // Each daemon made only its own end, and removed it at the end.
  assert.deepEqual(strays(m.machine('a').spool), []);
  assert.deepEqual(strays(m.machine('b').spool, ['copy']), []);
});

test('-socket=@b:PATH:LOCAL listens on the machine it names, and its connections reach the service on plumb\'s machine', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const service = join(m.dir, 'service.sock');
  const server = createServer((socket: Socket) => {
    socket.once('data', (data) => socket.end(`pong ${data.toString()}`));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(service, resolve));
  t.after(() => server.close());
  const client = `const s = require("net").connect("svc.sock"); s.end("ping"); s.pipe(process.stdout)`;
  const recipe = m.recipe('socket.rcp', ['@a echo started', `@b ${process.execPath} -e '${client}' >reply`, ''].join('\n'));
  const result = await m.plumb([`-recipe=${recipe}`, `-socket=@b:svc.sock:${service}`]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), 'started\n');
  assert.equal(readFileSync(join(m.machine('b').spool, 'reply'), 'utf8'), 'pong ping');
  assert.deepEqual(strays(m.machine('b').spool, ['reply']), []);
});

test("-local-socket=@b:LOCAL:REMOTE listens on plumb's machine while the recipe runs, and its connections reach the service on b", { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  // The service "on b": every machine here is this host, so an absolute path is b's as well.
  const service = join(m.dir, 'b-service.sock');
  const server = createServer((socket: Socket) => {
    socket.once('data', (data) => socket.end(`from b: ${data.toString()}`));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(service, resolve));
  t.after(() => server.close());
  const local = join(m.dir, 'local.sock');
  const recipe = m.recipe('local-socket.rcp', ['@a echo a', '@b sleep 3', ''].join('\n'));
  const running = m.spawnPlumb([`-recipe=${recipe}`, `-local-socket=@b:${local}:${service}`]);
  const socket = await connectWhenListening(local);
  const reply = await new Promise<string>((resolve, reject) => {
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
    socket.write('hello');
  });
  assert.equal(reply, 'from b: hello');
  const result = await running.result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(existsSync(local), false, 'plumb removes its listening socket');
});

test('a named pipe no command uses, one used on two machines, or a machine the recipe does not have: a usage error, and nothing runs', { timeout: TIMEOUT_MS }, async (t) => {
  const m = await startMachines(t, { a: { address: '127.0.0.2' }, b: { address: '127.0.0.3' } });
  const here = join(m.dir, 'here');
  mkdirSync(here);
  const recipe = m.recipe('ambiguous.rcp', ['@a touch ran-on-a', '@a cat shared.fifo', '@b cat shared.fifo', ''].join('\n'));
  const cases: Array<[string, RegExp]> = [
    ['-infifo=nowhere.fifo', /-infifo=nowhere\.fifo: no command of .* names nowhere\.fifo, so plumb cannot tell which machine it belongs to; name the machine: -infifo=@MACHINE:nowhere\.fifo/],
    ['-infifo=shared.fifo', /-infifo=shared\.fifo: commands on @a and @b name shared\.fifo; name the machine/],
    ['-outfifo=@zz:shared.fifo', /-outfifo=@zz:shared\.fifo: no command of .* is placed on @zz/],
  ];
  for (const [option, message] of cases) {
    const result = await m.plumb([`-recipe=${recipe}`, option], { cwd: here });
    assert.equal(result.code, 255, `${option}: ${result.stderr}`);
    assert.equal(reportedCode(result.stderr), 'NP_USAGE', option);
    assert.match(result.stderr, message, option);
  }
  assert.equal(existsSync(join(m.machine('a').spool, 'ran-on-a')), false);
  assert.deepEqual(readdirSync(here), []);
  const oneMachine = await m.plumb(['-infifo=@a:in.fifo', 'a', 'true'], { cwd: here });
  assert.equal(reportedCode(oneMachine.stderr), 'NP_USAGE');
  assert.match(oneMachine.stderr, /names a machine of a recipe across machines/);
});
