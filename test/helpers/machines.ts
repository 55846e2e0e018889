// Several machines for the tests of recipes across machines: one netplumbd per machine, each on a loopback address
// of its own (127.0.0.2, 127.0.0.3, ...) with its own host key, spool and authorized-clients file, and one
// controller (plumb) authorized on all of them, whose hosts file names each machine by an alias (`@db1`).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, startDaemon, writeKeyPair, type DaemonProcess, type KeyFiles } from './daemon.js';
import { spawnProcess, type ProcessResult, type RunOptions, type RunningProcess } from './processes.js';
import { tempDir, type Scope } from './scope.js';

export interface MachineSpec {
  /** The loopback address its daemon listens on. */
  address: string;
  /** Options before the controller's key on its authorized-clients line; `controller` is always there. */
  clientOptions?: string;
  /** Variables added to its daemon's environment. */
  env?: NodeJS.ProcessEnv;
}

export interface Machine {
  alias: string;
  daemon: DaemonProcess;
  /** Its daemon's spool: where the recipe's relative files on that machine are. */
  spool: string;
  clientsFile: string;
}

export interface Machines {
  dir: string;
  /** NETPLUMB_HOME of the controller's plumb runs: its hosts aliases and known_hosts. */
  home: string;
  controller: KeyFiles;
  machine(alias: string): Machine;
  /** Writes a recipe file in the test's directory; returns its path. */
  recipe(name: string, text: string): string;
  /** plumb as the controller: -identity, -accept-new, then the arguments. */
  spawnPlumb(args: readonly string[], options?: RunOptions): RunningProcess;
  plumb(args: readonly string[], options?: RunOptions): Promise<ProcessResult>;
}

/** Starts one daemon per machine (in parallel) and writes the controller's hosts file naming them. */
export async function startMachines(scope: Scope, specs: Record<string, MachineSpec>): Promise<Machines> {
  const dir = tempDir(scope, 'netplumb-e2e-machines-');
  const home = join(dir, 'home');
  const controller = writeKeyPair(dir, 'controller');
  const machines = new Map<string, Machine>();
  await Promise.all(
    Object.entries(specs).map(async ([alias, spec]) => {
      const hostKey = writeKeyPair(dir, `host_key-${alias}`);
      const clientsFile = join(dir, `clients-${alias}`);
      writeFileSync(clientsFile, `controller${spec.clientOptions === undefined ? '' : `,${spec.clientOptions}`} ${controller.publicLine}\n`);
      const spool = join(dir, `spool-${alias}`);
      const daemon = await startDaemon(scope, {
        hostKeyFile: hostKey.privateFile,
        clientsFile,
        listenHost: spec.address,
        args: [`-spool=${spool}`],
        ...(spec.env === undefined ? {} : { env: spec.env }),
      });
      machines.set(alias, { alias, daemon, spool, clientsFile });
    }),
  );
  mkdirSync(home, { recursive: true, mode: 0o700 });
  writeFileSync(join(home, 'hosts'), [...machines.values()].map((machine) => `${machine.alias} ${machine.daemon.address}\n`).join(''));
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, NETPLUMB_HOME: home });
  const spawnPlumb = (args: readonly string[], options: RunOptions = {}): RunningProcess =>
    spawnProcess(scope, [process.execPath, BIN.plumb, `-identity=${controller.privateFile}`, '-accept-new', ...args], { ...options, env: options.env ?? env() });
  return {
    dir,
    home,
    controller,
    machine(alias) {
      const found = machines.get(alias);
      if (found === undefined) throw new Error(`no machine ${alias}`);
      return found;
    },
    recipe(name, text) {
      const file = join(dir, name);
      writeFileSync(file, text);
      return file;
    },
    spawnPlumb,
    plumb: (args, options) => spawnPlumb(args, options).result,
  };
}
