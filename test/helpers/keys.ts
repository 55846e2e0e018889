// Throwaway identities for protocol tests, made at test time and kept in memory only (nothing is written to
// disk), plus the trust callbacks SecureConnection wants: a client that pins one host key, a daemon that
// authorizes a fixed set of client keys. RSA keys are slow to make, so each (algorithm, name) is made once.

import type { ClientTrust, ServerTrust } from '../../protocol/connection.js';
import { HostKeyUnknownError, NotAuthorizedError } from '../../protocol/errors.js';
import { generateIdentity, sameIdentity, type KeyAlgorithm, type PrivateIdentity, type PublicIdentity } from '../../protocol/keys.js';

const made = new Map<string, PrivateIdentity>();

/** The identity called name of the given algorithm, made on first use and reused by later calls. */
export function throwawayIdentity(algorithm: KeyAlgorithm = 'ed25519', name = 'default'): PrivateIdentity {
  const key = `${algorithm}/${name}`;
  let identity = made.get(key);
  if (identity === undefined) {
    identity = generateIdentity(algorithm, `throwaway ${algorithm} ${name}`);
    made.set(key, identity);
  }
  return identity;
}

/** A client that accepts exactly the host key `host` and refuses any other with NP_HOST_KEY_UNKNOWN. */
export function pinnedClientTrust(identity: PrivateIdentity, host: PublicIdentity): ClientTrust {
  return {
    identity,
    verifyHostKey(hostKey) {
      if (!sameIdentity(hostKey, host)) throw new HostKeyUnknownError(`host key ${hostKey.fingerprint} is not pinned`);
    },
  };
}

/** A daemon that authorizes only the listed client keys and refuses others with NP_NOT_AUTHORIZED. */
export function allowListServerTrust(hostKey: PrivateIdentity, clients: readonly PublicIdentity[]): ServerTrust {
  return {
    hostKey,
    authorize(client) {
      if (!clients.some((allowed) => sameIdentity(allowed, client))) {
        throw new NotAuthorizedError(`client key ${client.fingerprint} is not authorized`);
      }
    },
  };
}
