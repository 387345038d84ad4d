/**
 * A versioned model bundle: every failure mode's model as plain JSON data (tree arrays,
 * calibration points, rule coefficients), never code. One file = one version; the scorer,
 * the model manager and the CLI all read it through `parseBundle`, which checks the schema
 * and says exactly which field is wrong.
 */
import { readFile, writeFile, mkdir, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FAILURE_MODES, type FailureMode } from './failure-report.ts';
import { GradientBoostedTrees, type GbdtJSON } from './gbdt.ts';
import { calibratorFromJSON, type CalibratorJSON } from './calibration.ts';

export const BUNDLE_FORMAT = 'presage-model/1';

/** Where the bundled default model lives (shipped with the code so a fresh install scores at once). */
export const DEFAULT_MODEL_PATH = fileURLToPath(new URL('./models/default-model.json', import.meta.url));

/**
 * Probabilities that map to fixed Failure Score points for this mode: `base` → 10,
 * `warn` → 50, `act` → 70, 1 → 100 (piecewise linear in log p; 0 → 0). Strictly
 * increasing, all in (0, 1).
 */
export interface ScoreAnchors {
  base: number;
  warn: number;
  act: number;
}

interface ModeCommon {
  /** Horizon of the probability, e.g. '7d', '1h'. */
  horizon: string;
  /** Input names, in the order the model reads them. */
  features: string[];
  /** Each feature's value on a typical healthy server (ablation reference for contributions); null = unknown. */
  reference: (number | null)[];
  anchors: ScoreAnchors;
  /** Whether the model was validated on labelled data (false = heuristic). */
  validated: boolean;
  /** What the probability means, what it was trained on and how far to trust it. */
  notes: string;
}

export interface GbdtModeModel extends ModeCommon {
  kind: 'gbdt';
  gbdt: GbdtJSON;
  calibrator: CalibratorJSON;
}

/** One term of a rule model: t = max(0, log10(x / ref)) or max(0, (x − ref) / scale); NaN → 0 (no evidence). */
export interface RuleTerm {
  feature: string;
  transform: 'log10ratio' | 'linear';
  ref: number;
  /** Only for 'linear'. */
  scale?: number;
  weight: number;
}

/** A logistic rule: p = sigmoid(intercept + Σ weight·t). Calibrated by construction from stated anchors. */
export interface RuleModeModel extends ModeCommon {
  kind: 'rule';
  intercept: number;
  terms: RuleTerm[];
}

export type ModeModel = GbdtModeModel | RuleModeModel;

export interface ModeValidation {
  auc: number | null;
  /** Recall at the threshold giving ≤ 1 % false alarms (unit as stated in `unit`). */
  recallAt1pctFA: number | null;
  brier: number | null;
  /** Brier of a constant base-rate forecast on the same rows (to beat). */
  brierBaseRate?: number | null;
  /** What one validation example is (drive, drive-day, 60-minute window…). */
  unit: string;
  positives: number;
  negatives: number;
  /** How the numbers were obtained. */
  protocol: string;
}

export interface ModelBundle {
  format: typeof BUNDLE_FORMAT;
  version: string;
  createdAt: string;
  trainedOn: {
    datasets: string[];
    rows: number;
    drives?: number;
    servers?: number;
    timeRange: { from: string; to: string } | null;
    seed?: number;
  };
  validation: Partial<Record<FailureMode, ModeValidation>>;
  modes: Record<FailureMode, ModeModel>;
  combination: {
    method: 'max-anchored';
    description: string;
  };
  notes?: string;
}

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

// ------------------------------------------------------------------ validation

type Obj = Record<string, unknown>;

function fail(path: string, msg: string): never {
  throw new BundleError(`model bundle: ${path} ${msg}`);
}
function obj(v: unknown, path: string): Obj {
  if (!v || typeof v !== 'object' || Array.isArray(v)) fail(path, 'must be an object');
  return v as Obj;
}
function str(o: Obj, k: string, path: string): string {
  if (typeof o[k] !== 'string' || (o[k] as string).length === 0) fail(`${path}.${k}`, 'must be a non-empty string');
  return o[k] as string;
}
function finite(o: Obj, k: string, path: string): number {
  if (typeof o[k] !== 'number' || !Number.isFinite(o[k])) fail(`${path}.${k}`, 'must be a finite number');
  return o[k] as number;
}
function numOrNull(o: Obj, k: string, path: string): void {
  if (o[k] !== null && (typeof o[k] !== 'number' || !Number.isFinite(o[k]))) fail(`${path}.${k}`, 'must be a finite number or null');
}

const HORIZON_RE = /^\d+(m|h|d)$/;

/** Horizon string ('15m', '1h', '7d') in milliseconds. */
export function horizonMs(h: string): number {
  const m = /^(\d+)(m|h|d)$/.exec(h);
  if (!m) throw new BundleError(`model bundle: bad horizon '${h}' (expected e.g. 15m, 1h, 7d)`);
  return Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'm' | 'h' | 'd'];
}

function validateMode(v: unknown, path: string): void {
  const o = obj(v, path);
  const kind = o.kind;
  if (kind !== 'gbdt' && kind !== 'rule') fail(`${path}.kind`, `must be 'gbdt' or 'rule' (got ${JSON.stringify(kind)})`);
  const h = str(o, 'horizon', path);
  if (!HORIZON_RE.test(h)) fail(`${path}.horizon`, `must look like 15m, 1h or 7d (got '${h}')`);
  if (!Array.isArray(o.features) || o.features.length === 0 || !o.features.every((f) => typeof f === 'string' && f.length > 0)) {
    fail(`${path}.features`, 'must be a non-empty array of names');
  }
  const features = o.features as string[];
  if (new Set(features).size !== features.length) fail(`${path}.features`, 'has duplicate names');
  if (!Array.isArray(o.reference) || o.reference.length !== features.length || !o.reference.every((x) => x === null || (typeof x === 'number' && Number.isFinite(x)))) {
    fail(`${path}.reference`, `must be ${features.length} finite numbers or nulls (one per feature)`);
  }
  const a = obj(o.anchors, `${path}.anchors`);
  const base = finite(a, 'base', `${path}.anchors`);
  const warn = finite(a, 'warn', `${path}.anchors`);
  const act = finite(a, 'act', `${path}.anchors`);
  if (!(base > 0 && base < warn && warn < act && act < 1)) fail(`${path}.anchors`, `must satisfy 0 < base < warn < act < 1 (got ${base}, ${warn}, ${act})`);
  if (typeof o.validated !== 'boolean') fail(`${path}.validated`, 'must be true or false');
  if (typeof o.notes !== 'string') fail(`${path}.notes`, 'must be a string');
  if (kind === 'gbdt') {
    let model: GradientBoostedTrees;
    try {
      model = GradientBoostedTrees.fromJSON(o.gbdt);
    } catch (err) {
      fail(`${path}.gbdt`, `is not a valid GBDT: ${(err as Error).message}`);
    }
    const g = o.gbdt as GbdtJSON;
    if (g.nFeatures !== features.length) fail(`${path}.gbdt.nFeatures`, `is ${g.nFeatures} but the mode lists ${features.length} features`);
    if (Array.isArray(g.featureNames) && g.featureNames.some((n, i) => n !== features[i])) fail(`${path}.gbdt.featureNames`, 'differ from the mode\'s features');
    void model;
    try {
      calibratorFromJSON(o.calibrator);
    } catch (err) {
      fail(`${path}.calibrator`, `is not a valid calibrator: ${(err as Error).message}`);
    }
  } else {
    finite(o, 'intercept', path);
    if (!Array.isArray(o.terms) || o.terms.length === 0) fail(`${path}.terms`, 'must be a non-empty array');
    (o.terms as unknown[]).forEach((t, i) => {
      const tp = `${path}.terms[${i}]`;
      const to = obj(t, tp);
      const f = str(to, 'feature', tp);
      if (!features.includes(f)) fail(`${tp}.feature`, `'${f}' is not among the mode's features`);
      if (to.transform !== 'log10ratio' && to.transform !== 'linear') fail(`${tp}.transform`, "must be 'log10ratio' or 'linear'");
      const ref = finite(to, 'ref', tp);
      if (to.transform === 'log10ratio' && !(ref > 0)) fail(`${tp}.ref`, 'must be > 0 for log10ratio');
      if (to.transform === 'linear' && !(finite(to, 'scale', tp) > 0)) fail(`${tp}.scale`, 'must be > 0');
      finite(to, 'weight', tp);
    });
  }
}

/** Throws BundleError naming the first bad field; returns the value typed when it is a valid bundle. */
export function validateBundle(v: unknown): ModelBundle {
  const o = obj(v, 'root');
  if (o.format !== BUNDLE_FORMAT) fail('format', `must be '${BUNDLE_FORMAT}' (got ${JSON.stringify(o.format)})`);
  const version = str(o, 'version', 'root');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(version)) fail('version', 'must be 1-128 characters of [A-Za-z0-9._-] (it names a file)');
  const created = str(o, 'createdAt', 'root');
  if (Number.isNaN(Date.parse(created))) fail('createdAt', 'must be an ISO date');
  const tr = obj(o.trainedOn, 'trainedOn');
  if (!Array.isArray(tr.datasets) || !tr.datasets.every((d) => typeof d === 'string')) fail('trainedOn.datasets', 'must be an array of strings');
  finite(tr, 'rows', 'trainedOn');
  if (tr.timeRange !== null) {
    const r = obj(tr.timeRange, 'trainedOn.timeRange');
    str(r, 'from', 'trainedOn.timeRange');
    str(r, 'to', 'trainedOn.timeRange');
  }
  const val = obj(o.validation, 'validation');
  for (const [k, mv] of Object.entries(val)) {
    if (!(FAILURE_MODES as readonly string[]).includes(k)) fail(`validation.${k}`, `is not a failure mode (${FAILURE_MODES.join(', ')})`);
    const m = obj(mv, `validation.${k}`);
    for (const f of ['auc', 'recallAt1pctFA', 'brier']) numOrNull(m, f, `validation.${k}`);
    str(m, 'unit', `validation.${k}`);
    str(m, 'protocol', `validation.${k}`);
  }
  const modes = obj(o.modes, 'modes');
  for (const mode of FAILURE_MODES) {
    if (!(mode in modes)) fail(`modes.${mode}`, 'is missing (every failure mode needs a model)');
    validateMode(modes[mode], `modes.${mode}`);
  }
  for (const k of Object.keys(modes)) if (!(FAILURE_MODES as readonly string[]).includes(k)) fail(`modes.${k}`, `is not a failure mode (${FAILURE_MODES.join(', ')})`);
  const c = obj(o.combination, 'combination');
  if (c.method !== 'max-anchored') fail('combination.method', "must be 'max-anchored'");
  return v as ModelBundle;
}

/** Parses and validates bundle JSON text; `source` names the file in errors. */
export function parseBundle(text: string, source = 'bundle'): ModelBundle {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new BundleError(`model bundle: ${source} is not JSON: ${(err as Error).message}`);
  }
  try {
    return validateBundle(v);
  } catch (err) {
    if (err instanceof BundleError) throw new BundleError(`${err.message} (in ${source})`);
    throw err;
  }
}

export async function loadBundle(path: string): Promise<ModelBundle> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new BundleError(`model bundle: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseBundle(text, path);
}

export function loadDefaultBundle(): Promise<ModelBundle> {
  return loadBundle(DEFAULT_MODEL_PATH);
}

/** JSON with NaN/Infinity refused (a model with such values is broken). */
export function bundleToJSON(b: ModelBundle): string {
  validateBundle(b);
  return JSON.stringify(b, (_k, v) => {
    if (typeof v === 'number' && !Number.isFinite(v)) throw new BundleError('model bundle: contains a non-finite number');
    return v;
  }) + '\n';
}

/** Validates, then writes atomically (temp file + rename) so a reader never sees half a model. */
export async function saveBundle(path: string, b: ModelBundle): Promise<void> {
  const text = bundleToJSON(b);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}
