// The netplumb-keygen command as a function: parses argv (the words after the program name), writes a key pair
// and reports on out; returns the exit status (0 ok, 1 error, one `netplumb-keygen: message (CODE)` line on err).

import { hostname, userInfo } from 'node:os';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { asNetplumbError, UsageError } from '../protocol/errors.js';
import { writeIdentityFiles } from '../bridges/key-files.js';
import { singleDashHelp, singleDashText } from '../bridges/long-options.js';
import { generateIdentity, type KeyAlgorithm } from '../protocol/keys.js';
import { MIN_RSA_BITS } from '../protocol/wire.js';

interface KeygenOptions {
  file: string;
  type: KeyAlgorithm;
  bits?: number;
  comment: string;
}

const LONG_OPTIONS = ['file', 'type', 'bits', 'comment', 'help'];
const SHORT_OPTIONS = ['f', 't', 'b', 'C'];

/**
 * Commander reads `-f=PATH` as `-f` with value `=PATH` and `-file` as `-f ile`; rewrite both spellings (and
 * `-file=PATH`) to forms it understands. Stops at `--`.
 */
function normaliseArgv(argv: string[]): string[] {
  const result: string[] = [];
  for (const [index, word] of argv.entries()) {
    if (word === '--') {
      result.push(...argv.slice(index));
      break;
    }
    const match = /^-([A-Za-z]+)(=.*)?$/s.exec(word);
    const name = match?.[1] ?? '';
    const value = match?.[2];
    if (match !== null && LONG_OPTIONS.includes(name)) result.push(`--${name}${value ?? ''}`);
    else if (match !== null && SHORT_OPTIONS.includes(name) && value !== undefined) result.push(`-${name}`, value.slice(1));
    else result.push(word);
  }
  return result;
}

function parseBits(text: string): number {
  if (!/^[0-9]+$/.test(text)) throw new InvalidArgumentError('bits must be a whole number');
  return Number(text);
}

function defaultComment(): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = process.env['USER'] ?? 'unknown';
  }
  return `${user}@${hostname()}`;
}

/** Returns the options, or undefined when help was printed instead. */
function parseArguments(argv: string[], out: (s: string) => void): KeygenOptions | undefined {
  const program = new Command('netplumb-keygen')
    .description('Create a netplumb identity key pair (PATH: PKCS#8 private key, PATH.pub: OpenSSH public key).')
    .requiredOption('-f, --file <path>', 'where to write the private key; the public key goes to PATH.pub')
    .addOption(new Option('-t, --type <type>', 'key algorithm').choices(['ed25519', 'rsa']).default('ed25519'))
    .option('-b, --bits <bits>', `RSA modulus size in bits, at least ${MIN_RSA_BITS} (default: ${MIN_RSA_BITS})`, parseBits)
    .option('-C, --comment <comment>', 'comment stored in the public key', defaultComment())
    .configureHelp(singleDashHelp())
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: () => {}, outputError: () => {} });
  try {
    program.parse(normaliseArgv(argv), { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) return undefined;
      throw new UsageError(singleDashText(error.message.replace(/^error: /, '')), { cause: error });
    }
    throw error;
  }
  const options = program.opts<KeygenOptions>();
  if (options.bits !== undefined && options.type !== 'rsa') {
    throw new UsageError('-b applies only to rsa keys');
  }
  return options;
}

export function runKeygen(
  argv: string[],
  out: (s: string) => void,
  err: (s: string) => void = (s) => {
    process.stderr.write(s);
  },
): number {
  try {
    const options = parseArguments(argv, out);
    if (options === undefined) return 0;
    const identity = generateIdentity(options.type, options.comment, options.bits);
    writeIdentityFiles(options.file, identity, options.comment);
    out(`Your identification has been saved in ${options.file}\n`);
    out(`Your public key has been saved in ${options.file}.pub\n`);
    const fingerprint = identity.publicIdentity.fingerprint;
    out(`The key fingerprint is: ${options.comment === '' ? fingerprint : `${fingerprint} ${options.comment}`}\n`);
    return 0;
  } catch (error) {
    const failure = asNetplumbError(error);
    err(`netplumb-keygen: ${failure.message.replace(/\s*\n\s*/g, ' ')} (${failure.code})\n`);
    return 1;
  }
}
