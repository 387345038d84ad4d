/**
 * Probability calibration: turn a model's raw scores into probabilities that mean
 * what they say (of drives given 0.2, about 20 % fail). Two methods, both plain data:
 * - isotonic regression by pool-adjacent-violators (PAV): monotone, non-parametric,
 *   needs many positives to be stable;
 * - Platt scaling: p = sigmoid(a * z + b) with z the score (or its logit), two
 *   parameters, stable with few positives.
 * Fit on a validation set never used for training, judge on held-out data.
 */

export interface IsotonicJSON {
  kind: 'isotonic';
  /** Block boundaries: x ascending, y non-decreasing; predictions interpolate linearly between points. */
  x: number[];
  y: number[];
}

export interface PlattJSON {
  kind: 'platt';
  a: number;
  b: number;
  /** Whether the score is mapped through logit(score) before the linear map (for scores in (0,1)). */
  logitInput: boolean;
}

export type CalibratorJSON = IsotonicJSON | PlattJSON;

export interface Calibrator {
  predict(score: number): number;
  toJSON(): CalibratorJSON;
}

function checkInput(scores: ArrayLike<number>, labels: ArrayLike<number>): void {
  if (scores.length !== labels.length) throw new RangeError(`calibration: ${scores.length} scores for ${labels.length} labels`);
  if (scores.length === 0) throw new RangeError('calibration: no data');
  for (let i = 0; i < scores.length; i++) {
    if (!Number.isFinite(scores[i])) throw new RangeError(`calibration: score at ${i} is not finite`);
    if (labels[i] !== 0 && labels[i] !== 1) throw new RangeError(`calibration: label at ${i} is not 0/1`);
  }
}

function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

function logit(p: number): number {
  const q = Math.min(Math.max(p, 1e-12), 1 - 1e-12);
  return Math.log(q / (1 - q));
}

export class IsotonicCalibrator implements Calibrator {
  constructor(
    readonly x: Float64Array,
    readonly y: Float64Array,
  ) {
    if (x.length !== y.length || x.length === 0) throw new RangeError('isotonic: x and y must be non-empty and equal length');
    for (let i = 1; i < x.length; i++) {
      if (!(x[i] >= x[i - 1]) || !(y[i] >= y[i - 1])) throw new RangeError('isotonic: x and y must be non-decreasing');
    }
  }

  /** Pool adjacent violators on (score, label) pairs, optional weights. */
  static fit(scores: ArrayLike<number>, labels: ArrayLike<number>, weights?: ArrayLike<number>): IsotonicCalibrator {
    checkInput(scores, labels);
    const n = scores.length;
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
    // Ties in score are pooled first: a calibrator cannot separate equal scores.
    const bx: number[] = [];
    const bxMax: number[] = [];
    const bw: number[] = [];
    const bs: number[] = [];
    for (const i of order) {
      const w = weights ? weights[i] : 1;
      const s = scores[i];
      if (bx.length > 0 && bxMax[bxMax.length - 1] === s) {
        bw[bw.length - 1] += w;
        bs[bs.length - 1] += w * labels[i];
      } else {
        bx.push(s);
        bxMax.push(s);
        bw.push(w);
        bs.push(w * labels[i]);
      }
      // Merge while the last block's mean is below the previous block's mean.
      while (bw.length > 1 && bs[bs.length - 1] / bw[bw.length - 1] <= bs[bs.length - 2] / bw[bw.length - 2]) {
        const w2 = bw.pop()!;
        const s2 = bs.pop()!;
        const xm = bxMax.pop()!;
        bx.pop();
        bw[bw.length - 1] += w2;
        bs[bs.length - 1] += s2;
        bxMax[bxMax.length - 1] = xm;
      }
    }
    // Each block becomes two points (its lowest and highest score) with its mean,
    // so the function is flat inside a block and interpolates across gaps.
    const px: number[] = [];
    const py: number[] = [];
    for (let k = 0; k < bw.length; k++) {
      const v = bs[k] / bw[k];
      px.push(bx[k]);
      py.push(v);
      if (bxMax[k] > bx[k]) {
        px.push(bxMax[k]);
        py.push(v);
      }
    }
    return new IsotonicCalibrator(Float64Array.from(px), Float64Array.from(py));
  }

  predict(score: number): number {
    const x = this.x;
    const y = this.y;
    if (Number.isNaN(score)) return NaN;
    if (score <= x[0]) return y[0];
    const last = x.length - 1;
    if (score >= x[last]) return y[last];
    let lo = 0;
    let hi = last;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (x[mid] <= score) lo = mid;
      else hi = mid;
    }
    const span = x[hi] - x[lo];
    return span > 0 ? y[lo] + ((score - x[lo]) / span) * (y[hi] - y[lo]) : y[hi];
  }

  toJSON(): IsotonicJSON {
    return { kind: 'isotonic', x: Array.from(this.x), y: Array.from(this.y) };
  }
}

export class PlattCalibrator implements Calibrator {
  constructor(
    readonly a: number,
    readonly b: number,
    readonly logitInput: boolean,
  ) {
    if (!Number.isFinite(a) || !Number.isFinite(b)) throw new RangeError('platt: a and b must be finite');
  }

  /**
   * Newton's method on the log-likelihood with Platt's smoothed targets
   * ((N+ + 1)/(N+ + 2) and 1/(N- + 2)), which keeps a and b finite on separable data.
   */
  static fit(scores: ArrayLike<number>, labels: ArrayLike<number>, opts: { logitInput?: boolean } = {}): PlattCalibrator {
    checkInput(scores, labels);
    const logitInput = opts.logitInput ?? false;
    const n = scores.length;
    const z = Float64Array.from(scores, (s) => (logitInput ? logit(s) : s));
    let nPos = 0;
    for (let i = 0; i < n; i++) nPos += labels[i];
    const nNeg = n - nPos;
    const tPos = (nPos + 1) / (nPos + 2);
    const tNeg = 1 / (nNeg + 2);
    let a = 0;
    let b = Math.log((nPos + 1) / (nNeg + 1));
    const nll = (aa: number, bb: number): number => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        const t = labels[i] === 1 ? tPos : tNeg;
        const f = aa * z[i] + bb;
        // log(1 + e^f) - t f, computed stably.
        s += (f > 0 ? f + Math.log1p(Math.exp(-f)) : Math.log1p(Math.exp(f))) - t * f;
      }
      return s;
    };
    let cur = nll(a, b);
    for (let it = 0; it < 100; it++) {
      let ga = 0;
      let gb = 0;
      let haa = 1e-12;
      let hab = 0;
      let hbb = 1e-12;
      for (let i = 0; i < n; i++) {
        const t = labels[i] === 1 ? tPos : tNeg;
        const p = sigmoid(a * z[i] + b);
        const d = p - t;
        const w = p * (1 - p);
        ga += d * z[i];
        gb += d;
        haa += w * z[i] * z[i];
        hab += w * z[i];
        hbb += w;
      }
      const det = haa * hbb - hab * hab;
      if (!(Math.abs(det) > 0)) break;
      let da = -(hbb * ga - hab * gb) / det;
      let db = -(-hab * ga + haa * gb) / det;
      // Backtracking line search keeps every step a descent.
      let step = 1;
      let next = nll(a + da, b + db);
      while (next > cur && step > 1e-10) {
        step /= 2;
        next = nll(a + step * da, b + step * db);
      }
      da *= step;
      db *= step;
      a += da;
      b += db;
      const improved = cur - next;
      cur = next;
      if (Math.abs(da) < 1e-10 && Math.abs(db) < 1e-10) break;
      if (improved >= 0 && improved < 1e-12) break;
    }
    return new PlattCalibrator(a, b, logitInput);
  }

  predict(score: number): number {
    const z = this.logitInput ? logit(score) : score;
    return sigmoid(this.a * z + this.b);
  }

  toJSON(): PlattJSON {
    return { kind: 'platt', a: this.a, b: this.b, logitInput: this.logitInput };
  }
}

/**
 * Fit a calibrator. `method: 'isotonic'` (default) or `'platt'`; for Platt,
 * scores in [0, 1] are mapped through the logit first unless `logitInput: false`.
 */
export function fitCalibrator(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  opts: { method?: 'isotonic' | 'platt'; logitInput?: boolean } = {},
): Calibrator {
  const method = opts.method ?? 'isotonic';
  if (method === 'isotonic') return IsotonicCalibrator.fit(scores, labels);
  if (method === 'platt') {
    let inUnit = true;
    for (let i = 0; i < scores.length; i++) if (!(scores[i] >= 0 && scores[i] <= 1)) inUnit = false;
    return PlattCalibrator.fit(scores, labels, { logitInput: opts.logitInput ?? inUnit });
  }
  throw new RangeError(`calibration: unknown method ${String(method)}`);
}

/** Rebuild a calibrator from its JSON. */
export function calibratorFromJSON(j: unknown): Calibrator {
  const o = j as CalibratorJSON;
  if (o && typeof o === 'object' && o.kind === 'isotonic' && Array.isArray(o.x) && Array.isArray(o.y)) {
    return new IsotonicCalibrator(Float64Array.from(o.x), Float64Array.from(o.y));
  }
  if (o && typeof o === 'object' && o.kind === 'platt') return new PlattCalibrator(o.a, o.b, Boolean(o.logitInput));
  throw new TypeError('calibration: not a calibrator JSON (kind isotonic or platt)');
}

/** Brier score: mean squared difference between probability and outcome (lower is better). */
export function brierScore(probs: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (probs.length !== labels.length) throw new RangeError('brier: length mismatch');
  if (probs.length === 0) return NaN;
  let s = 0;
  for (let i = 0; i < probs.length; i++) {
    const d = probs[i] - labels[i];
    s += d * d;
  }
  return s / probs.length;
}

export interface ReliabilityBin {
  lo: number;
  hi: number;
  count: number;
  meanPredicted: number;
  fractionPositive: number;
}

export interface Reliability {
  bins: ReliabilityBin[];
  /** Expected calibration error: count-weighted mean |meanPredicted - fractionPositive|. */
  ece: number;
}

/**
 * Reliability table. `binning: 'uniform'` cuts [0,1] into equal-width bins;
 * `'quantile'` gives bins with equal counts (better for skewed probabilities).
 * Empty bins are omitted.
 */
export function reliability(probs: ArrayLike<number>, labels: ArrayLike<number>, nBins = 10, binning: 'uniform' | 'quantile' = 'uniform'): Reliability {
  if (probs.length !== labels.length) throw new RangeError('reliability: length mismatch');
  if (!Number.isInteger(nBins) || nBins < 1) throw new RangeError('reliability: nBins must be a positive integer');
  const n = probs.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => probs[a] - probs[b]);
  const binOf = new Int32Array(n);
  if (binning === 'uniform') {
    for (let i = 0; i < n; i++) binOf[i] = Math.min(nBins - 1, Math.max(0, Math.floor(probs[i] * nBins)));
  } else {
    // Equal-count bins that never split a tie: every row with the same probability takes the bin
    // of the first of them (a model that gives one value to most rows would otherwise have that
    // value cut into bins by an arbitrary order, e.g. drive by drive).
    let firstRank = 0;
    order.forEach((i, rank) => {
      if (rank > 0 && probs[i] !== probs[order[rank - 1]]) firstRank = rank;
      binOf[i] = Math.min(nBins - 1, Math.floor((firstRank * nBins) / n));
    });
  }
  const cnt = new Float64Array(nBins);
  const sp = new Float64Array(nBins);
  const sy = new Float64Array(nBins);
  const lo = new Float64Array(nBins).fill(Infinity);
  const hi = new Float64Array(nBins).fill(-Infinity);
  for (let i = 0; i < n; i++) {
    const b = binOf[i];
    cnt[b]++;
    sp[b] += probs[i];
    sy[b] += labels[i];
    lo[b] = Math.min(lo[b], probs[i]);
    hi[b] = Math.max(hi[b], probs[i]);
  }
  const bins: ReliabilityBin[] = [];
  let ece = 0;
  for (let b = 0; b < nBins; b++) {
    if (cnt[b] === 0) continue;
    const mp = sp[b] / cnt[b];
    const fp = sy[b] / cnt[b];
    bins.push({
      lo: binning === 'uniform' ? b / nBins : lo[b],
      hi: binning === 'uniform' ? (b + 1) / nBins : hi[b],
      count: cnt[b],
      meanPredicted: mp,
      fractionPositive: fp,
    });
    ece += (cnt[b] / n) * Math.abs(mp - fp);
  }
  return { bins, ece: n > 0 ? ece : NaN };
}
