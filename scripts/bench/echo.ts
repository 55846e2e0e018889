// Keystroke echo under bulk: keys typed into a terminal (node-pty) come back as the remote pty's echo while a bulk
// stream flows over the same connection. netplumb: `plumb -t` with the bulk through an -outfifo. OpenSSH: `ssh -t`
// with the bulk through a unix-socket remote forward (-R REMOTE.sock:LOCAL.sock) into a local sink. Keys are typed
// only while the bulk flows, so the figure is the echo under load; the number of keys it rests on is reported.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawn as spawnPty, type IPty } from 'node-pty';
import { PROGRAMS } from '../built-programs.js';
import { ECHO_KEYS, SSH_CIPHER, STREAM_BULK } from './config.js';
import { sleep, waitFor } from './measure.js';
import type { OpenSsh } from './servers.js';

export interface EchoResult {
  /** Echo delay of each key measured (ms), all typed while the bulk was still flowing. */
  delays: number[];
}

/** Waits for an exit, at most timeoutMs; says whether it came. */
function exitedWithin(exited: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  return Promise.race([exited.then(() => true), sleep(timeoutMs).then(() => false)]);
}

/**
 * Types up to ECHO_KEYS keys, one at a time with 10 ms between, into `terminal`, timing each until its echo comes
 * back, and stops as soon as `bulkDone()` says the bulk has ended. The terminal is ended in any case.
 */
async function typeKeys(terminal: IPty, bulkDone: () => boolean): Promise<EchoResult> {
  let seen = '';
  // Woken by the terminal's output itself: a polling loop here would take a core from the processes measured.
  let onOutput: (() => void) | undefined;
  const output = terminal.onData((data: string | Buffer) => {
    seen += data.toString();
    onOutput?.();
  });
  const exited = new Promise<void>((resolve) => terminal.onExit(() => resolve()));
  const echoOf = (letter: string, before: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a key echo; the terminal said: ${seen.slice(-500)}`)), 10_000);
      onOutput = () => {
        if (!seen.slice(before).includes(letter)) return;
        clearTimeout(timer);
        onOutput = undefined;
        resolve();
      };
      onOutput();
    });
  try {
    // The remote pty is there once it echoes a first key (an upper-case one: the measured keys are lower case).
    terminal.write('S');
    await echoOf('S', 0);
    const delays: number[] = [];
    for (let key = 0; key < ECHO_KEYS && !bulkDone(); key++) {
      const letter = String.fromCharCode(97 + (key % 26));
      const echoed = echoOf(letter, seen.length);
      const start = process.hrtime.bigint();
      terminal.write(letter);
      await echoed;
      delays.push(Number(process.hrtime.bigint() - start) / 1e6);
      await sleep(10);
    }
    return { delays };
  } finally {
    onOutput = undefined;
    terminal.write('\x04');
    if (!(await exitedWithin(exited, 5000))) {
      terminal.kill('SIGKILL');
      await exitedWithin(exited, 5000);
    }
    output.dispose();
  }
}

async function stopChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await exitedWithin(exited, 5000);
}

/** `plumb -t` whose remote command writes STREAM_BULK into an -outfifo (drained locally by cat) and then runs cat. */
export async function plumbEchoUnderBulk(port: number, localDir: string, env: NodeJS.ProcessEnv): Promise<EchoResult> {
  const fifo = join(localDir, 'echo-bulk.fifo');
  rmSync(fifo, { force: true });
  execFileSync('mkfifo', [fifo]);
  const drain = spawn('sh', ['-c', `exec cat ${fifo} >/dev/null`], { stdio: 'ignore' });
  const drained = new Promise((resolve) => drain.once('exit', resolve));
  try {
    const remote = `head -c ${STREAM_BULK.bytes} /dev/zero >"$NETPLUMB_SPOOL/echo-bulk.fifo" & exec cat >/dev/null`;
    const terminal = spawnPty(process.execPath, [PROGRAMS.plumb, '-t', '-outfifo=echo-bulk.fifo', `127.0.0.1:${port}`, 'sh', '-c', remote], {
      cwd: localDir,
      env: env as Record<string, string>,
      cols: 80,
      rows: 24,
      encoding: null,
    });
    return await typeKeys(terminal, () => drain.exitCode !== null);
  } finally {
    await stopChild(drain, drained);
    rmSync(fifo, { force: true });
  }
}

/**
 * `ssh -t` (aes128-gcm) whose remote command sends STREAM_BULK into a unix socket that the same connection forwards
 * back (-R) to a local sink, and then runs cat. sshd creates the remote socket after the session may have started,
 * so the remote command waits (boundedly) for it.
 */
export async function sshEchoUnderBulk(ssh: OpenSsh, localDir: string): Promise<EchoResult> {
  const localSocket = join(localDir, 'ssh-sink.sock');
  // Both ends live on this machine: the remote path must differ from the local one, and be new (sshd will not
  // unlink a leftover unless told to, which the helper's config does not).
  const remoteSocket = join(localDir, `ssh-remote-${process.pid}-${Date.now()}.sock`);
  rmSync(localSocket, { force: true });
  const sink = spawn(process.execPath, [PROGRAMS.unixPeer, 'sink', localSocket], { stdio: ['ignore', 'pipe', 'inherit'] });
  const sinkExited = new Promise((resolve) => sink.once('exit', resolve));
  let said = '';
  sink.stdout?.on('data', (chunk: Buffer) => (said += chunk.toString()));
  try {
    await waitFor(() => said.includes('listening'), 'the unix-socket sink to listen');
    const source = `${process.execPath} ${PROGRAMS.unixPeer} source ${remoteSocket} ${STREAM_BULK.bytes}`;
    const remote = `for i in $(seq 200); do [ -S ${remoteSocket} ] && break; sleep 0.05; done; ${source} & exec cat >/dev/null`;
    const argv = [...ssh.argv, '-t', '-c', SSH_CIPHER, '-o', 'ExitOnForwardFailure=yes', '-o', 'StreamLocalBindUnlink=yes', '-R', `${remoteSocket}:${localSocket}`, 'anchor', remote];
    const terminal = spawnPty('ssh', argv, { cwd: localDir, env: process.env as Record<string, string>, cols: 80, rows: 24, encoding: null });
    const result = await typeKeys(terminal, () => said.includes('received'));
    if (result.delays.length === 0) throw new Error(`no key typed while the ssh bulk flowed; the sink said: ${said.trim()}`);
    return result;
  } finally {
    await stopChild(sink, sinkExited);
    rmSync(localSocket, { force: true });
    rmSync(remoteSocket, { force: true });
  }
}
