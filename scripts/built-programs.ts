// Where the compiled programs are, for the scripts that start them (demo, bench, fuzzers): this file runs as
// build/scripts/built-programs.js, so the build tree is one level up and the repository one more.

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The compiled tree (build/). */
export const BUILD_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
/** The repository the tree was built from. */
export const REPO_DIR = dirname(BUILD_DIR);

/** Each program's main module, to run with process.execPath. */
export const PROGRAMS = {
  /** plumb as installed: one bundled file, so it starts without resolving and reading some fifty modules. */
  plumb: join(BUILD_DIR, 'plumb.mjs'),
  netplumbd: join(BUILD_DIR, 'daemon', 'main.js'),
  keygen: join(BUILD_DIR, 'plumb-cli', 'keygen-main.js'),
  tcpPeer: join(BUILD_DIR, 'scripts', 'tcp-peer.js'),
  unixPeer: join(BUILD_DIR, 'scripts', 'unix-peer.js'),
  soak: join(BUILD_DIR, 'scripts', 'soak.js'),
} as const;
