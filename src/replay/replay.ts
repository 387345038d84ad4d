/**
 * `presage replay`: a dataset's fleet scored through the live path (one in-process scoring unit
 * per drive or server: a real TimeSeriesStore and FailureScorer.score(), prediction/live-eval.ts)
 * and judged by the orchestrator's real PredictiveDrainPolicy — sustain, hysteresis, the
 * draining cap — on a simulated clock. It reports every drain, true and false, and the lead time
 * of each true one.
 *
 * Two phases, and why that is exact: the policy never changes the telemetry a recorded fleet
 * produced (in a real cluster a drained server's I/O stops; a recording cannot show that, so the
 * drained unit's scores go on as recorded, and the policy's own rule — a drained server's
 * no-data score is not recovery — is kept). So every unit is scored first, group by group, and
 * the policy then runs over the score timelines in global time order, ticking at every score time
 * with each unit's latest report, as the orchestrator polls its servers.
 */
import { FAILURE_MODES, type FailureMode, type FailureScoreReport } from '../api/types.ts';
import { silentLogger } from '../common/log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { ServerRecord } from '../metadata/model.ts';
import { DecisionLog } from '../orchestrator/decision-log.ts';
import { DEFAULT_PREDICTIVE, PredictiveDrainPolicy, type PredictiveDrainConfig } from '../orchestrator/predictive-drain.ts';
import { medianOrNull, type LiveUnit, type UnitTimeline } from '../prediction/live-eval.ts';

export interface DrainEvent {
  unit: string;
  t: number;
  /** The unit failed (or is labelled slow) after the drain started. */
  trueDrain: boolean;
  /** Days from the drain to the failure, when the failure time is known. */
  leadDays: number | null;
  score: number;
  mode: string;
}

export interface ReplayResult {
  units: number;
  failed: number;
  unitDays: number;
  ticks: number;
  drains: DrainEvent[];
  trueDrains: number;
  falseDrains: number;
  /** Healthy units drained at least once (comparable with eval's false alarms at the threshold). */
  falselyDrainedUnits: number;
  /** Positive units drained before their failure. */
  caughtUnits: number;
  drainsPerUnitDay: number;
  falseDrainsPerUnitDay: number;
  medianLeadDays: number | null;
  /** Positive units that failed (went down) without having been drained first. */
  missed: string[];
  /** score-warning decisions recorded (warnings and cap refusals). */
  warnings: number;
  config: PredictiveDrainConfig;
}

export interface ReplayOptions {
  config?: Partial<PredictiveDrainConfig>;
  /** A unit's latest score counts only while it is at most this old (default 1 h); older = no data. */
  staleMs?: number;
  progress?: (done: number, total: number) => void;
}

/** Replays score timelines through the real predictive-drain policy. */
export async function replayDrains(lines: UnitTimeline[], unitDays: number, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const config: PredictiveDrainConfig = { ...DEFAULT_PREDICTIVE, ...opts.config, enabled: true };
  const stale = opts.staleMs ?? 3_600_000;
  const servers = new Map<string, ServerRecord>();
  const view = { servers } as unknown as ClusterView;
  const reports = new Map<string, FailureScoreReport>();
  const decisions = new DecisionLog(undefined, 1_000_000);
  let clock = 0;
  const units = new Map<string, LiveUnit>(lines.map((l) => [l.unit.id, l.unit]));
  const drains: DrainEvent[] = [];
  const control = {
    setDraining: async (id: string, draining: boolean, reason?: string) => {
      const s = servers.get(id);
      if (!s) return;
      s.draining = draining;
      s.drainReason = draining ? reason : undefined;
      if (!draining) return;
      const u = units.get(id)!;
      const r = reports.get(id)!;
      const before = u.failed && (!Number.isFinite(u.failAt) || clock < u.failAt);
      drains.push({ unit: id, t: clock, trueDrain: before, leadDays: before && Number.isFinite(u.failAt) ? (u.failAt - clock) / 86_400_000 : null, score: r.score, mode: r.mode });
    },
  };
  const policy = new PredictiveDrainPolicy(view, () => reports, control, decisions, silentLogger, config, () => clock);

  // Every score of every unit, in global time order.
  const events: { t: number; line: number; i: number }[] = [];
  lines.forEach((l, line) => l.t.forEach((t, i) => events.push({ t, line, i })));
  events.sort((a, b) => a.t - b.t || a.line - b.line);
  const firstT = new Map<string, number>(lines.map((l) => [l.unit.id, l.t.length ? l.t[0] : Infinity]));
  const lastSeen = new Map<string, number>();
  const missed: string[] = [];
  const downDone = new Set<string>();
  let ticks = 0;
  let k = 0;
  while (k < events.length) {
    const t = events[k].t;
    clock = t;
    // Membership at t: a unit is up from its first score until its failure.
    for (const l of lines) {
      const id = l.unit.id;
      if (!servers.has(id) && firstT.get(id)! <= t && !downDone.has(id)) {
        servers.set(id, { id, dataAddr: '', adminAddr: '', capacityBytes: 1, state: 'up', registeredAt: new Date(t).toISOString() });
      }
      const s = servers.get(id);
      if (s && Number.isFinite(l.unit.failAt) && t >= l.unit.failAt && !downDone.has(id)) {
        downDone.add(id);
        if (!drains.some((d) => d.unit === id && d.trueDrain)) missed.push(id);
        servers.delete(id);
        reports.delete(id);
      }
    }
    for (; k < events.length && events[k].t === t; k++) {
      const { line, i } = events[k];
      const l = lines[line];
      if (!servers.has(l.unit.id)) continue;
      lastSeen.set(l.unit.id, t);
      const noDataMask = l.noData[i];
      reports.set(l.unit.id, {
        serverId: l.unit.id, score: l.score[i], level: 'healthy', mode: l.mode[i] as FailureMode, probabilities: {} as FailureScoreReport['probabilities'],
        horizons: {} as FailureScoreReport['horizons'], topFeatures: [], modelVersion: '', computedAt: new Date(t).toISOString(), forecast: [],
        ...(noDataMask ? { noData: FAILURE_MODES.filter((_, b) => noDataMask & (1 << b)) } : {}),
      });
    }
    // A server with nothing recent to score on reports its priors, with no data for any mode.
    for (const [id, r] of reports) {
      if (t - (lastSeen.get(id) ?? -Infinity) > stale) reports.set(id, { ...r, score: 0, noData: [...FAILURE_MODES] });
    }
    await policy.tick();
    ticks++;
    if (ticks % 500 === 0) {
      opts.progress?.(k, events.length);
      await new Promise((r) => setImmediate(r));
    }
  }
  opts.progress?.(events.length, events.length);
  // Positive units with no failure time (fail-slow labels) that were never drained are missed too.
  for (const l of lines) if (l.unit.failed && !Number.isFinite(l.unit.failAt) && !drains.some((d) => d.unit === l.unit.id)) missed.push(l.unit.id);
  const trueDrains = drains.filter((d) => d.trueDrain).length;
  const medianLead = medianOrNull(drains.filter((d) => d.leadDays !== null).map((d) => d.leadDays!));
  const failed = lines.filter((l) => l.unit.failed).length;
  return {
    units: lines.length,
    failed,
    unitDays,
    ticks,
    drains,
    trueDrains,
    falseDrains: drains.length - trueDrains,
    falselyDrainedUnits: new Set(drains.filter((d) => !units.get(d.unit)!.failed).map((d) => d.unit)).size,
    caughtUnits: new Set(drains.filter((d) => d.trueDrain).map((d) => d.unit)).size,
    drainsPerUnitDay: unitDays ? drains.length / unitDays : NaN,
    falseDrainsPerUnitDay: unitDays ? (drains.length - trueDrains) / unitDays : NaN,
    medianLeadDays: medianLead,
    missed,
    warnings: decisions.list(0, Number.MAX_SAFE_INTEGER).filter((d) => d.type === 'score-warning').length,
    config,
  };
}

