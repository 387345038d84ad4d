/**
 * Per drive-day features from a Backblaze SMART history, using only the past:
 * the row for day d sees observations on days <= d of the same drive.
 */
import { BACKBLAZE_SMART, type DriveHistory } from './datasets.ts';
import { ewma, linearSlope } from './features.ts';
import type { FeatureMatrix } from './gbdt.ts';

/** SMART attributes of the classic threshold rule (Backblaze's own "any raw > 0" signals). */
export const SMART_RULE_ATTRS = [5, 187, 188, 197, 198] as const;

const PER_ATTR = ['level', 'delta1', 'delta7', 'ewma03', 'slope7'] as const;

/** All feature names, in column order. */
export const BACKBLAZE_FEATURE_NAMES: string[] = [
  ...BACKBLAZE_SMART.flatMap((s) => PER_ATTR.map((f) => `smart_${s}_${f}`)),
  'rule_any_positive',
  'rule_sum',
  'defects_forecast7',
];

/** Days ahead the grown-defect forecast looks (the disk mode's horizon). */
export const DEFECT_FORECAST_DAYS = 7;

export interface DriveFeatures {
  /** Row-major, BACKBLAZE_FEATURE_NAMES.length columns, one row per observed day. */
  data: Float32Array;
  nRows: number;
  /** SMART rule fires on this day (any of 5, 187, 188, 197, 198 raw > 0; missing counts as not firing). */
  rule: Uint8Array;
}

export function driveFeatures(d: DriveHistory): DriveFeatures {
  const n = d.days.length;
  const m = BACKBLAZE_FEATURE_NAMES.length;
  const data = new Float32Array(n * m).fill(NaN);
  const days = d.days;
  for (let k = 0; k < BACKBLAZE_SMART.length; k++) {
    const v = d.smart[k];
    let allNaN = true;
    for (let i = 0; i < n; i++) if (!Number.isNaN(v[i])) {
      allNaN = false;
      break;
    }
    if (allNaN) continue;
    const ew = ewma(v, 0.3);
    const base = k * PER_ATTR.length;
    let j7 = -1; // last index with days[j7] <= days[i] - 7
    let lo7 = 0; // first index with days[lo7] > days[i] - 7
    for (let i = 0; i < n; i++) {
      const o = i * m + base;
      data[o] = v[i];
      if (i > 0) data[o + 1] = (v[i] - v[i - 1]) / (days[i] - days[i - 1]);
      while (j7 + 1 < i && days[j7 + 1] <= days[i] - 7) j7++;
      if (j7 >= 0) data[o + 2] = v[i] - v[j7];
      data[o + 3] = ew[i];
      while (days[lo7] <= days[i] - 7) lo7++;
      if (i - lo7 >= 1) data[o + 4] = linearSlope(v.subarray(lo7, i + 1), days.subarray(lo7, i + 1));
    }
  }
  const rule = new Uint8Array(n);
  const ruleSum = new Float64Array(n).fill(NaN);
  const ruleIdx = SMART_RULE_ATTRS.map((s) => BACKBLAZE_SMART.indexOf(s));
  for (let i = 0; i < n; i++) {
    let any = 0;
    let sum = 0;
    let seen = false;
    for (const k of ruleIdx) {
      const x = d.smart[k][i];
      if (Number.isNaN(x)) continue;
      seen = true;
      if (x > 0) any = 1;
      sum += x;
    }
    rule[i] = any;
    data[i * m + m - 3] = seen ? any : NaN;
    data[i * m + m - 2] = seen ? sum : NaN;
    ruleSum[i] = seen ? sum : NaN;
  }
  // The forecast: the grown defects (the rule sum) DEFECT_FORECAST_DAYS ahead minus today's, from
  // a linear trend over the last 7 days' snapshots (docs/forecast-eval.md: on these sparse, step-like
  // counters a damped/linear trend is what beats the naive forecast). ≥ 2 snapshots, floored at 0
  // (defects do not heal).
  let lo = 0;
  for (let i = 0; i < n; i++) {
    while (days[lo] <= days[i] - 7) lo++;
    if (i - lo < 1) continue;
    const slope = linearSlope(ruleSum.subarray(lo, i + 1), days.subarray(lo, i + 1));
    if (Number.isFinite(slope)) data[i * m + m - 1] = Math.max(0, slope * DEFECT_FORECAST_DAYS);
  }
  return { data, nRows: n, rule };
}

// ------------------------------------------------------------------ drive-day rows

/** The disk model's label: a drive-day is positive when the drive fails within this many days (failure day = day 0). */
export const DISK_HORIZON_DAYS = 7;

/** Drive-day rows of several drives, one matrix, with each drive's row range. */
export interface DriveDayRows {
  x: FeatureMatrix;
  /** 1 when the drive fails within DISK_HORIZON_DAYS of that day. */
  y: Uint8Array;
  drives: { drive: DriveHistory; start: number; end: number; rule: Uint8Array }[];
}

/**
 * Stacks the drives' feature rows (columns `cols` of BACKBLAZE_FEATURE_NAMES) in drive order,
 * labelled for the disk model. `feats` must hold driveFeatures() of every drive, by serial.
 */
export function driveDayRows(drives: DriveHistory[], feats: Map<string, DriveFeatures>, cols: number[]): DriveDayRows {
  let n = 0;
  for (const d of drives) n += d.days.length;
  const m = cols.length;
  const M = BACKBLAZE_FEATURE_NAMES.length;
  const data = new Float32Array(n * m);
  const y = new Uint8Array(n);
  const out: DriveDayRows['drives'] = [];
  let r = 0;
  for (const d of drives) {
    const f = feats.get(d.serial);
    if (!f) throw new Error(`driveDayRows: no features for drive ${d.serial}`);
    const start = r;
    for (let i = 0; i < d.days.length; i++, r++) {
      for (let c = 0; c < m; c++) data[r * m + c] = f.data[i * M + cols[c]];
      y[r] = d.failed && d.failDay - d.days[i] < DISK_HORIZON_DAYS ? 1 : 0;
    }
    out.push({ drive: d, start, end: r, rule: f.rule });
  }
  return { x: { nRows: n, nCols: m, data }, y, drives: out };
}

/**
 * Features kept out of the disk model because they measure how the drive was *collected*, not
 * its health (docs/prediction.md, "Which SMART features are sound"): the 1- and 7-day change and
 * the 7-day slope of power-on hours (SMART 9) are ≈ 24 h a day on every drive that reports daily,
 * and lower on drives that were powered off or missed days; on the 2013 training days their AUC
 * is 0.40–0.43 (*below* chance: failing drives had fewer recorded hours, an operations
 * artefact), and a live server reading SMART every 10 minutes always sees 24 h a day. The level
 * (age) stays.
 */
export const DISK_EXCLUDED_FEATURES: readonly string[] = [];

/** Indices of the feature columns that carry any value in these drives (2013 fills only a few SMART ids). */
export function filledColumns(drives: DriveHistory[], feats: Map<string, DriveFeatures>): number[] {
  const M = BACKBLAZE_FEATURE_NAMES.length;
  const has = new Uint8Array(M);
  for (const d of drives) {
    const f = feats.get(d.serial);
    if (!f) throw new Error(`filledColumns: no features for drive ${d.serial}`);
    for (let i = 0; i < f.nRows; i++) for (let c = 0; c < M; c++) if (!has[c] && !Number.isNaN(f.data[i * M + c])) has[c] = 1;
  }
  return [...has.keys()].filter((c) => has[c] && !DISK_EXCLUDED_FEATURES.includes(BACKBLAZE_FEATURE_NAMES[c]));
}
