// RecipeChecker: the daemon's recipe check, checkRecipe() run on a worker thread so that a long recipe never holds up
// the other sessions' packets. One warm worker, a bounded queue, a time budget per check; a refusal comes back as the
// RecipeError checkRecipe() threw (same code, same render()), a plan as the plain data checkRecipe() returned.

import { Worker } from 'node:worker_threads';
import {
  ErrorCode,
  errorFor,
  InternalError,
  isErrorCode,
  NetplumbError,
  RecipeError,
  recipeError,
  RecipeTooLargeError,
  TooManyConnectionsError,
  type RecipeErrorCode,
} from '../protocol/errors.js';
import type { CheckOptions } from '../recipes/check.js';
import type { RecipeLocation, RecipePlan } from '../recipes/plan.js';

/** Longest one check may take on the worker, in ms; a 64 KiB recipe takes tens. Over it: NP_RECIPE_TOO_LARGE. */
export const RECIPE_CHECK_BUDGET_MS = 2_000;

/** Most checks waiting for the worker (the one it is running not counted). One more: NP_TOO_MANY_CONNECTIONS. */
export const MAX_WAITING_RECIPE_CHECKS = 64;

const WORKER_FILE = new URL('./recipe-check-worker.js', import.meta.url);

/** To the worker: one check. */
export interface CheckRequest {
  id: number;
  text: string;
  options: CheckOptions;
}

/** A thrown error as plain data: a RecipeError with its place, anything else by code and message. */
export interface Refusal {
  code: string;
  message: string;
  recipe?: { reason: string; location: RecipeLocation; lineText: string };
}

/** From the worker: `ready` once, when it can check, then one answer per request, in order. */
export type CheckReply = { kind: 'ready' } | { kind: 'plan'; id: number; plan: RecipePlan } | { kind: 'refused'; id: number; refusal: Refusal };

/** What the worker sends for an error checkRecipe() threw. */
export function refusalOf(error: unknown): Refusal {
  if (error instanceof RecipeError && error.location !== undefined) {
    return { code: error.code, message: error.message, recipe: { reason: error.reason, location: error.location, lineText: error.lineText } };
  }
  if (error instanceof NetplumbError) return { code: error.code, message: error.message };
  return { code: ErrorCode.Internal, message: error instanceof Error ? error.message : String(error) };
}

/** The error a Refusal stands for: a RecipeError renders exactly as the one the worker caught. */
export function errorOf(refusal: Refusal): NetplumbError {
  const { code, message, recipe } = refusal;
  if (recipe !== undefined) return recipeError(code as RecipeErrorCode, recipe.reason, recipe.location, recipe.lineText);
  if (code === ErrorCode.Config) return errorFor(code, message);
  return errorFor(isErrorCode(code) ? code : ErrorCode.Internal, message);
}

export interface RecipeCheckerOptions {
  /** Default RECIPE_CHECK_BUDGET_MS. */
  budgetMs?: number;
  /** Default MAX_WAITING_RECIPE_CHECKS. */
  maxWaiting?: number;
}

interface PendingCheck {
  request: CheckRequest;
  resolve(plan: RecipePlan): void;
  reject(error: NetplumbError): void;
}

/**
 * Checks recipes on one worker thread, started at the first check and kept for the next. One worker, not a pool:
 * the daemon may have two cores, and its event loop needs one of them; a burst of checks waits its turn rather than
 * taking both. The worker is unref()'d whenever no check is waiting or running, so it never keeps the daemon alive.
 */
export class RecipeChecker {
  private readonly budgetMs: number;
  private readonly maxWaiting: number;
  private readonly waiting: PendingCheck[] = [];
  private running: PendingCheck | undefined;
  private worker: Worker | undefined;
  /** The worker has loaded the check and said so: a budget then measures the check alone, not the start-up. */
  private ready = false;
  private budgetTimer: NodeJS.Timeout | undefined;
  private nextId = 1;

  constructor(options: RecipeCheckerOptions = {}) {
    this.budgetMs = options.budgetMs ?? RECIPE_CHECK_BUDGET_MS;
    this.maxWaiting = options.maxWaiting ?? MAX_WAITING_RECIPE_CHECKS;
  }

  /**
   * checkRecipe(text, options) on the worker. Rejects with the RecipeError (or ConfigError) it threw; with
   * RequestError NP_RECIPE_TOO_LARGE when the check ran over budgetMs (the worker is then ended, and a new one
   * takes the next check); with RequestError NP_TOO_MANY_CONNECTIONS when maxWaiting checks wait already.
   */
  check(text: string, options: CheckOptions): Promise<RecipePlan> {
    if (this.waiting.length >= this.maxWaiting) {
      return Promise.reject(new TooManyConnectionsError(`the daemon has ${this.maxWaiting} recipes waiting to be checked already; try again shortly`));
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ request: { id: this.nextId++, text, options }, resolve, reject });
      this.next();
    });
  }

  /** Hands the worker the next check when it is free; starts a worker when there is none. */
  private next(): void {
    if (this.running !== undefined) return;
    if (this.waiting.length === 0) {
      this.worker?.unref();
      return;
    }
    const worker = this.worker ?? this.startWorker();
    worker.ref();
    if (!this.ready) return;
    const check = this.waiting.shift() as PendingCheck;
    this.running = check;
    this.budgetTimer = setTimeout(() => this.overBudget(check), this.budgetMs);
    worker.postMessage(check.request);
  }

  private startWorker(): Worker {
    const worker = new Worker(WORKER_FILE);
    this.worker = worker;
    this.ready = false;
    // Events of a worker already replaced (ended over budget) are of no more interest.
    worker.on('message', (reply: CheckReply) => {
      if (this.worker === worker) this.received(reply);
    });
    worker.on('error', (error: Error) => {
      if (this.worker === worker) this.workerFailed(error.message);
    });
    worker.on('exit', (code: number) => {
      if (this.worker === worker) this.workerFailed(`the worker exited with status ${code}`);
    });
    return worker;
  }

  private received(reply: CheckReply): void {
    if (reply.kind === 'ready') {
      this.ready = true;
      this.next();
      return;
    }
    const check = this.running;
    if (check === undefined || check.request.id !== reply.id) return;
    this.settled();
    if (reply.kind === 'plan') check.resolve(reply.plan);
    else check.reject(errorOf(reply.refusal));
    this.next();
  }

  private overBudget(check: PendingCheck): void {
    if (this.running !== check) return;
    // Ending the thread is the only way to stop a check; the next one gets a new worker.
    const worker = this.worker;
    this.dropWorker();
    void worker?.terminate();
    this.settled();
    const { sourceName } = check.request.options;
    check.reject(new RecipeTooLargeError(`${sourceName}: the recipe took longer than ${this.budgetMs} ms to check, the daemon's limit: make it smaller or simpler`));
    this.next();
  }

  /**
   * The worker died. The check it ran is refused; a worker that died before it was ready would die again, so the
   * checks waiting are refused too rather than starting one worker after another.
   */
  private workerFailed(reason: string): void {
    const failure = (): NetplumbError => new InternalError(`the recipe check failed: ${reason}`);
    const wasReady = this.ready;
    this.dropWorker();
    const check = this.running;
    this.settled();
    check?.reject(failure());
    if (!wasReady) for (const waiting of this.waiting.splice(0)) waiting.reject(failure());
    this.next();
  }

  private dropWorker(): void {
    this.worker = undefined;
    this.ready = false;
  }

  private settled(): void {
    clearTimeout(this.budgetTimer);
    this.budgetTimer = undefined;
    this.running = undefined;
  }
}
