// What the daemon decides before anything of a Start is made: whether the request may run at all (exported
// environment, a one-time key's binding, the account, the recipe's own check, the gluepot), as which account, from
// which spool, and which programs exactly. A key's minting asks the same questions, so a key never grants more than
// the Start it stands for would get. Nothing here spawns, opens or makes a file.

import { existsSync } from 'node:fs';
import { BadRequestError, EndpointError, EnvRefusedError, NotPermittedError } from '../protocol/errors.js';
import type { Endpoints, ExecRequest, ExportedEnv, KeyBinding, StartRequest } from '../protocol/session.js';
import { StartKind } from '../protocol/wire.js';
import type { RecipePlan } from '../recipes/plan.js';
import { chooseAccountName, daemonAccount, lookupAccount, RunAs, userSpoolDir } from './accounts.js';
import { envAccepted } from './config.js';
import { resolveDaemonPath } from './endpoints.js';
import { checkCommand, checkPath, type Gluepot } from './gluepots.js';
import { checkBinding } from './one-time-keys.js';
import { RecipeChecker } from './recipe-checker.js';

/** What one client's line (or one-time key) allows its sessions. */
export interface StartGrant {
  /** Where relative file names and named pipes live for the daemon's own account. */
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

/** A Start the policy accepted: everything a runner needs to make it happen as checked. */
export interface PreparedStart {
  request: StartRequest;
  identity: SessionIdentity;
  /** The daemon's own plan of a recipe; undefined for a command. */
  plan: RecipePlan | undefined;
  /** The programs the gluepot check resolved, in argv or stage order, so what runs is what was checked; undefined without a gluepot. */
  programs: string[] | undefined;
  /** The command's environment: the account's login variables, NETPLUMB_SPOOL and the accepted exports. */
  env: Record<string, string>;
}

/** Every session's recipes are checked on this one worker, off the event loop the other sessions share. */
const recipeChecker = new RecipeChecker();

/**
 * The checks that need no account and no I/O, done as the Start arrives: exported variables the daemon does not
 * accept, and a one-time key's binding. Throws the refusal.
 */
export function checkRequest(request: StartRequest, grant: StartGrant): void {
  const refused = request.env.map(([name]) => name).filter((name) => !envAccepted(name, grant.acceptEnv));
  if (refused.length > 0) {
    throw new EnvRefusedError(`environment variable${refused.length > 1 ? 's' : ''} not accepted by the daemon: ${refused.join(', ')}`);
  }
  if (grant.binding !== undefined) checkBinding(grant.binding, request);
}

/**
 * The whole policy for a request: checkRequest, the account, the daemon's own check of a recipe (the client's
 * check is never trusted), named pipes a recipe both declares and replicates, and the gluepot. `abandoned` is
 * asked after each wait: once it says true, the preparation stops with a refusal nobody will read.
 */
export async function prepareStart(request: StartRequest, grant: StartGrant, abandoned: () => boolean): Promise<PreparedStart> {
  checkRequest(request, grant);
  const identity = await identify(request.user, grant);
  const stillWanted = (): void => {
    if (abandoned()) throw new BadRequestError('connection closed');
  };
  stillWanted();
  const plan = request.kind === StartKind.Recipe ? await checkedRecipe(request.text, request.source, identity) : undefined;
  stillWanted();
  if (plan !== undefined) refuseReplicatedRecipeFifos(request.endpoints, plan, identity.spoolDir);
  const env = commandEnvironment(request.env, identity);
  const programs = checkGluepot(request, plan, identity, env, grant.gluepot);
  return { request, identity, plan, programs, env };
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
 * A recipe's own named pipes are made and held by the recipe; the same path cannot also be a replicated -infifo or
 * -outfifo (two readers would share one pipe). Refused before anything is made.
 */
function refuseReplicatedRecipeFifos(endpoints: Endpoints, plan: RecipePlan, spoolDir: string): void {
  const declared = new Set(plan.fifos.map((fifo) => fifo.path));
  for (const path of [...endpoints.inFifos, ...endpoints.outFifos]) {
    const resolved = resolveDaemonPath(path, spoolDir);
    if (declared.has(resolved)) {
      throw new EndpointError(`${path} is a named pipe the recipe declares; replicate another path and let a command copy it`);
    }
  }
}

/**
 * With a gluepot, every program the request would run is resolved (PATH, symlinks) and must be listed, and every
 * absolute file a recipe redirects to outside the spool directory must be allowed; nothing is made before this
 * passes. Both are resolved with the rights of the account the commands run as: the answer tells the client no
 * more than that account could see.
 */
function checkGluepot(request: StartRequest, plan: RecipePlan | undefined, identity: SessionIdentity, env: Record<string, string>, gluepot: Gluepot | undefined): string[] | undefined {
  if (gluepot === undefined) return undefined;
  const { runAs } = identity;
  const searchPath = env['PATH'] ?? '';
  if (plan === undefined) {
    const argv = (request as ExecRequest).argv;
    return [checkCommand(gluepot, argv.length > 0 ? argv : loginShell(runAs), searchPath, workingDirectory(runAs), runAs)];
  }
  for (const stage of plan.stages) {
    for (const redirection of [stage.stdin, stage.stdout, stage.stderr]) {
      if (redirection.kind === 'file') checkPath(gluepot, redirection.path, plan.spoolDir, `file of ${stage.name}`, runAs);
    }
  }
  return plan.stages.map((stage) => checkCommand(gluepot, stage.argv, searchPath, plan.spoolDir, runAs));
}

/** What a pty session without a command runs: the account's login shell. */
export function loginShell(runAs: RunAs): string[] {
  return [runAs.account.shell, '-l'];
}

/**
 * The account's home directory, or / when it does not exist: a missing cwd fails spawn with ENOENT, which
 * would read as "command not found".
 */
export function workingDirectory(runAs: RunAs): string {
  const { home } = runAs.account;
  return existsSync(home) ? home : '/';
}

/**
 * The environment every command starts with: the account's login variables (nothing of the daemon's own),
 * NETPLUMB_SPOOL (where relative named pipes and sockets live), and the client's exported variables (already
 * accepted) on top.
 */
function commandEnvironment(exported: ExportedEnv, identity: SessionIdentity): Record<string, string> {
  const env: Record<string, string> = { PATH: '/usr/local/bin:/usr/bin:/bin', ...identity.runAs.environment(), LANG: 'C.UTF-8', NETPLUMB_SPOOL: identity.spoolDir };
  for (const [name, value] of exported) env[name] = value;
  return env;
}
