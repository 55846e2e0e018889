// plumb machine command: runs one command on the machine with this process's stdio (and terminal, with -t), its
// local named pipes and sockets replicated, and ends with the command's exit status. A recipe run uses the same parts.

import type { StageEnd, ExportedEnv } from '../protocol/session.js';
import { DEFAULT_LIMITS, StartKind } from '../protocol/wire.js';
import { ClientEndpoints, type EndpointOptions } from './endpoints.js';
import type { EndpointMachines } from './endpoint-placement.js';
import { connectToMachine, sayConnectionSummary, type MachineOptions } from './machine.js';
import { runRemoteCommand, type LocalTerminal, type RemoteJob } from './run.js';

export interface RunArguments extends MachineOptions {
  /** The command and its arguments, run as an argv. */
  command: string[];
  tty: boolean;
  /** -N: no command; the named pipes and sockets stay joined until interrupted. */
  forward?: boolean;
  endpoints: EndpointOptions;
  /** -infifo=@MACHINE:PATH and the like: the machine each endpoint option named, for a recipe across machines. */
  endpointMachines: EndpointMachines;
}

/** The Start request's job for a plain command. */
export function execJob(args: Pick<RunArguments, 'command' | 'user'>): Extract<RemoteJob, { kind: StartKind.Exec }> {
  return { kind: StartKind.Exec, argv: args.command, ...(args.user === undefined ? {} : { user: args.user }) };
}

/** Makes the local FIFOs and checks the local socket paths before anything is sent. */
export function prepareLocalEndpoints(args: Pick<RunArguments, 'endpoints'>): Promise<ClientEndpoints> {
  // A local named pipe or socket that fails while the command runs is said at once; the command goes on.
  return ClientEndpoints.prepare(args.endpoints, (error) => process.stderr.write(`plumb: ${error.message} (${error.code})\n`));
}

/** Connects and runs the job with this process's stdio; resolves with plumb's exit status. */
export async function runOnMachine(
  args: RunArguments,
  job: RemoteJob,
  env: ExportedEnv,
  endpoints: ClientEndpoints,
  onStageEnd?: (end: StageEnd) => void,
): Promise<number> {
  const connectedAt = performance.now();
  const connection = await connectToMachine(args);
  try {
    return await runRemoteCommand(connection, {
      job,
      env,
      endpoints,
      ...(args.tty ? { terminal: localTerminal() } : {}),
      ...(onStageEnd === undefined ? {} : { onStageEnd }),
      stdio: { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
      signals: process,
      maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
      initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
      maxWindowBytes: DEFAULT_LIMITS.maxWindowBytes,
      maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
    });
  } finally {
    sayConnectionSummary(args, connection, connectedAt);
  }
}

/** plumb -N: the named pipes and sockets alone, joined until interrupted; the local ends removed however it ends. */
export async function forwardCommand(args: RunArguments): Promise<number> {
  const endpoints = await prepareLocalEndpoints(args);
  try {
    return await runOnMachine(args, { kind: StartKind.Forward, ...(args.user === undefined ? {} : { user: args.user }) }, [], endpoints);
  } finally {
    endpoints.close();
  }
}

/** Runs the command line's command; the local endpoints are removed however it ends. */
export async function runCommand(args: RunArguments, env: ExportedEnv): Promise<number> {
  const endpoints = await prepareLocalEndpoints(args);
  try {
    return await runOnMachine(args, execJob(args), env, endpoints);
  } finally {
    endpoints.close();
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
