// The fuzz report as plain text: figures first, then what went wrong, and after a crash what reproduces it.

import type { FuzzReport } from './run.js';

function mib(kb: number): string {
  return `${(kb / 1024).toFixed(1)} MiB`;
}

function perSecond(count: number, ms: number): string {
  return ms === 0 ? '-' : `${Math.round((count * 1000) / ms)}/s`;
}

/** `name n, name n` largest first, at most `limit` of them. */
function counts(record: Readonly<Record<string, number>>, limit = 12): string {
  const entries = Object.entries(record).sort((a, b) => b[1] - a[1]);
  const shown = entries.slice(0, limit).map(([name, n]) => `${name} ${n}`);
  if (entries.length > limit) shown.push(`and ${entries.length - limit} more`);
  return shown.length === 0 ? 'none' : shown.join(', ');
}

export function formatReport(report: FuzzReport): string {
  const { pre, post, daemon } = report;
  const lines: string[] = [];
  const o = report.options;
  lines.push(`netplumb fuzz: seed ${report.seed}, ${o.inputs} inputs asked, at most ${o.seconds} s per fuzzer, daemon heap capped at ${o.heapMb} MiB`);
  lines.push(`inputs sent: ${report.inputs} (pre-auth ${pre.inputs}, post-auth ${post.inputs}) on ${report.connections} connections in ${(report.durationMs / 1000).toFixed(1)} s`);
  if (o.pre) {
    lines.push(`pre-auth: ${pre.inputs} inputs on ${pre.connections} connections in ${(pre.durationMs / 1000).toFixed(1)} s (${perSecond(pre.inputs, pre.durationMs)})`);
    lines.push(`  closed by the daemon ${pre.closedByDaemon}, stuck ${pre.stuck}, connect failures ${pre.connectFailures}, malformed replies ${pre.badReplies}`);
    lines.push(`  daemon replies: ${counts(pre.replies)}; error packets: ${counts(pre.errorCodes)}`);
    lines.push(`  handshake replies over 4096 bytes (the least a peer must accept): ${counts(pre.oversizedReplies)}`);
    lines.push(`  kinds: ${counts(pre.kinds, 40)}`);
  }
  if (o.post) {
    lines.push(`post-auth: ${post.inputs} inputs (${post.confirmed} confirmed read) on ${post.connections} connections in ${(post.durationMs / 1000).toFixed(1)} s (${perSecond(post.inputs, post.durationMs)})`);
    lines.push(`  fatal probes ${post.fatalProbes} (closed the connection ${post.fatalClosed}; survived: ${counts(post.fatalSurvived)})`);
    lines.push(`  unexpected closes: ${counts(post.unexpectedCloses)}; reply timeouts ${post.replyTimeouts}; handshake failures: ${counts(post.handshakeFailures)}; connect failures ${post.connectFailures}`);
    for (const [code, reason] of Object.entries(post.unexpectedCloseReasons)) lines.push(`    first ${code}: ${reason}`);
    lines.push(`  start replies: ${counts(post.startReplies)}`);
    lines.push(`  mint replies: ${counts(post.mintReplies)}; unknown codes in replies: ${counts(post.unknownCodes)}`);
    lines.push(`  other daemon packets: ${counts(post.daemonPackets)}`);
    lines.push(`  kinds: ${counts(post.kinds, 60)}`);
  }
  const after = daemon.rssKb.after === null ? 'gone' : mib(daemon.rssKb.after);
  lines.push(`daemon: crashes ${daemon.crashes}; RSS before ${mib(daemon.rssKb.before)}, after ${after}, peak ${mib(daemon.rssKb.peak)}`);
  lines.push(`  CPU time: daemon ${daemon.cpuSeconds.daemon.toFixed(1)} s, fuzzers ${daemon.cpuSeconds.fuzzer.toFixed(1)} s`);
  if (daemon.stopped !== undefined) lines.push(`  stopped by SIGTERM: exit code ${daemon.stopped.code}${daemon.stopped.signal === null ? '' : `, signal ${daemon.stopped.signal}`}`);
  lines.push(`  log: ${daemon.log.lines} lines; codes: ${counts(daemon.log.codes, 40)}`);
  if (daemon.logKept !== undefined) lines.push(`  log kept: ${daemon.logKept}`);
  lines.push(`  internal errors in the log: ${daemon.log.internalErrors} (besides ${daemon.log.fuzzerErrorPackets} NP_INTERNAL lines for the fuzzers' own Error packets with unknown codes)`);
  for (const example of daemon.log.internalExamples) lines.push(`    ${example}`);
  const plumb = report.finalPlumb;
  lines.push(plumb.ran ? `final plumb 127.0.0.1:${daemon.port} true: exit ${plumb.code ?? `signal ${plumb.signal}`} in ${plumb.durationMs} ms${plumb.code === 0 ? '' : `: ${plumb.stderr.trim()}`}` : 'final plumb: not run (the daemon is gone)');
  if (daemon.crash !== undefined) {
    const how = daemon.crash.hung ? 'stopped answering (a restart would be needed)' : `exited with code ${daemon.crash.exit?.code} signal ${daemon.crash.exit?.signal}`;
    lines.push('');
    lines.push(`DAEMON CRASH: netplumbd ${how}`);
    const only = o.pre && !o.post ? ' --pre-only' : o.post && !o.pre ? ' --post-only' : '';
    lines.push(`reproduce with: npm run fuzz -- --seed=${report.seed} --inputs=${o.inputs} --heap-mb=${o.heapMb}${only}`);
    lines.push("(for a seed each worker draws the same inputs, but for the run's own keys, nonces and temp paths; how workers interleave depends on timing)");
    lines.push('last inputs sent (worker, its input number, kind, length, first bytes in hex):');
    for (const input of report.lastInputs) lines.push(`  ${input.phase} ${input.worker} #${input.index} ${input.kind} ${input.bytes} bytes ${input.hex}`);
  }
  lines.push(`result: ${report.ok ? 'OK' : 'FAILED'}`);
  return `${lines.join('\n')}\n`;
}
