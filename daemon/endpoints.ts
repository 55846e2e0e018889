// The daemon's end of a session's replicated named pipes and sockets: makes the FIFOs the command will use (in the
// spool directory for relative paths), listens on its listen-sockets, and joins each round or connection to a
// stream. Everything it created is removed when the session ends.

import { mkdirSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import type { Duplex } from 'node:stream';
import { OWN_IDENTITY, type CommandIdentity } from '../bridges/identity.js';
import { atCheckedPath, openChecked, reasonFor, removeMadeFile, type MadeFile, type PathCheck } from '../bridges/checked-open.js';
import { DAEMON_ROLES, EndpointRouter } from '../bridges/endpoint-router.js';
import { ensureFifo, FifoSink, openFifo } from '../bridges/fifo.js';
import { checkSocketPath, connectStream } from '../bridges/unix-socket.js';
import type { FieldList } from '../protocol/fields.js';
import type { Mux, MuxStream } from '../protocol/mux.js';
import type { Endpoints } from '../protocol/session.js';
import { checkPath, checkRealPath, type Gluepot } from './gluepots.js';
import type { Logger } from './log.js';
import { EndpointError } from '../protocol/errors.js';

/**
 * A path of the daemon's host as a client named it: absolute as it is; relative inside the spool directory, which it
 * may never leave (a `..` component is refused).
 */
export function resolveDaemonPath(path: string, spoolDir: string): string {
  if (path.includes('\0')) throw new EndpointError('a path may not contain NUL');
  if (isAbsolute(path)) return normalize(path);
  if (path.split('/').includes('..')) throw new EndpointError(`${path}: a relative path may not leave the spool directory (..)`);
  return join(spoolDir, path);
}

/** What a session's endpoints may use: the client's gluepot (absent: any path) and the command's identity. */
export interface EndpointAccess {
  gluepot?: Gluepot;
  identity?: CommandIdentity;
}

export class DaemonEndpoints {
  private readonly router = new EndpointRouter(DAEMON_ROLES);
  private readonly createdFifos: MadeFile[] = [];
  private closed = false;

  private constructor(
    private readonly log: Logger,
    private readonly identity: CommandIdentity,
    /** The gluepot's check of a real path (absent: any path). */
    private readonly check: PathCheck | undefined,
  ) {}

  /**
   * Makes every FIFO and listening socket before the command starts, so the command finds them in place.
   * Throws EndpointError (NP_ENDPOINT) naming the path that cannot be used; nothing is left behind then.
   */
  static async prepare(endpoints: Endpoints, spoolDir: string, mux: Mux, log: Logger, access: EndpointAccess = {}): Promise<DaemonEndpoints> {
    const { gluepot, identity = OWN_IDENTITY } = access;
    const check = gluepot === undefined ? undefined : (realPath: string): void => checkRealPath(gluepot, realPath, spoolDir, 'named pipe or socket');
    const self = new DaemonEndpoints(log, identity, check);
    try {
      const resolve = (path: string): string => {
        const resolved = resolveDaemonPath(path, spoolDir);
        // Outside the spool directory only where the client's gluepot allows it, checked before anything is made,
        // with the command's rights: a refusal names no place the account could not see itself.
        if (gluepot !== undefined) checkPath(gluepot, resolved, spoolDir, 'named pipe or socket', identity);
        return resolved;
      };
      const inFifos = endpoints.inFifos.map(resolve);
      const outFifos = endpoints.outFifos.map(resolve);
      const listenSockets = endpoints.listenSockets.map(resolve);
      const connectPaths = endpoints.connectSockets.map(resolve);
      for (const path of [...listenSockets, ...connectPaths]) checkSocketPath(path);
      if ([...inFifos, ...outFifos, ...listenSockets].some((path) => path.startsWith(`${spoolDir}/`))) {
        mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
      }
      // A relative FIFO lives in the spool every session shares: it must be this session's own, never one found there.
      const relative = new Set([...endpoints.inFifos, ...endpoints.outFifos].filter((path) => !isAbsolute(path)).map(resolve));
      // Made with the command's rights, in the directory as checked at that moment (a command the client ran may
      // have swapped one on the way for a symlink since the first check).
      for (const path of [...inFifos, ...outFifos]) {
        const fifo = await ensureFifo(path, relative.has(path), identity, check);
        if (fifo.created) self.createdFifos.push(fifo.made);
      }
      const failed = (error: EndpointError): void => {
        log.warn('named pipe failed', { code: error.code, reason: error.message });
      };
      // Every round opens the pipe again, by path: with the command's rights, never through a symlink, only a FIFO,
      // and (with a gluepot) only where the gluepot allows, as the directory really is at that moment.
      const openPipe = (path: string, flags: number): number => identity.asUser(() => openFifo(path, flags, (at, how) => openChecked(at, how, 0, check)));
      const reportIllegalMove = (machine: string, from: string, to: string): void => void log.error('illegal state change refused', { machine, from, to });
      inFifos.forEach((path) => self.router.addSink(new FifoSink(path, failed, openPipe, reportIllegalMove)));
      connectPaths.forEach((path) => self.router.addConnector((stream) => self.connect(path, stream)));
      outFifos.forEach((path) => self.router.readFifo(path, mux, failed, openPipe, reportIllegalMove));
      for (const path of listenSockets) await self.router.listen(path, mux, identity, check);
      return self;
    } catch (error) {
      self.close();
      throw error;
    }
  }

  /** Takes a stream the client opened for an endpoint; false when it is not one of ours. */
  route(stream: MuxStream, fields: FieldList): boolean {
    return this.router.route(stream, fields);
  }

  /**
   * Everything the command wrote into its out-FIFOs, on its way: each FIFO gets a writer that opens and closes at
   * once, so the reader sees the end of what is buffered (or of the round a longer-lived writer still holds).
   * Connections on listening sockets get up to SOCKET_DRAIN_MS to end by themselves.
   */
  async flush(): Promise<void> {
    await Promise.all([this.router.readsFinished(), this.router.connectionsDrained()]);
  }

  /** Stops every bridge, drops their streams and removes the FIFOs and socket files this session created. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.router.close();
    // With the command's rights, and only the very pipes made: the command may have put something else there.
    for (const fifo of this.createdFifos) this.identity.asUser(() => removeMadeFile(fifo));
  }

  private connect(path: string, stream: Duplex): void {
    if (this.closed) {
      stream.destroy();
      return;
    }
    const refused = (error: EndpointError): void => {
      this.log.info('socket connection refused', { code: error.code, reason: error.message });
    };
    // connect(2) happens within connectStream(), synchronously: with the command's account (the service sees it,
    // not root), through the directory as checked now.
    try {
      this.identity.asUser(() => atCheckedPath(path, this.check, (pinned) => connectStream(pinned, stream, refused, path)));
    } catch (error) {
      stream.destroy();
      refused(new EndpointError(`cannot connect to ${path}: ${reasonFor(error, path)}`, { cause: error }));
    }
  }
}
