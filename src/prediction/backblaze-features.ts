/**
 * Per drive-day features from a Backblaze SMART history, using only the past:
 * the row for day d sees observations on days <= d of the same drive.
 */
import { BACKBLAZE_SMART, type DriveHistory } from './datasets.ts';
import { ewma, linearSlope } from './features.ts';

/** SMART attributes of the classic threshold rule (Backblaze's own "any raw > 0" signals). */
export const SMART_RULE_ATTRS = [5, 187, 188, 197, 198] as const;

const PER_ATTR = ['level', 'delta1', 'delta7', 'ewma03', 'slope7'] as const;

/** All feature names, in column order. */
export const BACKBLAZE_FEATURE_NAMES: string[] = [
  ...BACKBLAZE_SMART.flatMap((s) => PER_ATTR.map((f) => `smart_${s}_${f}`)),
  'rule_any_positive',
  'rule_sum',
];

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
    data[i * m + m - 2] = seen ? any : NaN;
    data[i * m + m - 1] = seen ? sum : NaN;
  }
  return { data, nRows: n, rule };
}
