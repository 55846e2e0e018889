// A command on a pseudo-terminal (plumb -t): its output (stdout and stderr together, as a terminal shows them) goes
// to the stdout stream, the stdin stream is typed into it no faster than the pty takes it, and Resize packets change
// its size. Without argv it is the account's login shell. Ending it ends every process group of its session.

import type { ExecRequest, ExitStatus, PtyRequest } from '../protocol/session.js';
import { endGroups } from '../recipes/process-groups.js';
import type { Logger } from './log.js';
import { sessionGroups, spawnOnPty, type PtyCommand } from './pty.js';
import { LeaderRunner, programToRun, settled, type Runner, type RunnerOptions, type SessionStreams } from './runner.js';
import { loginShell, workingDirectory } from './start-policy.js';

/** Input queued for a pty beyond which the stdin stream is paused, and how often it is checked then. */
const PTY_INPUT_QUEUE_BYTES = 256 * 1024;
const PTY_INPUT_POLL_MS = 10;

/** How long after a pty command's exit its last output is awaited before the output stream ends. */
const PTY_LAST_OUTPUT_MS = 250;

export class PtyRunner extends LeaderRunner implements Runner {
  private command: PtyCommand | undefined;
  private argv: string[] = [];
  private streams: SessionStreams | undefined;
  private exited = false;

  constructor(
    log: Logger,
    options: RunnerOptions,
    private readonly pty: PtyRequest,
  ) {
    super(log, options);
  }

  protected get leader(): number | undefined {
    return this.command?.pid;
  }

  start(): Promise<void> {
    try {
      this.spawn();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  private spawn(): void {
    const { prepared } = this.options;
    const { runAs } = prepared.identity;
    const request = prepared.request as ExecRequest;
    const asked = request.argv.length > 0 ? request.argv : loginShell(runAs);
    const cwd = workingDirectory(runAs);
    // node-pty would report a program it cannot exec only as output and status 1: it is found first, as the account.
    const named = programToRun(prepared, asked[0] as string, cwd);
    this.argv = runAs.command(named, asked.slice(1)).flat();
    const command = spawnOnPty(this.argv, this.pty, {
      env: prepared.env,
      cwd,
      onOutput: (data) => {
        const stdout = this.streams?.stdout;
        if (stdout === undefined || stdout.destroyed || stdout.writableEnded) return;
        // After exit the rest of the output is read at once (node-pty drops what it has not read 200 ms on).
        if (!stdout.write(data) && !this.exited) {
          command.pause();
          stdout.once('drain', () => command.resume());
        }
      },
      onExit: (status) => this.commandExited(command, status),
    });
    this.command = command;
  }

  private commandExited(command: PtyCommand, status: ExitStatus): void {
    this.exited = true;
    command.resume();
    const streams = this.streams;
    if (streams === undefined) {
      this.ended(status);
      return;
    }
    streams.stdin.pause();
    // The last output arrives right after the exit; end the stream once it is in.
    setTimeout(() => {
      streams.stdout.end();
      void settled(streams.stdout).then(() => this.ended(status));
    }, PTY_LAST_OUTPUT_MS);
  }

  attach(streams: SessionStreams): void {
    const command = this.command as PtyCommand;
    this.streams = streams;
    this.log.info('command started', { pid: command.pid, argv: this.argv, pty: this.pty.term });
    const { stdin, stdout, stderr } = streams;
    // A terminal has one output: the stderr stream ends at once; the daemon never writes to stdin.
    stdin.end();
    stderr.end();
    stdout.resume();
    stderr.resume();
    // Input goes to the pty no faster than it takes it: above the bound the stream stops being read, so no window
    // credit goes back and the client is held back.
    const throttle = (): void => {
      if (command.queuedInputBytes() <= PTY_INPUT_QUEUE_BYTES / 2 || this.exited) stdin.resume();
      else setTimeout(throttle, PTY_INPUT_POLL_MS);
    };
    stdin.on('data', (chunk: Buffer) => {
      if (this.exited) return;
      command.write(chunk);
      if (command.queuedInputBytes() > PTY_INPUT_QUEUE_BYTES) {
        stdin.pause();
        setTimeout(throttle, PTY_INPUT_POLL_MS);
      }
    });
    // plumb dropped the output: keep reading the pty (and discard), so the command is not blocked forever.
    stdout.on('close', () => command.resume());
  }

  resize(cols: number, rows: number): void {
    if (!this.exited) this.command?.resize(cols, rows);
  }

  /** The command leads a session whose jobs may have groups of their own: all of them go, hung up first. */
  protected endGroups(leader: number, reason: string | undefined): Promise<void> {
    if (reason !== undefined && sessionGroups(leader).length > 0) this.log.info('ending process group', { pgid: leader, reason });
    return endGroups(() => sessionGroups(leader), { graceMs: this.options.killGraceMs, hangUpFirst: true });
  }
}
