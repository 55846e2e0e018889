// Figures read from /proc about the daemon and the commands it runs (memory, CPU seconds, descendants, open-file
// limits), and the small formatting and waiting helpers the phases share. Reads only; never signals a process.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { statFields } from '../../test/helpers/processes.js';

export const MIB = 1024 * 1024;

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

export interface Memory {
  /** Resident set now (VmRSS), bytes. */
  rssBytes: number;
  /** Highest resident set since the process started (VmHWM), bytes. */
  peakBytes: number;
}

export function memoryOf(pid: number): Memory | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rssBytes: kib('VmRSS'), peakBytes: kib('VmHWM') };
}

/** User plus system CPU seconds the process itself has used (fields 14 and 15). */
export function cpuSecondsOf(pid: number): number {
  const fields = statFields(pid);
  if (fields === undefined) return NaN;
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** Live (not zombie) descendants of a process whose command line is exactly argv. */
export function descendantsRunning(root: number, argv: readonly string[]): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields !== undefined && fields[0] !== 'Z') parentOf.set(Number(entry), Number(fields[1]));
  }
  const isDescendant = (pid: number): boolean => {
    for (let parent = parentOf.get(pid), hops = 0; parent !== undefined && hops < 64; parent = parentOf.get(parent), hops++) {
      if (parent === root) return true;
    }
    return false;
  };
  const wanted = argv.join('\0');
  return [...parentOf.keys()].filter((pid) => {
    if (!isDescendant(pid)) return false;
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '') === wanted;
    } catch {
      return false;
    }
  });
}

export function isAlive(pid: number): boolean {
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== 'Z';
}

export function openFileLimit(pid: number): number {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  return Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1] ?? NaN);
}

export function loadAverage(): string {
  return execFileSync('uptime', { encoding: 'utf8' }).trim();
}

export const mib = (bytes: number): string => (bytes / MIB).toFixed(1);
export const signedMib = (bytes: number): string => `${bytes >= 0 ? '+' : ''}${mib(bytes)}`;
export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the promise's value, or with `late` once ms have passed. */
export function within<T, L>(promise: Promise<T>, ms: number, late: L): Promise<T | L> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<L>((resolve) => (timer = setTimeout(() => resolve(late), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
