/**
 * Model lifecycle: which bundle is current, hot-swapping it without a restart, and weekly
 * retraining from the cluster's own history that replaces the model only when the
 * candidate validates at least as well on a held-out time split.
 *
 * On disk (`dir`):   models/<version>.json   every installed version (never rewritten)
 *                    current                 the current version's name (replaced atomically)
 * With no `current` the bundled default model is used.
 */
import { EventEmitter } from 'node:events';
import { readFile, writeFile, rename, mkdir, copyFile } from 'node:fs/promises';
import { existsSync, watchFile, unwatchFile } from 'node:fs';
import { join } from 'node:path';
import { FAILURE_MODES, type FailureMode } from './failure-report.ts';
import { GradientBoostedTrees, type FeatureMatrix } from './gbdt.ts';
import { fitCalibrator, brierScore } from './calibration.ts';
import { rocAuc, thresholdForFalseAlarmRate } from './metrics.ts';
import { DEFAULT_MODEL_PATH, horizonMs, loadBundle, saveBundle, validateBundle, type GbdtModeModel, type ModelBundle } from './model-bundle.ts';
import { FailureScorer } from './scorer.ts';
import { DAY_MS, diskFeatures, failSlowFeatures, networkFeatures, softwareFeatures, type ModeFeatures, type QueryFn } from './online-features.ts';
import { contentVersion, healthyReference, orderedAnchors, quantile } from './train.ts';

export interface ServerHistory {
  id: string;
  query: QueryFn;
  /** Observed failures (from the orchestrator's records: mark-downs, replaced drives, OOM kills…). */
  failures: { mode: FailureMode; t: number }[];
}

export interface TrainingHistory {
  /** Earliest time the history covers (ms); the store's StorageStats.firstTs. */
  from: number;
  servers: ServerHistory[];
}

export interface ModeComparison {
  evaluated: boolean;
  reason?: string;
  positives: number;
  negatives: number;
  current?: { auc: number; brier: number };
  candidate?: { auc: number; brier: number };
}

export interface RetrainResult {
  replaced: boolean;
  reason: string;
  warning?: string;
  days: number;
  currentVersion: string;
  candidateVersion?: string;
  comparison: Partial<Record<FailureMode, ModeComparison>>;
  seconds: number;
}

/** Rows of one mode: features at each tick and whether that mode failed within its horizon. */
export interface ModeRows {
  names: string[];
  x: number[][];
  y: number[];
  t: number[];
}

export type CandidateTrainer = (args: {
  current: ModelBundle;
  train: Record<FailureMode, ModeRows>;
  calibration: Record<FailureMode, ModeRows>;
  seed: number;
}) => ModelBundle;

export interface RetrainOptions {
  history: TrainingHistory;
  now: number;
  /** Fewer days of history than this → no retraining (default 30). */
  minDays?: number;
  /** Time between feature snapshots (default 1 h). */
  tickMs?: number;
  /** Modes to retrain (default all); the others are carried over unchanged. */
  modes?: FailureMode[];
  seed?: number;
  /** Replaces the default GBDT trainer (tests inject deliberately bad candidates). */
  trainer?: CandidateTrainer;
  /** Tolerances of "at least as well" (defaults 0.01 AUC, 5 % Brier). */
  aucTolerance?: number;
  brierTolerance?: number;
  /**
   * Called as the work advances: ('building features', servers done / servers), then
   * ('training candidate', 0 and 1), then ('validating', modes done / modes). Not called when
   * there is too little history to train.
   */
  progress?: (stage: string, fraction: number) => void;
}

const MODE_FEATURES: Record<FailureMode, (q: QueryFn, now: number, disk: string[]) => ModeFeatures> = {
  disk: (q, now, names) => diskFeatures(q, now, names),
  'fail-slow': (q, now) => failSlowFeatures(q, now),
  network: (q, now) => networkFeatures(q, now),
  software: (q, now) => softwareFeatures(q, now),
};

/** Time fractions of the history: [0, 0.5) train, [0.5, 0.7) calibration, [0.7, 1] validation. */
const SPLITS = [0.5, 0.7] as const;

/** Feature snapshots of every server every `tickMs`, labelled per mode; split by time. */
export function buildRows(history: TrainingHistory, now: number, current: ModelBundle, modes: FailureMode[], tickMs: number, onServer?: (fraction: number) => void): Record<'train' | 'calibration' | 'validation', Record<FailureMode, ModeRows>> {
  const empty = () => Object.fromEntries(FAILURE_MODES.map((m) => [m, { names: current.modes[m].features, x: [], y: [], t: [] }])) as unknown as Record<FailureMode, ModeRows>;
  const out = { train: empty(), calibration: empty(), validation: empty() };
  const span = now - history.from;
  const t1 = history.from + SPLITS[0] * span;
  const t2 = history.from + SPLITS[1] * span;
  const diskNames = current.modes.disk.features;
  let serversDone = 0;
  for (const s of history.servers) {
    const firstFailure = Math.min(Infinity, ...s.failures.map((f) => f.t));
    for (const mode of modes) {
      const h = horizonMs(current.modes[mode].horizon);
      const fails = s.failures.filter((f) => f.mode === mode).map((f) => f.t);
      for (let t = history.from + tickMs; t <= now; t += tickMs) {
        if (t >= firstFailure) break; // the server is gone
        const y = fails.some((ft) => ft > t && ft <= t + h) ? 1 : 0;
        if (y === 0 && t + h > now) continue; // outcome not known yet
        const f = MODE_FEATURES[mode](s.query, t, diskNames);
        if (f.present === 0) continue;
        const part = t < t1 ? out.train : t < t2 ? out.calibration : out.validation;
        // A row belongs to the split its whole horizon lies in: no label from a later split.
        if ((t < t1 && t + h > t1) || (t >= t1 && t < t2 && t + h > t2)) continue;
        part[mode].x.push(Array.from(f.values));
        part[mode].y.push(y);
        part[mode].t.push(t);
      }
    }
    onServer?.(++serversDone / history.servers.length);
  }
  return out;
}

const matrix = (x: number[][], nCols: number): FeatureMatrix => ({ nRows: x.length, nCols, data: Float64Array.from(x.flat()) });
const positives = (y: number[]) => y.reduce((a, v) => a + v, 0);

/** The default candidate trainer: a small GBDT per mode with both classes, Platt-calibrated on the calibration split. */
export const gbdtCandidateTrainer: CandidateTrainer = ({ current, train, calibration, seed }) => {
  const modes = { ...current.modes };
  for (const mode of FAILURE_MODES) {
    const tr = train[mode];
    const ca = calibration[mode];
    const pTr = positives(tr.y);
    const pCa = positives(ca.y);
    if (pTr < 3 || pTr === tr.y.length || pCa === 0 || pCa === ca.y.length) continue; // too little to learn from: keep
    const n = tr.names.length;
    const model = GradientBoostedTrees.train(matrix(tr.x, n), tr.y, {
      featureNames: tr.names,
      params: { nTrees: 60, maxDepth: 3, learningRate: 0.1, minChildWeight: 1, lambda: 1, positiveWeight: Math.sqrt((tr.y.length - pTr) / pTr), earlyStoppingRounds: 0, seed },
    });
    const raw = model.predictProbaBatch(matrix(ca.x, n));
    const cal = fitCalibrator(raw, ca.y, { method: 'platt' });
    const c = Array.from(raw, (p) => cal.predict(p));
    const healthy = c.filter((_, i) => ca.y[i] === 0);
    const m: GbdtModeModel = {
      kind: 'gbdt',
      horizon: current.modes[mode].horizon,
      features: tr.names,
      reference: healthyReference(matrix(tr.x, n), tr.y),
      anchors: orderedAnchors(quantile(healthy, 0.95), thresholdForFalseAlarmRate(healthy, 0.05), thresholdForFalseAlarmRate(healthy, 0.01)),
      validated: true,
      notes: `Retrained on this cluster's history: ${tr.y.length} snapshots (${pTr} before a ${mode} failure), Platt-calibrated on ${ca.y.length} later snapshots.`,
      gbdt: model.toJSON(),
      calibrator: cal.toJSON(),
    };
    modes[mode] = m;
  }
  return { ...current, modes, validation: {}, version: contentVersion('retrained', modes), createdAt: new Date().toISOString() };
};

export class ModelManager extends EventEmitter {
  private current: ModelBundle;
  private currentScorer: FailureScorer;
  private stopWatch?: () => void;

  private constructor(readonly dir: string, bundle: ModelBundle) {
    super();
    this.current = bundle;
    this.currentScorer = new FailureScorer(bundle);
  }

  /** Opens a model directory: the version named by `current`, else the bundled default. */
  static async open(dir: string, opts: { defaultPath?: string } = {}): Promise<ModelManager> {
    const v = await readPointer(dir);
    const bundle = v ? await loadBundle(join(dir, 'models', `${v}.json`)) : await loadBundle(opts.defaultPath ?? DEFAULT_MODEL_PATH);
    return new ModelManager(dir, bundle);
  }

  get bundle(): ModelBundle {
    return this.current;
  }
  get scorer(): FailureScorer {
    return this.currentScorer;
  }
  get version(): string {
    return this.current.version;
  }

  private swap(bundle: ModelBundle): void {
    const previous = this.current.version;
    // Build the scorer first: a bundle that cannot be compiled never becomes current.
    const scorer = new FailureScorer(bundle);
    this.current = bundle;
    this.currentScorer = scorer;
    if (previous !== bundle.version) this.emit('swap', { from: previous, to: bundle.version });
  }

  /** Installs a bundle (validated) as models/<version>.json, points `current` at it, and swaps it in. */
  async install(bundle: ModelBundle): Promise<void> {
    validateBundle(bundle);
    await saveBundle(join(this.dir, 'models', `${bundle.version}.json`), bundle);
    await writePointer(this.dir, bundle.version);
    this.swap(bundle);
  }

  /** Loads a bundle file, installs it and makes it current (hot swap, no restart). */
  async load(path: string): Promise<ModelBundle> {
    const b = await loadBundle(path);
    const target = join(this.dir, 'models', `${b.version}.json`);
    if (!existsSync(target)) {
      await mkdir(join(this.dir, 'models'), { recursive: true });
      await copyFile(path, target);
    }
    await writePointer(this.dir, b.version);
    this.swap(b);
    return b;
  }

  /** Re-reads `current` (someone else may have pointed it elsewhere) and swaps if it changed. */
  async reload(): Promise<boolean> {
    const v = await readPointer(this.dir);
    if (!v || v === this.current.version) return false;
    this.swap(await loadBundle(join(this.dir, 'models', `${v}.json`)));
    return true;
  }

  /** Polls the `current` pointer (fs.watchFile: works on every filesystem) and reloads on change. */
  watch(intervalMs = 2000): () => void {
    this.stopWatch?.();
    const file = join(this.dir, 'current');
    const onChange = () => {
      this.reload().catch((err) => this.emit('error', err));
    };
    watchFile(file, { interval: intervalMs, persistent: false }, onChange);
    this.stopWatch = () => unwatchFile(file, onChange);
    return this.stopWatch;
  }

  /**
   * Trains a candidate from ≥ minDays of history, validates candidate and current model on
   * the last 30 % of the time range, and installs the candidate only if every evaluated
   * mode is at least as good (AUC not lower by more than aucTolerance, Brier not higher by
   * more than brierTolerance × current) and the summed AUC is not lower.
   */
  async retrain(opts: RetrainOptions): Promise<RetrainResult> {
    const t0 = Date.now();
    const minDays = opts.minDays ?? 30;
    const days = (opts.now - opts.history.from) / DAY_MS;
    const base = { days: Math.round(days * 10) / 10, currentVersion: this.current.version, comparison: {} };
    if (!(days >= minDays)) {
      const reason = `only ${Math.floor(Math.max(days, 0))} days of history (need ${minDays})`;
      return { ...base, replaced: false, reason, warning: `not retraining: ${reason}; keeping model ${this.current.version}`, seconds: (Date.now() - t0) / 1000 };
    }
    const modes = opts.modes ?? [...FAILURE_MODES];
    const progress = opts.progress;
    progress?.('building features', 0);
    const rows = buildRows(opts.history, opts.now, this.current, modes, opts.tickMs ?? 3_600_000, progress && ((f) => progress('building features', f)));
    const trainer = opts.trainer ?? gbdtCandidateTrainer;
    progress?.('training candidate', 0);
    let candidate = trainer({ current: this.current, train: rows.train, calibration: rows.calibration, seed: opts.seed ?? 1 });
    progress?.('training candidate', 1);
    progress?.('validating', 0);
    // Modes not asked for stay exactly as they are.
    candidate = { ...candidate, modes: { ...candidate.modes, ...Object.fromEntries(FAILURE_MODES.filter((m) => !modes.includes(m)).map((m) => [m, this.current.modes[m]])) } };
    validateBundle(candidate);
    const cur = this.currentScorer;
    const cand = new FailureScorer(candidate);
    const comparison: RetrainResult['comparison'] = {};
    let sumCur = 0;
    let sumCand = 0;
    let evaluated = 0;
    const failures: string[] = [];
    const aucTol = opts.aucTolerance ?? 0.01;
    const brierTol = opts.brierTolerance ?? 0.05;
    for (const mode of modes) {
      const va = rows.validation[mode];
      const pos = positives(va.y);
      const c: ModeComparison = { evaluated: false, positives: pos, negatives: va.y.length - pos };
      comparison[mode] = c;
      if (pos === 0 || pos === va.y.length) {
        c.reason = pos === 0 ? 'no failure of this mode in the validation period' : 'no healthy snapshot in the validation period';
        progress?.('validating', Object.keys(comparison).length / modes.length);
        continue;
      }
      const pc = va.x.map((r) => cur.probability(mode, Float64Array.from(r)));
      const pn = va.x.map((r) => cand.probability(mode, Float64Array.from(r)));
      c.current = { auc: rocAuc(pc, va.y), brier: brierScore(pc, va.y) };
      c.candidate = { auc: rocAuc(pn, va.y), brier: brierScore(pn, va.y) };
      c.evaluated = true;
      evaluated++;
      sumCur += c.current.auc;
      sumCand += c.candidate.auc;
      if (c.candidate.auc < c.current.auc - aucTol) failures.push(`${mode} AUC ${c.candidate.auc.toFixed(3)} < ${c.current.auc.toFixed(3)}`);
      if (c.candidate.brier > c.current.brier * (1 + brierTol)) failures.push(`${mode} Brier ${c.candidate.brier.toExponential(3)} > ${c.current.brier.toExponential(3)}`);
      progress?.('validating', Object.keys(comparison).length / modes.length);
    }
    const done = (replaced: boolean, reason: string, warning?: string): RetrainResult => ({
      ...base, replaced, reason, ...(warning ? { warning } : {}), candidateVersion: candidate.version, comparison, seconds: (Date.now() - t0) / 1000,
    });
    if (evaluated === 0) return done(false, 'no mode could be validated (no failures, or no healthy snapshots, in the validation period)', 'keeping the current model: nothing to compare on');
    if (failures.length > 0) return done(false, `candidate validates worse: ${failures.join('; ')}`);
    if (sumCand < sumCur) return done(false, `candidate's summed AUC ${sumCand.toFixed(3)} < current ${sumCur.toFixed(3)}`);
    const validation = { ...this.current.validation };
    for (const [mode, c] of Object.entries(comparison)) {
      if (!c.evaluated) continue;
      validation[mode as FailureMode] = {
        auc: c.candidate!.auc, recallAt1pctFA: null, brier: c.candidate!.brier, unit: `${this.current.modes[mode as FailureMode].horizon} snapshot of a server`,
        positives: c.positives, negatives: c.negatives, protocol: 'cluster history, last 30 % of the time range held out (trained on the first 50 %, calibrated on the next 20 %)',
      };
    }
    const servers = opts.history.servers.length;
    const installed: ModelBundle = {
      ...candidate,
      validation,
      trainedOn: { datasets: ['cluster telemetry history'], rows: modes.reduce((s, m) => s + rows.train[m].y.length + rows.calibration[m].y.length, 0), servers, timeRange: { from: new Date(opts.history.from).toISOString(), to: new Date(opts.now).toISOString() }, seed: opts.seed ?? 1 },
    };
    await this.install(installed);
    return done(true, `candidate validates at least as well on ${evaluated} mode(s)`);
  }

  /**
   * Retrains every `intervalMs` (default 7 days) from `history()`; results go to `onResult`
   * and the 'retrain' event. The timer does not keep the process alive.
   */
  schedule(opts: { history: () => Promise<TrainingHistory> | TrainingHistory; intervalMs?: number; minDays?: number; onResult?: (r: RetrainResult) => void; now?: () => number }): { stop(): void } {
    const interval = opts.intervalMs ?? 7 * DAY_MS;
    let running = false;
    const tick = async () => {
      if (running) return; // a slow retrain never overlaps the next
      running = true;
      try {
        const r = await this.retrain({ history: await opts.history(), now: (opts.now ?? Date.now)(), minDays: opts.minDays });
        opts.onResult?.(r);
        this.emit('retrain', r);
      } catch (err) {
        this.emit('error', err);
      } finally {
        running = false;
      }
    };
    const timer = setInterval(() => void tick(), interval);
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  close(): void {
    this.stopWatch?.();
    this.stopWatch = undefined;
  }
}

async function readPointer(dir: string): Promise<string | undefined> {
  try {
    const v = (await readFile(join(dir, 'current'), 'utf8')).trim();
    return v || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function writePointer(dir: string, version: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `current.tmp-${process.pid}`);
  await writeFile(tmp, version + '\n');
  await rename(tmp, join(dir, 'current'));
}
