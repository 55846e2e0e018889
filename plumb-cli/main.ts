#!/usr/bin/env node
// plumb: reads the command line and hands it to its command: a command or a recipe run on the machine, a recipe
// checked here, or a one-time key minted. What fails ends plumb with one line on stderr and its exit status.

import { Command, CommanderError } from 'commander';
import { join } from 'node:path';
import { normaliseLongOptions, singleDashHelp, singleDashText } from '../bridges/long-options.js';
import { asNetplumbError, ErrorCode, RecipeError, UsageError } from '../protocol/errors.js';
import { ENV_NAME_PATTERN, type ExportedEnv } from '../protocol/session.js';
import { DEFAULT_PORT } from '../protocol/wire.js';
import { DEFAULT_SPOOL_DIR } from '../recipes/plan.js';
import { parseSocketOption } from './endpoints.js';
import { namesMachines, splitEndpointMachine, type EndpointMachines } from './endpoint-placement.js';
import { failureExitStatus } from './exit-status.js';
import { DEFAULT_KEY_LIFETIME_SECONDS, mintKeyCommand, type MintKeyArguments } from './mint-key-command.js';
import { parseLifetime } from './one-time-key.js';
import { parseHostPort } from './paths.js';
import { personAtTerminal, thisTerminalView, type ProgressMode } from './progress.js';
import { parseRate, RATE_EXPECTED } from './rate.js';
import type { RecipeArguments } from './recipe-command.js';
import { execJob, forwardCommand, runCommand } from './run-command.js';

interface PlumbArguments extends RecipeArguments, MintKeyArguments {
  recipe: string | undefined;
  check: boolean;
  spool: string | undefined;
  /** Variable names from every -export, in order, without repeats. */
  exports: string[];
  /** -mint-key: write a one-time key for the command to this file instead of running it. */
  mintKey: string | undefined;
}

const VALUE_OPTIONS = ['identity', 'known-hosts', 'port', 'recipe', 'spool', 'export', 'infifo', 'outfifo', 'socket', 'local-socket', 'user', 'mint-key', 'expires', 'one-time-key', 'reach', 'limit-rate'];
const FLAGS = ['accept-new', 'verbose', 'check', 'relay', 'progress', 'no-progress'];
/** `-json` alone means the report goes to stderr, as `-json=-` says. */
const OPTIONAL_VALUE_OPTIONS = { json: '-' };

function parseArguments(argv: readonly string[]): PlumbArguments {
  const program = new Command('plumb')
    .usage('[options] machine[:port] command [args...]\n       plumb [options] [machine[:port]] -recipe=FILE\n       plumb -check -recipe=FILE')
    .description('Run a command or a recipe on another machine through its netplumbd, encrypted and mutually authenticated.')
    .option('-i, --identity <file>', "private key to authenticate with (default: the machine's IdentityFile in $NETPLUMB_HOME/config, else $NETPLUMB_HOME/identity)")
    .option('--known-hosts <file>', "pinned daemon host keys (default: the machine's KnownHostsFile in $NETPLUMB_HOME/config, else $NETPLUMB_HOME/known_hosts)")
    .option('--accept-new', 'record the host key of a machine not seen before, then connect')
    .option('-p, --port <port>', `daemon port (default: the one the machine argument, its Port in $NETPLUMB_HOME/config or its hosts alias gives, else ${DEFAULT_PORT})`)
    .option('--recipe <file>', 'run the recipe in FILE on the machine instead of a command')
    .option('--check', 'check the recipe locally and print its plan; nothing runs and no machine is needed')
    .option('--spool <dir>', `with -check: the spool directory names are resolved against (default: ${DEFAULT_SPOOL_DIR})`)
    .option('--json [file]', "with -recipe: write a JSON report of every command's end to FILE (- or none: stderr)")
    .option('--export <names>', 'set these variables of this environment for the remote command(s) (NAME[,NAME...]; repeatable)', collect, [])
    .option('--infifo <path>', 'named pipe the remote command reads; filled with what is written into PATH here (repeatable)', collect, [])
    .option('--outfifo <path>', 'named pipe the remote command writes; read here from PATH (repeatable)', collect, [])
    .option('--socket <remote[:local]>', "Unix socket the daemon listens on; connections reach the service on the local path (repeatable)", collect, [])
    .option('--local-socket <local[:remote]>', "Unix socket plumb listens on; connections reach the service on the daemon's host (repeatable)", collect, [])
    .option('--limit-rate <rate>', "bytes per second each connection carries at most, each way (K, M, G: times 1024; 0: no limit), like rsync --bwlimit (default: the machine's LimitRate in $NETPLUMB_HOME/config, else no limit)")
    .option('--relay', 'recipe across machines: carry an edge through plumb when its writing daemon cannot reach the reading one')
    .option('--reach <machine=host[:port]>', "recipe across machines: where the other daemons reach MACHINE (as the recipe names it), if not where plumb does (repeatable; default: where plumb reaches it)", collect, [])
    .option('-l, --user <name>', "run as this account on the machine (the authorized-clients line must allow it); -l as ssh's, for rsync -e plumb user@host: (default: the machine's User in $NETPLUMB_HOME/config, else the account the daemon gives this client)")
    .option('--mint-key <file>', 'controller: write a one-time key for the command (or recipe) to FILE instead of running it')
    .option('--expires <lifetime>', `with -mint-key: how long the key stays good (seconds, or with m, h, d; default: ${DEFAULT_KEY_LIFETIME_SECONDS / 60}m)`)
    .option('--one-time-key <file>', "authenticate with a one-time key file (and the daemon's host key it names), once")
    .option('-N', 'run no command: keep the named pipes and sockets joined until interrupted (as ssh -N)')
    .option('-t, --tty', 'run the command on a pseudo-terminal (without a command: a login shell), this terminal in raw mode')
    .option('--progress', "show each stream's bytes, rate and time on stderr while the run goes on (redrawn in place on a terminal), then a summary (default: shown to a person at a terminal once a run lasts a second; see plumb(1))")
    .option('--no-progress', 'show no progress, even on a terminal')
    .option('-v, --verbose', 'say what plumb does, on stderr')
    .argument('[machine]', 'host name, address, Host of $NETPLUMB_HOME/config, or alias from $NETPLUMB_HOME/hosts')
    .argument('[command...]', 'the command and its arguments, run as an argv (no shell)')
    .passThroughOptions()
    .exitOverride()
    .configureHelp(singleDashHelp())
    .configureOutput({
      writeErr: (text) => process.stderr.write(text),
      // One line in plumb's own format, like every other failure it reports.
      outputError: (text, write) => write(`plumb: ${singleDashText(text.replace(/^error: /, '').trim())} (${ErrorCode.Usage})\n`),
    });
  const normalised = normaliseLongOptions(argv, { withValue: VALUE_OPTIONS, flags: FLAGS, optionalValue: OPTIONAL_VALUE_OPTIONS, shortWithValue: ['i', 'p', 'l'] }, 1);
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
    N?: boolean;
    verbose?: boolean;
    progress?: boolean;
    user?: string;
    mintKey?: string;
    expires?: string;
    oneTimeKey?: string;
    reach: string[];
    relay?: boolean;
    limitRate?: string;
  }>();
  const [machine, command] = program.processedArgs as [string | undefined, string[]];
  let port: number | undefined;
  if (options.port !== undefined) {
    if (!/^[1-9][0-9]{0,4}$/.test(options.port) || Number(options.port) > 65535) {
      throw new UsageError(`bad port ${options.port}`);
    }
    port = Number(options.port);
  }
  // -infifo=@MACHINE:PATH and the like: the machine, for a recipe across machines, comes off before the paths are read.
  const split = (values: readonly string[]): Array<ReturnType<typeof splitEndpointMachine>> => values.map(splitEndpointMachine);
  const [inFifos, outFifos, sockets, localSockets] = [split(options.infifo), split(options.outfifo), split(options.socket), split(options.localSocket)];
  const check = options.check === true;
  if (check && options.recipe === undefined) throw new UsageError('-check needs -recipe=FILE');
  // A recipe may name its machines itself: whether it needs the command line's is known once it is read.
  if (!check && machine === undefined && options.recipe === undefined) throw new UsageError('missing machine');
  if (options.recipe !== undefined && command.length > 0) throw new UsageError('-recipe=FILE runs the recipe; no command may follow the machine');
  const forward = options.N === true;
  if (forward) {
    if (options.recipe !== undefined || check || command.length > 0 || options.tty === true || options.mintKey !== undefined || options.export.length > 0) {
      throw new UsageError('-N runs no command: no command, -recipe, -t, -check, -mint-key or -export goes with it');
    }
    if (options.infifo.length + options.outfifo.length + options.socket.length + options.localSocket.length === 0) {
      throw new UsageError('-N keeps named pipes and sockets joined: give -socket, -local-socket, -infifo or -outfifo');
    }
  }
  // Without a command, on a terminal at both ends, plumb starts a login shell there (as ssh does).
  const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true;
  if (!check && !forward && options.recipe === undefined && command.length === 0 && !interactive) throw new UsageError('missing command');
  const tty = options.tty === true || (options.recipe === undefined && !check && !forward && command.length === 0);
  if (tty && options.recipe !== undefined) throw new UsageError('-t runs one command on a terminal; a recipe has no terminal');
  // An account name has no `=`: this is a mistyped long option (-limit=1M) that -l would otherwise take as `imit=1M`.
  if (options.user?.includes('=') === true) throw new UsageError(`-l/-user: ${JSON.stringify(options.user)} is not an account name (a mistyped option?)`);
  if (options.progress === true && (tty || check || options.mintKey !== undefined)) throw new UsageError('-progress shows a run that moves bytes: -t, -check and -mint-key do not go with it');
  // Unasked, only where a person watches a run that moves bytes, and nothing else of plumb's goes to stderr (a JSON
  // report); never for -N, which waits for no end and would keep a line on the screen for as long as it runs.
  const progress: ProgressMode =
    options.progress === true
      ? 'asked'
      : options.progress === false || tty || check || forward || options.mintKey !== undefined || options.json === true || options.json === '-' || !personAtTerminal(thisTerminalView())
        ? 'off'
        : 'terminal';
  if (options.json !== undefined && options.recipe === undefined) throw new UsageError('-json reports on a recipe: use it with -recipe=FILE');
  if (options.reach.length > 0 && options.recipe === undefined) throw new UsageError('-reach goes with a recipe across machines (-recipe=FILE)');
  if (options.relay === true && options.recipe === undefined) throw new UsageError('-relay goes with a recipe across machines (-recipe=FILE)');
  if (options.spool !== undefined && !check) throw new UsageError("-spool is for -check; a daemon uses its own spool directory");
  if (options.mintKey !== undefined) {
    if (tty || check) throw new UsageError('-mint-key binds a key to a command or recipe run without a terminal; -t and -check do not go with it');
    if (options.oneTimeKey !== undefined) throw new UsageError('-mint-key is for a controller; it cannot use a one-time key');
  }
  if ((options.mintKey !== undefined || options.oneTimeKey !== undefined) && options.export.length > 0) {
    throw new UsageError("a one-time key's command takes no exported variables: -export does not go with -mint-key or -one-time-key");
  }
  if (options.expires !== undefined && options.mintKey === undefined) throw new UsageError('-expires goes with -mint-key');
  if (options.oneTimeKey !== undefined && options.identity !== undefined) throw new UsageError('-one-time-key is the identity: -identity does not go with it');
  return {
    machine,
    command,
    recipe: options.recipe,
    check,
    json: options.json === undefined ? false : options.json === true || options.json === '-' ? true : options.json,
    spool: options.spool,
    tty,
    forward,
    exports: exportedNames(options.export),
    endpoints: {
      inFifos: inFifos.map(({ rest }) => rest),
      outFifos: outFifos.map(({ rest }) => rest),
      sockets: sockets.map(({ rest }) => parseSocketOption(rest, 'socket')),
      localSockets: localSockets.map(({ rest }) => parseSocketOption(rest, 'local-socket')),
    },
    endpointMachines: {
      inFifos: inFifos.map(({ machine }) => machine),
      outFifos: outFifos.map(({ machine }) => machine),
      sockets: sockets.map(({ machine }) => machine),
      localSockets: localSockets.map(({ machine }) => machine),
    },
    identity: options.identity,
    knownHosts: options.knownHosts,
    // A flag: present turns it on; absent leaves it to the machine's AcceptNew in $NETPLUMB_HOME/config.
    acceptNew: options.acceptNew === true ? true : undefined,
    port,
    verbose: options.verbose === true,
    progress,
    user: options.user,
    mintKey: options.mintKey,
    lifetimeSeconds: options.expires === undefined ? DEFAULT_KEY_LIFETIME_SECONDS : parseLifetime(options.expires),
    oneTimeKey: options.oneTimeKey,
    reach: reachOptions(options.reach),
    relay: options.relay === true,
    limitRate: options.limitRate === undefined ? undefined : limitRateOption(options.limitRate),
  };
}

/** -reach=MACHINE=HOST[:PORT], each machine once: where the other daemons reach that machine. */
function reachOptions(values: readonly string[]): Map<string, { host: string; port: number }> {
  const reach = new Map<string, { host: string; port: number }>();
  for (const value of values) {
    const equals = value.indexOf('=');
    const machine = value.slice(0, Math.max(equals, 0));
    if (equals <= 0 || equals === value.length - 1) throw new UsageError(`-reach=${value}: expected MACHINE=HOST[:PORT]`);
    if (reach.has(machine)) throw new UsageError(`-reach: ${machine} given twice`);
    reach.set(machine, parseHostPort(value.slice(equals + 1), DEFAULT_PORT));
  }
  return reach;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The names of all -export options, checked, in order, each once. */
function exportedNames(values: readonly string[]): string[] {
  const names: string[] = [];
  for (const name of values.flatMap((value) => value.split(','))) {
    if (!ENV_NAME_PATTERN.test(name)) throw new UsageError(`-export: ${JSON.stringify(name)} is not a variable name`);
    if (!names.includes(name)) names.push(name);
  }
  return names;
}

/** The exported variables with their values here; a variable that is not set is an error, never left out silently. */
function exportedEnv(names: readonly string[]): ExportedEnv {
  return names.map((name) => {
    const value = process.env[name];
    if (value === undefined) throw new UsageError(`-export: ${name} is not set in this environment`);
    return [name, value];
  });
}

async function main(): Promise<number> {
  let args: PlumbArguments;
  try {
    args = parseArguments(process.argv.slice(2));
  } catch (error) {
    if (error instanceof CommanderError) return failureExitStatus(error);
    throw error;
  }
  const env = exportedEnv(args.exports);
  const spoolDir = args.spool ?? DEFAULT_SPOOL_DIR;
  if (args.recipe === undefined) {
    // The machine's settings ($NETPLUMB_HOME/config, its User included) are the library's to resolve, on connecting.
    refuseEndpointMachines(args);
    if (args.forward) return forwardCommand(args);
    if (args.mintKey !== undefined) return mintKeyCommand(args, args.mintKey, execJob(args));
    return runCommand(args, env);
  }
  // The recipe parser is loaded only for a recipe: a plain command starts without it.
  const { checkCommand, loadRecipe } = await import('./check-command.js');
  if (args.check) {
    // Which spool the names are resolved against: the one given, else the one the daemon would use, said as assumed.
    // A daemon runs its own account's commands in its spool, another account's in users/NAME there. Which account
    // runs a recipe without -user (the client line's first user=, else the daemon's run-as) only the daemon knows.
    const assumed =
      args.spool !== undefined
        ? { dir: args.spool, why: 'given with -spool' }
        : args.user === 'root'
          ? { dir: DEFAULT_SPOOL_DIR, why: "assumed: the default spool itself, where a daemon running as root runs -user=root's commands; -spool=DIR checks against another" }
          : args.user !== undefined
            ? { dir: join(DEFAULT_SPOOL_DIR, 'users', args.user), why: `assumed: the default spool's users/${args.user}, where a daemon running as root keeps the spool of -user=${args.user}; -spool=DIR checks against another` }
            : {
                dir: DEFAULT_SPOOL_DIR,
                why: "assumed: the recipe runs as the daemon's own account, in the default spool; if the daemon runs it as another (the first user= of this client's line, else its run-as setting), it runs in users/ACCOUNT there: check with -user=ACCOUNT, or against another spool with -spool=DIR",
              };
    return checkCommand(args.recipe, assumed.dir, process.stdout, assumed.why);
  }
  const { recipeCommand, recipeJob } = await import('./recipe-command.js');
  const recipe = loadRecipe(args.recipe, spoolDir);
  if (recipe.plan.machines.length > 0) {
    if (args.mintKey !== undefined) throw new UsageError('-mint-key binds a key to one machine\'s command; a recipe across machines mints its own keys');
    const { acrossMachinesCommand } = await import('./across-machines.js');
    return acrossMachinesCommand(args, recipe, env);
  }
  if (args.machine === undefined) throw new UsageError(`missing machine: no command of ${args.recipe} names one (@NAME)`);
  refuseEndpointMachines(args);
  if (args.relay === true || (args.reach?.size ?? 0) > 0) throw new UsageError(`-relay and -reach go with a recipe across machines; no command of ${args.recipe} names a machine (@NAME)`);
  if (args.mintKey !== undefined) return mintKeyCommand(args, args.mintKey, recipeJob(recipe, args.user));
  return recipeCommand(args, recipe, env);
}

/** -limit-rate=RATE, checked. */
function limitRateOption(value: string): number {
  const rate = parseRate(value);
  if (rate === undefined) throw new UsageError(`-limit-rate=${value}: ${RATE_EXPECTED}`);
  return rate;
}

/** `@MACHINE:` before a named pipe's or socket's path picks a machine of a recipe across machines, and nothing else. */
function refuseEndpointMachines(args: { endpointMachines: EndpointMachines }): void {
  if (namesMachines(args.endpointMachines)) {
    throw new UsageError('-infifo=@MACHINE:PATH (and the like for -outfifo, -socket, -local-socket) names a machine of a recipe across machines; a command or a one-machine recipe takes the path alone');
  }
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
    exitWhenFlushed(failureExitStatus(failure));
  },
);
