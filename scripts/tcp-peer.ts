// The plain-TCP ceiling for the benchmark: `tcp-peer.js BYTES` starts a receiving Node process on 127.0.0.1 and
// sends it BYTES in 64 KiB writes, honouring backpressure; it exits once the receiver has counted every byte.

import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { countingServer, sendBytes } from './peer.js';

function receive(): void {
  const server = countingServer();
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
      sendBytes(connect({ host: '127.0.0.1', port: Number(port[1]) }), bytes);
    }
  });
  receiver.once('exit', (code) => {
    const received = /received (\d+)/.exec(output);
    process.exitCode = code === 0 && received !== null && Number(received[1]) === bytes ? 0 : 1;
  });
}

if (process.argv[2] === 'receive') receive();
else send(Number(process.argv[2]));
