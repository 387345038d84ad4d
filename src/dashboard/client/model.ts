// The dashboard's data layer: turns one poll's raw API answers into what the views draw.
// Pure and DOM-free so it can be measured at scale (1,000 servers × 100,000 segments) and
// so that every view works from aggregates, never from one object per segment.

import type { ClusterStatus, FailureScoreReport, SegmentView, ServerStatus } from '../../api/types.ts';
import type { OperatorEvent } from '../../orchestrator/operator-controller.ts';
import type { OperatorView } from '../../orchestrator/operators.ts';

/** One segment's access rates as served by `GET /v1/segments/heat`. */
export interface SegmentHeat {
  segmentId: string;
  readsPerSec: number;
  writesPerSec: number;
  bytesPerSec: number;
}

/** Everything one poll fetched. `null` means "this endpoint is not available (yet)". */
export interface Snapshot {
  at: number;
  status: ClusterStatus;
  /** Every SMT entry of every volume (may be older than `status` on big clusters). */
  segments: SegmentView[] | null;
  heat: SegmentHeat[] | null;
  scores: FailureScoreReport[] | null;
  events: OperatorEvent[];
}

export interface ServerRow {
  id: string;
  state: ServerStatus['state'];
  draining: boolean;
  drainReason?: string;
  zone?: string;
  segments: number;
  primaries: number;
  /** Segments this server is joining (a copy is on its way in). */
  joining: number;
  assignedBytes: number;
  capacityBytes: number;
  usedBytes?: number;
  heartbeatAgoMs?: number;
  /** Client traffic of the segments it is primary of. */
  bytesPerSec: number;
  opsPerSec: number;
  score?: FailureScoreReport;
}

/** Servers × volumes placement counts, row-major (`servers.length` rows). */
export interface PlacementMatrix {
  servers: string[];
  volumes: string[];
  counts: Uint32Array;
  primaries: Uint32Array;
  maxCount: number;
}

export interface HotSegment extends SegmentHeat {
  replicas: string[];
}

export type ScoresState = 'unavailable' | 'empty' | 'ok';

export interface DashboardModel {
  at: number;
  revision: number;
  rows: ServerRow[];
  matrix: PlacementMatrix;
  hottest: HotSegment[];
  /** Data movement in flight: copying first, then by progress. */
  operators: OperatorView[];
  /** Decision log, latest first (capped). */
  events: OperatorEvent[];
  totals: {
    servers: number;
    up: number;
    down: number;
    draining: number;
    volumes: number;
    segments: number;
    degraded: number;
    atRisk: number;
    bytesPerSec: number;
  };
  scoresState: ScoresState;
  heatAvailable: boolean;
  /** Segment id → entry, for the placement lookup (shared, not copied). */
  segmentIndex: Map<string, SegmentView>;
}

export const HOTTEST = 12;
export const MAX_EVENTS = 200;

const volumeOf = (segmentId: string) => segmentId.slice(0, segmentId.lastIndexOf('/'));

export function buildModel(s: Snapshot): DashboardModel {
  const servers = s.status.servers;
  const serverIdx = new Map<string, number>();
  servers.forEach((srv, i) => serverIdx.set(srv.id, i));
  const volumes = s.status.volumes.map((v) => v.name);
  const volumeIdx = new Map<string, number>();
  volumes.forEach((v, i) => volumeIdx.set(v, i));

  const nS = servers.length;
  const nV = volumes.length;
  const { counts, primaries, joining, segmentIndex, maxCount } = placementOf(s.segments, servers.map((x) => x.id), serverIdx, volumes, volumeIdx);

  // Heat: client I/O is served by the primary, so a segment's traffic is charged to it.
  const bytes = new Float64Array(nS);
  const ops = new Float64Array(nS);
  const hottest: HotSegment[] = [];
  let totalBytes = 0;
  if (s.heat) {
    for (const h of s.heat) {
      totalBytes += h.bytesPerSec;
      const seg = segmentIndex.get(h.segmentId);
      const p = seg ? serverIdx.get(seg.replicas[0]) : undefined;
      if (p !== undefined) {
        bytes[p] += h.bytesPerSec;
        ops[p] += h.readsPerSec + h.writesPerSec;
      }
      // Bounded insertion: O(n·k) with k tiny beats sorting 100k entries.
      if (hottest.length < HOTTEST || hotter(h, hottest[hottest.length - 1])) {
        const item: HotSegment = { ...h, replicas: seg?.replicas ?? [] };
        let i = hottest.length;
        hottest.push(item);
        while (i > 0 && hotter(item, hottest[i - 1])) {
          hottest[i] = hottest[i - 1];
          i--;
        }
        hottest[i] = item;
        if (hottest.length > HOTTEST) hottest.pop();
      }
    }
  }

  const scoreOf = new Map<string, FailureScoreReport>();
  if (s.scores) for (const r of s.scores) scoreOf.set(r.serverId, r);

  const rows: ServerRow[] = servers.map((srv, i) => ({
    id: srv.id,
    state: srv.state,
    draining: !!srv.draining,
    drainReason: srv.drainReason,
    zone: srv.zone,
    segments: srv.segments,
    primaries: srv.primaries,
    joining: joining[i],
    assignedBytes: srv.assignedBytes,
    capacityBytes: srv.capacityBytes,
    usedBytes: srv.usedBytes,
    heartbeatAgoMs: srv.lastHeartbeatAgoMs,
    bytesPerSec: bytes[i],
    opsPerSec: ops[i],
    score: scoreOf.get(srv.id),
  }));

  const totals = { servers: nS, up: 0, down: 0, draining: 0, volumes: nV, segments: s.status.segments.total, degraded: s.status.segments.degraded, atRisk: 0, bytesPerSec: totalBytes };
  for (const r of rows) {
    if (r.state === 'up') totals.up++;
    else totals.down++;
    if (r.draining) totals.draining++;
    if (r.score && r.score.level !== 'healthy') totals.atRisk++;
  }

  const stateRank = { copying: 0, committing: 1, pending: 2 } as const;
  const operators = [...s.status.operators].sort((a, b) =>
    stateRank[a.state] - stateRank[b.state] || fraction(b) - fraction(a) || a.segmentId.localeCompare(b.segmentId));

  const events: OperatorEvent[] = [];
  for (let i = s.events.length - 1; i >= 0 && events.length < MAX_EVENTS; i--) events.push(s.events[i]);

  return {
    at: s.at,
    revision: s.status.revision,
    rows,
    matrix: { servers: servers.map((x) => x.id), volumes, counts, primaries, maxCount },
    hottest,
    operators,
    events,
    totals,
    scoresState: s.scores === null ? 'unavailable' : s.scores.length === 0 ? 'empty' : 'ok',
    heatAvailable: s.heat !== null,
    segmentIndex,
  };
}

interface Placement {
  counts: Uint32Array;
  primaries: Uint32Array;
  joining: Uint32Array;
  segmentIndex: Map<string, SegmentView>;
  maxCount: number;
}

// On big clusters the SMT is refetched less often than the status: while it is the same
// array, the placement counts are reused instead of recounted.
let memo: { segments: SegmentView[] | null; key: string; placement: Placement } | undefined;

function placementOf(segments: SegmentView[] | null, serverIds: string[], serverIdx: Map<string, number>, volumes: string[], volumeIdx: Map<string, number>): Placement {
  const key = `${serverIds.join('\n')}\u0000${volumes.join('\n')}`;
  if (memo && memo.segments === segments && memo.key === key) return memo.placement;
  const nS = serverIds.length;
  const nV = volumes.length;
  const counts = new Uint32Array(nS * nV);
  const primaries = new Uint32Array(nS * nV);
  const joining = new Uint32Array(nS);
  const segmentIndex = new Map<string, SegmentView>();
  if (segments) {
    for (const seg of segments) {
      segmentIndex.set(seg.segmentId, seg);
      const v = volumeIdx.get(volumeOf(seg.segmentId));
      if (v === undefined) continue;
      const reps = seg.replicas;
      for (let r = 0; r < reps.length; r++) {
        const si = serverIdx.get(reps[r]);
        if (si === undefined) continue;
        counts[si * nV + v]++;
        if (r === 0) primaries[si * nV + v]++;
      }
      if (seg.joining) for (const j of seg.joining) {
        const si = serverIdx.get(j);
        if (si !== undefined) joining[si]++;
      }
    }
  }
  let maxCount = 0;
  for (let i = 0; i < counts.length; i++) if (counts[i] > maxCount) maxCount = counts[i];
  const placement = { counts, primaries, joining, segmentIndex, maxCount };
  memo = { segments, key, placement };
  return placement;
}

function hotter(a: SegmentHeat, b: SegmentHeat): boolean {
  return a.bytesPerSec > b.bytesPerSec || (a.bytesPerSec === b.bytesPerSec && a.readsPerSec + a.writesPerSec > b.readsPerSec + b.writesPerSec);
}

/** How far an operator's copy is, 0…1 (0 when unknown). */
export function fraction(op: OperatorView): number {
  const p = op.progress;
  if (op.state === 'committing') return 1;
  if (!p || p.totalBytes <= 0) return 0;
  return Math.min(1, p.bytesCopied / p.totalBytes);
}

/**
 * Per-server Failure Score history kept in the browser (the API serves only the latest
 * report). One point per new `computedAt`, capped so memory stays flat over hours.
 */
export class ScoreHistory {
  private readonly series = new Map<string, { t: number[]; v: number[]; last: string }>();
  constructor(private readonly maxPoints = 720) {}

  add(reports: FailureScoreReport[]): void {
    for (const r of reports) {
      let s = this.series.get(r.serverId);
      if (!s) this.series.set(r.serverId, (s = { t: [], v: [], last: '' }));
      if (s.last === r.computedAt) continue;
      s.last = r.computedAt;
      const t = Date.parse(r.computedAt);
      s.t.push(Number.isFinite(t) ? t / 1000 : Date.now() / 1000);
      s.v.push(r.score);
      if (s.t.length > this.maxPoints) {
        s.t.shift();
        s.v.shift();
      }
    }
  }

  /**
   * Merges older points kept by the orchestrator (`GET /v1/failure-scores/history`), so a
   * freshly opened page has a past to draw. Points at or after the oldest one held are skipped.
   */
  seed(serverId: string, points: { t: number; score: number }[]): void {
    let s = this.series.get(serverId);
    if (!s) this.series.set(serverId, (s = { t: [], v: [], last: '' }));
    const first = s.t.length ? s.t[0] : Infinity;
    const older = points.filter((p) => Number.isFinite(p.t) && p.t / 1000 < first).sort((a, b) => a.t - b.t).slice(-this.maxPoints);
    s.t.unshift(...older.map((p) => p.t / 1000));
    s.v.unshift(...older.map((p) => p.score));
    if (s.t.length > this.maxPoints) {
      s.t.splice(0, s.t.length - this.maxPoints);
      s.v.splice(0, s.v.length - this.maxPoints);
    }
  }

  get(serverId: string): { t: number[]; v: number[] } | undefined {
    return this.series.get(serverId);
  }

  get size(): number {
    return this.series.size;
  }
}

/** Aligns several servers' histories on one time axis for a multi-series chart (gaps as null). */
export function alignHistories(hist: ScoreHistory, ids: string[]): [number[], ...(number | null)[][]] {
  const times = new Set<number>();
  const parts = ids.map((id) => hist.get(id) ?? { t: [], v: [] });
  for (const p of parts) for (const t of p.t) times.add(t);
  const xs = [...times].sort((a, b) => a - b);
  const pos = new Map<number, number>();
  xs.forEach((t, i) => pos.set(t, i));
  const ys = parts.map((p) => {
    const y: (number | null)[] = new Array(xs.length).fill(null);
    p.t.forEach((t, i) => (y[pos.get(t)!] = p.v[i]));
    return y;
  });
  return [xs, ...ys];
}
