// What the orchestrator knows about its servers' health: it polls every up server's admin API
// for its Failure Score, its per-segment heat and its peer sample, keeps a short
// score history for the dashboard, aggregates segment heat for migration priority, and computes
// each server's fail-slow reference. The reference is peerReference (src/prediction/online-features.ts,
// the definition the model was trained with): the pooled per-minute means over the fail-slow
// window (GET /v1/peer-sample) of the *other* servers of the server's peer group, never the
// server itself and never instantaneous samples.

import { adminBaseUrl } from '../common/cluster-tls.ts';
import { httpJson } from '../api/http.ts';
import type { FailureScoreReport } from '../api/types.ts';
import type { Logger } from '../common/log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import { peerStatsOf } from '../prediction/online-features.ts';

export interface SegmentHeat {
  segmentId: string;
  readsPerSec: number;
  writesPerSec: number;
  bytesPerSec: number;
}

export interface ScorePoint {
  t: number;
  score: number;
  mode: string;
}

export interface FleetStat {
  median: number;
  mad: number;
  n: number;
}

const HISTORY_POINTS = 2000;

export class FleetMonitor {
  readonly scores = new Map<string, FailureScoreReport>();
  readonly history = new Map<string, ScorePoint[]>();
  /** Per segment, summed over its replicas. */
  private heat = new Map<string, SegmentHeat>();
  /** Per server, accesses per second over the segments it holds (placement prefers the less loaded). */
  private load = new Map<string, number>();
  private peerSamples = new Map<string, Record<string, number[]>>();
  private peerGroups = new Map<string, string>();
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly view: ClusterView, private readonly log: Logger, readonly intervalMs = 5000) {}

  start(): void {
    this.stopped = false;
    const loop = async () => {
      if (this.stopped) return;
      await this.poll().catch((err) => this.log.warn({ err: (err as Error).message }, 'fleet poll failed'));
      if (!this.stopped) this.timer = setTimeout(loop, this.intervalMs);
    };
    this.timer = setTimeout(loop, 0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Called after each poll (the predictive drain policy decides then). */
  onPoll(cb: () => void): void {
    this.listeners.add(cb);
  }

  async poll(): Promise<void> {
    const servers = [...this.view.servers.values()].filter((s) => s.state === 'up');
    const heat = new Map<string, SegmentHeat>();
    const load = new Map<string, number>();
    await Promise.all(servers.map(async (s) => {
      const base = adminBaseUrl(s.adminAddr);
      const [score, segHeat, peer] = await Promise.all([
        httpJson<FailureScoreReport>(base, 'GET', '/v1/failure-score', undefined, 3000).catch(() => undefined),
        httpJson<{ segments: SegmentHeat[] }>(base, 'GET', '/v1/segments/heat?limit=100000', undefined, 3000).then((r) => r.segments, () => undefined),
        httpJson<{ group?: string; metrics: Record<string, number[]> }>(base, 'GET', '/v1/peer-sample', undefined, 3000).catch(() => undefined),
      ]);
      if (score && typeof score.score === 'number') {
        this.scores.set(s.id, score);
        const h = this.history.get(s.id) ?? [];
        h.push({ t: Date.parse(score.computedAt) || Date.now(), score: score.score, mode: score.mode });
        if (h.length > HISTORY_POINTS) h.splice(0, h.length - HISTORY_POINTS);
        this.history.set(s.id, h);
      }
      if (segHeat) load.set(s.id, segHeat.reduce((sum, x) => sum + x.readsPerSec + x.writesPerSec, 0));
      for (const x of segHeat ?? []) {
        const cur = heat.get(x.segmentId) ?? { segmentId: x.segmentId, readsPerSec: 0, writesPerSec: 0, bytesPerSec: 0 };
        cur.readsPerSec += x.readsPerSec;
        // A replicated write shows on every replica: count the primary's, not the sum.
        cur.writesPerSec = Math.max(cur.writesPerSec, x.writesPerSec);
        cur.bytesPerSec += x.bytesPerSec;
        heat.set(x.segmentId, cur);
      }
      if (peer?.metrics) {
        this.peerSamples.set(s.id, peer.metrics);
        this.peerGroups.set(s.id, typeof peer.group === 'string' && peer.group ? peer.group : DEFAULT_PEER_GROUP);
      } else this.peerSamples.delete(s.id);
    }));
    const up = new Set(servers.map((s) => s.id));
    for (const id of [...this.peerSamples.keys()]) if (!up.has(id)) {
      this.peerSamples.delete(id);
      this.peerGroups.delete(id);
    }
    for (const id of [...this.scores.keys()]) if (!this.view.servers.has(id)) this.scores.delete(id);
    this.heat = heat;
    this.load = load;
    for (const cb of this.listeners) cb();
  }

  /** Accesses per second of a segment (reads + writes), 0 when unknown. */
  accessRate(segmentId: string): number {
    const h = this.heat.get(segmentId);
    return h ? h.readsPerSec + h.writesPerSec : 0;
  }

  /** Accesses per second a server serves (0 when unknown). */
  serverLoad(serverId: string): number {
    return this.load.get(serverId) ?? 0;
  }

  segmentHeat(limit = 100000): SegmentHeat[] {
    return [...this.heat.values()].sort((a, b) => b.readsPerSec + b.writesPerSec - (a.readsPerSec + a.writesPerSec)).slice(0, limit);
  }

  /**
   * The fail-slow reference of each peer-compared metric for one server: peerReference (the
   * definition training uses) over the per-minute means of the *other* up servers of its peer
   * group. A metric with fewer than MIN_PEERS other servers reporting it is left out, and the
   * server's fail-slow mode then has no input. Without `exclude` every server of the group is
   * pooled (the dashboard's view of the fleet).
   */
  fleetStats(exclude?: string, group?: string): Record<string, FleetStat> {
    const g = group ?? (exclude ? this.peerGroups.get(exclude) : undefined) ?? DEFAULT_PEER_GROUP;
    const samples: Record<string, number[]>[] = [];
    for (const [id, m] of this.peerSamples) {
      if (id === exclude || (this.peerGroups.get(id) ?? DEFAULT_PEER_GROUP) !== g) continue;
      samples.push(m);
    }
    return pooledStats(samples);
  }
}

/** The peer group of a server that names none: the whole fleet. */
export const DEFAULT_PEER_GROUP = 'fleet';

/** Per-metric references over these servers' peer samples (peerStatsOf, the shared definition). */
export const pooledStats = (samples: Record<string, number[]>[]): Record<string, FleetStat> => peerStatsOf(samples);
