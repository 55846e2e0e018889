// End to end: a real client and server that netplumb did not write talk across replicated sockets: psql on the
// daemon's side reaches a PostgreSQL server here through a -socket, and psql here reaches it through a
// -local-socket. PostgreSQL listens only on its Unix socket and is stopped at the end whatever happens.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runProcess } from '../helpers/processes.js';
import { startEndpointNetplumb, startPostgres } from '../helpers/endpoints.js';

const TIMEOUT_MS = 180_000;

/** A query whose answer is long enough to take many packets, and the same wherever it runs. */
const QUERY = "select 6*7 as answer, count(*), md5(string_agg(i::text || repeat('x', i % 97), ',' order by i)) from generate_series(1, 200000) as i";

function psqlArgs(socketDir: string): string[] {
  return ['psql', '-X', '-h', socketDir, '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-Atc', QUERY];
}

test('psql on the daemon side reaches PostgreSQL here through -socket', { timeout: TIMEOUT_MS }, async (t) => {
  const pg = await startPostgres(t);
  const direct = await runProcess(t, psqlArgs(pg.socketDir));
  assert.equal(direct.code, 0, direct.stderr);
  assert.match(direct.stdout.toString(), /^42\|200000\|[0-9a-f]{32}\n$/);
  const env = await startEndpointNetplumb(t);
  mkdirSync(join(env.spool, 'pg'));
  // psql connects to DIR/.s.PGSQL.5432: the replicated socket gets that name in the spool directory.
  const remotePsql = 'exec psql -X -h "$NETPLUMB_SPOOL/pg" -U postgres -d postgres -v ON_ERROR_STOP=1 -Atc "$0"';
  const result = await env.spawnPlumb(['sh', '-c', remotePsql, QUERY], {
    options: [`-socket=pg/.s.PGSQL.5432:${pg.socketPath}`],
  }).result;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.toString(), direct.stdout.toString());
});

test('psql here reaches PostgreSQL on the daemon side through -local-socket', { timeout: TIMEOUT_MS }, async (t) => {
  const pg = await startPostgres(t);
  const env = await startEndpointNetplumb(t);
  const socketDir = join(env.local, 'pg');
  mkdirSync(socketDir);
  // The remote command only keeps the session open until its stdin ends.
  const run = env.spawnPlumb(['sh', '-c', 'echo ready; cat > /dev/null'], { options: [`-local-socket=${join(socketDir, '.s.PGSQL.5432')}:${pg.socketPath}`], stdin: 'open' });
  await run.waitForStdout(/ready\n/);
  const first = await runProcess(t, psqlArgs(socketDir));
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout.toString(), /^42\|200000\|[0-9a-f]{32}\n$/);
  // A session with several statements, a table and a transaction, through the same replicated socket.
  const session = await runProcess(t, ['psql', '-X', '-h', socketDir, '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-At'], {
    stdin: [
      'create temporary table t (id int primary key, body text);',
      "insert into t select i, repeat('y', i) from generate_series(1, 2000) as i;",
      'begin;',
      'update t set body = upper(body) where id % 2 = 0;',
      'commit;',
      "select count(*), sum(length(body)), count(*) filter (where body like 'Y%') from t;",
      '',
    ].join('\n'),
  });
  assert.equal(session.code, 0, session.stderr);
  assert.match(session.stdout.toString(), /^2000\|2001000\|1000$/m);
  run.child.stdin?.end();
  assert.equal((await run.result).code, 0);
});
