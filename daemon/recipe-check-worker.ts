// The worker thread of recipe-checker.ts: says it is ready once the check is loaded, then answers each CheckRequest,
// in order, with checkRecipe()'s plan or its refusal as plain data. Nothing else runs here.

import { parentPort } from 'node:worker_threads';
import { checkRecipe } from '../recipes/check.js';
import { refusalOf, type CheckReply, type CheckRequest } from './recipe-checker.js';

const port = parentPort;
if (port === null) throw new Error('recipe-check-worker.js runs as a worker thread of recipe-checker.js');

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
