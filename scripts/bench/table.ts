// The bench's output: rows of one markdown table (netplumb beside its peer, their ratio, the target and whether this
// run met it), and the formatting of the figures in them.

export interface Row {
  metric: string;
  netplumb: string;
  /** The peer's figure with its name, e.g. "OpenSSH 1.62 s, 663 MB/s". */
  peer: string;
  /** netplumb / peer, as the target reads it; undefined when there is no peer figure. */
  ratio: number | undefined;
  target: string;
  /** Whether this run met the target; undefined when there is none or it cannot be judged. */
  met: boolean | undefined;
}

/** A target on a ratio or a value: at least / at most `bound`. */
export interface Bound {
  atLeast?: number;
  atMost?: number;
}

export function meets(value: number | undefined, bound: Bound): boolean | undefined {
  if (value === undefined || Number.isNaN(value)) return undefined;
  if (bound.atLeast !== undefined && value < bound.atLeast) return false;
  if (bound.atMost !== undefined && value > bound.atMost) return false;
  return true;
}

export function ratioOf(netplumb: number, peer: number | undefined): number | undefined {
  return peer === undefined || peer === 0 || Number.isNaN(peer) ? undefined : netplumb / peer;
}

export const seconds = (value: number): string => `${value.toFixed(2)} s`;
export const ms = (value: number): string => `${value < 10 ? value.toFixed(1) : value.toFixed(0)} ms`;
export const mbps = (bytes: number, wallMs: number): number => bytes / 1e6 / (wallMs / 1000);

export function printTable(title: string, rows: readonly Row[]): void {
  const lines = [`\n### ${title}\n`, '| metric | netplumb | peer | ratio | target | met |', '| --- | ---: | ---: | ---: | --- | :---: |'];
  for (const row of rows) {
    const ratio = row.ratio === undefined ? 'n/a' : `${row.ratio.toFixed(2)}x`;
    const met = row.met === undefined ? '' : row.met ? 'yes' : '**no**';
    lines.push(`| ${row.metric} | ${row.netplumb} | ${row.peer} | ${ratio} | ${row.target} | ${met} |`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
