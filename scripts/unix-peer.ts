// Ends of a Unix-socket stream for the benchmark: `unix-peer.js sink PATH` listens on PATH, counts the bytes of one
// connection and prints `received N`; `unix-peer.js source PATH BYTES` connects to PATH and sends BYTES in 64 KiB
// writes, honouring backpressure.

import { connect, createServer } from 'node:net';

const CHUNK = Buffer.alloc(64 * 1024);

function sink(path: string): void {
  const server = createServer((socket) => {
    let total = 0;
    socket.on('data', (chunk: Buffer) => {
      total += chunk.length;
    });
    socket.on('end', () => {
      process.stdout.write(`received ${total}\n`);
      socket.end();
      server.close();
    });
  });
  server.listen(path, () => process.stdout.write('listening\n'));
}

function source(path: string, bytes: number): void {
  const socket = connect(path);
  let left = bytes;
  const pump = (): void => {
    while (left > 0) {
      const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= piece.length;
      if (!socket.write(piece)) {
        socket.once('drain', pump);
        return;
      }
    }
    socket.end();
  };
  socket.once('connect', pump);
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
