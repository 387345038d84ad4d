// The orchestrator's side of authentication: bootstrapping the keyring on a cluster's first
// start, and the REST API that manages it (`presage auth …`).
//
// Bootstrap (Ceph's bootstrap keyring, etcd's root user): a keyring with no entity gets an
// `admin`. Its secret is the process's own credential when it has one (tests and scripts that
// bring their own key), else a new one written to `<dir>/admin.key` (0600). The create is a
// compare-and-set, so two orchestrators starting at once on one etcd make one admin; the loser
// writes no key file. The orchestrator then acts as that admin unless given another identity.
//
// Creating an entity sends only its verifier: `presage auth create` makes the secret where the
// key file is written, and the secret never reaches the orchestrator or the metadata store.

import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../common/log.ts';
import { loadKeyFile, newSecret, processCredential, verifierOf, writeKeyFile, type Credential, type Verifier } from '../auth/credentials.ts';
import { identityOf } from '../auth/http-auth.ts';
import { KeyringConflictError, checkSpec, createEntity, revokeEntity, type EntitySpec, type Keyring } from '../auth/keyring.ts';
import type { KvStore } from '../metadata/kv.ts';
import { NotFoundError, type MetadataWriter } from './metadata-writer.ts';

export const ADMIN_ENTITY = 'admin';

/** Makes sure the keyring has an admin; returns the credential this orchestrator acts as. */
export async function bootstrapKeyring(kv: KvStore, keyring: Keyring, dir: string, log: Logger, given?: Credential): Promise<Credential> {
  const file = path.join(dir, 'admin.key');
  if (keyring.size === 0) {
    const own = given ?? processCredential();
    const cred: Credential = own ?? { name: ADMIN_ENTITY, secret: newSecret() };
    try {
      await createEntity(kv, { name: cred.name, role: 'admin' }, verifierOf(cred.secret));
      await keyring.replica.refresh();
      if (!own) {
        writeKeyFile(file, cred, 'admin');
        log.info({ entity: cred.name, keyFile: file }, 'bootstrapped the keyring: admin key written');
      } else {
        log.info({ entity: cred.name }, 'bootstrapped the keyring with this process\'s credential as admin');
      }
    } catch (err) {
      if (!(err instanceof KeyringConflictError)) throw err;
      await keyring.replica.refresh(); // another orchestrator bootstrapped first
    }
  }
  const cred = given ?? processCredential() ?? (fs.existsSync(file) ? loadKeyFile(file) : undefined);
  if (!cred) {
    throw new Error(`this orchestrator has no credential and ${file} does not exist (another orchestrator bootstrapped the keyring): start it with --key-file and an admin key`);
  }
  const known = keyring.lookup(cred.name);
  if (!known || known.identity.role !== 'admin') {
    throw new Error(`the orchestrator's credential ${cred.name} is not a live admin in the keyring; start it with --key-file and an admin key`);
  }
  return cred;
}

interface CreateBody extends Partial<EntitySpec> {
  verifier?: { storedKey?: string; serverKey?: string; tokenHash?: string; signingKey?: string };
}

function verifierFrom(body: CreateBody): Verifier {
  const v = body.verifier ?? {};
  const b = (x: unknown) => (typeof x === 'string' ? Buffer.from(x, 'base64') : Buffer.alloc(0));
  const out: Verifier = { storedKey: b(v.storedKey), serverKey: b(v.serverKey), tokenHash: b(v.tokenHash) };
  if (out.storedKey.length !== 32 || out.serverKey.length !== 32 || out.tokenHash.length !== 32) {
    throw new Error('verifier must hold storedKey, serverKey and tokenHash (32 bytes each, base64); presage auth create makes them');
  }
  if (v.signingKey !== undefined) {
    out.signingKey = b(v.signingKey);
    if (out.signingKey.length !== 32) throw new Error('verifier.signingKey must be an Ed25519 public key (32 bytes, base64)');
  }
  return out;
}

export function registerAuthRoutes(app: FastifyInstance, kv: KvStore, keyring: Keyring, writer: MetadataWriter): void {
  app.get('/v1/auth/whoami', async (req) => identityOf(req));
  app.get('/v1/auth/entities', async () => keyring.list());
  app.get<{ Params: { name: string } }>('/v1/auth/entities/:name', async (req, reply) => {
    const e = keyring.list().find((x) => x.name === req.params.name);
    return e ?? reply.code(404).send({ error: `no entity ${req.params.name}` });
  });
  app.post<{ Body: CreateBody }>('/v1/auth/entities', async (req, reply) => {
    let spec: EntitySpec;
    let verifier: Verifier;
    try {
      spec = checkSpec(req.body ?? {});
      verifier = verifierFrom(req.body ?? {});
    } catch (err) {
      return reply.code(400).send({ error: (err as Error).message });
    }
    try {
      const view = await createEntity(kv, spec, verifier);
      await keyring.replica.refresh();
      return reply.code(201).send(view);
    } catch (err) {
      if (err instanceof KeyringConflictError) return reply.code(409).send({ error: err.message });
      throw err;
    }
  });
  app.delete<{ Params: { name: string } }>('/v1/auth/entities/:name', async (req, reply) => {
    if (req.params.name === identityOf(req)?.name) return reply.code(409).send({ error: `${req.params.name} cannot revoke itself (use another admin)` });
    try {
      const view = await revokeEntity(kv, req.params.name);
      await keyring.replica.refresh();
      return view;
    } catch (err) {
      if (err instanceof KeyringConflictError) return reply.code(404).send({ error: err.message });
      throw err;
    }
  });
  app.delete<{ Params: { id: string } }>('/v1/servers/:id/binding', async (req, reply) => {
    try {
      return await writer.rebindServer(req.params.id);
    } catch (err) {
      if (err instanceof NotFoundError) return reply.code(404).send({ error: err.message });
      throw err;
    }
  });
}
