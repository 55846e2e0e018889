#!/usr/bin/env node
// plumb: parses the command line, connects to the machine's netplumbd and runs the command there. This file only
// reads arguments, wires the parts together and turns the outcome into the exit status and one line on stderr.

import { Command, CommanderError } from 'commander';
import { loadPrivateIdentity } from '../protocol/keys.js';
import { ErrorCode, NetplumbError, asNetplumbError } from '../protocol/errors.js';
import { normaliseLongOptions } from '../protocol/options.js';
import { DEFAULT_LIMITS } from '../protocol/wire.js';
import { connectToDaemon } from './client.js';
import { clientPaths, resolveTarget } from './paths.js';
import { EXIT_COMMAND_NOT_EXECUTABLE, EXIT_COMMAND_NOT_FOUND, EXIT_PLUMB_FAILURE, runRemoteCommand } from './run.js';

interface PlumbArguments {
  machine: string;
  command: string[];
  identity: string | undefined;
  knownHosts: string | undefined;
  acceptNew: boolean;
  port: number | undefined;
  verbose: boolean;
}

const VALUE_OPTIONS = ['identity', 'known-hosts', 'port'];
const FLAGS = ['accept-new', 'verbose'];

function parseArguments(argv: readonly string[]): PlumbArguments {
  const program = new Command('plumb')
    .usage('[options] machine[:port] command [args...]')
    .description('Run a command on another machine through its netplumbd, encrypted and mutually authenticated.')
    .option('-i, --identity <file>', 'private key to authenticate with (default $NETPLUMB_HOME/identity)')
    .option('--known-hosts <file>', 'pinned daemon host keys (default $NETPLUMB_HOME/known_hosts)')
    .option('--accept-new', 'record the host key of a machine not seen before, then connect')
    .option('-p, --port <port>', 'daemon port')
    .option('-v, --verbose', 'say what plumb does, on stderr')
    .argument('<machine>', 'host name, address, or alias from $NETPLUMB_HOME/hosts')
    .argument('<command...>', 'the command and its arguments, run as an argv (no shell)')
    .passThroughOptions()
    .exitOverride()
    .configureOutput({
      writeErr: (text) => process.stderr.write(text),
      // One line in plumb's own format, like every other failure it reports.
      outputError: (text, write) => write(`plumb: ${text.replace(/^error: /, '').trim()} (${ErrorCode.Usage})\n`),
    });
  program.parse(normaliseLongOptions(argv, { withValue: VALUE_OPTIONS, flags: FLAGS, shortWithValue: ['i', 'p'] }, 1), { from: 'user' });
  const options = program.opts<{ identity?: string; knownHosts?: string; acceptNew?: boolean; port?: string; verbose?: boolean }>();
  const [machine, command] = program.processedArgs as [string, string[]];
  let port: number | undefined;
  if (options.port !== undefined) {
    if (!/^[1-9][0-9]{0,4}$/.test(options.port) || Number(options.port) > 65535) {
      throw new NetplumbError(ErrorCode.Usage, `bad port ${options.port}`);
    }
    port = Number(options.port);
  }
  return {
    machine,
    command,
    identity: options.identity,
    knownHosts: options.knownHosts,
    acceptNew: options.acceptNew === true,
    port,
    verbose: options.verbose === true,
  };
}

async function main(): Promise<number> {
  let args: PlumbArguments;
  try {
    args = parseArguments(process.argv.slice(2));
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_PLUMB_FAILURE;
    throw error;
  }
  const paths = clientPaths();
  const note = (line: string): void => {
    if (args.verbose) process.stderr.write(`plumb: ${line}\n`);
  };
  const target = resolveTarget(args.machine, paths.hosts, args.port);
  const identity = loadPrivateIdentity(args.identity ?? paths.identity);
  const connection = await connectToDaemon(target, {
    identity,
    knownHostsFile: args.knownHosts ?? paths.knownHosts,
    acceptNew: args.acceptNew,
    connectTimeoutMs: 10_000,
    note: (line) => (line.startsWith('Permanently') || line.startsWith('warning') ? process.stderr.write(`plumb: ${line}\n`) : note(line)),
  });
  return runRemoteCommand(connection, {
    argv: args.command,
    stdio: { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
    signals: process,
    maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
    initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
    maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
  });
}

/** The exit status for a failure before or around the remote command. */
function failureExitCode(error: NetplumbError): number {
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
    process.stderr.write(`plumb: ${failure.message} (${failure.code})\n`);
    exitWhenFlushed(failureExitCode(failure));
  },
);
