import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  rateOfChange,
  movingAverage,
  movingStd,
  ewma,
  alphaForSpan,
  ewmaMulti,
  linearSlope,
  trendSlope,
  errorRate,
  errorRateTrend,
  counterDeltas,
  pearson,
  rollingCorrelation,
  median,
  mad,
  peerDeviation,
  groupMadScores,
} from './features.ts';

const close = (a: number, b: number, eps = 1e-12): void => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);
const arr = (x: ArrayLike<number>): number[] => Array.from(x);

test('rate of change', () => {
  assert.deepEqual(arr(rateOfChange([1, 3, 6, 10])), [NaN, 2, 3, 4]);
  // lag 2: (6-1)/2, (10-3)/2
  assert.deepEqual(arr(rateOfChange([1, 3, 6, 10], 2)), [NaN, NaN, 2.5, 3.5]);
  assert.deepEqual(arr(rateOfChange([1, NaN, 6])), [NaN, NaN, NaN]);
  assert.throws(() => rateOfChange([1], 0), /window/);
});

test('moving average and std', () => {
  assert.deepEqual(arr(movingAverage([1, 2, 3, 4, 5], 3)), [NaN, NaN, 2, 3, 4]);
  assert.deepEqual(arr(movingAverage([1, 2, 3, 4, 5], 3, 1)), [1, 1.5, 2, 3, 4]);
  // NaN skipped: window [2, NaN, 4] has 2 valid values, not enough for minPeriods 3.
  assert.deepEqual(arr(movingAverage([1, 2, NaN, 4], 3, 2)), [NaN, 1.5, 1.5, 3]);
  // Population std of [2, 4, 6] = sqrt(8/3).
  const s = movingStd([2, 4, 6, 6], 3);
  assert.ok(Number.isNaN(s[0]) && Number.isNaN(s[1]));
  close(s[2], Math.sqrt(8 / 3));
  close(s[3], Math.sqrt(((4 - 16 / 3) ** 2 + 2 * (6 - 16 / 3) ** 2) / 3));
  // Large offsets (counters near 1e12) keep precision.
  const big = movingStd([1e12, 1e12 + 1, 1e12 + 2], 3);
  close(big[2], Math.sqrt(2 / 3), 1e-6);
});

test('ewma', () => {
  // alpha 0.5: 4, 0.5*8+0.5*4=6, 0.5*0+0.5*6=3
  assert.deepEqual(arr(ewma([4, 8, 0], 0.5)), [4, 6, 3]);
  // Missing values carry forward; leading NaN stays NaN.
  assert.deepEqual(arr(ewma([NaN, 10, NaN, 20], 0.25)), [NaN, 10, 10, 12.5]);
  assert.equal(alphaForSpan(3), 0.5);
  const m = ewmaMulti([4, 8], [1, 0.5]);
  assert.deepEqual(arr(m.get(1)!), [4, 8]);
  assert.deepEqual(arr(m.get(0.5)!), [4, 6]);
  assert.throws(() => ewma([1], 0), /alpha/);
});

test('least-squares slope and trailing trend', () => {
  // y = 2t + 1 exactly.
  close(linearSlope([1, 3, 5, 7]), 2);
  // Hand: t = 0,1,2 y = 1,2,6 -> mean t 1, mean y 3; sxy = (-1)(-2)+0+(1)(3) = 5; sxx = 2 -> 2.5
  close(linearSlope([1, 2, 6]), 2.5);
  // Explicit t with a gap: points (0,0), (2,4), (3,6) -> slope 2.
  close(linearSlope([0, 4, 6], [0, 2, 3]), 2);
  // NaN skipped: (0,1), (2,5) -> 2
  close(linearSlope([1, NaN, 5]), 2);
  assert.ok(Number.isNaN(linearSlope([5])));
  const tr = trendSlope([1, 2, 6, 6], 3);
  assert.ok(Number.isNaN(tr[0]));
  close(tr[1], 1);
  close(tr[2], 2.5);
  close(tr[3], 2); // window [2, 6, 6]: sxy = (-1)(-8/3) + 0 + (1)(4/3) = 4, sxx = 2
});

test('error rate and its trend; counter deltas', () => {
  assert.deepEqual(arr(errorRate([1, 2, 0, 5], [100, 100, 0, 50])), [0.01, 0.02, NaN, 0.1]);
  // rates 0.01, 0.02, 0.03 -> slope 0.01 per step
  const t = errorRateTrend([1, 2, 3], [100, 100, 100], 3);
  close(t[2], 0.01);
  assert.deepEqual(arr(counterDeltas([10, 15, 15, 3, 4])), [NaN, 5, 0, NaN, 1]);
});

test('pearson and rolling correlation', () => {
  close(pearson([1, 2, 3], [2, 4, 6]), 1);
  close(pearson([1, 2, 3], [3, 2, 1]), -1);
  // Hand: a = 1,2,3,4 b = 1,3,2,4 -> means 2.5; sab = 2.25+(-0.5)(0.5)... = 1.5*1.5 + 0.5*(-0.5)... computed:
  // da = -1.5,-0.5,0.5,1.5 ; db = -1.5,0.5,-0.5,1.5 ; sab = 2.25-0.25-0.25+2.25 = 4 ; saa = sbb = 5 -> 0.8
  close(pearson([1, 2, 3, 4], [1, 3, 2, 4]), 0.8);
  assert.ok(Number.isNaN(pearson([1, 1, 1], [1, 2, 3]))); // constant side
  const r = rollingCorrelation([1, 2, 3, 4], [1, 3, 2, 4], 3);
  assert.ok(Number.isNaN(r[0]) && Number.isNaN(r[1]));
  close(r[2], 0.5); // [1,2,3] vs [1,3,2]: sab = 1*... da=-1,0,1 db=-1,1,0 -> 1 ; saa=sbb=2 -> 0.5
  close(r[3], 0.5); // [2,3,4] vs [3,2,4]: da=-1,0,1 db=0,-1,1 -> 1/2
});

test('median, MAD and peer deviation', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.equal(median([NaN, 5]), 5);
  // Values 1,2,3,4,100: median 3, |dev| = 2,1,0,1,97 -> MAD 1.
  assert.equal(mad([1, 2, 3, 4, 100]), 1);
  close(peerDeviation(100, [1, 2, 3, 4, 100]), 97 / 1.4826);
  close(peerDeviation(3, [1, 2, 3, 4, 100]), 0);
  // MAD 0 (most peers equal): fallback to 1.2533 x mean absolute deviation.
  // peers 5,5,5,9: median 5, MAD 0, mean abs dev 1 -> scale 1.2533
  close(peerDeviation(9, [5, 5, 5, 9]), 4 / 1.2533);
  assert.equal(peerDeviation(5, [5, 5, 5]), 0);
  assert.ok(peerDeviation(6, [5, 5, 5]) > 1e6);
  assert.ok(Number.isNaN(peerDeviation(1, [])));
  const g = groupMadScores([1, 2, 3, 4, 100]);
  close(g[0], -2 / 1.4826);
  close(g[4], 97 / 1.4826);
});
