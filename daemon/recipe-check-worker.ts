// The worker thread of recipe-checker.ts, at a lower priority than the event loop: says it is ready once the check is
// loaded, then answers each CheckRequest, in order, with checkRecipe()'s plan or its refusal as plain data.

import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { checkRecipe } from '../recipes/check.js';
import { refusalOf, type CheckReply, type CheckRequest } from './recipe-checker.js';
import { InternalError } from '../protocol/errors.js';

/** The nice value of this thread: when cores are short, the event loop and the sessions' processes go first. */
const CHECK_THREAD_NICE = 10;

// Linux keeps a nice value per thread, so this lowers the check alone; elsewhere it would lower the whole daemon.
if (process.platform === 'linux') setPriority(CHECK_THREAD_NICE);

const port = parentPort;
if (port === null) throw new InternalError('recipe-check-worker.js runs as a worker thread of recipe-checker.js');

port.on('message', ({ id, text, options }: CheckRequest) => {
  let reply: CheckReply;
  try {
    reply = { kind: 'plan', id, plan: checkRecipe(text, options) };
  } catch (error) {
    reply = { kind: 'refused', id, refusal: refusalOf(error) };
  }
  port.postMessage(reply);
});

const ready: CheckReply = { kind: 'ready' };
port.postMessage(ready);
