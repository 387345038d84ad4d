// Authentication and authorisation of an HTTP API (the orchestrator's REST API and dashboard, a
// server's admin API): every request but the open routes of auth/policy.ts's table carries a
// bearer token, checked against the local keyring copy (no round trip), and needs the route's
// capability. 401 for no or a bad credential, 403 for a role that may not; both with a stable
// code and a message that says what to do. The identity is kept for the route (audit, grants).

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AuthError } from './credentials.ts';
import type { Keyring } from './keyring.ts';
import { can, httpCapability, type Identity } from './policy.ts';

const identities = new WeakMap<FastifyRequest, Identity>();

/** The authenticated identity of a request (undefined on an open route). */
export function identityOf(req: FastifyRequest): Identity | undefined {
  return identities.get(req);
}

export function requireAuthentication(app: FastifyInstance, keyring: Keyring): void {
  app.addHook('onRequest', async (req, reply) => {
    const cap = httpCapability(req.method, req.url);
    if (cap === null) return;
    const id = await keyring.authorize(req.headers.authorization);
    if (id instanceof AuthError) {
      return reply.code(401).header('www-authenticate', 'Bearer realm="presage"').send({ error: id.message, code: id.code });
    }
    if (!can(id, cap)) {
      const path = req.url.split('?')[0];
      return reply.code(403).send({ error: `${id.name} (role ${id.role}) may not ${req.method} ${path} (needs the ${cap} capability)`, code: 'ERR_PRESAGE_FORBIDDEN' });
    }
    identities.set(req, id);
  });
}
