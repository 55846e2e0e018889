// The accounts commands run as. A session's Account comes from /etc/passwd and /etc/group, read by the daemon itself
// and kept parsed until they change (daemon/account-files.ts): no helper is forked from the daemon for a session.
// A name those files do not give is asked of the system's user database through getent and id, so other NSS
// sources such as LDAP still count; those are the only helpers left, for such accounts only. The supplementary
// groups are those initgroups(3) would set. RunAs wraps every command in setpriv so the child gets exactly that
// identity (libuv's uid/gid spawn options would drop the supplementary groups), and opens files (and looks
// programs up) on the user's behalf with the user's rights, so the daemon never lends a client its own.

import { execFile, execFileSync } from 'node:child_process';
import { lchownSync, lstatSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';
import { NetplumbError, NotPermittedError, SpawnFailedError } from '../protocol/errors.js';
import { processMayExecute, type CommandIdentity } from '../bridges/identity.js';
import { AccountFiles } from './account-files.js';

const execFileAsync = promisify(execFile);

/** Where setpriv, getent and id live on Debian; full paths, so no PATH decides what runs as root. */
export const SETPRIV = '/usr/bin/setpriv';
const GETENT = '/usr/bin/getent';
const ID = '/usr/bin/id';

export interface Account {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary groups, as initgroups(3) would set them (the primary group included). */
  groups: number[];
  home: string;
  shell: string;
}

/**
 * The account the daemon itself runs as, from the process itself (no lookup to spawn: most sessions run as this
 * account, and their start must stay quick).
 */
export function daemonAccount(): Account {
  const info = userInfo();
  return {
    name: info.username,
    uid: info.uid,
    gid: info.gid,
    groups: process.getgroups?.() ?? [info.gid],
    home: info.homedir,
    shell: info.shell ?? '/bin/sh',
  };
}

/** The host's own account files, parsed once and again only when they change. */
const systemFiles = new AccountFiles();

/** Whether the system's user database knows the account (a synchronous lookup, for start-up checks). */
export function accountKnown(name: string, files: AccountFiles = systemFiles): boolean {
  if (files.has(name)) return true;
  try {
    execFileSync(GETENT, ['passwd', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Looks an account up by name: in the account files, else in the system's user database (getent and id, for
 * accounts of other NSS sources). An unknown name is a RequestError(NP_NOT_PERMITTED) naming it.
 */
export async function lookupAccount(name: string, files: AccountFiles = systemFiles): Promise<Account> {
  const found = files.find(name);
  if (found === undefined) return await lookupInUserDatabase(name);
  const { uid, gid, groups, home, shell } = found;
  return { name, uid, gid, groups, home, shell: shell === '' ? '/bin/sh' : shell };
}

/** An account the files do not give, from every source NSS knows. */
async function lookupInUserDatabase(name: string): Promise<Account> {
  let entry: string;
  let groups: string;
  try {
    entry = (await execFileAsync(GETENT, ['passwd', name], { encoding: 'utf8' })).stdout;
    groups = (await execFileAsync(ID, ['-G', name], { encoding: 'utf8' })).stdout;
  } catch (error) {
    throw new NotPermittedError(`no such user ${name} on this host`, { cause: error });
  }
  const fields = entry.trim().split('\n')[0]?.split(':') ?? [];
  const [entryName, , uid, gid, , home, shell] = fields;
  if (fields.length < 7 || entryName !== name || !/^\d+$/.test(uid ?? '') || !/^\d+$/.test(gid ?? '')) {
    throw new NotPermittedError(`no usable passwd entry for user ${name}`);
  }
  return {
    name,
    uid: Number(uid),
    gid: Number(gid),
    groups: groups.trim().split(/\s+/).filter((group) => /^\d+$/.test(group)).map(Number),
    home: home ?? '/',
    shell: shell === undefined || shell === '' ? '/bin/sh' : shell,
  };
}

/**
 * How commands of one session get their identity. When the account is the daemon's own, nothing changes; when
 * the daemon (root) runs them as another account, every program is started through setpriv, and files the daemon
 * opens for them are opened with the account's effective ids and groups.
 */
export class RunAs implements CommandIdentity {
  readonly switches: boolean;

  constructor(readonly account: Account) {
    this.switches = account.uid !== process.geteuid?.() || account.gid !== process.getegid?.();
  }

  /** The program and arguments to spawn so that `program args` runs as the account. */
  command(program: string, args: readonly string[]): [string, string[]] {
    if (!this.switches) return [program, [...args]];
    const { uid, gid } = this.account;
    return [SETPRIV, [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--', program, ...args]];
  }

  /** The variables a login would set for the account. */
  environment(): Record<string, string> {
    const { name, home, shell } = this.account;
    return { HOME: home, USER: name, LOGNAME: name, SHELL: shell };
  }

  /**
   * Runs `open` (synchronous file-system calls only) with the account's effective uid, gid and groups, so the
   * kernel checks the account's rights and files it creates belong to it; the daemon's own ids come back before
   * anything else runs. The same temporary switch OpenSSH makes to read a user's files. Only synchronous work may
   * happen inside: the event loop cannot run another session's code meanwhile.
   */
  asUser<T>(open: () => T): T {
    if (!this.switches) return open();
    const { uid, gid, groups } = this.account;
    const saved = { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0, groups: process.getgroups?.() ?? [] };
    try {
      // Groups and gid first: once the euid is the account's, the daemon could no longer change them.
      process.setgroups?.(groups);
      process.setegid?.(gid);
      process.seteuid?.(uid);
      return open();
    } finally {
      process.seteuid?.(saved.uid);
      process.setegid?.(saved.gid);
      process.setgroups?.(saved.groups);
    }
  }

  /**
   * Whether the account may execute the file at path. access(2) answers for the real uid, which asUser leaves as
   * the daemon's (root, who may execute any file with an x bit), so the mode bits are read against the account's
   * uid, gid and groups as the kernel reads them: the owner's bits for the owner, else the group's for a member of
   * the file's group (even where the other bits would allow more), else the other bits. Left out: ACL entries
   * (the group bits then hold the ACL mask), capabilities such as CAP_DAC_OVERRIDE, noexec mounts and security
   * modules; where they refuse, exec itself fails in setpriv (see programToStart in bridges/programs.ts), and
   * where an ACL entry allows what the bits do not, the program is refused here as not executable.
   */
  mayExecute(path: string): boolean {
    if (!this.switches) return processMayExecute(path);
    const { mode, uid, gid } = statSync(path);
    const { account } = this;
    // uid 0 keeps root's capabilities through setpriv: any x bit will do.
    if (account.uid === 0) return (mode & 0o111) !== 0;
    if (uid === account.uid) return (mode & 0o100) !== 0;
    if (gid === account.gid || account.groups.includes(gid)) return (mode & 0o010) !== 0;
    return (mode & 0o001) !== 0;
  }
}

/**
 * The account a session runs as: the one asked for (it must be among those the client's line allows), else the
 * client's first allowed account, else the daemon's configured run-as account. A daemon not running as root can
 * only run commands as itself.
 */
export function chooseAccountName(asked: string | undefined, allowed: readonly string[] | undefined, configured: string): string {
  if (asked !== undefined) {
    // Asking for the account one would get anyway needs no permission.
    const permitted = allowed === undefined ? asked === configured : allowed.includes(asked);
    if (!permitted) {
      const which = allowed === undefined ? 'no user= on its line' : `its line allows ${allowed.join(', ')}`;
      throw new NotPermittedError(`this client may not run commands as ${asked} (${which})`);
    }
    return asked;
  }
  return allowed?.[0] ?? configured;
}

/**
 * The spool of commands run as another account: `users/NAME` in the daemon's spool, owned by that account and
 * private to it. `users` is the daemon's and nobody else may write there, so no one can plant a symlink in place
 * of an account's spool; the spool directory itself must let others pass (mode 0711 when the daemon makes it).
 */
export function userSpoolDir(spoolRoot: string, account: Account): string {
  const users = join(spoolRoot, 'users');
  const dir = join(users, account.name);
  try {
    mkdirSync(users, { recursive: true, mode: 0o711 });
    if ((statSync(spoolRoot).mode & 0o001) === 0) {
      throw new SpawnFailedError(`the spool directory ${spoolRoot} does not let other users pass (chmod o+x it): ${account.name} could not reach its spool`);
    }
    // Only the daemon may make or replace what is in `users`: no one can swap an account's spool for a symlink.
    const usersStat = lstatSync(users);
    if (!usersStat.isDirectory() || usersStat.uid !== process.geteuid?.() || (usersStat.mode & 0o022) !== 0) {
      throw new SpawnFailedError(`${users} must be a directory of the daemon's own that group and others cannot write to`);
    }
    try {
      mkdirSync(dir, { mode: 0o700 });
      lchownSync(dir, account.uid, account.gid);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const stat = lstatSync(dir);
    if (!stat.isDirectory() || stat.uid !== account.uid) throw new SpawnFailedError(`${dir} is not a directory of ${account.name}'s own`);
  } catch (error) {
    if (error instanceof NetplumbError) throw error;
    throw new SpawnFailedError(`cannot make the spool of ${account.name}: ${(error as Error).message}`, { cause: error });
  }
  return dir;
}
