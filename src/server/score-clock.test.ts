import { it } from 'node:test';
import assert from 'node:assert/strict';
import { CompressedSeries } from './score-clock.ts';

it('rolls samples into compressed minutes and answers queries on that clock', () => {
  const s = new CompressedSeries(30); // one model minute = 2 s
  assert.equal(s.bucketMs, 2000);
  const t0 = 1_000_000_000_000; // a multiple of 2000
  // Samples every second for 10 s: value = second index.
  for (let i = 0; i < 10; i++) s.push({ ts: t0 + i * 1000, values: { lat: i, other: NaN } });
  const now = t0 + 9500;
  const q = s.query(now);
  const nowMinute = Math.floor(now / 60000) * 60000;
  const pts = q('lat', nowMinute - 10 * 60000, nowMinute + 60000);
  // Buckets: [0,1] [2,3] [4,5] [6,7] [8,9] → 5 model minutes, the newest stamped nowMinute.
  assert.deepEqual(pts.map((p) => p.ts), [4, 3, 2, 1, 0].map((k) => nowMinute - k * 60000));
  assert.deepEqual(pts.map((p) => p.mean), [0.5, 2.5, 4.5, 6.5, 8.5]);
  assert.deepEqual(pts.map((p) => [p.min, p.max, p.last]), [[0, 1, 1], [2, 3, 3], [4, 5, 5], [6, 7, 7], [8, 9, 9]]);
  // Half-open range [from, to): excluding the current minute.
  assert.equal(q('lat', nowMinute - 2 * 60000, nowMinute).length, 2);
  assert.deepEqual(q('other', 0, Infinity), [], 'NaN samples are not invented into points');
  assert.deepEqual(q('missing', 0, Infinity), []);
});

it('forgets compressed minutes older than it keeps', () => {
  const s = new CompressedSeries(60, 5); // 1 s minutes, keep 5
  for (let i = 0; i < 20; i++) s.push({ ts: 5_000_000 + i * 1000, values: { x: i } });
  const pts = s.query(5_000_000 + 19_500)('x', 0, Infinity);
  assert.deepEqual(pts.map((p) => p.mean), [15, 16, 17, 18, 19]);
});

it('rejects a scale below 1', () => {
  assert.throws(() => new CompressedSeries(0.5), /timeScale/);
});
