// The per-command byte counts of a recipe across machines' JSON report: taken from the edges and plumb's own streams
// where netplumb carried them, summed over every remote writer of a label, and absent (never guessed) where the
// stream passed straight between commands on one machine, or to a file.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EdgeStatus } from '../../protocol/wire.js';
import type { EdgeReport } from '../../protocol/multi-host.js';
import { stageBytes, type PartCounts } from '../../plumb-cli/stage-bytes.js';
import { planRecipe } from '../helpers/recipes.js';

const SPOOL = '/var/spool/netplumb';

function inReport(edge: number, bytes: number): EdgeReport {
  return { edge, direction: 'in', bytes, sha256: '', status: EdgeStatus.Intact };
}

function outReport(edge: number, bytes: number): EdgeReport {
  return { edge, direction: 'out', bytes, sha256: '' };
}

test('an edge gives its writer bytesOut and its reader bytesIn; plumb\'s stdout gives its only writer on a machine bytesOut', () => {
  const plan = planRecipe(['@a seq 1 10 |', '@b gzip -c |', '@b wc -c', ''].join('\n'), SPOOL);
  const parts: PartCounts[] = [
    { stages: new Set([0]), stdout: 0, stdinDelivered: undefined },
    { stages: new Set([1, 2]), stdout: 3, stdinDelivered: undefined },
  ];
  const bytes = stageBytes(plan, [outReport(0, 21), inReport(0, 20)], parts);
  // seq reads nothing (its stdin is /dev/null); what the edge delivered is what gzip took in; gzip's stdout goes to
  // wc through a pipe on b that nothing of netplumb's counts.
  assert.deepEqual(bytes.get(0), { bytesIn: 0, bytesOut: 21 });
  assert.deepEqual(bytes.get(1), { bytesIn: 20 });
  assert.deepEqual(bytes.get(2), { bytesOut: 3 });
});

test('a label written from two other machines: its reader took the sum; one local writer among them makes it unknown', () => {
  const remote = planRecipe(['@a echo one >%sink &', '@b echo two >%sink &', '@c sink: cat', ''].join('\n'), SPOOL);
  const edges = remote.edges.map((edge) => edge.index);
  assert.equal(edges.length, 2);
  const parts: PartCounts[] = [
    { stages: new Set([0]), stdout: 0, stdinDelivered: undefined },
    { stages: new Set([1]), stdout: 0, stdinDelivered: undefined },
    { stages: new Set([2]), stdout: 8, stdinDelivered: undefined },
  ];
  const counted = stageBytes(remote, [outReport(0, 4), inReport(0, 4), outReport(1, 4), inReport(1, 4)], parts);
  assert.deepEqual(counted.get(2), { bytesIn: 8, bytesOut: 8 });

  const mixed = planRecipe(['@a echo one >%sink &', '@c echo two >%sink &', '@c sink: cat', ''].join('\n'), SPOOL);
  const mixedParts: PartCounts[] = [
    { stages: new Set([0]), stdout: 0, stdinDelivered: undefined },
    { stages: new Set([1, 2]), stdout: 8, stdinDelivered: undefined },
  ];
  const uncounted = stageBytes(mixed, [outReport(0, 4), inReport(0, 4)], mixedParts);
  assert.equal(uncounted.get(2)?.bytesIn, undefined);
  assert.equal(uncounted.get(2)?.bytesOut, 8);
});

test("two commands on one machine writing plumb's stdout: its count is neither's alone", () => {
  const plan = planRecipe(['@a echo one', '@a echo two', '@b echo three', ''].join('\n'), SPOOL);
  const parts: PartCounts[] = [
    { stages: new Set([0, 1]), stdout: 8, stdinDelivered: undefined },
    { stages: new Set([2]), stdout: 6, stdinDelivered: undefined },
  ];
  const bytes = stageBytes(plan, [], parts);
  assert.deepEqual([bytes.get(0), bytes.get(1), bytes.get(2)], [{ bytesIn: 0 }, { bytesIn: 0 }, { bytesIn: 0, bytesOut: 6 }]);
});

test("plumb's stdin as its machine delivered it; a file redirection is not counted", () => {
  const plan = planRecipe(['@a cat <%stdin |', '@b cat >copy', ''].join('\n'), SPOOL);
  const parts: PartCounts[] = [
    { stages: new Set([0]), stdout: 0, stdinDelivered: 7 },
    { stages: new Set([1]), stdout: 0, stdinDelivered: undefined },
  ];
  const bytes = stageBytes(plan, [outReport(0, 7), inReport(0, 7)], parts);
  assert.deepEqual(bytes.get(0), { bytesIn: 7, bytesOut: 7 });
  assert.deepEqual(bytes.get(1), { bytesIn: 7 });
});

test('an edge whose report never came leaves its ends uncounted', () => {
  const plan = planRecipe(['@a seq 1 10 |', '@b cat', ''].join('\n'), SPOOL);
  const parts: PartCounts[] = [
    { stages: new Set([0]), stdout: 0, stdinDelivered: undefined },
    { stages: new Set([1]), stdout: 5, stdinDelivered: undefined },
  ];
  const bytes = stageBytes(plan, [], parts);
  assert.deepEqual(bytes.get(0), { bytesIn: 0 });
  assert.deepEqual(bytes.get(1), { bytesOut: 5 });
});
