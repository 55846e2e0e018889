// Where plumb keeps its files: $NETPLUMB_HOME, or ~/.netplumb; identity, known_hosts and hosts live there.
// Also resolves a machine argument (alias, host, host:port, [v6]:port) to the address to connect to.

import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { BadConfigError, UsageError } from '../protocol/errors.js';
import { DEFAULT_PORT } from '../protocol/wire.js';

export interface ClientPaths {
  home: string;
  identity: string;
  knownHosts: string;
  hosts: string;
}

export function clientPaths(env: NodeJS.ProcessEnv = process.env): ClientPaths {
  const home = env['NETPLUMB_HOME'] ?? join(homedir(), '.netplumb');
  return { home, identity: join(home, 'identity'), knownHosts: join(home, 'known_hosts'), hosts: join(home, 'hosts') };
}

export interface Target {
  /** What the user typed (the alias, if one was used): known_hosts pins keys under the resolved host. */
  name: string;
  host: string;
  port: number;
}

/** host, host:port, [v6] or [v6]:port. */
export function parseHostPort(value: string, defaultPort: number): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined) {
    // A bare IPv6 address without brackets has no port.
    if (/^[0-9a-fA-F:]+$/.test(value) && value.includes(':')) return { host: value, port: defaultPort };
    throw new UsageError(`bad machine ${JSON.stringify(value)}: expected host, host:port or [address]:port`);
  }
  const port = match[3] === undefined ? defaultPort : Number(match[3]);
  if (port < 1 || port > 65535) throw new UsageError(`bad port in ${value}`);
  return { host, port };
}

/** Reads `alias host[:port]` lines; # starts a comment. A missing file is no aliases. */
export function readHostAliases(file: string): Map<string, string> {
  const aliases = new Map<string, string>();
  if (!existsSync(file)) return aliases;
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((raw, index) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const words = line.split(/\s+/);
      if (words.length !== 2) throw new BadConfigError(`${file}:${index + 1}: expected "alias host[:port]"`);
      aliases.set(words[0] as string, words[1] as string);
    });
  return aliases;
}

/**
 * Resolves the machine argument: an alias, `alias:port` (the alias's host at that port), or host[:port]. An
 * explicit -port wins over any port in the argument or alias.
 */
export function resolveTarget(machine: string, aliasesFile: string, portOverride: number | undefined): Target {
  const aliases = readHostAliases(aliasesFile);
  const alias = aliases.get(machine);
  if (alias !== undefined) {
    const { host, port } = parseHostPort(alias, DEFAULT_PORT);
    return { name: machine, host, port: portOverride ?? port };
  }
  const typed = parseHostPort(machine, DEFAULT_PORT);
  const aliasOfHost = aliases.get(typed.host);
  const host = aliasOfHost === undefined ? typed.host : parseHostPort(aliasOfHost, DEFAULT_PORT).host;
  return { name: machine, host, port: portOverride ?? typed.port };
}
