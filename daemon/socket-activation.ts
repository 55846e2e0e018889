// Socket activation (sd_listen_fds(3)): the listening socket a systemd socket unit (Accept=no) passes as fd 3,
// read from LISTEN_PID and LISTEN_FDS as libsystemd reads them. The variables are removed in every case, so that
// nothing the daemon starts inherits them.

import { BadConfigError } from '../protocol/errors.js';

/** The first descriptor systemd passes (SD_LISTEN_FDS_START). */
export const SD_LISTEN_FDS_START = 3;

/** The variables of the protocol, all removed once read. */
const LISTEN_VARIABLES = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

export type ListenActivation =
  /** No socket passed: LISTEN_PID or LISTEN_FDS unset, or LISTEN_FDS=0. */
  | { kind: 'none' }
  /** Sockets passed to another process (LISTEN_PID is not this one), inherited by mistake and left alone. */
  | { kind: 'not-ours'; listenPid: number }
  /** The one listening socket this process was given. */
  | { kind: 'socket'; fd: number };

/**
 * What systemd passed this process (pid), taken out of the environment. As sd_listen_fds: LISTEN_PID unset, or
 * naming another process, means nothing was passed; a value that is not a number is an error. netplumbd serves
 * one listening socket, so more than one passed is refused (NP_CONFIG) rather than some of them left unserved.
 */
export function takeListenActivation(environment: NodeJS.ProcessEnv = process.env, pid: number = process.pid): ListenActivation {
  const listenPid = environment['LISTEN_PID'];
  const listenFds = environment['LISTEN_FDS'];
  for (const name of LISTEN_VARIABLES) delete environment[name];
  if (listenPid === undefined || listenFds === undefined) return { kind: 'none' };
  if (!/^[1-9]\d*$/.test(listenPid)) throw new BadConfigError(`LISTEN_PID=${listenPid}: not a process id`);
  if (Number(listenPid) !== pid) return { kind: 'not-ours', listenPid: Number(listenPid) };
  if (!/^\d+$/.test(listenFds)) throw new BadConfigError(`LISTEN_FDS=${listenFds}: not a number of sockets`);
  const count = Number(listenFds);
  if (count === 0) return { kind: 'none' };
  if (count > 1) throw new BadConfigError(`LISTEN_FDS=${listenFds}: systemd passed ${count} sockets, netplumbd serves one (one ListenStream= in the socket unit)`);
  return { kind: 'socket', fd: SD_LISTEN_FDS_START };
}
