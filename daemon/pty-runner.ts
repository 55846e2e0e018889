// A command on a pseudo-terminal (plumb -t): its output (stdout and stderr together, as a terminal shows them) goes
// to the stdout stream, the stdin stream is typed into it no faster than the pty takes it, and Resize changes its
// size. It leads a session of its own: ending it ends every process group of that session, hung up first.

import { finished } from 'node:stream/promises';
import { asNetplumbError } from '../protocol/errors.js';
import type { MuxStream } from '../protocol/mux.js';
import type { ExitStatus, ForwardableSignal, PtyRequest } from '../protocol/session.js';
import { findProgram, programToStart } from '../bridges/programs.js';
import { endGroups, groupAlive, signalGroup } from '../recipes/process-groups.js';
import type { Logger } from './log.js';
import { sessionGroups, spawnOnPty, type PtyCommand } from './pty.js';
import type { Runner, SessionStreams } from './runner.js';
import { commandArgv, type PreparedStart } from './start-policy.js';

/** Input queued for a pty beyond which the stdin stream is paused, and how often it is checked then. */
const PTY_INPUT_QUEUE_BYTES = 256 * 1024;
const PTY_INPUT_POLL_MS = 10;

/** How long after a pty command's exit its last output is awaited before the output stream ends. */
const PTY_LAST_OUTPUT_MS = 250;

export class PtyRunner implements Runner {
  private command: PtyCommand | undefined;
  private pid: number | undefined;
  private ending: Promise<void> | undefined;
  private resolveOutcome: (status: ExitStatus) => void = () => undefined;
  readonly outcome: Promise<ExitStatus>;

  constructor(
    /** As asked; empty: the account's login shell. */
    private readonly argv: readonly string[],
    private readonly pty: PtyRequest,
    private readonly prepared: PreparedStart,
    private readonly log: Logger,
    private readonly killGraceMs: number,
  ) {
    this.outcome = new Promise((resolve) => (this.resolveOutcome = resolve));
  }

  start(streams: SessionStreams, started: () => void): Promise<void> {
    const { identity, env, cwd, programs } = this.prepared;
    const { runAs } = identity;
    const asked = commandArgv(this.argv, runAs);
    const { stdin, stdout, stderr } = streams;
    // What the terminal shows goes out ahead of any bulk on the connection (an -outfifo, a socket).
    stdout.interactive = true;
    let argv: string[];
    let command: PtyCommand;
    let exited = false;
    try {
      // node-pty would report a program it cannot exec only as output and status 1: it is found first, as the account.
      const named = programs?.[0] ?? programToStart(findProgram(asked[0] as string, env['PATH'] ?? '', cwd, runAs), runAs);
      argv = runAs.command(named, asked.slice(1)).flat();
      command = spawnOnPty(argv, this.pty, {
        env,
        cwd,
        onOutput: (data) => {
          if (stdout.destroyed || stdout.writableEnded) return;
          // After exit the rest of the output is read at once (node-pty drops what it has not read 200 ms on).
          if (!stdout.write(data) && !exited) {
            command.pause();
            stdout.once('drain', () => command.resume());
          }
        },
        onExit: (status) => {
          exited = true;
          command.resume();
          this.command = undefined;
          stdin.pause();
          // The last output arrives right after the exit; end the stream once it is in.
          setTimeout(() => {
            stdout.end();
            void settled(stdout).then(() => {
              this.log.info('command ended', status);
              this.resolveOutcome(status);
            });
          }, PTY_LAST_OUTPUT_MS);
        },
      });
    } catch (error) {
      return Promise.reject(asNetplumbError(error));
    }
    this.pid = command.pid;
    this.command = command;
    this.log.info('command started', { pid: command.pid, argv, pty: this.pty.term });
    started();
    // A terminal has one output: the stderr stream ends at once; the daemon never writes to stdin.
    stdin.end();
    stderr.end();
    stdout.resume();
    stderr.resume();
    // Input goes to the pty no faster than it takes it: above the bound the stream stops being read, so no window
    // credit goes back and the client is held back.
    const throttle = (): void => {
      if (command.queuedInputBytes() <= PTY_INPUT_QUEUE_BYTES / 2 || exited) stdin.resume();
      else setTimeout(throttle, PTY_INPUT_POLL_MS);
    };
    stdin.on('data', (chunk: Buffer) => {
      if (exited) return;
      command.write(chunk);
      if (command.queuedInputBytes() > PTY_INPUT_QUEUE_BYTES) {
        stdin.pause();
        setTimeout(throttle, PTY_INPUT_POLL_MS);
      }
    });
    // plumb dropped the output: keep reading the pty (and discard), so the command is not blocked forever.
    stdout.on('close', () => command.resume());
    return Promise.resolve();
  }

  signal(signal: ForwardableSignal): void {
    if (this.pid === undefined) return;
    this.log.info('forwarding signal', { signal, pgid: this.pid });
    signalGroup(this.pid, signal);
  }

  resize(cols: number, rows: number): void {
    this.command?.resize(cols, rows);
  }

  abort(reason?: string): Promise<void> {
    const leader = this.pid;
    if (leader === undefined) return Promise.resolve();
    if (this.ending === undefined && reason !== undefined && sessionGroups(leader).some(groupAlive)) {
      this.log.info('ending process group', { pgid: leader, reason });
    }
    this.ending ??= endGroups(() => sessionGroups(leader), this.killGraceMs, ['SIGHUP', 'SIGTERM']);
    return this.ending;
  }
}

/** Resolves when a stream has finished or was destroyed, whichever comes first; never rejects. */
function settled(stream: MuxStream): Promise<void> {
  return finished(stream, { readable: false }).then(
    () => undefined,
    () => undefined,
  );
}
