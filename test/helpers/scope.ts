// Cleanup for tests: a Scope (a TestContext, or a file's `{ after }`) runs the steps registered on it newest
// first, once, after the test; a step that fails does not stop the others. Temp dirs made here are removed then.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Anything with an after hook: a TestContext, or `{ after }` from node:test for a whole file. */
export interface Scope {
  after(fn: () => unknown): void;
}

/** Runs cleanup tasks last-registered-first, once, from a single after hook of the scope. */
class Cleanup {
  private readonly tasks: (() => unknown)[] = [];

  constructor(scope: Scope) {
    scope.after(async () => {
      for (const task of this.tasks.splice(0).reverse()) {
        try {
          await task();
        } catch {
          // One failed cleanup step must not leave the others undone.
        }
      }
    });
  }

  add(task: () => unknown): void {
    this.tasks.push(task);
  }
}

const cleanups = new WeakMap<Scope, Cleanup>();

function cleanupOf(scope: Scope): Cleanup {
  let cleanup = cleanups.get(scope);
  if (cleanup === undefined) {
    cleanup = new Cleanup(scope);
    cleanups.set(scope, cleanup);
  }
  return cleanup;
}

/** Registers a cleanup step on the scope, run (with the others, newest first) after the test. */
export function onCleanup(scope: Scope, task: () => unknown): void {
  cleanupOf(scope).add(task);
}

/** A fresh directory under the system temp dir, removed afterwards. */
export function tempDir(scope: Scope, prefix = 'netplumb-e2e-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(scope, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
