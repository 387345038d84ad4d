/**
 * Builds the bundled default model from the public data in ../shared/data, reproducibly
 * (seeded; the version is a hash of the trained models, so the same data and seed give
 * the same version):
 * - disk: GBDT over the Backblaze 2013 daily SMART features (`driveFeatures`), split by
 *   drive 60/20/20 (evaluate.ts's `splitOf`), early-stopped and Platt-calibrated on
 *   validation, scored once on test;
 * - fail-slow: GBDT over Perseus cluster A 60-minute windows (`failSlowWindowFeatures`
 *   against the other drives of the host), 2-fold grouped by host for out-of-fold scores,
 *   Platt-calibrated on them;
 * - network, software: logistic rules whose coefficients come from stated operating points
 *   (no labelled data exists here), marked `validated: false`.
 */
import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import { existsSync } from 'node:fs';
import { GradientBoostedTrees, type FeatureMatrix, type GbdtParams } from './gbdt.ts';
import { fitCalibrator, brierScore, reliability, type Calibrator } from './calibration.ts';
import { loadBackblazeDrives, loadPerseusDrives, type PerseusDrive } from './datasets.ts';
import { DISK_HORIZON_DAYS, type DriveDayRows } from './backblaze-features.ts';
import { rocAuc, thresholdForFalseAlarmRate, thresholdForFalseAlarmBound, confusionAt } from './metrics.ts';
import { median } from './features.ts';
import { backblazeSplits, diskGbdtParams, hashUnit } from './evaluate.ts';
import { FAIL_SLOW_FEATURE_NAMES, FAIL_SLOW_WINDOW_MIN, NETWORK_FEATURE_NAMES, SOFTWARE_FEATURE_NAMES, failSlowWindowFeatures, failSlowWindowStart, FAIL_SLOW_MIN_POINTS, peerReference } from './online-features.ts';
import { SCORE_EVERY_MS, scoreTicks } from './live-datasets.ts';
import { fitLogistic, linearPredictor } from './logistic.ts';
import { BUNDLE_FORMAT, validateBundle, type GbdtModeModel, type ModeValidation, type ModelBundle, type RuleModeModel, type RuleTerm, type ScoreAnchors } from './model-bundle.ts';

export type Progress = (stage: string, fraction: number) => void;

export interface TrainDefaultOptions {
  /** Folder with backblaze_2013_dev.csv.gz and perseus_A_dev_1min.csv.gz. */
  dataDir: string;
  seed?: number;
  /** Smoke tests: read only this many rows of each file and grow tiny models. */
  maxRows?: number;
  gbdt?: Partial<GbdtParams>;
  log?: (msg: string) => void;
  progress?: Progress;
  /** ISO time stamped into the bundle (default now). */
  createdAt?: string;
}

export interface ModeTrainResult<M> {
  model: M;
  validation: ModeValidation;
  rows: number;
  units: number;
  timeRange: [number, number];
  seconds: number;
}

const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));
const logit = (p: number): number => Math.log(p / (1 - p));

/** Per-column median of the rows with label 0 (NaN skipped): the "typical healthy" reference. */
export function healthyReference(x: FeatureMatrix, y: ArrayLike<number>): (number | null)[] {
  const out: (number | null)[] = [];
  for (let c = 0; c < x.nCols; c++) {
    const vals: number[] = [];
    // A stride keeps this cheap on 400k rows; the median of 20k rows is as good.
    const stride = Math.max(1, Math.floor(x.nRows / 20_000));
    for (let r = 0; r < x.nRows; r += stride) if (y[r] === 0 && !Number.isNaN(x.data[r * x.nCols + c])) vals.push(x.data[r * x.nCols + c]);
    const m = median(vals);
    out.push(Number.isNaN(m) ? null : m);
  }
  return out;
}

/** The q-quantile of the non-NaN values (nearest rank). */
export function quantile(values: number[], q: number): number {
  const s = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
}

/** Anchors strictly increasing inside (0, 1), nudging where the data gave ties. */
export function orderedAnchors(base: number, warn: number, act: number): ScoreAnchors {
  const clamp = (p: number) => Math.min(Math.max(p, 1e-6), 0.99);
  const b = clamp(base);
  const w = Math.max(clamp(warn), b * 1.5);
  const a = Math.max(clamp(act), w * 1.5);
  return { base: b, warn: Math.min(w, 0.98), act: Math.min(Math.max(a, Math.min(w, 0.98) + 0.005), 0.99) };
}

// ------------------------------------------------------------------ disk (Backblaze)

function perDriveMax(ranges: DriveDayRows['drives'], p: Float64Array): { score: number[]; label: number[] } {
  const score: number[] = [];
  const label: number[] = [];
  for (const r of ranges) {
    let mx = -Infinity;
    for (let i = r.start; i < r.end; i++) mx = Math.max(mx, p[i]);
    score.push(mx);
    label.push(r.drive.failed ? 1 : 0);
  }
  return { score, label };
}

/** Hinge terms of the monotone disk candidates (grown defects only: the signals that mean wear). */
export const DISK_TERMS: Omit<RuleTerm, 'weight'>[] = [
  { feature: 'smart_5_level', transform: 'log10ratio', ref: 1 },
  { feature: 'smart_197_level', transform: 'log10ratio', ref: 1 },
  { feature: 'rule_sum', transform: 'log10ratio', ref: 1 },
  { feature: 'smart_5_delta7', transform: 'log10ratio', ref: 1 },
  { feature: 'smart_197_delta7', transform: 'log10ratio', ref: 1 },
  { feature: 'defects_forecast7', transform: 'log10ratio', ref: 1 },
];

/** Observed rate within `factor` of the predicted one, or within 3 binomial SDs of it (small bins). */
export function withinFactor(observed: number, predicted: number, factor: number, n: number): boolean {
  const sd = Math.sqrt(Math.max(predicted * (1 - predicted), 1e-12) / n);
  return Math.abs(observed - predicted) <= 3 * sd + 2e-4 || (observed <= predicted * factor && observed >= predicted / factor);
}

interface DiskCandidate {
  name: string;
  cVa: Float64Array;
  cTe: Float64Array;
  rule?: { intercept: number; terms: RuleTerm[] };
}

function hingeRows(rows: DriveDayRows, names: string[], terms: Omit<RuleTerm, 'weight'>[]): Float64Array {
  const cols = terms.map((t) => names.indexOf(t.feature));
  const d = terms.length;
  const out = new Float64Array(rows.x.nRows * d);
  for (let r = 0; r < rows.x.nRows; r++) for (let j = 0; j < d; j++) out[r * d + j] = cols[j] < 0 ? 0 : termValue(terms[j], rows.x.data[r * rows.x.nCols + cols[j]]);
  return out;
}

function diskLogistic(name: string, terms0: Omit<RuleTerm, 'weight'>[], names: string[], tr: DriveDayRows, va: DriveDayRows, te: DriveDayRows, l2 = 1e-3): DiskCandidate {
  const terms = terms0.filter((t) => names.includes(t.feature));
  const d = terms.length;
  // Unweighted maximum likelihood: the probabilities stay calibrated where there is no evidence
  // (class weights shift the intercept, and a Platt rescale cannot undo that bin by bin).
  const fit = fitLogistic(hingeRows(tr, names, terms), tr.y.length, d, tr.y, { l2 });
  const z = (rows: DriveDayRows) => {
    const X = hingeRows(rows, names, terms);
    return Float64Array.from({ length: rows.y.length }, (_, r) => linearPredictor(fit, X.subarray(r * d, r * d + d)));
  };
  const zVa = z(va);
  const cal = fitLogistic(zVa, zVa.length, 1, va.y, { l2: 0, nonNegative: false });
  const a = Math.max(cal.weights[0], 1e-6);
  const zTe = z(te);
  return {
    name,
    cVa: Float64Array.from(zVa, (v) => sigmoid(a * v + cal.intercept)),
    cTe: Float64Array.from(zTe, (v) => sigmoid(a * v + cal.intercept)),
    rule: { intercept: a * fit.intercept + cal.intercept, terms: terms.map((t, j) => ({ ...t, weight: a * fit.weights[j] })) },
  };
}

function judgeDisk(c: DiskCandidate, va: DriveDayRows, te: DriveDayRows): { vaRecall: number; teAuc: number; teRecall: number; teLead: number | null } {
  const dVa = perDriveMax(va.drives, c.cVa);
  const thr = thresholdForFalseAlarmRate(dVa.score.filter((_, i) => dVa.label[i] === 0), 0.01);
  const dTe = perDriveMax(te.drives, c.cTe);
  const leads: number[] = [];
  for (const r of te.drives) {
    if (!r.drive.failed) continue;
    for (let i = r.start; i < r.end; i++) if (c.cTe[i] > thr) {
      leads.push(r.drive.failDay - r.drive.days[i - r.start]);
      break;
    }
  }
  leads.sort((x, y) => x - y);
  return {
    vaRecall: confusionAt(dVa.score, dVa.label, thr).recall,
    teAuc: rocAuc(dTe.score, dTe.label),
    teRecall: confusionAt(dTe.score, dTe.label, thr).recall,
    teLead: leads.length ? leads[leads.length >> 1] : null,
  };
}

export async function trainDiskMode(path: string, opts: { seed: number; maxRows?: number; gbdt?: Partial<GbdtParams>; log: (m: string) => void; progress?: Progress }): Promise<ModeTrainResult<GbdtModeModel | RuleModeModel>> {
  const t0 = Date.now();
  const { seed, log } = opts;
  opts.progress?.('disk: loading Backblaze', 0);
  const drives = await loadBackblazeDrives(path, { limit: opts.maxRows });
  log(`disk: ${drives.length} drives loaded from ${basename(path)}`);
  const { names, train: tr, validation: va, test: te } = backblazeSplits(drives, seed);
  const pos = (y: Uint8Array) => y.reduce((s, v) => s + v, 0);
  const trPos = pos(tr.y);
  const vaPos = pos(va.y);
  if (trPos === 0 || vaPos === 0) throw new Error(`disk: the train (${trPos}) or validation (${vaPos}) split has no positive drive-day; use more rows`);
  // The evaluation's a-priori choices (docs/eval-backblaze.md): nothing tuned on test.
  const params = diskGbdtParams(tr, seed, opts.gbdt);
  const nTrees = params.nTrees ?? 400;
  const model = GradientBoostedTrees.train(tr.x, tr.y, {
    featureNames: names, params, validation: { x: va.x, y: va.y },
    onRound: (r) => opts.progress?.('disk: boosting', Math.min(1, (r + 1) / nTrees)),
  });
  log(`disk: ${model.nTrees} trees on ${tr.x.nRows} rows × ${names.length} features`);
  const gbdtVa = model.predictProbaBatch(va.x);
  const gcal: Calibrator = fitCalibrator(gbdtVa, va.y, { method: 'platt' });
  const gbdtTe = model.predictProbaBatch(te.x);
  // Candidates: the GBDT, and monotone logistic models over grown-defect hinge terms with and
  // without the forecast term (docs/prediction.md "Forecast-driven disk score"). Each is
  // calibrated on validation; the one with the best validation recall at 1 % of healthy drives
  // wins (a tie goes to the monotone model); test is scored once for the report.
  const cands: DiskCandidate[] = [
    { name: 'gbdt', cVa: Float64Array.from(gbdtVa, (p) => gcal.predict(p)), cTe: Float64Array.from(gbdtTe, (p) => gcal.predict(p)) },
    diskLogistic('logistic+forecast', DISK_TERMS, names, tr, va, te),
    diskLogistic('logistic', DISK_TERMS.filter((t) => t.feature !== 'defects_forecast7'), names, tr, va, te),
  ];
  const judged = cands.map((c) => ({ c, ...judgeDisk(c, va, te) }));
  for (const j of judged) log(`disk: ${j.c.name}: validation recall@1% ${j.vaRecall.toFixed(3)}; test AUC ${j.teAuc.toFixed(3)}, recall@act ${j.teRecall.toFixed(3)}, median lead ${j.teLead === null ? 'n/a' : j.teLead.toFixed(1)} d`);
  // Only a calibrated candidate may serve: on validation its Brier must beat the base rate's and
  // every one of 5 equal-count reliability bins must be within 3 binomial SDs of its mean
  // prediction (the check default-model-calibration.test.ts makes on test).
  const vaRate = pos(va.y) / va.y.length;
  const baseBrier = brierScore(new Float64Array(va.y.length).fill(vaRate), va.y);
  const calibrated = (c: DiskCandidate) => brierScore(c.cVa, va.y) < baseBrier && reliability(c.cVa, va.y, 5, 'quantile').bins.every((b) => withinFactor(b.fractionPositive, b.meanPredicted, 1, b.count));
  const eligible = judged.filter((j) => j.c.name === 'gbdt' || calibrated(j.c));
  for (const j of judged) if (!eligible.includes(j)) log(`disk: ${j.c.name} not eligible: not calibrated on validation (Brier ${brierScore(j.c.cVa, va.y).toExponential(3)} vs base rate ${baseBrier.toExponential(3)}, or a reliability bin off)`);
  const best = eligible.reduce((a, b) => (b.vaRecall > a.vaRecall || (b.vaRecall === a.vaRecall && a.c.name === 'gbdt') ? b : a));
  const { cVa, cTe } = best.c;
  // Anchors from validation drives (per-drive max, as the evaluation alarms): act where the
  // healthy drives that would EVER alarm stay <= 1 % with 95 % confidence (a threshold at 1 % of
  // this sample alarms more than 1 % of another fleet about half the time), warn at 5 %,
  // base = a typical healthy drive-day.
  const dVa = perDriveMax(va.drives, cVa);
  const healthyVa = dVa.score.filter((_, i) => dVa.label[i] === 0);
  const act = thresholdForFalseAlarmBound(healthyVa, 0.01);
  const warn = thresholdForFalseAlarmRate(healthyVa, 0.05);
  const healthyRows = Array.from(cVa).filter((_, i) => va.y[i] === 0);
  const anchors = orderedAnchors(quantile(healthyRows, 0.95), warn, act);
  // Test: touched once.
  const dTe = perDriveMax(te.drives, cTe);
  const conf = confusionAt(dTe.score, dTe.label, act);
  const teRate = pos(te.y) / te.x.nRows;
  const others = judged.filter((j) => j !== best).map((j) => `${j.c.name}: validation recall@1% ${j.vaRecall.toFixed(3)}, test AUC ${j.teAuc.toFixed(3)}, test recall ${j.teRecall.toFixed(3)}, median lead ${j.teLead === null ? 'n/a' : j.teLead.toFixed(1)} d`).join('; ');
  const validation: ModeValidation = {
    auc: rocAuc(dTe.score, dTe.label),
    recallAt1pctFA: conf.recall,
    brier: brierScore(cTe, te.y),
    brierBaseRate: brierScore(new Float64Array(te.x.nRows).fill(teRate), te.y),
    unit: `drive (max over its days); Brier over ${te.x.nRows} test drive-days`,
    positives: dTe.label.filter((v) => v === 1).length,
    negatives: dTe.label.filter((v) => v === 0).length,
    protocol: `Backblaze 2013 dev split by drive (seed ${seed}): train 60 %, validation 20 % (early stopping, calibration, model choice, thresholds), test 20 % scored once. Chosen: ${best.c.name} (median lead on test ${best.teLead === null ? 'n/a' : best.teLead.toFixed(1)} d). Not chosen: ${others}. recallAt1pctFA uses the act threshold fixed on validation (healthy drives ever alarming <= 1 % at 95 % confidence; false alarms on test: ${conf.fp}/${conf.fp + conf.tn} healthy drives).`,
  };
  let minDay = Infinity;
  let maxDay = -Infinity;
  for (const d of drives) {
    minDay = Math.min(minDay, d.days[0]);
    maxDay = Math.max(maxDay, d.days[d.days.length - 1]);
  }
  const common = {
    horizon: `${DISK_HORIZON_DAYS}d`,
    features: names,
    reference: healthyReference(tr.x, tr.y),
    anchors,
    validated: true,
  };
  const modeModel: GbdtModeModel | RuleModeModel = best.c.rule
    ? {
      kind: 'rule', ...common,
      notes: `P(the drive fails within ${DISK_HORIZON_DAYS} days): a logistic model with non-negative weights FITTED on Backblaze Drive Stats 2013 (dev split) over hinge terms of grown defects (SMART 5, 197 and the rule sum of 5/187/188/197/198, their 7-day growth${best.c.name.includes('forecast') ? ' and the 7-day linear-trend forecast of the defects' : ''}): monotone in defects, so a drive that grows more defects never scores lower. Chosen over the GBDT on validation recall. HDDs of 2013; needs smartctl on the server; without SMART the mode has no input.`,
      intercept: best.c.rule.intercept, terms: best.c.rule.terms,
    }
    : {
      kind: 'gbdt', ...common,
      notes: `P(the drive fails within ${DISK_HORIZON_DAYS} days) from daily SMART (1, 5, 9, 194, 197 are the attributes filled in 2013). Trained on Backblaze Drive Stats 2013 (dev split); HDDs of 2013, so SMART 1 and 9 encodings are vendor-specific and transfer to other drives is unproven. Needs smartctl on the server; without SMART the mode has no input.`,
      gbdt: model.toJSON(),
      calibrator: gcal.toJSON(),
    };
  return { model: modeModel, validation, rows: tr.x.nRows + va.x.nRows + te.x.nRows, units: drives.length, timeRange: [minDay * 86_400_000, maxDay * 86_400_000], seconds: (Date.now() - t0) / 1000 };
}

// ------------------------------------------------------------------ fail-slow (Perseus)

export interface SlowWindows {
  x: FeatureMatrix;
  y: Uint8Array;
  host: Int32Array;
  drive: string[];
}

/**
 * Cuts every drive's recording into the 60-minute windows a live server would score (one every
 * SCORE_EVERY_MS) and computes the fail-slow features of each against peerReference of the other
 * drives of its host over the same window (fewer than FAIL_SLOW_MIN_POINTS minutes: no row, as live).
 */
export function perseusWindows(drives: PerseusDrive[]): SlowWindows {
  const rows: number[] = [];
  const ys: number[] = [];
  const hosts: number[] = [];
  const ids: string[] = [];
  const byHost = new Map<number, PerseusDrive[]>();
  for (const d of drives) {
    if (!byHost.has(d.host)) byHost.set(d.host, []);
    byHost.get(d.host)!.push(d);
  }
  const F = FAIL_SLOW_FEATURE_NAMES.length;
  for (const [host, ds] of [...byHost].sort((a, b) => a[0] - b[0])) {
    const tsSet = new Set<number>();
    for (const d of ds) for (const t of d.ts) tsSet.add(t);
    const ts = [...tsSet].sort((a, b) => a - b);
    const T = ts.length;
    const tIndex = new Map(ts.map((t, i) => [t, i]));
    const grid = (pick: (d: PerseusDrive) => Float64Array) => ds.map((d) => {
      const a = new Float64Array(T).fill(NaN);
      const v = pick(d);
      d.ts.forEach((t, i) => (a[tIndex.get(t)!] = v[i]));
      return a;
    });
    const lat = grid((d) => d.latencyMean);
    const tp = grid((d) => d.throughput);
    const D = ds.length;
    // Windows: the ones a live server scores — every SCORE_EVERY_MS, the FAIL_SLOW_WINDOW_MIN
    // minutes ending then (scoreTicks, shared with eval and replay), half of them at least filled.
    // The reference of each drive is peerReference over the other drives of the host in the same
    // window: the definition servers use for their peer group (src/prediction/online-features.ts).
    for (const tick of scoreTicks(ts.map((t) => t * 1000), SCORE_EVERY_MS)) {
      const lo = lowerBound(ts, failSlowWindowStart(tick) / 1000);
      const hi = lowerBound(ts, tick / 1000 + 1e-9);
      if (hi - lo < FAIL_SLOW_MIN_POINTS) continue;
      const sl = (a: Float64Array) => a.subarray(lo, hi);
      for (let j = 0; j < D; j++) {
        const others = (src: Float64Array[]) => src.filter((_, q) => q !== j).map(sl);
        const rl = peerReference(others(lat));
        const rt = peerReference(others(tp));
        if (!Number.isFinite(rl.median)) continue;
        const f = failSlowWindowFeatures(sl(lat[j]), sl(tp[j]), { latMedian: rl.median, latMad: rl.mad, tpMedian: rt.median, tpMad: rt.mad });
        if (Number.isNaN(f[0])) continue;
        for (let c = 0; c < F; c++) rows.push(f[c]);
        ys.push(ds[j].slow ? 1 : 0);
        hosts.push(host);
        ids.push(`${host}/${ds[j].disk}`);
      }
    }
  }
  return { x: { nRows: ys.length, nCols: F, data: Float64Array.from(rows) }, y: Uint8Array.from(ys), host: Int32Array.from(hosts), drive: ids };
}

function lowerBound(a: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The fail-slow model's evidence terms (hinges: no evidence below the reference, growing
 * without bound above it): latency against the peers as a ratio (decades), as a robust z, and
 * the share of the window's minutes more than 3 robust SDs above the peers.
 */
export const FAIL_SLOW_TERMS: Omit<RuleTerm, 'weight'>[] = [
  { feature: 'fs_lat_ratio_median', transform: 'log10ratio', ref: 1 },
  { feature: 'fs_lat_dev_median', transform: 'linear', ref: 0, scale: 1 },
  { feature: 'fs_lat_dev_frac3', transform: 'linear', ref: 0, scale: 0.1 },
];

/** The hinge value of one term (RuleTerm semantics, the scorer's ruleProbability). */
export function termValue(t: Omit<RuleTerm, 'weight'>, x: number): number {
  if (Number.isNaN(x)) return 0;
  const u = t.transform === 'log10ratio' ? (x > 0 ? Math.log10(x / t.ref) : 0) : (x - t.ref) / t.scale!;
  return Math.max(0, u);
}

function termMatrix(w: { x: FeatureMatrix }, idx: number[]): Float64Array {
  const d = FAIL_SLOW_TERMS.length;
  const cols = FAIL_SLOW_TERMS.map((t) => (FAIL_SLOW_FEATURE_NAMES as readonly string[]).indexOf(t.feature));
  const out = new Float64Array(idx.length * d);
  idx.forEach((r, k) => cols.forEach((c, j) => (out[k * d + j] = termValue(FAIL_SLOW_TERMS[j], w.x.data[r * w.x.nCols + c]))));
  return out;
}

export async function trainFailSlowMode(path: string, opts: { seed: number; maxRows?: number; gbdt?: Partial<GbdtParams>; log: (m: string) => void; progress?: Progress }): Promise<ModeTrainResult<RuleModeModel>> {
  const t0 = Date.now();
  const { seed, log } = opts;
  opts.progress?.('fail-slow: loading Perseus', 0);
  const drives = await loadPerseusDrives(path, { limit: opts.maxRows });
  opts.progress?.('fail-slow: windows', 0.3);
  const w = perseusWindows(drives);
  const nPos = w.y.reduce((s, v) => s + v, 0);
  log(`fail-slow: ${drives.length} drives, ${w.y.length} windows of ${FAIL_SLOW_WINDOW_MIN} min, ${nPos} from slow drives`);
  if (nPos === 0) throw new Error('fail-slow: no window from a slow drive; use more rows');
  // Two folds grouped by host; the hosts with slow drives are dealt to alternate folds so
  // each fold's model has seen a slow drive (there are two).
  const hostList = [...new Set(w.host)].sort((a, b) => hashUnit(String(a), seed) - hashUnit(String(b), seed));
  const slowHosts = new Set<number>();
  for (let i = 0; i < w.y.length; i++) if (w.y[i]) slowHosts.add(w.host[i]);
  const fold = new Map<number, number>();
  let s = 0;
  let h = 0;
  for (const host of hostList) fold.set(host, slowHosts.has(host) ? s++ % 2 : h++ % 2);
  const d = FAIL_SLOW_TERMS.length;
  const all = Array.from(w.y, (_, i) => i);
  const X = termMatrix(w, all);
  // Balanced classes: each class weighs the same in the loss.
  const fitOn = (idx: number[]) => {
    const p = idx.reduce((a, r) => a + w.y[r], 0);
    const rw = Float64Array.from(idx, (r) => (w.y[r] ? (idx.length - p) / Math.max(p, 1) : 1));
    const x = new Float64Array(idx.length * d);
    idx.forEach((r, k) => x.set(X.subarray(r * d, r * d + d), k * d));
    return fitLogistic(x, idx.length, d, Uint8Array.from(idx, (r) => w.y[r]), { rowWeight: rw, l2: 1e-3 });
  };
  const oofZ = new Float64Array(w.y.length).fill(NaN);
  for (const k of [0, 1]) {
    const trainIdx = all.filter((i) => fold.get(w.host[i]) !== k);
    const testIdx = all.filter((i) => fold.get(w.host[i]) === k);
    const fit = fitOn(trainIdx);
    for (const r of testIdx) oofZ[r] = linearPredictor(fit, X.subarray(r * d, r * d + d));
    opts.progress?.('fail-slow: folds', 0.4 + 0.25 * (k + 1));
  }
  const final = fitOn(all);
  // Calibration: a logistic map of the out-of-fold linear predictor onto the outcome (Platt on
  // the logit), folded into the final weights; it must keep the slope positive (monotone).
  const cal = fitLogistic(oofZ, oofZ.length, 1, w.y, { l2: 0, nonNegative: false });
  const a = cal.weights[0];
  if (!(a > 0)) throw new Error(`fail-slow: calibration slope ${a} is not positive: the terms do not separate slow drives`);
  const cOof = Float64Array.from(oofZ, (z) => sigmoid(a * z + cal.intercept));
  const neg = Array.from(cOof).filter((_, i) => w.y[i] === 0);
  const thr = thresholdForFalseAlarmRate(neg, 0.01);
  const conf = confusionAt(cOof, w.y, thr);
  const rate = nPos / w.y.length;
  const validation: ModeValidation = {
    auc: rocAuc(cOof, w.y),
    recallAt1pctFA: conf.recall,
    brier: brierScore(cOof, w.y),
    brierBaseRate: brierScore(new Float64Array(w.y.length).fill(rate), w.y),
    unit: `${FAIL_SLOW_WINDOW_MIN}-minute drive window`,
    positives: nPos,
    negatives: w.y.length - nPos,
    protocol: `Perseus cluster A (dev split), 2 folds grouped by host (each fold holds one of the ${slowHosts.size} hosts with a slow drive): out-of-fold scores. The calibration is fitted on those same out-of-fold scores, so the Brier is optimistic, and with ${slowHosts.size} slow drives every number here rests on two drives.`,
  };
  opts.progress?.('fail-slow: done', 1);
  // Anchors as the disk mode sets them, per unit: a server is scored every few minutes for weeks,
  // so what matters is how many healthy drives would *ever* alarm. act = the out-of-fold
  // probability above which at most 0.5 % of healthy drives' hourly maxima lie (never below
  // "more likely than not"), warn = 5 %, base = a typical healthy window.
  const driveMax = new Map<string, { p: number; slow: boolean }>();
  cOof.forEach((p, i) => {
    const e = driveMax.get(w.drive[i]);
    if (!e || p > e.p) driveMax.set(w.drive[i], { p, slow: w.y[i] === 1 });
  });
  const healthyMax = [...driveMax.values()].filter((e) => !e.slow).map((e) => e.p);
  const anchors = orderedAnchors(quantile(neg, 0.95), Math.max(0.2, thresholdForFalseAlarmRate(healthyMax, 0.05)), Math.max(0.5, thresholdForFalseAlarmRate(healthyMax, 0.005)));
  log(`fail-slow: anchors base ${anchors.base.toExponential(2)}, warn ${anchors.warn.toFixed(4)}, act ${anchors.act.toFixed(4)}`);
  const terms: RuleTerm[] = FAIL_SLOW_TERMS.map((t, j) => ({ ...t, weight: a * final.weights[j] }));
  log(`fail-slow: weights ${terms.map((t) => `${t.feature}=${t.weight.toFixed(3)}`).join(', ')}`);
  const modeModel: RuleModeModel = {
    kind: 'rule',
    horizon: '1h',
    features: [...FAIL_SLOW_FEATURE_NAMES],
    reference: healthyReference(w.x, w.y),
    anchors,
    validated: true,
    notes: 'P(the server is fail-slow over the next hour): detection of a persistently slow drive (Perseus labels are per drive with no onset time, so this detects, it does not foresee). A logistic model with non-negative weights FITTED on Perseus windows over hinge terms of latency against the peers (ratio in decades, robust z, share of minutes above 3 robust SDs): monotone, and not capped below 1, so a drive far slower than its peers scores above a mildly slow one. The reference is peerReference: the other units of the peer group (training: the other drives of the host) pooled over the same window. Trained on two slow drives out of 360.',
    intercept: a * final.intercept + cal.intercept,
    terms,
  };
  const tsAll = drives.flatMap((dr) => [dr.ts[0], dr.ts[dr.ts.length - 1]]);
  return { model: modeModel, validation, rows: w.y.length, units: drives.length, timeRange: [Math.min(...tsAll) * 1000, Math.max(...tsAll) * 1000], seconds: (Date.now() - t0) / 1000 };
}

// ------------------------------------------------------------------ heuristic modes

/**
 * Network: p = sigmoid(−6 + Σ w·max(0, log10(x / ref))). Operating points (stated, not
 * fitted): each input alone reaches p = 0.5 at 5 % TCP retransmissions, 1 % packet
 * errors/drops, or 1 % of data-protocol requests failing; at its reference level it adds
 * nothing. p with no evidence = sigmoid(−6) ≈ 0.25 %.
 */
export function networkRuleModel(): RuleModeModel {
  const intercept = -6;
  const reach = (ref: number, half: number) => -intercept / Math.log10(half / ref); // weight giving p=0.5 at `half`
  return {
    kind: 'rule',
    horizon: '1h',
    features: [...NETWORK_FEATURE_NAMES],
    reference: [0.001, 0.0001, 0.0001],
    anchors: { base: sigmoid(intercept), warn: 0.2, act: 0.5 },
    validated: false,
    notes: 'HEURISTIC, UNVALIDATED: no labelled network-failure data exists in ../shared/data. P(a network failure that takes the server out within the hour) as a logistic rule over the 15-minute TCP retransmit ratio, NIC error+drop ratio and data-protocol error ratio; each alone reaches p = 0.5 at 5 % retransmits, 1 % errors/drops or 1 % failed requests. The probabilities are set by construction from these operating points, not calibrated on outcomes.',
    intercept,
    terms: [
      { feature: 'net_retrans_ratio', transform: 'log10ratio', ref: 0.001, weight: reach(0.001, 0.05) },
      { feature: 'net_err_drop_ratio', transform: 'log10ratio', ref: 0.0001, weight: reach(0.0001, 0.01) },
      { feature: 'io_error_ratio', transform: 'log10ratio', ref: 0.0001, weight: reach(0.0001, 0.01) },
    ],
  };
}

/**
 * Software: memory growth of the server process (a leak) and host memory pressure.
 * Each growth input reaches p = 0.5 at 10 %/h sustained over 6 h (memory doubles in
 * ~10 h); host memory use adds 3 logits per 5 points above 90 %.
 */
export function softwareRuleModel(): RuleModeModel {
  const intercept = -6;
  return {
    kind: 'rule',
    horizon: '6h',
    features: [...SOFTWARE_FEATURE_NAMES],
    reference: [0, 0, 0.5],
    anchors: { base: sigmoid(intercept), warn: 0.2, act: 0.5 },
    validated: false,
    notes: 'HEURISTIC, UNVALIDATED: no labelled software-failure data exists in ../shared/data. P(the server process fails — OOM, crash — within 6 h) as a logistic rule over the 6-hour relative growth of V8 heap and RSS (a leak) and host memory use; each growth alone reaches p = 0.5 at 10 %/h, memory use adds weight above 90 %. Set by construction, not calibrated on outcomes.',
    intercept,
    terms: [
      { feature: 'sw_heap_growth_per_h', transform: 'log10ratio', ref: 0.01, weight: 6 },
      { feature: 'sw_rss_growth_per_h', transform: 'log10ratio', ref: 0.01, weight: 6 },
      { feature: 'sw_mem_used_ratio', transform: 'linear', ref: 0.9, scale: 0.05, weight: 3 },
    ],
  };
}

// ------------------------------------------------------------------ the bundle

export const COMBINATION_DESCRIPTION = 'Each mode\'s calibrated probability p is mapped to a mode score through its anchors (0 → 0, base → 10, warn → 50, act → 70, 1 → 100; piecewise linear in log p between anchors). The Failure Score is the largest mode score and the leading mode is that mode. Modes are not summed: their horizons differ (7 d vs 1 h), so a joint probability would mix horizons. 70 = act (drain the server), 50 = warning.';

/** Short content hash: the same models give the same version. */
export function contentVersion(prefix: string, modes: unknown): string {
  return `${prefix}-${createHash('sha256').update(JSON.stringify(modes)).digest('hex').slice(0, 12)}`;
}

export async function trainDefaultBundle(opts: TrainDefaultOptions): Promise<ModelBundle> {
  const seed = opts.seed ?? 1;
  const log = opts.log ?? (() => {});
  const bb = join(opts.dataDir, 'backblaze_2013_dev.csv.gz');
  const ps = join(opts.dataDir, 'perseus_A_dev_1min.csv.gz');
  for (const p of [bb, ps]) if (!existsSync(p)) throw new Error(`training data not found: ${p}`);
  const disk = await trainDiskMode(bb, { seed, maxRows: opts.maxRows, gbdt: opts.gbdt, log, progress: opts.progress });
  const slow = await trainFailSlowMode(ps, { seed, maxRows: opts.maxRows, gbdt: opts.gbdt, log, progress: opts.progress });
  const modes = { disk: disk.model, 'fail-slow': slow.model, network: networkRuleModel(), software: softwareRuleModel() };
  const iso = (ms: number) => new Date(ms).toISOString();
  const bundle: ModelBundle = {
    format: BUNDLE_FORMAT,
    version: contentVersion(`default-s${seed}`, modes),
    createdAt: opts.createdAt ?? new Date().toISOString(),
    trainedOn: {
      datasets: [basename(bb), basename(ps)],
      rows: disk.rows + slow.rows,
      drives: disk.units + slow.units,
      timeRange: { from: iso(Math.min(disk.timeRange[0], slow.timeRange[0])), to: iso(Math.max(disk.timeRange[1], slow.timeRange[1])) },
      seed,
    },
    validation: { disk: disk.validation, 'fail-slow': slow.validation },
    modes,
    combination: { method: 'max-anchored', description: COMBINATION_DESCRIPTION },
    notes: 'Default model shipped with Presage. disk and fail-slow are trained on public data (Backblaze Drive Stats 2013; Perseus, Lu et al., FAST \'23 / Alibaba); network and software are heuristic rules with no validation. Retrained models replace it only when they validate at least as well (src/prediction/lifecycle.ts).',
  };
  return validateBundle(bundle);
}

export { logit };
