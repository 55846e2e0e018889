// `npm run demo`: the main job end to end on this machine. Throwaway keys in a temp dir, a netplumbd on
// 127.0.0.1, real data through plumb (a tar stream checksummed remotely, compared with the local checksum), the
// backup recipe run by the daemon (archive, checksum and log in its spool directory, checked with sha256sum -c),
// then a second netplumbd on 127.0.0.2 as another machine and the offsite recipe across the two (the archive flows
// daemon to daemon), then everything stopped and removed. Exits non-zero if any step does not do what it shows.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
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

/** A netplumbd on `address` with the host key `hostKey` of `home`, the demo's client authorized; its port once it listens. */
function startDaemon(home: string, address: string, hostKey: string, spool: string): { process: ChildProcess; port: Promise<number> } {
  const started = spawn(
    process.execPath,
    [...NETPLUMBD_NODE_OPTIONS, bin.netplumbd, `-listen=${address}:0`, `-hostkey=${join(home, hostKey)}`, `-clients=${join(home, 'authorized_clients')}`, `-spool=${spool}`, `-run-as=${userInfo().username}`, `-one-time-keys=${join(home, `one-time-keys-${address}`)}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const port = new Promise<number>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`netplumbd did not start: ${seen}`)), 10_000);
    const listening = new RegExp(`listening on ${address.replaceAll('.', '\\.')}:(\\d+)`);
    started.stderr?.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const match = listening.exec(seen);
      if (match !== null) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    started.once('exit', () => reject(new Error(`netplumbd exited: ${seen}`)));
  });
  return { process: started, port };
}

async function main(): Promise<number> {
  const home = mkdtempSync(join(tmpdir(), 'netplumb-demo-'));
  const env = { ...process.env, NETPLUMB_HOME: home };
  const daemons: ChildProcess[] = [];
  try {
    step('throwaway keys');
    for (const name of ['host_key', 'identity']) {
      const result = run([bin.keygen, '-f', join(home, name), '-C', `demo-${name}`]);
      process.stdout.write(result.stdout);
      if (result.status !== 0) throw new Error(`netplumb-keygen failed: ${result.stderr}`);
    }
    // A controller: the offsite step below runs a recipe across two daemons, which only a controller may.
    writeFileSync(join(home, 'authorized_clients'), `controller ${readFileSync(join(home, 'identity.pub'), 'utf8')}`);

    step('netplumbd on 127.0.0.1');
    const spool = join(home, 'spool');
    const first = startDaemon(home, '127.0.0.1', 'host_key', spool);
    daemons.push(first.process);
    const port = await first.port;
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

    step('a second machine: netplumbd on 127.0.0.2, its own host key and spool directory');
    const vaultSpool = join(home, 'vault-spool');
    const keygen = run([bin.keygen, '-f', join(home, 'vault_host_key'), '-C', 'demo-vault']);
    if (keygen.status !== 0) throw new Error(`netplumb-keygen failed: ${keygen.stderr}`);
    const second = startDaemon(home, '127.0.0.2', 'vault_host_key', vaultSpool);
    daemons.push(second.process);
    const vaultPort = await second.port;
    writeFileSync(join(home, 'hosts'), `db1 127.0.0.1:${port}\nvault 127.0.0.2:${vaultPort}\n`);
    process.stdout.write(`netplumbd listening on 127.0.0.2:${vaultPort}; plumb's hosts file names the two db1 and vault\n`);
    const pin = run([bin.plumb, '-accept-new', 'vault', 'true'], { env });
    process.stdout.write(pin.stderr);

    const offsite = join(REPO_DIR, 'recipes', 'examples', 'machines', 'offsite.rcp');
    step('plumb -recipe=recipes/examples/machines/offsite.rcp -json   (tar | gzip on db1, stored on vault, daemon to daemon)');
    process.stdout.write(readFileSync(offsite, 'utf8'));
    const across = run([bin.plumb, `-recipe=${offsite}`, '-json'], { env });
    process.stdout.write(across.stderr);
    if (across.status !== 0) throw new Error(`the offsite recipe exited ${across.status}`);
    const vaultListing = spawnSync('ls', ['-l', vaultSpool], { encoding: 'utf8' });
    process.stdout.write(`vault's spool directory ${vaultSpool}:\n${vaultListing.stdout}`);
    const vaultVerify = spawnSync('sha256sum', ['-c', 'offsite.tar.gz.sha256'], { cwd: vaultSpool, encoding: 'utf8' });
    process.stdout.write(`sha256sum -c in vault's spool: ${vaultVerify.stdout}`);
    if (vaultVerify.status !== 0) throw new Error(`the offsite archive does not match its checksum: ${vaultVerify.stderr}`);
    return 0;
  } finally {
    step('stopping both netplumbd and removing the throwaway keys');
    for (const daemon of daemons) {
      if (daemon.exitCode !== null || daemon.signalCode !== null) continue;
      const exited = new Promise((resolve) => daemon.once('exit', resolve));
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
