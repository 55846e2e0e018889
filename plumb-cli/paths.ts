// Where plumb keeps its files: $NETPLUMB_HOME, or ~/.netplumb; identity, known_hosts, hosts and config live there.
// Also reads a machine argument (alias, host, host:port, [v6]:port) and the hosts alias file; host-config.ts adds the
// config file's settings and the command line's options to that and gives the address to connect to.

import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { BadConfigError, UsageError } from '../protocol/errors.js';

export interface ClientPaths {
  home: string;
  identity: string;
  knownHosts: string;
  hosts: string;
  /** Per-host settings (host-config.ts). */
  config: string;
}

export function clientPaths(env: NodeJS.ProcessEnv = process.env): ClientPaths {
  const home = env['NETPLUMB_HOME'] ?? join(homedir(), '.netplumb');
  return { home, identity: join(home, 'identity'), knownHosts: join(home, 'known_hosts'), hosts: join(home, 'hosts'), config: join(home, 'config') };
}

export interface Target {
  /** What the user typed (the alias, if one was used): known_hosts pins keys under the resolved host. */
  name: string;
  host: string;
  port: number;
}

/** host, host:port, [v6] or [v6]:port. */
export function parseHostPort(value: string, defaultPort: number): { host: string; port: number } {
  const { host, port } = splitHostPort(value);
  return { host, port: port ?? defaultPort };
}

/** host, host:port, [v6] or [v6]:port; the port is undefined when none is written. */
export function splitHostPort(value: string): { host: string; port: number | undefined } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined) {
    // A bare IPv6 address without brackets has no port.
    if (/^[0-9a-fA-F:]+$/.test(value) && value.includes(':')) return { host: value, port: undefined };
    throw new UsageError(`bad machine ${JSON.stringify(value)}: expected host, host:port or [address]:port`);
  }
  const port = match[3] === undefined ? undefined : Number(match[3]);
  if (port !== undefined && (port < 1 || port > 65535)) throw new UsageError(`bad port in ${value}`);
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

/** A machine argument read against the hosts alias file, before the config file and the options are applied. */
export interface MachineArgument {
  /** The name the config file's Host patterns are matched against: the alias, or the host without a typed port. */
  name: string;
  host: string;
  /** The port typed after the host or alias, if any. */
  port: number | undefined;
  /** Where the hosts alias file points the name, if it is an alias. */
  alias: { host: string; port: number | undefined } | undefined;
}

/** Reads the machine argument: an alias, `alias:port` (the alias's host at that port), or host[:port]. */
export function readMachineArgument(machine: string, aliases: ReadonlyMap<string, string>): MachineArgument {
  const whole = aliases.get(machine);
  if (whole !== undefined) return { name: machine, host: machine, port: undefined, alias: splitHostPort(whole) };
  const typed = splitHostPort(machine);
  const aliasOfHost = aliases.get(typed.host);
  return { name: typed.host, host: typed.host, port: typed.port, alias: aliasOfHost === undefined ? undefined : splitHostPort(aliasOfHost) };
}
