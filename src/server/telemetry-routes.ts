// The storage server's admin API for telemetry and fault injection:
//
//   GET    /metrics                 Prometheus text (data path, presage_node_*, process)
//   GET    /v1/metrics/latest       the latest sample {ts, values}
//   GET    /v1/metrics/names        metric names with stored data
//   GET    /v1/metrics/history      ?metric=&from=&to=[&step=] per-minute roll-ups
//   GET    /v1/metrics/storage      bytes used, bytes per day, projected size at retention
//   POST   /v1/metrics/import       CSV body in our export format, or JSON {path, format, ...}
//                                   for a file in the --import-dir folder (see importFilePath)
//   GET    /v1/segments/heat        per-segment access rates, hottest first
//   POST   /v1/faults               {profile, rampSeconds?, intensity?}     (--allow-faults only)
//   GET    /v1/faults                                                      (--allow-faults only)
//   DELETE /v1/faults[?profile=]                                           (--allow-faults only)
//
// A history import reads a file on this machine only from the folder the operator named
// (--import-dir), never from a path of the caller's choosing: the caller holds an operator key
// for the cluster, not a login on this machine. A path leading out of the folder (`..`, an
// absolute path elsewhere, a symlink inside pointing out) is refused before anything is opened,
// and errors about a file's content name the file and line, never quote it (history-import.ts).

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
  /** The folder path imports may read (--import-dir); unset: body imports only. */
  importDir?: string;
}

/** A path import refused (stable code): 403 outside the folder or without one, 404 no such file, 400 not a file. */
export class ImportPathError extends Error {
  readonly code = 'ERR_PRESAGE_IMPORT_PATH';
  constructor(message: string, readonly status: 400 | 403 | 404) {
    super(message);
  }
}

const inside = (root: string, p: string) => {
  const rel = path.relative(root, p);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
};

/**
 * The real path of `given` (relative to the import folder, or absolute within it), or an
 * ImportPathError. A path that does not lexically lie in the folder is refused before the file
 * system is asked anything (so refusals say nothing about what exists elsewhere); then symlinks
 * are resolved and the real path must still lie in the folder's real path. The caller opens the
 * real path, so a symlink of the given path swapped after the check cannot lead out (only
 * replacing a directory on the real path could, which takes write access to the folder).
 */
export function importFilePath(importDir: string | undefined, given: string): string {
  if (!importDir) {
    throw new ImportPathError('this server imports history from a file only with --import-dir: send the data in the request body instead (content-type text/csv, our export format), or start the server with --import-dir DIR and put the file there', 403);
  }
  if (given.includes('\0')) throw new ImportPathError('path must not contain NUL characters', 400);
  const outside = () => new ImportPathError(`path ${JSON.stringify(given)} is outside the import folder ${importDir}: give a path relative to it (or absolute inside it) that does not lead out of it, symlinks included`, 403);
  const root = fs.realpathSync(importDir);
  const lexical = path.resolve(root, given);
  if (!inside(root, lexical) && !inside(path.resolve(importDir), path.resolve(importDir, given))) throw outside();
  let real: string;
  try {
    real = fs.realpathSync(lexical);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ImportPathError(`no such file in the import folder: ${given}`, 404);
    throw new ImportPathError(`cannot open ${given} in the import folder (${(err as NodeJS.ErrnoException).code ?? 'error'})`, 400);
  }
  if (!inside(root, real)) throw outside();
  if (!fs.statSync(real).isFile()) throw new ImportPathError(`${given} in the import folder is not a regular file`, 400);
  return real;
}

export function registerTelemetryRoutes(app: FastifyInstance, ctx: TelemetryRoutesContext): void {
  const t = ctx.telemetry;
  if (ctx.importDir !== undefined) {
    // At start, so a mistyped --import-dir stops the server instead of failing every import.
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(ctx.importDir);
    } catch {
      // reported below
    }
    if (!st?.isDirectory()) throw new Error(`--import-dir ${ctx.importDir} is not a directory`);
  }
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
      if (typeof b.path !== 'string' || !b.path) throw new Error('body must be CSV text (content-type text/csv) in our export format, or JSON {"path": FILE, "format": "own"|"perseus"|"backblaze", ...} for a file in the server\'s --import-dir (perseus: "host", optional "cluster" and "disk"; backblaze: "serial")');
      const file = importFilePath(ctx.importDir, b.path);
      const format = (b.format ?? 'own') as string;
      let spec: HistorySpec;
      if (format === 'own') spec = { format: 'own', file };
      else if (format === 'perseus') {
        if (b.host === undefined) throw new Error('format perseus needs "host" (which host of the file is this server)');
        // "disk": which drive of the host this server is (its rows feed the fail-slow mode); default the host's lowest drive.
        if (b.disk !== undefined && !((typeof b.disk === 'string' || typeof b.disk === 'number') && /^\d+$/.test(String(b.disk)))) {
          throw new Error(`format perseus: "disk" must be a drive id of digits (as in the file), got ${JSON.stringify(b.disk)}`);
        }
        spec = {
          format: 'perseus', file, host: b.host as string,
          ...(typeof b.cluster === 'string' ? { cluster: b.cluster } : {}),
          ...(b.disk !== undefined ? { disk: String(b.disk) } : {}),
        };
      } else if (format === 'backblaze') {
        if (typeof b.serial !== 'string') throw new Error('format backblaze needs "serial" (which drive of the file is this server)');
        spec = { format: 'backblaze', file, serial: b.serial };
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
      if (err instanceof ImportPathError) return reply.code(err.status).send({ error: err.message, code: err.code });
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
