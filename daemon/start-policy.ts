// What a client may start, decided before anything runs: the exported environment, a one-time key's binding, the
// account, the daemon's own check of a recipe, the gluepot and the named pipes a recipe declares. A key is minted
// through the same checks, so it can never grant more than its controller has.

import { existsSync } from 'node:fs';
import { BadRequestError, EndpointError, EnvRefusedError, NotPermittedError } from '../protocol/errors.js';
import type { ExportedEnv, KeyBinding, StartRequest } from '../protocol/session.js';
import { StartKind } from '../protocol/wire.js';
import { placementName, stagesPlacedOn, type RecipePlan } from '../recipes/plan.js';
import { chooseAccountName, daemonAccount, lookupAccount, RunAs, userSpoolDir } from './accounts.js';
import { envAccepted } from './config.js';
import { resolveDaemonPath } from './endpoints.js';
import { checkCommand, checkPath, type Gluepot } from './gluepots.js';
import { checkBinding } from './one-time-keys.js';
import { RecipeChecker } from './recipe-checker.js';

/** What the client's authorized-clients line (or its one-time key) grants a session. */
export interface StartGrant {
  /** Where a recipe's relative file names and named pipes live; its commands run there. */
  spoolDir: string;
  /** Patterns of the variable names a client may export (accept-env). */
  acceptEnv: readonly string[];
  /** What the client may run and name; absent: anything (a client line without gluepot=). */
  gluepot?: Gluepot;
  /** Who the commands may run as: the accounts the client's line allows (`user=`) and the daemon's default. */
  accounts: SessionAccounts;
  /** A one-time key's session: the one command (or recipe) it may start; anything else is refused. */
  binding?: KeyBinding;
}

export interface SessionAccounts {
  /** The `user=` list of the client's line; undefined: only the configured account. */
  allowed: readonly string[] | undefined;
  /** The daemon's run-as account (its own when not configured). */
  configured: string;
}

/** Who a session's commands run as, and the spool directory they use. */
export interface SessionIdentity {
  runAs: RunAs;
  spoolDir: string;
}

/** A request the policy let through, with everything needed to run it as checked. */
export interface PreparedStart {
  identity: SessionIdentity;
  /** The environment the commands start with. */
  env: Record<string, string>;
  /** Where a command (not a recipe) runs: the account's home, or / when it has none. */
  cwd: string;
  /** A recipe's plan as the daemon checked it; undefined for a command. */
  plan: RecipePlan | undefined;
  /** Programs resolved by the gluepot check, in argv or stage order, to run as checked; undefined without a gluepot. */
  programs: string[] | undefined;
  /** A part of a recipe across machines: the stages placed on this machine (the only ones it checks and runs). */
  ownStages?: ReadonlySet<number>;
}

/** A Start is checked to be run; a MintKey's binding to be handed to a key (no environment, no pipes made). */
export type PolicyMode = 'start' | 'mint';

/** Every session's recipes are checked on this one worker, off the event loop the other sessions share. */
const recipeChecker = new RecipeChecker();

/**
 * The refusals that need nothing looked up: exported variables the daemon does not accept, and anything a one-time
 * key's binding does not allow. Throws a RequestError.
 */
export function checkRequest(request: StartRequest, grant: StartGrant): void {
  const refused = request.env.map(([name]) => name).filter((name) => !envAccepted(name, grant.acceptEnv));
  if (refused.length > 0) {
    throw new EnvRefusedError(`environment variable${refused.length > 1 ? 's' : ''} not accepted by the daemon: ${refused.join(', ')}`);
  }
  if (grant.binding === undefined) return;
  if (request.kind === StartKind.Part) throw new NotPermittedError('this one-time key does not allow that: it is bound to one command or recipe, not a part of a recipe across machines');
  if (request.kind === StartKind.Forward) throw new NotPermittedError('this one-time key does not allow that: it is bound to one command or recipe, not a forward without one');
  checkBinding(grant.binding, request);
}

/**
 * Checks a request (a Start, or a binding to mint a key for) against what the client was granted and readies what
 * running it needs. `cancelled` is asked between the slow steps: once it says true, the request is refused.
 * Rejects with a NetplumbError whose code the refusal carries.
 */
export async function prepareStart(request: StartRequest | KeyBinding, grant: StartGrant, mode: PolicyMode, cancelled: () => boolean = () => false): Promise<PreparedStart> {
  const exported: ExportedEnv = 'env' in request ? request.env : [];
  if (mode === 'start') checkRequest(request as StartRequest, grant);
  const identity = await identify(request.user, grant);
  refuseIfCancelled(cancelled);
  const plan = request.kind === StartKind.Recipe || request.kind === StartKind.Part ? await checkedRecipe(request.text, request.source, identity) : undefined;
  refuseIfCancelled(cancelled);
  const ownStages = request.kind === StartKind.Part && plan !== undefined ? partStages(plan, request.machines) : undefined;
  if (plan !== undefined && ownStages === undefined) refusePlacedStages(plan);
  if (mode === 'start' && plan !== undefined) refuseReplicatedRecipeFifos(request.endpoints, plan, identity.spoolDir);
  const env = commandEnvironment(exported, identity);
  const cwd = workingDirectory(identity.runAs);
  const argv = request.kind === StartKind.Exec ? commandArgv(request.argv, identity.runAs) : [];
  // A forward runs nothing: its named pipes and sockets are checked against the gluepot as they are made.
  const programs = request.kind === StartKind.Forward ? undefined : checkGluepot(grant.gluepot, argv, plan, env['PATH'] ?? '', cwd, identity.runAs, ownStages);
  return { identity, env, cwd, plan, programs, ...(ownStages === undefined ? {} : { ownStages }) };
}

/** The stages a part runs here: those placed on one of the part's machines. A part with none is refused. */
function partStages(plan: RecipePlan, machines: readonly string[]): ReadonlySet<number> {
  const own = stagesPlacedOn(plan, machines);
  if (own.size === 0) throw new BadRequestError(`no command of ${plan.source} is placed on ${machines.map(placementName).join(' or ')}`);
  return own;
}

/** What a pty session without a command runs: the account's login shell; otherwise argv as asked. */
export function commandArgv(argv: readonly string[], runAs: RunAs): string[] {
  return argv.length > 0 ? [...argv] : [runAs.account.shell, '-l'];
}

function refuseIfCancelled(cancelled: () => boolean): void {
  if (cancelled()) throw new BadRequestError('connection closed');
}

/**
 * The account the commands run as (refused unless the client's line allows it) and its spool: the daemon's
 * own, or under `users/NAME` in it for another account. A daemon not running as root only runs commands as itself.
 */
async function identify(user: string | undefined, grant: StartGrant): Promise<SessionIdentity> {
  const { allowed, configured } = grant.accounts;
  const name = chooseAccountName(user, allowed, configured);
  const own = daemonAccount();
  if (name !== own.name && process.geteuid?.() !== 0) {
    throw new NotPermittedError(`netplumbd runs as ${own.name}, not as root: it cannot run commands as ${name}`);
  }
  const runAs = new RunAs(name === own.name ? own : await lookupAccount(name));
  return { runAs, spoolDir: runAs.switches ? userSpoolDir(grant.spoolDir, runAs.account) : grant.spoolDir };
}

/** A recipe checked by the daemon itself (on the checker's worker), its errors as the request's refusal. */
async function checkedRecipe(text: string, source: string, identity: SessionIdentity): Promise<RecipePlan> {
  return await recipeChecker.check(text, { sourceName: source, spoolDir: identity.spoolDir });
}

/**
 * A Start runs every command of its recipe here, so a command placed on a machine (`@db1`) cannot be honoured by it:
 * refused, rather than run on the wrong machine.
 */
function refusePlacedStages(plan: RecipePlan): void {
  const placed = plan.stages.find((stage) => stage.machine !== undefined);
  if (placed === undefined) return;
  const which = placed.label === undefined ? `the command on line ${placed.location.line}` : `the command labelled ${placed.label} (line ${placed.location.line})`;
  throw new BadRequestError(`${which} is placed on @${placed.machine ?? ''}: a recipe that names machines is run by plumb across them, not by one Start`);
}

/**
 * A recipe's own named pipes are made and held by the recipe; the same path cannot also be a replicated -infifo or
 * -outfifo (two readers would share one pipe). Refused before anything is made.
 */
function refuseReplicatedRecipeFifos(endpoints: { inFifos: readonly string[]; outFifos: readonly string[] }, plan: RecipePlan, spoolDir: string): void {
  const declared = new Set(plan.fifos.map((fifo) => fifo.path));
  for (const path of [...endpoints.inFifos, ...endpoints.outFifos]) {
    if (declared.has(resolveDaemonPath(path, spoolDir))) {
      throw new EndpointError(`${path} is a named pipe the recipe declares; replicate another path and let a command copy it`);
    }
  }
}

/**
 * With a gluepot, every program the request would run is resolved (PATH, symlinks) and must be listed, and every
 * absolute file a recipe redirects to outside the spool directory must be allowed; nothing is made before this
 * passes. Returns the resolved programs, in argv or stage order, so what runs is what was checked. Both are
 * resolved with the rights of the account the commands run as: the answer tells the client no more than that
 * account could see.
 */
function checkGluepot(
  gluepot: Gluepot | undefined,
  argv: string[],
  plan: RecipePlan | undefined,
  searchPath: string,
  cwd: string,
  runAs: RunAs,
  ownStages?: ReadonlySet<number>,
): string[] | undefined {
  if (gluepot === undefined) return undefined;
  if (plan === undefined) return [checkCommand(gluepot, argv, searchPath, cwd, runAs)];
  // A part checks only the commands it runs: the others are their own machines' to check, under their gluepots.
  const here = (index: number): boolean => ownStages?.has(index) ?? true;
  for (const stage of plan.stages.filter((candidate) => here(candidate.index))) {
    for (const redirection of [stage.stdin, stage.stdout, stage.stderr]) {
      if (redirection.kind === 'file') checkPath(gluepot, redirection.path, plan.spoolDir, `file of ${stage.name}`, runAs);
    }
  }
  return plan.stages.map((stage) => (here(stage.index) ? checkCommand(gluepot, stage.argv, searchPath, plan.spoolDir, runAs) : ''));
}

/**
 * The account's login variables (nothing of the daemon's own), NETPLUMB_SPOOL (where relative named pipes and
 * sockets live), and the client's exported variables (already accepted) on top.
 */
function commandEnvironment(exported: ExportedEnv, identity: SessionIdentity): Record<string, string> {
  const env: Record<string, string> = { PATH: '/usr/local/bin:/usr/bin:/bin', ...identity.runAs.environment(), LANG: 'C.UTF-8', NETPLUMB_SPOOL: identity.spoolDir };
  for (const [name, value] of exported) env[name] = value;
  return env;
}

/**
 * The account's home directory, or / when it does not exist: a missing cwd fails spawn with ENOENT, which
 * would read as "command not found".
 */
function workingDirectory(runAs: RunAs): string {
  const { home } = runAs.account;
  return existsSync(home) ? home : '/';
}
