// End to end: bytes cross replicated Unix sockets byte-exact, checked by SHA-256: 256 MiB each way through a -socket
// (the daemon listens, the service is here), and through a -local-socket (plumb listens, the service is there);
// then 50 connections at once through each, every one echoing its own data.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { deterministicSha256 } from '../helpers/payloads.js';
import { spawnProcess } from '../helpers/processes.js';
import { ECHO_SERVER, HASH_CLIENT, parseHashLine, startEchoService, startEndpointNetplumb } from '../helpers/endpoints.js';

const TIMEOUT_MS = 300_000;
const RUN_TIMEOUT_MS = 240_000;
const CONNECTIONS = 50;

/**
 * `node -e MANY_CLIENTS PATH COUNT BYTES`: opens COUNT connections to PATH at once; each sends BYTES bytes of its own
 * seed's stream (`conn-N`), ends its side, and compares the echo; prints one `N BYTES SHA256` line per connection.
 */
const MANY_CLIENTS = [
  "const c=require('crypto'),net=require('net');",
  'const [path,count,bytes]=[process.argv[1],Number(process.argv[2]),Number(process.argv[3])];',
  'function data(seed){const x=c.createCipheriv("aes-256-ctr",c.createHash("sha256").update(seed).digest(),Buffer.alloc(16));return x.update(Buffer.alloc(bytes))}',
  'const lines=[];let left=count;',
  'for(let i=0;i<count;i++){const s=net.connect({path,allowHalfOpen:true});const h=c.createHash("sha256");let n=0;',
  "s.on('error',(e)=>{console.error('conn '+i+': '+e.message);process.exit(3)});",
  "s.on('data',(d)=>{n+=d.length;h.update(d)});",
  "s.on('end',()=>{lines[i]=i+' '+n+' '+h.digest('hex');s.end();if(--left===0)console.log(lines.join('\\n'))});",
  "s.on('connect',()=>s.end(data('conn-'+i)))}",
].join('');

function expectedManyLines(count: number, bytes: number): string {
  return Array.from({ length: count }, (_, index) => `${index} ${bytes} ${deterministicSha256(`conn-${index}`, bytes)}`).join('\n') + '\n';
}

test('-socket: 256 MiB each way between a remote client and the service here, byte-exact', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const service = join(env.local, 'svc.sock');
  const echo = await startEchoService(t, service);
  const bytes = 256 * 1024 * 1024;
  const seed = 'socket-256';
  const result = await env.spawnPlumb(['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/r.sock" "$2" "$3"', process.execPath, HASH_CLIENT, seed, String(bytes)], {
    options: [`-socket=r.sock:${service}`],
    timeoutMs: RUN_TIMEOUT_MS,
  }).result;
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(parseHashLine(result.stdout), { bytes, sha256: deterministicSha256(seed, bytes) });
  assert.equal(echo.accepted(), 1);
});

test('-local-socket: a client here reaches the remote service, 64 MiB each way byte-exact', { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const listen = join(env.local, 'l.sock');
  const bytes = 64 * 1024 * 1024;
  const seed = 'local-socket-64';
  const run = env.spawnPlumb(['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/svc.sock"', process.execPath, ECHO_SERVER], {
    options: [`-local-socket=${listen}:svc.sock`],
    stdin: 'open',
    timeoutMs: RUN_TIMEOUT_MS,
  });
  await run.waitForStdout(/ready\n/);
  const client = await spawnProcess(t, [process.execPath, '-e', HASH_CLIENT, listen, seed, String(bytes)], { timeoutMs: RUN_TIMEOUT_MS }).result;
  assert.equal(client.code, 0, client.stderr);
  assert.deepEqual(parseHashLine(client.stdout), { bytes, sha256: deterministicSha256(seed, bytes) });
  run.child.stdin?.end();
  const result = await run.result;
  assert.equal(result.code, 0, result.stderr);
});

test(`-socket: ${CONNECTIONS} connections at once, each echoed byte-exact`, { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const service = join(env.local, 'svc.sock');
  const echo = await startEchoService(t, service);
  const bytes = 256 * 1024;
  const result = await env.spawnPlumb(['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/r.sock" "$2" "$3"', process.execPath, MANY_CLIENTS, String(CONNECTIONS), String(bytes)], {
    options: [`-socket=r.sock:${service}`],
    timeoutMs: RUN_TIMEOUT_MS,
  }).result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), expectedManyLines(CONNECTIONS, bytes));
  assert.equal(echo.accepted(), CONNECTIONS);
});

test(`-local-socket: ${CONNECTIONS} connections at once, each echoed byte-exact`, { timeout: TIMEOUT_MS }, async (t) => {
  const env = await startEndpointNetplumb(t);
  const listen = join(env.local, 'l.sock');
  const bytes = 256 * 1024;
  const run = env.spawnPlumb(['sh', '-c', 'exec "$0" -e "$1" "$NETPLUMB_SPOOL/svc.sock"', process.execPath, ECHO_SERVER], {
    options: [`-local-socket=${listen}:svc.sock`],
    stdin: 'open',
    timeoutMs: RUN_TIMEOUT_MS,
  });
  await run.waitForStdout(/ready\n/);
  const clients = await spawnProcess(t, [process.execPath, '-e', MANY_CLIENTS, listen, String(CONNECTIONS), String(bytes)], { timeoutMs: RUN_TIMEOUT_MS }).result;
  assert.equal(clients.code, 0, clients.stderr);
  assert.equal(clients.stdout.toString(), expectedManyLines(CONNECTIONS, bytes));
  run.child.stdin?.end();
  assert.equal((await run.result).code, 0);
});
