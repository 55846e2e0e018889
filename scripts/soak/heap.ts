// A summary of the daemon's V8 heap: a snapshot taken on SIGUSR2, its self sizes summed by constructor, and the
// difference between two snapshots (sessions open, then closed) as the soak prints it.

import { closeSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Daemon } from './daemon.js';
import { delay, mib } from './proc.js';

/** How long a snapshot may take to be written whole. */
const HEAP_SNAPSHOT_TIMEOUT_MS = 120_000;

interface HeapRow {
  what: string;
  count: number;
  bytes: number;
}

export interface HeapSummary {
  /** Self sizes of every node, bytes. */
  totalBytes: number;
  nodes: number;
  rows: Map<string, HeapRow>;
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self sizes of a V8 heap snapshot summed by constructor (objects) or by kind (strings, code, arrays...). */
function summariseSnapshot(file: string): HeapSummary {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = parsed.snapshot.meta.node_fields;
  const typeNames = parsed.snapshot.meta.node_types[0];
  const stride = fields.length;
  const [typeAt, nameAt, sizeAt] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  const rows = new Map<string, HeapRow>();
  let totalBytes = 0;
  for (let at = 0; at < parsed.nodes.length; at += stride) {
    const type = typeNames[parsed.nodes[at + typeAt] as number] ?? '?';
    const bytes = parsed.nodes[at + sizeAt] as number;
    const name = parsed.strings[parsed.nodes[at + nameAt] as number] ?? '?';
    const what = type === 'object' ? name : type === 'closure' ? '(closures)' : type === 'native' ? `(native) ${name.slice(0, 40)}` : `(${type})`;
    totalBytes += bytes;
    const row = rows.get(what) ?? { what, count: 0, bytes: 0 };
    row.count++;
    row.bytes += bytes;
    rows.set(what, row);
  }
  return { totalBytes, nodes: parsed.nodes.length / stride, rows };
}

/** What the sessions add to the heap: the snapshot with them open less the one after they closed, largest first. */
export interface HeapDifference {
  openBytes: number;
  closedBytes: number;
  top: HeapRow[];
}

export function heapDifference(open: HeapSummary, closed: HeapSummary, rows: number): HeapDifference {
  const top = [...open.rows.values()]
    .map((row) => ({ what: row.what, count: row.count - (closed.rows.get(row.what)?.count ?? 0), bytes: row.bytes - (closed.rows.get(row.what)?.bytes ?? 0) }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, rows);
  return { openBytes: open.totalBytes, closedBytes: closed.totalBytes, top };
}

/** The difference as printed: a line of totals and a table of what the sessions add, largest first, per session. */
export function heapReport(heap: HeapDifference, sessions: number): string[] {
  return [
    `  daemon heap (snapshot self sizes): ${mib(heap.openBytes)} MiB with the sessions open, ${mib(heap.closedBytes)} MiB after they closed; ` + `${((heap.openBytes - heap.closedBytes) / sessions / 1024).toFixed(1)} KiB/session. What the sessions add, largest first:`,
    `    ${'MiB'.padStart(7)}  ${'B/session'.padStart(9)}  ${'count'.padStart(7)}  ${'per session'.padStart(11)}  what`,
    ...heap.top.map((row) => `    ${mib(row.bytes).padStart(7)}  ${(row.bytes / sessions).toFixed(0).padStart(9)}  ${String(row.count).padStart(7)}  ${(row.count / sessions).toFixed(1).padStart(11)}  ${row.what}`),
  ];
}

function tailOf(path: string, size: number, bytes: number): string {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(Math.min(bytes, size));
    readSync(fd, buffer, 0, buffer.length, size - buffer.length);
    return buffer.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

export async function heapSummaryOf(daemon: Daemon): Promise<HeapSummary> {
  const file = await takeHeapSnapshot(daemon);
  try {
    return summariseSnapshot(file);
  } finally {
    rmSync(file, { force: true });
  }
}

/** Signals the daemon to write a heap snapshot into its directory and waits until the file is whole. */
async function takeHeapSnapshot(daemon: Daemon): Promise<string> {
  daemon.process.child.kill('SIGUSR2');
  const deadline = Date.now() + HEAP_SNAPSHOT_TIMEOUT_MS;
  let lastSize = -1;
  while (Date.now() < deadline) {
    await delay(500);
    const file = readdirSync(daemon.cwd).find((name) => name.endsWith('.heapsnapshot'));
    if (file === undefined) continue;
    const path = join(daemon.cwd, file);
    const size = statSync(path).size;
    // V8 writes the snapshot in one go on the main thread: a size that held still for a poll ends with the strings' `]}`.
    if (size === lastSize && size > 0 && tailOf(path, size, 16).trimEnd().endsWith(']}')) return path;
    lastSize = size;
  }
  throw new Error(`no heap snapshot within ${HEAP_SNAPSHOT_TIMEOUT_MS} ms`);
}
