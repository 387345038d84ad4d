/**
 * Logistic regression with non-negative weights over hinge terms, for models that must be
 * monotone in their evidence: more latency against the peers may never lower the probability,
 * and nothing caps it below 1, so a unit far worse than its peers always ranks above a mildly
 * worse one (a tree ensemble is piecewise constant and ties them in its last leaf).
 *
 * Fitted by cyclic coordinate descent with a one-dimensional Newton step per weight, projected
 * onto w ≥ 0 (the intercept is free); the loss is convex, so this converges. Row weights balance
 * the classes; an L2 penalty keeps weights finite when the classes separate.
 */

export interface LogisticFit {
  intercept: number;
  weights: Float64Array;
  iterations: number;
}

const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/**
 * `x` row-major n × d (finite values; a missing input is 0 = no evidence), labels 0/1, optional
 * row weights. `nonNegative` (default true) projects the weights (not the intercept) onto ≥ 0.
 */
export function fitLogistic(
  x: Float64Array, n: number, d: number, y: ArrayLike<number>,
  opts: { rowWeight?: ArrayLike<number>; l2?: number; maxSweeps?: number; tol?: number; nonNegative?: boolean } = {},
): LogisticFit {
  if (x.length !== n * d) throw new RangeError(`fitLogistic: x has ${x.length} values, expected ${n}×${d}`);
  const l2 = opts.l2 ?? 1e-3;
  const nonNeg = opts.nonNegative ?? true;
  const rw = opts.rowWeight;
  const w = new Float64Array(d);
  let b = 0;
  const z = new Float64Array(n); // linear predictor, kept in step with w and b
  let wsum = 0;
  for (let i = 0; i < n; i++) wsum += rw ? rw[i] : 1;
  let sweep = 0;
  for (; sweep < (opts.maxSweeps ?? 200); sweep++) {
    let maxStep = 0;
    // Coordinate -1 is the intercept.
    for (let j = -1; j < d; j++) {
      let g = 0;
      let h = 0;
      for (let i = 0; i < n; i++) {
        const xi = j < 0 ? 1 : x[i * d + j];
        if (xi === 0) continue;
        const p = sigmoid(z[i]);
        const r = rw ? rw[i] : 1;
        g += r * (p - y[i]) * xi;
        h += r * p * (1 - p) * xi * xi;
      }
      g /= wsum;
      h /= wsum;
      if (j >= 0) {
        g += l2 * w[j];
        h += l2;
      }
      if (!(h > 1e-12)) continue;
      const old = j < 0 ? b : w[j];
      let next = old - g / h;
      if (j >= 0 && nonNeg && next < 0) next = 0;
      const step = next - old;
      if (step === 0) continue;
      if (j < 0) b = next;
      else w[j] = next;
      for (let i = 0; i < n; i++) {
        const xi = j < 0 ? 1 : x[i * d + j];
        if (xi !== 0) z[i] += step * xi;
      }
      maxStep = Math.max(maxStep, Math.abs(step));
    }
    if (maxStep < (opts.tol ?? 1e-7)) break;
  }
  return { intercept: b, weights: w, iterations: sweep };
}

/** The linear predictor of one row. */
export function linearPredictor(fit: Pick<LogisticFit, 'intercept' | 'weights'>, row: ArrayLike<number>): number {
  let z = fit.intercept;
  for (let j = 0; j < fit.weights.length; j++) z += fit.weights[j] * row[j];
  return z;
}

export { sigmoid };
