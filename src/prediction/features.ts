/**
 * Pure feature functions over numeric series (one value per time step, oldest first).
 * Every function looks only at the past: output[i] depends on input[0..i].
 * NaN means "not observed" and is skipped where a window can do without it;
 * a result that cannot be computed is NaN, never a thrown error.
 */

export type Series = ArrayLike<number>;

function checkWindow(window: number, what: string): void {
  if (!Number.isInteger(window) || window < 1) throw new RangeError(`${what}: window must be a positive integer, got ${window}`);
}

/**
 * Rate of change per step over `lag` steps: (x[i] - x[i-lag]) / lag.
 * NaN for the first `lag` steps or when either end is missing.
 */
export function rateOfChange(x: Series, lag = 1): Float64Array {
  checkWindow(lag, 'rateOfChange');
  const out = new Float64Array(x.length).fill(NaN);
  for (let i = lag; i < x.length; i++) out[i] = (x[i] - x[i - lag]) / lag;
  return out;
}

/**
 * Trailing moving average over the last `window` steps (including i), ignoring NaN.
 * NaN until `minPeriods` valid values are in the window (default: the full window).
 */
export function movingAverage(x: Series, window: number, minPeriods = window): Float64Array {
  checkWindow(window, 'movingAverage');
  const out = new Float64Array(x.length).fill(NaN);
  let sum = 0;
  let cnt = 0;
  for (let i = 0; i < x.length; i++) {
    if (!Number.isNaN(x[i])) {
      sum += x[i];
      cnt++;
    }
    if (i >= window && !Number.isNaN(x[i - window])) {
      sum -= x[i - window];
      cnt--;
    }
    if (cnt >= minPeriods && cnt > 0) out[i] = sum / cnt;
  }
  return out;
}

/**
 * Trailing moving standard deviation (population, divide by n) over `window` steps,
 * ignoring NaN; computed directly per window (no running sums) so large offsets
 * such as counters near 1e12 do not lose precision.
 */
export function movingStd(x: Series, window: number, minPeriods = window): Float64Array {
  checkWindow(window, 'movingStd');
  const out = new Float64Array(x.length).fill(NaN);
  for (let i = 0; i < x.length; i++) {
    let cnt = 0;
    let sum = 0;
    for (let j = Math.max(0, i - window + 1); j <= i; j++) if (!Number.isNaN(x[j])) {
      sum += x[j];
      cnt++;
    }
    if (cnt < minPeriods || cnt === 0) continue;
    const mean = sum / cnt;
    let ss = 0;
    for (let j = Math.max(0, i - window + 1); j <= i; j++) if (!Number.isNaN(x[j])) ss += (x[j] - mean) ** 2;
    out[i] = Math.sqrt(ss / cnt);
  }
  return out;
}

/**
 * Exponentially weighted moving average: s[0] = x[0], s[i] = alpha x[i] + (1 - alpha) s[i-1].
 * Missing values carry the previous average forward; NaN until the first observation.
 */
export function ewma(x: Series, alpha: number): Float64Array {
  if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`ewma: alpha must be in (0, 1], got ${alpha}`);
  const out = new Float64Array(x.length);
  let s = NaN;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (!Number.isNaN(v)) s = Number.isNaN(s) ? v : alpha * v + (1 - alpha) * s;
    out[i] = s;
  }
  return out;
}

/** The EWMA alpha equivalent to a span of n steps (pandas' convention): 2 / (n + 1). */
export function alphaForSpan(span: number): number {
  if (!(span >= 1)) throw new RangeError(`alphaForSpan: span must be >= 1, got ${span}`);
  return 2 / (span + 1);
}

/** EWMA for several alphas at once, keyed by alpha. */
export function ewmaMulti(x: Series, alphas: number[]): Map<number, Float64Array> {
  return new Map(alphas.map((a) => [a, ewma(x, a)]));
}

/**
 * Least-squares slope of y against t (t defaults to 0, 1, 2, …), skipping pairs with NaN.
 * NaN with fewer than 2 points or when every t is equal.
 */
export function linearSlope(y: Series, t?: Series): number {
  if (t && t.length !== y.length) throw new RangeError('linearSlope: y and t differ in length');
  let n = 0;
  let st = 0;
  let sy = 0;
  for (let i = 0; i < y.length; i++) {
    const ti = t ? t[i] : i;
    if (Number.isNaN(y[i]) || Number.isNaN(ti)) continue;
    n++;
    st += ti;
    sy += y[i];
  }
  if (n < 2) return NaN;
  const mt = st / n;
  const my = sy / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < y.length; i++) {
    const ti = t ? t[i] : i;
    if (Number.isNaN(y[i]) || Number.isNaN(ti)) continue;
    sxy += (ti - mt) * (y[i] - my);
    sxx += (ti - mt) ** 2;
  }
  return sxx > 0 ? sxy / sxx : NaN;
}

/**
 * Trailing least-squares trend slope (units per step) over the last `window` steps.
 * NaN until at least `minPoints` (default 2) valid values are in the window.
 */
export function trendSlope(x: Series, window: number, minPoints = 2): Float64Array {
  checkWindow(window, 'trendSlope');
  const out = new Float64Array(x.length).fill(NaN);
  const buf: number[] = [];
  for (let i = 0; i < x.length; i++) {
    const lo = Math.max(0, i - window + 1);
    buf.length = 0;
    let valid = 0;
    for (let j = lo; j <= i; j++) {
      buf.push(x[j]);
      if (!Number.isNaN(x[j])) valid++;
    }
    if (valid >= minPoints) out[i] = linearSlope(buf);
  }
  return out;
}

/**
 * Error rate per step: errors[i] / ops[i] (NaN when ops[i] is 0 or missing).
 * Both are per-step counts (deltas), not cumulative counters.
 */
export function errorRate(errors: Series, ops: Series): Float64Array {
  if (errors.length !== ops.length) throw new RangeError('errorRate: errors and ops differ in length');
  return Float64Array.from({ length: errors.length }, (_, i) => (ops[i] > 0 ? errors[i] / ops[i] : NaN));
}

/** Trailing least-squares slope of the error rate (errors per op, per step) over `window` steps. */
export function errorRateTrend(errors: Series, ops: Series, window: number): Float64Array {
  return trendSlope(errorRate(errors, ops), window);
}

/** Turn a cumulative counter into per-step increments; a decrease (counter reset) gives NaN. */
export function counterDeltas(counter: Series): Float64Array {
  const out = new Float64Array(counter.length).fill(NaN);
  for (let i = 1; i < counter.length; i++) {
    const d = counter[i] - counter[i - 1];
    if (d >= 0) out[i] = d;
  }
  return out;
}

/** Pearson correlation of paired values, skipping pairs with NaN. NaN with < 2 pairs or a constant side. */
export function pearson(a: Series, b: Series): number {
  if (a.length !== b.length) throw new RangeError('pearson: series differ in length');
  let n = 0;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) continue;
    n++;
    sa += a[i];
    sb += b[i];
  }
  if (n < 2) return NaN;
  const ma = sa / n;
  const mb = sb / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) continue;
    const da = a[i] - ma;
    const db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : NaN;
}

/**
 * Trailing Pearson correlation between two series over `window` steps (e.g. latency
 * against throughput: a healthy drive's latency follows its load; a fail-slow drive's
 * latency rises on its own — the Perseus signal). NaN until `minPairs` valid pairs.
 */
export function rollingCorrelation(a: Series, b: Series, window: number, minPairs = 3): Float64Array {
  checkWindow(window, 'rollingCorrelation');
  if (a.length !== b.length) throw new RangeError('rollingCorrelation: series differ in length');
  const out = new Float64Array(a.length).fill(NaN);
  for (let i = 0; i < a.length; i++) {
    const lo = Math.max(0, i - window + 1);
    let pairs = 0;
    for (let j = lo; j <= i; j++) if (!Number.isNaN(a[j]) && !Number.isNaN(b[j])) pairs++;
    if (pairs >= minPairs) out[i] = pearson(Array.prototype.slice.call(a, lo, i + 1), Array.prototype.slice.call(b, lo, i + 1));
  }
  return out;
}

/** Median of the non-NaN values; NaN when there are none. */
export function median(values: Series): number {
  const s = Float64Array.from(values).filter((v) => !Number.isNaN(v)).sort();
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median absolute deviation from the median (raw, not scaled). */
export function mad(values: Series): number {
  const m = median(values);
  if (Number.isNaN(m)) return NaN;
  return median(Array.from(values, (v) => Math.abs(v - m)));
}

/** 1.4826 × MAD estimates the standard deviation for normal data. */
export const MAD_TO_SIGMA = 1.4826;

/**
 * Distance of `value` from the median of `peers`, in robust standard deviations
 * (1.4826 × MAD). Whether `value` itself is among `peers` is the caller's choice.
 * When MAD is 0 (more than half the peers identical) the scale falls back to
 * 1.2533 × mean absolute deviation from the median, then to `minScale`; with all
 * peers equal and value equal to them the result is 0.
 * NaN when value is NaN or there are no peers.
 */
export function peerDeviation(value: number, peers: Series, minScale = 1e-12): number {
  if (Number.isNaN(value)) return NaN;
  const m = median(peers);
  if (Number.isNaN(m)) return NaN;
  let scale = MAD_TO_SIGMA * mad(peers);
  if (!(scale > 0)) {
    let s = 0;
    let n = 0;
    for (let i = 0; i < peers.length; i++) if (!Number.isNaN(peers[i])) {
      s += Math.abs(peers[i] - m);
      n++;
    }
    scale = 1.2533 * (s / n);
  }
  if (!(scale > 0)) {
    if (value === m) return 0;
    scale = minScale;
  }
  return (value - m) / scale;
}

/**
 * Robust z-score of every member against the whole group (itself included), e.g. the
 * drives of one host at one minute: how many MADs each one sits from the median.
 */
export function groupMadScores(values: Series, minScale = 1e-12): Float64Array {
  return Float64Array.from({ length: values.length }, (_, i) => peerDeviation(values[i], values, minScale));
}
