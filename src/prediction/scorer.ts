/**
 * The Failure Score engine: a server's telemetry → per-mode calibrated probabilities →
 * one score 0–100 with the mode and the features that drove it (docs/prediction.md).
 *
 *   const scorer = new FailureScorer(bundle);
 *   const report = scorer.score({ serverId, query: (m, f, t) => store.query(m, f, t), now });
 *
 * Cheap by design: a few telemetry range queries, ~100 tree walks for the
 * contributions, and two small exponential-smoothing fits for the forecasts
 * (docs/prediction-cost.md has the measured time per server per tick).
 */
import { FAILURE_MODES, type FailureMode, type FailureScoreReport } from './failure-report.ts';
import { GradientBoostedTrees } from './gbdt.ts';
import { calibratorFromJSON, type Calibrator } from './calibration.ts';
import { ExpSmoothingForecaster } from './forecast/exp-smoothing.ts';
import { computeOnlineFeatures, MINUTE_MS, type OnlineFeatures, type PeerStats, type QueryFn } from './online-features.ts';
import { validateBundle, type ModeModel, type ModelBundle, type RuleModeModel, type ScoreAnchors } from './model-bundle.ts';

export { ACT_SCORE, WARN_SCORE } from './failure-report.ts';
import { ACT_SCORE, WARN_SCORE } from './failure-report.ts';

export interface ScoreInputs {
  serverId: string;
  query: QueryFn;
  /** ms since epoch; default Date.now(). */
  now?: number;
  /** Fleet medians/MADs per metric (the fail-slow reference); without them the server's own past is used. */
  peers?: PeerStats;
  /** Compute the metric forecasts (default true; the bulk of the cost). */
  forecast?: boolean;
  /** How many top features to report (default 5). */
  topFeatures?: number;
}

/**
 * Score points of a probability for one mode: 0 → 0, base → 10, warn → 50, act → 70, piecewise
 * linear in log p up to act; above act the score rises with the odds, 100 − 30·(odds(act)/odds(p))^¼,
 * so it keeps ranking up to 100 (16× the act odds → 85, 256× → 92.5, 65 536× → 98.1) instead of
 * compressing everything past act into a few tenths below 100.
 */
export function modeScore(p: number, a: ScoreAnchors): number {
  if (!(p > 0)) return 0;
  if (p >= 1) return 100;
  if (p <= a.base) return (10 * p) / a.base;
  if (p > a.act) {
    const oddsRatio = (a.act / (1 - a.act)) / (p / (1 - p));
    return 100 - (100 - ACT_SCORE) * Math.pow(oddsRatio, 0.25);
  }
  const pts: [number, number][] = [[a.base, 10], [a.warn, WARN_SCORE], [a.act, ACT_SCORE]];
  for (let i = 1; i < pts.length; i++) {
    const [p1, s1] = pts[i];
    if (p <= p1) {
      const [p0, s0] = pts[i - 1];
      return s0 + ((s1 - s0) * (Math.log(p) - Math.log(p0))) / (Math.log(p1) - Math.log(p0));
    }
  }
  return ACT_SCORE;
}

export function levelOf(score: number): FailureScoreReport['level'] {
  return score >= ACT_SCORE ? 'critical' : score >= WARN_SCORE ? 'warning' : 'healthy';
}

const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/** One mode's model, ready to predict a calibrated probability from its feature vector. */
interface CompiledMode {
  spec: ModeModel;
  predict(values: Float64Array): number;
}

function ruleProbability(spec: RuleModeModel, values: Float64Array): number {
  let z = spec.intercept;
  for (const t of spec.terms) {
    const x = values[spec.features.indexOf(t.feature)];
    if (Number.isNaN(x)) continue; // no evidence
    const u = t.transform === 'log10ratio' ? (x > 0 ? Math.log10(x / t.ref) : 0) : (x - t.ref) / t.scale!;
    z += t.weight * Math.max(0, u);
  }
  return sigmoid(z);
}

function compile(spec: ModeModel): CompiledMode {
  if (spec.kind === 'gbdt') {
    const trees = GradientBoostedTrees.fromJSON(spec.gbdt);
    const cal: Calibrator = calibratorFromJSON(spec.calibrator);
    return { spec, predict: (v) => cal.predict(trees.predictProba(v)) };
  }
  return { spec, predict: (v) => ruleProbability(spec, v) };
}

export interface ModeDetail {
  probability: number;
  score: number;
  /** False when the mode had no input at all (its probability is then the prior, anchors.base). */
  hasData: boolean;
  features: { name: string; value: number; contribution: number }[];
}

export class FailureScorer {
  readonly bundle: ModelBundle;
  private readonly modes: Record<FailureMode, CompiledMode>;

  constructor(bundle: ModelBundle) {
    this.bundle = validateBundle(bundle);
    this.modes = Object.fromEntries(FAILURE_MODES.map((m) => [m, compile(bundle.modes[m])])) as Record<FailureMode, CompiledMode>;
  }

  get version(): string {
    return this.bundle.version;
  }

  /** Calibrated probability of one mode for a feature vector in the mode's feature order. */
  probability(mode: FailureMode, values: Float64Array): number {
    return this.modes[mode].predict(values);
  }

  /** The mode's probability, score and per-feature contributions (ablation to the healthy reference, in score points). */
  detail(mode: FailureMode, values: Float64Array): ModeDetail {
    const cm = this.modes[mode];
    const spec = cm.spec;
    let present = 0;
    for (const v of values) if (!Number.isNaN(v)) present++;
    if (present === 0) {
      return { probability: spec.anchors.base, score: modeScore(spec.anchors.base, spec.anchors), hasData: false, features: [] };
    }
    const p = cm.predict(values);
    const s = modeScore(p, spec.anchors);
    const features: ModeDetail['features'] = [];
    const v2 = Float64Array.from(values);
    for (let i = 0; i < values.length; i++) {
      if (Number.isNaN(values[i])) continue;
      const ref = spec.reference[i];
      let contribution = 0;
      if (ref !== null && ref !== values[i]) {
        v2[i] = ref;
        contribution = s - modeScore(cm.predict(v2), spec.anchors);
        v2[i] = values[i];
      }
      features.push({ name: spec.features[i], value: values[i], contribution: round(contribution, 2) });
    }
    features.sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution) || a.name.localeCompare(b.name));
    return { probability: p, score: s, hasData: true, features };
  }

  /** Features of every mode at `now` (exposed for the trainer and for debugging). */
  features(query: QueryFn, now: number, peers?: PeerStats): OnlineFeatures {
    return computeOnlineFeatures(query, now, peers, this.bundle.modes.disk.features);
  }

  score(inputs: ScoreInputs): FailureScoreReport {
    const now = inputs.now ?? Date.now();
    const feats = this.features(inputs.query, now, inputs.peers);
    const probabilities = {} as Record<FailureMode, number>;
    const horizons = {} as Record<FailureMode, string>;
    const details = {} as Record<FailureMode, ModeDetail>;
    let lead: FailureMode = FAILURE_MODES[0];
    const missing: FailureMode[] = [];
    for (const m of FAILURE_MODES) {
      const d = this.detail(m, feats[m].values);
      details[m] = d;
      probabilities[m] = round(d.probability, 6);
      horizons[m] = this.bundle.modes[m].horizon;
      if (!d.hasData) missing.push(m);
      if (d.score > details[lead].score) lead = m;
    }
    const score = round(details[lead].score, 1);
    const top = details[lead].features.slice(0, inputs.topFeatures ?? 5).map((f) => ({ name: f.name, value: round(f.value, 6), contribution: f.contribution }));
    const report: FailureScoreReport = {
      serverId: inputs.serverId,
      score,
      level: levelOf(score),
      mode: lead,
      probabilities,
      horizons,
      topFeatures: top,
      modelVersion: this.bundle.version,
      computedAt: new Date(now).toISOString(),
      forecast: inputs.forecast === false ? [] : forecasts(inputs.query, now),
    };
    if (missing.length === FAILURE_MODES.length) {
      report.note = 'not enough telemetry yet: no mode has any input, so every probability is its prior';
    } else if (missing.length > 0) {
      report.note = `no telemetry for ${missing.map((m) => `${m} (${MISSING_WHY[m]})`).join(', ')}: prior probability used`;
    }
    if (missing.length > 0) report.noData = missing;
    return report;
  }
}

const MISSING_WHY: Record<FailureMode, string> = {
  disk: 'no SMART values today',
  'fail-slow': 'fewer than 30 minutes of I/O latency in the last hour, or fewer than 3 peers to compare with',
  network: 'no TCP, NIC or data-protocol counters in the last 15 minutes',
  software: 'no process memory series over the last 6 hours',
};

function round(v: number, d: number): number {
  const k = 10 ** d;
  return Math.round(v * k) / k;
}

// ------------------------------------------------------------------ forecasts

/** Metrics forecast for the dashboard: the first of each group that has data. */
export const FORECAST_GROUPS: string[][] = [
  ['io_read_latency_p99_ms', 'io_write_latency_p99_ms'],
  ['disk_read_latency_ms', 'disk_write_latency_ms'],
];
const FORECAST_STEP_MS = 5 * MINUTE_MS;
const FORECAST_HISTORY_MS = 6 * 3_600_000;
const FORECAST_STEPS = 12; // one hour

/** Damped-trend exponential smoothing over the last 6 h in 5-minute buckets, one hour ahead. */
export function forecasts(query: QueryFn, now: number): FailureScoreReport['forecast'] {
  const out: FailureScoreReport['forecast'] = [];
  const end = Math.floor(now / FORECAST_STEP_MS) * FORECAST_STEP_MS + FORECAST_STEP_MS;
  const start = end - FORECAST_HISTORY_MS;
  const n = FORECAST_HISTORY_MS / FORECAST_STEP_MS;
  for (const group of FORECAST_GROUPS) {
    for (const metric of group) {
      const sum = new Float64Array(n);
      const cnt = new Float64Array(n);
      for (const p of query(metric, start, end)) {
        const t = p.ts ?? p.t ?? NaN;
        const i = Math.floor((t - start) / FORECAST_STEP_MS);
        if (i >= 0 && i < n && Number.isFinite(p.mean)) {
          sum[i] += p.mean;
          cnt[i]++;
        }
      }
      const series = Float64Array.from(sum, (s, i) => (cnt[i] ? s / cnt[i] : NaN));
      let observed = 0;
      let last = -1;
      for (let i = 0; i < n; i++) if (!Number.isNaN(series[i])) {
        observed++;
        last = i;
      }
      if (observed < 12) continue;
      try {
        const f = new ExpSmoothingForecaster({ trend: 'damped', seasonal: false });
        const used = series.subarray(0, last + 1);
        f.fit(used);
        const r = f.forecast(FORECAST_STEPS);
        const t0 = start + last * FORECAST_STEP_MS;
        out.push({
          metric,
          model: f.name,
          points: Array.from(r.mean, (v, h) => ({
            t: t0 + (h + 1) * FORECAST_STEP_MS,
            value: round(Math.max(0, v), 4),
            ...(r.lower ? { lower: round(Math.max(0, r.lower[h]), 4) } : {}),
            ...(r.upper ? { upper: round(Math.max(0, r.upper[h]), 4) } : {}),
          })),
        });
      } catch {
        // A series the forecaster refuses (e.g. constant with too few points) gets no forecast.
        continue;
      }
      break;
    }
  }
  return out;
}
