// `npm run fuzz`: fuzzes a real netplumbd on 127.0.0.1 with throwaway keys, before and after authentication, then
// checks that plumb still works and reports (text, or JSON with --json). Exit status 1 if the daemon crashed or
// the final plumb failed, 2 for bad arguments. The engine is in scripts/fuzz/.

import { DEFAULT_FUZZ_OPTIONS, runFuzz, type FuzzOptions } from './fuzz/run.js';
import { formatReport } from './fuzz/report.js';

const USAGE = `usage: npm run fuzz -- [--seed=N] [--inputs=N] [--seconds=N] [--pre-only | --post-only] [--heap-mb=N] [--keep-log] [--json]
  --seed=N      seed of every input (default ${DEFAULT_FUZZ_OPTIONS.seed})
  --inputs=N    inputs in all (default ${DEFAULT_FUZZ_OPTIONS.inputs}; ${DEFAULT_FUZZ_OPTIONS.preShare * 100}% pre-auth when both run)
  --seconds=N   time cap of each fuzzer (default ${DEFAULT_FUZZ_OPTIONS.seconds})
  --pre-only    only the pre-authentication fuzzer
  --post-only   only the post-authentication fuzzer
  --heap-mb=N   the daemon's heap cap in MiB (default ${DEFAULT_FUZZ_OPTIONS.heapMb})
  --keep-log    keep the daemon's log (and only it) in the temp dir; it is always kept after a crash
  --json        the report as one JSON object on stdout
`;

function parse(argv: readonly string[]): { options: FuzzOptions; json: boolean } {
  const options: FuzzOptions = { ...DEFAULT_FUZZ_OPTIONS };
  let json = false;
  let only: 'pre' | 'post' | undefined;
  const count = (name: string, value: string, min: number): number => {
    if (!/^\d{1,12}$/.test(value) || Number(value) < min) throw new Error(`--${name} needs a whole number of at least ${min}, not ${JSON.stringify(value)}`);
    return Number(value);
  };
  for (const arg of argv) {
    const [name, value] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(2, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg.replace(/^--/, ''), undefined];
    if (value !== undefined) {
      if (name === 'seed') options.seed = count(name, value, 0);
      else if (name === 'inputs') options.inputs = count(name, value, 1);
      else if (name === 'seconds') options.seconds = count(name, value, 1);
      else if (name === 'heap-mb') options.heapMb = count(name, value, 16);
      else throw new Error(`unknown option ${arg}`);
    } else if (name === 'json') json = true;
    else if (name === 'keep-log') options.keepLog = true;
    else if (name === 'pre-only' || name === 'post-only') {
      const wanted = name === 'pre-only' ? 'pre' : 'post';
      if (only !== undefined && only !== wanted) throw new Error('--pre-only and --post-only exclude each other');
      only = wanted;
    } else throw new Error(`unknown option ${arg}`);
  }
  options.pre = only !== 'post';
  options.post = only !== 'pre';
  return { options, json };
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`fuzz: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const report = await runFuzz({ ...parsed.options, progress: (line) => process.stderr.write(`fuzz: ${line}\n`) });
  process.stdout.write(parsed.json ? `${JSON.stringify(report)}\n` : formatReport(report));
  return report.ok ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`fuzz failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
