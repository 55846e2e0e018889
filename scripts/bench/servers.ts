// The servers the bench measures: a netplumbd it starts on 127.0.0.1 with throwaway keys, and the private OpenSSH
// server of ../shared/bench/openssh-loopback.sh. Each comes with its pid (whose CPU is read around the runs); the
// bench stops both from a finally block (Daemon.stop, stopOpenSsh), each returning within a few seconds.

import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { userInfo } from 'node:os';
import { PROGRAMS, REPO_DIR } from '../built-programs.js';
import { sleep } from './measure.js';
import { NETPLUMBD_NODE_OPTIONS } from '../../daemon/node-options.js';

/**
 * ../shared/bench/openssh-loopback.sh beside the checkout; a git worktree sits a level deeper than the main checkout,
 * so each ancestor's shared/ is tried in turn (BENCH_SSH_HELPER names it outright).
 */
function findSshHelper(): string | undefined {
  const named = process.env['BENCH_SSH_HELPER'];
  if (named !== undefined && named !== '') return named;
  for (let dir = REPO_DIR; ; dir = dirname(dir)) {
    const candidate = join(dir, '..', 'shared', 'bench', 'openssh-loopback.sh');
    if (existsSync(candidate)) return resolve(candidate);
    if (dirname(dir) === dir) return undefined;
  }
}

const STOP_WAIT_MS = 5000;

export interface Daemon {
  port: number;
  pid: number;
  stop: () => Promise<void>;
}

/**
 * Starts netplumbd on a free port of `address` (127.0.0.1; another loopback address for a second machine), its keys,
 * clients and spool under `home`, on core `cpu` alone when given; resolves once it listens.
 */
export function startDaemon(home: string, address = '127.0.0.1', cpu?: number): Promise<Daemon> {
  // taskset execs the daemon: the pid is the daemon's, and it and the commands it starts stay on that core.
  const [program, ...pinning] = cpu === undefined ? [process.execPath] : ['taskset', '-c', String(cpu), process.execPath];
  const daemon = spawn(
    program as string,
    [...pinning, ...NETPLUMBD_NODE_OPTIONS, PROGRAMS.netplumbd, `-listen=${address}:0`, `-hostkey=${join(home, 'host_key')}`, `-clients=${join(home, 'clients')}`, `-spool=${join(home, 'spool')}`, `-run-as=${userInfo().username}`, `-one-time-keys=${join(home, 'one-time-keys')}`, '-log-level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let exited = false;
  const gone = new Promise<void>((done) => daemon.once('exit', () => ((exited = true), done())));
  const stop = async (): Promise<void> => {
    if (exited) return;
    daemon.kill('SIGTERM');
    // A daemon that does not end on SIGTERM in time is killed: the bench must not leave one behind.
    if (await Promise.race([gone.then(() => true), sleep(STOP_WAIT_MS).then(() => false)])) return;
    daemon.kill('SIGKILL');
    await Promise.race([gone, sleep(STOP_WAIT_MS)]);
  };
  return new Promise((resolvePort, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`netplumbd did not say it listens within 10 s: ${seen}`));
    }, 10_000);
    daemon.stderr.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const match = new RegExp(`listening on ${address.replaceAll('.', '\\.')}:(\\d+)`).exec(seen);
      if (match === null || daemon.pid === undefined) return;
      clearTimeout(timer);
      resolvePort({ port: Number(match[1]), pid: daemon.pid, stop });
    });
    daemon.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`netplumbd exited: ${seen}`));
    });
  });
}

export interface OpenSsh {
  /** `ssh -F DIR/ssh_config`, for shell pipelines; the host word, anchor, is added per command. */
  command: string;
  /** The same as argv, for node-pty. */
  argv: string[];
  /** The listener: its cutime/cstime take in each per-connection sshd and the command, once reaped. */
  pid: number;
}

/**
 * Starts the private sshd on a random loopback port (the helper's DIR is `dir`); undefined, saying why on stderr,
 * where it cannot be started (no helper, no openssh-server and no way to install it).
 */
export async function startOpenSsh(dir: string): Promise<OpenSsh | undefined> {
  const script = findSshHelper();
  if (script === undefined) {
    process.stderr.write('OpenSSH peer not available: no shared/bench/openssh-loopback.sh beside the checkout (set BENCH_SSH_HELPER)\n');
    return undefined;
  }
  const helper = (args: string[], timeoutMs: number): Promise<string> => runHelper(script, args, timeoutMs);
  const stop = (): Promise<void> => helper(['stop', dir], STOP_WAIT_MS).then(() => undefined, () => undefined);
  try {
    const port = String(22000 + Math.floor(Math.random() * 2000));
    // The helper may install openssh-server first: minutes, not hours.
    const out = await helper(['start', dir, port], 300_000);
    const command = out.trim().split('\n').pop()?.replace(/ anchor$/, '');
    if (command === undefined || !command.startsWith('ssh -F ')) throw new Error(`unexpected helper output: ${out}`);
    // The helper's sshd_config names DIR/sshd.pid as the PidFile: the listener, the parent of every connection's sshd.
    const pid = Number(readFileSync(join(dir, 'sshd.pid'), 'utf8').trim());
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(join(dir, 'sshd_config'))) throw new Error(`pid ${pid} from ${dir}/sshd.pid is not that sshd`);
    return { command, argv: command.split(' ').slice(1), pid };
  } catch (error) {
    await stop();
    process.stderr.write(`OpenSSH peer not available: ${(error as Error).message}\n`);
    return undefined;
  }
}

/**
 * Stops the private sshd of `dir` if its pid file is there, whether or not startOpenSsh() got to return it (the
 * bench interrupted while the helper was starting it).
 */
export async function stopOpenSsh(dir: string): Promise<void> {
  const script = findSshHelper();
  if (script === undefined || !existsSync(join(dir, 'sshd.pid'))) return;
  await runHelper(script, ['stop', dir], STOP_WAIT_MS).catch(() => undefined);
}

function runHelper(script: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolveOut, reject) => {
    execFile('bash', [script, ...args], { encoding: 'utf8', timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error === null) resolveOut(stdout);
      else reject(new Error(`${error.message}${stderr}`));
    });
  });
}
