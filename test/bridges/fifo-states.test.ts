// The state machines of FifoSource and FifoSink: their tables of legal moves, illegal moves refused and reported,
// and real named pipes driving each through its states without one refused move.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { FIFO_SINK_MOVES, FIFO_SOURCE_MOVES, FifoSink, FifoSource, type FifoSinkState, type FifoSourceState } from '../../bridges/fifo.js';
import { StateMachine, type TransitionTable } from '../../protocol/state-machine.js';
import { delay, spawnProcess, waitUntil } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';
import { collect, halfClosePair, mkfifo, readRound, writeInto } from '../helpers/endpoints.js';

const TIMEOUT_MS = 60_000;

/** Every state of a table that can be left, i.e. every state but the final one. */
function liveStates<S extends string>(table: TransitionTable<S>, final: S): S[] {
  return (Object.keys(table) as S[]).filter((state) => state !== final);
}

/** A reporter that keeps each refused move as "from->to". */
function recorder(): { refused: string[]; report: (machine: string, from: string, to: string) => void } {
  const refused: string[] = [];
  return { refused, report: (_machine, from, to) => refused.push(`${from}->${to}`) };
}

/** A new FIFO read by a source whose refused moves are recorded; the far end of each round's stream is kept. */
function watchedSource(t: TestContext): { path: string; source: FifoSource; fars: Duplex[]; refused: string[] } {
  const path = join(tempDir(t), 'fifo');
  mkfifo(path);
  const { refused, report } = recorder();
  const fars: Duplex[] = [];
  const opened = (): Duplex => {
    const { near, far } = halfClosePair();
    fars.push(far);
    return near;
  };
  const source = new FifoSource(path, opened, () => undefined, undefined, report);
  t.after(() => source.stop());
  return { path, source, fars, refused };
}

/** A new FIFO written by a sink whose refused moves are recorded. */
function watchedSink(t: TestContext): { path: string; sink: FifoSink; refused: string[] } {
  const path = join(tempDir(t), 'fifo');
  mkfifo(path);
  const { refused, report } = recorder();
  const sink = new FifoSink(path, () => undefined, undefined, report);
  t.after(() => sink.stop());
  return { path, sink, refused };
}

test('every live source state can stop, and a stopped source can go nowhere', () => {
  for (const state of liveStates(FIFO_SOURCE_MOVES, 'stopped')) assert.ok(FIFO_SOURCE_MOVES[state].includes('stopped'), state);
  assert.deepEqual(FIFO_SOURCE_MOVES.stopped, []);
});

test('a finishing source can only stop: it never starts another round', () => {
  assert.deepEqual(FIFO_SOURCE_MOVES.finishing, ['stopped']);
});

test('a source reads again only after its grace for a dropped round, never from created straight to dropped', () => {
  assert.ok(FIFO_SOURCE_MOVES.dropped.includes('reading'));
  assert.ok(!FIFO_SOURCE_MOVES.created.includes('dropped'));
  assert.ok(!FIFO_SOURCE_MOVES.created.includes('finishing'));
});

test('a source machine refuses to leave stopped and reports the attempt', () => {
  const { refused, report } = recorder();
  const machine = new StateMachine<FifoSourceState>('source', 'reading', FIFO_SOURCE_MOVES, report);
  assert.equal(machine.move('stopped'), true);
  assert.equal(machine.move('reading'), false);
  assert.equal(machine.state, 'stopped');
  assert.deepEqual(refused, ['stopped->reading']);
});

test('every live sink state can stop, and a stopped sink can go nowhere', () => {
  for (const state of liveStates(FIFO_SINK_MOVES, 'stopped')) assert.ok(FIFO_SINK_MOVES[state].includes('stopped'), state);
  assert.deepEqual(FIFO_SINK_MOVES.stopped, []);
});

test('a sink machine refuses to write a round before a reader was awaited, and reports it', () => {
  const { refused, report } = recorder();
  const machine = new StateMachine<FifoSinkState>('sink', 'idle', FIFO_SINK_MOVES, report);
  assert.equal(machine.move('writing'), false);
  assert.equal(machine.state, 'idle');
  assert.deepEqual(refused, ['idle->writing']);
});

test('a source goes from created through reading and finishing to stopped without a refused move', { timeout: TIMEOUT_MS }, async (t) => {
  const { path, source, fars, refused } = watchedSource(t);
  assert.equal(source.state, 'created');
  source.start();
  assert.equal(source.state, 'reading');
  assert.equal((await writeInto(t, path, 'a round\n').result).code, 0);
  await waitUntil('the round', () => fars.length === 1);
  assert.equal((await collect(fars[0] as Duplex)).toString(), 'a round\n');
  await source.finish();
  assert.equal(source.state, 'stopped');
  assert.deepEqual(refused, []);
});

test('a source whose far side drops a round waits in dropped, then reads the next round', { timeout: TIMEOUT_MS }, async (t) => {
  const { path, source, fars, refused } = watchedSource(t);
  source.start();
  // A writer still writing when its round is dropped (for at most 10 s): its failed write ends it early.
  const writer = spawnProcess(t, ['sh', '-c', 'exec > "$0"; for i in $(seq 1 200); do printf x || exit 9; sleep 0.05; done', path], { timeoutMs: 30_000 });
  await waitUntil('the round', () => fars.length === 1, 10_000, 5);
  fars[0]?.destroy();
  await waitUntil('the dropped state', () => source.state === 'dropped', 10_000, 5);
  await writer.result;
  await waitUntil('reading again', () => source.state === 'reading');
  assert.deepEqual(refused, []);
});

test('a source stopped before it starts never opens its FIFO', () => {
  let opens = 0;
  const source = new FifoSource(
    '/nonexistent/fifo',
    () => halfClosePair().near,
    () => undefined,
    () => {
      opens++;
      return -1;
    },
  );
  source.stop();
  source.start();
  assert.equal(source.state, 'stopped');
  assert.equal(opens, 0);
});

test('a source that cannot open its FIFO stops and reports the failure once', (t) => {
  const errors: unknown[] = [];
  const source = new FifoSource(join(tempDir(t), 'missing'), () => halfClosePair().near, (error) => errors.push(error));
  source.start();
  source.stop();
  assert.equal(source.state, 'stopped');
  assert.equal(errors.length, 1);
});

test('a sink awaits a reader, writes the round, then is idle again without a refused move', { timeout: TIMEOUT_MS }, async (t) => {
  const { path, sink, refused } = watchedSink(t);
  assert.equal(sink.state, 'idle');
  const { near, far } = halfClosePair();
  far.end('one round\n');
  sink.add(near);
  await delay(100);
  assert.equal(sink.state, 'awaiting-reader');
  assert.equal((await readRound(t, path)).toString(), 'one round\n');
  await sink.idle();
  assert.equal(sink.state, 'idle');
  assert.deepEqual(refused, []);
});

test('a sink stopped while awaiting a reader drops the round and stays stopped', { timeout: TIMEOUT_MS }, async (t) => {
  const { sink, refused } = watchedSink(t);
  const { near } = halfClosePair();
  sink.add(near);
  assert.equal(sink.state, 'awaiting-reader');
  sink.stop();
  await delay(100);
  assert.equal(sink.state, 'stopped');
  assert.ok(near.destroyed);
  assert.deepEqual(refused, []);
});
