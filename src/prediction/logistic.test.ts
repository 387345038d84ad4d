import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fitLogistic, linearPredictor, sigmoid } from './logistic.ts';
import { mulberry32 } from '../common/prng.ts';

test('fitLogistic recovers the weights of a logistic model and keeps them non-negative', () => {
  const rnd = mulberry32(7);
  const n = 20_000;
  const d = 3;
  const x = new Float64Array(n * d);
  const y = new Uint8Array(n);
  const truth = [2, 0.5, 0];
  for (let i = 0; i < n; i++) {
    let z = -1;
    for (let j = 0; j < d; j++) {
      x[i * d + j] = rnd() * 2;
      z += truth[j] * x[i * d + j];
    }
    // A feature that truly lowers the odds must come out at 0, not negative.
    z -= 0.8 * x[i * d + 2];
    y[i] = rnd() < sigmoid(z) ? 1 : 0;
  }
  const fit = fitLogistic(x, n, d, y, { l2: 0 });
  assert.ok(Math.abs(fit.weights[0] - 2) < 0.15, `w0 ${fit.weights[0]}`);
  assert.ok(Math.abs(fit.weights[1] - 0.5) < 0.15, `w1 ${fit.weights[1]}`);
  assert.equal(fit.weights[2], 0);
  // Monotone: more evidence never lowers the predictor.
  assert.ok(linearPredictor(fit, [3, 1, 0]) > linearPredictor(fit, [2, 1, 0]));
});

test('fitLogistic stays finite on separable data (L2) and rejects a wrongly sized matrix', () => {
  const x = Float64Array.from([0, 0, 1, 1]);
  const fit = fitLogistic(x, 4, 1, [0, 0, 1, 1], { l2: 1e-2 });
  assert.ok(Number.isFinite(fit.weights[0]) && fit.weights[0] > 0);
  assert.throws(() => fitLogistic(x, 3, 1, [0, 0, 1]), /expected 3×1/);
});
