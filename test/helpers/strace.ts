// strace for tests that check what a process execs: whether it can trace here (skip reason otherwise), and the
// path of the tracer.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const STRACE = '/usr/bin/strace';

/** false when strace can trace here; otherwise why a test that needs it is skipped. */
export function straceUnusable(): string | false {
  if (!existsSync(STRACE)) return `${STRACE} is not installed`;
  const probe = spawnSync(STRACE, ['-f', '-qq', '-e', 'trace=execve', '-o', '/dev/null', '/bin/true'], { encoding: 'utf8', timeout: 10_000 });
  if (probe.status !== 0) return `strace cannot trace here (is ptrace permitted?): ${probe.stderr.trim() || String(probe.error ?? probe.status)}`;
  return false;
}
