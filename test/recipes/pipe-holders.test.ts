// Finding who else holds a pipe (recipes/pipe-holders.ts), with real processes: a child holding the pipe is found and
// is not once it has ended; a search told to stop stops; a process's start time is read past a name with spaces and
// parentheses; and, searching as an account that is not root, an undumpable process of that account (whose
// descriptors cannot be read) counts as a holder, while root's processes started meanwhile do not.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, copyFileSync, constants as fs, fstatSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pipeHolder, processStartTicks, type HeldPipe } from '../../recipes/pipe-holders.js';
import { NEEDS_ROOT } from '../helpers/accounts.js';

const TIMEOUT_MS = 60_000;

/** A pipe made as the pipe stock makes them (a FIFO, unlinked), both ends open here. */
function stockLikePipe(): { readFd: number; held: HeldPipe; close(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'np-holders-'));
  execFileSync('mkfifo', [join(dir, 'p')]);
  const readFd = openSync(join(dir, 'p'), fs.O_RDONLY | fs.O_NONBLOCK);
  const writeFd = openSync(join(dir, 'p'), fs.O_WRONLY);
  rmSync(dir, { recursive: true });
  const { dev, ino } = fstatSync(writeFd);
  return {
    readFd,
    held: { fd: writeFd, dev, ino },
    close: () => {
      closeSync(readFd);
      closeSync(writeFd);
    },
  };
}

test('a child holding the pipe is found, and is not once it has ended; a stopped search stops', { timeout: TIMEOUT_MS }, async (t) => {
  const pipe = stockLikePipe();
  t.after(() => pipe.close());
  const child = spawn('sleep', ['30'], { stdio: [pipe.readFd, 'ignore', 'ignore'] });
  t.after(() => child.kill('SIGKILL'));
  await new Promise((resolve) => child.once('spawn', resolve));
  assert.equal(await pipeHolder(pipe.held, { startedSince: 0, stop: () => false }), String(child.pid));
  assert.equal(await pipeHolder(pipe.held, { startedSince: 0, stop: () => true }), undefined, 'told to stop, it gives no answer');
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  // This process's own ends are not another's.
  assert.equal(await pipeHolder(pipe.held, { startedSince: 0, stop: () => false, lastHolder: String(child.pid) }), undefined);
});

test('a process\'s start time is read past a name with spaces and parentheses', { timeout: TIMEOUT_MS }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'np-holders-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const odd = join(dir, 'a) 1 2 (b');
  execFileSync('ln', ['-s', '/bin/sleep', odd]);
  const child = spawn(odd, ['30'], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  await new Promise((resolve) => child.once('spawn', resolve));
  // proc(5): field 22, starttime; python3 reads it as the manual says, past the last ')'.
  const expected = Number(execFileSync('python3', ['-c', `s = open('/proc/${child.pid}/stat').read(); print(s[s.rindex(')') + 2:].split()[19])`]).toString());
  assert.equal(processStartTicks(child.pid as number), expected);
  assert.equal(processStartTicks(2 ** 22 + 7), undefined, 'a process that is not there');
});

test('searching as an account that is not root: an undumpable holder of that account counts, root\'s processes do not', { timeout: TIMEOUT_MS, skip: NEEDS_ROOT }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'np-holders-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('chmod', ['755', dir]);
  // The module is copied where nobody can read it: the checkout may be in a directory only root can enter. It
  // imports nothing but Node's own modules.
  const module = join(dir, 'pipe-holders.mjs');
  copyFileSync(fileURLToPath(new URL('../../recipes/pipe-holders.js', import.meta.url)), module);
  const script = join(dir, 'search.mjs');
  // As nobody: a pipe, a holder that makes itself undumpable and sleeps, a search; the holder ends; a search again.
  writeFileSync(
    script,
    `import { pipeHolder, processStartTicks } from ${JSON.stringify(module)};
import { spawn, execFileSync } from 'node:child_process';
import { openSync, fstatSync, constants as fs } from 'node:fs';
execFileSync('mkfifo', [process.argv[2] + '/p']);
const readFd = openSync(process.argv[2] + '/p', fs.O_RDONLY | fs.O_NONBLOCK);
const writeFd = openSync(process.argv[2] + '/p', fs.O_WRONLY);
const { dev, ino } = fstatSync(writeFd);
const since = processStartTicks(process.pid);
const holder = spawn('python3', ['-c', 'import ctypes, time; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); time.sleep(1.5)'], { stdio: [readFd, 'ignore', 'inherit'] });
await new Promise((resolve) => setTimeout(resolve, 500));
const during = await pipeHolder({ fd: writeFd, dev, ino }, { startedSince: since, stop: () => false });
await new Promise((resolve) => holder.once('exit', resolve));
process.stdout.write(process.argv[3] + '\\n');
await new Promise((resolve) => setTimeout(resolve, 300));
const after = await pipeHolder({ fd: writeFd, dev, ino }, { startedSince: since, stop: () => false });
process.stdout.write(JSON.stringify({ during, holder: String(holder.pid), after }) + '\\n');
`,
  );
  execFileSync('chown', ['nobody', dir]);
  const search = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, script, dir, 'holder-ended'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => search.kill('SIGKILL'));
  const exited = new Promise((resolve) => search.once('exit', resolve));
  let stdout = '';
  let stderr = '';
  search.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  search.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // A root process started after the search's: nobody cannot read its descriptors, and it is not nobody's.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const rootSleep = spawn('sleep', ['10'], { stdio: 'ignore' });
  t.after(() => rootSleep.kill('SIGKILL'));
  const code = await exited;
  assert.equal(code, 0, stderr);
  const lines = stdout.trim().split('\n');
  assert.equal(lines[0], 'holder-ended');
  const { during, holder, after } = JSON.parse(lines[1] as string) as { during?: string; holder: string; after?: string };
  assert.equal(during, holder, 'the undumpable holder counts');
  assert.equal(after, undefined, 'once it has ended, nothing does: root\'s processes are not nobody\'s');
});
