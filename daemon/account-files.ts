// The accounts of /etc/passwd and /etc/group, read by the daemon itself: looking an account up must not fork a
// helper from the daemon for every session. Each file is parsed once and kept until it changes (a stat on every
// lookup tells); a line the files' own parser would skip (a comment, too few fields, an id that is not a number,
// a NIS `+`/`-` entry) is skipped here too, and a name the files do not give is left to the system's other
// sources (daemon/accounts.ts asks getent for it).

import { readFileSync, statSync } from 'node:fs';

/** One line of the passwd file, as getpwnam(3) would give it. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  /** As written: empty when the line names no shell. */
  shell: string;
}

/** One line of the group file. */
export interface GroupEntry {
  name: string;
  gid: number;
  /** The accounts the line lists as members (not those whose primary group it is). */
  members: string[];
}

/** The largest id the kernel takes: (uid_t)-1 means "no change" to it, never an account. */
const MAX_ID = 0xffff_fffe;

function parseId(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const id = Number(text);
  return id <= MAX_ID ? id : undefined;
}

/** The lines worth parsing: no blank lines, no comments, no NIS compat entries (those belong to other sources). */
function entryLines(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trimStart())
    .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith('+') && !line.startsWith('-'));
}

/** Parses passwd text (name:password:uid:gid:gecos:home:shell); by name, the first line of a name winning, as getpwnam(3). */
export function parsePasswd(text: string): Map<string, PasswdEntry> {
  const entries = new Map<string, PasswdEntry>();
  for (const line of entryLines(text)) {
    const fields = line.split(':');
    if (fields.length !== 7) continue;
    const [name, , uidText, gidText, , home, shell] = fields as [string, string, string, string, string, string, string];
    const uid = parseId(uidText);
    const gid = parseId(gidText);
    if (name === '' || uid === undefined || gid === undefined || entries.has(name)) continue;
    entries.set(name, { name, uid, gid, home, shell });
  }
  return entries;
}

/** Parses group text (name:password:gid:member,member), in file order. */
export function parseGroup(text: string): GroupEntry[] {
  const groups: GroupEntry[] = [];
  for (const line of entryLines(text)) {
    const fields = line.split(':');
    if (fields.length !== 4) continue;
    const [name, , gidText, members] = fields as [string, string, string, string];
    const gid = parseId(gidText);
    if (name === '' || gid === undefined) continue;
    groups.push({ name, gid, members: members.split(',').filter((member) => member !== '') });
  }
  return groups;
}

/**
 * The supplementary groups initgroups(3) would set from these group lines: the primary group first, then every
 * group listing the account as a member, in file order, each id once.
 */
export function supplementaryGroups(name: string, primaryGid: number, groups: readonly GroupEntry[]): number[] {
  const ids = new Set<number>([primaryGid]);
  for (const group of groups) if (group.members.includes(name)) ids.add(group.gid);
  return [...ids];
}

/**
 * A file parsed once and parsed again only when it is another file or was changed: its device, inode, size,
 * mtime or ctime differ (nanoseconds, so two writes within a second are told apart). A file that cannot be read
 * parses as undefined, and is tried again at the next call.
 */
export class ParsedFile<T> {
  private cached: { key: string; value: T } | undefined;

  constructor(
    readonly path: string,
    private readonly parse: (text: string) => T,
  ) {}

  current(): T | undefined {
    let key: string;
    try {
      const stat = statSync(this.path, { bigint: true });
      key = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
      if (this.cached?.key === key) return this.cached.value;
      // Read after the stat: a change in between is seen at the next call, never a state older than the key.
      this.cached = { key, value: this.parse(readFileSync(this.path, 'utf8')) };
      return this.cached.value;
    } catch {
      this.cached = undefined;
      return undefined;
    }
  }
}

/** What the files say of one account: its passwd line and the groups initgroups(3) would give it. */
export interface FileAccount extends PasswdEntry {
  groups: number[];
}

/** The passwd and group files of a host (the system's, unless told otherwise), each kept parsed until it changes. */
export class AccountFiles {
  private readonly passwd: ParsedFile<Map<string, PasswdEntry>>;
  private readonly group: ParsedFile<GroupEntry[]>;

  constructor(passwdPath = '/etc/passwd', groupPath = '/etc/group') {
    this.passwd = new ParsedFile(passwdPath, parsePasswd);
    this.group = new ParsedFile(groupPath, parseGroup);
  }

  /** The account by name; undefined when the passwd file does not give it (or cannot be read). */
  find(name: string): FileAccount | undefined {
    const entry = this.passwd.current()?.get(name);
    if (entry === undefined) return undefined;
    return { ...entry, groups: supplementaryGroups(name, entry.gid, this.group.current() ?? []) };
  }

  /** Whether the passwd file gives the account. */
  has(name: string): boolean {
    return this.passwd.current()?.has(name) ?? false;
  }
}
