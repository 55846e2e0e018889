// Runs one remote command or recipe over an open connection: opens the stdin, stdout and stderr streams, sends
// Start, bridges the local stdio, forwards signals, passes on each recipe command's end, and resolves with plumb's
// exit status (the remote command's or recipe's; 128+N for signal N; 255 for connection and protocol failures).

import type { Readable, Writable } from 'node:stream';
import type { SecureConnection } from '../protocol/connection.js';
import {
  ConnectionLostError,
  isErrorCode,
  NetplumbError,
  RemoteError,
  UnexpectedPacketError,
  UsageError,
} from '../protocol/errors.js';
import { encodeFields, type FieldList } from '../protocol/fields.js';
import { Mux, type MuxOptions, type MuxStream, type SessionHandler } from '../protocol/mux.js';
import {
  decodeExit,
  decodeStageBytes,
  decodeStageEnd,
  decodeStartReply,
  encodeResize,
  encodeSignal,
  encodeStartRequest,
  NO_ENDPOINTS,
  type ExitStatus,
  type ExportedEnv,
  type ForwardableSignal,
  type StageBytes,
  type StageEnd,
  type StartReply,
} from '../protocol/session.js';
import { Field, PACKET_ROOM_BYTES, PacketType, StartKind, StartStatus } from '../protocol/wire.js';
import type { ClientEndpoints } from './endpoints.js';
import { exitStatusCode } from './exit-status.js';

/** How long plumb waits for its Goodbye to be written after the command ended. */
const GOODBYE_WAIT_MS = 1000;

export interface LocalStdio {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
}

/** The client's session handler: collects the Start reply, the stage ends and Exit status, and how the connection ended. */
class RemoteCommand implements SessionHandler {
  readonly startReply: Promise<StartReply>;
  readonly exit: Promise<ExitStatus>;
  readonly connectionClosed: Promise<NetplumbError | undefined>;
  private resolveStart: (reply: StartReply) => void = () => undefined;
  private resolveExit: (status: ExitStatus) => void = () => undefined;
  private resolveClosed: (error: NetplumbError | undefined) => void = () => undefined;
  private startAnswered = false;
  private exitSeen = false;

  constructor(
    private readonly onStageEnd: ((end: StageEnd) => void) | undefined,
    /** Given only when the Start asked the daemon to count each command's bytes. */
    private readonly onStageBytes: ((bytes: StageBytes) => void) | undefined,
    private readonly endpoints: ClientEndpoints | undefined,
  ) {
    this.startReply = new Promise((resolve) => (this.resolveStart = resolve));
    this.exit = new Promise((resolve) => (this.resolveExit = resolve));
    this.connectionClosed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  packet(type: PacketType, fields: FieldList): void {
    switch (type) {
      case PacketType.Start:
        if (this.startAnswered) throw new UnexpectedPacketError('second Start reply');
        this.startAnswered = true;
        this.resolveStart(decodeStartReply(fields, isErrorCode));
        return;
      case PacketType.Exit:
        if (!this.startAnswered) throw new UnexpectedPacketError('Exit before Start reply');
        this.exitSeen = true;
        this.resolveExit(decodeExit(fields));
        return;
      case PacketType.StageEnd:
        if (this.onStageEnd === undefined || !this.startAnswered || this.exitSeen) {
          throw new UnexpectedPacketError('StageEnd outside a running recipe');
        }
        this.onStageEnd(decodeStageEnd(fields, isErrorCode));
        return;
      case PacketType.StageBytes: {
        if (this.onStageEnd === undefined || !this.startAnswered || this.exitSeen) {
          throw new UnexpectedPacketError('StageBytes outside a running recipe');
        }
        // Asked for only with countBytes; a daemon that sends it unasked is still only telling counts.
        const bytes = decodeStageBytes(fields);
        this.onStageBytes?.(bytes);
        return;
      }
      default:
        throw new UnexpectedPacketError(`packet type ${type} not expected by plumb`);
    }
  }

  streamOpened(stream: MuxStream, fields: FieldList): void {
    // Rounds of an -outfifo and connections on a -socket; anything else the daemon opens is refused.
    if (this.endpoints?.route(stream, fields) === true) return;
    stream.destroy();
  }

  closed(error: NetplumbError | undefined): void {
    this.resolveClosed(error);
  }
}

/** The local side of -t: the terminal type, and the TTYs whose mode and size follow the remote pty. */
export interface LocalTerminal {
  term: string;
  input: NodeJS.ReadStream | undefined;
  output: NodeJS.WriteStream | undefined;
}

/** The size sent when plumb's output is not a terminal. */
const DEFAULT_TERMINAL_SIZE = { cols: 80, rows: 24 };

function terminalSize(terminal: LocalTerminal): { cols: number; rows: number } {
  const { output } = terminal;
  if (output?.isTTY === true && output.columns > 0 && output.rows > 0) return { cols: output.columns, rows: output.rows };
  return DEFAULT_TERMINAL_SIZE;
}

/** What plumb asks the daemon to run. */
export type RemoteJob =
  | { kind: StartKind.Exec; argv: string[]; user?: string }
  | { kind: StartKind.Recipe; text: string; source: string; user?: string; countBytes?: boolean }
  | { kind: StartKind.Forward; user?: string };

export interface RemoteCommandOptions {
  job: RemoteJob;
  /** Variables set for the remote command(s), from -export. */
  env?: ExportedEnv;
  /** Named pipes and sockets replicated for the command (-infifo, -outfifo, -socket, -local-socket). */
  endpoints?: ClientEndpoints;
  /** Run the command on a pseudo-terminal of this type; the local terminal (if any) goes raw meanwhile. */
  terminal?: LocalTerminal;
  /** Called for each recipe command's end as the daemon reports it. */
  onStageEnd?: (end: StageEnd) => void;
  /** Called with each recipe command's counts, for a job that asked for them (countBytes). */
  onStageBytes?: (bytes: StageBytes) => void;
  stdio: LocalStdio;
  /** Whose signals plumb forwards (each emitter's); the third SIGINT gives up on the remote command and ends plumb. */
  signals: NodeJS.EventEmitter | readonly NodeJS.EventEmitter[];
  maxStreams: number;
  initialWindowBytes: number;
  /** Default: the initial window, never grown. */
  maxWindowBytes?: number;
  maxDataPayloadBytes: number;
  /** Told of every stream of the run as it opens, for counting (stream-meter.ts). */
  observeStream?: MuxOptions['observeStream'];
}

/** Resolves with the exit status plumb should end with; throws NetplumbError for connection-level failures. */
export async function runRemoteCommand(connection: SecureConnection, options: RemoteCommandOptions): Promise<number> {
  const { endpoints } = options;
  const { job: asked } = options;
  const recipe = asked.kind === StartKind.Recipe;
  const counting = recipe && asked.countBytes === true;
  const remote = new RemoteCommand(recipe ? (options.onStageEnd ?? (() => undefined)) : undefined, counting ? (options.onStageBytes ?? (() => undefined)) : undefined, endpoints);
  const mux = new Mux(
    connection,
    {
      side: 'client',
      maxStreams: options.maxStreams,
      initialWindowBytes: options.initialWindowBytes,
      maxWindowBytes: options.maxWindowBytes ?? options.initialWindowBytes,
      maxDataPayloadBytes: options.maxDataPayloadBytes,
      ...(options.observeStream === undefined ? {} : { observeStream: options.observeStream }),
    },
    remote,
  );
  connection.attach(mux);
  const stdin = mux.openStream([[Field.purpose, 'stdin']]);
  const stdout = mux.openStream([[Field.purpose, 'stdout']]);
  const stderr = mux.openStream([[Field.purpose, 'stderr']]);
  // Stream errors only echo the connection's failure, which `lost` below reports once.
  for (const stream of [stdin, stdout, stderr]) stream.on('error', () => undefined);
  const streams = { stdin: stdin.id, stdout: stdout.id, stderr: stderr.id };
  const { terminal } = options;
  // Keystrokes go out ahead of any bulk this connection carries (an -infifo, a socket).
  stdin.interactive = terminal !== undefined;
  const job = options.job.kind === StartKind.Exec && terminal !== undefined ? { ...options.job, pty: { term: terminal.term, ...terminalSize(terminal) } } : options.job;
  const start = encodeFields(encodeStartRequest({ ...job, ...streams, env: options.env ?? [], endpoints: endpoints?.remote ?? NO_ENDPOINTS }));
  if (start.length + PACKET_ROOM_BYTES > connection.peerLimits.maxPacketBytes) {
    connection.close();
    const what = options.job.kind === StartKind.Recipe ? 'recipe' : 'command line';
    throw new UsageError(`${what} of ${start.length} bytes exceeds the daemon's packet limit of ${connection.peerLimits.maxPacketBytes} bytes`);
  }
  connection.send(PacketType.Start, start);
  // plumb only reads from stdout and stderr and only writes to stdin: say so at once.
  stdout.end();
  stderr.end();

  const lost = remote.connectionClosed.then((error) => {
    throw error ?? new ConnectionLostError('connection closed before the command ended');
  });
  const reply = await Promise.race([remote.startReply, lost]);
  if (reply.status === StartStatus.Refused) {
    connection.close();
    throw new RemoteError(reply.code, reply.message);
  }

  try {
    await endpoints?.start(mux);
  } catch (error) {
    connection.close();
    throw error;
  }
  if (options.job.kind === StartKind.Forward) {
    stdin.end();
    return holdForwards(connection, options.signals, lost, endpoints);
  }
  const restoreTerminal = terminal === undefined ? () => undefined : enterRawMode(terminal, connection);
  const { stdio } = options;
  const outputs = Promise.all([deliver(stdout, stdio.stdout), deliver(stderr, stdio.stderr)]);
  const forwarding = forwardInput(stdio.stdin, stdin);
  // The third SIGINT gives up on whatever plumb still waits for, output not yet written out here included.
  let giveUp: (error: NetplumbError) => void = () => undefined;
  const interrupted = new Promise<never>((_resolve, reject) => (giveUp = reject));
  interrupted.catch(() => undefined);
  const stopSignals = forwardSignals(options.signals, connection, () => {
    const error = new ConnectionLostError('interrupted');
    giveUp(error);
    connection.fail(error);
  });
  try {
    const status = await Promise.race([remote.exit, lost]);
    // All of stdout and stderr, their ends included, precede Exit on the wire: whatever ends the connection from here
    // on (a daemon that shut down before our Goodbye, say) takes nothing of them, and the command's status stands.
    await Promise.race([outputs, interrupted]);
    // Out-FIFO rounds and -local-socket connections may go on after Exit: they reach the local readers (which may
    // come late) before plumb goes, and a connection that ends first fails. Nothing else can be cut short now.
    if (endpoints?.outliveExit === true) await Promise.race([endpoints.delivered(), lost]);
    endpoints?.close();
    // The command has ended and all its output is here: once our Goodbye is out, plumb may exit without waiting
    // for the daemon's answer (the daemon takes a reset after a Goodbye as a clean close).
    await Promise.race([connection.close(), new Promise((resolve) => setTimeout(resolve, GOODBYE_WAIT_MS).unref())]);
    return exitStatusCode(status);
  } finally {
    restoreTerminal();
    stopSignals();
    forwarding.stop();
  }
}

/**
 * plumb -N: the named pipes and sockets stay joined until SIGINT, SIGTERM or SIGHUP, which end plumb with status 0
 * (the connection closed in order); a connection lost first is plumb's failure.
 */
async function holdForwards(connection: SecureConnection, signals: NodeJS.EventEmitter | readonly NodeJS.EventEmitter[], lost: Promise<never>, endpoints: ClientEndpoints | undefined): Promise<number> {
  const names = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const emitters = [signals].flat();
  for (const emitter of emitters) for (const name of names) emitter.on(name, stop);
  try {
    await Promise.race([stopped, lost]);
  } finally {
    for (const emitter of emitters) for (const name of names) emitter.off(name, stop);
    endpoints?.close();
  }
  await Promise.race([connection.close(), new Promise((resolve) => setTimeout(resolve, GOODBYE_WAIT_MS).unref())]);
  return 0;
}

/**
 * Puts the local terminal in raw mode (keys, Ctrl-C included, go to the remote pty as bytes) and sends its size
 * whenever it changes. Returns the function that restores it; plumb also calls that on any exit.
 */
function enterRawMode(terminal: LocalTerminal, connection: SecureConnection): () => void {
  const { input, output } = terminal;
  const wasRaw = input?.isTTY === true ? input.isRaw : undefined;
  if (input?.isTTY === true) input.setRawMode(true);
  const onResize = (): void => connection.sendFields(PacketType.Resize, encodeResize(terminalSize(terminal)));
  output?.on('resize', onResize);
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    output?.off('resize', onResize);
    if (input?.isTTY === true && wasRaw !== undefined) input.setRawMode(wasRaw);
  };
}

/** Copies a remote output stream to a local one; a local reader that went away drops the remote stream. */
function deliver(source: MuxStream, sink: Writable): Promise<void> {
  return new Promise((resolve) => {
    const onSinkError = (): void => {
      source.unpipe(sink);
      source.destroy();
      resolve();
    };
    sink.on('error', onSinkError);
    source.on('error', () => resolve());
    source.on('end', () => {
      sink.off('error', onSinkError);
      resolve();
    });
    source.pipe(sink, { end: false });
  });
}

/** Feeds local stdin to the remote command until EOF, or until the remote side drops its stdin. */
function forwardInput(local: Readable, remote: MuxStream): { stop: () => void } {
  const stop = (): void => {
    local.unpipe(remote);
    local.pause();
    if (isDestroyable(local)) local.destroy();
  };
  remote.on('error', stop);
  remote.on('close', () => {
    if (!remote.writableFinished) stop();
  });
  local.on('error', () => remote.end());
  local.pipe(remote);
  return { stop };
}

function isDestroyable(stream: Readable): boolean {
  // process.stdin as a TTY or pipe keeps the event loop alive until destroyed.
  return typeof stream.destroy === 'function';
}

function forwardSignals(signals: NodeJS.EventEmitter | readonly NodeJS.EventEmitter[], connection: SecureConnection, abort: () => void): () => void {
  const emitters = [signals].flat();
  const names: ForwardableSignal[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  let interrupts = 0;
  const handlers = names.map((name) => {
    const handler = (): void => {
      if (name === 'SIGINT' && ++interrupts >= 3) {
        abort();
        return;
      }
      connection.sendFields(PacketType.Signal, encodeSignal(name));
    };
    for (const emitter of emitters) emitter.on(name, handler);
    return [name, handler] as const;
  });
  return () => {
    for (const [name, handler] of handlers) for (const emitter of emitters) emitter.off(name, handler);
  };
}
