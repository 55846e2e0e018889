#!/usr/bin/env node
// plumb: parses the command line, connects to the machine's netplumbd and runs the command there. This file only
// reads arguments, wires the parts together and turns the outcome into the exit status and one line on stderr.

import { Command, CommanderError } from 'commander';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadPrivateIdentity } from '../bridges/key-files.js';
import { formatPublicKeyLine } from '../protocol/keys.js';
import { ErrorCode, NetplumbError, asNetplumbError } from '../protocol/errors.js';
import { normaliseLongOptions } from '../bridges/long-options.js';
import { ENV_NAME_PATTERN, type MintedKey } from '../protocol/session.js';
import { DEFAULT_LIMITS, StartKind } from '../protocol/wire.js';
import { checkRecipe, DEFAULT_SPOOL_DIR } from '../recipes/check.js';
import { RecipeError } from '../recipes/errors.js';
import { formatPlan, type RecipePlan } from '../recipes/plan.js';
import type { SecureConnection } from '../protocol/connection.js';
import { connectToDaemon } from './client.js';
import { ClientEndpoints, parseSocketOption, remoteEndpoints, type EndpointOptions } from './endpoints.js';
import { createKeyFile, formatKeyFile, loadKeyFile, mintOneTimeKey, parseLifetime } from './one-time-key.js';
import { clientPaths, resolveTarget } from './paths.js';
import { RecipeReport } from './recipe-report.js';
import {
  EXIT_COMMAND_NOT_EXECUTABLE,
  EXIT_COMMAND_NOT_FOUND,
  EXIT_PLUMB_FAILURE,
  EXIT_RECIPE_REFUSED,
  runRemoteCommand,
  type LocalTerminal,
  type RemoteJob,
} from './run.js';

interface PlumbArguments {
  machine: string | undefined;
  command: string[];
  recipe: string | undefined;
  check: boolean;
  /** true: the JSON report on stderr; a string: into that file. */
  json: boolean | string;
  spool: string | undefined;
  tty: boolean;
  /** Variable names from every -export, in order, without repeats. */
  exports: string[];
  endpoints: EndpointOptions;
  identity: string | undefined;
  knownHosts: string | undefined;
  acceptNew: boolean;
  port: number | undefined;
  verbose: boolean;
  /** -user: the account on the machine. */
  user: string | undefined;
  /** -mint-key: write a one-time key for the command to this file instead of running it. */
  mintKey: string | undefined;
  /** -expires: the minted key's lifetime, in seconds. */
  lifetimeSeconds: number;
  /** -one-time-key: authenticate with this key file (and the host key it names). */
  oneTimeKey: string | undefined;
}

/** How long a minted key stays good unless -expires says otherwise. */
const DEFAULT_KEY_LIFETIME_SECONDS = 3600;

const VALUE_OPTIONS = ['identity', 'known-hosts', 'port', 'recipe', 'spool', 'export', 'infifo', 'outfifo', 'socket', 'local-socket', 'user', 'mint-key', 'expires', 'one-time-key'];
const FLAGS = ['accept-new', 'verbose', 'check'];
/** `-json` alone means the report goes to stderr, as `-json=-` says. */
const OPTIONAL_VALUE_OPTIONS = { json: '-' };

function parseArguments(argv: readonly string[]): PlumbArguments {
  const program = new Command('plumb')
    .usage('[options] machine[:port] command [args...]\n       plumb [options] machine[:port] -recipe=FILE\n       plumb -check -recipe=FILE')
    .description('Run a command or a recipe on another machine through its netplumbd, encrypted and mutually authenticated.')
    .option('-i, --identity <file>', 'private key to authenticate with (default $NETPLUMB_HOME/identity)')
    .option('--known-hosts <file>', 'pinned daemon host keys (default $NETPLUMB_HOME/known_hosts)')
    .option('--accept-new', 'record the host key of a machine not seen before, then connect')
    .option('-p, --port <port>', 'daemon port')
    .option('--recipe <file>', 'run the recipe in FILE on the machine instead of a command')
    .option('--check', 'check the recipe locally and print its plan; nothing runs and no machine is needed')
    .option('--spool <dir>', `with --check: the spool directory names are resolved against (default ${DEFAULT_SPOOL_DIR})`)
    .option('--json [file]', "with --recipe: write a JSON report of every command's end to FILE (default or -: stderr)")
    .option('--export <names>', 'set these variables of this environment for the remote command(s) (NAME[,NAME...]; repeatable)', collect, [])
    .option('--infifo <path>', 'named pipe the remote command reads; filled with what is written into PATH here (repeatable)', collect, [])
    .option('--outfifo <path>', 'named pipe the remote command writes; read here from PATH (repeatable)', collect, [])
    .option('--socket <remote[:local]>', "Unix socket the daemon listens on; connections reach the service on the local path (repeatable)", collect, [])
    .option('--local-socket <local[:remote]>', "Unix socket plumb listens on; connections reach the service on the daemon's host (repeatable)", collect, [])
    .option('--user <name>', "run as this account on the machine (the authorized-clients line must allow it)")
    .option('--mint-key <file>', 'controller: write a one-time key for the command (or recipe) to FILE instead of running it')
    .option('--expires <lifetime>', `with --mint-key: how long the key stays good (seconds, or with m, h, d; default ${DEFAULT_KEY_LIFETIME_SECONDS / 60}m)`)
    .option('--one-time-key <file>', "authenticate with a one-time key file (and the daemon's host key it names), once")
    .option('-t, --tty', 'run the command on a pseudo-terminal (without a command: a login shell), this terminal in raw mode')
    .option('-v, --verbose', 'say what plumb does, on stderr')
    .argument('[machine]', 'host name, address, or alias from $NETPLUMB_HOME/hosts')
    .argument('[command...]', 'the command and its arguments, run as an argv (no shell)')
    .passThroughOptions()
    .exitOverride()
    .configureOutput({
      writeErr: (text) => process.stderr.write(text),
      // One line in plumb's own format, like every other failure it reports.
      outputError: (text, write) => write(`plumb: ${text.replace(/^error: /, '').trim()} (${ErrorCode.Usage})\n`),
    });
  const normalised = normaliseLongOptions(argv, { withValue: VALUE_OPTIONS, flags: FLAGS, optionalValue: OPTIONAL_VALUE_OPTIONS, shortWithValue: ['i', 'p'] }, 1);
  program.parse(normalised, { from: 'user' });
  const options = program.opts<{
    identity?: string;
    knownHosts?: string;
    acceptNew?: boolean;
    port?: string;
    recipe?: string;
    check?: boolean;
    spool?: string;
    json?: boolean | string;
    export: string[];
    infifo: string[];
    outfifo: string[];
    socket: string[];
    localSocket: string[];
    tty?: boolean;
    verbose?: boolean;
    user?: string;
    mintKey?: string;
    expires?: string;
    oneTimeKey?: string;
  }>();
  const [machine, command] = program.processedArgs as [string | undefined, string[]];
  let port: number | undefined;
  if (options.port !== undefined) {
    if (!/^[1-9][0-9]{0,4}$/.test(options.port) || Number(options.port) > 65535) {
      throw new NetplumbError(ErrorCode.Usage, `bad port ${options.port}`);
    }
    port = Number(options.port);
  }
  const check = options.check === true;
  if (check && options.recipe === undefined) throw new NetplumbError(ErrorCode.Usage, '-check needs -recipe=FILE');
  if (!check && machine === undefined) throw new NetplumbError(ErrorCode.Usage, 'missing machine');
  if (options.recipe !== undefined && command.length > 0) throw new NetplumbError(ErrorCode.Usage, '-recipe=FILE runs the recipe; no command may follow the machine');
  // Without a command, on a terminal at both ends, plumb starts a login shell there (as ssh does).
  const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true;
  if (!check && options.recipe === undefined && command.length === 0 && !interactive) throw new NetplumbError(ErrorCode.Usage, 'missing command');
  const tty = options.tty === true || (options.recipe === undefined && !check && command.length === 0);
  if (tty && options.recipe !== undefined) throw new NetplumbError(ErrorCode.Usage, '-t runs one command on a terminal; a recipe has no terminal');
  if (options.json !== undefined && options.recipe === undefined) throw new NetplumbError(ErrorCode.Usage, '-json reports on a recipe: use it with -recipe=FILE');
  if (options.spool !== undefined && !check) throw new NetplumbError(ErrorCode.Usage, "-spool is for -check; a daemon uses its own spool directory");
  if (options.mintKey !== undefined) {
    if (tty || check) throw new NetplumbError(ErrorCode.Usage, '-mint-key binds a key to a command or recipe run without a terminal; -t and -check do not go with it');
    if (options.oneTimeKey !== undefined) throw new NetplumbError(ErrorCode.Usage, '-mint-key is for a controller; it cannot use a one-time key');
  }
  if ((options.mintKey !== undefined || options.oneTimeKey !== undefined) && options.export.length > 0) {
    throw new NetplumbError(ErrorCode.Usage, "a one-time key's command takes no exported variables: -export does not go with -mint-key or -one-time-key");
  }
  if (options.expires !== undefined && options.mintKey === undefined) throw new NetplumbError(ErrorCode.Usage, '-expires goes with -mint-key');
  if (options.oneTimeKey !== undefined && options.identity !== undefined) throw new NetplumbError(ErrorCode.Usage, '-one-time-key is the identity: -identity does not go with it');
  return {
    machine,
    command,
    recipe: options.recipe,
    check,
    json: options.json === undefined ? false : options.json === true || options.json === '-' ? true : options.json,
    spool: options.spool,
    tty,
    exports: exportedNames(options.export),
    endpoints: {
      inFifos: options.infifo,
      outFifos: options.outfifo,
      sockets: options.socket.map((value) => parseSocketOption(value, 'socket')),
      localSockets: options.localSocket.map((value) => parseSocketOption(value, 'local-socket')),
    },
    identity: options.identity,
    knownHosts: options.knownHosts,
    acceptNew: options.acceptNew === true,
    port,
    verbose: options.verbose === true,
    user: options.user,
    mintKey: options.mintKey,
    lifetimeSeconds: options.expires === undefined ? DEFAULT_KEY_LIFETIME_SECONDS : parseLifetime(options.expires),
    oneTimeKey: options.oneTimeKey,
  };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The names of all -export options, checked, in order, each once. */
function exportedNames(values: readonly string[]): string[] {
  const names: string[] = [];
  for (const name of values.flatMap((value) => value.split(','))) {
    if (!ENV_NAME_PATTERN.test(name)) throw new NetplumbError(ErrorCode.Usage, `-export: ${JSON.stringify(name)} is not a variable name`);
    if (!names.includes(name)) names.push(name);
  }
  return names;
}

/** The exported variables with their values here; a variable that is not set is an error, never left out silently. */
function exportedEnv(names: readonly string[]): [string, string][] {
  return names.map((name) => {
    const value = process.env[name];
    if (value === undefined) throw new NetplumbError(ErrorCode.Usage, `-export: ${name} is not set in this environment`);
    return [name, value];
  });
}

/** Reads and checks a recipe file; the daemon checks it again, but a refusal here needs no connection. */
function loadRecipe(file: string, spoolDir: string): { text: string; plan: RecipePlan } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new NetplumbError(ErrorCode.Usage, `cannot read recipe ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  // Checked as bytes, so that what is not UTF-8 is reported with its place; once it passed, the text is exact.
  const plan = checkRecipe(bytes, { sourceName: file, spoolDir });
  return { text: bytes.toString('utf8'), plan };
}

async function main(): Promise<number> {
  let args: PlumbArguments;
  try {
    args = parseArguments(process.argv.slice(2));
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_PLUMB_FAILURE;
    throw error;
  }
  let job: RemoteJob = { kind: StartKind.Exec, argv: args.command, ...(args.user === undefined ? {} : { user: args.user }) };
  const env = exportedEnv(args.exports);
  let report: RecipeReport | undefined;
  if (args.recipe !== undefined) {
    const { text, plan } = loadRecipe(args.recipe, args.spool ?? DEFAULT_SPOOL_DIR);
    if (args.check) {
      process.stdout.write(formatPlan(plan));
      return 0;
    }
    job = { kind: StartKind.Recipe, text, source: args.recipe, ...(args.user === undefined ? {} : { user: args.user }) };
    report = new RecipeReport(args.recipe, args.machine as string, plan);
  }
  if (args.mintKey !== undefined) return mintKey(args, args.mintKey, job);
  // A local named pipe or socket that fails while the command runs is said at once; the command goes on.
  const endpoints = await ClientEndpoints.prepare(args.endpoints, (error) => process.stderr.write(`plumb: ${error.message} (${error.code})\n`));
  try {
    const connection = await connect(args);
    const runOptions = {
      job,
      env,
      endpoints,
      ...(args.tty ? { terminal: localTerminal() } : {}),
      stdio: { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
      signals: process,
      maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
      initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
      maxWindowBytes: DEFAULT_LIMITS.maxWindowBytes,
      maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
    };
    if (report === undefined) return await runRemoteCommand(connection, runOptions);
    const recipeReport = report;
    const status = await runRemoteCommand(connection, {
      ...runOptions,
      onStageEnd: (end) => {
        const line = recipeReport.stageEnded(end);
        if (line !== undefined) process.stderr.write(`plumb: ${line}\n`);
      },
    });
    recipeReport.finished(status);
    return status;
  } catch (error) {
    report?.failed(asNetplumbError(error));
    throw error;
  } finally {
    endpoints.close();
    if (report !== undefined && args.json !== false) writeJsonReport(report, args.json);
  }
}

/** The terminal -t replicates; raw mode is undone on every way out, process.exit included. */
function localTerminal(): LocalTerminal {
  const input = process.stdin.isTTY === true ? process.stdin : undefined;
  if (input !== undefined) {
    const wasRaw = input.isRaw;
    process.once('exit', () => input.setRawMode(wasRaw));
  }
  return { term: process.env['TERM'] ?? 'xterm-256color', input, output: process.stdout.isTTY === true ? process.stdout : undefined };
}

/**
 * -mint-key: asks the daemon for a one-time key bound to the job (its user and its remote named pipes and sockets
 * too) and writes the key file; nothing runs.
 */
async function mintKey(args: PlumbArguments, file: string, job: RemoteJob): Promise<number> {
  const binding = { ...job, endpoints: remoteEndpoints(args.endpoints) };
  const keyFile = createKeyFile(file);
  let key: MintedKey;
  try {
    const connection = await connect(args);
    // The host key the node will pin is the one this connection has just verified, not what the reply says.
    const hostKey = formatPublicKeyLine(connection.peer.peer);
    key = { ...(await mintOneTimeKey(connection, { binding, lifetimeSeconds: args.lifetimeSeconds })), hostKey };
  } catch (error) {
    keyFile.discard();
    throw error;
  }
  keyFile.write(formatKeyFile(key, binding));
  process.stderr.write(`plumb: one-time key ${key.fingerprint} for ${args.machine as string} written to ${file}: good once, until ${new Date(key.expiresAt).toISOString()}, as ${key.user}\n`);
  return 0;
}

/** Connects to the machine's daemon and authenticates both ends. */
function connect(args: PlumbArguments): Promise<SecureConnection> {
  const paths = clientPaths();
  const note = (line: string): void => {
    if (args.verbose) process.stderr.write(`plumb: ${line}\n`);
  };
  const target = resolveTarget(args.machine as string, paths.hosts, args.port);
  const oneTime = args.oneTimeKey === undefined ? undefined : loadKeyFile(args.oneTimeKey);
  const identity = oneTime?.identity ?? loadPrivateIdentity(args.identity ?? paths.identity);
  return connectToDaemon(target, {
    identity,
    ...(oneTime === undefined ? {} : { pinnedHostKey: oneTime.hostKey }),
    knownHostsFile: args.knownHosts ?? paths.knownHosts,
    acceptNew: args.acceptNew,
    connectTimeoutMs: 10_000,
    note: (line) => (line.startsWith('Permanently') || line.startsWith('warning') ? process.stderr.write(`plumb: ${line}\n`) : note(line)),
  });
}

/** Writes the JSON report; a file that cannot be written is said on stderr and never changes the exit status. */
function writeJsonReport(report: RecipeReport, destination: true | string): void {
  const text = `${JSON.stringify(report.toJSON())}\n`;
  if (destination === true) {
    process.stderr.write(text);
    return;
  }
  try {
    writeFileSync(destination, text, { mode: 0o600 });
  } catch (error) {
    process.stderr.write(`plumb: cannot write the JSON report to ${destination}: ${(error as Error).message} (${ErrorCode.Usage})\n`);
  }
}

/** Codes with which a daemon refuses a recipe before anything of it ran. */
const RECIPE_REFUSALS = new Set<string>([ErrorCode.RecipeSyntax, ErrorCode.RecipeInvalid, ErrorCode.RecipeTooLarge, ErrorCode.RecipeSetup]);

/** The exit status for a failure before or around the remote command. */
function failureExitCode(error: NetplumbError): number {
  if (error instanceof RecipeError || RECIPE_REFUSALS.has(error.code)) return EXIT_RECIPE_REFUSED;
  if (error.code === ErrorCode.CommandNotFound) return EXIT_COMMAND_NOT_FOUND;
  if (error.code === ErrorCode.CommandNotExecutable) return EXIT_COMMAND_NOT_EXECUTABLE;
  return EXIT_PLUMB_FAILURE;
}

/**
 * process.exit drops whatever a pipe has not taken yet: wait until stdout and stderr have written everything
 * (or failed, e.g. EPIPE), then exit. A write callback runs only after all earlier writes are done.
 */
function exitWhenFlushed(code: number): void {
  let pending = 2;
  const flushed = (): void => {
    if (--pending === 0) process.exit(code);
  };
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.destroyed || stream.writableEnded) {
      flushed();
      continue;
    }
    let done = false;
    const once = (): void => {
      if (done) return;
      done = true;
      flushed();
    };
    // A reader that went away makes the write fail (EPIPE): that also counts as done, never as a crash.
    stream.on('error', once);
    stream.write('', once);
  }
}

main().then(
  (code) => {
    exitWhenFlushed(code);
  },
  (error: unknown) => {
    const failure = asNetplumbError(error);
    // A recipe error names its place and shows it under a caret: its own lines, then the code.
    const message = failure instanceof RecipeError ? failure.render() : failure.message;
    process.stderr.write(`plumb: ${message} (${failure.code})\n`);
    exitWhenFlushed(failureExitCode(failure));
  },
);
