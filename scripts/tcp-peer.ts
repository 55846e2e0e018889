// The plain-TCP ceiling for the benchmark: `tcp-peer.js BYTES` starts a receiving Node process on 127.0.0.1 and
// sends it BYTES in 64 KiB writes, honouring backpressure; it exits once the receiver has counted every byte.

import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const CHUNK = Buffer.alloc(64 * 1024);

function receive(): void {
  const server = createServer((socket) => {
    let total = 0;
    socket.on('data', (chunk: Buffer) => {
      total += chunk.length;
    });
    socket.on('end', () => {
      process.stdout.write(`received ${total}\n`);
      server.close();
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    if (address !== null && typeof address !== 'string') process.stdout.write(`port ${address.port}\n`);
  });
}

function send(bytes: number): void {
  const receiver = spawn(process.execPath, [fileURLToPath(import.meta.url), 'receive'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  receiver.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    const port = /port (\d+)/.exec(output);
    if (port !== null && !output.includes('sending')) {
      output += 'sending';
      const socket = connect({ host: '127.0.0.1', port: Number(port[1]) });
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
    }
  });
  receiver.once('exit', (code) => {
    const received = /received (\d+)/.exec(output);
    process.exitCode = code === 0 && received !== null && Number(received[1]) === bytes ? 0 : 1;
  });
}

if (process.argv[2] === 'receive') receive();
else send(Number(process.argv[2]));
