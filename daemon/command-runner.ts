// A plain command on pipes: its own process group, stdin fed from the client's stdin stream, stdout and stderr
// (real pipes, so a writer whose reader went gets EPIPE/SIGPIPE as locally) copied to the client's streams, and the
// exit status once both outputs are out.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fsConstants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { errorFor, NetplumbError, RequestError, SpawnFailedError } from '../protocol/errors.js';
import type { ExecRequest, ExitStatus } from '../protocol/session.js';
import { endGroups, spawnFailure } from '../recipes/process-groups.js';
import { LeaderRunner, programToRun, settled, type Runner, type SessionStreams } from './runner.js';
import { workingDirectory } from './start-policy.js';

const execFileAsync = promisify(execFile);

export class CommandRunner extends LeaderRunner implements Runner {
  private child: ChildProcess | undefined;
  private outputs: OutputPipes | undefined;
  private attached = false;

  protected get leader(): number | undefined {
    return this.child?.pid;
  }

  private get request(): ExecRequest {
    return this.options.prepared.request as ExecRequest;
  }

  async start(): Promise<void> {
    const [program, ...args] = this.request.argv as [string, ...string[]];
    let outputs: OutputPipes;
    try {
      outputs = await outputPipes();
    } catch (error) {
      throw new SpawnFailedError(`cannot make pipes for ${program}: ${(error as Error).message}`, { cause: error });
    }
    const { prepared } = this.options;
    const cwd = workingDirectory(prepared.identity.runAs);
    let child: ChildProcess;
    try {
      const named = programToRun(prepared, program, cwd);
      const [file, fileArgs] = prepared.identity.runAs.command(named, args);
      child = spawn(file, fileArgs, { argv0: program, stdio: ['pipe', outputs.writers.stdout, outputs.writers.stderr], detached: true, env: prepared.env, cwd });
    } catch (error) {
      // Node throws at once for some failures (ENOTDIR, E2BIG, ...) and reports others as 'error' later.
      outputs.stdout.destroy();
      outputs.stderr.destroy();
      throw error instanceof NetplumbError ? error : refusal(program, error as NodeJS.ErrnoException);
    } finally {
      // The command has its own copies now; the daemon's must go, or the readers never see EOF.
      closeSync(outputs.writers.stdout);
      closeSync(outputs.writers.stderr);
    }
    this.outputs = outputs;
    await new Promise<void>((resolve, reject) => {
      child.on('error', (error: NodeJS.ErrnoException) => {
        if (this.child !== undefined) {
          this.log.warn('process error', { error: error.message });
          return;
        }
        outputs.stdout.destroy();
        outputs.stderr.destroy();
        reject(refusal(program, error));
      });
      child.once('spawn', () => {
        this.child = child;
        resolve();
      });
    });
  }

  attach(streams: SessionStreams): void {
    this.attached = true;
    const child = this.child as ChildProcess;
    const { stdout: childOut, stderr: childErr } = this.outputs as OutputPipes;
    this.log.info('command started', { pid: child.pid, argv: this.request.argv });
    const { stdin, stdout, stderr } = streams;
    // The daemon never writes to the command's stdin stream nor reads its output streams: say so at once.
    stdin.end();
    stdout.resume();
    stderr.resume();
    const childIn = child.stdin as NonNullable<ChildProcess['stdin']>;
    // A command that stops reading (or exits) drops the client's stdin stream, so the client stops sending.
    childIn.on('error', () => stdin.destroy());
    stdin.on('error', () => childIn.destroy());
    stdin.pipe(childIn);
    for (const [source, sink] of [
      [childOut, stdout],
      [childErr, stderr],
    ] as const) {
      source.pipe(sink);
      // The client dropped this output: the command's next write fails (EPIPE or SIGPIPE), as with a local pipe.
      sink.on('close', () => {
        if (!sink.writableFinished) source.destroy();
      });
      sink.on('error', () => source.destroy());
    }
    const outputsDone = Promise.all([settled(stdout), settled(stderr)]);
    child.once('exit', (code, signal) => {
      const status: ExitStatus = signal !== null ? { signal } : { code: code ?? 0 };
      void outputsDone.then(() => this.ended(status));
    });
  }

  resize(): void {
    // No terminal to size.
  }

  protected endGroups(pgid: number, reason: string | undefined): Promise<void> {
    if (!this.attached) {
      // Never joined to the client's streams: nobody else will read these.
      this.outputs?.stdout.destroy();
      this.outputs?.stderr.destroy();
    }
    if (reason !== undefined) this.log.info('ending process group', { pgid, reason });
    return endGroups(() => [pgid], { graceMs: this.options.killGraceMs });
  }
}

function refusal(program: string, error: NodeJS.ErrnoException): RequestError {
  const { code, message } = spawnFailure(program, error);
  return errorFor(code, message, { cause: error });
}

/** The reading ends of the command's stdout and stderr pipes, and the writing ends the command gets. */
interface OutputPipes {
  stdout: Socket;
  stderr: Socket;
  writers: { stdout: number; stderr: number };
}

/**
 * Real pipes for the command's stdout and stderr. child_process 'pipe' gives socketpairs, and a writer whose
 * reader closed a socket with unread data gets ECONNRESET instead of EPIPE/SIGPIPE: `yes` would complain and
 * exit 1 where a local pipe ends it quietly by SIGPIPE. Node cannot make an anonymous pipe, so two FIFOs are made
 * in a private directory, opened (the reader first, so opening the writer does not block) and unlinked at once.
 */
async function outputPipes(): Promise<OutputPipes> {
  const dir = mkdtempSync(join(tmpdir(), 'netplumbd-pipes-'));
  const fds: number[] = [];
  try {
    const paths = [join(dir, 'stdout'), join(dir, 'stderr')] as const;
    // Asynchronous, so other connections are served while mkfifo runs.
    await execFileAsync('mkfifo', ['-m', '600', ...paths]);
    for (const path of paths) fds.push(openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK));
    for (const path of paths) fds.push(openSync(path, fsConstants.O_WRONLY));
  } catch (error) {
    for (const fd of fds) closeSync(fd);
    throw error;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const [outRead, errRead, outWrite, errWrite] = fds as [number, number, number, number];
  return {
    stdout: new Socket({ fd: outRead, readable: true, writable: false }),
    stderr: new Socket({ fd: errRead, readable: true, writable: false }),
    writers: { stdout: outWrite, stderr: errWrite },
  };
}
