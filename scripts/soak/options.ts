// The soak's command line: which phases run and how large each is. Every count is checked here, once; a wrong
// argument is an Error carrying the usage line.

/** The zero phase's growth is taken from this sample on: the first seconds fill the windows and warm the daemon. */
export const ZERO_SETTLE_SECONDS = 2;

export type PhaseName = 'idle' | 'zero' | 'churn';

export interface Options {
  sessions: number;
  churn: number;
  zeroSeconds: number;
  only: PhaseName | undefined;
  json: boolean;
  /** Snapshots the daemon's heap with the idle sessions open and after they closed; sums the difference by constructor. */
  heapSummary: boolean;
}

const USAGE = 'usage: soak [--sessions=N] [--churn=N] [--zero-seconds=N] [--only=idle|zero|churn] [--json] [--heap-summary]';

export function parseOptions(argv: readonly string[]): Options {
  const options: Options = { sessions: 1000, churn: 300_000, zeroSeconds: 20, only: undefined, json: false, heapSummary: false };
  const count = (name: string, value: string | undefined, min: number): number => {
    const parsed = Number(value);
    if (value === undefined || !/^\d+$/.test(value) || parsed < min) throw new Error(`--${name} wants a whole number of at least ${min}\n${USAGE}`);
    return parsed;
  };
  for (const arg of argv) {
    const [name, value] = arg.startsWith('--') ? [arg.slice(2).split('=')[0], arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : undefined] : [undefined, undefined];
    switch (name) {
      case 'sessions':
        options.sessions = count(name, value, 1);
        break;
      case 'churn':
        options.churn = count(name, value, 1);
        break;
      case 'zero-seconds':
        options.zeroSeconds = count(name, value, ZERO_SETTLE_SECONDS + 1);
        break;
      case 'only':
        if (value !== 'idle' && value !== 'zero' && value !== 'churn') throw new Error(`--only wants idle, zero or churn\n${USAGE}`);
        options.only = value;
        break;
      case 'json':
        options.json = true;
        break;
      case 'heap-summary':
        options.heapSummary = true;
        break;
      default:
        throw new Error(`unknown argument ${arg}\n${USAGE}`);
    }
  }
  return options;
}
