// What `npm pack` ships, from its own file list: the library's entry point and a type declaration beside every
// compiled module, the man pages, both systemd units and the recipe grammar; no test, no benchmark script and no
// source map. The README's size and file count stay within a tenth of what npm reports.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface PackReport {
  size: number;
  entryCount: number;
  files: Array<{ path: string }>;
}

function packReport(): PackReport {
  // --ignore-scripts: the tree is built already, and prepack would build it again.
  const json = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60_000 });
  return (JSON.parse(json) as PackReport[])[0] as PackReport;
}

test('npm pack ships the library with its type declarations, the docs and units, and no tests, scripts or maps', () => {
  const report = packReport();
  const paths = new Set(report.files.map((file) => file.path));
  const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { exports: Record<string, { types: string; default: string }>; bin: Record<string, string> };
  for (const target of [manifest.exports['.']?.types, manifest.exports['.']?.default, ...Object.values(manifest.bin)]) {
    assert.ok(target !== undefined && paths.has(target.replace(/^\.\//, '')), `${target} is in the package`);
  }
  for (const path of paths) {
    if (path.startsWith('build/') && path.endsWith('.js')) assert.ok(paths.has(path.replace(/\.js$/, '.d.ts')) || path.startsWith('build/recipes/generated/'), `${path} has its .d.ts`);
    assert.doesNotMatch(path, /^build\/(test|scripts)\/|\.map$|\.test\./, `${path} is not shipped`);
  }
  for (const path of ['man/plumb.1', 'man/netplumbd.8', 'daemon/netplumbd.service', 'daemon/netplumbd.socket', 'recipes/recipe.peggy', 'protocol/PROTOCOL.md']) {
    assert.ok(paths.has(path), `${path} is in the package`);
  }

  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const said = /`npm pack` makes the package \(about (\d+) kB, (\d+) files/.exec(readme);
  assert.ok(said !== null, 'the README gives the package size');
  const [kilobytes, files] = [Number(said[1]), Number(said[2])];
  assert.ok(Math.abs(kilobytes * 1000 - report.size) <= report.size / 10, `README says about ${kilobytes} kB; npm pack: ${report.size} bytes`);
  assert.ok(Math.abs(files - report.entryCount) <= report.entryCount / 10, `README says ${files} files; npm pack: ${report.entryCount}`);
});
