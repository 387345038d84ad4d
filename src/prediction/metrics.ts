/**
 * Evaluation metrics for failure prediction under extreme imbalance.
 * Scores: higher = more likely to fail. Labels: 1 = failed, 0 = healthy.
 * An alarm is raised when score > threshold (strictly), so a threshold taken
 * from the healthy scores bounds the false-alarm rate even with ties.
 */

function checkPair(scores: ArrayLike<number>, labels: ArrayLike<number>): void {
  if (scores.length !== labels.length) {
    throw new RangeError(`metrics: ${scores.length} scores for ${labels.length} labels`);
  }
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] !== 0 && labels[i] !== 1) throw new RangeError(`metrics: label ${labels[i]} at ${i} is not 0/1`);
    if (Number.isNaN(scores[i])) throw new RangeError(`metrics: score at ${i} is NaN`);
  }
}

/** ROC AUC = probability a random positive outscores a random negative (ties count 1/2). NaN if a class is empty. */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  checkPair(scores, labels);
  const n = scores.length;
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let nPos = 0;
  let rankSum = 0;
  let i = 0;
  while (i < n) {
    let j = i;
    while (j + 1 < n && scores[idx[j + 1]] === scores[idx[i]]) j++;
    const avg = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if (labels[idx[k]] === 1) {
      nPos++;
      rankSum += avg;
    }
    i = j + 1;
  }
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0) return NaN;
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export interface Confusion {
  threshold: number;
  tp: number;
  fp: number;
  tn: number;
  fn: number;
  /** tp / (tp + fn); NaN without positives. */
  recall: number;
  /** fp / (fp + tn); NaN without negatives. */
  falseAlarmRate: number;
  /** tp / (tp + fp); NaN when nothing is alarmed. */
  precision: number;
}

/** Confusion counts for the rule "alarm when score > threshold". */
export function confusionAt(scores: ArrayLike<number>, labels: ArrayLike<number>, threshold: number): Confusion {
  checkPair(scores, labels);
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < scores.length; i++) {
    const alarm = scores[i] > threshold;
    if (labels[i] === 1) {
      if (alarm) tp++;
      else fn++;
    } else if (alarm) fp++;
    else tn++;
  }
  return {
    threshold,
    tp,
    fp,
    tn,
    fn,
    recall: tp + fn > 0 ? tp / (tp + fn) : NaN,
    falseAlarmRate: fp + tn > 0 ? fp / (fp + tn) : NaN,
    precision: tp + fp > 0 ? tp / (tp + fp) : NaN,
  };
}

/** precision = tp / (tp + fp) at a threshold. */
export function precisionAt(scores: ArrayLike<number>, labels: ArrayLike<number>, threshold: number): number {
  return confusionAt(scores, labels, threshold).precision;
}

/**
 * Threshold such that at most `rate` of the negative scores are strictly above it:
 * with negatives sorted high to low, the value at index floor(rate * nNeg).
 * -Infinity if that index is past the end (every negative may alarm).
 */
export function thresholdForFalseAlarmRate(negativeScores: ArrayLike<number>, rate: number): number {
  if (!(rate >= 0 && rate <= 1)) throw new RangeError(`metrics: false-alarm rate ${rate} not in [0, 1]`);
  const s = Float64Array.from(negativeScores).sort().reverse();
  if (s.length === 0) throw new RangeError('metrics: no negative scores to set a threshold');
  const k = Math.floor(rate * s.length);
  return k >= s.length ? -Infinity : s[k];
}

/**
 * Wilson score interval for k successes in n trials, at z standard errors (1.96: 95 % two-sided;
 * 1.645: a 95 % one-sided bound). [NaN, NaN] when n = 0.
 */
export function wilson(k: number, n: number, z = 1.96): [number, number] {
  if (n === 0) return [NaN, NaN];
  const p = k / n;
  const d = 1 + (z * z) / n;
  const c = p + (z * z) / (2 * n);
  const h = z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n));
  return [Math.max(0, (c - h) / d), Math.min(1, (c + h) / d)];
}

/**
 * Threshold such that the false-alarm rate on NEW negatives like these is at most `rate` with
 * ~95 % confidence (one-sided Wilson bound at z): the lowest threshold whose count of negatives
 * strictly above it, k, has a Wilson upper bound <= rate. thresholdForFalseAlarmRate() meets
 * `rate` on the sample it is set on, so on another sample it overshoots about half the time; a
 * fleet scored for weeks needs the bound, not the point estimate. When even k = 0 is too
 * uncertain (too few negatives), the highest negative is returned: no negative of the sample alarms.
 */
export function thresholdForFalseAlarmBound(negativeScores: ArrayLike<number>, rate: number, z = 1.645): number {
  if (!(rate >= 0 && rate <= 1)) throw new RangeError(`metrics: false-alarm rate ${rate} not in [0, 1]`);
  const s = Float64Array.from(negativeScores).sort().reverse();
  if (s.length === 0) throw new RangeError('metrics: no negative scores to set a threshold');
  let k = Math.min(Math.floor(rate * s.length), s.length - 1);
  // s[k] alarms at most k negatives (strictly above); walk down until the bound holds.
  while (k > 0 && wilson(k, s.length, z)[1] > rate) k--;
  return s[k];
}

/** Recall (and the rest of the confusion) at the threshold giving false-alarm rate <= rate on these negatives. */
export function recallAtFalseAlarmRate(scores: ArrayLike<number>, labels: ArrayLike<number>, rate: number): Confusion {
  checkPair(scores, labels);
  const neg: number[] = [];
  for (let i = 0; i < scores.length; i++) if (labels[i] === 0) neg.push(scores[i]);
  return confusionAt(scores, labels, thresholdForFalseAlarmRate(neg, rate));
}

/** Median of finite values (mean of the two middle ones for even counts); NaN when empty. */
export function median(values: ArrayLike<number>): number {
  const s = Float64Array.from(values).filter((v) => !Number.isNaN(v)).sort();
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export interface FailedDriveSeries {
  /** Day numbers (any monotone unit) of the scored observations, ascending. */
  days: ArrayLike<number>;
  scores: ArrayLike<number>;
  /** Day of failure (same unit). */
  failDay: number;
}

/**
 * Lead time of each failed drive: failDay - day of its first alarm (score > threshold).
 * null for drives never alarmed.
 */
export function leadTimes(drives: FailedDriveSeries[], threshold: number): (number | null)[] {
  return drives.map((d) => {
    if (d.days.length !== d.scores.length) throw new RangeError('metrics: days and scores differ in length');
    for (let i = 0; i < d.scores.length; i++) {
      if (d.scores[i] > threshold && d.days[i] <= d.failDay) return d.failDay - d.days[i];
    }
    return null;
  });
}

/** Median lead time over the alarmed failed drives; NaN if none was alarmed. */
export function medianLeadTime(drives: FailedDriveSeries[], threshold: number): number {
  const lt = leadTimes(drives, threshold).filter((v): v is number => v !== null);
  return median(lt);
}
