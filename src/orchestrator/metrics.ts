// The orchestrator's /metrics: prom-client's default process metrics plus cluster gauges
// computed at scrape time from the orchestrator's own view (never cached, so a scrape never
// shows a state older than the metadata the orchestrator already has).

import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { ClusterStatus } from '../api/types.ts';

/** What the gauges read: Orchestrator.status(). */
export interface ClusterStatusSource {
  status(): ClusterStatus;
}

export function createOrchestratorMetrics(source: ClusterStatusSource, registry: Registry = new Registry()): Registry {
  collectDefaultMetrics({ register: registry });
  // One status() per scrape: every gauge's collect() reads the same snapshot.
  let snap: { at: number; s: ClusterStatus } | undefined;
  const status = () => {
    const now = Date.now();
    if (!snap || now - snap.at > 200) snap = { at: now, s: source.status() };
    return snap.s;
  };
  new Gauge({
    name: 'presage_orchestrator_servers', help: 'Registered storage servers by state (up, down, draining).', labelNames: ['state'] as const, registers: [registry],
    collect() {
      const s = status();
      const up = s.servers.filter((x) => x.state === 'up').length;
      this.set({ state: 'up' }, up);
      this.set({ state: 'down' }, s.servers.length - up);
      this.set({ state: 'draining' }, s.servers.filter((x) => x.draining).length);
    },
  });
  new Gauge({
    name: 'presage_orchestrator_volumes', help: 'Volumes.', registers: [registry],
    collect() { this.set(status().volumes.length); },
  });
  new Gauge({
    name: 'presage_orchestrator_segments', help: 'Segments in the SMT.', registers: [registry],
    collect() { this.set(status().segments.total); },
  });
  new Gauge({
    name: 'presage_orchestrator_degraded_segments', help: 'Segments with fewer live replicas than their volume asks for.', registers: [registry],
    collect() { this.set(status().segments.degraded); },
  });
  new Gauge({
    name: 'presage_orchestrator_operators_in_flight', help: 'Data-movement operators (repair, migrate) admitted and not finished, by kind and state.',
    labelNames: ['kind', 'state'] as const, registers: [registry],
    collect() {
      this.reset();
      // Zero series for the common combinations, so dashboards show 0 rather than "no data".
      for (const kind of ['repair', 'migrate']) this.set({ kind, state: 'pending' }, 0);
      const counts = new Map<string, { kind: string; state: string; n: number }>();
      for (const op of status().operators) {
        const k = `${op.kind}\0${op.state}`;
        const c = counts.get(k) ?? { kind: op.kind, state: op.state, n: 0 };
        c.n++;
        counts.set(k, c);
      }
      for (const c of counts.values()) this.set({ kind: c.kind, state: c.state }, c.n);
    },
  });
  new Gauge({
    name: 'presage_orchestrator_metadata_revision', help: 'Revision of the metadata (SMT) the orchestrator has applied.', registers: [registry],
    collect() { this.set(status().revision); },
  });
  new Gauge({
    name: 'presage_orchestrator_server_segments', help: 'Segment replicas assigned to each server.', labelNames: ['server'] as const, registers: [registry],
    collect() {
      this.reset();
      for (const s of status().servers) this.set({ server: s.id }, s.segments);
    },
  });
  new Gauge({
    name: 'presage_orchestrator_server_heartbeat_age_seconds', help: 'Seconds since each server\'s last heartbeat (absent before the first one).', labelNames: ['server'] as const, registers: [registry],
    collect() {
      this.reset();
      for (const s of status().servers) if (s.lastHeartbeatAgoMs !== undefined) this.set({ server: s.id }, s.lastHeartbeatAgoMs / 1000);
    },
  });
  return registry;
}

/** GET /metrics on the orchestrator's HTTP server. */
export function registerOrchestratorMetrics(app: FastifyInstance, source: ClusterStatusSource): Registry {
  const registry = createOrchestratorMetrics(source);
  app.get('/metrics', async (_req, reply) => reply.header('content-type', registry.contentType).send((await registry.metrics()).replace(/ Nan$/gm, ' NaN')));
  // (prom-client writes NaN as "Nan", which strict parsers reject.)
  return registry;
}
