// The netplumb library, what `import { connect } from 'netplumb'` gives a Node program: connect() reaches a
// machine's daemon and authenticates both ends as plumb does (identity, known hosts, one-time key), and the Machine
// it resolves with runs commands and one-machine recipes with their streams and exit status, mints one-time keys,
// and closes. plumb runs its commands, recipes and key minting through this same code.
//
//   const machine = await connect('db1', { identity: '/etc/backup/identity' });
//   const dump = machine.run(['pg_dump', 'sales']);
//   dump.stdout.pipe(createWriteStream('sales.sql'));
//   const status = await dump.exit;
//   await machine.close();

import { EventEmitter } from 'node:events';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import type { SecureConnection } from '../protocol/connection.js';
import { ConnectionLostError, UsageError, type NetplumbError } from '../protocol/errors.js';
import { formatPublicKeyLine } from '../protocol/keys.js';
import { ENV_NAME_PATTERN, type ExportedEnv, type ForwardableSignal, type StageBytes, type StageEnd } from '../protocol/session.js';
import { DEFAULT_LIMITS, StartKind } from '../protocol/wire.js';
import { wireBytes } from './client.js';
import { ClientEndpoints, NO_ENDPOINT_OPTIONS, remoteEndpoints, type EndpointOptions } from './endpoints.js';
import { connectToMachine, withMachineSettings, type MachineOptions } from './machine.js';
import { formatKeyFile, mintOneTimeKey } from './one-time-key.js';
import { clientPaths } from './paths.js';
import { runRemoteCommand, type LocalTerminal, type RemoteCommandOptions, type RemoteJob } from './run.js';
import { StreamMeter, type StreamTotals } from './stream-meter.js';

export {
  ErrorCode,
  NetplumbError,
  RemoteError,
  ConnectionLostError,
  HostKeyChangedError,
  HostKeyUnknownError,
  NotAuthorizedError,
  RecipeError,
  UsageError,
} from '../protocol/errors.js';
export type { ExportedEnv, ForwardableSignal, StageBytes, StageEnd, StageStatus } from '../protocol/session.js';
export type { EndpointOptions, SocketPair } from './endpoints.js';
export type { LocalTerminal } from './run.js';
export type { StreamTotals } from './stream-meter.js';

export interface ConnectOptions {
  /** The private key to authenticate with (default: $NETPLUMB_HOME/identity). */
  identity?: string;
  /** The file of pinned daemon host keys (default: $NETPLUMB_HOME/known_hosts). */
  knownHosts?: string;
  /** Pin the host key of a machine not seen before, as plumb -accept-new; absent: as the machine's AcceptNew in the config. */
  acceptNew?: boolean;
  /** The daemon's port, over one the machine argument or its alias gives. */
  port?: number;
  /** Authenticate with this one-time key file (and pin the host key it names) instead of an identity. */
  oneTimeKey?: string;
  /** Where the identity, known_hosts and hosts files are (default: $NETPLUMB_HOME, or ~/.netplumb). */
  home?: string;
  /** Bytes per second each connection carries at most, each way (plumb -limit-rate). */
  limitRate?: number;
  /** Lines plumb -v would print: what is done, step by step. Default: none. */
  onNote?: (line: string) => void;
  /** What plumb says whatever -v says: a host key newly pinned, a doubtful known_hosts line. Default: none. */
  onWarning?: (line: string) => void;
}

/** What a command or recipe is given; the streams it is not given are offered as the run's own. */
export interface RunOptions {
  /** The account on the machine (plumb -user); the authorized-clients line must allow it. */
  user?: string;
  /** Variables set for the command, as plumb -export sets them. */
  env?: Readonly<Record<string, string>>;
  /** Read as the command's stdin; absent: the run's `stdin` is a stream to write to (end it to send EOF). */
  stdin?: Readable;
  /** Takes the command's stdout; absent: the run's `stdout` is a stream to read. */
  stdout?: Writable;
  /** Takes the command's stderr; absent: the run's `stderr` is a stream to read. */
  stderr?: Writable;
  /**
   * Named pipes and sockets replicated for the command, as plumb's -infifo, -outfifo, -socket, -local-socket:
   * their options, or what prepareEndpoints() made of them before connecting. Either way the run removes what it
   * made when it ends.
   */
  endpoints?: Partial<EndpointOptions> | LocalEndpoints;
  /** Run the command on a pseudo-terminal of this type (plumb -t); a TTY given as input goes raw meanwhile. */
  terminal?: LocalTerminal;
  /**
   * Whose SIGINT, SIGTERM, SIGHUP and SIGQUIT events are passed on to the command (`process` for this process's
   * own), once it has started; the third SIGINT gives up on the command. Absent: only what signal() sends.
   */
  signals?: NodeJS.EventEmitter;
  /** Said when a local named pipe or socket fails while the command runs (the command goes on). */
  onEndpointError?: (error: NetplumbError) => void;
}

/** A recipe to run: a file (read here), or its text with the name its errors are reported under. */
export type RecipeSource = { file: string } | { text: string; source: string };

export interface RecipeOptions extends RunOptions {
  /** The spool directory names are checked against before sending (the daemon checks them again in its own). */
  spoolDir?: string;
  /**
   * The daemon counts what each command takes in and gives out, whatever its streams are joined to, and each
   * command's counts come as a `bytes` event after its `stage` event. Its pipes then pass through the daemon.
   */
  countBytes?: boolean;
}

/**
 * What one command or recipe is doing; the streams are null where the options gave the run one of the caller's.
 * Read stdout and stderr (or resume() them): as with a child process, output nobody takes holds the command, and
 * `exit` waits for all of it. A stdin given in the options is read to its end, or destroyed when the command ends.
 */
export interface RemoteRun {
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /**
   * The exit status as plumb would end with it: the command's (a recipe's, by its pipefail rule), 128+N when signal
   * N ended it. Rejects with a NetplumbError when the daemon refuses the request or the connection fails.
   */
  readonly exit: Promise<number>;
  /**
   * Sends a signal to the command (a recipe: to every command still running; forward(): SIGINT, SIGTERM or SIGHUP
   * ends it). A signal sent before the daemon has started the command is not delivered.
   */
  signal(name: ForwardableSignal): void;
  /** What this run's connection has carried on the wire so far, framing and encryption included. */
  wireBytes(): { sent: number; received: number };
  /** What each of the run's streams has carried so far: stdin, stdout, stderr, each named pipe and socket. */
  streams(): StreamTotals[];
}

/**
 * A recipe run, with a `stage` event for each command's end, in the order the daemon reports them, and with
 * countBytes a `bytes` event for each command's counts once its output is all in.
 */
export interface RemoteRecipeRun extends RemoteRun {
  on(event: 'stage', listener: (end: StageEnd) => void): this;
  once(event: 'stage', listener: (end: StageEnd) => void): this;
  off(event: 'stage', listener: (end: StageEnd) => void): this;
  on(event: 'bytes', listener: (bytes: StageBytes) => void): this;
  once(event: 'bytes', listener: (bytes: StageBytes) => void): this;
  off(event: 'bytes', listener: (bytes: StageBytes) => void): this;
}

/** A command (argv, no shell) or a recipe file a one-time key is bound to, with the account it runs as. */
export type KeyJob = ({ argv: readonly string[] } | RecipeSource) & { user?: string };

export interface MintOptions {
  /** How long the key stays good, in seconds (the daemon caps it). */
  lifetimeSeconds: number;
  /** Remote named pipes and sockets the key's command may use (the local paths are the node's business). */
  endpoints?: Partial<EndpointOptions>;
}

/** A minted one-time key: its file's text goes to the node that runs the bound command (connect's oneTimeKey). */
export interface OneTimeKey {
  fingerprint: string;
  expiresAt: Date;
  /** The account the bound command runs as. */
  user: string;
  /** The key file, private half included: write it with mode 0600, and only where the node can read it. */
  keyFile: string;
}

/** The local ends of a run's named pipes and sockets, made ready by prepareEndpoints(). */
export type LocalEndpoints = ClientEndpoints;

/**
 * Makes the local named pipes that are missing and checks the local socket paths, before connecting: a mistake
 * here then costs no connection, no host key pinned and no one-time key. Hand the result to run() as `endpoints`;
 * close() it if it is never used.
 */
export function prepareEndpoints(endpoints: Partial<EndpointOptions>, onEndpointError: (error: NetplumbError) => void = () => undefined): Promise<LocalEndpoints> {
  return ClientEndpoints.prepare(endpointOptions(endpoints), onEndpointError);
}

/**
 * Connects to the machine's daemon and authenticates both ends; resolves once that is done. The machine is named as
 * plumb takes it: its Host block in $NETPLUMB_HOME/config and its alias in $NETPLUMB_HOME/hosts apply, below the
 * options given here; the config's User is the account runs use unless they name one.
 */
export async function connect(machine: string, options: ConnectOptions = {}): Promise<Machine> {
  const given: MachineOptions = {
    machine,
    identity: options.identity,
    knownHosts: options.knownHosts,
    acceptNew: options.acceptNew,
    port: options.port,
    oneTimeKey: options.oneTimeKey,
    limitRate: options.limitRate,
    paths: clientPaths(options.home === undefined ? process.env : { ...process.env, NETPLUMB_HOME: options.home }),
    onNote: options.onNote ?? (() => undefined),
    onWarning: options.onWarning ?? (() => undefined),
    user: undefined,
  };
  // Resolved once: every connection the Machine makes goes where the first did, with the same settings.
  const resolved = withMachineSettings(given);
  return new Machine(resolved, await connectToMachine(resolved));
}

/**
 * One machine's daemon, authenticated. Each command, recipe or key minted takes a connection of its own (the
 * protocol runs one job per connection): the first takes the one connect() made, the others are made anew, with
 * the same checks.
 */
export class Machine {
  /** The daemon's host key, as it proved it holds it. */
  readonly hostKey: string;
  readonly hostKeyFingerprint: string;
  readonly cipher: string;
  private idle: SecureConnection | undefined;
  private readonly busy = new Set<SecureConnection>();
  private closed = false;

  constructor(
    private readonly options: MachineOptions,
    first: SecureConnection,
  ) {
    this.idle = first;
    this.hostKey = formatPublicKeyLine(first.peer.peer);
    this.hostKeyFingerprint = first.peer.peer.fingerprint;
    this.cipher = first.peer.cipher;
  }

  /** Runs a command (an argv: no shell) on the machine; with a terminal, no argv starts the account's login shell. */
  run(argv: readonly string[], options: RunOptions = {}): RemoteRun {
    if (argv.length === 0 && options.terminal === undefined) throw new UsageError('run: the command is empty (only on a terminal does none mean a login shell)');
    const job: RemoteJob = { kind: StartKind.Exec, argv: [...argv], ...this.userOf(options) };
    return this.start(job, options);
  }

  /** Runs a recipe on the machine; its commands' ends come as `stage` events. */
  runRecipe(recipe: RecipeSource, options: RecipeOptions = {}): RemoteRecipeRun {
    const stages = new EventEmitter();
    const counting = options.countBytes === true ? { countBytes: true } : {};
    const job = loadRecipeJob(recipe, options.spoolDir).then((loaded) => ({ ...loaded, ...this.userOf(options), ...counting }));
    const events = { onStageEnd: (end: StageEnd) => stages.emit('stage', end), onStageBytes: (bytes: StageBytes) => stages.emit('bytes', bytes) };
    return Object.assign(stages, this.start(job, options, events)) as unknown as RemoteRecipeRun;
  }

  /**
   * Runs nothing: keeps the named pipes and sockets of `options.endpoints` joined until a SIGINT, SIGTERM or SIGHUP
   * comes from `options.signals` (or signal()), then ends with status 0, as plumb -N.
   */
  forward(options: Pick<RunOptions, 'user' | 'endpoints' | 'signals' | 'onEndpointError'>): RemoteRun {
    const given = options.endpoints instanceof ClientEndpoints ? options.endpoints.options : endpointOptions(options.endpoints);
    if (given.inFifos.length + given.outFifos.length + given.sockets.length + given.localSockets.length === 0) {
      throw new UsageError('forward: give the named pipes or sockets to keep joined');
    }
    const none = { stdin: emptyInput(), stdout: new PassThrough(), stderr: new PassThrough() };
    return { ...this.start({ kind: StartKind.Forward, ...this.userOf(options) }, { ...options, ...none }), stdin: null, stdout: null, stderr: null };
  }

  /** Asks the daemon (which must know this client as a controller) for a one-time key bound to the job. */
  async mintKey(job: KeyJob, options: MintOptions): Promise<OneTimeKey> {
    const bound = 'argv' in job ? { kind: StartKind.Exec as const, argv: [...job.argv], ...this.userOf(job) } : { ...(await loadRecipeJob(job, undefined)), ...this.userOf(job) };
    const binding = { ...bound, endpoints: remoteEndpoints(endpointOptions(options.endpoints)) };
    const connection = await this.connection();
    try {
      const minted = await mintOneTimeKey(connection, { binding, lifetimeSeconds: options.lifetimeSeconds });
      // The host key the node will pin is the one this connection verified, not what the reply says.
      const key = { ...minted, hostKey: formatPublicKeyLine(connection.peer.peer) };
      return { fingerprint: key.fingerprint, expiresAt: new Date(key.expiresAt), user: key.user, keyFile: formatKeyFile(key, binding) };
    } finally {
      this.busy.delete(connection);
    }
  }

  /** Closes the connection not yet used and ends the runs still going (their exit rejects, NP_CONNECTION_LOST). */
  async close(): Promise<void> {
    this.closed = true;
    const idle = this.idle;
    this.idle = undefined;
    for (const connection of this.busy) connection.fail(new ConnectionLostError('the program closed its connection to the machine'));
    await idle?.close();
  }

  /** The account a job asks for: its own, else the machine's (User in $NETPLUMB_HOME/config), else the daemon's default. */
  private userOf(options: { user?: string }): { user?: string } {
    const user = options.user ?? this.options.user;
    return user === undefined ? {} : { user };
  }

  /** The connection connect() made if it is still unused and open, else a new one. */
  private async connection(): Promise<SecureConnection> {
    if (this.closed) throw new UsageError('the machine has been closed');
    const idle = this.idle;
    this.idle = undefined;
    if (idle?.isOpen !== true && this.options.oneTimeKey !== undefined) {
      throw new UsageError('a one-time key is good for one connection, and it has been used: connect again with an identity for another run');
    }
    const connection = idle?.isOpen === true ? idle : await connectToMachine(this.options);
    if (this.closed) {
      connection.fail(new ConnectionLostError('the program closed its connection to the machine'));
      throw new UsageError('the machine has been closed');
    }
    this.busy.add(connection);
    return connection;
  }

  private start(job: RemoteJob | Promise<RemoteJob>, options: RunOptions, recipeEvents: Partial<Pick<RemoteCommandOptions, 'onStageEnd' | 'onStageBytes'>> = {}): RemoteRun {
    const stdin = options.stdin === undefined ? new PassThrough() : null;
    const stdout = options.stdout === undefined ? new PassThrough() : null;
    const stderr = options.stderr === undefined ? new PassThrough() : null;
    // signal() goes to an emitter of the run's own: emitting on the caller's (process, say) would run its other listeners.
    const own = new EventEmitter();
    const signals = options.signals === undefined ? [own] : [own, options.signals];
    const env = envEntries(options.env);
    const given = options.endpoints;
    const meter = new StreamMeter(given instanceof ClientEndpoints ? given.options : endpointOptions(given));
    let connection: SecureConnection | undefined;
    const exit = (async () => {
      let endpoints: ClientEndpoints | undefined = given instanceof ClientEndpoints ? given : undefined;
      try {
        const ready = await job;
        endpoints ??= await ClientEndpoints.prepare(endpointOptions(given as Partial<EndpointOptions> | undefined), options.onEndpointError ?? (() => undefined));
        connection = await this.connection();
        return await runRemoteCommand(connection, {
          job: ready,
          env,
          endpoints,
          ...(options.terminal === undefined ? {} : { terminal: options.terminal }),
          ...recipeEvents,
          stdio: { stdin: options.stdin ?? (stdin as PassThrough), stdout: options.stdout ?? (stdout as PassThrough), stderr: options.stderr ?? (stderr as PassThrough) },
          signals,
          maxStreams: DEFAULT_LIMITS.maxStreamsPerConnection,
          initialWindowBytes: DEFAULT_LIMITS.initialWindowBytes,
          maxWindowBytes: DEFAULT_LIMITS.maxWindowBytes,
          maxDataPayloadBytes: DEFAULT_LIMITS.maxDataPayloadBytes,
          observeStream: meter.observe,
        });
      } catch (error) {
        // A failed run must not look like a whole one to whoever pipes its output on (pipeline() would resolve): the
        // streams offered end with the error where someone listens for errors, and plainly where no one would hear it.
        for (const stream of [stdout, stderr]) {
          if (stream !== null && stream.listenerCount('error') > 0) stream.destroy(error as Error);
        }
        throw error;
      } finally {
        endpoints?.close();
        meter.settle();
        if (connection !== undefined) this.busy.delete(connection);
        // The streams offered to the caller end with the command, whatever ended it: what the command did not read
        // of stdin is dropped (a writer piping into it sees the stream closed), stdout and stderr see their end.
        stdin?.destroy();
        stdout?.end();
        stderr?.end();
      }
    })();
    return {
      stdin,
      stdout,
      stderr,
      exit,
      signal: (name) => void own.emit(name),
      wireBytes: () => (connection === undefined ? undefined : wireBytes(connection)) ?? { sent: 0, received: 0 },
      streams: () => meter.totals(),
    };
  }
}

function emptyInput(): Readable {
  const input = new PassThrough();
  input.end();
  return input;
}

function endpointOptions(given: Partial<EndpointOptions> | undefined): EndpointOptions {
  return { ...NO_ENDPOINT_OPTIONS, ...given } as EndpointOptions;
}

/** The variables as the Start request carries them; a name no shell could set is refused here, before connecting. */
function envEntries(env: Readonly<Record<string, string>> | undefined): ExportedEnv {
  const entries = Object.entries(env ?? {});
  for (const [name] of entries) if (!ENV_NAME_PATTERN.test(name)) throw new UsageError(`env: ${JSON.stringify(name)} is not a variable name`);
  return entries;
}

/** The recipe read and checked here, as plumb does before sending it; the parser is loaded only for a recipe. */
async function loadRecipeJob(recipe: RecipeSource, spoolDir: string | undefined): Promise<Extract<RemoteJob, { kind: StartKind.Recipe }>> {
  const { loadRecipe, loadRecipeText } = await import('./check-command.js');
  const { DEFAULT_SPOOL_DIR } = await import('../recipes/plan.js');
  const loaded = 'file' in recipe ? loadRecipe(recipe.file, spoolDir ?? DEFAULT_SPOOL_DIR) : loadRecipeText(recipe.text, recipe.source, spoolDir ?? DEFAULT_SPOOL_DIR);
  if (loaded.plan.machines.length > 0) {
    throw new UsageError(`${loaded.file} names machines (@NAME): a recipe across machines runs with plumb -recipe=FILE, not through one machine`);
  }
  return { kind: StartKind.Recipe, text: loaded.text, source: loaded.file };
}
