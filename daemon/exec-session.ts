// One client's session on the daemon: turns a Start request into a process in its own process group (or a
// recipe's processes, through recipes/execute.ts), joins stdin, stdout and stderr to the streams the client opened,
// forwards signals and reports how it ended. It never touches wire bytes. When the connection goes, every process
// of the session goes with it.
//
//   Waiting --Start--> Spawning --spawned--> Running --exit + outputs drained--> Exited
//      \                   \--spawn failed (reply refused)--> Waiting
//       \__________________________ connection closed ____________________________--> Closed

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants as fsConstants, existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { finished } from 'node:stream/promises';
import {
  asNetplumbError,
  BadRequestError,
  CommandNotExecutableError,
  CommandNotFoundError,
  EndpointError,
  EnvRefusedError,
  NetplumbError,
  NotPermittedError,
  RequestError,
  SpawnFailedError,
  TooManyStreamsError,
  UnexpectedPacketError,
} from '../protocol/errors.js';
import type { Entry, FieldList } from '../protocol/fields.js';
import type { Mux, MuxStream, SessionHandler } from '../protocol/mux.js';
import type { RecipePlan } from '../recipes/plan.js';
import {
  decodeSignal,
  decodeResize,
  decodeStartRequest,
  encodeExit,
  encodeStageEnd,
  encodeStartReply,
  decodeMintRequest,
  encodeMintReply,
  type MintRequest,
  type MintedKey,
  type Endpoints,
  type ExecRequest,
  type ExportedEnv,
  type PtyRequest,
  type RecipeRequest,
  type StageEnd,
  type ExitStatus,
  type ForwardableSignal,
  type KeyBinding,
} from '../protocol/session.js';
import { MintStatus, PacketType, StartKind, StartStatus } from '../protocol/wire.js';
import { prepareRecipe, type RecipeOutcome, type RecipeRun } from '../recipes/execute.js';
import { envAccepted } from './config.js';
import { DaemonEndpoints, resolveDaemonPath } from './endpoints.js';
import { findProgram, programToStart } from '../bridges/programs.js';
import { checkCommand, checkPath, checkRealPath, type Gluepot } from './gluepots.js';
import { chooseAccountName, daemonAccount, lookupAccount, RunAs, userSpoolDir } from './accounts.js';
import { checkBinding } from './one-time-keys.js';
import { sessionGroups, spawnOnPty, type PtyCommand } from './pty.js';
import type { Logger } from './log.js';
import { groupAlive, signalGroup } from '../recipes/process-groups.js';
import { RecipeChecker } from './recipe-checker.js';
import { errorReply } from '../protocol/error-reply.js';

const enum State {
  Waiting,
  Spawning,
  Running,
  Exited,
  Closed,
}

export interface ExecSessionOptions {
  killGraceMs: number;
  /** Where a recipe's relative file names and named pipes live; its commands run there. */
  spoolDir: string;
  /** Patterns of the variable names a client may export (accept-env). */
  acceptEnv: readonly string[];
  /** What the client may run and name; absent: anything (a client line without gluepot=). */
  gluepot?: Gluepot;
  /** Who the commands may run as: the accounts the client's line allows (`user=`) and the daemon's default. */
  accounts: SessionAccounts;
  /** A one-time key's session: the one command (or recipe) it may start; anything else is refused. */
  binding?: KeyBinding;
  /** A controller's session: makes a one-time key for a binding already checked here. Absent: MintKey is refused. */
  mint?: (binding: KeyBinding & { user: string }, lifetimeSeconds: number) => MintedKey;
}

export interface SessionAccounts {
  /** The `user=` list of the client's line; undefined: only the configured account. */
  allowed: readonly string[] | undefined;
  /** The daemon's run-as account (its own when not configured). */
  configured: string;
}

/** Every session's recipes are checked on this one worker, off the event loop the other sessions share. */
const recipeChecker = new RecipeChecker();

/** The environment every command starts with: the account's login variables, nothing of the daemon's own. */
function minimalEnvironment(runAs: RunAs): Record<string, string> {
  return { PATH: '/usr/local/bin:/usr/bin:/bin', ...runAs.environment(), LANG: 'C.UTF-8' };
}

/**
 * A recipe's own named pipes are made and held by the recipe; the same path cannot also be a replicated -infifo or
 * -outfifo (two readers would share one pipe). Refused before anything is made.
 */
function refuseReplicatedRecipeFifos(endpoints: Endpoints, plan: RecipePlan, spoolDir: string): void {
  const declared = new Set(plan.fifos.map((fifo) => fifo.path));
  for (const path of [...endpoints.inFifos, ...endpoints.outFifos]) {
    const resolved = resolveDaemonPath(path, spoolDir);
    if (declared.has(resolved)) {
      throw new EndpointError(`${path} is a named pipe the recipe declares; replicate another path and let a command copy it`);
    }
  }
}

/** What a pty session without a command runs: the account's login shell. */
function loginShell(runAs: RunAs): string[] {
  return [runAs.account.shell, '-l'];
}

/**
 * The minimal environment, NETPLUMB_SPOOL (where relative named pipes and sockets live), and the client's exported
 * variables (already accepted) on top.
 */
function commandEnvironment(exported: ExportedEnv, identity: SessionIdentity): Record<string, string> {
  const env: Record<string, string> = { ...minimalEnvironment(identity.runAs), NETPLUMB_SPOOL: identity.spoolDir };
  for (const [name, value] of exported) env[name] = value;
  return env;
}

export class ExecSession implements SessionHandler {
  private state = State.Waiting;
  private mux: Mux | undefined;
  private readonly pendingStreams = new Map<number, MuxStream>();
  private groupId: number | undefined;
  private recipeRun: RecipeRun | undefined;
  private endpoints: DaemonEndpoints | undefined;
  /** Programs resolved by the gluepot check, to run as checked; undefined without a gluepot. */
  private programs: string[] | undefined;
  private pty: PtyCommand | undefined;
  /** Who the commands run as and where their spool is, once the Start has been accepted. */
  private identity: SessionIdentity | undefined;
  /** The command leads a pty session: ending it ends every group of that session. */
  private ptySession = false;
  /** True while named pipes, sockets or a recipe's pipes are being made: the end of that step decides what happens next. */
  private preparing = false;
  private killTimer: NodeJS.Timeout | undefined;
  private resolveDone: () => void = () => undefined;
  /** How the connection ended: undefined after an orderly Goodbye. */
  closeError: NetplumbError | undefined;
  /** Settles once the connection has closed and no process of the session is left. */
  readonly done: Promise<void>;

  constructor(
    private readonly log: Logger,
    private readonly options: ExecSessionOptions,
  ) {
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
  }

  attach(mux: Mux): void {
    this.mux = mux;
  }

  get running(): boolean {
    return this.state === State.Spawning || this.state === State.Running;
  }

  /**
   * The command (or recipe) has ended and Exit has gone out, but the connection is still up: its client may still be
   * taking the rest of the out-FIFO rounds, and says Goodbye when it has everything.
   */
  get exitSent(): boolean {
    return this.state === State.Exited;
  }

  /**
   * A stream the client opened: a round of an -infifo or a connection to a -local-socket's service once the command
   * runs, else one a Start will claim. Only a session waiting for its Start keeps unclaimed streams, at most
   * MAX_UNCLAIMED_STREAMS, each forgotten as soon as it closes: a client opening more loses its connection, and
   * one opening and closing streams in a loop holds nothing.
   */
  streamOpened(stream: MuxStream, fields: FieldList): void {
    stream.on('error', () => undefined);
    if (this.state === State.Running && this.endpoints?.route(stream, fields) === true) return;
    if (this.state !== State.Waiting) {
      // Nothing will ever claim it: a Start has been taken already (or the connection is going).
      stream.destroy();
      return;
    }
    // A stream the client closed is destroyed at once but says 'close' only a tick later, after the rest of the
    // packets that came with it: it is forgotten here, by its state.
    for (const [id, pending] of this.pendingStreams) if (pending.destroyed) this.pendingStreams.delete(id);
    if (this.pendingStreams.size >= MAX_UNCLAIMED_STREAMS) {
      stream.destroy();
      throw new TooManyStreamsError(`more than ${MAX_UNCLAIMED_STREAMS} streams opened and not claimed by a Start`);
    }
    this.pendingStreams.set(stream.id, stream);
  }

  packet(type: PacketType, fields: FieldList): void {
    switch (type) {
      case PacketType.Start:
        this.start(fields);
        return;
      case PacketType.Signal:
        this.forwardSignal(fields);
        return;
      case PacketType.Resize:
        this.resize(fields);
        return;
      case PacketType.MintKey:
        this.mintKey(fields);
        return;
      default:
        throw new UnexpectedPacketError(`packet type ${type} not expected by the daemon`);
    }
  }

  closed(error: NetplumbError | undefined): void {
    this.closeError = error;
    const wasRunning = this.running;
    this.state = State.Closed;
    this.endpoints?.close();
    for (const stream of this.pendingStreams.values()) stream.destroy();
    this.pendingStreams.clear();
    if (error !== undefined) this.log.info('connection closed', { code: error.code, reason: error.message });
    this.endProcessGroup(wasRunning ? 'connection closed while the command ran' : undefined);
  }

  /** SIGTERM to the process group (a recipe's: groups) now, SIGKILL after the grace period if anything is left. */
  endProcessGroup(reason: string | undefined): void {
    if (this.preparing) return;
    if (this.recipeRun !== undefined) {
      void this.recipeRun.abort(reason ?? 'session ended').then(() => this.resolveDone());
      return;
    }
    const leader = this.groupId;
    // A pty command leads a session whose jobs may have groups of their own: all of them go, hung up first.
    const groups = (): number[] => (leader === undefined ? [] : this.ptySession ? sessionGroups(leader) : [leader]).filter(groupAlive);
    if (groups().length === 0) {
      this.resolveDone();
      return;
    }
    if (reason !== undefined) this.log.info('ending process group', { pgid: leader, reason });
    for (const group of groups()) {
      if (this.ptySession) signalGroup(group, 'SIGHUP');
      signalGroup(group, 'SIGTERM');
    }
    const deadline = Date.now() + this.options.killGraceMs;
    clearInterval(this.killTimer);
    this.killTimer = setInterval(() => {
      const alive = groups();
      if (alive.length === 0) {
        clearInterval(this.killTimer);
        this.resolveDone();
      } else if (Date.now() >= deadline) {
        for (const group of alive) signalGroup(group, 'SIGKILL');
      }
    }, 50);
  }

  private start(fields: FieldList): void {
    let request: ExecRequest | RecipeRequest;
    let streams: SessionStreams | undefined;
    try {
      if (this.state !== State.Waiting) throw new BadRequestError('one command per connection');
      request = decodeStartRequest(fields);
      streams = this.claimStreams(request);
      const refused = request.env.map(([name]) => name).filter((name) => !envAccepted(name, this.options.acceptEnv));
      if (refused.length > 0) {
        throw new EnvRefusedError(`environment variable${refused.length > 1 ? 's' : ''} not accepted by the daemon: ${refused.join(', ')}`);
      }
      if (this.options.binding !== undefined) checkBinding(this.options.binding, request);
    } catch (error) {
      // Streams the refused request named (those it could claim) are of no more use.
      for (const stream of Object.values(streams ?? {})) stream.destroy();
      this.refuse(asNetplumbError(error));
      return;
    }
    // Spawning from here on, so a second Start is refused while the account, pipes and sockets are readied.
    this.state = State.Spawning;
    this.preparing = true;
    this.identify(request).then(
      (identity) => this.startAs(request, streams, identity),
      (error: unknown) => this.preparationFailed(asNetplumbError(error), streams),
    );
  }

  /**
   * The account the commands run as (refused unless the client's line allows it) and its spool: the daemon's
   * own, or under `users/NAME` in it for another account. A daemon not running as root only runs commands as itself.
   */
  private async identify(request: ExecRequest | RecipeRequest): Promise<SessionIdentity> {
    const { allowed, configured } = this.options.accounts;
    const name = chooseAccountName(request.user, allowed, configured);
    const own = daemonAccount();
    if (name !== own.name && process.geteuid?.() !== 0) {
      throw new NotPermittedError(`netplumbd runs as ${own.name}, not as root: it cannot run commands as ${name}`);
    }
    const runAs = new RunAs(name === own.name ? own : await lookupAccount(name));
    return { runAs, spoolDir: runAs.switches ? userSpoolDir(this.options.spoolDir, runAs.account) : this.options.spoolDir };
  }

  /** Checks the request as the account (a recipe again: the client's check is never trusted), then readies it. */
  private startAs(request: ExecRequest | RecipeRequest, streams: SessionStreams, identity: SessionIdentity): void {
    // The connection went while the account was looked up: preparationFailed only lets the streams go then.
    if (this.state !== State.Spawning) {
      this.preparationFailed(new BadRequestError('connection closed'), streams);
      return;
    }
    this.identity = identity;
    const checking = request.kind === StartKind.Recipe ? this.checkedRecipe(request.text, request.source, identity) : Promise.resolve(undefined);
    checking.then(
      (plan) => this.startChecked(request, streams, identity, plan),
      (error: unknown) => this.preparationFailed(asNetplumbError(error), streams),
    );
  }

  /** startAs() once a recipe's plan is back (plan undefined for a command): the gluepot, then pipes and sockets. */
  private startChecked(request: ExecRequest | RecipeRequest, streams: SessionStreams, identity: SessionIdentity, plan: RecipePlan | undefined): void {
    // The connection went while the recipe was checked: preparationFailed only lets the streams go then.
    if (this.state !== State.Spawning) {
      this.preparationFailed(new BadRequestError('connection closed'), streams);
      return;
    }
    try {
      if (plan !== undefined) refuseReplicatedRecipeFifos(request.endpoints, plan, identity.spoolDir);
      this.programs = this.checkGluepot(request, plan, identity);
    } catch (error) {
      this.preparationFailed(asNetplumbError(error), streams);
      return;
    }
    this.log.info('running as', { user: identity.runAs.account.name, uid: identity.runAs.account.uid });
    DaemonEndpoints.prepare(request.endpoints, identity.spoolDir, this.mux as Mux, this.log, { identity: identity.runAs, ...(this.options.gluepot === undefined ? {} : { gluepot: this.options.gluepot }) }).then(
      (endpoints) => {
        this.preparing = false;
        this.endpoints = endpoints;
        if (this.state !== State.Spawning) {
          endpoints.close();
          this.resolveDone();
        } else if (request.kind === StartKind.Recipe) {
          this.startRecipe(request, plan as RecipePlan, streams);
        } else {
          this.startExec(request, streams);
        }
      },
      (error: unknown) => this.preparationFailed(asNetplumbError(error), streams),
    );
  }

  /**
   * With a gluepot, every program the request would run is resolved (PATH, symlinks) and must be listed, and every
   * absolute file a recipe redirects to outside the spool directory must be allowed; nothing is made before this
   * passes. Returns the resolved programs, in argv or stage order, so what runs is what was checked. Both are
   * resolved with the rights of the account the commands run as: the answer tells the client no more than that
   * account could see.
   */
  private checkGluepot(request: ExecRequest | RecipeRequest, plan: RecipePlan | undefined, identity: SessionIdentity): string[] | undefined {
    const { gluepot } = this.options;
    if (gluepot === undefined) return undefined;
    const { runAs } = identity;
    const searchPath = commandEnvironment(request.env, identity)['PATH'] ?? '';
    if (plan === undefined) {
      const argv = (request as ExecRequest).argv.length > 0 ? (request as ExecRequest).argv : loginShell(runAs);
      return [checkCommand(gluepot, argv, searchPath, workingDirectory(runAs), runAs)];
    }
    for (const stage of plan.stages) {
      for (const redirection of [stage.stdin, stage.stdout, stage.stderr]) {
        if (redirection.kind === 'file') checkPath(gluepot, redirection.path, plan.spoolDir, `file of ${stage.name}`, runAs);
      }
    }
    return plan.stages.map((stage) => checkCommand(gluepot, stage.argv, searchPath, plan.spoolDir, runAs));
  }

  /**
   * A controller's request for a one-time key: checked as a Start of the same command would be (the account the
   * client's line allows, the gluepot, a recipe's check), so a key can never grant more than its controller has.
   */
  private mintKey(fields: FieldList): void {
    const reply = (entries: Entry[]): void => this.mux?.connection.sendFields(PacketType.MintKey, entries);
    const refuse = (error: unknown): void => {
      const failure = asNetplumbError(error);
      this.log.info('one-time key not minted', { code: failure.code, reason: failure.message });
      reply(encodeMintReply({ status: MintStatus.Refused, ...errorReply(failure, 'request') }));
    };
    let request: MintRequest;
    try {
      if (this.options.mint === undefined) {
        throw new NotPermittedError('only a controller may mint one-time keys (its authorized-clients line needs the controller flag)');
      }
      if (this.state !== State.Waiting) throw new BadRequestError('a one-time key is minted before any command starts');
      request = decodeMintRequest(fields);
    } catch (error) {
      refuse(error);
      return;
    }
    const { binding } = request;
    const asStart: ExecRequest | RecipeRequest = { ...binding, env: [], stdin: 0, stdout: 0, stderr: 0 };
    const mint = this.options.mint;
    this.identify(asStart).then(
      async (identity) => {
        try {
          const plan = binding.kind === StartKind.Recipe ? await this.checkedRecipe(binding.text, binding.source, identity) : undefined;
          // The connection went while the recipe was checked: nobody is left to hand a key to.
          if (this.state === State.Closed) throw new BadRequestError('connection closed');
          this.checkGluepot(asStart, plan, identity);
          const key = mint({ ...binding, user: identity.runAs.account.name }, request.lifetimeSeconds);
          reply(encodeMintReply({ status: MintStatus.Minted, key }));
        } catch (error) {
          refuse(error);
        }
      },
      refuse,
    );
  }

  /** A recipe checked by the daemon itself (on the checker's worker), its errors as the request's refusal. */
  private async checkedRecipe(text: string, source: string, identity: SessionIdentity): Promise<RecipePlan> {
    return await recipeChecker.check(text, { sourceName: source, spoolDir: identity.spoolDir });
  }

  /** Pipes, sockets or a process could not be made: the Start is refused and the session waits for another. */
  private preparationFailed(error: NetplumbError, streams: SessionStreams): void {
    this.preparing = false;
    this.endpoints?.close();
    this.endpoints = undefined;
    for (const stream of Object.values(streams)) stream.destroy();
    if (this.state !== State.Spawning) {
      this.resolveDone();
      return;
    }
    this.state = State.Waiting;
    this.refuse(error);
  }

  private startExec(request: ExecRequest, streams: SessionStreams): void {
    if (request.pty !== undefined) {
      this.startPty(request, request.pty, streams);
      return;
    }
    const [program] = request.argv as [string, ...string[]];
    outputPipes().then(
      (outputs) => this.spawnWithPipes(request, streams, outputs),
      (error: unknown) => {
        if (this.state !== State.Spawning) return;
        this.preparationFailed(new SpawnFailedError(`cannot make pipes for ${program}: ${(error as Error).message}`, { cause: error }), streams);
      },
    );
  }

  /**
   * Readies all pipes of a recipe (checked again by start(): the client's check is never trusted), then runs it.
   * Each command's end goes out as a StageEnd as it happens; Exit carries the recipe's status.
   */
  private startRecipe(request: RecipeRequest, plan: RecipePlan, streams: SessionStreams): void {
    this.preparing = true;
    const recipeLog = this.log.child({ recipe: request.source });
    const identity = this.identity as SessionIdentity;
    const { gluepot } = this.options;
    prepareRecipe(plan, {
      ...(this.programs === undefined ? {} : { programs: this.programs }),
      ...(gluepot === undefined ? {} : { checkFile: (realPath: string) => checkRealPath(gluepot, realPath, identity.spoolDir, 'redirection file') }),
      identity: identity.runAs,
      env: commandEnvironment(request.env, identity),
      killGraceMs: this.options.killGraceMs,
      onStageEnd: (end) => this.stageEnded(recipeLog, end),
    }).then(
      (run) => {
        this.preparing = false;
        this.recipeRun = run;
        if (this.state !== State.Spawning) {
          // The connection went while the pipes were being made.
          void run.abort('connection closed during start').then(() => this.resolveDone());
          return;
        }
        this.state = State.Running;
        recipeLog.info('recipe started', { commands: plan.stages.length, spool: plan.spoolDir });
        this.mux?.connection.sendFields(PacketType.Start, encodeStartReply({ status: StartStatus.Started }));
        const { stdin, stdout, stderr } = streams;
        // The daemon never writes to the stdin stream nor reads the output streams; a recipe that does not read
        // plumb's stdin drops it at once, so plumb stops sending.
        stdin.end();
        if (!plan.readsPlumbStdin) stdin.destroy();
        stdout.resume();
        stderr.resume();
        run.start({ stdin, stdout, stderr });
        void run.outcome.then((outcome) => this.recipeEnded(recipeLog, outcome, stdin));
      },
      (error: unknown) => this.preparationFailed(asNetplumbError(error), streams),
    );
  }

  private stageEnded(log: Logger, end: StageEnd): void {
    const { status } = end;
    // `message` would become the log line's own text: the reason goes under its own key.
    const how = 'error' in status ? { code: status.code, error: status.error, reason: status.message } : status;
    log.info('recipe command ended', { stage: end.stage, name: end.name, ...how });
    if (this.state === State.Running) this.mux?.connection.sendFields(PacketType.StageEnd, encodeStageEnd(end));
  }

  private recipeEnded(log: Logger, outcome: RecipeOutcome, stdin: MuxStream): void {
    if (outcome.abortedBecause !== undefined) log.info('recipe aborted', { reason: outcome.abortedBecause, ...outcome.status });
    else log.info('recipe ended', outcome.status);
    this.exited(outcome.status, stdin);
    if (this.state === State.Closed) this.resolveDone();
  }

  private spawnWithPipes(request: ExecRequest, streams: SessionStreams, outputs: OutputPipes): void {
    if (this.state !== State.Spawning) {
      // The connection went while the pipes were being made.
      closeSync(outputs.writers.stdout);
      closeSync(outputs.writers.stderr);
      outputs.stdout.destroy();
      outputs.stderr.destroy();
      return;
    }
    const [program, ...args] = request.argv as [string, ...string[]];
    const identity = this.identity as SessionIdentity;
    const env = commandEnvironment(request.env, identity);
    const cwd = workingDirectory(identity.runAs);
    let child: ChildProcess;
    try {
      const named = this.programToRun(program, env, cwd);
      const [file, fileArgs] = identity.runAs.command(named, args);
      child = spawn(file, fileArgs, {
        argv0: program,
        stdio: ['pipe', outputs.writers.stdout, outputs.writers.stderr],
        detached: true,
        env,
        cwd,
      });
    } catch (error) {
      // Node throws at once for some failures (ENOTDIR, E2BIG, ...) and reports others as 'error' later.
      outputs.stdout.destroy();
      outputs.stderr.destroy();
      this.preparationFailed(error instanceof NetplumbError ? error : spawnError(program, error as NodeJS.ErrnoException), streams);
      return;
    } finally {
      // The command has its own copies now; the daemon's must go, or the readers never see EOF.
      closeSync(outputs.writers.stdout);
      closeSync(outputs.writers.stderr);
    }
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (this.state !== State.Spawning) {
        this.log.warn('process error', { error: error.message });
        return;
      }
      outputs.stdout.destroy();
      outputs.stderr.destroy();
      this.preparationFailed(spawnError(program, error), streams);
    });
    child.once('spawn', () => this.spawned(child, request, streams, outputs));
  }

  private spawned(
    child: ChildProcess,
    request: ExecRequest,
    streams: SessionStreams,
    outputs: OutputPipes,
  ): void {
    if (this.state !== State.Spawning) {
      // The connection went while the process was starting.
      outputs.stdout.destroy();
      outputs.stderr.destroy();
      this.groupId = child.pid;
      this.endProcessGroup('connection closed during start');
      return;
    }
    this.state = State.Running;
    this.groupId = child.pid;
    this.log.info('command started', { pid: child.pid, argv: request.argv });
    this.mux?.connection.sendFields(PacketType.Start, encodeStartReply({ status: StartStatus.Started }));
    const { stdin, stdout, stderr } = streams;
    // The daemon never writes to the command's stdin stream nor reads its output streams: say so at once.
    stdin.end();
    stdout.resume();
    stderr.resume();
    const childIn = child.stdin as NonNullable<ChildProcess['stdin']>;
    const childOut = outputs.stdout;
    const childErr = outputs.stderr;
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
      void outputsDone.then(() => this.exited(status, stdin));
    });
  }

  /**
   * The command on a pseudo-terminal: its output (stdout and stderr together, as a terminal shows them) goes to the
   * stdout stream, the stdin stream is typed into it, and Resize packets change its size. Without argv it is the
   * user's login shell.
   */
  private startPty(request: ExecRequest, pty: PtyRequest, streams: SessionStreams): void {
    const identity = this.identity as SessionIdentity;
    const asked = request.argv.length > 0 ? request.argv : loginShell(identity.runAs);
    const env = commandEnvironment(request.env, identity);
    const cwd = workingDirectory(identity.runAs);
    const { stdin, stdout, stderr } = streams;
    let argv: string[] = [];
    let command: PtyCommand;
    let exited = false;
    try {
      // node-pty would report a program it cannot exec only as output and status 1: it is found first, as the account.
      const named = this.programToRun(asked[0] as string, env, cwd);
      argv = identity.runAs.command(named, asked.slice(1)).flat();
      command = spawnOnPty(argv, pty, {
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
          this.pty = undefined;
          stdin.pause();
          // The last output arrives right after the exit; end the stream once it is in.
          setTimeout(() => {
            stdout.end();
            void settled(stdout).then(() => this.exited(status, stdin));
          }, PTY_LAST_OUTPUT_MS);
        },
      });
    } catch (error) {
      this.preparationFailed(asNetplumbError(error), streams);
      return;
    }
    this.state = State.Running;
    this.groupId = command.pid;
    this.ptySession = true;
    this.pty = command;
    this.log.info('command started', { pid: command.pid, argv, pty: pty.term });
    this.mux?.connection.sendFields(PacketType.Start, encodeStartReply({ status: StartStatus.Started }));
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
  }

  private resize(fields: FieldList): void {
    const { cols, rows } = decodeResize(fields);
    if (this.state === State.Running) this.pty?.resize(cols, rows);
  }

  /** The command (or recipe) has ended and its output is out: once its out-FIFOs are flushed too, Exit goes. */
  private exited(status: ExitStatus, stdin: MuxStream): void {
    if (this.state !== State.Running) return;
    void (this.endpoints?.flush() ?? Promise.resolve()).then(() => {
      if (this.state !== State.Running) return;
      this.state = State.Exited;
      this.endpoints?.close();
      if (this.recipeRun === undefined) this.log.info('command ended', status);
      if (!stdin.destroyed) stdin.destroy();
      this.mux?.connection.sendFields(PacketType.Exit, encodeExit(status));
    });
  }

  /** A signal the daemon does not forward is a refused request, logged; the connection stays up. */
  private forwardSignal(fields: FieldList): void {
    let signal: ForwardableSignal;
    try {
      signal = decodeSignal(fields);
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      this.log.warn('signal refused', { code: error.code, reason: error.message });
      return;
    }
    if (this.state !== State.Running) return;
    if (this.recipeRun !== undefined) {
      this.log.info('forwarding signal to the recipe', { signal });
      this.recipeRun.signal(signal);
      return;
    }
    if (this.groupId === undefined) return;
    this.log.info('forwarding signal', { signal, pgid: this.groupId });
    signalGroup(this.groupId, signal);
  }

  /**
   * What to start for argv[0] of a command: the program the gluepot check resolved, else the one the account finds,
   * found the same way for every account (bridges/programs.ts says what remains); a RequestError when there is none.
   */
  private programToRun(program: string, env: Record<string, string>, cwd: string): string {
    const { runAs } = this.identity as SessionIdentity;
    return this.programs?.[0] ?? programToStart(findProgram(program, env['PATH'] ?? '', cwd, runAs), runAs);
  }

  /** The three streams a Start names, taken all or none: a Start naming one it cannot have leaves the others. */
  private claimStreams(request: { stdin: number; stdout: number; stderr: number }): SessionStreams {
    const find = (id: number): MuxStream => {
      const stream = this.pendingStreams.get(id);
      if (stream === undefined || stream.destroyed) throw new BadRequestError(`stream ${id} was not opened, or is closed`);
      return stream;
    };
    const streams = { stdin: find(request.stdin), stdout: find(request.stdout), stderr: find(request.stderr) };
    if (new Set(Object.values(streams)).size !== 3) throw new BadRequestError('a Start names three different streams');
    for (const stream of Object.values(streams)) this.pendingStreams.delete(stream.id);
    return streams;
  }

  private refuse(error: NetplumbError): void {
    this.log.info('start refused', { code: error.code, reason: error.message });
    this.mux?.connection.sendFields(
      PacketType.Start,
      encodeStartReply({ status: StartStatus.Refused, ...errorReply(error, 'request') }),
    );
  }
}

const execFileAsync = promisify(execFile);

/**
 * Streams a session keeps open before its Start claims them: the three a Start names (stdin, stdout, stderr). plumb
 * opens exactly those; a client opening more before its Start is not plumb.
 */
export const MAX_UNCLAIMED_STREAMS = 3;

/** Input queued for a pty beyond which the stdin stream is paused, and how often it is checked then. */
const PTY_INPUT_QUEUE_BYTES = 256 * 1024;
const PTY_INPUT_POLL_MS = 10;

/** How long after a pty command's exit its last output is awaited before the output stream ends. */
const PTY_LAST_OUTPUT_MS = 250;

/** Who a session's commands run as, and the spool directory they use. */
interface SessionIdentity {
  runAs: RunAs;
  spoolDir: string;
}

/** The three streams the client opened for a Start: the command's (or the recipe's) stdin, stdout and stderr. */
interface SessionStreams {
  stdin: MuxStream;
  stdout: MuxStream;
  stderr: MuxStream;
}

/**
 * The account's home directory, or / when it does not exist: a missing cwd fails spawn with ENOENT, which
 * would read as "command not found".
 */
function workingDirectory(runAs: RunAs): string {
  const { home } = runAs.account;
  return existsSync(home) ? home : '/';
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

function spawnError(program: string, error: NodeJS.ErrnoException): RequestError {
  if (error.code === 'ENOENT') return new CommandNotFoundError(`command not found: ${program}`);
  if (error.code === 'EACCES') return new CommandNotExecutableError(`permission denied: ${program}`);
  return new SpawnFailedError(`cannot run ${program}: ${error.message}`);
}

/** Resolves when a stream has finished or was destroyed, whichever comes first; never rejects. */
function settled(stream: MuxStream): Promise<void> {
  return finished(stream, { readable: false }).then(
    () => undefined,
    () => undefined,
  );
}
