// Ends of a Unix-socket stream for the benchmark: `unix-peer.js sink PATH` listens on PATH, counts the bytes of one
// connection and prints `received N`; `unix-peer.js source PATH BYTES` connects to PATH and sends BYTES in 64 KiB
// writes, honouring backpressure.

import { connect } from 'node:net';
import { countingServer, sendBytes } from './peer.js';

function sink(path: string): void {
  countingServer().listen(path, () => process.stdout.write('listening\n'));
}

function source(path: string, bytes: number): void {
  const socket = connect(path);
  sendBytes(socket, bytes);
  socket.on('error', (error) => {
    process.stderr.write(`unix-peer: ${error.message}\n`);
    process.exitCode = 1;
  });
}

const [mode, path, bytes] = process.argv.slice(2);
if (mode === 'sink' && path !== undefined) sink(path);
else if (mode === 'source' && path !== undefined && bytes !== undefined) source(path, Number(bytes));
else {
  process.stderr.write('usage: unix-peer.js sink PATH | unix-peer.js source PATH BYTES\n');
  process.exitCode = 2;
}
