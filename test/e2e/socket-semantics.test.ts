// End to end: what replicated Unix sockets promise besides bytes: half-close carried each way, socket files of mode
// 0600, stale socket files replaced, live ones and over-long or impossible paths refused with NP_ENDPOINT (at either
// end, with a clear line), and a -socket whose local service is missing reported.

import assert from 'node:assert/strict';
import { lstatSync, mkdirSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ErrorCode } from '../../protocol/errors.js';
import { reportedCode } from '../helpers/daemon.js';
import { spawnProcess, waitUntil } from '../helpers/processes.js';
import { onCleanup, type Scope } from '../helpers/scope.js';
import { collect, ECHO_SERVER, specialFilesIn, startEchoService, startEndpointNetplumb, type EndpointNetplumb } from '../helpers/endpoints.js';

const TIMEOUT_MS = 120_000;

/**
 * `node -e HALF_CLOSE_CLIENT PATH MODE`. MODE `client-first`: sends `request`, ends its side, prints what comes back.
 * MODE `service-first`: reads until the service ended its side, prints that, then sends `answer after EOF` and ends.
 */
const HALF_CLOSE_CLIENT = [
  "const net=require('net');const [path,mode]=[process.argv[1],process.argv[2]];",
  "const s=net.connect({path,allowHalfOpen:true});let got='';",
  "s.on('error',(e)=>{console.error(e.message);process.exit(3)});s.setEncoding('utf8');s.on('data',(d)=>got+=d);",
  "s.on('connect',()=>{if(mode==='client-first')s.end('request\\n')});",
  "s.on('end',()=>{console.log('client got: '+JSON.stringify(got));if(mode==='service-first')s.end('answer after EOF\\n')});",
].join('');

/**
 * `node -e HALF_CLOSE_SERVICE PATH MODE`: listens on PATH and prints `ready`. MODE `client-first`: reads a connection
 * to its EOF, then answers `got: ...` and ends. MODE `service-first`: greets, ends its side at once, then prints
 * what the client sends after that. Exits when its stdin ends.
 */
const HALF_CLOSE_SERVICE = [
  "const net=require('net');const [path,mode]=[process.argv[1],process.argv[2]];",
  "const srv=net.createServer({allowHalfOpen:true},(c)=>{let got='';c.setEncoding('utf8');c.on('data',(d)=>got+=d);",
  "if(mode==='service-first')c.end('greeting\\n');",
  "c.on('end',()=>{if(mode==='client-first')c.end('got: '+got);else console.log('service got: '+JSON.stringify(got))})});",
  "srv.listen(path,()=>console.log('ready'));process.stdin.on('end',()=>process.exit(0));process.stdin.resume();",
].join('');

/** A service here behaving as HALF_CLOSE_SERVICE; resolves what it got after greeting (service-first). */
async function halfCloseServiceHere(scope: Scope, path: string, mode: 'client-first' | 'service-first'): Promise<{ received: Promise<string> }> {
  let resolveReceived: (text: string) => void = () => undefined;
  const received = new Promise<string>((resolve) => (resolveReceived = resolve));
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    if (mode === 'service-first') socket.end('greeting\n');
    void collect(socket).then((bytes) => {
      if (mode === 'client-first') socket.end(`got: ${bytes.toString()}`);
      else resolveReceived(bytes.toString());
    });
  });
  await new Promise<void>((resolve) => server.listen(path, () => resolve()));
  onCleanup(scope, () => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return { received };
}

function clientCommand(path: string, mode: string): string[] {
  return ['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/$2" "$3"', process.execPath, HALF_CLOSE_CLIENT, path, mode];
}

function serviceCommand(path: string, mode: string): string[] {
  return ['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/$2" "$3"', process.execPath, HALF_CLOSE_SERVICE, path, mode];
}

/** Expects plumb to fail with NP_ENDPOINT, the failure in one line naming `mentions`; returns that line. */
async function expectEndpointFailure(env: EndpointNetplumb, options: string[], mentions: string, command: string[] = ['true']): Promise<string> {
  const result = await env.spawnPlumb(command, { options }).result;
  assert.equal(result.code, 255, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.Endpoint, result.stderr);
  const lines = result.stderr
    .trimEnd()
    .split('\n')
    .filter((line) => !line.startsWith('plumb: Permanently added'));
  assert.equal(lines.length, 1, `one line: ${result.stderr}`);
  assert.ok(result.stderr.includes(mentions), `the message names ${mentions}: ${result.stderr}`);
  return lines[0] ?? '';
}

/** Leaves a socket file nobody listens on: its server was killed. */
async function staleSocket(scope: Scope, path: string): Promise<void> {
  const server = spawnProcess(scope, [process.execPath, '-e', "require('net').createServer().listen(process.argv[1],()=>console.log('up'))", path]);
  await server.waitForStdout(/up/);
  server.child.kill('SIGKILL');
  await server.result;
  assert.ok(lstatSync(path).isSocket());
}

test('-socket: the client\'s half-close reaches the service here, and the service\'s answer comes back', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const service = join(env.local, 'svc.sock');
  await halfCloseServiceHere(t, service, 'client-first');
  const result = await env.spawnPlumb(clientCommand('r.sock', 'client-first'), { options: [`-socket=r.sock:${service}`] }).result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), `client got: ${JSON.stringify('got: request\n')}\n`);
});

test('-socket: the service here half-closes first, and the remote client still answers after that', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const service = join(env.local, 'svc.sock');
  const { received } = await halfCloseServiceHere(t, service, 'service-first');
  const result = await env.spawnPlumb(clientCommand('r.sock', 'service-first'), { options: [`-socket=r.sock:${service}`] }).result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), `client got: ${JSON.stringify('greeting\n')}\n`);
  assert.equal(await received, 'answer after EOF\n');
});

test('-local-socket: half-close carried both ways between a client here and the remote service', { timeout: TIMEOUT_MS }, async (t) => {
  for (const mode of ['client-first', 'service-first'] as const) {
    const env = await startEndpointNetplumb(t);
    const listen = join(env.local, 'l.sock');
    const run = env.spawnPlumb(serviceCommand('svc.sock', mode), { options: [`-local-socket=${listen}:svc.sock`], stdin: 'open' });
    await run.waitForStdout(/ready\n/);
    const client = await spawnProcess(t, [process.execPath, '-e', HALF_CLOSE_CLIENT, listen, mode]).result;
    assert.equal(client.code, 0, client.stderr);
    if (mode === 'client-first') {
      assert.equal(client.stdout.toString(), `client got: ${JSON.stringify('got: request\n')}\n`);
    } else {
      assert.equal(client.stdout.toString(), `client got: ${JSON.stringify('greeting\n')}\n`);
      await run.waitForStdout(/service got: /);
    }
    run.child.stdin?.end();
    const result = await run.result;
    assert.equal(result.code, 0, result.stderr);
    if (mode === 'service-first') assert.match(result.stdout.toString(), /service got: "answer after EOF\\n"\n/);
  }
});

test('the socket files both ends make have mode 0600', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const listen = join(env.local, 'l.sock');
  const run = env.spawnPlumb(['sh', '-c', 'stat -c %a "$NETPLUMB_SPOOL/r.sock"; read line'], {
    options: ['-socket=r.sock', `-local-socket=${listen}:svc.sock`],
    stdin: 'open',
  });
  await run.waitForStdout(/\n/);
  assert.equal(run.stdoutSoFar(), '600\n', 'the socket the daemon listens on');
  assert.equal(lstatSync(listen).mode & 0o777, 0o600, 'the socket plumb listens on');
  run.child.stdin?.end('done\n');
  assert.equal((await run.result).code, 0);
});

test('stale socket files are replaced at both ends', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const service = join(env.local, 'svc.sock');
  await startEchoService(t, service);
  const listen = join(env.local, 'l.sock');
  await staleSocket(t, join(env.spool, 'r.sock'));
  await staleSocket(t, listen);
  const run = env.spawnPlumb(['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/svc.sock"', process.execPath, ECHO_SERVER], {
    options: [`-socket=r.sock:${service}`, `-local-socket=${listen}:svc.sock`],
    stdin: 'open',
  });
  await run.waitForStdout(/ready\n/);
  // Both replaced sockets serve: through the daemon's to the echo service here, through plumb's to the remote one.
  for (const path of [join(env.spool, 'r.sock'), listen]) {
    const socket = connect({ path, allowHalfOpen: true });
    const echoed = collect(socket);
    socket.end(`via ${path}\n`);
    assert.equal((await echoed).toString(), `via ${path}\n`);
  }
  run.child.stdin?.end();
  assert.equal((await run.result).code, 0);
  assert.deepEqual(specialFilesIn(env.spool), []);
});

test('a live socket is refused with NP_ENDPOINT at either end and keeps working', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const remoteLive = join(env.spool, 'r.sock');
  const localLive = join(env.local, 'l.sock');
  await startEchoService(t, remoteLive);
  await startEchoService(t, localLive);
  const remoteLine = await expectEndpointFailure(env, [`-socket=r.sock:${join(env.local, 'svc.sock')}`], 'r.sock');
  assert.match(remoteLine, /in use/);
  const localLine = await expectEndpointFailure(env, [`-local-socket=${localLive}:svc.sock`], localLive, ['sleep', '5']);
  assert.match(localLine, /in use/);
  for (const path of [remoteLive, localLive]) {
    const socket = connect({ path, allowHalfOpen: true });
    const echoed = collect(socket);
    socket.end('still here\n');
    assert.equal((await echoed).toString(), 'still here\n');
  }
});

test('socket paths over 107 bytes are refused with NP_ENDPOINT and a clear message, at either end', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const long = (dir: string): string => join(dir, 's'.repeat(108 - dir.length - 1));
  const remoteLong = long(env.spool);
  const localLong = long(env.local);
  assert.equal(Buffer.byteLength(remoteLong), 108);
  assert.equal(Buffer.byteLength(localLong), 108);
  const service = join(env.local, 'svc.sock');
  // -socket's remote path (the daemon refuses the Start) and its local path (plumb refuses before connecting).
  assert.match(await expectEndpointFailure(env, [`-socket=${remoteLong}:${service}`], remoteLong), /107/);
  assert.match(await expectEndpointFailure(env, [`-socket=r.sock:${localLong}`], localLong), /107/);
  // -local-socket's local path (plumb) and its remote path (the daemon).
  assert.match(await expectEndpointFailure(env, [`-local-socket=${localLong}:svc.sock`], localLong), /107/);
  assert.match(await expectEndpointFailure(env, [`-local-socket=${join(env.local, 'l.sock')}:${remoteLong}`], remoteLong), /107/);
  // A relative remote path counts once resolved in the spool directory.
  assert.match(await expectEndpointFailure(env, [`-socket=${'s'.repeat(108 - env.spool.length - 1)}:${service}`], 'sss'), /107/);
  assert.deepEqual(specialFilesIn(env.spool), []);
  assert.deepEqual(specialFilesIn(env.local), []);
});

test('a socket in a missing directory is refused with NP_ENDPOINT at either end', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  mkdirSync(join(env.local, 'only-here'));
  await expectEndpointFailure(env, [`-socket=only-here/r.sock:${join(env.local, 'svc.sock')}`], 'only-here/r.sock');
  await expectEndpointFailure(env, [`-local-socket=${join(env.local, 'nowhere', 'l.sock')}:svc.sock`], 'nowhere/l.sock', ['sleep', '5']);
});

test('-socket: a connection for a local service that is not there is dropped and reported, the command goes on', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const missing = join(env.local, 'nobody.sock');
  const script =
    "const s=require('net').connect(process.argv[1]);s.on('error',(e)=>console.log('error '+e.code));s.on('close',()=>{console.log('closed');process.exit(5)});s.resume()";
  const result = await env.spawnPlumb(['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/r.sock"', process.execPath, script], {
    options: [`-socket=r.sock:${missing}`],
  }).result;
  assert.match(result.stdout.toString(), /closed\n$/);
  assert.equal(result.code, 5, result.stderr);
  assert.equal(reportedCode(result.stderr), ErrorCode.Endpoint, `plumb says why the connection was dropped: ${JSON.stringify(result.stderr)}`);
  assert.ok(result.stderr.includes(missing), result.stderr);
  await waitUntil('the daemon to clean up', () => specialFilesIn(env.spool).length === 0);
});
