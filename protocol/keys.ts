// Long-term identity keys (Ed25519, RSA of MIN_RSA_BITS..MAX_RSA_BITS) in OpenSSH's public-key formats and PKCS#8
// PEM, and the transcript signatures made with them. Malformed key input throws ConfigError(KeyFormat); a blob is
// always canonical, so two identities are the same key exactly when their blobs are equal. verify never throws.

import {
  constants,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { ConfigError, KeyFormatError } from './errors.js';
import { MIN_RSA_BITS, type SignatureAlgorithm } from './wire.js';

export type KeyAlgorithm = 'ed25519' | 'rsa';

/** Largest RSA modulus accepted, in bits (OpenSSH's limit too); bounds the work one verify can cost. */
export const MAX_RSA_BITS = 16384;
/** RSA-PSS salt length in bytes (equal to the SHA-256 output); MGF1 uses SHA-256 as well. */
export const RSA_PSS_SALT_BYTES = 32;

export interface PublicIdentity {
  algorithm: KeyAlgorithm;
  signatureAlgorithm: SignatureAlgorithm;
  key: KeyObject;
  /** OpenSSH wire-format public key (RFC 4253 / RFC 8709): string type, then the key data. Canonical. */
  blob: Buffer;
  /** `type base64`, without a comment. */
  line: string;
  /** `SHA256:` + unpadded base64 of sha256(blob), as `ssh-keygen -lf` prints it. */
  fingerprint: string;
  comment: string;
}

export interface PrivateIdentity {
  privateKey: KeyObject;
  publicIdentity: PublicIdentity;
}

const SSH_KEY_TYPE: Readonly<Record<KeyAlgorithm, string>> = { ed25519: 'ssh-ed25519', rsa: 'ssh-rsa' };
const SIGNATURE_ALGORITHM: Readonly<Record<KeyAlgorithm, SignatureAlgorithm>> = {
  ed25519: 'ssh-ed25519',
  rsa: 'rsa-pss-sha256',
};
const ED25519_KEY_BYTES = 32;
const OPENSSH_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const OPENSSH_END = '-----END OPENSSH PRIVATE KEY-----';
const OPENSSH_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');

function keyFormatError(message: string, cause?: unknown): ConfigError {
  return new KeyFormatError(message, cause === undefined ? undefined : { cause });
}

function algorithmOfSshType(type: string): KeyAlgorithm | undefined {
  if (type === SSH_KEY_TYPE.ed25519) return 'ed25519';
  if (type === SSH_KEY_TYPE.rsa) return 'rsa';
  return undefined;
}

/** Reads RFC 4251 data types; running past the end is a truncated key, never an out-of-range read. */
class SshReader {
  private offset = 0;

  constructor(private readonly buf: Buffer) {}

  uint32(): number {
    if (this.buf.length - this.offset < 4) throw keyFormatError('truncated key data');
    const value = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  string(): Buffer {
    const length = this.uint32();
    if (this.buf.length - this.offset < length) throw keyFormatError('truncated key data');
    const value = this.buf.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  /** An mpint as its unsigned magnitude; sign and minimality are judged by re-encoding, not here. */
  mpint(): Buffer {
    const raw = this.string();
    let start = 0;
    while (start < raw.length && raw[start] === 0) start += 1;
    return raw.subarray(start);
  }

  rest(): Buffer {
    return this.buf.subarray(this.offset);
  }

  atEnd(): boolean {
    return this.offset === this.buf.length;
  }
}

function sshString(data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

function sshMpint(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length && magnitude[start] === 0) start += 1;
  const trimmed = magnitude.subarray(start);
  const needsZero = trimmed.length > 0 && (trimmed[0] ?? 0) >= 0x80;
  return sshString(needsZero ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

function jwkField(jwk: JsonWebKey, name: 'x' | 'n' | 'e'): Buffer {
  const value = jwk[name];
  if (typeof value !== 'string') throw keyFormatError(`key export lacks the JWK field ${name}`);
  return Buffer.from(value, 'base64url');
}

export function fingerprintOfBlob(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function checkComment(comment: string): void {
  if (/[\r\n]/.test(comment)) throw keyFormatError('a key comment must not contain a line break');
}

function rsaBitsOf(key: KeyObject): number {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits === undefined) throw keyFormatError('cannot tell the size of the RSA key');
  return bits;
}

function checkRsaBits(bits: number): void {
  if (bits < MIN_RSA_BITS) throw keyFormatError(`RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required`);
  if (bits > MAX_RSA_BITS) throw keyFormatError(`RSA key has ${bits} bits; at most ${MAX_RSA_BITS} are accepted`);
}

/**
 * The DER SubjectPublicKeyInfo of an X25519 or Ed25519 public key is this 12-byte prefix and the 32 key bytes
 * (RFC 8410). Raw keys go in and out through it rather than through JWK: on Node 20, exporting a key as JWK can
 * deadlock when a garbage collection runs inside the export (it waits for a lock the export holds), and a daemon
 * makes such keys for every connection.
 */
const SPKI_PREFIX = {
  X25519: Buffer.from('302a300506032b656e032100', 'hex'),
  Ed25519: Buffer.from('302a300506032b6570032100', 'hex'),
} as const;
export const RAW_CURVE_KEY_BYTES = 32;
export type CurveName = keyof typeof SPKI_PREFIX;

/** The 32 raw bytes of an X25519 or Ed25519 public key. */
export function rawCurvePublicKey(key: KeyObject, curve: CurveName): Buffer {
  const der = key.export({ type: 'spki', format: 'der' });
  const prefix = SPKI_PREFIX[curve];
  if (der.length !== prefix.length + RAW_CURVE_KEY_BYTES || !der.subarray(0, prefix.length).equals(prefix)) {
    throw keyFormatError(`not an ${curve} public key`);
  }
  return der.subarray(prefix.length);
}

/** The public key of 32 raw X25519 or Ed25519 bytes; throws (from node:crypto) on bytes that are no key. */
export function curvePublicKey(raw: Buffer, curve: CurveName): KeyObject {
  if (raw.length !== RAW_CURVE_KEY_BYTES) throw keyFormatError(`an ${curve} public key has ${RAW_CURVE_KEY_BYTES} bytes, not ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX[curve], raw]), format: 'der', type: 'spki' });
}

/** Builds the identity of a public key (a private key is reduced to its public half). */
export function publicIdentityFromKey(key: KeyObject, comment: string): PublicIdentity {
  checkComment(comment);
  if (key.type === 'secret') throw keyFormatError('a symmetric key is not an identity key');
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  let algorithm: KeyAlgorithm;
  let blob: Buffer;
  switch (publicKey.asymmetricKeyType) {
    case 'ed25519': {
      algorithm = 'ed25519';
      blob = Buffer.concat([sshString(SSH_KEY_TYPE.ed25519), sshString(rawCurvePublicKey(publicKey, 'Ed25519'))]);
      break;
    }
    case 'rsa': {
      algorithm = 'rsa';
      checkRsaBits(rsaBitsOf(publicKey));
      const jwk = publicKey.export({ format: 'jwk' });
      blob = Buffer.concat([sshString(SSH_KEY_TYPE.rsa), sshMpint(jwkField(jwk, 'e')), sshMpint(jwkField(jwk, 'n'))]);
      break;
    }
    default:
      throw keyFormatError(`unsupported key algorithm ${publicKey.asymmetricKeyType ?? 'unknown'}; use ed25519 or rsa`);
  }
  return {
    algorithm,
    signatureAlgorithm: SIGNATURE_ALGORITHM[algorithm],
    key: publicKey,
    blob,
    line: `${SSH_KEY_TYPE[algorithm]} ${blob.toString('base64')}`,
    fingerprint: fingerprintOfBlob(blob),
    comment,
  };
}

function importPublicJwk(jwk: JsonWebKey): KeyObject {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (error) {
    throw keyFormatError('the key data is not a valid public key', error);
  }
}

/** Decodes a blob whose type must be `expectedType`; refuses trailing bytes and non-canonical encodings. */
function identityFromBlob(blob: Buffer, expectedType: string, comment: string): PublicIdentity {
  const reader = new SshReader(blob);
  const innerType = reader.string().toString('latin1');
  if (innerType !== expectedType) {
    throw keyFormatError(`the key data says ${JSON.stringify(innerType)} but the line says ${expectedType}`);
  }
  let key: KeyObject;
  if (expectedType === SSH_KEY_TYPE.ed25519) {
    const x = reader.string();
    if (x.length !== ED25519_KEY_BYTES) throw keyFormatError(`an Ed25519 key has ${ED25519_KEY_BYTES} bytes, not ${x.length}`);
    if (!reader.atEnd()) throw keyFormatError('trailing bytes after the key data');
    try {
      key = curvePublicKey(x, 'Ed25519');
    } catch (error) {
      throw keyFormatError('the key data is not a valid public key', error);
    }
  } else {
    const e = reader.mpint();
    const n = reader.mpint();
    if (!reader.atEnd()) throw keyFormatError('trailing bytes after the key data');
    if (n.length * 8 > MAX_RSA_BITS) throw keyFormatError(`RSA key is larger than ${MAX_RSA_BITS} bits`);
    if (e.length === 0 || e.length > 8 || ((e[e.length - 1] ?? 0) & 1) === 0) throw keyFormatError('RSA public exponent is invalid');
    key = importPublicJwk({ kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') });
  }
  const identity = publicIdentityFromKey(key, comment);
  if (!identity.blob.equals(blob)) throw keyFormatError('the key data is not canonically encoded');
  return identity;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Parses `type base64 [comment]` (an OpenSSH public key line) for ssh-ed25519 and ssh-rsa. */
export function parsePublicKeyLine(line: string): PublicIdentity {
  const trimmed = line.trim();
  if (/[\r\n]/.test(trimmed)) throw keyFormatError('a public key line must be a single line');
  const match = /^(\S+)\s+(\S+)(?:\s+(.*))?$/.exec(trimmed);
  if (match === null) throw keyFormatError('a public key line needs a key type and base64 key data');
  const [, type = '', data = '', comment = ''] = match;
  if (algorithmOfSshType(type) === undefined) {
    throw keyFormatError(`unsupported key type ${JSON.stringify(type)}; use ssh-ed25519 or ssh-rsa`);
  }
  if (!BASE64.test(data) || data.length % 4 !== 0) throw keyFormatError('the key data is not valid base64');
  const blob = Buffer.from(data, 'base64');
  if (blob.toString('base64') !== data) throw keyFormatError('the key data is not valid base64');
  return identityFromBlob(blob, type, comment.trim());
}

/** `type base64 [comment]`; the comment defaults to the identity's own. */
export function formatPublicKeyLine(id: PublicIdentity, comment?: string): string {
  const text = comment ?? id.comment;
  checkComment(text);
  return text === '' ? id.line : `${id.line} ${text}`;
}

/** True when both name the same key. */
export function sameIdentity(a: PublicIdentity, b: PublicIdentity): boolean {
  return a.blob.equals(b.blob);
}

function identityFromPrivateKey(privateKey: KeyObject, comment: string): PrivateIdentity {
  if (privateKey.type !== 'private') throw keyFormatError('not a private key');
  return { privateKey, publicIdentity: publicIdentityFromKey(privateKey, comment) };
}

/** Makes a fresh key pair; rsaBits must lie in MIN_RSA_BITS..MAX_RSA_BITS. */
export function generateIdentity(algorithm: KeyAlgorithm, comment: string, rsaBits = MIN_RSA_BITS): PrivateIdentity {
  checkComment(comment);
  switch (algorithm) {
    case 'ed25519':
      return identityFromPrivateKey(generateKeyPairSync('ed25519').privateKey, comment);
    case 'rsa':
      if (!Number.isSafeInteger(rsaBits)) throw keyFormatError(`RSA key size ${rsaBits} is not a whole number of bits`);
      checkRsaBits(rsaBits);
      return identityFromPrivateKey(generateKeyPairSync('rsa', { modulusLength: rsaBits }).privateKey, comment);
    default: {
      const unknown: never = algorithm;
      throw keyFormatError(`unsupported key algorithm ${String(unknown)}`);
    }
  }
}

export function encodePrivateKeyPem(id: PrivateIdentity): string {
  return id.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function bigintOf(magnitude: Buffer): bigint {
  return magnitude.length === 0 ? 0n : BigInt(`0x${magnitude.toString('hex')}`);
}

function base64urlOfBigint(value: bigint): string {
  const hex = value.toString(16);
  return Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex').toString('base64url');
}

/**
 * Reads an unencrypted `openssh-key-v1` private key (what ssh-keygen writes by default). The public blob stored
 * beside the private part must match the key derived from it, and the key must sign what its public half verifies.
 */
function parseOpenSshPrivateKey(text: string, comment: string): PrivateIdentity {
  const begin = text.indexOf(OPENSSH_BEGIN);
  const end = text.indexOf(OPENSSH_END, begin);
  if (end < 0) throw keyFormatError('OpenSSH private key has no END line');
  const body = text.slice(begin + OPENSSH_BEGIN.length, end).replace(/\s+/g, '');
  if (!BASE64.test(body)) throw keyFormatError('OpenSSH private key is not valid base64');
  const data = Buffer.from(body, 'base64');
  try {
    if (!data.subarray(0, OPENSSH_MAGIC.length).equals(OPENSSH_MAGIC)) throw keyFormatError('not an openssh-key-v1 private key');
    const outer = new SshReader(data.subarray(OPENSSH_MAGIC.length));
    const cipher = outer.string().toString('latin1');
    const kdf = outer.string().toString('latin1');
    outer.string();
    if (cipher !== 'none' || kdf !== 'none') {
      throw keyFormatError('encrypted OpenSSH private keys are not supported; remove the passphrase with ssh-keygen -p');
    }
    if (outer.uint32() !== 1) throw keyFormatError('an OpenSSH private key file must hold exactly one key');
    const publicBlob = outer.string();
    const inner = new SshReader(outer.string());
    if (!outer.atEnd()) throw keyFormatError('trailing bytes after the OpenSSH private key');
    if (inner.uint32() !== inner.uint32()) throw keyFormatError('OpenSSH private key is corrupt (check integers differ)');
    const type = inner.string().toString('latin1');
    let jwk: JsonWebKey;
    if (type === SSH_KEY_TYPE.ed25519) {
      const x = inner.string();
      const secret = inner.string();
      if (x.length !== ED25519_KEY_BYTES || secret.length !== 2 * ED25519_KEY_BYTES || !secret.subarray(ED25519_KEY_BYTES).equals(x)) {
        throw keyFormatError('OpenSSH Ed25519 private key is malformed');
      }
      jwk = { kty: 'OKP', crv: 'Ed25519', x: x.toString('base64url'), d: secret.subarray(0, ED25519_KEY_BYTES).toString('base64url') };
    } else if (type === SSH_KEY_TYPE.rsa) {
      const [n, e, d, iqmp, p, q] = [inner.mpint(), inner.mpint(), inner.mpint(), inner.mpint(), inner.mpint(), inner.mpint()];
      const [dValue, pValue, qValue] = [bigintOf(d), bigintOf(p), bigintOf(q)];
      if (pValue < 3n || qValue < 3n) throw keyFormatError('OpenSSH RSA private key is malformed');
      jwk = {
        kty: 'RSA',
        n: n.toString('base64url'),
        e: e.toString('base64url'),
        d: d.toString('base64url'),
        p: p.toString('base64url'),
        q: q.toString('base64url'),
        dp: base64urlOfBigint(dValue % (pValue - 1n)),
        dq: base64urlOfBigint(dValue % (qValue - 1n)),
        qi: iqmp.toString('base64url'),
      };
    } else {
      throw keyFormatError(`unsupported OpenSSH private key type ${JSON.stringify(type)}; use ed25519 or rsa`);
    }
    const embeddedComment = inner.string().toString('utf8');
    const padding = inner.rest();
    if (padding.some((byte, index) => byte !== index + 1)) throw keyFormatError('OpenSSH private key has bad padding');
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
    } catch (error) {
      throw keyFormatError('OpenSSH private key holds an invalid key', error);
    }
    const identity = identityFromPrivateKey(privateKey, comment !== '' ? comment : embeddedComment);
    if (!identity.publicIdentity.blob.equals(publicBlob)) throw keyFormatError('OpenSSH private key does not match its public half');
    const probe = Buffer.from('netplumb key consistency probe');
    if (!verifyTranscript(identity.publicIdentity, probe, signTranscript(identity, probe))) {
      throw keyFormatError('OpenSSH private key is inconsistent');
    }
    return identity;
  } finally {
    data.fill(0);
  }
}

/**
 * Reads a PEM private key (PKCS#8, or PKCS#1 for RSA) or an unencrypted OpenSSH private key. For OpenSSH keys an
 * empty `comment` means "use the comment stored in the key".
 */
export function parsePrivateKeyPem(pem: string, comment = ''): PrivateIdentity {
  checkComment(comment);
  if (pem.includes(OPENSSH_BEGIN)) return parseOpenSshPrivateKey(pem, comment);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ERR_MISSING_PASSPHRASE') throw keyFormatError('encrypted private keys are not supported', error);
    throw keyFormatError('not a PEM private key', error);
  }
  return identityFromPrivateKey(privateKey, comment);
}

export function signTranscript(id: PrivateIdentity, data: Buffer): Buffer {
  const algorithm = id.publicIdentity.algorithm;
  switch (algorithm) {
    case 'ed25519':
      return sign(null, data, id.privateKey);
    case 'rsa':
      return sign('sha256', data, {
        key: id.privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: RSA_PSS_SALT_BYTES,
      });
    default: {
      const unknown: never = algorithm;
      throw keyFormatError(`unsupported key algorithm ${String(unknown)}`);
    }
  }
}

/** False for any signature that does not verify, including malformed ones. */
export function verifyTranscript(id: PublicIdentity, data: Buffer, signature: Buffer): boolean {
  try {
    switch (id.algorithm) {
      case 'ed25519':
        return verify(null, data, id.key, signature);
      case 'rsa':
        return verify(
          'sha256',
          data,
          { key: id.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: RSA_PSS_SALT_BYTES },
          signature,
        );
      default:
        return false;
    }
  } catch {
    return false;
  }
}
