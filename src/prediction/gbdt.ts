/**
 * Histogram-based gradient-boosted decision trees for binary classification
 * (logistic loss), written for typed arrays and one core.
 *
 * - Each feature is quantised into at most 256 bins (one Uint8Array per column).
 *   Bin 0 is reserved for missing values (NaN); bins 1..k hold the values, with
 *   upper edges chosen from quantiles of a seeded sample.
 * - Every split learns a default direction for missing values: both sides are
 *   tried and the one with the larger gain wins (XGBoost's sparsity-aware split).
 * - Trees grow depth-first; a node's histogram is built only for the smaller child,
 *   the larger one is the parent minus it (LightGBM's subtraction trick).
 * - A trained model is plain data (bin edges, flat tree arrays) — `toJSON()` and
 *   `GradientBoostedTrees.fromJSON()` — never code. Prediction compares raw values
 *   against stored thresholds, so it needs no binning.
 */
import { mulberry32 } from '../common/prng.ts';

/** Row-major numeric matrix: value of row r, column c is data[r * nCols + c]. */
export interface FeatureMatrix {
  nRows: number;
  nCols: number;
  data: Float32Array | Float64Array;
}

export interface GbdtParams {
  /** Maximum number of boosting rounds. */
  nTrees: number;
  maxDepth: number;
  learningRate: number;
  /** Minimum sum of hessians (weighted) in each child of a split. */
  minChildWeight: number;
  /** L2 regularisation on leaf values. */
  lambda: number;
  /** Minimum gain for a split to be kept. */
  minSplitGain: number;
  /** Fraction of rows sampled (without replacement) for each tree, (0, 1]. */
  subsample: number;
  /** Maximum number of bins per feature, including the missing bin (2..256). */
  maxBins: number;
  /** Weight of positive rows (negatives weigh 1): counters extreme imbalance. */
  positiveWeight: number;
  /** Stop when the validation metric has not improved for this many rounds (0 = off). */
  earlyStoppingRounds: number;
  /** Validation metric used for early stopping. */
  earlyStoppingMetric: 'logloss' | 'auc';
  /** Max sampled values per feature used to place bin edges. */
  binSampleSize: number;
  seed: number;
}

export const DEFAULT_GBDT_PARAMS: GbdtParams = {
  nTrees: 200,
  maxDepth: 5,
  learningRate: 0.1,
  minChildWeight: 1,
  lambda: 1,
  minSplitGain: 0,
  subsample: 1,
  maxBins: 256,
  positiveWeight: 1,
  earlyStoppingRounds: 20,
  earlyStoppingMetric: 'logloss',
  binSampleSize: 200_000,
  seed: 1,
};

/** One tree as flat arrays; node 0 is the root; feature[i] = -1 marks a leaf. */
export interface TreeJSON {
  feature: number[];
  threshold: number[];
  left: number[];
  right: number[];
  /** 1: a missing value goes left. */
  defaultLeft: number[];
  /** Leaf contribution to the logit (learning rate already applied). */
  value: number[];
}

export interface GbdtJSON {
  format: 'presage-gbdt';
  version: 1;
  nFeatures: number;
  featureNames: string[];
  baseScore: number;
  /** Upper edges of value bins per feature (the last is +Infinity, serialised as null). */
  binEdges: (number | null)[][];
  trees: TreeJSON[];
  /** Total split gain per feature. */
  gain: number[];
  params: GbdtParams;
  bestIteration: number;
}

export interface TrainOptions {
  featureNames?: string[];
  validation?: { x: FeatureMatrix; y: ArrayLike<number> };
  params?: Partial<GbdtParams>;
  /** Called after each round with the validation metric (NaN without validation). */
  onRound?: (round: number, metric: number) => void;
}

interface Tree {
  feature: Int32Array;
  threshold: Float64Array;
  left: Int32Array;
  right: Int32Array;
  defaultLeft: Uint8Array;
  value: Float64Array;
}

function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

function validateParams(p: GbdtParams): void {
  const bad = (msg: string): never => {
    throw new RangeError(`gbdt: ${msg}`);
  };
  if (!Number.isInteger(p.nTrees) || p.nTrees < 1) bad('nTrees must be a positive integer');
  if (!Number.isInteger(p.maxDepth) || p.maxDepth < 1 || p.maxDepth > 16) bad('maxDepth must be 1..16');
  if (!(p.learningRate > 0 && p.learningRate <= 1)) bad('learningRate must be in (0, 1]');
  if (!(p.minChildWeight >= 0)) bad('minChildWeight must be >= 0');
  if (!(p.lambda >= 0)) bad('lambda must be >= 0');
  if (!(p.subsample > 0 && p.subsample <= 1)) bad('subsample must be in (0, 1]');
  if (!Number.isInteger(p.maxBins) || p.maxBins < 2 || p.maxBins > 256) bad('maxBins must be 2..256');
  if (!(p.positiveWeight > 0)) bad('positiveWeight must be > 0');
  if (!Number.isInteger(p.earlyStoppingRounds) || p.earlyStoppingRounds < 0) bad('earlyStoppingRounds must be >= 0');
}

function checkMatrix(x: FeatureMatrix, what: string): void {
  if (!Number.isInteger(x.nRows) || !Number.isInteger(x.nCols) || x.nRows < 0 || x.nCols < 1) {
    throw new RangeError(`gbdt: ${what} has invalid shape ${x.nRows}x${x.nCols}`);
  }
  if (x.data.length !== x.nRows * x.nCols) {
    throw new RangeError(`gbdt: ${what} data length ${x.data.length} != ${x.nRows}x${x.nCols}`);
  }
}

function checkLabels(y: ArrayLike<number>, n: number, what: string): void {
  if (y.length !== n) throw new RangeError(`gbdt: ${what} has ${y.length} labels for ${n} rows`);
  for (let i = 0; i < n; i++) {
    if (y[i] !== 0 && y[i] !== 1) throw new RangeError(`gbdt: ${what} label at ${i} is ${y[i]}, expected 0 or 1`);
  }
}

/**
 * Upper bin edges for one feature: if it has few distinct values, midpoints
 * between them; otherwise quantiles of the sample. The last edge is +Infinity.
 */
export function computeBinEdges(sortedUnique: Float64Array, counts: Float64Array, maxValueBins: number): Float64Array {
  const u = sortedUnique.length;
  if (u === 0) return Float64Array.of(Infinity);
  if (u <= maxValueBins) {
    const e = new Float64Array(u);
    for (let i = 0; i < u - 1; i++) e[i] = (sortedUnique[i] + sortedUnique[i + 1]) / 2;
    e[u - 1] = Infinity;
    return e;
  }
  // Quantile edges over the weighted (by count) distinct values.
  let total = 0;
  for (let i = 0; i < u; i++) total += counts[i];
  const edges: number[] = [];
  let cum = 0;
  let nextTarget = total / maxValueBins;
  for (let i = 0; i < u - 1 && edges.length < maxValueBins - 1; i++) {
    cum += counts[i];
    if (cum >= nextTarget) {
      edges.push((sortedUnique[i] + sortedUnique[i + 1]) / 2);
      nextTarget = cum + (total - cum) / (maxValueBins - edges.length);
    }
  }
  edges.push(Infinity);
  return Float64Array.from(edges);
}

/** Bin of value v given edges: 0 for NaN, else 1 + first index with v <= edge. */
function binOf(v: number, edges: Float64Array): number {
  if (v !== v) return 0;
  let lo = 0;
  let hi = edges.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (v <= edges[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo + 1;
}

function fitEdges(x: FeatureMatrix, f: number, maxValueBins: number, sampleSize: number, rnd: () => number): Float64Array {
  const { nRows, nCols, data } = x;
  let vals: Float64Array;
  if (nRows <= sampleSize) {
    vals = new Float64Array(nRows);
    let k = 0;
    for (let r = 0; r < nRows; r++) {
      const v = data[r * nCols + f];
      if (v === v) vals[k++] = v;
    }
    vals = vals.subarray(0, k);
  } else {
    vals = new Float64Array(sampleSize);
    let k = 0;
    for (let i = 0; i < sampleSize; i++) {
      const v = data[Math.floor(rnd() * nRows) * nCols + f];
      if (v === v) vals[k++] = v;
    }
    vals = vals.subarray(0, k);
  }
  vals.sort();
  const uniq: number[] = [];
  const cnt: number[] = [];
  for (let i = 0; i < vals.length; i++) {
    if (uniq.length > 0 && uniq[uniq.length - 1] === vals[i]) cnt[cnt.length - 1]++;
    else {
      uniq.push(vals[i]);
      cnt.push(1);
    }
  }
  return computeBinEdges(Float64Array.from(uniq), Float64Array.from(cnt), maxValueBins);
}

function logloss(p: Float64Array, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) {
    const q = Math.min(Math.max(p[i], 1e-15), 1 - 1e-15);
    s -= y[i] === 1 ? Math.log(q) : Math.log(1 - q);
  }
  return s / Math.max(1, p.length);
}

/** ROC AUC with average ranks for ties (kept local so the model has no imports). */
function aucOf(s: Float64Array, y: ArrayLike<number>): number {
  const n = s.length;
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  idx.sort((a, b) => s[a] - s[b]);
  let nPos = 0;
  let rankSumPos = 0;
  let i = 0;
  while (i < n) {
    let j = i;
    while (j + 1 < n && s[idx[j + 1]] === s[idx[i]]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if (y[idx[k]] === 1) {
      nPos++;
      rankSumPos += avgRank;
    }
    i = j + 1;
  }
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0) return NaN;
  return (rankSumPos - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export class GradientBoostedTrees {
  readonly nFeatures: number;
  readonly featureNames: string[];
  readonly baseScore: number;
  readonly binEdges: Float64Array[];
  readonly params: GbdtParams;
  readonly bestIteration: number;
  private readonly trees: Tree[];
  private readonly gain: Float64Array;

  private constructor(init: {
    nFeatures: number;
    featureNames: string[];
    baseScore: number;
    binEdges: Float64Array[];
    trees: Tree[];
    gain: Float64Array;
    params: GbdtParams;
    bestIteration: number;
  }) {
    this.nFeatures = init.nFeatures;
    this.featureNames = init.featureNames;
    this.baseScore = init.baseScore;
    this.binEdges = init.binEdges;
    this.trees = init.trees;
    this.gain = init.gain;
    this.params = init.params;
    this.bestIteration = init.bestIteration;
  }

  get nTrees(): number {
    return this.trees.length;
  }

  /** Train on x (row-major) with 0/1 labels y. Deterministic for a given seed. */
  static train(x: FeatureMatrix, y: ArrayLike<number>, opts: TrainOptions = {}): GradientBoostedTrees {
    const p: GbdtParams = { ...DEFAULT_GBDT_PARAMS, ...opts.params };
    validateParams(p);
    checkMatrix(x, 'training matrix');
    checkLabels(y, x.nRows, 'training set');
    const n = x.nRows;
    const m = x.nCols;
    if (n === 0) throw new RangeError('gbdt: empty training set');
    const names = opts.featureNames ?? Array.from({ length: m }, (_, i) => `f${i}`);
    if (names.length !== m) throw new RangeError(`gbdt: ${names.length} feature names for ${m} columns`);
    const val = opts.validation;
    if (val) {
      checkMatrix(val.x, 'validation matrix');
      if (val.x.nCols !== m) throw new RangeError('gbdt: validation has a different number of columns');
      checkLabels(val.y, val.x.nRows, 'validation set');
    }

    const rnd = mulberry32(p.seed);
    // Quantise.
    const edges: Float64Array[] = [];
    const cols: Uint8Array[] = [];
    const nBins = new Int32Array(m);
    for (let f = 0; f < m; f++) {
      const e = fitEdges(x, f, p.maxBins - 1, p.binSampleSize, rnd);
      edges.push(e);
      nBins[f] = e.length + 1;
      const col = new Uint8Array(n);
      for (let r = 0; r < n; r++) col[r] = binOf(x.data[r * m + f], e);
      cols.push(col);
    }

    // Weights and base score (weighted log-odds).
    const w = new Float32Array(n);
    let wPos = 0;
    let wNeg = 0;
    for (let r = 0; r < n; r++) {
      if (y[r] === 1) {
        w[r] = p.positiveWeight;
        wPos += p.positiveWeight;
      } else {
        w[r] = 1;
        wNeg += 1;
      }
    }
    const baseScore = wPos === 0 ? -10 : wNeg === 0 ? 10 : Math.log(wPos / wNeg);

    const F = new Float64Array(n).fill(baseScore);
    const g = new Float32Array(n);
    const h = new Float32Array(n);
    const trees: Tree[] = [];
    const gain = new Float64Array(m);
    const gainPerTree: Float64Array[] = [];

    const vN = val ? val.x.nRows : 0;
    const Fv = new Float64Array(vN).fill(baseScore);
    const pv = new Float64Array(vN);
    let bestMetric = Infinity; // lower is better (auc is negated)
    let bestIter = 0;
    let sinceBest = 0;

    const rowIdx = new Uint32Array(n);
    const inBag = new Uint8Array(n);
    const grower = new TreeGrower(cols, nBins, p, m);

    for (let t = 0; t < p.nTrees; t++) {
      for (let r = 0; r < n; r++) {
        const pr = sigmoid(F[r]);
        g[r] = w[r] * (pr - y[r]);
        h[r] = Math.max(w[r] * pr * (1 - pr), 1e-16);
      }
      // Row subsample (Bernoulli, in row order: ascending indices keep memory access sequential).
      let cnt = 0;
      if (p.subsample < 1) {
        for (let r = 0; r < n; r++) if (rnd() < p.subsample) rowIdx[cnt++] = r;
        if (cnt === 0) rowIdx[cnt++] = Math.floor(rnd() * n);
      } else {
        for (let r = 0; r < n; r++) rowIdx[r] = r;
        cnt = n;
      }
      const treeGain = new Float64Array(m);
      const { tree, thrBin, leaves } = grower.grow(rowIdx.subarray(0, cnt), g, h, edges, treeGain);
      trees.push(tree);
      gainPerTree.push(treeGain);
      // Update training logits: in-bag rows from the leaf segments of the partition,
      // out-of-bag rows by walking the binned columns.
      inBag.fill(0);
      for (let l = 0; l < leaves.node.length; l++) {
        const v = tree.value[leaves.node[l]];
        for (let k = leaves.start[l]; k < leaves.end[l]; k++) {
          const r = rowIdx[k];
          F[r] += v;
          inBag[r] = 1;
        }
      }
      for (let r = 0; r < n; r++) {
        if (inBag[r]) continue;
        let node = 0;
        while (tree.feature[node] >= 0) {
          const b = cols[tree.feature[node]][r];
          node = b === 0 ? (tree.defaultLeft[node] ? tree.left[node] : tree.right[node]) : b <= thrBin[node] ? tree.left[node] : tree.right[node];
        }
        F[r] += tree.value[node];
      }
      let metric = NaN;
      if (val && vN > 0) {
        const vd = val.x.data;
        for (let r = 0; r < vN; r++) {
          Fv[r] += predictTree(tree, vd, r * m);
          pv[r] = sigmoid(Fv[r]);
        }
        metric = p.earlyStoppingMetric === 'auc' ? aucOf(pv, val.y) : logloss(pv, val.y);
        const cmp = p.earlyStoppingMetric === 'auc' ? -(Number.isNaN(metric) ? -Infinity : metric) : metric;
        if (cmp < bestMetric - 1e-12) {
          bestMetric = cmp;
          bestIter = t + 1;
          sinceBest = 0;
        } else sinceBest++;
      } else bestIter = t + 1;
      opts.onRound?.(t + 1, metric);
      if (p.earlyStoppingRounds > 0 && val && vN > 0 && sinceBest >= p.earlyStoppingRounds) break;
    }
    const kept = trees.slice(0, Math.max(1, bestIter));
    for (let t = 0; t < kept.length; t++) for (let f = 0; f < m; f++) gain[f] += gainPerTree[t][f];
    return new GradientBoostedTrees({
      nFeatures: m,
      featureNames: names,
      baseScore,
      binEdges: edges,
      trees: kept,
      gain,
      params: p,
      bestIteration: Math.max(1, bestIter),
    });
  }

  /** Raw logit for one row. */
  predictLogit(row: ArrayLike<number>): number {
    if (row.length !== this.nFeatures) {
      throw new RangeError(`gbdt: row has ${row.length} values, model expects ${this.nFeatures}`);
    }
    let z = this.baseScore;
    for (const t of this.trees) z += predictTree(t, row, 0);
    return z;
  }

  /** Probability of the positive class for one row (NaN = missing). */
  predictProba(row: Float64Array | Float32Array | number[]): number {
    return sigmoid(this.predictLogit(row));
  }

  /** Probabilities for every row of a matrix. */
  predictProbaBatch(x: FeatureMatrix | ArrayLike<number>[]): Float64Array {
    if (Array.isArray(x)) return Float64Array.from(x, (r) => this.predictProba(r as number[]));
    const mx = x as FeatureMatrix;
    checkMatrix(mx, 'prediction matrix');
    if (mx.nCols !== this.nFeatures) throw new RangeError(`gbdt: matrix has ${mx.nCols} columns, model expects ${this.nFeatures}`);
    const out = new Float64Array(mx.nRows);
    for (let r = 0; r < mx.nRows; r++) {
      let z = this.baseScore;
      for (const t of this.trees) z += predictTree(t, mx.data, r * mx.nCols);
      out[r] = sigmoid(z);
    }
    return out;
  }

  /** Total split gain per feature, by name, highest first. */
  featureImportance(): { feature: string; index: number; gain: number }[] {
    return Array.from(this.gain, (gv, i) => ({ feature: this.featureNames[i], index: i, gain: gv })).sort((a, b) => b.gain - a.gain);
  }

  toJSON(): GbdtJSON {
    return {
      format: 'presage-gbdt',
      version: 1,
      nFeatures: this.nFeatures,
      featureNames: [...this.featureNames],
      baseScore: this.baseScore,
      binEdges: this.binEdges.map((e) => Array.from(e, (v) => (Number.isFinite(v) ? v : null))),
      trees: this.trees.map((t) => ({
        feature: Array.from(t.feature),
        threshold: Array.from(t.threshold),
        left: Array.from(t.left),
        right: Array.from(t.right),
        defaultLeft: Array.from(t.defaultLeft),
        value: Array.from(t.value),
      })),
      gain: Array.from(this.gain),
      params: { ...this.params },
      bestIteration: this.bestIteration,
    };
  }

  /** Rebuild a model from `toJSON()` output (also after JSON.stringify/parse). Validates structure. */
  static fromJSON(j: unknown): GradientBoostedTrees {
    const o = j as GbdtJSON;
    if (!o || typeof o !== 'object' || o.format !== 'presage-gbdt' || o.version !== 1) {
      throw new TypeError('gbdt: not a presage-gbdt v1 model');
    }
    const m = o.nFeatures;
    if (!Number.isInteger(m) || m < 1) throw new TypeError('gbdt: bad nFeatures');
    if (!Array.isArray(o.trees) || !Array.isArray(o.binEdges) || o.binEdges.length !== m) throw new TypeError('gbdt: bad trees or binEdges');
    const trees: Tree[] = o.trees.map((t, ti) => {
      const k = t.feature?.length;
      for (const key of ['threshold', 'left', 'right', 'defaultLeft', 'value'] as const) {
        if (!Array.isArray(t[key]) || t[key].length !== k) throw new TypeError(`gbdt: tree ${ti} field ${key} malformed`);
      }
      const tree: Tree = {
        feature: Int32Array.from(t.feature),
        threshold: Float64Array.from(t.threshold, (v) => (v === null ? Infinity : v)),
        left: Int32Array.from(t.left),
        right: Int32Array.from(t.right),
        defaultLeft: Uint8Array.from(t.defaultLeft),
        value: Float64Array.from(t.value),
      };
      for (let i = 0; i < k; i++) {
        if (tree.feature[i] >= m) throw new TypeError(`gbdt: tree ${ti} node ${i} uses feature ${tree.feature[i]} >= ${m}`);
        // Children must point forward so that traversal always terminates.
        if (tree.feature[i] >= 0 && (tree.left[i] <= i || tree.right[i] <= i || tree.left[i] >= k || tree.right[i] >= k)) {
          throw new TypeError(`gbdt: tree ${ti} node ${i} has invalid children`);
        }
      }
      return tree;
    });
    return new GradientBoostedTrees({
      nFeatures: m,
      featureNames: Array.isArray(o.featureNames) && o.featureNames.length === m ? [...o.featureNames] : Array.from({ length: m }, (_, i) => `f${i}`),
      baseScore: o.baseScore,
      binEdges: o.binEdges.map((e) => Float64Array.from(e, (v) => (v === null ? Infinity : v))),
      trees,
      gain: Float64Array.from(o.gain ?? new Array(m).fill(0)),
      params: { ...DEFAULT_GBDT_PARAMS, ...o.params },
      bestIteration: o.bestIteration ?? trees.length,
    });
  }
}

function predictTree(t: Tree, row: ArrayLike<number>, off: number): number {
  let node = 0;
  const feat = t.feature;
  while (feat[node] >= 0) {
    const v = row[off + feat[node]];
    node = v !== v ? (t.defaultLeft[node] ? t.left[node] : t.right[node]) : v <= t.threshold[node] ? t.left[node] : t.right[node];
  }
  return t.value[node];
}

/** Grows one tree over a subset of rows; holds the reusable buffers. */
class TreeGrower {
  private readonly og: Float64Array;
  private readonly oh: Float64Array;
  private readonly histSize: number;
  private readonly offsets: Int32Array;
  private readonly scratch: Uint32Array;

  constructor(
    private readonly cols: Uint8Array[],
    private readonly nBins: Int32Array,
    private readonly p: GbdtParams,
    private readonly m: number,
  ) {
    const n = cols[0].length;
    this.og = new Float64Array(n);
    this.oh = new Float64Array(n);
    this.scratch = new Uint32Array(n);
    this.offsets = new Int32Array(m + 1);
    for (let f = 0; f < m; f++) this.offsets[f + 1] = this.offsets[f] + nBins[f];
    this.histSize = this.offsets[m];
  }

  /** Histogram of gradients (even slots) and hessians (odd slots) per (feature, bin). */
  private buildHist(idx: Uint32Array, g: Float32Array, h: Float32Array): Float64Array {
    const hist = new Float64Array(this.histSize * 2);
    const cnt = idx.length;
    const og = this.og;
    const oh = this.oh;
    for (let k = 0; k < cnt; k++) {
      const r = idx[k];
      og[k] = g[r];
      oh[k] = h[r];
    }
    for (let f = 0; f < this.m; f++) {
      const col = this.cols[f];
      const base = this.offsets[f] * 2;
      for (let k = 0; k < cnt; k++) {
        const b = base + col[idx[k]] * 2;
        hist[b] += og[k];
        hist[b + 1] += oh[k];
      }
    }
    return hist;
  }

  grow(idx: Uint32Array, g: Float32Array, h: Float32Array, edges: Float64Array[], treeGain: Float64Array): { tree: Tree; thrBin: Int32Array; leaves: { node: Int32Array; start: Int32Array; end: Int32Array } } {
    const feature: number[] = [];
    const threshold: number[] = [];
    const thrBinArr: number[] = [];
    const left: number[] = [];
    const right: number[] = [];
    const defaultLeft: number[] = [];
    const value: number[] = [];
    const { lambda, minChildWeight, minSplitGain, learningRate, maxDepth } = this.p;
    const m = this.m;

    const newNode = (): number => {
      feature.push(-1);
      threshold.push(0);
      thrBinArr.push(0);
      left.push(-1);
      right.push(-1);
      defaultLeft.push(0);
      value.push(0);
      return feature.length - 1;
    };

    const leafNodes: number[] = [];
    const leafStarts: number[] = [];
    const leafEnds: number[] = [];
    const makeLeaf = (node: number, rows: Uint32Array, v: number): void => {
      value[node] = v;
      leafNodes.push(node);
      leafStarts.push(rows.byteOffset / 4 - idx.byteOffset / 4);
      leafEnds.push(rows.byteOffset / 4 - idx.byteOffset / 4 + rows.length);
    };
    const recurse = (node: number, rows: Uint32Array, hist: Float64Array | null, G: number, H: number, depth: number): void => {
      const leafValue = (-G / (H + lambda)) * learningRate;
      if (hist === null || depth >= maxDepth || rows.length < 2 || H < 2 * minChildWeight) {
        makeLeaf(node, rows, leafValue);
        return;
      }
      const parentScore = (G * G) / (H + lambda);
      let bestGain = 0;
      let bestF = -1;
      let bestBin = 0;
      let bestDefLeft = false;
      for (let f = 0; f < m; f++) {
        const nb = this.nBins[f];
        if (nb <= 2 && hist[this.offsets[f] * 2 + 1] === 0) continue; // a single value bin and no missing: nothing to split
        const base = this.offsets[f] * 2;
        const gm = hist[base];
        const hm = hist[base + 1];
        let gl = 0;
        let hl = 0;
        // Left = value bins 1..t; missing goes left or right.
        for (let t = 1; t < nb; t++) {
          gl += hist[base + t * 2];
          hl += hist[base + t * 2 + 1];
          // Missing right.
          if (t < nb - 1 || hm > 0) {
            const hr = H - hl;
            if (hl >= minChildWeight && hr >= minChildWeight) {
              const gr = G - gl;
              const gainV = (gl * gl) / (hl + lambda) + (gr * gr) / (hr + lambda) - parentScore;
              if (gainV > bestGain) {
                bestGain = gainV;
                bestF = f;
                bestBin = t;
                bestDefLeft = false;
              }
            }
          }
          // Missing left (only meaningful when there are missing rows and some rows go right).
          if (hm > 0 && t < nb - 1) {
            const gl2 = gl + gm;
            const hl2 = hl + hm;
            const hr = H - hl2;
            if (hl2 >= minChildWeight && hr >= minChildWeight) {
              const gr = G - gl2;
              const gainV = (gl2 * gl2) / (hl2 + lambda) + (gr * gr) / (hr + lambda) - parentScore;
              if (gainV > bestGain) {
                bestGain = gainV;
                bestF = f;
                bestBin = t;
                bestDefLeft = true;
              }
            }
          }
        }
      }
      bestGain *= 0.5;
      if (bestF < 0 || bestGain <= minSplitGain) {
        makeLeaf(node, rows, leafValue);
        return;
      }
      // Stable partition (left first) through a scratch buffer, so row indices stay ascending.
      const col = this.cols[bestF];
      const scratch = this.scratch;
      let i = 0;
      let nr = 0;
      for (let k = 0; k < rows.length; k++) {
        const r = rows[k];
        const b = col[r];
        if (b === 0 ? bestDefLeft : b <= bestBin) rows[i++] = r;
        else scratch[nr++] = r;
      }
      rows.set(scratch.subarray(0, nr), i);
      const leftRows = rows.subarray(0, i);
      const rightRows = rows.subarray(i);
      if (leftRows.length === 0 || rightRows.length === 0) {
        makeLeaf(node, rows, leafValue);
        return;
      }
      // No missing rows seen at this node: send future missing values to the heavier side.
      const base = this.offsets[bestF] * 2;
      let defLeft = bestDefLeft;
      if (hist[base + 1] === 0) {
        let hlSum = 0;
        for (let t = 1; t <= bestBin; t++) hlSum += hist[base + t * 2 + 1];
        defLeft = hlSum >= H - hlSum;
      }
      feature[node] = bestF;
      threshold[node] = edges[bestF][bestBin - 1];
      thrBinArr[node] = bestBin;
      defaultLeft[node] = defLeft ? 1 : 0;
      treeGain[bestF] += bestGain;

      let leftHist: Float64Array | null = null;
      let rightHist: Float64Array | null = null;
      let GL = 0;
      let HL = 0;
      if (depth + 1 < maxDepth) {
        const smallIsLeft = leftRows.length <= rightRows.length;
        const small = smallIsLeft ? leftRows : rightRows;
        const smallHist = this.buildHist(small, g, h);
        for (let k = 0; k < hist.length; k++) hist[k] -= smallHist[k]; // parent becomes the larger child
        leftHist = smallIsLeft ? smallHist : hist;
        rightHist = smallIsLeft ? hist : smallHist;
        // Totals from feature 0 (every row falls in exactly one of its bins).
        for (let b = 0; b < this.nBins[0]; b++) {
          GL += leftHist[b * 2];
          HL += leftHist[b * 2 + 1];
        }
      } else {
        // Children will be leaves: no histograms needed, only their sums.
        for (let k = 0; k < leftRows.length; k++) {
          GL += g[leftRows[k]];
          HL += h[leftRows[k]];
        }
      }
      const GR = G - GL;
      const HR = H - HL;
      const ln = newNode();
      const rn = newNode();
      left[node] = ln;
      right[node] = rn;
      recurse(ln, leftRows, leftHist, GL, HL, depth + 1);
      recurse(rn, rightRows, rightHist, GR, HR, depth + 1);
    };

    const root = newNode();
    const rootHist = this.buildHist(idx, g, h);
    let G = 0;
    let H = 0;
    for (let k = 0; k < idx.length; k++) {
      G += g[idx[k]];
      H += h[idx[k]];
    }
    void m;
    recurse(root, idx, rootHist, G, H, 0);
    return {
      leaves: { node: Int32Array.from(leafNodes), start: Int32Array.from(leafStarts), end: Int32Array.from(leafEnds) },
      tree: {
        feature: Int32Array.from(feature),
        threshold: Float64Array.from(threshold),
        left: Int32Array.from(left),
        right: Int32Array.from(right),
        defaultLeft: Uint8Array.from(defaultLeft),
        value: Float64Array.from(value),
      },
      thrBin: Int32Array.from(thrBinArr),
    };
  }
}
