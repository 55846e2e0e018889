#!/usr/bin/env node
// netplumb-keygen entry point: everything lives in runKeygen; this file only connects it to the process.

import { runKeygen } from './keygen.js';

process.exitCode = runKeygen(process.argv.slice(2), (s) => {
  process.stdout.write(s);
});
