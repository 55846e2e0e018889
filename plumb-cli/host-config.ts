// Per-host client settings, as ~/.ssh/config gives ssh's: $NETPLUMB_HOME/config holds `Host pattern...` blocks of
// `Keyword value` lines (see plumb.1, HOST CONFIGURATION). parseHostConfig and hostSettingsFor are pure;
// machineSettings folds the command line (which wins), the config file, the hosts alias file and the defaults into
// what plumb connects to a machine with, and resolveMachine reads the two files for it.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { BadConfigError } from '../protocol/errors.js';
import { DEFAULT_PORT } from '../protocol/wire.js';
import { clientPaths, readHostAliases, readMachineArgument, splitHostPort, type ClientPaths, type Target } from './paths.js';
import { NO_RATE_LIMIT, parseRate, RATE_EXPECTED } from './rate.js';

/** How long plumb waits for the TCP connection to a daemon unless ConnectTimeout says otherwise. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** The longest ConnectTimeout, in seconds: a day. */
const MAX_CONNECT_TIMEOUT_SECONDS = 86_400;

/** What the config file can set for a host; a setting is absent until a line gives it, and the first line wins. */
export interface HostSettings {
  /** HostName: the address to connect to instead of the name as typed. */
  hostName?: string;
  port?: number;
  /** IdentityFile, `~` expanded, relative to the config file's directory. */
  identityFile?: string;
  /** User: the account the command runs as, as -user. */
  user?: string;
  /** KnownHostsFile, `~` expanded, relative to the config file's directory. */
  knownHostsFile?: string;
  /** AcceptNew yes|no, as -accept-new. */
  acceptNew?: boolean;
  /** LimitRate, as -limit-rate: bytes per second each way. */
  limitRate?: number;
  /** ConnectTimeout, given in seconds. */
  connectTimeoutMs?: number;
}

type Keyword = keyof HostSettings;

/** Each keyword as the file spells it (matched without regard to case). */
const KEYWORD_NAMES: Readonly<Record<Keyword, string>> = {
  hostName: 'HostName',
  port: 'Port',
  identityFile: 'IdentityFile',
  user: 'User',
  knownHostsFile: 'KnownHostsFile',
  acceptNew: 'AcceptNew',
  limitRate: 'LimitRate',
  connectTimeoutMs: 'ConnectTimeout',
};

/** Every keyword the file accepts, as it is spelled: Host and the settings. */
const HOST_CONFIG_KEYWORDS: readonly string[] = ['Host', ...Object.values(KEYWORD_NAMES)];

const KEYWORD_BY_LOWER_NAME = new Map(Object.entries(KEYWORD_NAMES).map(([keyword, name]) => [name.toLowerCase(), keyword as Keyword]));

/** One pattern of a Host line: `*` any run of characters, `?` one; `!` before it excludes what it matches. */
interface HostPattern {
  matches: RegExp;
  negated: boolean;
}

/** A setting line: its number and the one setting it gives. */
interface SettingLine {
  line: number;
  setting: HostSettings;
}

/** The lines under one Host line; the lines before any Host line form a block of their own, for every host. */
interface HostBlock {
  /** The Host line's number; undefined for the lines before the first Host line. */
  hostLine: number | undefined;
  patterns: HostPattern[];
  settings: SettingLine[];
}

/** A parsed config file: its blocks in file order. */
export interface HostConfig {
  file: string;
  blocks: HostBlock[];
}

/** No config file: nothing set for any host. */
export function emptyHostConfig(file: string): HostConfig {
  return { file, blocks: [] };
}

/** Where `~` and relative paths of a config file lead. */
export interface PathBase {
  /** The user's home directory, for `~`. */
  home: string;
  /** The directory relative paths are taken from: the config file's own. */
  dir: string;
}

/**
 * Parses a config file's text. Blank lines and lines starting with `#` are skipped, as is the rest of a line from
 * a `#` that starts a word. Every line is checked, whichever hosts it applies to: an unknown keyword or a bad value
 * anywhere is a BadConfigError naming `file:line`.
 */
export function parseHostConfig(text: string, file: string, base: PathBase): HostConfig {
  const blocks: HostBlock[] = [{ hostLine: undefined, patterns: [], settings: [] }];
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    const fail = (reason: string): never => {
      throw new BadConfigError(`${file}:${line}: ${reason}`);
    };
    const words = wordsOf(raw, fail);
    const first = words[0];
    if (first === undefined) return;
    // `Keyword=value` and `Keyword = value` as well as `Keyword value`.
    const equals = /^([^=]*)=(.*)$/.exec(first);
    const keywordText = equals === null ? first : (equals[1] as string);
    const values = equals === null ? words.slice(1) : [...(equals[2] === '' ? [] : [equals[2] as string]), ...words.slice(1)];
    if (equals === null && values[0]?.startsWith('=') === true) values[0] = values[0].slice(1);
    if (values[0] === '') values.shift();
    if (keywordText.toLowerCase() === 'host') {
      if (values.length === 0) fail('Host needs at least one pattern');
      blocks.push({ hostLine: line, patterns: values.map(hostPattern), settings: [] });
      return;
    }
    const keyword = KEYWORD_BY_LOWER_NAME.get(keywordText.toLowerCase());
    if (keyword === undefined) return fail(`unknown keyword ${JSON.stringify(keywordText)} (known: ${HOST_CONFIG_KEYWORDS.join(', ')})`);
    const name = KEYWORD_NAMES[keyword];
    if (values.length !== 1) fail(values.length === 0 ? `${name} needs a value` : `${name} takes one value, got ${values.length}`);
    (blocks.at(-1) as HostBlock).settings.push({ line, setting: settingOf(keyword, values[0] as string, base, (reason) => fail(`${name}: ${reason}`)) });
  });
  return { file, blocks };
}

/**
 * The words of a line: separated by blanks, a word in double quotes may hold blanks, and a word starting with `#`
 * ends the line.
 */
function wordsOf(raw: string, fail: (reason: string) => never): string[] {
  const words: string[] = [];
  const word = /\s*(?:"([^"]*)"|([^\s"]+))/y;
  let rest = raw.trimEnd();
  while (rest.trim() !== '') {
    word.lastIndex = 0;
    const match = word.exec(rest);
    if (match === null) return fail('a quoted value is not closed');
    const plain = match[2];
    if (plain?.startsWith('#') === true) break;
    words.push(match[1] ?? (plain as string));
    rest = rest.slice(word.lastIndex);
  }
  return words;
}

function hostPattern(text: string): HostPattern {
  const negated = text.startsWith('!');
  const glob = negated ? text.slice(1) : text;
  const source = [...glob].map((char) => (char === '*' ? '.*' : char === '?' ? '.' : char.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('');
  // Host names are compared without regard to case, as DNS does.
  return { matches: new RegExp(`^${source}$`, 'is'), negated };
}

/** The one setting a line gives, its value checked. */
function settingOf(keyword: Keyword, value: string, base: PathBase, fail: (reason: string) => never): HostSettings {
  switch (keyword) {
    case 'hostName': {
      const { host, port } = parseOr(() => splitHostPort(value), fail);
      if (port !== undefined) fail(`${value} has a port; give it with Port`);
      return { hostName: host };
    }
    case 'port':
      if (!/^[1-9][0-9]{0,4}$/.test(value) || Number(value) > 65535) fail(`${value} is not a port (1 to 65535)`);
      return { port: Number(value) };
    case 'identityFile':
      return { identityFile: expandPath(value, base, fail) };
    case 'user':
      return { user: value };
    case 'knownHostsFile':
      return { knownHostsFile: expandPath(value, base, fail) };
    case 'acceptNew': {
      const answer = value.toLowerCase();
      if (answer !== 'yes' && answer !== 'no') fail(`expected yes or no, got ${value}`);
      return { acceptNew: answer === 'yes' };
    }
    case 'limitRate': {
      const rate = parseRate(value);
      return rate === undefined ? fail(`${value}: ${RATE_EXPECTED}`) : { limitRate: rate };
    }
    case 'connectTimeoutMs':
      if (!/^[1-9][0-9]{0,5}$/.test(value) || Number(value) > MAX_CONNECT_TIMEOUT_SECONDS) fail(`expected whole seconds from 1 to ${MAX_CONNECT_TIMEOUT_SECONDS}, got ${value}`);
      return { connectTimeoutMs: Number(value) * 1000 };
    default: {
      const unknown: never = keyword;
      return fail(`unknown keyword ${String(unknown)}`);
    }
  }
}

/** The value parse() gives, or its error's message as this line's. */
function parseOr<T>(parse: () => T, fail: (reason: string) => never): T {
  try {
    return parse();
  } catch (error) {
    return fail((error as Error).message);
  }
}

/** `~` and `~/path` are in the home directory; another relative path is in the config file's directory. */
function expandPath(value: string, base: PathBase, fail: (reason: string) => never): string {
  if (value === '~') return base.home;
  if (value.startsWith('~/')) return join(base.home, value.slice(2));
  if (value.startsWith('~')) fail(`only ~ and ~/ are expanded, not ${value}`);
  return isAbsolute(value) ? value : join(base.dir, value);
}

/** What the config gives a host, and the lines that applied (for -v). */
export interface MatchedSettings {
  settings: HostSettings;
  /** One sentence per block that applied, e.g. `/home/u/.netplumb/config line 3 applies to host db1`. */
  applied: string[];
}

/**
 * The settings for the host named `name`: a block applies when one of its patterns matches and none of its `!`
 * patterns does; the lines before the first Host line apply to every host. Of each setting the first value in file
 * order wins.
 */
export function hostSettingsFor(config: HostConfig, name: string): MatchedSettings {
  let settings: HostSettings = {};
  const applied: string[] = [];
  for (const block of config.blocks) {
    if (block.hostLine !== undefined && !blockApplies(block, name)) continue;
    if (block.settings.length === 0) continue;
    applied.push(
      block.hostLine === undefined
        ? `${config.file} lines ${block.settings[0]?.line ?? 1}-${block.settings.at(-1)?.line ?? 1} (before any Host) apply to host ${name}`
        : `${config.file} line ${block.hostLine} applies to host ${name}`,
    );
    // What is set already stays: the first value wins.
    for (const { setting } of block.settings) settings = { ...setting, ...settings };
  }
  return { settings, applied };
}

function blockApplies(block: HostBlock, name: string): boolean {
  const matching = block.patterns.filter((pattern) => pattern.matches.test(name));
  return matching.length > 0 && matching.every((pattern) => !pattern.negated);
}

/** What the command line says about the machine; each option given beats the config file. */
export interface MachineOverrides {
  identity?: string | undefined;
  knownHosts?: string | undefined;
  /** -accept-new (a flag: true or absent), or the library's acceptNew; absent leaves the config's AcceptNew. */
  acceptNew?: boolean | undefined;
  port?: number | undefined;
  user?: string | undefined;
  limitRate?: number | undefined;
  /** -one-time-key: the key file binds the account, so the config's User is not used. */
  oneTimeKey?: string | undefined;
}

/** Everything plumb connects to one machine with. */
export interface MachineSettings {
  target: Target;
  identityFile: string;
  knownHostsFile: string;
  acceptNew: boolean;
  /** The account to run as; undefined: the one the daemon chooses. */
  user: string | undefined;
  /** Bytes per second each way; undefined: no limit. */
  limitRate: number | undefined;
  connectTimeoutMs: number;
  /** The config file's blocks that applied, for -v. */
  applied: string[];
}

/**
 * The settings for `machine` (as the command line or a recipe's @NAME gives it). Of each: the command line's, else
 * the config file's, else the hosts alias file's, else the default. The config file's Host patterns are matched
 * against the name as typed (the alias, or the host without a typed port), never against where an alias points,
 * and its HostName wins over an alias of that name. Host keys are pinned under the address connected to.
 */
export function machineSettings(machine: string, overrides: MachineOverrides, config: HostConfig, aliases: ReadonlyMap<string, string>, paths: ClientPaths): MachineSettings {
  const typed = readMachineArgument(machine, aliases);
  const { settings, applied } = hostSettingsFor(config, typed.name);
  return {
    target: {
      name: machine,
      host: settings.hostName ?? typed.alias?.host ?? typed.host,
      port: overrides.port ?? typed.port ?? settings.port ?? typed.alias?.port ?? DEFAULT_PORT,
    },
    identityFile: overrides.identity ?? settings.identityFile ?? paths.identity,
    knownHostsFile: overrides.knownHosts ?? settings.knownHostsFile ?? paths.knownHosts,
    acceptNew: overrides.acceptNew ?? settings.acceptNew === true,
    user: overrides.user ?? (overrides.oneTimeKey === undefined ? settings.user : undefined),
    limitRate: rateLimit(overrides.limitRate ?? settings.limitRate),
    connectTimeoutMs: settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    applied,
  };
}

/** A limit as the connections apply it: undefined for none, NO_RATE_LIMIT (`-limit-rate=0`) included. */
function rateLimit(rate: number | undefined): number | undefined {
  return rate === NO_RATE_LIMIT ? undefined : rate;
}

/**
 * Reads the config file (none: nothing set) and refuses one that others could change, as ssh does: it chooses the
 * key and the known hosts file plumb trusts.
 */
export function readHostConfig(file: string, home: string = homedir()): HostConfig {
  if (!existsSync(file)) return emptyHostConfig(file);
  const stat = statSync(file);
  const uid = process.getuid?.();
  if ((stat.mode & 0o022) !== 0) throw new BadConfigError(`${file} has mode 0${(stat.mode & 0o777).toString(8)}, writable by group or others; run chmod go-w ${file}`);
  if (uid !== undefined && stat.uid !== uid && stat.uid !== 0) throw new BadConfigError(`${file} belongs to uid ${stat.uid}, neither this user nor root`);
  return parseHostConfig(readFileSync(file, 'utf8'), file, { home, dir: dirname(file) });
}

/** machineSettings with the config and hosts alias files of $NETPLUMB_HOME (or the given paths). */
export function resolveMachine(machine: string, overrides: MachineOverrides, paths: ClientPaths = clientPaths()): MachineSettings {
  return machineSettings(machine, overrides, readHostConfig(paths.config), readHostAliases(paths.hosts), paths);
}
