// What the daemon tells systemd under Type=notify (sd_notify(3)): READY=1 once it listens, RELOADING=1 and READY=1
// around a SIGHUP reload, STOPPING=1 when it begins to shut down, STATUS= with each, and WATCHDOG=1 pings when
// the manager asks for them. Nothing is sent, and nothing spawned, when NOTIFY_SOCKET is unset; a report that
// fails is logged and never stops the daemon.
//
// How: by running /usr/bin/systemd-notify, one at a time and in order. Node has no AF_UNIX datagram sockets, and
// the npm packages that add them are native addons (sd-notify needs libsystemd's headers; unix-dgram, nan-based,
// is kept up mostly as another package's optional part), while systemd-notify ships with every systemd. As root,
// which the unit runs the daemon as, systemd-notify sends with credentials naming its parent, this daemon (the
// kernel lets a privileged sender name another process): systemd attributes every message to the main process
// whether or not systemd-notify still exists, so the unit keeps NotifyAccess=main and the unprivileged commands
// clients run in the unit's cgroup cannot report for the daemon (one running as root could name the daemon too). Unprivileged, systemd-notify sends as itself (NotifyAccess=all
// then) and waits, as it does by default, until the manager has taken the message (BARRIER=1), which keeps it
// alive while systemd looks up whose it is.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Logger } from './log.js';

/** The program that sends a report; it ships with systemd (in /bin where /usr is not merged into /). */
export const SYSTEMD_NOTIFY = ['/usr/bin/systemd-notify', '/bin/systemd-notify'].find((path) => existsSync(path)) ?? '/usr/bin/systemd-notify';

/** Reports waiting to be sent, the one running included; more are dropped (and said so in the log). */
export const MAX_QUEUED_REPORTS = 8;

/** How long one systemd-notify may run; its own wait for the manager (the barrier) gives up after 5 s. */
export const REPORT_TIMEOUT_MS = 10_000;

/** How much of systemd-notify's stderr is kept for the log line of a failed report. */
const MAX_REPORT_STDERR_CHARS = 500;

/** Where reports go, taken once from the environment systemd set. */
export interface NotifyTarget {
  /** NOTIFY_SOCKET: a path, or `@name` for an abstract socket. */
  socket: string;
  /** Half of WATCHDOG_USEC, in milliseconds, when the manager wants pings from this process; else undefined. */
  watchdogIntervalMs: number | undefined;
}

/**
 * The notify socket and watchdog period systemd gave this process, removed from the environment so that nothing
 * the daemon starts inherits them (as sd_notify(3) with unset_environment). undefined: NOTIFY_SOCKET is unset or
 * empty. The watchdog follows sd_watchdog_enabled(3): WATCHDOG_USEC a positive number of microseconds, and
 * WATCHDOG_PID, when set, this process.
 */
/** The longest delay setTimeout and setInterval honour (2^31-1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function takeNotifyTarget(environment: NodeJS.ProcessEnv = process.env, pid: number = process.pid): NotifyTarget | undefined {
  const socket = environment['NOTIFY_SOCKET'];
  const watchdogUsec = environment['WATCHDOG_USEC'];
  const watchdogPid = environment['WATCHDOG_PID'];
  for (const name of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete environment[name];
  if (socket === undefined || socket === '') return undefined;
  const usec = /^\d+$/.test(watchdogUsec ?? '') ? Number(watchdogUsec) : 0;
  const forThisProcess = watchdogPid === undefined || watchdogPid === String(pid);
  // Capped at what a Node timer takes: a longer one would fire at once, and then every millisecond.
  const watchdogIntervalMs = usec > 0 && forThisProcess ? Math.min(MAX_TIMER_MS, Math.max(1, Math.floor(usec / 2000))) : undefined;
  return { socket, watchdogIntervalMs };
}

/** The service's state as systemd is told it. */
export enum ServiceState {
  Starting = 'starting',
  Ready = 'ready',
  Reloading = 'reloading',
  Stopping = 'stopping',
}

/** The moves the daemon may make; each is reported on the way. */
const LEGAL_MOVES: Readonly<Record<ServiceState, readonly ServiceState[]>> = {
  [ServiceState.Starting]: [ServiceState.Ready, ServiceState.Stopping],
  [ServiceState.Ready]: [ServiceState.Reloading, ServiceState.Stopping],
  [ServiceState.Reloading]: [ServiceState.Ready, ServiceState.Stopping],
  [ServiceState.Stopping]: [],
};

/**
 *   Starting --ready--> Ready --reloading--> Reloading --reloaded--> Ready
 *        \                 \                     /
 *         `------------- stopping -> Stopping <-'
 * A move the table does not allow (a SIGHUP before the daemon listens, a second SIGTERM) is refused and not reported.
 */
export class ServiceNotifier {
  private state = ServiceState.Starting;
  private queued = 0;
  private sending: Promise<void> = Promise.resolve();
  private watchdog: NodeJS.Timeout | undefined;
  private watchdogQueued = false;
  private failureLogged = false;

  constructor(
    private readonly target: NotifyTarget | undefined,
    private readonly log: Logger,
    private readonly program: string = SYSTEMD_NOTIFY,
  ) {}

  get current(): ServiceState {
    return this.state;
  }

  /** The daemon accepts connections; status says where. Starts the watchdog pings when asked for. */
  ready(status: string): boolean {
    if (!this.move(ServiceState.Ready)) return false;
    this.send(['READY=1', `STATUS=${status}`]);
    this.startWatchdog();
    return true;
  }

  /** A reload begins. MONOTONIC_USEC is what systemd 253 and later match a reload with; earlier ones ignore it. */
  reloading(status: string): boolean {
    if (!this.move(ServiceState.Reloading)) return false;
    this.send(['RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`, `STATUS=${status}`]);
    return true;
  }

  /** The reload is over, taken or refused: ready again. */
  reloaded(status: string): boolean {
    if (!this.move(ServiceState.Ready, ServiceState.Reloading)) return false;
    this.send(['READY=1', `STATUS=${status}`]);
    return true;
  }

  /** Shutdown begins; the watchdog stops, as systemd no longer expects pings. */
  stopping(status: string): boolean {
    if (!this.move(ServiceState.Stopping)) return false;
    this.stopWatchdog();
    this.send(['STOPPING=1', `STATUS=${status}`]);
    return true;
  }

  /** Resolves once every report queued so far has been sent or has failed. */
  settled(): Promise<void> {
    return this.sending;
  }

  private move(to: ServiceState, onlyFrom?: ServiceState): boolean {
    const from = this.state;
    if ((onlyFrom !== undefined && from !== onlyFrom) || !LEGAL_MOVES[from].includes(to)) {
      this.log.debug('service state change refused', { from, to });
      return false;
    }
    this.state = to;
    return true;
  }

  private startWatchdog(): void {
    const intervalMs = this.target?.watchdogIntervalMs;
    if (intervalMs === undefined || this.watchdog !== undefined) return;
    this.watchdog = setInterval(() => {
      // A ping still waiting proves as much as a second one would.
      if (this.watchdogQueued) return;
      this.watchdogQueued = true;
      this.send(['WATCHDOG=1'], () => (this.watchdogQueued = false));
    }, intervalMs);
    this.watchdog.unref();
  }

  private stopWatchdog(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /** Queues one report (assignments, one per line of the datagram) behind those before it. */
  private send(assignments: readonly string[], done?: () => void): void {
    const target = this.target;
    if (target === undefined) return;
    if (this.queued >= MAX_QUEUED_REPORTS) {
      this.log.warn('service manager report dropped: too many waiting', { report: assignments[0], waiting: this.queued });
      done?.();
      return;
    }
    this.queued += 1;
    // A line break would start another assignment in the datagram.
    const args = assignments.map((assignment) => assignment.replace(/[\r\n]/g, ' '));
    this.sending = this.sending
      .then(() => this.run(target.socket, args))
      .then((failure) => {
        this.queued -= 1;
        done?.();
        if (failure === undefined) {
          this.log.debug('service manager told', { report: args });
          return;
        }
        // Said once at warn (a missing program, a socket nobody reads), then at debug: watchdog pings repeat it.
        const level = this.failureLogged ? 'debug' : 'warn';
        this.failureLogged = true;
        this.log[level]('service manager report failed', { report: args[0], socket: target.socket, reason: failure });
      });
  }

  /** Runs systemd-notify once; resolves with why it failed, or undefined. Never rejects. */
  private run(socket: string, args: readonly string[]): Promise<string | undefined> {
    return new Promise((resolve) => {
      let stderr = '';
      let child: ReturnType<typeof spawn>;
      try {
        child = spawn(this.program, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { NOTIFY_SOCKET: socket } });
      } catch (error) {
        // Some failures (ENOMEM, say) throw at once instead of coming as an 'error' event: a report lost, not the daemon.
        resolve(`${this.program}: ${(error as Error).message}`);
        return;
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), REPORT_TIMEOUT_MS);
      child.stderr?.setEncoding('utf8').on('data', (text: string) => {
        if (stderr.length < MAX_REPORT_STDERR_CHARS) stderr = (stderr + text).slice(0, MAX_REPORT_STDERR_CHARS);
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        resolve(`${this.program}: ${error.message}`);
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(undefined);
        else resolve(`${this.program} ${signal === null ? `exited with ${code}` : `killed by ${signal}`}${stderr.trim() === '' ? '' : `: ${stderr.trim()}`}`);
      });
    });
  }
}
