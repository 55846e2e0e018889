// Which machine of a recipe across machines each replicated named pipe or socket (-infifo, -outfifo, -socket,
// -local-socket) attaches to: the one the option names (`-infifo=@db1:PATH`), or else the one whose commands use
// the path (a word of a command, `--opt=PATH`, or a redirection). A path no command names, or one named on more than
// one machine, is a usage error that says how to name the machine: plumb never guesses between machines.

import { UsageError } from '../protocol/errors.js';
import { placementName, type RecipePlan, type RecipeStage } from '../recipes/plan.js';
import { joinEndpointOptions, type EndpointOptions } from './endpoints.js';

/** The machine each endpoint option named (`@MACHINE:`), by option and position; undefined where it named none. */
export type EndpointMachines = { readonly [K in keyof EndpointOptions]: ReadonlyArray<string | undefined> };

/** `@MACHINE:` before a path, MACHINE written as a recipe's placement is (recipe.peggy MachineText). */
const MACHINE_PREFIX = /^@((?:[A-Za-z0-9_][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?):(.+)$/s;

/** An option's value split into the machine it names, if any, and the rest (the path, or the socket's paths). */
export function splitEndpointMachine(value: string): { machine: string | undefined; rest: string } {
  const match = MACHINE_PREFIX.exec(value);
  return match === null ? { machine: undefined, rest: value } : { machine: match[1], rest: match[2] as string };
}

/** Whether any endpoint option named a machine: only a recipe across machines has machines to name. */
export function namesMachines(machines: EndpointMachines): boolean {
  return Object.values(machines).some((named: ReadonlyArray<string | undefined>) => named.some((machine) => machine !== undefined));
}

/**
 * Whether a command uses `path`: as one of its words (`./path` too, for a relative one), as the value of
 * `--option=`, or as a redirection's file. A relative path is the daemon's, in the spool directory where the commands
 * run; the plan has its relative redirections in `spoolDir` too.
 */
function stageUses(stage: RecipeStage, path: string, spoolDir: string): boolean {
  const relative = !path.startsWith('/');
  const inSpool = relative ? `${spoolDir.replace(/\/$/, '')}/${path}` : path;
  const names = (word: string): boolean => word === path || word.endsWith(`=${path}`) || (relative && word === `./${path}`) || word === inSpool;
  const files = [stage.stdin, stage.stdout, stage.stderr].flatMap((end) => (end.kind === 'file' ? [end.path] : []));
  return stage.argv.some(names) || files.some((file) => file === inSpool);
}

/** A local named pipe or socket path given twice: two machines would share one local end, its bytes split at random. */
function refuseSharedLocalPaths(options: EndpointOptions): void {
  const local = [...options.inFifos, ...options.outFifos, ...options.sockets.map((pair) => pair.local), ...options.localSockets.map((pair) => pair.local)];
  const twice = local.find((path, index) => local.indexOf(path) !== index);
  if (twice !== undefined) throw new UsageError(`${twice} is given to more than one named pipe or socket option: each local end joins one machine`);
}

/**
 * Splits the endpoint options among the recipe's placements ('' for commands without one): each goes to the
 * placement it names, or to the one whose commands use its remote path.
 */
export function placeEndpoints(plan: RecipePlan, options: EndpointOptions, machines: EndpointMachines): Map<string, EndpointOptions> {
  refuseSharedLocalPaths(options);
  const placements = [...new Set(plan.stages.map((stage) => stage.machine ?? ''))];
  const placed = new Map<string, EndpointOptions>(placements.map((placement) => [placement, joinEndpointOptions()]));
  const place = (option: string, value: string, remotePath: string, named: string | undefined): string => {
    if (named !== undefined) {
      if (!placements.includes(named)) throw new UsageError(`-${option}=@${named}:${value}: no command of ${plan.source} is placed on @${named}`);
      return named;
    }
    const users = placements.filter((placement) => plan.stages.some((stage) => (stage.machine ?? '') === placement && stageUses(stage, remotePath, plan.spoolDir)));
    if (users.length === 1) return users[0] as string;
    const how = `name the machine: -${option}=@MACHINE:${value}`;
    if (users.length === 0) throw new UsageError(`-${option}=${value}: no command of ${plan.source} names ${remotePath}, so plumb cannot tell which machine it belongs to; ${how}`);
    throw new UsageError(`-${option}=${value}: commands on ${users.map(placementName).join(' and ')} name ${remotePath}; ${how}`);
  };
  const target = (placement: string): EndpointOptions => placed.get(placement) as EndpointOptions;
  options.inFifos.forEach((path, index) => target(place('infifo', path, path, machines.inFifos[index])).inFifos.push(path));
  options.outFifos.forEach((path, index) => target(place('outfifo', path, path, machines.outFifos[index])).outFifos.push(path));
  options.sockets.forEach((pair, index) => target(place('socket', `${pair.remote}:${pair.local}`, pair.remote, machines.sockets[index])).sockets.push(pair));
  options.localSockets.forEach((pair, index) => target(place('local-socket', `${pair.local}:${pair.remote}`, pair.remote, machines.localSockets[index])).localSockets.push(pair));
  return placed;
}
