// A stand-in for systemd's notify socket: an AF_UNIX datagram socket a python3 child binds (Node cannot receive
// datagrams on Unix sockets), printing each report as one JSON line with the sender's pid from its credentials.
// Like the manager, it closes the descriptor a BARRIER=1 report carries, which is what systemd-notify waits for.

import { join } from 'node:path';
import { spawnProcess, type RunningProcess } from './processes.js';
import type { Scope } from './scope.js';

const PYTHON = '/usr/bin/python3';

const RECEIVER = `
import json, os, socket, struct, sys
receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
receiver.bind(sys.argv[1])
receiver.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({"bound": True}), flush=True)
while True:
    data, ancillary, _flags, _address = receiver.recvmsg(4096, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4 * 16))
    pid = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for fd in struct.unpack("%di" % (len(payload) // 4), payload[: len(payload) - len(payload) % 4]):
                os.close(fd)
    print(json.dumps({"pid": pid, "lines": data.decode("utf-8", "replace").split("\\n")}), flush=True)
`;

/** One datagram received: the pid its credentials name, and its lines (`READY=1`, `STATUS=...`). */
export interface Report {
  pid: number | null;
  lines: string[];
}

export interface NotifySocket {
  /** The socket's path, for NOTIFY_SOCKET. */
  path: string;
  /** Every report received so far, BARRIER=1 ones left out. */
  reports(): Report[];
  /** Resolves with the reports once one matches; rejects after timeoutMs. */
  waitFor(what: string, match: (report: Report) => boolean, timeoutMs?: number): Promise<Report[]>;
  receiver: RunningProcess;
}

/** Binds dir/notify.sock and receives on it until the scope's cleanup kills the receiver. */
export async function listenForReports(scope: Scope, dir: string): Promise<NotifySocket> {
  const path = join(dir, 'notify.sock');
  const receiver = spawnProcess(scope, [PYTHON, '-c', RECEIVER, path], { timeoutMs: 600_000 });
  await receiver.waitForStdout(/"bound": true/);
  const reports = (): Report[] =>
    receiver
      .stdoutSoFar()
      .split('\n')
      .filter((line) => line.startsWith('{"pid"'))
      .map((line) => JSON.parse(line) as Report)
      .filter((report) => !report.lines.includes('BARRIER=1'));
  const waitFor = async (what: string, match: (report: Report) => boolean, timeoutMs = 20_000): Promise<Report[]> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const seen = reports();
      if (seen.some(match)) return seen;
      if (Date.now() >= deadline) throw new Error(`no report ${what} within ${timeoutMs} ms; got ${JSON.stringify(seen)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { path, reports, waitFor, receiver };
}
