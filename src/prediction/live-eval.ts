/**
 * Scoring a dataset through the live path: each unit's telemetry is streamed, sample by sample
 * at a stated cadence, into its own real `TimeSeriesStore` (the collector's `push`, not a bulk
 * import), and scored by `FailureScorer.score()` over `storeQuery(store)` with the fail-slow
 * reference a server gets (`peerStatsOf` over the other units of its peer group, pooled over the
 * window). Nothing here computes a feature: whatever servers would serve is what is measured.
 * `presage eval --model` summarises these scores; `presage replay` feeds them to the
 * orchestrator's drain policy.
 *
 * Units are processed one peer group at a time (a Backblaze drive is its own group; a Perseus
 * host is a group): peers only ever see their own group, so this is exact and memory stays at
 * one group's stores.
 */
import { TimeSeriesStore, type Sample } from '../telemetry/tsdb.ts';
import type { FailureScorer } from './scorer.ts';
import { ACT_SCORE, FAILURE_MODES, WARN_SCORE } from './failure-report.ts';
import { median, recallAtFalseAlarmRate, rocAuc, wilson } from './metrics.ts';
import { peerSample, peerStatsOf, storeQuery, FAIL_SLOW_WINDOW_MIN, MINUTE_MS } from './online-features.ts';

/** One scored unit (a drive, a server). */
export interface LiveUnit {
  id: string;
  group: string;
  /** Positive label: failed (Backblaze) or fail-slow (Perseus). */
  failed: boolean;
  /** When it failed (ms), NaN when unknown or healthy (Perseus labels have no onset). */
  failAt: number;
}

/** One peer group's telemetry, in time order, with the times its units are scored. */
export interface GroupStream {
  units: LiveUnit[];
  /** Samples in non-decreasing `sample.ts`; `unit` indexes `units`. */
  samples: Iterable<{ unit: number; sample: Sample }>;
  /** Score times, ascending, each with the units scored then. */
  ticks: { t: number; units: number[] }[];
}

/** The score timeline of one unit. */
export interface UnitTimeline {
  unit: LiveUnit;
  t: number[];
  score: number[];
  mode: string[];
  /** Bit b set: FAILURE_MODES[b] had no input at that score (FailureScoreReport.noData). */
  noData: number[];
}

export interface ScoreStreamOptions {
  /** Called after each group with (groups done, groups total). */
  progress?: (done: number, total: number) => void;
  /** A unit is scored only while it has reported within this long (default the fail-slow window). */
  staleMs?: number;
}

/** Streams every group into real stores and scores each unit at its ticks. */
export async function scoreStreams(scorer: FailureScorer, groups: GroupStream[], opts: ScoreStreamOptions = {}): Promise<UnitTimeline[]> {
  const out: UnitTimeline[] = [];
  const stale = opts.staleMs ?? FAIL_SLOW_WINDOW_MIN * MINUTE_MS;
  let lastYield = Date.now();
  for (let gi = 0; gi < groups.length; gi++) {
    const g = groups[gi];
    const stores = g.units.map(() => new TimeSeriesStore(':memory:'));
    const queries = stores.map((s) => storeQuery(s));
    const lines: UnitTimeline[] = g.units.map((unit) => ({ unit, t: [], score: [], mode: [], noData: [] }));
    const lastTs = new Float64Array(g.units.length).fill(-Infinity);
    let k = 0;
    const scoreTick = (tick: { t: number; units: number[] }) => {
      const live = tick.units.filter((u) => lastTs[u] > tick.t - stale && lastTs[u] <= tick.t);
      if (!live.length) return;
      // Every unit of the group publishes its window sample, as servers do for the orchestrator.
      const samples = g.units.length > 1 ? g.units.map((_, u) => (lastTs[u] > tick.t - stale ? peerSample(queries[u], tick.t) : {})) : [];
      for (const u of live) {
        const peers = peerStatsOf(samples.filter((_, q) => q !== u));
        const r = scorer.score({ serverId: g.units[u].id, query: queries[u], now: tick.t, peers, forecast: false });
        lines[u].t.push(tick.t);
        lines[u].score.push(r.score);
        lines[u].mode.push(r.mode);
        lines[u].noData.push((r.noData ?? []).reduce((m, x) => m | (1 << FAILURE_MODES.indexOf(x)), 0));
      }
    };
    for (const { unit, sample } of g.samples) {
      while (k < g.ticks.length && g.ticks[k].t < sample.ts) scoreTick(g.ticks[k++]);
      stores[unit].push(sample);
      lastTs[unit] = sample.ts;
    }
    while (k < g.ticks.length) scoreTick(g.ticks[k++]);
    for (const s of stores) s.close();
    out.push(...lines);
    opts.progress?.(gi + 1, groups.length);
    // Let timers run (progress bars, signals) on long runs.
    if (Date.now() - lastYield > 100) {
      await new Promise((r) => setImmediate(r));
      lastYield = Date.now();
    }
  }
  return out;
}

// ------------------------------------------------------------------ metrics

/** A 95 % interval. */
export type Interval = [number, number];

export interface ThresholdResult {
  recall: number;
  far: number;
  /** Median days from the first score at or above the threshold to the failure (units with a failure time). */
  medianLeadDays: number | null;
  /** Units counted. */
  caught: number;
  falseAlarms: number;
  ci: { recall: Interval; far: Interval };
}

export interface RankingResult {
  auc: number;
  aucCI: Interval;
  recallAtFar: Record<string, number>;
  recallAtFarCI: Record<string, Interval>;
}

export interface BaselineResult extends RankingResult {
  description: string;
  /** For baselines that are an alarm rule: recall and false-alarm rate of the rule itself. */
  rule?: { recall: number; far: number };
}

export interface EvalSummary extends RankingResult {
  units: number;
  failed: number;
  thresholds: Record<string, ThresholdResult>;
  baselines: Record<string, BaselineResult>;
  /** Per unit: the highest score, for ranking checks (sorted high to low). */
  top: { id: string; failed: boolean; maxScore: number }[];
}

export const FAR_LEVELS = [0.01, 0.001] as const;

/** Recall at a false-alarm rate (metrics.recallAtFalseAlarmRate), NaN without both classes. */
export function recallAtFar(scores: ArrayLike<number>, labels: ArrayLike<boolean | number>, rate: number): number {
  const y = Array.from(labels, Number);
  if (!y.includes(1) || !y.includes(0)) return NaN;
  return recallAtFalseAlarmRate(scores, y, rate).recall;
}

const aucOf = (scores: ArrayLike<number>, labels: ArrayLike<boolean | number>): number => rocAuc(scores, Array.from(labels, Number));

function ranking(scores: number[], labels: boolean[], seed = 1, resamples = 500): RankingResult {
  const res: RankingResult = { auc: aucOf(scores, labels), aucCI: [NaN, NaN], recallAtFar: {}, recallAtFarCI: {} };
  for (const r of FAR_LEVELS) res.recallAtFar[String(r)] = recallAtFar(scores, labels, r);
  // Stratified bootstrap over units (failed and healthy resampled separately), seeded.
  const pos = labels.flatMap((l, i) => (l ? [i] : []));
  const neg = labels.flatMap((l, i) => (l ? [] : [i]));
  let s = seed >>> 0 || 1;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const aucs: number[] = [];
  const rec: Record<string, number[]> = Object.fromEntries(FAR_LEVELS.map((r) => [String(r), []]));
  if (pos.length && neg.length) {
    for (let b = 0; b < resamples; b++) {
      const sc: number[] = [];
      const lb: boolean[] = [];
      for (const pool of [pos, neg]) for (let q = 0; q < pool.length; q++) {
        const i = pool[Math.floor(rnd() * pool.length)];
        sc.push(scores[i]);
        lb.push(labels[i]);
      }
      aucs.push(aucOf(sc, lb));
      for (const r of FAR_LEVELS) rec[String(r)].push(recallAtFar(sc, lb, r));
    }
  }
  const ci = (v: number[]): Interval => {
    const f = v.filter(Number.isFinite).sort((a, b) => a - b);
    return f.length ? [f[Math.floor(0.025 * (f.length - 1))], f[Math.ceil(0.975 * (f.length - 1))]] : [NaN, NaN];
  };
  res.aucCI = ci(aucs);
  for (const r of FAR_LEVELS) res.recallAtFarCI[String(r)] = ci(rec[String(r)]);
  return res;
}

/** Median, null when there is nothing to take it of. */
export const medianOrNull = (v: number[]): number | null => (v.length ? median(v) : null);

/** A baseline: a per-unit ranking score, and an alarm flag where the baseline is a rule. */
export interface BaselineInput {
  description: string;
  score: Map<string, number>;
  alarm?: Map<string, boolean>;
}

export function summarize(lines: UnitTimeline[], baselines: Record<string, BaselineInput> = {}, thresholds = [ACT_SCORE, WARN_SCORE]): EvalSummary {
  const max = lines.map((l) => l.score.reduce((a, b) => Math.max(a, b), 0));
  const labels = lines.map((l) => l.unit.failed);
  const nFailed = labels.filter(Boolean).length;
  const nHealthy = lines.length - nFailed;
  const out: EvalSummary = { units: lines.length, failed: nFailed, ...ranking(max, labels), thresholds: {}, baselines: {}, top: [] };
  for (const thr of thresholds) {
    let caught = 0;
    let fa = 0;
    const leads: number[] = [];
    lines.forEach((l, i) => {
      if (max[i] < thr) return;
      if (!l.unit.failed) {
        fa++;
        return;
      }
      caught++;
      const first = l.t[l.score.findIndex((s) => s >= thr)];
      if (Number.isFinite(l.unit.failAt)) leads.push((l.unit.failAt - first) / 86_400_000);
    });
    out.thresholds[String(thr)] = {
      recall: nFailed ? caught / nFailed : NaN,
      far: nHealthy ? fa / nHealthy : NaN,
      medianLeadDays: medianOrNull(leads),
      caught,
      falseAlarms: fa,
      ci: { recall: wilson(caught, nFailed), far: wilson(fa, nHealthy) },
    };
  }
  for (const [name, b] of Object.entries(baselines)) {
    const sc = lines.map((l) => b.score.get(l.unit.id) ?? 0);
    const res: BaselineResult = { description: b.description, ...ranking(sc, labels) };
    if (b.alarm) {
      let tp = 0;
      let fp = 0;
      lines.forEach((l) => {
        if (!b.alarm!.get(l.unit.id)) return;
        if (l.unit.failed) tp++;
        else fp++;
      });
      res.rule = { recall: nFailed ? tp / nFailed : NaN, far: nHealthy ? fp / nHealthy : NaN };
    }
    out.baselines[name] = res;
  }
  out.top = lines.map((l, i) => ({ id: l.unit.id, failed: l.unit.failed, maxScore: max[i] })).sort((a, b) => b.maxScore - a.maxScore);
  return out;
}
