// The clients netplumbd serves, in OpenSSH authorized_keys style: `[options] keytype base64 [comment]`. A bad line
// becomes a ConfigError naming source:line and the other lines still load; unknown options make a line bad, so a
// restriction the daemon does not understand is never silently ignored.

import { BadConfigError, ConfigError, withContext } from '../protocol/errors.js';
import { parsePublicKeyLine, type PublicIdentity } from '../protocol/keys.js';
import { USER_NAME_PATTERN } from '../protocol/session.js';
import { readTrustedFile } from './trusted-file.js';

export interface AuthorizedClient {
  identity: PublicIdentity;
  /** Option name (lower case) to its value; `true` for a flag. Values are as written, quotes removed. */
  options: Map<string, string | true>;
  /** 1-based line in the source. */
  line: number;
}

export interface AuthorizedClientsFile {
  clients: AuthorizedClient[];
  errors: ConfigError[];
}

type OptionKind = 'flag' | 'value';

/**
 * Options understood today: `gluepot=NAME`, `user=NAME[,NAME...]` (quote a list: `user="backup,postgres"`) and
 * the flag `controller`. Anything else (`from=` included, for now) makes the line an error.
 */
export const AUTHORIZED_CLIENT_OPTIONS: ReadonlyMap<string, OptionKind> = new Map<string, OptionKind>([
  ['gluepot', 'value'],
  ['user', 'value'],
  ['controller', 'flag'],
]);

const SUPPORTED_KEY_TYPES = new Set(['ssh-ed25519', 'ssh-rsa']);
const OPTION_NAME = /^[A-Za-z][A-Za-z0-9_-]*/;
const GLUEPOT_NAME = /^[A-Za-z0-9_.@-]+$/;

/** The user names a `user=` option allows, or undefined when the client has no such option. */
export function allowedUsers(client: AuthorizedClient): string[] | undefined {
  const value = client.options.get('user');
  return typeof value === 'string' ? value.split(',') : undefined;
}

/** Reads a quoted value starting after the opening quote; `\"` stands for a quote. Returns value and next index. */
function readQuoted(text: string, start: number): [string, number] {
  let value = '';
  let index = start;
  while (index < text.length) {
    const char = text[index];
    if (char === '\\' && text[index + 1] === '"') {
      value += '"';
      index += 2;
    } else if (char === '"') {
      return [value, index + 1];
    } else {
      value += char;
      index += 1;
    }
  }
  throw new BadConfigError('an option value has no closing quote');
}

/** Splits the option list off the front of a line; returns the options and the key part that follows. */
function parseOptions(text: string): { options: Map<string, string | true>; rest: string } {
  const options = new Map<string, string | true>();
  let index = 0;
  for (;;) {
    const nameMatch = OPTION_NAME.exec(text.slice(index));
    if (nameMatch === null) throw new BadConfigError(`expected an option name at column ${index + 1}`);
    const name = nameMatch[0].toLowerCase();
    index += nameMatch[0].length;
    let value: string | true = true;
    if (text[index] === '=') {
      index += 1;
      if (text[index] === '"') {
        [value, index] = readQuoted(text, index + 1);
      } else {
        const bare = /^[^\s,"]*/.exec(text.slice(index))?.[0] ?? '';
        value = bare;
        index += bare.length;
      }
    }
    if (options.has(name)) throw new BadConfigError(`option ${name} is given twice`);
    options.set(name, value);
    const next = text[index];
    if (next === ',') {
      index += 1;
      continue;
    }
    if (next === undefined) throw new BadConfigError('options are not followed by a key');
    if (!/\s/.test(next)) throw new BadConfigError(`unexpected ${JSON.stringify(next)} at column ${index + 1}`);
    return { options, rest: text.slice(index).trim() };
  }
}

function checkOptions(options: Map<string, string | true>): void {
  for (const [name, value] of options) {
    const kind = AUTHORIZED_CLIENT_OPTIONS.get(name);
    if (kind === undefined) throw new BadConfigError(`unknown option ${name}`);
    if (kind === 'flag' && value !== true) throw new BadConfigError(`option ${name} takes no value`);
    if (kind === 'value' && (value === true || value === '')) throw new BadConfigError(`option ${name} needs a value`);
  }
  const gluepot = options.get('gluepot');
  if (typeof gluepot === 'string' && !GLUEPOT_NAME.test(gluepot)) {
    throw new BadConfigError(`gluepot name ${JSON.stringify(gluepot)} is not valid`);
  }
  const users = options.get('user');
  if (typeof users === 'string') {
    for (const user of users.split(',')) {
      if (!USER_NAME_PATTERN.test(user)) throw new BadConfigError(`user name ${JSON.stringify(user)} is not valid`);
    }
  }
}

/** A line without options starts with a key type, or with some other type word followed by base64 key data. */
function startsWithKey(line: string): boolean {
  const [first = '', second = ''] = line.split(/\s+/, 2);
  return SUPPORTED_KEY_TYPES.has(first) || (second.startsWith('AAAA') && !/[=",]/.test(first));
}

function parseLine(line: string): { identity: PublicIdentity; options: Map<string, string | true> } {
  let options = new Map<string, string | true>();
  let keyPart = line;
  if (!startsWithKey(line)) {
    ({ options, rest: keyPart } = parseOptions(line));
    checkOptions(options);
  }
  return { identity: parsePublicKeyLine(keyPart), options };
}

/** Parses a whole file's text; `source` names it in error messages (`source:line: reason`). */
export function parseAuthorizedClients(text: string, source: string): AuthorizedClientsFile {
  const clients: AuthorizedClient[] = [];
  const errors: ConfigError[] = [];
  const firstLineOf = new Map<string, number>();
  for (const [index, raw] of text.split('\n').entries()) {
    const lineNumber = index + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      const { identity, options } = parseLine(line);
      const earlier = firstLineOf.get(identity.fingerprint);
      if (earlier !== undefined) throw new BadConfigError(`the key ${identity.fingerprint} is already listed on line ${earlier}`);
      firstLineOf.set(identity.fingerprint, lineNumber);
      clients.push({ identity, options, line: lineNumber });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      errors.push(withContext(error, `${source}:${lineNumber}`));
    }
  }
  return { clients, errors };
}

/** Reads and parses a file; a file that cannot be read (missing included) is a ConfigError(Config). */
export function loadAuthorizedClients(path: string): AuthorizedClientsFile {
  return parseAuthorizedClients(readTrustedFile(path, 'authorized clients'), path);
}

/** Lookup of authorized clients by key. When a key appears twice the first entry wins. */
export class AuthorizedClients {
  private readonly byFingerprint = new Map<string, AuthorizedClient>();

  constructor(clients: AuthorizedClient[]) {
    for (const client of clients) {
      if (!this.byFingerprint.has(client.identity.fingerprint)) this.byFingerprint.set(client.identity.fingerprint, client);
    }
  }

  get size(): number {
    return this.byFingerprint.size;
  }

  findByFingerprint(fingerprint: string): AuthorizedClient | undefined {
    return this.byFingerprint.get(fingerprint);
  }

  find(identity: PublicIdentity): AuthorizedClient | undefined {
    const client = this.byFingerprint.get(identity.fingerprint);
    return client !== undefined && client.identity.blob.equals(identity.blob) ? client : undefined;
  }
}
