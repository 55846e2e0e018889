// The parts of recipes across machines this daemon holds (PROTOCOL.md 7.8), by run id, and the one-time keys minted
// for the edges they read. An edge key lives only in memory and only as long as its part: good once, for that edge
// of that run, spent by the handshake that uses it, and gone with the part whether it was used or not, so nothing
// of a run outlives it. (Under -stdio each connection is a daemon process of its own: parts are not shared there.)

import { BadRequestError, KeyUsedUpError } from '../protocol/errors.js';
import { encodePrivateKeyPem, formatPublicKeyLine, generateIdentity, type PublicIdentity } from '../protocol/keys.js';
import type { MintedKey } from '../protocol/session.js';
import type { PartRunner } from './part-runner.js';

/** What an edge key lets its holder do: deliver that one edge into that part. */
export interface EdgeGrant {
  run: string;
  edge: number;
  /** The part it was minted for: a later part of the same run id is not it. */
  runner: PartRunner;
  /** The key's fingerprint, for the logs. */
  fingerprint: string;
  expiresAt: number;
}

interface HeldPart {
  runner: PartRunner;
  /** The fingerprints of the keys minted for its edges, used or not. */
  keys: Set<string>;
}

export class PartRegistry {
  private readonly parts = new Map<string, HeldPart>();
  private readonly keys = new Map<string, EdgeGrant>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A part readied for a controller; one part of a run per daemon. */
  hold(runner: PartRunner): void {
    if (this.parts.has(runner.runId)) throw new BadRequestError(`a part of run ${runner.runId} is held here already: one part per machine`);
    this.parts.set(runner.runId, { runner, keys: new Set() });
  }

  /** The part has ended (or its controller left): it and every key minted for it are gone. */
  release(runner: PartRunner): void {
    const held = this.parts.get(runner.runId);
    if (held?.runner !== runner) return;
    for (const fingerprint of held.keys) this.keys.delete(fingerprint);
    this.parts.delete(runner.runId);
  }

  part(run: string): PartRunner | undefined {
    return this.parts.get(run)?.runner;
  }

  /** A key for edge `edge` of the part `runner` holds, which must read it here. */
  mintEdgeKey(runner: PartRunner, edge: number, lifetimeSeconds: number, hostKey: PublicIdentity, user: string): MintedKey {
    const held = this.parts.get(runner.runId);
    if (held?.runner !== runner) throw new BadRequestError('an edge key is minted for a part this connection holds');
    if (!runner.reads(edge)) throw new BadRequestError(`edge ${edge} of run ${runner.runId} is not read on this machine`);
    if (runner.arrived(edge)) throw new BadRequestError(`edge ${edge} of run ${runner.runId} has arrived already`);
    // One good key per edge at a time: a new one replaces the one before, so minting in a loop holds nothing.
    for (const fingerprint of held.keys) {
      if (this.keys.get(fingerprint)?.edge !== edge) continue;
      this.keys.delete(fingerprint);
      held.keys.delete(fingerprint);
    }
    const identity = generateIdentity('ed25519', 'netplumb edge key');
    const fingerprint = identity.publicIdentity.fingerprint;
    const expiresAt = this.now() + lifetimeSeconds * 1000;
    this.keys.set(fingerprint, { run: runner.runId, edge, runner, fingerprint, expiresAt });
    held.keys.add(fingerprint);
    return { privateKeyPem: encodePrivateKeyPem(identity), fingerprint, expiresAt, hostKey: formatPublicKeyLine(hostKey), user };
  }

  /**
   * Spends the edge key a client authenticated with: its grant, once; undefined when it is no edge key of this
   * daemon. Throws NP_NOT_AUTHORIZED for one that has expired.
   */
  spend(identity: PublicIdentity): EdgeGrant | undefined {
    const grant = this.keys.get(identity.fingerprint);
    if (grant === undefined) return undefined;
    this.keys.delete(identity.fingerprint);
    if (grant.expiresAt <= this.now()) throw new KeyUsedUpError('edge key expired');
    return grant;
  }

  /** How many parts are held: for tests and the logs. */
  get size(): number {
    return this.parts.size;
  }
}
