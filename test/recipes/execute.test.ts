// The recipe executor on its own (no daemon), the bytes: real processes, real pipes and FIFOs in a temp spool
// directory; bytes arrive exactly through every kind of pipe and redirection (execute-run.test.ts has the run's
// life: stage reports, status, abort, setup and fds).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { deterministicBytes, deterministicSha256, deterministicStream } from '../helpers/payloads.js';
import { waitUntil } from '../helpers/processes.js';
import { tempDir } from '../helpers/scope.js';
import {
  BIG_PAYLOAD_BYTES,
  boundedOutcome,
  collector,
  executeText,
  fifosIn,
  hashingSink,
  prepareText,
  sha256File,
  sha256Files,
  writeDeterministicFile,
} from '../helpers/recipes.js';

const TIMEOUT_MS = 180_000;
/** A pipe write of at most this many bytes is atomic (Linux PIPE_BUF): several writers' records never mix. */
const PIPE_BUF_BYTES = 4096;

/** Shared inputs, made once: a 64 MiB file of a known stream and two small ones. */
let inputs: { dir: string; big: string; bigSha256: string; small1: string; small2: string };

// Made here, not in before(): the directory's removal belongs to the whole file.
const inputsDir = tempDir({ after }, 'netplumb-exec-inputs-');

before(async () => {
  const dir = inputsDir;
  const big = join(dir, 'big.bin');
  await writeDeterministicFile(big, 'execute-big', BIG_PAYLOAD_BYTES);
  const small1 = join(dir, 'small1.bin');
  const small2 = join(dir, 'small2.bin');
  await writeDeterministicFile(small1, 'execute-small-1', 1024 * 1024 + 17);
  await writeDeterministicFile(small2, 'execute-small-2', 300_001);
  inputs = { dir, big, bigSha256: deterministicSha256('execute-big', BIG_PAYLOAD_BYTES), small1, small2 };
});

/** A file name as a recipe word: single quotes keep it literal. */
function q(path: string): string {
  assert.ok(!path.includes("'"));
  return `'${path}'`;
}

// ---- bytes -------------------------------------------------------------------------------------------------

test('64 MiB written with >%label arrive exactly on the labelled command', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const result = await executeText(`cat ${q(inputs.big)} >%sink &\nsink: cat\n`, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
});

test('64 MiB written with 2>%label arrive exactly on the labelled command, its stdout elsewhere', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = `sh -c 'cat "$0" >&2; echo to-stdout' ${q(inputs.big)} 2>%sink &\nsink: cat >got.bin\n`;
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sha256File(join(spool, 'got.bin')), { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.equal(result.stdout.toString(), 'to-stdout\n');
  assert.equal(result.stderr.length, 0);
});

test('64 MiB pass exactly through a chain of lines ending in |', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const result = await executeText(`cat ${q(inputs.big)} |\ncat |\ncat\n`, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.deepEqual(result.ends.map((end) => end.status), [{ code: 0 }, { code: 0 }, { code: 0 }]);
});

test('a line ending in | with 2>&1 >file sends its stderr into the pipe', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const text = `sh -c 'echo to-file; cat "$0" >&2' ${q(inputs.big)} 2>&1 >out.txt |\ncat\n`;
  const result = await executeText(text, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.equal(readFileSync(join(spool, 'out.txt'), 'utf8'), 'to-file\n');
});

test('64 MiB pass exactly through a named pipe, and the pipe is gone afterwards', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const result = await executeText(`fifo data\ncat ${q(inputs.big)} >@data &\ncat <@data\n`, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.deepEqual(fifosIn(spool), []);
});

test('a named pipe read by a background command and written by a later foreground one carries 64 MiB', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const result = await executeText(`fifo data\ncat <@data >copy.bin &\ncat ${q(inputs.big)} >@data\n`, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sha256File(join(spool, 'copy.bin')), { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.deepEqual(fifosIn(spool), []);
});

test('>> appends in recipe order after what the file held; > truncates', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'appended.bin'), 'header\n');
  writeFileSync(join(spool, 'truncated.bin'), 'x'.repeat(5_000_000));
  const text = [
    `cat ${q(inputs.big)} >>appended.bin`,
    `cat ${q(inputs.small1)} >>appended.bin`,
    `sh -c 'cat "$0" >&2' ${q(inputs.small2)} 2>>appended.bin`,
    `cat ${q(inputs.small1)} >truncated.bin`,
    '',
  ].join('\n');
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  const header = join(inputs.dir, 'header.txt');
  writeFileSync(header, 'header\n');
  const expected = await sha256Files([header, inputs.big, inputs.small1, inputs.small2]);
  const got = await sha256File(join(spool, 'appended.bin'));
  assert.equal(got.bytes, 'header\n'.length + BIG_PAYLOAD_BYTES + statSync(inputs.small1).size + statSync(inputs.small2).size);
  assert.equal(got.sha256, expected);
  assert.deepEqual(await sha256File(join(spool, 'truncated.bin')), await sha256File(inputs.small1));
});

test('>file 2>&1 sends stdout and stderr into the file, in the order they were written', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = `sh -c 'cat "$0"; cat "$1" >&2; cat "$2"; cat "$1" >&2' ${q(inputs.big)} ${q(inputs.small1)} ${q(inputs.small2)} >both.bin 2>&1\n`;
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.equal(result.stdout.length, 0);
  assert.equal(result.stderr.length, 0);
  const expected = await sha256Files([inputs.big, inputs.small1, inputs.small2, inputs.small1]);
  assert.equal((await sha256File(join(spool, 'both.bin'))).sha256, expected);
});

test('2>&1 >file sends stderr where stdout went before, and only stdout into the file', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const sink = hashingSink();
  const text = `sh -c 'cat "$0"; cat "$1" >&2' ${q(inputs.small1)} ${q(inputs.big)} 2>&1 >out.bin\n`;
  const result = await executeText(text, spool, { stdout: sink.stream });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(await sink.result, { bytes: BIG_PAYLOAD_BYTES, sha256: inputs.bigSha256 });
  assert.equal(result.stderr.length, 0);
  assert.deepEqual(await sha256File(join(spool, 'out.bin')), await sha256File(inputs.small1));
});

test('several writers into one label: every record arrives, and the reader sees EOF only after the last writer', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const writers = 3;
  const recordsPerWriter = Math.ceil(BIG_PAYLOAD_BYTES / PIPE_BUF_BYTES / writers);
  const expected: string[] = [];
  for (let writer = 0; writer < writers; writer++) {
    // Records of exactly PIPE_BUF bytes written one per write(2) by dd: each arrives whole, so records of
    // different writers may interleave but never mix.
    const body = deterministicBytes(`writer-${writer}`, recordsPerWriter * PIPE_BUF_BYTES);
    for (let record = 0; record < recordsPerWriter; record++) {
      body.write(`w${writer} r${String(record).padStart(8, '0')}\n`, record * PIPE_BUF_BYTES, 'latin1');
    }
    writeFileSync(join(spool, `w${writer}.bin`), body);
    expected.push((await sha256File(join(spool, `w${writer}.bin`))).sha256);
  }
  const text = [
    `first: dd if=w0.bin bs=${PIPE_BUF_BYTES} status=none >%merge &`,
    // Both outputs into the label: the command counts as one writer.
    `second: sh -c 'dd if=w1.bin bs=${PIPE_BUF_BYTES} status=none' >%merge 2>&1 &`,
    `late: sh -c 'sleep 1; exec dd if=w2.bin bs=${PIPE_BUF_BYTES} status=none' 2>%merge >%merge &`,
    'merge: cat >merged.bin',
    '',
  ].join('\n');
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  const order = result.ends.map((end) => end.name);
  assert.equal(order.at(-1), 'merge', `the reader ended before a writer: ${order.join(', ')}`);
  const merged = readFileSync(join(spool, 'merged.bin'));
  assert.equal(merged.length, writers * recordsPerWriter * PIPE_BUF_BYTES);
  const perWriter: Buffer[][] = Array.from({ length: writers }, () => []);
  for (let offset = 0; offset < merged.length; offset += PIPE_BUF_BYTES) {
    const record = merged.subarray(offset, offset + PIPE_BUF_BYTES);
    const header = /^w(\d) r(\d{8})\n/.exec(record.toString('latin1', 0, 13));
    assert.ok(header !== null, `record at ${offset} has no header`);
    const writer = Number(header[1]);
    const pieces = perWriter[writer];
    assert.ok(pieces !== undefined);
    assert.equal(Number(header[2]), pieces.length, `writer ${writer}'s records out of order`);
    pieces.push(record);
  }
  perWriter.forEach((pieces, writer) => {
    assert.equal(pieces.length, recordsPerWriter);
    const hash = createHash('sha256');
    for (const piece of pieces) hash.update(piece);
    assert.equal(hash.digest('hex'), expected[writer], `writer ${writer}'s bytes`);
  });
});

test('a reader that stops early ends its writers by SIGPIPE, through |, a label and a named pipe', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = ['yes |', 'head -c 3', 'yes >%h &', 'h: head -c 4', 'fifo f', 'yes >@f &', 'head -c 5 <@f', ''].join('\n');
  const result = await executeText(text, spool, { timeoutMs: 30_000 });
  assert.equal(result.stdout.toString(), 'y\ny' + 'y\ny\n' + 'y\ny\ny');
  assert.deepEqual(
    result.outcome.stages.map((end) => end.status),
    [{ signal: 'SIGPIPE' }, { code: 0 }, { signal: 'SIGPIPE' }, { code: 0 }, { signal: 'SIGPIPE' }, { code: 0 }],
  );
  assert.deepEqual(result.outcome.status, { signal: 'SIGPIPE' });
});

test('a reader that cannot start ends its writer by SIGPIPE; a writer that cannot start gives its reader EOF', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const text = ['yes |', 'no-such-command-np-test', 'no-such-command-np-test |', 'wc -c', ''].join('\n');
  const result = await executeText(text, spool, { timeoutMs: 30_000 });
  assert.equal(result.stdout.toString().trim(), '0');
  assert.deepEqual(result.outcome.stages[0]?.status, { signal: 'SIGPIPE' });
  assert.deepEqual(result.outcome.stages[3]?.status, { code: 0 });
});

test('a command that stops reading <%stdin early does not hold up the run', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  // Far more than any pipe holds, produced only as it is read.
  const stdin = deterministicStream('execute-endless', 1024 * 1024 * 1024);
  const result = await executeText('head -c 10 <%stdin\necho after\n', spool, { stdin, timeoutMs: 30_000 });
  assert.deepEqual(result.outcome.status, { code: 0 }, result.stderr.toString());
  assert.deepEqual(result.stdout, Buffer.concat([deterministicBytes('execute-endless', 10), Buffer.from('after\n')]));
  await waitUntil('the stdin Readable to be dropped', () => stdin.destroyed, 5000);
});

test('when the stdout Writable goes away, writers into it get SIGPIPE and the run ends', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  const { run } = await prepareText('yes\necho next\n', spool);
  let received = 0;
  const stdout = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > 1024 * 1024) this.destroy();
      callback();
    },
  });
  run.start({ stdin: Readable.from([]), stdout, stderr: collector().stream });
  const outcome = await boundedOutcome(run, 30_000);
  assert.deepEqual(outcome.stages[0]?.status, { signal: 'SIGPIPE' });
  assert.equal(outcome.stages.length, 2);
  assert.deepEqual(outcome.status, { signal: 'SIGPIPE' });
});

test('<file reads a file of the spool directory', { timeout: TIMEOUT_MS }, async (t) => {
  const spool = tempDir(t);
  writeFileSync(join(spool, 'in.txt'), 'lower case\n');
  const result = await executeText('tr a-z A-Z <in.txt\n', spool);
  assert.equal(result.stdout.toString(), 'LOWER CASE\n');
});

test('a character device reaches the command as an ordinary, blocking descriptor, both ways', { timeout: TIMEOUT_MS }, async (t) => {
  // The daemon opens redirections with O_NONBLOCK so that it never waits; a command that kept that flag on its
  // terminal or tape would see EAGAIN (libuv clears it on a child's stdio). /proc/PID/fdinfo shows the flags the
  // command really has (O_NONBLOCK: 04000).
  const spool = tempDir(t);
  const text = "sh -c 'grep ^flags /proc/$$/fdinfo/0 >&2; grep ^flags /proc/$$/fdinfo/1 >&2' </dev/zero >/dev/null 2>flags.txt\n";
  const result = await executeText(text, spool);
  assert.deepEqual(result.outcome.status, { code: 0 }, JSON.stringify(result.ends));
  const flags = readFileSync(join(spool, 'flags.txt'), 'utf8');
  const values = [...flags.matchAll(/^flags:\s+([0-7]+)$/gm)].map((match) => parseInt(match[1] as string, 8));
  assert.equal(values.length, 2, flags);
  for (const value of values) assert.equal(value & 0o4000, 0, `a device descriptor has O_NONBLOCK: ${flags}`);
});
