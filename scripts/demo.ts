// `npm run demo`: the main job end to end on this machine. Throwaway keys in a temp dir, a netplumbd on
// 127.0.0.1, real data through plumb (a tar stream checksummed remotely, compared with the local checksum), the
// backup recipe run by the daemon (archive, checksum and log in its spool directory, checked with sha256sum -c),
// then everything stopped and removed. Exits non-zero if any step does not do what it shows.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { PROGRAMS, REPO_DIR } from './built-programs.js';
import { NETPLUMBD_NODE_OPTIONS } from '../daemon/node-options.js';

const bin = PROGRAMS;

function step(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

function run(args: string[], options: { input?: Buffer; env?: NodeJS.ProcessEnv } = {}): { status: number; stdout: Buffer; stderr: string } {
  const result = spawnSync(process.execPath, args, { input: options.input, env: options.env ?? process.env, maxBuffer: 1 << 30 });
  return { status: result.status ?? 255, stdout: result.stdout, stderr: result.stderr.toString() };
}

async function main(): Promise<number> {
  const home = mkdtempSync(join(tmpdir(), 'netplumb-demo-'));
  const env = { ...process.env, NETPLUMB_HOME: home };
  let daemon: ReturnType<typeof spawn> | undefined;
  try {
    step('throwaway keys');
    for (const name of ['host_key', 'identity']) {
      const result = run([bin.keygen, '-f', join(home, name), '-C', `demo-${name}`]);
      process.stdout.write(result.stdout);
      if (result.status !== 0) throw new Error(`netplumb-keygen failed: ${result.stderr}`);
    }
    writeFileSync(join(home, 'authorized_clients'), readFileSync(join(home, 'identity.pub')));

    step('netplumbd on 127.0.0.1');
    const spool = join(home, 'spool');
    const started = spawn(process.execPath, [...NETPLUMBD_NODE_OPTIONS, bin.netplumbd, '-listen=127.0.0.1:0', `-hostkey=${join(home, 'host_key')}`, `-clients=${join(home, 'authorized_clients')}`, `-spool=${spool}`, `-run-as=${userInfo().username}`, `-one-time-keys=${join(home, 'one-time-keys')}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    daemon = started;
    const port = await new Promise<number>((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => reject(new Error(`netplumbd did not start: ${seen}`)), 10_000);
      started.stderr?.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        const match = /listening on 127\.0\.0\.1:(\d+)/.exec(seen);
        if (match !== null) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
      started.once('exit', () => reject(new Error(`netplumbd exited: ${seen}`)));
    });
    process.stdout.write(`netplumbd listening on 127.0.0.1:${port}\n`);
    const machine = `127.0.0.1:${port}`;

    step(`plumb -accept-new ${machine} uname -a   (pins the daemon's host key)`);
    const uname = run([bin.plumb, '-accept-new', machine, 'uname', '-a'], { env });
    process.stdout.write(uname.stdout);
    process.stdout.write(uname.stderr);
    if (uname.status !== 0) throw new Error(`plumb exited ${uname.status}`);

    step(`tar -cf - /usr/share/common-licenses | plumb ${machine} sha256sum`);
    const tar = spawnSync('tar', ['-cf', '-', '-C', '/usr/share', 'common-licenses'], { maxBuffer: 1 << 30 });
    const archive = tar.stdout;
    const local = createHash('sha256').update(archive).digest('hex');
    const remote = run([bin.plumb, machine, 'sha256sum'], { env, input: archive });
    const remoteSum = remote.stdout.toString().split(/\s+/)[0] ?? '';
    process.stdout.write(`archive: ${archive.length} bytes\nlocal  sha256 ${local}\nremote sha256 ${remoteSum}\n`);
    if (remote.status !== 0 || remoteSum !== local) throw new Error('remote checksum differs from the local one');
    process.stdout.write('the same bytes arrived, encrypted on the wire\n');

    const recipe = join(REPO_DIR, 'recipes', 'examples', 'backup.rcp');
    step(`plumb -check -recipe=recipes/examples/backup.rcp   (the plan, checked locally; nothing runs)`);
    const check = run([bin.plumb, '-check', `-recipe=${recipe}`, `-spool=${spool}`], { env });
    process.stdout.write(check.stdout);
    if (check.status !== 0) throw new Error(`plumb -check exited ${check.status}: ${check.stderr}`);

    step(`plumb ${machine} -recipe=recipes/examples/backup.rcp -json   (tar | gzip, sha256sum, one log, in the daemon's spool)`);
    const backup = run([bin.plumb, machine, `-recipe=${recipe}`, '-json'], { env });
    process.stdout.write(backup.stderr);
    if (backup.status !== 0) throw new Error(`the backup recipe exited ${backup.status}`);
    const listing = spawnSync('ls', ['-l', spool], { encoding: 'utf8' });
    process.stdout.write(`spool directory ${spool}:\n${listing.stdout}`);
    const verify = spawnSync('sha256sum', ['-c', 'common-licenses.tar.gz.sha256'], { cwd: spool, encoding: 'utf8' });
    process.stdout.write(`sha256sum -c in the spool: ${verify.stdout}`);
    if (verify.status !== 0) throw new Error(`the archive does not match its checksum: ${verify.stderr}`);

    step(`plumb ${machine} sh -c 'echo to-stderr >&2; exit 3'`);
    const failing = run([bin.plumb, machine, 'sh', '-c', 'echo to-stderr >&2; exit 3'], { env });
    process.stdout.write(`stderr: ${failing.stderr}exit status: ${failing.status}\n`);
    if (failing.status !== 3) throw new Error('exit status was not passed through');
    return 0;
  } finally {
    step('stopping netplumbd and removing the throwaway keys');
    if (daemon !== undefined && daemon.exitCode === null) {
      const exited = new Promise((resolve) => daemon?.once('exit', resolve));
      daemon.kill('SIGTERM');
      await exited;
    }
    rmSync(home, { recursive: true, force: true });
    process.stdout.write('done\n');
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
