// Command-line spelling shared by netplumb's commands: the original design writes long options with one dash
// (`-recipe=file`); commander only knows `--recipe`. normaliseLongOptions rewrites the known ones before parsing
// and stops at the first word that is not an option, so a remote command's own flags pass through untouched.
// singleDashHelp shows them in --help the same way.

import type { Help, Option } from 'commander';

export interface LongOptionSpec {
  /** Long option names without dashes, e.g. 'identity'. */
  withValue: readonly string[];
  /** Long flags without dashes, e.g. 'accept-new'. */
  flags: readonly string[];
  /**
   * Long options whose value is optional and only ever written inline (`-json` or `-json=FILE`), each with the value
   * its bare form stands for. The bare form is rewritten with that value, so the parser never takes the next word
   * (the machine) for its value.
   */
  optionalValue?: Readonly<Record<string, string>>;
  /** Short options that take a value in the next word (e.g. 'p' for -p 2222), so the scan can skip it. */
  shortWithValue?: readonly string[];
}

/**
 * Rewrites `-name=value`, `-name value` and `-flag` of known long options to `--name=value` / `--flag`.
 * Options may stand between the first positionalsBeforeStop positional words (plumb's machine) and the next
 * one; they are moved in front of those words. Scanning ends at `--` or at the positional word after those
 * (the remote command), and every word from there on is returned unchanged.
 */
export function normaliseLongOptions(argv: readonly string[], spec: LongOptionSpec, positionalsBeforeStop = 0): string[] {
  const out: string[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    if (word === '--') return [...out, ...positionals, ...argv.slice(i)];
    const match = /^--?([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(word);
    const name = match?.[1];
    if (match !== null && name !== undefined && spec.withValue.includes(name)) {
      const inline = match[2];
      if (inline !== undefined) out.push(`--${name}=${inline}`);
      else if (i + 1 < argv.length) out.push(`--${name}=${argv[++i] as string}`);
      else out.push(`--${name}`);
      continue;
    }
    const bareValue = name === undefined ? undefined : spec.optionalValue?.[name];
    if (match !== null && name !== undefined && bareValue !== undefined) {
      out.push(`--${name}=${match[2] ?? bareValue}`);
      continue;
    }
    // -help as every help text spells it, whatever the command's own flags.
    if (match !== null && name !== undefined && match[2] === undefined && (spec.flags.includes(name) || name === 'help')) {
      out.push(`--${name}`);
      continue;
    }
    if (word.startsWith('-') && word.length > 1) {
      out.push(word);
      const short = /^-([a-zA-Z])$/.exec(word)?.[1];
      if (short !== undefined && spec.shortWithValue?.includes(short) && i + 1 < argv.length) out.push(argv[++i] as string);
      continue;
    }
    if (positionals.length >= positionalsBeforeStop) return [...out, ...positionals, ...argv.slice(i)];
    positionals.push(word);
  }
  return [...out, ...positionals];
}

/** A commander message in the spelling the commands take: `option '-p, -port <port>' argument missing`. */
export function singleDashText(text: string): string {
  return text.replace(/(^|[\s'"(,])--(?=[a-z])/g, '$1-');
}

/**
 * commander's help in the spelling the commands take: `-identity <file>` and `-i, -identity <file>`, not
 * `--identity`. Every option that takes a value says its default, `none` when it has none; a list option's empty
 * default (`(default: [])`) is shown as that. A required option says so.
 */
export function singleDashHelp(): Partial<Help> {
  return {
    optionTerm: (option: Option): string => option.flags.replace(/--/g, '-'),
    optionDescription: (option: Option): string => {
      if (option.mandatory) return `${option.description} (required)`;
      if (/\bdefault: /.test(option.description)) return option.description;
      const isEmptyList = Array.isArray(option.defaultValue) && option.defaultValue.length === 0;
      if (option.defaultValue !== undefined && !isEmptyList && option.defaultValue !== false) {
        return `${option.description} (default: ${option.defaultValueDescription ?? JSON.stringify(option.defaultValue)})`;
      }
      return option.required || option.optional ? `${option.description} (default: none)` : option.description;
    },
  };
}
