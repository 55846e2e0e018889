// Row 9: a recipe across two machines, wall time and CPU seconds (plumb, both daemons and the commands). A second netplumbd on 127.0.0.2 is the other machine; one edge carries BULK
// from the first daemon to the second, daemon to daemon. Beside it, interleaved: the same bytes downloaded from one
// daemon with plain `plumb` (the single-machine path), and the same bytes relayed through plumb (`plumb one ... |
// plumb two ...`), the way a user would do it without the edge. plumb's own CPU per GiB moved between the daemons
// shows that the bytes do not pass through it: measured as the CPU of a run moving BULK less that of the same recipe
// moving one byte (plumb's start, connections and handshakes), per GiB.
//
// Two machines on one host share its cores, which real machines do not: the edge's four busy processes (the writing
// command, both daemons, the reading command) then compete with each other where the download's three do. So the
// edge is measured a second time as two machines would run it, each on a core of its own (taskset): the writing
// daemon and its command on CPU 0, the reading daemon and its command on CPU 1; the download's daemon on CPU 0 and
// plumb, its receiving machine, on CPU 1.

import { execFileSync } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { PROGRAMS } from '../built-programs.js';
import { BULK, RUNS } from './config.js';
import type { Context } from './extras.js';
import { interleave, median, processCpuSeconds, runShell } from './measure.js';
import { startDaemon } from './servers.js';
import { mbps, meets, ratioOf, type Row } from './table.js';

/**
 * One timed run: its wall time, the CPU seconds of the plumb process(es) /usr/bin/time wrote to `cpuFile`, and
 * those of the two daemons with the commands they ran and reaped.
 */
async function timed(ctx: Context, script: string, cpuFile: string, daemons: readonly number[]): Promise<{ wallMs: number; plumbCpu: number; daemonCpu: number }> {
  const daemonsCpu = (): number => daemons.reduce((sum, pid) => sum + processCpuSeconds(pid), 0);
  const before = daemonsCpu();
  const wallMs = await runShell(script, ctx.env);
  const daemonCpu = daemonsCpu() - before;
  const plumbCpu = readFileSync(cpuFile, 'utf8')
    .trim()
    .split('\n')
    .map((line) => line.split(' ').reduce((sum, value) => sum + Number(value), 0))
    .reduce((sum, value) => sum + value, 0);
  return { wallMs, plumbCpu, daemonCpu };
}

/** `firstDaemon`: the pid of the bench's daemon on 127.0.0.1, whose CPU is read around each run with the second's. */
export async function acrossRows(ctx: Context, firstDaemon: number): Promise<Row[]> {
  const second = await startDaemon(ctx.home, '127.0.0.2');
  const daemons = [firstDaemon, second.pid];
  try {
    const node = process.execPath;
    writeFileSync(join(ctx.home, 'hosts'), `bench-one 127.0.0.1:${ctx.port}\nbench-two 127.0.0.2:${second.port}\n`);
    await runShell(`${node} ${PROGRAMS.plumb} -accept-new bench-two true`, ctx.env);
    const recipe = join(ctx.home, 'across.rcp');
    const tiny = join(ctx.home, 'across-one-byte.rcp');
    const across = (size: string): string => `# bench: ${size} from one daemon to another\n@bench-one head -c ${size} /dev/zero |\n@bench-two cat >/dev/null\n`;
    writeFileSync(recipe, across(BULK.text));
    writeFileSync(tiny, across('1'));
    const cpu = (name: string): string => join(ctx.home, `${name}.cpu`);
    const time = (name: string): string => `/usr/bin/time -a -f '%U %S' -o ${cpu(name)}`;
    const fresh = (name: string): string => `: >${cpu(name)} && `;
    const runs = await interleave(RUNS, {
      edge: () => timed(ctx, `${fresh('edge')}${time('edge')} ${node} ${PROGRAMS.plumb} -recipe=${recipe} >/dev/null`, cpu('edge'), daemons),
      tiny: () => timed(ctx, `${fresh('tiny')}${time('tiny')} ${node} ${PROGRAMS.plumb} -recipe=${tiny} >/dev/null`, cpu('tiny'), daemons),
      single: () => timed(ctx, `${fresh('single')}${time('single')} ${node} ${PROGRAMS.plumb} bench-one head -c ${BULK.text} /dev/zero >/dev/null`, cpu('single'), daemons),
      relay: () =>
        timed(
          ctx,
          `${fresh('relay')}${time('relay')} ${node} ${PROGRAMS.plumb} bench-one head -c ${BULK.text} /dev/zero | ${time('relay')} ${node} ${PROGRAMS.plumb} bench-two sh -c 'cat >/dev/null'`,
          cpu('relay'),
          daemons,
        ),
    });
    type Side = 'edge' | 'tiny' | 'single' | 'relay';
    const speed = (name: Side): number => mbps(BULK.bytes, median((runs[name] ?? []).map((run) => run.wallMs)));
    const plumbCpu = (name: Side): number => median((runs[name] ?? []).map((run) => run.plumbCpu));
    /** CPU seconds of the whole run: plumb, both daemons and the commands. */
    const totalCpu = (name: Side): number => median((runs[name] ?? []).map((run) => run.plumbCpu + run.daemonCpu));
    const gib = BULK.bytes / 2 ** 30;
    const edge = speed('edge');
    const single = speed('single');
    const relay = speed('relay');
    const bySingle = ratioOf(edge, single);
    const byRelay = ratioOf(edge, relay);
    const edgeCpuPerGib = (plumbCpu('edge') - plumbCpu('tiny')) / gib;
    const pinned = await pinnedRow(ctx);
    return [
      {
        metric: `9. recipe across two daemons, ${BULK.text} on one edge (speed)`,
        netplumb: `${edge.toFixed(0)} MB/s, CPU ${totalCpu('edge').toFixed(2)} s`,
        peer: `plain plumb download from one daemon ${single.toFixed(0)} MB/s, CPU ${totalCpu('single').toFixed(2)} s`,
        ratio: bySingle,
        target: '>= 0.9x',
        met: meets(bySingle, { atLeast: 0.9 }),
      },
      {
        metric: '9. same, beside relaying through plumb (`plumb one ... | plumb two ...`)',
        netplumb: `${edge.toFixed(0)} MB/s`,
        peer: `relayed ${relay.toFixed(0)} MB/s, CPU ${totalCpu('relay').toFixed(2)} s (plumb ${(plumbCpu('relay') / gib).toFixed(2)} s/GiB)`,
        ratio: byRelay,
        target: '>= 1.3x',
        met: meets(byRelay, { atLeast: 1.3 }),
      },
      {
        metric: "9. plumb's own CPU per GiB moved between the two daemons (beyond a 1-byte run's)",
        netplumb: `${edgeCpuPerGib.toFixed(3)} s (run ${plumbCpu('edge').toFixed(2)} s, 1 byte ${plumbCpu('tiny').toFixed(2)} s)`,
        peer: `plain download: plumb ${(plumbCpu('single') / gib).toFixed(2)} s/GiB`,
        ratio: undefined,
        target: '< 0.1 s',
        met: edgeCpuPerGib < 0.1,
      },
      ...pinned,
    ];
  } finally {
    await second.stop();
  }
}

/** Whether taskset can pin processes here: it must exist, and there must be two cores to give. */
function canPin(): boolean {
  if (availableParallelism() < 2) return false;
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The edge against the download with each machine on a core of its own; no row where cores cannot be pinned. */
async function pinnedRow(ctx: Context): Promise<Row[]> {
  if (!canPin()) {
    process.stderr.write('bench: taskset or a second core is missing: row 9 is not measured with one core per machine\n');
    return [];
  }
  const writer = await startDaemon(ctx.home, '127.0.0.3', 0);
  try {
    const reader = await startDaemon(ctx.home, '127.0.0.4', 1);
    try {
      const node = process.execPath;
      appendFileSync(join(ctx.home, 'hosts'), `bench-p0 127.0.0.3:${writer.port}\nbench-p1 127.0.0.4:${reader.port}\n`);
      for (const name of ['bench-p0', 'bench-p1']) await runShell(`${node} ${PROGRAMS.plumb} -accept-new ${name} true`, ctx.env);
      const recipe = join(ctx.home, 'across-pinned.rcp');
      writeFileSync(recipe, `# bench: ${BULK.text} from one daemon to another, each on a core of its own\n@bench-p0 head -c ${BULK.text} /dev/zero |\n@bench-p1 cat >/dev/null\n`);
      const runs = await interleave(RUNS, {
        edge: async () => ({ wallMs: await runShell(`taskset -c 1 ${node} ${PROGRAMS.plumb} -recipe=${recipe} >/dev/null`, ctx.env) }),
        single: async () => ({ wallMs: await runShell(`taskset -c 1 ${node} ${PROGRAMS.plumb} bench-p0 head -c ${BULK.text} /dev/zero >/dev/null`, ctx.env) }),
      });
      const speed = (name: 'edge' | 'single'): number => mbps(BULK.bytes, median((runs[name] ?? []).map((run) => run.wallMs)));
      const ratio = ratioOf(speed('edge'), speed('single'));
      return [
        {
          metric: `9. same, each machine on a core of its own (taskset): ${BULK.text} on one edge`,
          netplumb: `${speed('edge').toFixed(0)} MB/s`,
          peer: `plain plumb download, daemon and plumb on a core each, ${speed('single').toFixed(0)} MB/s`,
          ratio,
          target: '>= 0.9x',
          met: meets(ratio, { atLeast: 0.9 }),
        },
      ];
    } finally {
      await reader.stop();
    }
  } finally {
    await writer.stop();
  }
}
