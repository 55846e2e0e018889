// The layers point one way: protocol <- bridges <- recipes <- daemon, plumb-cli. Reads the import statements of
// every source file and fails on an arrow back, on daemon and plumb-cli reaching into each other (what they share
// belongs lower), and on protocol/ touching files or the command line.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');

const LAYERS = ['protocol', 'bridges', 'recipes', 'daemon', 'plumb-cli'] as const;
type Layer = (typeof LAYERS)[number];

/** The layers each layer may not import from. */
const FORBIDDEN: Readonly<Record<Layer, readonly Layer[]>> = {
  protocol: ['bridges', 'recipes', 'daemon', 'plumb-cli'],
  bridges: ['recipes', 'daemon', 'plumb-cli'],
  recipes: ['daemon', 'plumb-cli'],
  daemon: ['plumb-cli'],
  'plumb-cli': ['daemon'],
};

/** Node modules that read or write files: protocol/ works on bytes it is given. */
const FILE_MODULES = new Set(['node:fs', 'node:fs/promises', 'fs', 'fs/promises']);

interface SourceImport {
  file: string;
  specifier: string;
}

/** Every module specifier a TypeScript source names: static imports and re-exports (also across lines), dynamic imports. */
function specifiersOf(text: string): string[] {
  const patterns = [/^\s*(?:import|export)\b[^;]*?\bfrom\s*['"]([^'"]+)['"]/gm, /^\s*import\s*['"]([^'"]+)['"]/gm, /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g];
  return patterns.flatMap((pattern) => [...text.matchAll(pattern)].map((match) => match[1] as string));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

function filesOf(layer: Layer): string[] {
  return sourceFiles(join(root, layer));
}

function importsOf(layer: Layer): SourceImport[] {
  return filesOf(layer).flatMap((file) => specifiersOf(readFileSync(file, 'utf8')).map((specifier) => ({ file: relative(root, file), specifier })));
}

/** The layer a relative specifier of `file` lands in; undefined for a package or a node: module. */
function layerOf(file: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  return relative(root, resolve(root, dirname(file), specifier)).split('/')[0];
}

function shown(imports: readonly SourceImport[]): string {
  return imports.map(({ file, specifier }) => `${file}: ${specifier}`).join('\n');
}

describe('the import scanner', () => {
  test('an import spread over several lines is found', () => {
    assert.deepEqual(specifiersOf("import {\n  a,\n  type B,\n} from '../bridges/x.js';\n"), ['../bridges/x.js']);
  });

  test('a re-export, a side-effect import and a dynamic import are found', () => {
    const text = "export { a } from './a.js';\nimport './b.js';\nconst c = await import('./c.js');\n";
    assert.deepEqual(specifiersOf(text).sort(), ['./a.js', './b.js', './c.js']);
  });

  test('every layer has source files with imports to check', () => {
    for (const layer of LAYERS) assert.ok(importsOf(layer).length > 0, layer);
  });
});

describe('layers', () => {
  for (const layer of LAYERS) {
    test(`${layer}/ imports nothing from ${FORBIDDEN[layer].join(', ')}`, () => {
      const back = importsOf(layer).filter(({ file, specifier }) => FORBIDDEN[layer].includes(layerOf(file, specifier) as Layer));
      assert.deepEqual(back, [], `imports against the layers:\n${shown(back)}`);
    });
  }

  test('protocol/ reads and writes no files', () => {
    const files = importsOf('protocol').filter(({ specifier }) => FILE_MODULES.has(specifier));
    assert.deepEqual(files, [], `file access in protocol/:\n${shown(files)}`);
  });

  test('protocol/ does not read the command line', () => {
    const readers = filesOf('protocol').filter((file) => readFileSync(file, 'utf8').includes('process.argv'));
    assert.deepEqual(readers.map((file) => relative(root, file)), []);
  });
});
