// Opening a TCP connection to a daemon, for plumb and for a daemon carrying an edge of a recipe to another daemon:
// a bounded wait, and failures told as NP_CONNECT_FAILED (nothing was reached) or NP_CONNECTION_LOST (the host
// accepted and hung up), with the address in the message.

import { connect as tcpConnect, type Socket } from 'node:net';
import { ConnectFailedError, ErrorCode, errorFor } from '../protocol/errors.js';

/** Where to connect: a host name or address, and a port. */
export interface TcpAddress {
  host: string;
  port: number;
}

export function openSocket(target: TcpAddress, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: target.host, port: target.port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectFailedError(`cannot connect to ${target.host} port ${target.port}: timed out`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // A reset before libuv reports the connect means the host accepted and then hung up: the connection was
      // made and lost, which a retry cannot mend any more than a hang-up just after 'connect'.
      const code = error.code === 'ECONNRESET' ? ErrorCode.ConnectionLost : ErrorCode.ConnectFailed;
      reject(errorFor(code, `cannot connect to ${target.host} port ${target.port}: ${error.message}`, { cause: error }));
    });
  });
}
