// netplumbd's configuration: defaults, the config file (`name value` lines, the same names as the long options)
// and command-line overrides, validated once into a DaemonConfig. Nothing else in the daemon reads options.

import { isAbsolute, normalize } from 'node:path';
import { asNetplumbError, BadConfigError, withContext, type NetplumbError } from '../protocol/errors.js';
import { USER_NAME_PATTERN } from '../protocol/session.js';
import { MAX_TIMER_MS, resolveLimits, type ResolvedLimits } from '../protocol/limits.js';
import { DEFAULT_PORT, type Limits } from '../protocol/wire.js';
import { DEFAULT_SPOOL_DIR } from '../recipes/check.js';
import { DEFAULT_ADMISSION, parseExemptList, type AdmissionSettings } from './admission.js';
import { readTrustedFile } from './trusted-file.js';

export const DEFAULT_CONFIG_FILE = '/etc/netplumb/netplumbd.conf';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface DaemonConfig {
  listen: ListenAddress;
  hostKeyFile: string;
  clientsFile: string;
  /** Directory of gluepot files, one per gluepot, named as authorized-clients lines name them. */
  gluepotDir: string;
  spoolDir: string;
  stdio: boolean;
  foreground: boolean;
  limits: ResolvedLimits;
  /** After SIGTERM, how long running sessions may go on before their processes are ended. */
  shutdownGraceMs: number;
  /** After a session's processes got SIGTERM, how long until SIGKILL. */
  killGraceMs: number;
  logLevel: 'error' | 'warn' | 'info' | 'debug';
  /** Names of variables a client may export (`-export`); a trailing `*` matches any rest. Others are refused. */
  acceptEnv: string[];
  /**
   * The account commands run as when the client's line names none (`run-as`). Unset: the daemon's own account,
   * except that a daemon running as root refuses to start without it (root only when configured explicitly).
   */
  runAs: string | undefined;
  /** Where minted one-time keys and spent ones (until they expire) are kept, one file each. */
  oneTimeKeyDir: string;
  /** Admission of connections not yet authenticated; the pool's size is limits.maxUnauthenticatedConnections. */
  admission: AdmissionConfig;
}

export type AdmissionConfig = Omit<AdmissionSettings, 'maxPending'>;

export const DEFAULT_CONFIG: Readonly<DaemonConfig> = Object.freeze({
  listen: { host: '0.0.0.0', port: DEFAULT_PORT },
  hostKeyFile: '/etc/netplumb/host_key',
  clientsFile: '/etc/netplumb/authorized_clients',
  gluepotDir: '/etc/netplumb/gluepots',
  spoolDir: DEFAULT_SPOOL_DIR,
  stdio: false,
  foreground: false,
  limits: resolveLimits(),
  shutdownGraceMs: 10_000,
  killGraceMs: 2_000,
  logLevel: 'info',
  acceptEnv: ['LANG', 'LC_*', 'TZ'],
  runAs: undefined,
  oneTimeKeyDir: '/var/lib/netplumbd/one-time-keys',
  admission: admissionDefaults(),
});

function admissionDefaults(): AdmissionConfig {
  const { maxPending: _pool, ...rest } = DEFAULT_ADMISSION;
  return { ...rest, exempt: [...rest.exempt] };
}

/** Settings as strings, by option name, from the config file or the command line. */
export type RawSettings = ReadonlyMap<string, string>;

/** Limit names as written in the config file and on the command line, with the Limits field each sets. */
export const LIMIT_SETTINGS: Readonly<Record<string, keyof Limits>> = {
  'max-packet-bytes': 'maxPacketBytes',
  'max-data-payload-bytes': 'maxDataPayloadBytes',
  'handshake-timeout-ms': 'handshakeTimeoutMs',
  'max-connections': 'maxConnections',
  'max-unauthenticated': 'maxUnauthenticatedConnections',
  'max-streams': 'maxStreamsPerConnection',
  'initial-window-bytes': 'initialWindowBytes',
  'max-window-bytes': 'maxWindowBytes',
  'idle-timeout-ms': 'idleTimeoutMs',
  'keepalive-interval-ms': 'keepaliveIntervalMs',
};

/** Admission settings that are numbers of ms or connections, with the AdmissionConfig field each sets. */
export const ADMISSION_SETTINGS: Readonly<Record<string, Exclude<keyof AdmissionConfig, 'exempt'>>> = {
  'max-unauthenticated-per-source': 'maxPendingPerSource',
  'hello-timeout-ms': 'helloTimeoutMs',
  'penalty-ms': 'penaltyMs',
  'penalty-threshold-ms': 'penaltyThresholdMs',
  'max-penalty-ms': 'maxPenaltyMs',
};

/** Every setting name the config file accepts. */
export const SETTING_NAMES: readonly string[] = [
  'listen',
  'hostkey',
  'clients',
  'gluepots',
  'spool',
  'shutdown-grace-ms',
  'kill-grace-ms',
  'log-level',
  'accept-env',
  'run-as',
  'one-time-keys',
  ...Object.keys(LIMIT_SETTINGS),
  ...Object.keys(ADMISSION_SETTINGS),
  'penalty-exempt',
];

/** How --help shows a setting: the word for its value, what it does, and its default as the config file writes it. */
export interface SettingHelp {
  value: string;
  description: string;
  default: string;
}

/** Every setting's help, in SETTING_NAMES order; the defaults come from DEFAULT_CONFIG, so they cannot drift. */
export function settingHelp(): Map<string, SettingHelp> {
  const d = DEFAULT_CONFIG;
  const { limits, admission } = d;
  const entries: Array<[string, string, string, string]> = [
    ['listen', 'host:port', 'address to listen on (port 0 picks a free port)', `${d.listen.host}:${d.listen.port}`],
    ['hostkey', 'file', 'host private key', d.hostKeyFile],
    ['clients', 'file', 'authorized clients file', d.clientsFile],
    ['gluepots', 'dir', 'directory of gluepot files: the commands each client may run', d.gluepotDir],
    ['spool', 'dir', 'spool directory: where recipes run and their relative files and named pipes live', d.spoolDir],
    ['shutdown-grace-ms', 'ms', 'after SIGTERM, how long running sessions may go on before their processes are ended', String(d.shutdownGraceMs)],
    ['kill-grace-ms', 'ms', "after a session's processes got SIGTERM, how long until SIGKILL", String(d.killGraceMs)],
    ['log-level', 'level', 'error, warn, info or debug', d.logLevel],
    ['accept-env', 'names', 'variables a client may export, comma-separated; a trailing * matches any rest', d.acceptEnv.join(',')],
    ['run-as', 'user', "account commands run as when the client's line names none; required when the daemon runs as root", "the daemon's own account"],
    ['one-time-keys', 'dir', 'where minted one-time keys are kept', d.oneTimeKeyDir],
    ['max-packet-bytes', 'bytes', 'largest packet accepted, checked from its header', String(limits.maxPacketBytes)],
    ['max-data-payload-bytes', 'bytes', 'largest stream payload sent in one packet', String(limits.maxDataPayloadBytes)],
    ['handshake-timeout-ms', 'ms', 'time from accept until the key exchange has completed', String(limits.handshakeTimeoutMs)],
    ['max-connections', 'count', 'connections served at once; more are closed at accept', String(limits.maxConnections)],
    ['max-unauthenticated', 'count', 'connections still in the handshake at once; more are closed at accept', String(limits.maxUnauthenticatedConnections)],
    ['max-streams', 'count', 'streams open at once on one connection', String(limits.maxStreamsPerConnection)],
    ['initial-window-bytes', 'bytes', 'receive window each stream starts with, each way', String(limits.initialWindowBytes)],
    ['max-window-bytes', 'bytes', "most a stream's receive window grows to on long round trips", String(limits.maxWindowBytes)],
    ['idle-timeout-ms', 'ms', 'a connection from which nothing came for this long is closed', String(limits.idleTimeoutMs)],
    ['keepalive-interval-ms', 'ms', 'a side that sent nothing for this long sends a Ping', String(limits.keepaliveIntervalMs)],
    ['max-unauthenticated-per-source', 'count', 'of those in the handshake, at most this many from one source outside penalty-exempt', String(admission.maxPendingPerSource)],
    ['hello-timeout-ms', 'ms', "time from accept until the client's Hello has come", String(admission.helloTimeoutMs)],
    ['penalty-ms', 'ms', 'penalty a source earns by each failed handshake (0: none)', String(admission.penaltyMs)],
    ['penalty-threshold-ms', 'ms', 'a source is refused at accept while its penalty exceeds this', String(admission.penaltyThresholdMs)],
    ['max-penalty-ms', 'ms', "a source's penalty never grows beyond this", String(admission.maxPenaltyMs)],
    ['penalty-exempt', 'cidrs', 'networks with no per-source cap and no penalty, comma-separated', admission.exempt.join(',')],
  ];
  return new Map(entries.map(([name, value, description, fallback]) => [name, { value, description, default: fallback }]));
}

/** A config file's settings, each with the `file:line` it was read from, so a bad value is reported there. */
export class ConfigFileSettings extends Map<string, string> {
  readonly where = new Map<string, string>();
}

/**
 * Parses `name value` lines; `#` starts a comment line. Unknown names are errors (a typo must not pass): the first
 * is thrown, or, given `problems`, each goes there and the good lines are kept (netplumbd -check-config).
 */
export function parseConfigFile(text: string, source: string, problems?: NetplumbError[]): ConfigFileSettings {
  const settings = new ConfigFileSettings();
  const bad = (error: NetplumbError): void => {
    if (problems === undefined) throw error;
    problems.push(error);
  };
  text.split('\n').forEach((rawLine, index) => {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) return;
    const match = /^([a-z][a-z0-9-]*)\s+(.+)$/.exec(line);
    if (match === null) return bad(new BadConfigError(`${source}:${index + 1}: expected "name value"`));
    const [, name, value] = match as unknown as [string, string, string];
    if (!SETTING_NAMES.includes(name)) return bad(new BadConfigError(`${source}:${index + 1}: unknown setting ${name}`));
    settings.set(name, value.trim());
    settings.where.set(name, `${source}:${index + 1}`);
  });
  return settings;
}

export function readConfigFile(path: string, problems?: NetplumbError[]): ConfigFileSettings {
  return parseConfigFile(readTrustedFile(path, 'config file'), path, problems);
}

/** HOST:PORT, [v6]:PORT or HOST alone (default port). Port 0 asks for a free port. */
export function parseListenAddress(value: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(value);
  if (match === null) throw new BadConfigError(`bad listen address ${value}: expected HOST:PORT`);
  const host = match[1] ?? match[2] ?? '';
  const port = match[3] === undefined ? DEFAULT_PORT : Number(match[3]);
  if (port > 65535) throw new BadConfigError(`bad port in ${value}`);
  return { host, port };
}

function positiveInt(name: string, value: string): number {
  if (!/^[1-9][0-9]{0,12}$/.test(value)) throw new BadConfigError(`${name} must be a positive integer, got ${value}`);
  return Number(value);
}

/** Where a setting was written: the config file's line, or the command line's option. */
export function settingSource(name: string, fileSettings: RawSettings, cliSettings: RawSettings): string {
  return cliSettings.has(name) ? `-${name}` : fileSettings instanceof ConfigFileSettings ? (fileSettings.where.get(name) ?? name) : name;
}

/**
 * Builds the validated configuration: defaults, then file settings, then command-line settings. A bad value is
 * thrown, or, given `problems`, each goes there and its default stays (netplumbd -check-config).
 */
export function buildConfig(fileSettings: RawSettings, cliSettings: RawSettings, flags: { stdio: boolean; foreground: boolean }, problems?: NetplumbError[]): DaemonConfig {
  const settings = new Map([...fileSettings, ...cliSettings]);
  const config: DaemonConfig = { ...DEFAULT_CONFIG, admission: admissionDefaults(), ...flags };
  const limits: Partial<Limits> = {};
  const attempt = (check: () => void, where?: string): void => {
    try {
      check();
    } catch (error) {
      const problem = where === undefined ? asNetplumbError(error) : withContext(asNetplumbError(error), where);
      if (problems === undefined) throw problem;
      problems.push(problem);
    }
  };
  for (const [name, value] of settings) attempt(() => applySetting(config, limits, name, value), settingSource(name, fileSettings, cliSettings));
  // These name the settings they concern: they come from several lines at once.
  attempt(() => {
    config.limits = resolveLimits(limits);
  });
  attempt(() => validateAdmission(config.admission));
  return config;
}

/** One setting's value, checked, into the config (or, for a limit, into `limits`, resolved once all are in). */
function applySetting(config: DaemonConfig, limits: Partial<Limits>, name: string, value: string): void {
  switch (name) {
    case 'listen':
      config.listen = parseListenAddress(value);
      break;
    case 'hostkey':
      config.hostKeyFile = value;
      break;
    case 'clients':
      config.clientsFile = value;
      break;
    case 'gluepots':
      config.gluepotDir = value;
      break;
    case 'spool':
      if (!isAbsolute(value)) throw new BadConfigError(`spool must be an absolute path, got ${value}`);
      config.spoolDir = normalize(value);
      break;
    case 'shutdown-grace-ms':
      config.shutdownGraceMs = positiveInt(name, value);
      break;
    case 'kill-grace-ms':
      config.killGraceMs = positiveInt(name, value);
      break;
    case 'accept-env':
      config.acceptEnv = parseAcceptEnv(value);
      break;
    case 'run-as':
      if (!USER_NAME_PATTERN.test(value)) throw new BadConfigError(`run-as: ${value} is not a user name`);
      config.runAs = value;
      break;
    case 'one-time-keys':
      if (!isAbsolute(value)) throw new BadConfigError(`one-time-keys must be an absolute path, got ${value}`);
      config.oneTimeKeyDir = normalize(value);
      break;
    case 'log-level':
      if (value !== 'error' && value !== 'warn' && value !== 'info' && value !== 'debug') {
        throw new BadConfigError(`log-level must be error, warn, info or debug`);
      }
      config.logLevel = value;
      break;
    case 'penalty-exempt':
      config.admission.exempt = parseExemptList(value);
      break;
    case 'penalty-ms':
      // 0 turns penalties off.
      config.admission.penaltyMs = value === '0' ? 0 : positiveInt(name, value);
      break;
    default: {
      const admission = ADMISSION_SETTINGS[name];
      if (admission !== undefined) {
        config.admission[admission] = positiveInt(name, value);
        break;
      }
      const limit = LIMIT_SETTINGS[name];
      if (limit === undefined) throw new BadConfigError(`unknown setting ${name}`);
      limits[limit] = positiveInt(name, value);
    }
  }
}

/**
 * Rejects admission settings that cannot work together. A per-source cap above max-unauthenticated, or a hello
 * deadline beyond handshake-timeout-ms, is not an error: the smaller one governs (see admissionSettings).
 */
export function validateAdmission(admission: AdmissionConfig): void {
  if (admission.penaltyThresholdMs > admission.maxPenaltyMs) throw new BadConfigError('penalty-threshold-ms cannot exceed max-penalty-ms');
  for (const [name, ms] of [['hello-timeout-ms', admission.helloTimeoutMs], ['max-penalty-ms', admission.maxPenaltyMs]] as const) {
    if (ms > MAX_TIMER_MS) throw new BadConfigError(`${name} must be at most ${MAX_TIMER_MS}`);
  }
}

/** What admission control works with: the pool of max-unauthenticated, no share or deadline beyond the whole's. */
export function admissionSettings(config: Pick<DaemonConfig, 'admission' | 'limits'>): AdmissionSettings {
  const maxPending = config.limits.maxUnauthenticatedConnections;
  return {
    ...config.admission,
    maxPending,
    maxPendingPerSource: Math.min(config.admission.maxPendingPerSource, maxPending),
    helloTimeoutMs: Math.min(config.admission.helloTimeoutMs, config.limits.handshakeTimeoutMs),
  };
}

/** `NAME,PREFIX*,...` (commas or spaces); `none` accepts nothing. */
export function parseAcceptEnv(value: string): string[] {
  const patterns = value.split(/[\s,]+/).filter((word) => word !== '');
  if (patterns.length === 1 && patterns[0] === 'none') return [];
  for (const pattern of patterns) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*\*?$|^\*$/.test(pattern)) throw new BadConfigError(`accept-env: bad name or pattern ${pattern}`);
  }
  return patterns;
}

/** True when a variable name is matched by one of the accept-env patterns. */
export function envAccepted(name: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern));
}
