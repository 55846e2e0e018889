#!/usr/bin/env -S node --initial-old-space-size=64
// netplumbd: parses the command line and the config file, starts the daemon, and turns signals into shutdown.
// All behaviour lives in server.ts; this file only wires parts together and owns the process exit status.

import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { Duplex } from 'node:stream';
import { buildConfig, ConfigFileSettings, DEFAULT_CONFIG_FILE, readConfigFile, SETTING_NAMES, settingHelp, settingSource } from './config.js';
import { configurationProblems } from './check-config.js';
import { createLogger, logLine, stderrIsJournal } from './log.js';
import { Daemon } from './server.js';
import { ServiceNotifier, takeNotifyTarget } from './service-notify.js';
import { takeListenActivation } from './socket-activation.js';
import { ErrorCode, asNetplumbError, type NetplumbError } from '../protocol/errors.js';
import { normaliseLongOptions, singleDashHelp, singleDashText } from '../bridges/long-options.js';

const VALUE_OPTIONS = ['config', ...SETTING_NAMES];
const FLAGS = ['foreground', 'stdio', 'check-config'];

function parseArguments(argv: readonly string[]): { settings: Map<string, string>; configFile: string | undefined; flags: { stdio: boolean; foreground: boolean }; checkConfig: boolean } {
  const program = new Command('netplumbd')
    .description('netplumb daemon: runs commands for authorized clients over the TAP1 protocol')
    .option('--config <file>', `config file (default: ${DEFAULT_CONFIG_FILE}, when it exists)`)
    .option('--foreground', 'stay in the foreground (the daemon never forks; accepted for compatibility)')
    .option('--stdio', 'serve one connection on stdin/stdout')
    .option('--check-config', 'check the settings, host key, authorized clients and gluepots, say each problem with its file and line, and exit (0: none)')
    .configureHelp(singleDashHelp())
    .addHelpText('after', '\nEach setting may also be written in the config file as "name value"; the command line wins.')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({
      // To a person, one plain line; to the journal, a line of the log's form with its priority, as every other.
      outputError: (text, write) => {
        const line = `netplumbd: ${singleDashText(text.replace(/^error: /, '').trim())} (${ErrorCode.Usage})`;
        write(stderrIsJournal() ? logLine('error', line, true) : `${line}\n`);
      },
    });
  const help = settingHelp();
  for (const name of SETTING_NAMES) {
    const setting = help.get(name);
    program.option(`--${name} <${setting?.value ?? 'value'}>`, `${setting?.description ?? ''} (default: ${setting?.default ?? 'none'})`);
  }
  program.parse(normaliseLongOptions(argv, { withValue: VALUE_OPTIONS, flags: FLAGS }), { from: 'user' });
  const options = program.opts<Record<string, string | boolean | undefined>>();
  const settings = new Map<string, string>();
  for (const name of SETTING_NAMES) {
    const key = name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
    const value = options[key];
    if (typeof value === 'string') settings.set(name, value);
  }
  const config = options['config'];
  return {
    settings,
    configFile: typeof config === 'string' ? config : undefined,
    flags: { stdio: options['stdio'] === true, foreground: options['foreground'] === true },
    checkConfig: options['checkConfig'] === true,
  };
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseArguments>;
  try {
    parsed = parseArguments(process.argv.slice(2));
  } catch (error) {
    const exitCode = (error as { exitCode?: number }).exitCode;
    return exitCode === 0 ? 0 : 2;
  }
  const configFile = parsed.configFile ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined);
  const journal = stderrIsJournal();
  if (parsed.checkConfig) {
    // Every problem, not the first only: the bad lines are kept out and the checks go on with the rest.
    const problems: NetplumbError[] = [];
    let fileSettings = new ConfigFileSettings();
    if (configFile !== undefined) {
      try {
        fileSettings = readConfigFile(configFile, problems);
      } catch (error) {
        problems.push(asNetplumbError(error));
      }
    }
    const config = buildConfig(fileSettings, parsed.settings, parsed.flags, problems);
    problems.push(...configurationProblems(config, (name) => settingSource(name, fileSettings, parsed.settings)));
    for (const problem of problems) process.stderr.write(logLine('error', `netplumbd: ${problem.message} (${problem.code})`, journal));
    return problems.length === 0 ? 0 : 1;
  }
  const config = buildConfig(configFile === undefined ? new Map() : readConfigFile(configFile), parsed.settings, parsed.flags);
  // Out of the environment before anything is started, so that no child inherits them. Under -stdio (Accept=yes)
  // systemd passes the connection as fd 3 as well as on stdin: it is served on stdin, and nothing is reported.
  const activation = takeListenActivation();
  const notifyTarget = takeNotifyTarget();
  const log = createLogger(config.logLevel, undefined, journal);
  const notifier = new ServiceNotifier(config.stdio ? undefined : notifyTarget, log);
  const daemon = new Daemon(config, log);
  let listeningOn = '';
  const stopped = new Promise<void>((resolve) => {
    const stop = (): void => {
      notifier.stopping('shutting down');
      void daemon.shutdown().then(resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  process.on('SIGHUP', () => {
    const reported = notifier.reloading('reloading the authorized clients and gluepots');
    const taken = daemon.reload();
    if (reported) notifier.reloaded(taken ? `listening on ${listeningOn}` : `listening on ${listeningOn}; the last reload was refused (see the log)`);
  });
  if (config.stdio) {
    const transport = Duplex.from({ readable: process.stdin, writable: process.stdout });
    const failure = await daemon.serveOne(transport, 'stdio');
    return failure === undefined ? 0 : 1;
  }
  const configured = `${config.listen.host}:${config.listen.port}`;
  if (activation.kind === 'not-ours') log.info('LISTEN_FDS ignored: it is for another process', { listenPid: activation.listenPid, listen: configured });
  if (activation.kind === 'socket') log.info('listening on the socket systemd passed: the listen setting is not used', { fd: activation.fd, listen: configured });
  const address = await daemon.listen(activation.kind === 'socket' ? activation.fd : undefined);
  listeningOn = address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
  // Whoever started the daemon waits for this line, whatever the log level: in the form of every other line.
  process.stderr.write(logLine('info', `listening on ${listeningOn}`, journal));
  notifier.ready(`listening on ${listeningOn}`);
  await stopped;
  // The daemon is gone for systemd only once it has been told so (each report is bounded in time).
  await notifier.settled();
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const failure = asNetplumbError(error);
    process.stderr.write(logLine('error', `netplumbd: ${failure.message} (${failure.code})`, stderrIsJournal()));
    process.exitCode = 1;
  },
);
