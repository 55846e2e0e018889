// End to end: what a remote command sends through a -socket right before it exits still reaches the local
// service whole, even when that service is slow to read: the daemon lets the connection finish before it closes
// its listening socket.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { startNetplumb } from '../helpers/daemon.js';
import { tempDir } from '../helpers/scope.js';

const BYTES = 8 * 1024 * 1024;

test('bytes sent through a -socket just before the command exits all arrive', { timeout: 120_000 }, async (t) => {
  const spool = tempDir(t, 'netplumb-spool-');
  const np = await startNetplumb(t, { daemonArgs: [`-spool=${spool}`] });
  const here = join(np.dir, 'here');
  mkdirSync(here);
  const servicePath = join(here, 'service.sock');
  const received = createHash('sha256');
  let count = 0;
  const done = new Promise<void>((resolve) => {
    const server = createServer((socket) => {
      // A service slow to start reading: the end of the data still waits in the daemon when the command exits.
      socket.pause();
      setTimeout(() => socket.resume(), 1500);
      socket.on('data', (chunk: Buffer) => {
        received.update(chunk);
        count += chunk.length;
      });
      socket.on('end', () => resolve());
    });
    server.listen(servicePath);
    t.after(() => server.close());
  });
  // The remote client writes everything, half-closes and exits at once.
  const client = `const s = require('net').connect(process.env.NETPLUMB_SPOOL + '/remote.sock', () => s.end(Buffer.alloc(${BYTES}, 7), () => process.exit(0)));`;
  const result = await np.plumb([process.execPath, '-e', client], { options: [`-socket=remote.sock:${servicePath}`], cwd: here });
  assert.equal(result.code, 0, result.stderr);
  await Promise.race([done, once(process, 'never')]);
  assert.equal(count, BYTES);
  assert.equal(received.digest('hex'), createHash('sha256').update(Buffer.alloc(BYTES, 7)).digest('hex'));
});
