// `npm run soak`: one netplumbd on 127.0.0.1 held under three loads, each on a fresh daemon: 1,000 idle authenticated
// sessions, an unread `cat /dev/zero`, and 300,000 stream open/close pairs on one connection. Prints the daemon's
// RSS and CPU seconds and PASS/FAIL against each phase's bound (or one JSON object with --json); never a test.

import { rmSync } from 'node:fs';
import { DAEMON_MAX_OLD_SPACE_MB, daemons, makeFixture, type Fixture } from './soak/daemon.js';
import { heapReport, type HeapDifference } from './soak/heap.js';
import { parseOptions, type Options, type PhaseName } from './soak/options.js';
import { churnPhase, idlePhase, zeroPhase, type PhaseResult } from './soak/phases.js';
import { loadAverage } from './soak/proc.js';

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`soak: ${(error as Error).message}\n`);
    return 2;
  }
  // With --json, stdout carries the one object and the running commentary goes to stderr.
  const say = (text: string): void => void (options.json ? process.stderr : process.stdout).write(`${text}\n`);
  const loadStart = loadAverage();
  say(`soak: load at start: ${loadStart}`);
  say(`soak: ${options.sessions} idle sessions, ${options.zeroSeconds} s of unread cat /dev/zero, ${options.churn} churn pairs; daemon heap capped at ${DAEMON_MAX_OLD_SPACE_MB} MB`);
  const fixture = makeFixture();
  const phases: Partial<Record<PhaseName, PhaseResult>> = {};
  const run: [PhaseName, (fixture: Fixture, options: Options) => Promise<PhaseResult>][] = [
    ['idle', idlePhase],
    ['zero', zeroPhase],
    ['churn', churnPhase],
  ];
  let failure: string | undefined;
  try {
    for (const [name, phase] of run) {
      if (options.only !== undefined && options.only !== name) continue;
      const result = await phase(fixture, options);
      phases[name] = result;
      say(result.line);
      const heap = (result.figures as { heap?: HeapDifference }).heap;
      if (heap !== undefined) for (const text of heapReport(heap, options.sessions)) say(text);
    }
  } catch (error) {
    failure = error instanceof Error ? error.message : String(error);
    say(`soak failed: ${failure}`);
  } finally {
    for (const daemon of daemons) {
      await daemon.stop(5000);
      daemon.killLeftoverGroups();
    }
    rmSync(fixture.dir, { recursive: true, force: true });
  }
  const loadEnd = loadAverage();
  say(`soak: load at end: ${loadEnd}`);
  const pass = failure === undefined && Object.values(phases).every((phase) => phase.pass);
  if (options.json) {
    const figures = Object.fromEntries(Object.entries(phases).map(([name, phase]) => [name, { pass: phase.pass, ...phase.figures }]));
    process.stdout.write(`${JSON.stringify({ load: { start: loadStart, end: loadEnd }, options, phases: figures, failure, pass })}\n`);
  }
  return failure !== undefined ? 2 : pass ? 0 : 1;
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`soak failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 2;
  },
);
