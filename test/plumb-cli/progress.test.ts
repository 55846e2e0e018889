// plumb -progress's line, on a clock and an output of the test's: sizes and times as shown, the rate following the
// bytes, redrawn in place on a terminal and cut to its width, plain lines elsewhere, and the closing summary.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { formatBytes, formatElapsed, personAtTerminal, ProgressLine, summary, TERMINAL_SHOW_AFTER_MS } from '../../plumb-cli/progress.js';
import type { StreamTotals } from '../../plumb-cli/stream-meter.js';

function recorder(isTTY: boolean, columns = 80): { output: { write(text: string): void; isTTY: boolean; columns: number }; text: () => string } {
  let written = '';
  return { output: { write: (text) => void (written += text), isTTY, columns }, text: () => written };
}

function stream(name: string, bytesOut: number, bytesIn: number, open = 1, streams = 1): StreamTotals {
  return { name, bytesOut, bytesIn, streams, open, startedAt: 0 };
}

test('sizes in binary units and times as m:ss or h:mm:ss', () => {
  assert.equal(formatBytes(0), '0B');
  assert.equal(formatBytes(1023), '1023B');
  assert.equal(formatBytes(1536), '1.50KiB');
  assert.equal(formatBytes(50 * 1024 * 1024), '50.0MiB');
  assert.equal(formatBytes(3 * 1024 ** 4), '3.00TiB');
  assert.equal(formatElapsed(999), '0:00');
  assert.equal(formatElapsed(65_000), '1:05');
  assert.equal(formatElapsed(3_725_000), '1:02:05');
});

test('the line shows each open stream with its bytes, a rate that follows them, and its time; closed streams leave it', () => {
  let now = 0;
  let totals = [stream('stdin', 0, 0), stream('stdout', 0, 0)];
  const { output, text } = recorder(true, 200);
  const line = new ProgressLine(output, () => totals, () => now);
  now = 1000;
  totals = [stream('stdin', 1024 * 1024, 0), stream('stdout', 0, 0, 0)];
  assert.equal(line.line(), 'stdin 1.00MiB 1.00MiB/s 0:01 [0:01]');
  now = 2000;
  totals = [stream('stdin', 1024 * 1024, 0), stream('socket db.sock', 10, 20, 2, 3)];
  // No byte in the last second: the shown rate falls towards 0, smoothed.
  assert.equal(line.line(), 'stdin 1.00MiB 717KiB/s 0:02 | socket db.sock (3) 30B 15B/s 0:02 [0:02]');
  line.draw();
  assert.equal(text(), '\r\x1b[Kstdin 1.00MiB 717KiB/s 0:02 | socket db.sock (3) 30B 15B/s 0:02 [0:02]', 'a draw at the same moment keeps the rates');
});

test('on a terminal the line is cut to its width and cleared before the summary; elsewhere each draw is a line of its own', () => {
  const totals = [stream('a-stream-with-a-long-name', 5, 0)];
  const terminal = recorder(true, 30);
  const onTerminal = new ProgressLine(terminal.output, () => totals, () => 0);
  onTerminal.draw();
  assert.equal(terminal.text(), `\r\x1b[K${'a-stream-with-a-long-name 5B 0B/s 0:00 [0:00]'.slice(0, 28)}~`);
  onTerminal.finish();
  assert.match(terminal.text(), /~\r\x1b\[Kplumb: a-stream-with-a-long-name 5B sent in 0\.00 s\n$/);

  const log = recorder(false);
  const inLog = new ProgressLine(log.output, () => [...totals, stream('edge 0', 0, 7, 0)], () => 0);
  inLog.draw();
  inLog.draw();
  inLog.finish();
  assert.equal(log.text(), 'plumb: progress: a-stream-with-a-long-name 5B 0B/s 0:00 [0:00]\n'.repeat(2) + 'plumb: a-stream-with-a-long-name 5B sent, edge 0 7B received in 0.00 s\n');
});

test('the summary gives each direction that carried bytes, the count of rounds or connections, and 0B for a silent stream', () => {
  assert.equal(summary([stream('stdin', 2048, 0), stream('stdout', 0, 0), stream('local-socket /tmp/s', 1, 2, 0, 4)]), 'stdin 2.00KiB sent, stdout 0B, local-socket /tmp/s (4) 1B sent 2B received');
  assert.equal(summary([]), 'no streams');
});

test('unasked on a terminal: nothing drawn before the run has lasted a second, and no summary for a run that never showed one', () => {
  let now = 0;
  const totals = [stream('stdout', 0, 3)];
  const quick = recorder(true, 200);
  const quickLine = ProgressLine.forMode('terminal', quick.output, () => totals);
  assert.ok(quickLine !== undefined);
  const lasting = recorder(true, 200);
  const lastingLine = new ProgressLine(lasting.output, () => totals, () => now, TERMINAL_SHOW_AFTER_MS);
  now = TERMINAL_SHOW_AFTER_MS - 1;
  lastingLine.draw();
  assert.equal(lasting.text(), '', 'not yet');
  now = TERMINAL_SHOW_AFTER_MS;
  lastingLine.draw();
  assert.match(lasting.text(), /^\r\x1b\[Kstdout 3B /);
  lastingLine.finish();
  assert.match(lasting.text(), /\r\x1b\[Kplumb: stdout 3B received in 1\.00 s\n$/);
  quickLine.draw();
  quickLine.finish();
  assert.equal(quick.text(), '', 'a quick run: no line, no summary');

  const asked = recorder(true, 200);
  const askedLine = ProgressLine.forMode('asked', asked.output, () => totals);
  askedLine?.finish();
  assert.match(asked.text(), /^plumb: stdout 3B received in \d\.\d\d s\n$/, 'asked for, the summary comes however short the run');
  assert.equal(ProgressLine.forMode('off', asked.output, () => totals), undefined);
});

test('a terminal that reports no width is taken as 80 columns, not cut to the narrowest line', () => {
  const { output, text } = recorder(true, 0);
  new ProgressLine(output, () => [stream('stdin', 917_504, 0), stream('stdout', 0, 0)], () => 0).draw();
  assert.equal(text(), '\r\x1b[Kstdin 896KiB 0B/s 0:00 | stdout 0B 0B/s 0:00 [0:00]');
});

test('a person watches at a terminal: stderr is one, so is stdin or stdout, and plumb is in the foreground group', () => {
  const tty = { isTTY: true };
  const pipe = {};
  // pid (comm) state ppid pgrp session tty_nr tpgid ...: a command name with a space and a parenthesis in it.
  const stat = (pgrp: number, tpgid: number): string => `4242 (node (x) y) S 1 ${pgrp} ${pgrp} 34816 ${tpgid} 4194560 0`;
  assert.equal(personAtTerminal({ stdin: tty, stdout: pipe, stderr: tty, procStat: stat(4242, 4242) }), true, 'a download into a file');
  assert.equal(personAtTerminal({ stdin: pipe, stdout: tty, stderr: tty, procStat: stat(4242, 4242) }), true, 'an upload from a pipe');
  assert.equal(personAtTerminal({ stdin: pipe, stdout: pipe, stderr: tty, procStat: stat(4242, 4242) }), false, "another program's transport");
  assert.equal(personAtTerminal({ stdin: tty, stdout: tty, stderr: pipe, procStat: stat(4242, 4242) }), false, 'stderr into a log');
  assert.equal(personAtTerminal({ stdin: tty, stdout: pipe, stderr: tty, procStat: stat(4242, 4300) }), false, 'a background job');
  assert.equal(personAtTerminal({ stdin: tty, stdout: pipe, stderr: tty, procStat: undefined }), true, 'no /proc: taken as in the foreground');
});

test('output that leaves its line open keeps the status line away until the line is finished', () => {
  let now = 5000;
  const { output, text } = recorder(true, 200);
  const line = new ProgressLine(output, () => [stream('stdout', 0, 9)], () => now);
  let shown = '';
  const terminal = Object.assign(new Writable({ write: (chunk: Buffer, _encoding, done) => { shown += chunk.toString(); done(); } }), { isTTY: true });
  const sink = line.interleave(terminal);
  sink.write('Password: ');
  line.draw();
  assert.equal(text(), '', 'no redraw over a prompt');
  sink.write('\n');
  now = 6000;
  line.draw();
  assert.match(text(), /^\r\x1b\[Kstdout 9B /);
  assert.equal(shown, 'Password: \n');
  // A sink that is not the terminal (a file) is left as it is: its output never meets the line.
  const file = new Writable({ write: (_chunk, _encoding, done) => done() });
  assert.equal(line.interleave(file), file);
});
