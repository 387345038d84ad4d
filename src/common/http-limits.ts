// Request body limits of the HTTP APIs (the orchestrator's and a storage server's admin API).
// A control-plane request is a small JSON document: the default limit is 1 MiB, so that no
// single request makes a process buffer and parse megabytes; the few routes that take files
// (a model bundle, a telemetry history) set their own, larger limit on the route. A body over
// its route's limit is refused before it is read, with 413 and a stable code
// (ERR_PRESAGE_BODY_TOO_LARGE) in the JSON error shape every other refusal has ({error, code}),
// not fastify's generic "Payload Too Large".

import type { FastifyInstance } from 'fastify';
import { formatBytes } from './size.ts';

/** The default body limit of the control-plane APIs. */
export const CONTROL_BODY_LIMIT = 1024 * 1024;

export const BODY_TOO_LARGE = 'ERR_PRESAGE_BODY_TOO_LARGE';

/**
 * Answers an over-limit body with 413 {error, code}, naming the route and its limit; every other
 * error goes on to fastify's default handler unchanged (rethrown: the parent handler takes it).
 */
export function explainBodyLimits(app: FastifyInstance, defaultLimit = CONTROL_BODY_LIMIT): void {
  app.setErrorHandler((err: Error & { code?: string }, req, reply) => {
    if (err.code !== 'FST_ERR_CTP_BODY_TOO_LARGE') throw err;
    const limit = req.routeOptions?.bodyLimit ?? defaultLimit;
    const route = req.routeOptions?.url ?? req.url.split('?')[0];
    return reply.code(413).send({
      error: `the request body is larger than the ${formatBytes(limit)} that ${req.method} ${route} accepts`,
      code: BODY_TOO_LARGE,
    });
  });
}
