import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  rocAuc,
  confusionAt,
  precisionAt,
  thresholdForFalseAlarmRate,
  thresholdForFalseAlarmBound,
  wilson,
  recallAtFalseAlarmRate,
  leadTimes,
  medianLeadTime,
  median,
} from './metrics.ts';

test('ROC AUC by hand, with ties', () => {
  // Positives 0.8, 0.4; negatives 0.5, 0.1. Pairs: (0.8>0.5),(0.8>0.1),(0.4<0.5),(0.4>0.1) -> 3/4.
  assert.equal(rocAuc([0.8, 0.4, 0.5, 0.1], [1, 1, 0, 0]), 0.75);
  // A tie between a positive and a negative counts 1/2: pos 0.5 vs neg 0.5, 0.1 -> (0.5 + 1)/2.
  assert.equal(rocAuc([0.5, 0.5, 0.1], [1, 0, 0]), 0.75);
  assert.equal(rocAuc([1, 2], [0, 1]), 1);
  assert.ok(Number.isNaN(rocAuc([1, 2], [0, 0])));
  assert.throws(() => rocAuc([1], [2]), /not 0\/1/);
  assert.throws(() => rocAuc([NaN], [1]), /NaN/);
});

test('confusion and precision at a threshold (alarm when score > threshold)', () => {
  const s = [0.9, 0.7, 0.7, 0.2, 0.6];
  const y = [1, 0, 1, 1, 0];
  const c = confusionAt(s, y, 0.65);
  assert.deepEqual(c, { threshold: 0.65, tp: 2, fp: 1, tn: 1, fn: 1, recall: 2 / 3, falseAlarmRate: 0.5, precision: 2 / 3 });
  assert.equal(precisionAt(s, y, 0.7), 1); // only 0.9 alarms
  assert.ok(Number.isNaN(precisionAt(s, y, 1)));
});

test('threshold and recall at a fixed false-alarm rate', () => {
  // 10 negatives 0.0..0.9; 10 % FAR -> at most 1 negative above the threshold -> threshold 0.8.
  const neg = Array.from({ length: 10 }, (_, i) => i / 10);
  assert.equal(thresholdForFalseAlarmRate(neg, 0.1), 0.8);
  assert.equal(thresholdForFalseAlarmRate(neg, 0), 0.9); // none may alarm
  assert.equal(thresholdForFalseAlarmRate(neg, 1), -Infinity);
  // Ties: every negative 0.5 -> threshold 0.5, nobody strictly above.
  assert.equal(thresholdForFalseAlarmRate([0.5, 0.5, 0.5], 0.5), 0.5);
  const scores = [...neg, 0.95, 0.85, 0.3];
  const labels = [...neg.map(() => 0), 1, 1, 1];
  const r = recallAtFalseAlarmRate(scores, labels, 0.1);
  assert.equal(r.threshold, 0.8);
  assert.equal(r.tp, 2);
  assert.equal(r.fp, 1);
  assert.equal(r.recall, 2 / 3);
  assert.equal(r.falseAlarmRate, 0.1);
  assert.equal(r.precision, 2 / 3);
  assert.throws(() => thresholdForFalseAlarmRate([], 0.1), /no negative/);
  assert.throws(() => thresholdForFalseAlarmRate([1], 2), /not in/);
});

test('lead times and their median', () => {
  const drives = [
    { days: [0, 1, 2, 3], scores: [0.1, 0.6, 0.2, 0.9], failDay: 3 }, // first alarm day 1 -> 2 days
    { days: [10, 11, 12], scores: [0.7, 0.1, 0.1], failDay: 15 }, // day 10 -> 5 days
    { days: [0, 1], scores: [0.1, 0.2], failDay: 1 }, // never
    { days: [5, 6], scores: [0.1, 0.55], failDay: 6 }, // day 6 -> 0 days
  ];
  assert.deepEqual(leadTimes(drives, 0.5), [2, 5, null, 0]);
  assert.equal(medianLeadTime(drives, 0.5), 2);
  assert.ok(Number.isNaN(medianLeadTime(drives, 1)));
  assert.equal(median([5, 1, 3, 2]), 2.5);
});

test('Wilson interval by hand', () => {
  const [lo, hi] = wilson(5, 100);
  assert.ok(Math.abs(lo - 0.02154) < 1e-4 && Math.abs(hi - 0.11175) < 1e-4, `${lo} ${hi}`);
  assert.equal(wilson(0, 10)[0], 0);
  assert.ok(wilson(0, 10, 1.645)[1] < wilson(0, 10)[1]); // one-sided bound is tighter
  assert.ok(wilson(0, 0).every(Number.isNaN));
});

test('a false-alarm bound holds on new samples, where the point threshold overshoots half the time', () => {
  // Negatives uniform on [0, 1): a threshold t alarms a fraction 1 - t of NEW negatives.
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const n = 3000;
  let pointOver = 0;
  let boundOver = 0;
  const trials = 200;
  for (let t = 0; t < trials; t++) {
    const neg = Array.from({ length: n }, rand);
    const point = thresholdForFalseAlarmRate(neg, 0.01);
    const bound = thresholdForFalseAlarmBound(neg, 0.01);
    assert.ok(bound >= point);
    // the lowest threshold whose count above has a one-sided upper bound <= 1 %
    const k = neg.filter((v) => v > bound).length;
    assert.ok(wilson(k, n, 1.645)[1] <= 0.01);
    assert.ok(wilson(k + 1, n, 1.645)[1] > 0.01);
    if (1 - point > 0.01) pointOver++;
    if (1 - bound > 0.01) boundOver++;
  }
  assert.ok(pointOver > trials * 0.3, `point threshold overshot ${pointOver}/${trials}`);
  assert.ok(boundOver < trials * 0.1, `bound overshot ${boundOver}/${trials}`);
  // Too few negatives for any confidence: nobody of the sample may alarm.
  assert.equal(thresholdForFalseAlarmBound([0.1, 0.7, 0.3], 0.01), 0.7);
  assert.throws(() => thresholdForFalseAlarmBound([], 0.01), /no negative/);
  assert.throws(() => thresholdForFalseAlarmBound([1], 2), /not in/);
});
