// What a Start kind=forward runs (plumb -N, as ssh -N): nothing. The session's named pipes and sockets are served
// beside it as for any Start; it only ends, with status 0, when the session does (the client closed the connection
// or the daemon is shutting down).

import type { ExitStatus } from '../protocol/session.js';
import type { Runner, SessionStreams } from './runner.js';

export class ForwardRunner implements Runner {
  private resolveOutcome: (status: ExitStatus) => void = () => undefined;
  readonly outcome: Promise<ExitStatus>;

  constructor() {
    this.outcome = new Promise((resolve) => (this.resolveOutcome = resolve));
  }

  start(streams: SessionStreams, started: () => void): Promise<void> {
    started();
    // No command reads or writes: stdin is let go, stdout and stderr end at once.
    streams.stdin.destroy();
    streams.stdout.end();
    streams.stderr.end();
    return Promise.resolve();
  }

  signal(): void {
    // Nothing to signal.
  }

  resize(): void {
    // No terminal.
  }

  abort(): Promise<void> {
    this.resolveOutcome({ code: 0 });
    return Promise.resolve();
  }
}
