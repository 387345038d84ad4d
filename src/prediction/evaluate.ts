/**
 * Honest evaluation of the failure-mode models on the real datasets.
 *
 * Rules kept everywhere: split by drive (or host), never by row; features from the
 * past only; train on train, early-stop / calibrate / fix thresholds on validation,
 * touch test once; baselines on the same test split; deterministic for a seed.
 */
import { cpus, totalmem } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { GradientBoostedTrees, type FeatureMatrix, type GbdtParams } from './gbdt.ts';
import { fitCalibrator, brierScore, reliability, type Calibrator } from './calibration.ts';
import { loadBackblazeDrives, loadPerseusDrives, readPerseusSlowDrives, loadAlibabaTickets, BACKBLAZE_SMART, type DriveHistory, type PerseusDrive } from './datasets.ts';
import { BACKBLAZE_FEATURE_NAMES, DISK_HORIZON_DAYS, driveDayRows, driveFeatures, filledColumns, type DriveDayRows, type DriveFeatures } from './backblaze-features.ts';
import { rocAuc, confusionAt, thresholdForFalseAlarmRate, recallAtFalseAlarmRate, leadTimes, median, type Confusion } from './metrics.ts';
import { pearson, linearSlope, peerDeviation, median as fmedian } from './features.ts';

export interface EvalOptions {
  dataset: string;
  out?: string;
  seed?: number;
  /** Read only the first N rows (smoke tests). */
  maxRows?: number;
  /** Override GBDT parameters (smoke tests use tiny models). */
  gbdt?: Partial<GbdtParams>;
  /** Skip the 2019-2020 lead-time study even if the file is next to the 2013 one. */
  skipTransfer?: boolean;
  log?: (msg: string) => void;
}

export interface EvalReport {
  dataset: string;
  kind: 'backblaze' | 'perseus' | 'alibaba';
  seed: number;
  startedAt: string;
  seconds: number;
  machine: string;
  /** Headline numbers, by name. */
  metrics: Record<string, number | string | null>;
  markdown: string;
}

const FAR_LEVELS = [0.001, 0.01];

/** FNV-1a of seed + key, as a number in [0, 1): the drive's (or host's) split coordinate. */
export function hashUnit(key: string, seed: number): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Final avalanche (murmur3 fmix32) so nearby serials spread out.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

export type Split = 'train' | 'validation' | 'test';
export function splitOf(key: string, seed: number): Split {
  const u = hashUnit(key, seed);
  return u < 0.6 ? 'train' : u < 0.8 ? 'validation' : 'test';
}

/** The Backblaze protocol's data (evaluation and training alike): drive-day rows of each split, over the columns the training split fills. */
export interface BackblazeSplits {
  /** Indices into BACKBLAZE_FEATURE_NAMES, and their names. */
  cols: number[];
  names: string[];
  train: DriveDayRows;
  validation: DriveDayRows;
  test: DriveDayRows;
}

/** Splits the drives by serial (splitOf with the seed) and builds each split's rows. */
export function backblazeSplits(drives: DriveHistory[], seed: number): BackblazeSplits {
  const feats = new Map<string, DriveFeatures>();
  for (const d of drives) feats.set(d.serial, driveFeatures(d));
  const split: Record<Split, DriveHistory[]> = { train: [], validation: [], test: [] };
  for (const d of drives) split[splitOf(d.serial, seed)].push(d);
  const cols = filledColumns(split.train, feats);
  return {
    cols,
    names: cols.map((c) => BACKBLAZE_FEATURE_NAMES[c]),
    train: driveDayRows(split.train, feats, cols),
    validation: driveDayRows(split.validation, feats, cols),
    test: driveDayRows(split.test, feats, cols),
  };
}

/**
 * The disk GBDT's parameters, fixed a priori (docs/eval-backblaze.md): nothing is tuned on
 * test. Class weight: the square root of the training rows' imbalance (full balancing
 * over-weights ~300 rows). `overrides` last (smoke tests use tiny models).
 */
export function diskGbdtParams(train: DriveDayRows, seed: number, overrides?: Partial<GbdtParams>): Partial<GbdtParams> {
  let pos = 0;
  for (const v of train.y) pos += v;
  return {
    nTrees: 400,
    maxDepth: 4,
    learningRate: 0.05,
    minChildWeight: 2,
    lambda: 5,
    subsample: 0.7,
    positiveWeight: Math.sqrt((train.x.nRows - pos) / pos),
    earlyStoppingRounds: 40,
    earlyStoppingMetric: 'auc',
    seed,
    ...overrides,
  };
}

function machine(): string {
  const c = cpus();
  return `${c[0]?.model ?? 'unknown CPU'} (${c.length} logical cores visible, 1 used), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.version}`;
}

const fmt = (v: number | null | undefined, d = 3): string => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : Number.isInteger(v) ? String(v) : v.toFixed(d));
const pct = (v: number): string => (Number.isNaN(v) ? 'n/a' : `${(v * 100).toFixed(1)} %`);

export async function runEvaluation(opts: EvalOptions): Promise<EvalReport> {
  const seed = opts.seed ?? 1;
  const t0 = Date.now();
  const startedAt = new Date(t0).toISOString();
  const name = basename(opts.dataset);
  let body: { kind: EvalReport['kind']; metrics: EvalReport['metrics']; markdown: string };
  if (name.startsWith('backblaze_2013')) body = await evaluateBackblaze(opts.dataset, seed, opts);
  else if (name.startsWith('backblaze_2019')) {
    const dev = join(dirname(opts.dataset), 'backblaze_2013_dev.csv.gz');
    if (!existsSync(dev)) throw new Error(`the 2019-2020 study needs the 2013 model: ${dev} not found`);
    body = await evaluateBackblaze(dev, seed, { ...opts, skipTransfer: false });
  } else if (name.startsWith('perseus')) body = await evaluatePerseus(opts.dataset, seed, opts);
  else if (name.startsWith('alibaba')) body = await describeAlibaba(opts.dataset, opts);
  else throw new Error(`no evaluation defined for ${name} (expected backblaze_2013*, backblaze_2019*, perseus*, alibaba*)`);
  const seconds = (Date.now() - t0) / 1000;
  const header = [
    `_Generated by \`npx tsx bench/eval.ts --dataset ${opts.dataset}${opts.seed !== undefined ? ` --seed ${seed}` : ''}\` on ${startedAt}._`,
    `_Machine: ${machine()}. Wall time: ${seconds.toFixed(1)} s. Seed: ${seed}._`,
    '',
  ].join('\n');
  const report: EvalReport = { dataset: opts.dataset, kind: body.kind, seed, startedAt, seconds, machine: machine(), metrics: body.metrics, markdown: `${body.markdown.replace('\n', `\n\n${header}\n`)}` };
  if (opts.out) {
    await mkdir(dirname(opts.out), { recursive: true });
    await writeFile(opts.out, report.markdown);
  }
  return report;
}

// ------------------------------------------------------------------ Backblaze

interface DriveScores {
  serial: string[];
  label: Uint8Array;
  /** max over the drive's days of the row score. */
  score: Float64Array;
  rule: Uint8Array;
  series: { days: Int32Array; scores: Float64Array; rule: Uint8Array; failDay: number; failed: boolean }[];
}

function perDrive(a: DriveDayRows, rowScores: Float64Array): DriveScores {
  const k = a.drives.length;
  const res: DriveScores = { serial: [], label: new Uint8Array(k), score: new Float64Array(k), rule: new Uint8Array(k), series: [] };
  a.drives.forEach((d, i) => {
    res.serial.push(d.drive.serial);
    res.label[i] = d.drive.failed ? 1 : 0;
    let mx = -Infinity;
    let rule = 0;
    for (let r = d.start; r < d.end; r++) mx = Math.max(mx, rowScores[r]);
    for (let j = 0; j < d.rule.length; j++) rule |= d.rule[j];
    res.score[i] = mx;
    res.rule[i] = rule;
    res.series.push({ days: d.drive.days, scores: rowScores.subarray(d.start, d.end), rule: d.rule, failDay: d.drive.failDay, failed: d.drive.failed });
  });
  return res;
}

function leadStats(ds: DriveScores, threshold: number): { median: number; values: number[] } {
  const failed = ds.series.filter((s) => s.failed);
  const lt = leadTimes(failed.map((s) => ({ days: s.days, scores: s.scores, failDay: s.failDay })), threshold).filter((v): v is number => v !== null);
  return { median: median(lt), values: lt };
}

function ruleLead(ds: DriveScores): { median: number; values: number[] } {
  const failed = ds.series.filter((s) => s.failed);
  const lt = leadTimes(failed.map((s) => ({ days: s.days, scores: Array.from(s.rule), failDay: s.failDay })), 0.5).filter((v): v is number => v !== null);
  return { median: median(lt), values: lt };
}

function confRow(label: string, c: Confusion, lead: number, extra = ''): string {
  return `| ${label} | ${c.tp}/${c.tp + c.fn} (${pct(c.recall)}) | ${c.fp}/${c.fp + c.tn} (${pct(c.falseAlarmRate)}) | ${pct(c.precision)} | ${fmt(lead, 1)} | ${extra} |`;
}

async function evaluateBackblaze(path: string, seed: number, opts: EvalOptions): Promise<{ kind: 'backblaze'; metrics: EvalReport['metrics']; markdown: string }> {
  const log = opts.log ?? (() => {});
  const tLoad = Date.now();
  const drives = await loadBackblazeDrives(path, { limit: opts.maxRows });
  log(`loaded ${drives.length} drives in ${((Date.now() - tLoad) / 1000).toFixed(1)} s`);
  const { cols, names, train: tr, validation: va, test: te } = backblazeSplits(drives, seed);
  const count = (a: DriveDayRows): { drives: number; failed: number; rows: number; pos: number } => ({
    drives: a.drives.length,
    failed: a.drives.filter((d) => d.drive.failed).length,
    rows: a.x.nRows,
    pos: a.y.reduce((s, v) => s + v, 0),
  });
  const cTr = count(tr);
  const cVa = count(va);
  const cTe = count(te);
  log(`split train ${JSON.stringify(cTr)} validation ${JSON.stringify(cVa)} test ${JSON.stringify(cTe)}`);
  if (cTr.pos === 0 || cTr.pos === cTr.rows) throw new Error('backblaze: the training split has a single class; use more rows');
  if (cTe.drives === cTe.failed) throw new Error('backblaze: the test split has no healthy drive; use more rows');

  const params = diskGbdtParams(tr, seed, opts.gbdt);
  const positiveWeight = params.positiveWeight!;
  const tTrain = Date.now();
  const hasVal = cVa.pos > 0 && cVa.pos < cVa.rows;
  const model = GradientBoostedTrees.train(tr.x, tr.y, { featureNames: names, params, validation: hasVal ? { x: va.x, y: va.y } : undefined });
  const trainSeconds = (Date.now() - tTrain) / 1000;
  log(`trained ${model.nTrees} trees in ${trainSeconds.toFixed(1)} s`);

  const pVa = model.predictProbaBatch(va.x);
  const pTe = model.predictProbaBatch(te.x);
  // Calibration (Platt on the logit; fixed choice: stable with the few validation positives).
  let cal: Calibrator | null = null;
  let iso: Calibrator | null = null;
  if (hasVal) {
    cal = fitCalibrator(pVa, va.y, { method: 'platt' });
    iso = fitCalibrator(pVa, va.y, { method: 'isotonic' });
  }
  const dVa = perDrive(va, pVa);
  const dTe = perDrive(te, pTe);

  // Thresholds fixed on validation healthy drives.
  const valNeg = Array.from(dVa.score).filter((_, i) => dVa.label[i] === 0);
  const valThr = new Map(FAR_LEVELS.map((f) => [f, valNeg.length ? thresholdForFalseAlarmRate(valNeg, f) : NaN]));

  // --- Test, touched once.
  const auc = rocAuc(dTe.score, dTe.label);
  const rowAuc = rocAuc(pTe, te.y);
  const ruleConf = confusionAt(Array.from(dTe.rule), dTe.label, 0.5);
  const ruleLt = ruleLead(dTe);
  const rocRows: string[] = [];
  const fixedRows: string[] = [];
  const metrics: EvalReport['metrics'] = {
    test_drives: cTe.drives,
    test_failed_drives: cTe.failed,
    drive_auc: auc,
    row_auc: rowAuc,
    rule_recall: ruleConf.recall,
    rule_false_alarm_rate: ruleConf.falseAlarmRate,
    rule_precision: ruleConf.precision,
    rule_median_lead_days: ruleLt.median,
    trees: model.nTrees,
    train_seconds: trainSeconds,
  };
  for (const far of FAR_LEVELS) {
    const c = recallAtFalseAlarmRate(dTe.score, dTe.label, far);
    const lt = leadStats(dTe, c.threshold);
    rocRows.push(confRow(`GBDT, FAR ≤ ${far * 100} % on test healthy drives`, c, lt.median, `threshold ${c.threshold.toExponential(3)}`));
    metrics[`recall_at_far_${far}`] = c.recall;
    metrics[`precision_at_far_${far}`] = c.precision;
    metrics[`median_lead_days_at_far_${far}`] = lt.median;
    const thr = valThr.get(far)!;
    if (!Number.isNaN(thr)) {
      const cf = confusionAt(dTe.score, dTe.label, thr);
      const lf = leadStats(dTe, thr);
      fixedRows.push(confRow(`GBDT, threshold for ${far * 100} % FAR on validation`, cf, lf.median, `threshold ${thr.toExponential(3)}; lead times ${lf.values.sort((a, b) => a - b).join(', ') || '—'}`));
      metrics[`fixed_threshold_recall_${far}`] = cf.recall;
      metrics[`fixed_threshold_far_${far}`] = cf.falseAlarmRate;
    }
  }
  const ruleRow = confRow('SMART rule (5/187/188/197/198 raw > 0)', ruleConf, ruleLt.median, `lead times ${ruleLt.values.sort((a, b) => a - b).join(', ') || '—'}`);

  // Calibration on test rows (reported, not used to choose anything).
  let calText = '_No validation positives: calibration skipped._';
  if (cal && iso) {
    const cTest = Float64Array.from(pTe, (p) => cal!.predict(p));
    const iTest = Float64Array.from(pTe, (p) => iso!.predict(p));
    const rel = reliability(cTest, te.y, 5, 'quantile');
    metrics.brier_raw = brierScore(pTe, te.y);
    metrics.brier_platt = brierScore(cTest, te.y);
    metrics.brier_isotonic = brierScore(iTest, te.y);
    calText = [
      `Row-level probability of failing within ${DISK_HORIZON_DAYS} days, test rows (${cTe.rows} rows, ${cTe.pos} positive). The raw model is deliberately`,
      'over-confident (positive class weight); Platt scaling fitted on validation rows maps it back. Isotonic is shown for comparison only.',
      '',
      '| | Brier |',
      '|---|---|',
      `| raw GBDT | ${fmt(metrics.brier_raw as number, 6)} |`,
      `| Platt (deployed) | ${fmt(metrics.brier_platt as number, 6)} |`,
      `| isotonic | ${fmt(metrics.brier_isotonic as number, 6)} |`,
      `| constant base rate of the test rows | ${fmt(brierScore(new Float64Array(cTe.rows).fill(cTe.pos / Math.max(1, cTe.rows)), te.y), 6)} |`,
      '',
      'Reliability of the Platt probabilities (5 equal-count bins of test rows):',
      '',
      '| predicted range | rows | mean predicted | observed rate |',
      '|---|---|---|---|',
      ...rel.bins.map((b) => `| ${b.lo.toExponential(2)} – ${b.hi.toExponential(2)} | ${b.count} | ${b.meanPredicted.toExponential(2)} | ${b.fractionPositive.toExponential(2)} |`),
    ].join('\n');
  }

  const imp = model.featureImportance().filter((e) => e.gain > 0).slice(0, 10);
  let transfer = '';
  if (!opts.skipTransfer) {
    const p2019 = join(dirname(path), 'backblaze_2019_2020_st4000dm000_failed_only.csv.gz');
    if (existsSync(p2019)) transfer = await transferStudy(p2019, model, cols, cal, valThr, metrics, opts);
  }

  const md = [
    '# Disk-failure model on Backblaze 2013 (dev split)',
    '',
    `Task: per drive-day, probability that the drive fails within ${DISK_HORIZON_DAYS} days (the failure day counts as day 0).`,
    `Data: \`${path}\`, ${drives.length} drives, ${drives.filter((d) => d.failed).length} failed.`,
    '',
    '## Protocol',
    '',
    '- Split **by drive** (hash of the serial with the seed): 60 % train, 20 % validation, 20 % test.',
    '- Features per drive-day from the past only, per SMART attribute: level, change over 1 day, change over 7 days, EWMA (α 0.3),',
    `  7-day least-squares slope; plus the SMART-rule flag and sum. Columns with no value in train are dropped: ${names.length} features used.`,
    `- GBDT (logistic loss, depth ${params.maxDepth}, learning rate ${params.learningRate}, subsample ${params.subsample}, λ ${params.lambda}, positive weight √(neg/pos) = ${positiveWeight.toFixed(1)}),`,
    `  early-stopped on validation row AUC: ${model.nTrees} trees kept; training took ${trainSeconds.toFixed(1)} s on one core.`,
    '- Per-drive score = max of the daily scores over all its days. Thresholds are fixed on the **validation** healthy drives;',
    '  the test split is scored once. "FAR on test" rows are ROC points (threshold from the test healthy drives, the usual',
    '  "recall at x % false alarms" definition); the "validation threshold" rows are what a deployment would see.',
    '- Lead time = days from the first day with score above the threshold to the failure day (0 = alarm on the last day).',
    '',
    '| split | drives | failed drives | drive-days | positive drive-days |',
    '|---|---|---|---|---|',
    `| train | ${cTr.drives} | ${cTr.failed} | ${cTr.rows} | ${cTr.pos} |`,
    `| validation | ${cVa.drives} | ${cVa.failed} | ${cVa.rows} | ${cVa.pos} |`,
    `| test | ${cTe.drives} | ${cTe.failed} | ${cTe.rows} | ${cTe.pos} |`,
    '',
    '## Results on the test split',
    '',
    `Per-drive ROC AUC: **${fmt(auc)}** (drive-day ROC AUC ${fmt(rowAuc)}).`,
    '',
    '| detector | failed drives caught (recall) | healthy drives alarmed (FAR) | precision | median lead (days) | notes |',
    '|---|---|---|---|---|---|',
    ...rocRows,
    ...fixedRows,
    ruleRow,
    '',
    `With ${cTe.failed} failed drives in test, one drive moves recall by ${cTe.failed ? (100 / cTe.failed).toFixed(1) : 'n/a'} points; at 0.1 % FAR the`,
    `threshold is set by the top ${Math.floor(0.001 * (cTe.drives - cTe.failed))} healthy drive(s). Treat every number here as a rough estimate.`,
    '',
    '## Calibration',
    '',
    calText,
    '',
    '## Features that drove the model (total split gain)',
    '',
    '| feature | gain |',
    '|---|---|',
    ...imp.map((e) => `| ${e.feature} | ${e.gain.toFixed(1)} |`),
    '',
    '## Caveats',
    '',
    '- 40 days of 2013 data: most drives are seen for at most 40 days, so "max over its days" covers a short window, and a',
    '  healthy drive may in truth fail just after the window (right-censoring; it counts as healthy here).',
    '- Only SMART 1, 5, 9, 194, 197 are filled in 2013; 187, 188, 198 (part of the rule) are empty, so the rule here is',
    '  effectively "5 or 197 raw > 0".',
    '- Drive model is not a feature (the fleet mix would leak into the score); SMART 1 and 7 raw values mean different',
    '  things per vendor.',
    '- If SMART 9 (power-on hours) changes rank high, read it with suspicion: a drive whose hours grow by less than 24 a',
    '  day was powered off or unreported part of the time, which may be a genuine precursor or a data-collection artefact;',
    '  this data cannot tell which.',
    transfer,
  ].join('\n');
  return { kind: 'backblaze', metrics, markdown: md };
}

/** Apply the 2013 model and its validation thresholds to the 2019-2020 failed-only drives. */
async function transferStudy(
  path: string,
  model: GradientBoostedTrees,
  cols: number[],
  cal: Calibrator | null,
  valThr: Map<number, number>,
  metrics: EvalReport['metrics'],
  opts: EvalOptions,
): Promise<string> {
  const drives = await loadBackblazeDrives(path, { limit: opts.maxRows });
  const feats = new Map<string, DriveFeatures>();
  for (const d of drives) feats.set(d.serial, driveFeatures(d));
  const a = driveDayRows(drives, feats, cols);
  const p = model.predictProbaBatch(a.x);
  const ds = perDrive(a, p);
  const rows: string[] = [];
  for (const far of FAR_LEVELS) {
    const thr = valThr.get(far)!;
    if (Number.isNaN(thr)) continue;
    const caught = Array.from(ds.score).filter((s) => s > thr).length;
    const lt = leadStats(ds, thr);
    const within7 = lt.values.filter((v) => v < DISK_HORIZON_DAYS).length;
    rows.push(`| 2013 GBDT, validation threshold for ${far * 100} % FAR | ${caught}/${drives.length} (${pct(caught / drives.length)}) | ${fmt(lt.median, 1)} | ${within7} |`);
    metrics[`transfer_2019_recall_${far}`] = caught / drives.length;
    metrics[`transfer_2019_median_lead_${far}`] = lt.median;
  }
  const ruleCaught = Array.from(ds.rule).filter((v) => v).length;
  rows.push(`| SMART rule | ${ruleCaught}/${drives.length} | ${fmt(ruleLead(ds).median, 1)} | — |`);
  // Which SMART attributes are filled in this file, and which the model was trained on.
  const filled = BACKBLAZE_SMART.filter((_, k) => drives.some((d) => d.smart[k].some((v) => !Number.isNaN(v))));
  const used = [...new Set(cols.map((c) => BACKBLAZE_FEATURE_NAMES[c].split('_')[1]))].filter((s) => /^\d+$/.test(s));
  const shared = filled.filter((s) => used.includes(String(s)));
  // Trajectories: median per-day change of each filled counter, last 7 days vs days 31-60 before failure.
  const traj: string[] = [];
  for (const s of filled) {
    const k = BACKBLAZE_SMART.indexOf(s);
    const late: number[] = [];
    const early: number[] = [];
    for (const d of drives) {
      if (!d.failed) continue;
      const v = d.smart[k];
      const rate = (from: number, to: number): number => {
        const idx = [...d.days.keys()].filter((i) => d.failDay - d.days[i] >= from && d.failDay - d.days[i] <= to && !Number.isNaN(v[i]));
        if (idx.length < 2) return NaN;
        return linearSlope(idx.map((i) => v[i]), idx.map((i) => d.days[i]));
      };
      late.push(rate(0, 6));
      early.push(rate(31, 60));
    }
    const ratio = late.map((l, i) => l / early[i]).filter((r) => Number.isFinite(r));
    traj.push(`| SMART ${s} | ${fmt(fmedian(early), 1)} | ${fmt(fmedian(late), 1)} | ${fmt(fmedian(ratio), 2)} |`);
  }
  const calNote = cal ? 'Probabilities are not reported for this file: without healthy drives their calibration cannot be checked.' : '';
  return [
    '',
    '## Transfer: lead-time study on Backblaze 2019-2020 ST4000DM000 (failed drives only)',
    '',
    `${drives.length} drives, ${drives.filter((d) => d.failed).length} with a failure row, 61 days each. SMART filled in this file: ${filled.join(', ')}.`,
    `The 2013 model uses SMART ${used.join(', ')}; the overlap is **SMART ${shared.join(', ') || 'none'}** only.`,
    '',
    '| detector | drives alarmed before/at failure | median lead (days) | alarms first raised < 7 days before failure |',
    '|---|---|---|---|',
    ...rows,
    '',
    '**What transfers and what does not.** The 2013 model sees this file through SMART 9 (power-on hours) alone; every',
    'other input is missing, and the trees send missing values down the default branch learnt on 2013 data. These',
    'drives have ~40,000 power-on hours, far beyond the young 2013 fleet, so the score here is an extrapolation in one',
    'feature, not a failure signal. The SMART rule cannot fire at all (its attributes are empty). With no healthy drives',
    'the false-alarm rate of either detector on this population is unknown; an alarm count here says nothing about',
    'precision. What does transfer is the method (per-drive max score, thresholds fixed on validation, lead time).',
    calNote,
    '',
    'Trajectories of the filled counters (median over drives of the least-squares slope, units per day):',
    '',
    '| attribute | slope, days 31–60 before failure | slope, last 7 days | median ratio late/early |',
    '|---|---|---|---|',
    ...traj,
    '',
    'SMART 7 (seek errors, Seagate raw encoding), 240–242 (head flying hours, LBAs written/read) are workload counters; a',
    'change in their slope near failure would be a workload change, not a SMART error count, and the 2013 data has no',
    'values for them to learn from.',
  ].join('\n');
}

// ------------------------------------------------------------------ Perseus

interface PerseusDriveFeatures {
  host: number;
  disk: number;
  slow: boolean;
  /** Median over minutes of the drive's latency peer deviation (MADs from the host's drives that minute). */
  peerZMedian: number;
  /** Fraction of minutes more than 3 MADs above the host. */
  peerZ3Frac: number;
  /** Median over minutes of latency / host median latency. */
  hostRatioMedian: number;
  /** Fraction of minutes with latency > 3x the host's median that minute (the baseline's per-minute rule). */
  over3xFrac: number;
  /** Pearson correlation of latency against throughput over all minutes. */
  latThroughputCorr: number;
  /** Least-squares slope of the daily median latency, relative to the drive's median, per day. */
  latTrendRel: number;
  /** Drive's throughput in MADs from the host (median over minutes). */
  tpPeerZMedian: number;
  /** Median over minutes of latency_max / latency_mean. */
  tailRatio: number;
}

const PERSEUS_FEATURES: (keyof PerseusDriveFeatures)[] = ['peerZMedian', 'peerZ3Frac', 'hostRatioMedian', 'over3xFrac', 'latThroughputCorr', 'latTrendRel', 'tpPeerZMedian', 'tailRatio'];

export function perseusFeatures(drives: PerseusDrive[]): PerseusDriveFeatures[] {
  const byHost = new Map<number, PerseusDrive[]>();
  for (const d of drives) {
    if (!byHost.has(d.host)) byHost.set(d.host, []);
    byHost.get(d.host)!.push(d);
  }
  const out: PerseusDriveFeatures[] = [];
  for (const [host, ds] of byHost) {
    // Align minutes across the host's drives.
    const tsSet = new Set<number>();
    for (const d of ds) for (const t of d.ts) tsSet.add(t);
    const tsList = [...tsSet].sort((a, b) => a - b);
    const tIndex = new Map(tsList.map((t, i) => [t, i]));
    const T = tsList.length;
    const lat = ds.map((d) => {
      const a = new Float64Array(T).fill(NaN);
      d.ts.forEach((t, i) => (a[tIndex.get(t)!] = d.latencyMean[i]));
      return a;
    });
    const tp = ds.map((d) => {
      const a = new Float64Array(T).fill(NaN);
      d.ts.forEach((t, i) => (a[tIndex.get(t)!] = d.throughput[i]));
      return a;
    });
    const peerZ = ds.map(() => new Float64Array(T).fill(NaN));
    const ratio = ds.map(() => new Float64Array(T).fill(NaN));
    const tpZ = ds.map(() => new Float64Array(T).fill(NaN));
    const col = new Float64Array(ds.length);
    const colTp = new Float64Array(ds.length);
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < ds.length; j++) {
        col[j] = lat[j][t];
        colTp[j] = tp[j][t];
      }
      const med = fmedian(col);
      for (let j = 0; j < ds.length; j++) {
        if (Number.isNaN(col[j])) continue;
        // Peers = the other drives of the host that minute.
        const peers = Array.from(col).filter((_, q) => q !== j);
        peerZ[j][t] = peerDeviation(col[j], peers, 1e-6);
        ratio[j][t] = med > 0 ? col[j] / med : NaN;
        tpZ[j][t] = peerDeviation(colTp[j], Array.from(colTp).filter((_, q) => q !== j), 1);
      }
    }
    ds.forEach((d, j) => {
      const valid = (a: Float64Array): number[] => Array.from(a).filter((v) => !Number.isNaN(v));
      const pz = valid(peerZ[j]);
      const rt = valid(ratio[j]);
      // Daily median latency trend.
      const byDay = new Map<number, number[]>();
      d.ts.forEach((t, i) => {
        if (Number.isNaN(d.latencyMean[i])) return;
        const day = Math.floor(t / 86400);
        if (!byDay.has(day)) byDay.set(day, []);
        byDay.get(day)!.push(d.latencyMean[i]);
      });
      const days = [...byDay.keys()].sort((a, b) => a - b);
      const dm = days.map((k) => fmedian(byDay.get(k)!));
      const medLat = fmedian(d.latencyMean);
      const tails = Array.from(d.latencyMax, (v, i) => v / d.latencyMean[i]).filter((v) => Number.isFinite(v));
      out.push({
        host,
        disk: d.disk,
        slow: d.slow,
        peerZMedian: fmedian(pz),
        peerZ3Frac: pz.length ? pz.filter((v) => v > 3).length / pz.length : NaN,
        hostRatioMedian: fmedian(rt),
        over3xFrac: rt.length ? rt.filter((v) => v > 3).length / rt.length : NaN,
        latThroughputCorr: pearson(d.latencyMean, d.throughput),
        latTrendRel: medLat > 0 ? linearSlope(dm, days) / medLat : NaN,
        tpPeerZMedian: fmedian(valid(tpZ[j])),
        tailRatio: fmedian(tails),
      });
    });
  }
  return out.sort((a, b) => a.host - b.host || a.disk - b.disk);
}

/** Rank (1 = highest) of each positive among all, with ties counted pessimistically. */
function ranksOfPositives(scores: number[], labels: boolean[]): number[] {
  const out: number[] = [];
  scores.forEach((s, i) => {
    if (!labels[i]) return;
    const v = Number.isNaN(s) ? -Infinity : s;
    out.push(scores.filter((x, j) => j !== i && (Number.isNaN(x) ? -Infinity : x) >= v).length + 1);
  });
  return out;
}

async function evaluatePerseus(path: string, seed: number, opts: EvalOptions): Promise<{ kind: 'perseus'; metrics: EvalReport['metrics']; markdown: string }> {
  const log = opts.log ?? (() => {});
  const drives = await loadPerseusDrives(path, { limit: opts.maxRows });
  const labelsPath = join(dirname(path), basename(path).replace(/_dev_1min\.csv\.gz$/, '_slow_drives.csv'));
  let labelNote = 'Labels from the `slow_drive` column.';
  if (labelsPath !== path && existsSync(labelsPath)) {
    const lab = await readPerseusSlowDrives(labelsPath);
    const fromFile = new Set(lab.map((l) => `${l.host}/${l.disk}`));
    const fromCol = new Set(drives.filter((d) => d.slow).map((d) => `${d.host}/${d.disk}`));
    const agree = [...fromFile].every((k) => fromCol.has(k) || !drives.some((d) => `${d.host}/${d.disk}` === k)) && [...fromCol].every((k) => fromFile.has(k));
    if (!agree) throw new Error(`perseus: slow-drive labels in ${labelsPath} disagree with the slow_drive column`);
    labelNote = `Labels: \`${basename(labelsPath)}\` (${lab.map((l) => `host ${l.host} disk ${l.disk}, ${l.workload}`).join('; ')}), identical to the \`slow_drive\` column.`;
  }
  log(`perseus: ${drives.length} drives`);
  const f = perseusFeatures(drives);
  const labels = f.map((d) => d.slow);
  const nPos = labels.filter(Boolean).length;
  const nNeg = f.length - nPos;
  const hosts = [...new Set(f.map((d) => d.host))];

  const detectors: { name: string; score: number[]; alarm?: boolean[] }[] = [];
  // Baseline: per-drive median latency above 3x the host's median (per minute), i.e. latency > 3x host median most of the time.
  const base = f.map((d) => d.hostRatioMedian);
  detectors.push({ name: 'Baseline: latency > 3× host median (median over minutes)', score: base, alarm: base.map((v) => v > 3) });
  detectors.push({ name: 'Unsupervised: median peer deviation of latency (MADs)', score: f.map((d) => d.peerZMedian), alarm: f.map((d) => d.peerZMedian > 3) });

  // Leave-one-host-out GBDT: train on the other hosts' drives, score the held-out host.
  const X = (rows: PerseusDriveFeatures[]): FeatureMatrix => ({
    nRows: rows.length,
    nCols: PERSEUS_FEATURES.length,
    data: Float64Array.from(rows.flatMap((r) => PERSEUS_FEATURES.map((k) => r[k] as number))),
  });
  const oof = new Array<number>(f.length).fill(NaN);
  let foldsWithoutPositive = 0;
  for (const h of hosts) {
    const trainRows = f.filter((d) => d.host !== h);
    const y = Uint8Array.from(trainRows, (d) => (d.slow ? 1 : 0));
    const pos = y.reduce((s, v) => s + v, 0);
    const idx = f.map((d, i) => (d.host === h ? i : -1)).filter((i) => i >= 0);
    if (pos === 0) {
      foldsWithoutPositive++;
      for (const i of idx) oof[i] = 0;
      continue;
    }
    const model = GradientBoostedTrees.train(X(trainRows), y, {
      featureNames: PERSEUS_FEATURES,
      params: { nTrees: 50, maxDepth: 2, learningRate: 0.1, minChildWeight: 0.5, lambda: 1, positiveWeight: (y.length - pos) / pos, earlyStoppingRounds: 0, seed, ...opts.gbdt },
    });
    const p = model.predictProbaBatch(X(idx.map((i) => f[i])));
    idx.forEach((i, k) => (oof[i] = p[k]));
  }
  detectors.push({ name: 'GBDT, leave-one-host-out (out-of-fold scores)', score: oof });

  const metrics: EvalReport['metrics'] = { drives: f.length, slow_drives: nPos, hosts: hosts.length };
  const rows: string[] = [];
  for (const d of detectors) {
    const auc = nPos > 0 && nNeg > 0 ? rocAuc(d.score.map((v) => (Number.isNaN(v) ? -Infinity : v)).map((v) => (v === -Infinity ? -1e300 : v)), labels.map((b) => (b ? 1 : 0))) : NaN;
    const ranks = ranksOfPositives(d.score, labels);
    // FAR needed to catch every slow drive: healthy drives scoring at least the lowest positive.
    const worst = Math.min(...labels.map((b, i) => (b ? (Number.isNaN(d.score[i]) ? -Infinity : d.score[i]) : Infinity)));
    const healthyAbove = f.filter((x, i) => !labels[i] && d.score[i] >= worst).length;
    let alarmText = '—';
    if (d.alarm) {
      const tp = d.alarm.filter((a, i) => a && labels[i]).length;
      const fp = d.alarm.filter((a, i) => a && !labels[i]).length;
      alarmText = `${tp}/${nPos} caught, ${fp}/${nNeg} healthy alarmed`;
    }
    rows.push(`| ${d.name} | ${fmt(auc)} | ${ranks.join(', ') || '—'} | ${nPos ? `${healthyAbove}/${nNeg} (${pct(healthyAbove / nNeg)})` : 'n/a'} | ${alarmText} |`);
    metrics[`${d.name.split(':')[0].split(',')[0].toLowerCase().replace(/[^a-z]+/g, '_')}_auc`] = auc;
  }
  const slowRows = f.filter((d) => d.slow).map((d) => `| host ${d.host} disk ${d.disk} | ${PERSEUS_FEATURES.map((k) => fmt(d[k] as number, 2)).join(' | ')} |`);
  const medRow = `| median of healthy drives | ${PERSEUS_FEATURES.map((k) => fmt(fmedian(f.filter((d) => !d.slow).map((d) => d[k] as number)), 2)).join(' | ')} |`;
  const md = [
    '# Fail-slow detection on Perseus cluster A (dev split)',
    '',
    `Data: \`${path}\`: ${f.length} drives on ${hosts.length} hosts, per-minute latency and throughput, ${nPos} drive(s) labelled fail-slow. ${labelNote}`,
    '',
    '## Protocol',
    '',
    '- Per-drive features over the whole recording: latency in MADs from the other drives of the same host each minute',
    '  (median over minutes, and fraction of minutes > 3 MADs), latency / host median, fraction of minutes > 3× the host',
    '  median, latency–throughput Pearson correlation, relative daily latency trend, throughput peer deviation, max/mean',
    '  latency ratio.',
    '- Baseline: the drive\'s latency is above 3× its host\'s median latency (median over minutes of the per-minute ratio).',
    '- The labels are per drive with no onset time, so this is detection (which drives are slow), not prediction ahead of',
    '  time, and no lead time can be measured.',
    '- Supervised model: split **by host**, leave-one-host-out: for each host, a small GBDT (depth 2, 50 trees, positive weight',
    '  = imbalance) is trained on the other hosts and scores the held-out host. Hyper-parameters fixed a priori; nothing tuned.',
    '',
    '## Results',
    '',
    '| detector | ROC AUC (drives) | rank of each slow drive among all | healthy drives scoring ≥ the weaker slow drive | alarms at its own rule |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    'Feature values of the slow drives beside the healthy median:',
    '',
    `| drive | ${PERSEUS_FEATURES.join(' | ')} |`,
    `|---|${PERSEUS_FEATURES.map(() => '---').join('|')}|`,
    ...slowRows,
    medRow,
    '',
    '## How little this proves',
    '',
    `- ${nPos} positive drive(s) among ${f.length}. An AUC from two positives has a huge spread: each positive's rank is all`,
    '  the information there is. The table gives the ranks directly.',
    `- In leave-one-host-out, each fold trains on at most one positive drive (${foldsWithoutPositive} fold(s) had none in training);`,
    '  the GBDT learns "what the other slow drive looked like", one example. Its score says whether the two slow drives',
    '  resemble each other, not whether the model generalises.',
    '- The peer-deviation score and the 3× baseline use no labels, so they are evaluated on every drive without leakage;',
    '  the threshold 3 (MADs or ×) is the conventional one, not tuned here.',
    '- An independent cluster is held back upstream; only a result there would be evidence.',
  ].join('\n');
  return { kind: 'perseus', metrics, markdown: md };
}

// ------------------------------------------------------------------ Alibaba

async function describeAlibaba(path: string, opts: EvalOptions): Promise<{ kind: 'alibaba'; metrics: EvalReport['metrics']; markdown: string }> {
  const t = await loadAlibabaTickets(path, { limit: opts.maxRows });
  t.sort((a, b) => a.failureTime - b.failureTime);
  // Spatial correlation: fraction of failures followed within 24 h by another failure on the same node / rack / room.
  const within = (key: (x: (typeof t)[number]) => number, windowMs: number): number => {
    const last = new Map<number, number>();
    let hits = 0;
    for (const x of t) {
      const k = key(x);
      const prev = last.get(k);
      if (prev !== undefined && x.failureTime - prev <= windowMs) hits++;
      last.set(k, x.failureTime);
    }
    return t.length ? hits / t.length : NaN;
  };
  const day = 86_400_000;
  const m: EvalReport['metrics'] = {
    tickets: t.length,
    nodes: new Set(t.map((x) => x.nodeId)).size,
    racks: new Set(t.map((x) => x.rackId)).size,
    rooms: new Set(t.map((x) => x.roomId)).size,
    same_node_within_1d: within((x) => x.nodeId, day),
    same_rack_within_1d: within((x) => x.rackId, day),
    same_room_within_1d: within((x) => x.roomId, day),
  };
  const md = [
    '# Alibaba SSD failure tickets 2018 (event trace)',
    '',
    `Data: \`${path}\`. Every row is a failure; there is no healthy population, so no recall or false-alarm rate can be`,
    'computed. This report only describes the correlation structure the cluster simulator replays.',
    '',
    '| quantity | value |',
    '|---|---|',
    ...Object.entries(m).map(([k, v]) => `| ${k} | ${typeof v === 'number' && !Number.isInteger(v) ? pct(v) : v} |`),
    '',
    '"same_x_within_1d" = fraction of tickets that follow another ticket of the same node / rack / machine room by at most 24 h.',
  ].join('\n');
  return { kind: 'alibaba', metrics: m, markdown: md };
}
