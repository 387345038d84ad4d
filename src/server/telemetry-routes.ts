// The storage server's admin API for telemetry and fault injection:
//
//   GET    /metrics                 Prometheus text (data path, presage_node_*, process)
//   GET    /v1/metrics/latest       the latest sample {ts, values}
//   GET    /v1/metrics/names        metric names with stored data
//   GET    /v1/metrics/history      ?metric=&from=&to=[&step=] per-minute roll-ups
//   GET    /v1/metrics/storage      bytes used, bytes per day, projected size at retention
//   POST   /v1/metrics/import       CSV body in our export format, or JSON {path, format, ...}
//   GET    /v1/segments/heat        per-segment access rates, hottest first
//   POST   /v1/faults               {profile, rampSeconds?, intensity?}     (--allow-faults only)
//   GET    /v1/faults                                                      (--allow-faults only)
//   DELETE /v1/faults[?profile=]                                           (--allow-faults only)

import path from 'node:path';
import fs from 'node:fs';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { backfill, importHistory, type HistorySpec } from '../telemetry/history-import.ts';
import { FAULT_PROFILES, FaultSpecError, PROFILE_INFO, type FaultInjector, type FaultProfile } from './faults.ts';
import { parseStep, parseTime, prometheusText, type ServerTelemetry } from './telemetry.ts';

/** At most this many points in one history answer (35 days per minute is 50 400). */
const MAX_POINTS = 200_000;
const DEFAULT_SPAN_MS = 3_600_000;

export interface TelemetryRoutesContext {
  telemetry: ServerTelemetry;
  /** Present only when the server runs with --allow-faults. */
  faults?: FaultInjector;
}

export function registerTelemetryRoutes(app: FastifyInstance, ctx: TelemetryRoutesContext): void {
  const t = ctx.telemetry;
  const bad = (reply: FastifyReply, err: unknown) => reply.code(400).send({ error: (err as Error).message ?? String(err) });

  app.get('/metrics', async (_req, reply) => {
    const text = await prometheusText(t.registry);
    return reply.header('content-type', t.registry.contentType).send(text);
  });

  app.get('/v1/metrics/latest', async () => t.latest());
  app.get('/v1/metrics/names', async () => t.store.metrics());
  app.get('/v1/metrics/storage', async () => t.storageReport());

  app.get<{ Querystring: Record<string, string | undefined> }>('/v1/metrics/history', async (req, reply) => {
    const q = req.query;
    let from: number;
    let to: number;
    let step: number | undefined;
    try {
      if (!q.metric) throw new Error('metric is required: /v1/metrics/history?metric=NAME[&from=..&to=..&step=..] (see /v1/metrics/names)');
      const now = Date.now();
      to = q.to ? parseTime(q.to, now) : now;
      from = q.from ? parseTime(q.from, now) : to - DEFAULT_SPAN_MS;
      if (!(from < to)) throw new Error(`from (${new Date(from).toISOString()}) must be before to (${new Date(to).toISOString()})`);
      step = q.step ? parseStep(q.step) : undefined;
      const points = (to - from) / (step ?? 60_000);
      if (points > MAX_POINTS) throw new Error(`that is ${Math.ceil(points)} points; at most ${MAX_POINTS}: use a larger step or a shorter range`);
    } catch (err) {
      return bad(reply, err);
    }
    if (!t.store.metrics().includes(q.metric)) return reply.code(404).send({ error: `no data for metric ${JSON.stringify(q.metric)} (see /v1/metrics/names)` });
    return { metric: q.metric, from, to, step: step ?? 60_000, points: t.store.query(q.metric, from, to, step) };
  });

  // CSV bodies (our export format) arrive as text; history files can be large.
  app.addContentTypeParser(['text/csv', 'text/plain'], { parseAs: 'string', bodyLimit: 512 * 1024 * 1024 }, (_req, body, done) => done(null, body));
  app.post<{ Body: unknown; Querystring: { shift?: string } }>('/v1/metrics/import', { bodyLimit: 512 * 1024 * 1024 }, async (req, reply) => {
    try {
      if (typeof req.body === 'string') {
        const shiftMs = req.query.shift ? Number(req.query.shift) : 0;
        if (!Number.isFinite(shiftMs)) throw new Error('shift must be a number of ms');
        return t.importCsv(req.body, shiftMs);
      }
      const b = (req.body ?? {}) as Record<string, unknown>;
      if (typeof b.path !== 'string' || !b.path) throw new Error('body must be CSV text (content-type text/csv) in our export format, or JSON {"path": FILE, "format": "own"|"perseus"|"backblaze", ...} (perseus: "host", optional "cluster" and "disk"; backblaze: "serial")');
      if (!path.isAbsolute(b.path)) throw new Error(`path must be absolute (a file on the server's machine), got ${JSON.stringify(b.path)}`);
      if (!fs.existsSync(b.path)) throw new Error(`no such file on the server: ${b.path}`);
      const format = (b.format ?? 'own') as string;
      let spec: HistorySpec;
      if (format === 'own') spec = { format: 'own', file: b.path };
      else if (format === 'perseus') {
        if (b.host === undefined) throw new Error('format perseus needs "host" (which host of the file is this server)');
        // "disk": which drive of the host this server is (its rows feed the fail-slow mode); default the host's lowest drive.
        if (b.disk !== undefined && !((typeof b.disk === 'string' || typeof b.disk === 'number') && /^\d+$/.test(String(b.disk)))) {
          throw new Error(`format perseus: "disk" must be a drive id of digits (as in the file), got ${JSON.stringify(b.disk)}`);
        }
        spec = {
          format: 'perseus', file: b.path, host: b.host as string,
          ...(typeof b.cluster === 'string' ? { cluster: b.cluster } : {}),
          ...(b.disk !== undefined ? { disk: String(b.disk) } : {}),
        };
      } else if (format === 'backblaze') {
        if (typeof b.serial !== 'string') throw new Error('format backblaze needs "serial" (which drive of the file is this server)');
        spec = { format: 'backblaze', file: b.path, serial: b.serial };
      } else throw new Error(`format must be own, perseus or backblaze (got ${JSON.stringify(format)})`);
      const shiftEndTo = b.shiftEndTo === undefined ? undefined : b.shiftEndTo === 'now' ? Date.now() : Number(b.shiftEndTo);
      if (shiftEndTo !== undefined && !Number.isFinite(shiftEndTo)) throw new Error('shiftEndTo must be "now" or ms since the epoch');
      if (b.days !== undefined) {
        const days = Number(b.days);
        if (!(days > 0 && days <= 3650)) throw new Error('days must be a number from 0 to 3650');
        return await backfill(t.store, spec, days, shiftEndTo);
      }
      if (shiftEndTo !== undefined) {
        // Move the whole file so its last point lands at shiftEndTo (like backfill, without a window).
        const scan = await importHistory(undefined, spec, { dryRun: true });
        const shift = scan.lastTs === undefined ? 0 : Math.floor(shiftEndTo / scan.resolutionMs) * scan.resolutionMs - scan.lastTs;
        return await t.importFile(spec, shift);
      }
      return await t.importFile(spec);
    } catch (err) {
      return bad(reply, err);
    }
  });

  app.get<{ Querystring: { limit?: string } }>('/v1/segments/heat', async (req, reply) => {
    const limit = req.query.limit === undefined ? undefined : Number(req.query.limit);
    if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) return reply.code(400).send({ error: 'limit must be a positive integer' });
    const all = t.segmentHeat();
    return { timeConstantSeconds: t.heat.tauMs / 1000, segments: limit ? all.slice(0, limit) : all };
  });

  // Fault injection: refused unless the server was started with --allow-faults.
  const refuse = (reply: FastifyReply) => reply.code(403).send({ error: 'fault injection is disabled on this server (start it with --allow-faults)' });
  app.get('/v1/faults', async (_req, reply) => {
    if (!ctx.faults) return refuse(reply);
    return {
      active: ctx.faults.status(), counters: ctx.faults.counters, pendingSectors: ctx.faults.pendingSectors(), heldBytes: ctx.faults.heldBytes,
      profiles: FAULT_PROFILES.map((p) => ({ profile: p, ...PROFILE_INFO[p] })),
    };
  });
  app.post('/v1/faults', async (req, reply) => {
    if (!ctx.faults) return refuse(reply);
    try {
      return reply.code(201).send(ctx.faults.set(req.body as never));
    } catch (err) {
      if (err instanceof FaultSpecError) return bad(reply, err);
      throw err;
    }
  });
  app.delete<{ Querystring: { profile?: string } }>('/v1/faults', async (req, reply) => {
    if (!ctx.faults) return refuse(reply);
    const p = req.query.profile;
    if (p !== undefined && !(FAULT_PROFILES as readonly string[]).includes(p)) return reply.code(400).send({ error: `unknown profile ${JSON.stringify(p)}; one of ${FAULT_PROFILES.join(', ')}` });
    return { cleared: ctx.faults.clear(p as FaultProfile | undefined) };
  });
}
