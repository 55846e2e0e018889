// Tests of the transition-table state machine every stateful part of netplumb uses.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { StateMachine, type TransitionTable } from '../../protocol/state-machine.js';

type Door = 'shut' | 'open' | 'broken';
const DOOR_MOVES: TransitionTable<Door> = { shut: ['open', 'broken'], open: ['shut', 'broken'], broken: [] };

test('moves along the table and reports the new state', () => {
  const door = new StateMachine<Door>('door', 'shut', DOOR_MOVES);
  assert.equal(door.move('open'), true);
  assert.equal(door.state, 'open');
  assert.equal(door.is('shut', 'open'), true);
  assert.equal(door.move('broken'), true);
  assert.equal(door.is('broken'), true);
});

test('refuses a move the table does not list, keeps the state and reports the attempt', () => {
  const reported: string[] = [];
  const door = new StateMachine<Door>('door', 'shut', DOOR_MOVES, (name, from, to) => reported.push(`${name}:${from}->${to}`));
  door.move('broken');
  assert.equal(door.canMove('open'), false);
  assert.equal(door.move('open'), false);
  assert.equal(door.state, 'broken');
  assert.deepEqual(reported, ['door:broken->open']);
});

test('moving to the current state is refused quietly unless the table allows it', () => {
  const reported: string[] = [];
  const door = new StateMachine<Door>('door', 'shut', DOOR_MOVES, (name, from, to) => reported.push(`${name}:${from}->${to}`));
  assert.equal(door.move('shut'), false);
  assert.deepEqual(reported, []);
  const looping = new StateMachine<'on'>('lamp', 'on', { on: ['on'] });
  assert.equal(looping.move('on'), true);
});
