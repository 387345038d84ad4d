import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IsotonicCalibrator, PlattCalibrator, fitCalibrator, calibratorFromJSON, brierScore, reliability } from './calibration.ts';
import { mulberry32 } from '../common/prng.ts';

/** A miscalibrated model: true probability q, reported score q^3 (overconfident towards 0). */
function sample(n: number, seed: number): { scores: Float64Array; labels: Uint8Array } {
  const rnd = mulberry32(seed);
  const scores = new Float64Array(n);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const q = rnd();
    labels[i] = rnd() < q ? 1 : 0;
    scores[i] = q ** 3;
  }
  return { scores, labels };
}

test('PAV on a hand example pools the violators', () => {
  // Labels by score: 0,1,0,1 -> blocks {0}, {1,0} pooled to 0.5, {1}.
  const c = IsotonicCalibrator.fit([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]);
  assert.deepEqual(Array.from(c.x), [0.1, 0.2, 0.3, 0.4]);
  assert.deepEqual(Array.from(c.y), [0, 0.5, 0.5, 1]);
  assert.equal(c.predict(0.25), 0.5);
  assert.ok(Math.abs(c.predict(0.15) - 0.25) < 1e-12); // interpolated between blocks
  assert.equal(c.predict(-5), 0);
  assert.equal(c.predict(5), 1);
  // Ties in score are pooled together.
  const t = IsotonicCalibrator.fit([0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1]);
  assert.deepEqual(Array.from(t.y), [1 / 3, 1]);
});

test('isotonic and Platt calibration improve Brier on held-out data', () => {
  const fit = sample(5000, 1);
  const test = sample(5000, 2);
  const before = brierScore(test.scores, test.labels);
  for (const method of ['isotonic', 'platt'] as const) {
    const cal = fitCalibrator(fit.scores, fit.labels, { method });
    const after = brierScore(Array.from(test.scores, (s) => cal.predict(s)), test.labels);
    assert.ok(after < before - 0.01, `${method}: Brier ${after} vs ${before}`);
    const rel = reliability(Array.from(test.scores, (s) => cal.predict(s)), test.labels, 10);
    assert.ok(rel.ece < 0.04, `${method}: ECE ${rel.ece}`);
    for (const b of rel.bins) if (b.count > 200) assert.ok(Math.abs(b.meanPredicted - b.fractionPositive) < 0.08, `${method} bin ${b.lo}`);
  }
  assert.ok(reliability(test.scores, test.labels, 10).ece > 0.1); // the raw scores really are miscalibrated
});

test('Platt recovers known parameters', () => {
  // y ~ Bernoulli(sigmoid(2 z - 1)).
  const rnd = mulberry32(5);
  const n = 20000;
  const z = new Float64Array(n);
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    z[i] = rnd() * 4 - 2;
    y[i] = rnd() < 1 / (1 + Math.exp(-(2 * z[i] - 1))) ? 1 : 0;
  }
  const c = PlattCalibrator.fit(z, y);
  assert.ok(Math.abs(c.a - 2) < 0.15, `a=${c.a}`);
  assert.ok(Math.abs(c.b + 1) < 0.1, `b=${c.b}`);
});

test('calibrators round-trip through JSON', () => {
  const d = sample(500, 3);
  for (const method of ['isotonic', 'platt'] as const) {
    const c = fitCalibrator(d.scores, d.labels, { method });
    const back = calibratorFromJSON(JSON.parse(JSON.stringify(c.toJSON())));
    for (const s of [0, 0.001, 0.3, 0.77, 1]) assert.equal(back.predict(s), c.predict(s));
  }
  assert.throws(() => calibratorFromJSON({ kind: 'magic' }), /not a calibrator/);
});

test('brier and reliability by hand', () => {
  assert.equal(brierScore([0.5, 1, 0], [1, 1, 1]), (0.25 + 0 + 1) / 3);
  const r = reliability([0.05, 0.15, 0.12, 0.95], [0, 1, 0, 1], 10);
  assert.equal(r.bins.length, 3);
  assert.deepEqual(r.bins[1], { lo: 0.1, hi: 0.2, count: 2, meanPredicted: 0.135, fractionPositive: 0.5 });
  const expectedEce = (1 / 4) * 0.05 + (2 / 4) * Math.abs(0.135 - 0.5) + (1 / 4) * 0.05;
  assert.ok(Math.abs(r.ece - expectedEce) < 1e-12);
});

test('bad input is rejected clearly', () => {
  assert.throws(() => fitCalibrator([0.1], [1, 0]), /1 scores for 2 labels/);
  assert.throws(() => fitCalibrator([], []), /no data/);
  assert.throws(() => fitCalibrator([NaN], [1]), /not finite/);
  assert.throws(() => fitCalibrator([0.2], [3]), /0\/1/);
});
