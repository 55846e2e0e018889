// The two ends both benchmark peers (tcp-peer.ts, unix-peer.ts) use on their sockets: a receiver that counts one
// connection's bytes and prints `received N`, and a sender of N bytes in 64 KiB writes that honours backpressure.

import { createServer, type Server, type Socket } from 'node:net';

const CHUNK = Buffer.alloc(64 * 1024);

/** A server (not yet listening) that counts the bytes of a connection; at its end prints `received N` and closes. */
export function countingServer(): Server {
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
  return server;
}

/** Once the socket connects, writes `bytes` zero bytes in 64 KiB writes, waiting for 'drain' when told to, then ends it. */
export function sendBytes(socket: Socket, bytes: number): void {
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
