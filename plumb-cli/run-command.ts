// plumb machine command: runs one command on the machine with this process's stdio (and terminal, with -t), its
// local named pipes and sockets replicated, and ends with the command's exit status. It goes through the library
// (library.ts) as any Node program would; a one-machine recipe and plumb -N use the same path.

import type { ExportedEnv, StageBytes, StageEnd } from '../protocol/session.js';
import { StartKind } from '../protocol/wire.js';
import type { EndpointOptions } from './endpoints.js';
import type { EndpointMachines } from './endpoint-placement.js';
import { connect, prepareEndpoints, type ConnectOptions, type Machine, type RemoteRun, type RunOptions } from './library.js';
import { saySummary, type MachineOptions } from './machine.js';
import { ProgressLine, type ProgressMode } from './progress.js';
import type { LocalTerminal, RemoteJob } from './run.js';
import type { StreamTotals } from './stream-meter.js';

export interface RunArguments extends MachineOptions {
  /** The command and its arguments, run as an argv. */
  command: string[];
  tty: boolean;
  /** -N: no command; the named pipes and sockets stay joined until interrupted. */
  forward?: boolean;
  endpoints: EndpointOptions;
  /** -infifo=@MACHINE:PATH and the like: the machine each endpoint option named, for a recipe across machines. */
  endpointMachines: EndpointMachines;
  /** -progress: each stream's bytes, rate and time on stderr while the run goes on, and a summary at its end. */
  progress?: ProgressMode;
}

/** The Start request's job for a plain command. */
export function execJob(args: Pick<RunArguments, 'command' | 'user'>): Extract<RemoteJob, { kind: StartKind.Exec }> {
  return { kind: StartKind.Exec, argv: args.command, ...(args.user === undefined ? {} : { user: args.user }) };
}

/** The library's connect options for what the command line says: -v notes and warnings go to stderr as plumb's. */
export function connectOptions(args: MachineOptions): ConnectOptions {
  const toStderr = (line: string): void => void process.stderr.write(`plumb: ${line}\n`);
  return {
    ...(args.identity === undefined ? {} : { identity: args.identity }),
    ...(args.knownHosts === undefined ? {} : { knownHosts: args.knownHosts }),
    ...(args.port === undefined ? {} : { port: args.port }),
    ...(args.oneTimeKey === undefined ? {} : { oneTimeKey: args.oneTimeKey }),
    ...(args.limitRate === undefined ? {} : { limitRate: args.limitRate }),
    ...(args.acceptNew === undefined ? {} : { acceptNew: args.acceptNew }),
    ...(args.verbose === true ? { onNote: toStderr } : {}),
    onWarning: toStderr,
  };
}

/**
 * Connects and runs the job with this process's stdio; resolves with plumb's exit status. `onEnd` is told what
 * each stream carried, however the run ended.
 */
export async function runOnMachine(
  args: RunArguments,
  job: RemoteJob,
  env: ExportedEnv,
  recipeEvents: RecipeEvents = {},
  onEnd?: (streams: StreamTotals[]) => void,
): Promise<number> {
  // The local named pipes and sockets first: a mistake there costs no connection, no pinned key, no one-time key.
  // A local one that fails while the command runs is said at once; the command goes on.
  const endpoints = await prepareEndpoints(args.endpoints, (error) => process.stderr.write(`plumb: ${error.message} (${error.code})\n`));
  const connectedAt = performance.now();
  let machine: Machine;
  try {
    machine = await connect(args.machine as string, connectOptions(args));
  } catch (error) {
    endpoints.close();
    throw error;
  }
  let run: RemoteRun | undefined;
  const progress = ProgressLine.forMode(args.progress, process.stderr, () => run?.streams() ?? []);
  const options: RunOptions = {
    ...(job.user === undefined ? {} : { user: job.user }),
    env: Object.fromEntries(env),
    stdin: process.stdin,
    stdout: progress?.interleave(process.stdout) ?? process.stdout,
    stderr: progress?.interleave(process.stderr) ?? process.stderr,
    endpoints,
    ...(args.tty ? { terminal: localTerminal() } : {}),
    signals: process,
  };
  const { onStageEnd } = recipeEvents;
  // A stage's line of plumb's own takes the status line's place; the next draw puts it back under it.
  run = start(machine, job, options, {
    ...recipeEvents,
    ...(onStageEnd === undefined
      ? {}
      : {
          onStageEnd: (end: StageEnd) => {
            progress?.clearLine();
            onStageEnd(end);
          },
        }),
  });
  progress?.start();
  try {
    return await run.exit;
  } finally {
    progress?.finish();
    onEnd?.(run.streams());
    saySummary(args, run.wireBytes(), machine.cipher, connectedAt);
    await machine.close();
  }
}

/** What plumb is told of a recipe's commands as they end, and of their counts when it asked for them. */
export interface RecipeEvents {
  onStageEnd?: (end: StageEnd) => void;
  onStageBytes?: (bytes: StageBytes) => void;
}

function start(machine: Machine, job: RemoteJob, options: RunOptions, { onStageEnd, onStageBytes }: RecipeEvents): RemoteRun {
  switch (job.kind) {
    case StartKind.Exec:
      return machine.run(job.argv, options);
    case StartKind.Recipe: {
      const run = machine.runRecipe({ text: job.text, source: job.source }, { ...options, ...(job.countBytes === true ? { countBytes: true } : {}) });
      if (onStageEnd !== undefined) run.on('stage', onStageEnd);
      if (onStageBytes !== undefined) run.on('bytes', onStageBytes);
      return run;
    }
    case StartKind.Forward:
      return machine.forward(options);
  }
}

/** plumb -N: the named pipes and sockets alone, joined until interrupted; the local ends removed however it ends. */
export function forwardCommand(args: RunArguments): Promise<number> {
  return runOnMachine(args, { kind: StartKind.Forward, ...(args.user === undefined ? {} : { user: args.user }) }, []);
}

/** Runs the command line's command; the local endpoints are removed however it ends. */
export function runCommand(args: RunArguments, env: ExportedEnv): Promise<number> {
  return runOnMachine(args, execJob(args), env);
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
