import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExpSmoothingForecaster } from './exp-smoothing.ts';
import { forecasterFromJSON, ForecastError, Z95 } from './index.ts';

const close = (a: number, b: number, tol = 1e-9): void => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} ≉ ${b}`);

test('simple exponential smoothing with fixed alpha reproduces the hand-computed level', () => {
  const f = new ExpSmoothingForecaster({ trend: 'none', alpha: 0.5 });
  f.fit(Float64Array.from([1, 2, 3]));
  // l0 = 1; l1 = .5·2 + .5·1 = 1.5; l2 = .5·3 + .5·1.5 = 2.25
  close(f.fitted.level, 2.25);
  const r = f.forecast(2);
  assert.deepEqual(Array.from(r.mean), [2.25, 2.25]);
  // one-step errors 0, 1, 1.5 → SSE 3.25, σ² = 3.25 / (3 obs − 1 state) = 1.625
  close(f.fitted.sigma2, 1.625);
  close(r.upper![0]!, 2.25 + Z95 * Math.sqrt(1.625));
  close(r.upper![1]!, 2.25 + Z95 * Math.sqrt(1.625 * (1 + 0.25))); // 1 + α²
});

test('a missing value moves the state along its forecast, by hand', () => {
  const f = new ExpSmoothingForecaster({ trend: 'none', alpha: 0.5 });
  f.fit(Float64Array.from([1, Number.NaN, 3]));
  close(f.fitted.level, 2); // l stays 1 over the gap, then .5·3 + .5·1
});

test("Holt's linear trend extrapolates a pure linear series exactly", () => {
  const y = Float64Array.from({ length: 30 }, (_, t) => 5 + 2 * t);
  const fixed = new ExpSmoothingForecaster({ trend: 'linear', alpha: 0.3, beta: 0.1 });
  fixed.fit(y);
  const fitted = new ExpSmoothingForecaster({ trend: 'linear' });
  fitted.fit(y);
  for (const f of [fixed, fitted]) {
    const r = f.forecast(5);
    for (let h = 1; h <= 5; h++) close(r.mean[h - 1]!, 5 + 2 * (29 + h));
  }
});

test('damped trend forecasts l + (φ+…+φ^h)·b', () => {
  const f = new ExpSmoothingForecaster({ trend: 'damped', alpha: 0.5, beta: 0.2, phi: 0.9 });
  f.fit(Float64Array.from([1, 3, 4, 7, 8, 11]));
  const { level, slope } = f.fitted;
  const r = f.forecast(3);
  close(r.mean[0]!, level + 0.9 * slope);
  close(r.mean[2]!, level + (0.9 + 0.81 + 0.729) * slope);
});

test('additive Holt-Winters recovers an exact seasonal pattern with fitted parameters', () => {
  const pattern = [1, 5, 2, 8];
  const y = Float64Array.from({ length: 24 }, (_, t) => 100 + pattern[t % 4]!);
  const f = new ExpSmoothingForecaster();
  f.fit(y, { period: 4 });
  assert.equal(f.fitted.m, 4);
  const r = f.forecast(6);
  for (let h = 1; h <= 6; h++) close(r.mean[h - 1]!, 100 + pattern[(23 + h) % 4]!, 1e-7);
});

test('fitted alpha is at least as good as a fine grid of fixed alphas (one-step SSE)', () => {
  let s = 7;
  const rnd = (): number => { s = (s * 16807) % 2147483647; return s / 2147483647 - 0.5; };
  let level = 0;
  const y = Float64Array.from({ length: 200 }, () => { level += 0.3 * rnd(); return level + rnd(); });
  const f = new ExpSmoothingForecaster({ trend: 'none' });
  f.fit(y);
  let bestGrid = Number.POSITIVE_INFINITY;
  for (let a = 0.01; a < 1; a += 0.01) {
    const g = new ExpSmoothingForecaster({ trend: 'none', alpha: a });
    g.fit(y);
    bestGrid = Math.min(bestGrid, g.fitted.sse);
  }
  assert.ok(f.fitted.sse <= bestGrid + 1e-6, `${f.fitted.sse} > ${bestGrid}`);
  assert.ok(f.fitted.params.alpha > 0 && f.fitted.params.alpha < 1);
});

test('JSON round trip gives identical forecasts', () => {
  const y = Float64Array.from({ length: 40 }, (_, t) => Math.sin(t) * 3 + t * 0.1 + (t % 7 === 3 ? Number.NaN : 0));
  const f = new ExpSmoothingForecaster();
  f.fit(y, { period: 6 });
  const g = forecasterFromJSON(JSON.parse(JSON.stringify(f.toJSON())));
  assert.equal(g.name, f.name);
  assert.deepEqual(g.forecast(13), f.forecast(13));
});

test('bad input gives clear errors', () => {
  assert.throws(() => new ExpSmoothingForecaster({ alpha: 2 }), ForecastError);
  assert.throws(() => new ExpSmoothingForecaster().fit(Float64Array.from([1, Infinity, 2])), /non-finite/);
  assert.throws(() => new ExpSmoothingForecaster().fit(Float64Array.from([1])), /at least 2/);
  assert.throws(() => new ExpSmoothingForecaster().fit(Float64Array.from([1, 2, 3]), { period: 1.5 }), /period/);
  assert.throws(() => forecasterFromJSON({ kind: 'exp-smoothing', version: 1, trend: 'none' }), ForecastError);
});
