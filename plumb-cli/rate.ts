// A bandwidth limit as plumb's users write it (-limit-rate=RATE on the command line, LimitRate in the config file):
// bytes per second, with K, M or G for 1024, 1024^2 or 1024^3 of them (as rsync and curl).

/** What a rate must look like, for the error that refuses one. */
export const RATE_EXPECTED = 'expected bytes per second, at least 1K (e.g. 500K, 10M), or 0 for no limit';

/** The rate that is no limit: it lifts one the config file gives, as rsync's --bwlimit=0. */
export const NO_RATE_LIMIT = 0;

/** The rate in whole bytes per second (NO_RATE_LIMIT for 0), or undefined when the value is not a rate plumb accepts. */
export function parseRate(value: string): number | undefined {
  const match = /^([0-9]+(?:\.[0-9]+)?)([KMG]?)$/i.exec(value);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[(match?.[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G'];
  const rate = match === null ? NaN : Number(match[1]) * unit;
  if (rate === 0) return NO_RATE_LIMIT;
  // Below 1 KiB/s a single packet would take most of a minute: the keepalive and idle timeouts would fire first.
  if (!Number.isFinite(rate) || rate < 1024) return undefined;
  return Math.floor(rate);
}
