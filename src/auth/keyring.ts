// The keyring: every entity the cluster knows, with its role, its grants and the one-way
// verifiers of its secret (never the secret). It lives in the metadata store under its own
// prefix, outside the SMT's, so clients that follow the SMT never see it; the orchestrator and
// the servers each follow it with a KvReplica and check credentials against their local copy,
// with no round trip. A revoked entity stays listed (who, when) but authenticates nowhere, and
// every verifier drops its cached answers at the change.
//
// Writes (create, revoke) are compare-and-set transactions, so two orchestrators bootstrapping
// at once create one admin, and a name is never silently reused with a new key.

import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { KvStore } from '../metadata/kv.ts';
import { KvReplica, type KvSource } from '../metadata/kv-replica.ts';
import { AuthError, ENTITY_NAME, ROLES, parseBearerToken, type Role, type Verifier } from './credentials.ts';
import type { Identity } from './policy.ts';

export const AUTH_ROOT = '/presage-auth/';
export const ENTITIES = `${AUTH_ROOT}entities/`;
export const entityKey = (name: string) => `${ENTITIES}${name}`;

/** One entity as stored (JSON). Verifier fields are base64. */
export interface EntityRecord {
  name: string;
  role: Role;
  volumes?: string[];
  readOnly?: boolean;
  storedKey: string;
  serverKey: string;
  tokenHash: string;
  /** Ed25519 public key (base64), for what the entity signs. */
  signingKey?: string;
  createdAt: string;
  revokedAt?: string;
}

/** What listings show: everything but the verifiers. */
export type EntityView = Omit<EntityRecord, 'storedKey' | 'serverKey' | 'tokenHash' | 'signingKey'>;

export interface EntitySpec {
  name: string;
  role: Role;
  volumes?: string[];
  readOnly?: boolean;
}

export class KeyringConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringConflictError';
  }
}

/** Checks an entity spec from the API or CLI; throws a message fit for the user. */
export function checkSpec(spec: Partial<EntitySpec>): EntitySpec {
  if (typeof spec.name !== 'string' || !ENTITY_NAME.test(spec.name)) throw new Error(`invalid entity name ${JSON.stringify(spec.name)} (letters, digits, _ . @ -, at most 64)`);
  if (!ROLES.includes(spec.role as Role)) throw new Error(`invalid role ${JSON.stringify(spec.role)} (one of ${ROLES.join(', ')})`);
  if (spec.role !== 'client' && (spec.volumes !== undefined || spec.readOnly)) throw new Error('volumes and read-only apply to the client role only');
  if (spec.role === 'client') {
    if (!Array.isArray(spec.volumes) || spec.volumes.length === 0 || !spec.volumes.every((v) => typeof v === 'string' && v.length > 0 && v.length <= 256)) {
      throw new Error('a client needs at least one volume grant (a name, a prefix ending in *, or *)');
    }
  }
  return { name: spec.name, role: spec.role as Role, ...(spec.role === 'client' ? { volumes: spec.volumes, readOnly: spec.readOnly === true } : {}) };
}

export function viewOf(r: EntityRecord): EntityView {
  const { storedKey: _s, serverKey: _k, tokenHash: _t, signingKey: _p, ...view } = r;
  return view;
}

/** Adds an entity; refuses a name already in use (revoked names too: a key is never replaced in place). */
export async function createEntity(kv: KvStore, spec: EntitySpec, v: Verifier): Promise<EntityView> {
  const rec: EntityRecord = {
    ...checkSpec(spec),
    storedKey: v.storedKey.toString('base64'),
    serverKey: v.serverKey.toString('base64'),
    tokenHash: v.tokenHash.toString('base64'),
    ...(v.signingKey ? { signingKey: v.signingKey.toString('base64') } : {}),
    createdAt: new Date().toISOString(),
  };
  const r = await kv.txn({ compare: [{ key: entityKey(rec.name), modRevision: 0 }], put: [{ key: entityKey(rec.name), value: JSON.stringify(rec) }] });
  if (!r.succeeded) throw new KeyringConflictError(`entity ${rec.name} already exists (names are never reused; pick another)`);
  return viewOf(rec);
}

export async function revokeEntity(kv: KvStore, name: string): Promise<EntityView> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const cur = await kv.get(entityKey(name));
    if (!cur) throw new KeyringConflictError(`no entity ${name}`);
    const rec = JSON.parse(cur.value) as EntityRecord;
    if (rec.revokedAt) return viewOf(rec);
    const next = { ...rec, revokedAt: new Date().toISOString() };
    const r = await kv.txn({ compare: [{ key: cur.key, modRevision: cur.modRevision }], put: [{ key: cur.key, value: JSON.stringify(next) }] });
    if (r.succeeded) return viewOf(next);
  }
  throw new KeyringConflictError(`could not revoke ${name}: too much contention`);
}

interface Known {
  identity: Identity;
  verifier: Verifier;
}

export interface KeyringEvents {
  /** Something changed: connections and caches re-check their identities. */
  change: [];
}

/** A verifier's local copy of the keyring. */
export class Keyring extends EventEmitter<KeyringEvents> {
  readonly replica: KvReplica;
  private readonly known = new Map<string, Known>();
  private readonly records = new Map<string, EntityRecord>();
  /** Bearer tokens already checked (hashing on every request would be wasted work). */
  private readonly tokens = new Map<string, Identity>();
  private refreshing?: Promise<void>;

  constructor(source: KvSource, opts: { onError?: (err: unknown) => void; pollTimeoutMs?: number } = {}) {
    super();
    this.setMaxListeners(0);
    this.replica = new KvReplica(source, AUTH_ROOT, { pollTimeoutMs: opts.pollTimeoutMs ?? 20000, retryDelayMs: 500, onError: opts.onError });
    this.replica.on('reload', () => this.rebuild());
    this.replica.on('change', () => this.rebuild());
  }

  start(): Promise<void> {
    return this.replica.start();
  }

  stop(): Promise<void> {
    return this.replica.stop();
  }

  get size(): number {
    return this.records.size;
  }

  list(): EntityView[] {
    return [...this.records.values()].map(viewOf).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The identity and verifier of a live (not revoked) entity. */
  lookup(name: string): Known | undefined {
    return this.known.get(name);
  }

  /**
   * The public signing key of a live admin, or why `name` may not sign (for verifySignedJson):
   * only admins sign what servers install (model bundles).
   */
  trustedSigner(name: string): Buffer | string {
    const k = this.known.get(name);
    if (!k) return this.records.has(name) ? 'it was revoked' : 'no such entity';
    if (k.identity.role !== 'admin') return `its role is ${k.identity.role}, and only an admin signs models`;
    return k.verifier.signingKey ?? 'it has no signing key in the keyring (an entity created before signing existed: create a new one)';
  }

  /**
   * `lookup`, catching up with the store first when the name is not known yet: an entity created
   * a moment ago authenticates at once, wherever it connects. (Unknown names cost one refresh of
   * the copy; a flood of them shares the one in flight.)
   */
  async lookupFresh(name: string): Promise<Known | undefined> {
    const k = this.known.get(name);
    if (k || this.records.has(name)) return k;
    this.refreshing ??= this.replica.refresh().catch(() => {}).finally(() => { this.refreshing = undefined; });
    await this.refreshing;
    return this.known.get(name);
  }

  /** `verifyAuthorization`, catching up first when it names an entity not known yet. */
  async authorize(header: string | undefined): Promise<Identity | AuthError> {
    const first = this.verifyAuthorization(header);
    if (!(first instanceof AuthError) || !header) return first;
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const parsed = m ? parseBearerToken(m[1]) : undefined;
    if (!parsed || this.records.has(parsed.name)) return first;
    await this.lookupFresh(parsed.name);
    return this.verifyAuthorization(header);
  }

  /** True while `name` authenticates (a connection holding it re-checks after a change). */
  isLive(name: string): boolean {
    return this.known.has(name);
  }

  /** The identity behind an `Authorization` header value, or an AuthError saying why not. */
  verifyAuthorization(header: string | undefined): Identity | AuthError {
    if (!header) return new AuthError('authentication required: send Authorization: Bearer <token> (presage auth token prints one)', 'ERR_PRESAGE_UNAUTHENTICATED');
    const cached = this.tokens.get(header);
    if (cached) return cached;
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const parsed = m ? parseBearerToken(m[1]) : undefined;
    if (!parsed) return new AuthError('malformed Authorization header (expected Bearer presage1.<entity>.<key>)', 'ERR_PRESAGE_UNAUTHENTICATED');
    const k = this.known.get(parsed.name);
    if (!k || !crypto.timingSafeEqual(parsed.hash, k.verifier.tokenHash)) {
      return new AuthError(`authentication failed for ${parsed.name} (unknown or revoked entity, or wrong key)`, 'ERR_PRESAGE_UNAUTHENTICATED');
    }
    if (this.tokens.size > 10000) this.tokens.clear();
    this.tokens.set(header, k.identity);
    return k.identity;
  }

  private rebuild(): void {
    this.known.clear();
    this.records.clear();
    this.tokens.clear();
    for (const [key, value] of this.replica.entries()) {
      if (!key.startsWith(ENTITIES)) continue;
      let r: EntityRecord;
      try {
        r = JSON.parse(value) as EntityRecord;
      } catch {
        continue; // a record nobody can parse authenticates nobody
      }
      this.records.set(r.name, r);
      if (r.revokedAt) continue;
      this.known.set(r.name, {
        identity: { name: r.name, role: r.role, ...(r.role === 'client' ? { volumes: r.volumes ?? [], readOnly: r.readOnly === true } : {}) },
        verifier: {
          storedKey: Buffer.from(r.storedKey, 'base64'),
          serverKey: Buffer.from(r.serverKey, 'base64'),
          tokenHash: Buffer.from(r.tokenHash, 'base64'),
          ...(r.signingKey ? { signingKey: Buffer.from(r.signingKey, 'base64') } : {}),
        },
      });
    }
    this.emit('change');
  }
}
