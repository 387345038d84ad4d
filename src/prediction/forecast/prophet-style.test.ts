import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProphetStyleForecaster } from './prophet-style.ts';
import { forecasterFromJSON, ForecastError } from './index.ts';

const close = (a: number, b: number, tol: number): void => assert.ok(Math.abs(a - b) <= tol, `${a} ≉ ${b} (tol ${tol})`);

test('a pure linear series is extrapolated exactly by the trend (no slope changes kept)', () => {
  const y = Float64Array.from({ length: 100 }, (_, t) => 3 - 0.5 * t);
  for (const shrinkage of ['l1', 'l2'] as const) {
    const f = new ProphetStyleForecaster({ shrinkage });
    f.fit(y);
    const r = f.forecast(20);
    for (let h = 1; h <= 20; h++) close(r.mean[h - 1]!, 3 - 0.5 * (99 + h), 1e-6);
    // L1 sets every unused slope change to exactly 0 (L2 only shrinks them).
    if (shrinkage === 'l1') for (const d of f.fitted.beta.slice(2, 2 + f.fitted.changepoints.length)) assert.equal(d, 0);
  }
});

test('25 changepoints in the first 80 % of the history', () => {
  const f = new ProphetStyleForecaster();
  f.fit(Float64Array.from({ length: 200 }, (_, t) => t));
  assert.equal(f.fitted.changepoints.length, 25);
  close(f.fitted.changepoints[24]!, 0.8, 1e-12);
  close(f.fitted.changepoints[0]!, 0.8 / 25, 1e-12);
});

test('a pure sinusoid of known period is recovered by the Fourier terms, also through NaN gaps', () => {
  const P = 12;
  const sig = (t: number): number => 10 + 2 * Math.sin((2 * Math.PI * t) / P) + 0.5 * Math.cos((4 * Math.PI * t) / P);
  const y = Float64Array.from({ length: 120 }, (_, t) => sig(t));
  const gappy = Float64Array.from(y, (v, t) => (t % 5 === 2 || (t > 50 && t < 62) ? Number.NaN : v));
  for (const series of [y, gappy]) {
    const f = new ProphetStyleForecaster({ seasonalities: [{ period: P, order: 3 }] });
    f.fit(series);
    const r = f.forecast(30);
    for (let h = 1; h <= 30; h++) close(r.mean[h - 1]!, sig(119 + h), 1e-4);
    // Coefficients on the standardised scale: sin(2πt/P) weighs 2/sd, cos(4πt/P) 0.5/sd.
    const { beta, sd, changepoints } = f.fitted;
    const s0 = 2 + changepoints.length;
    close(beta[s0]! * sd, 2, 1e-4);
    close(beta[s0 + 3]! * sd, 0.5, 1e-4);
  }
});

test('fit({ period }) adds that seasonality by default', () => {
  const f = new ProphetStyleForecaster();
  f.fit(Float64Array.from({ length: 70 }, (_, t) => [1, 4, 2, 6, 3, 0, 5][t % 7]!), { period: 7 });
  assert.deepEqual(f.fitted.seasonalities, [{ period: 7, order: 3 }]);
  const r = f.forecast(7);
  // 3 harmonics describe any period-7 pattern exactly
  for (let h = 1; h <= 7; h++) close(r.mean[h - 1]!, [1, 4, 2, 6, 3, 0, 5][(69 + h) % 7]!, 1e-3);
});

test('a slope change is picked up by a changepoint and the forecast follows the new slope', () => {
  let s = 3;
  const rnd = (): number => { s = (s * 16807) % 2147483647; return s / 2147483647 - 0.5; };
  const trend = (t: number): number => (t < 100 ? 0.1 * t : 10 + 1.0 * (t - 100));
  const y = Float64Array.from({ length: 200 }, (_, t) => trend(t) + 0.5 * rnd());
  const f = new ProphetStyleForecaster();
  f.fit(y);
  const r = f.forecast(10);
  for (let h = 1; h <= 10; h++) close(r.mean[h - 1]!, trend(199 + h), 1.5);
  // intervals widen with the lead time (trend uncertainty grows as h³)
  assert.ok(r.upper![9]! - r.lower![9]! > r.upper![0]! - r.lower![0]!);
  // L1 shrinkage leaves most of the 25 candidate slope changes at exactly zero
  const deltas = f.fitted.beta.slice(2, 27);
  assert.ok(deltas.filter((d) => d === 0).length >= 10, `zero deltas: ${deltas.filter((d) => d === 0).length}`);
});

test('JSON round trip gives identical forecasts', () => {
  const y = Float64Array.from({ length: 90 }, (_, t) => Math.sin(t / 3) + 0.02 * t + (t === 40 ? Number.NaN : 0));
  const f = new ProphetStyleForecaster({ seasonalities: [{ period: 9.42, order: 2 }] });
  f.fit(y);
  const g = forecasterFromJSON(JSON.parse(JSON.stringify(f.toJSON())));
  assert.deepEqual(g.forecast(25), f.forecast(25));
});

test('bad input gives clear errors', () => {
  assert.throws(() => new ProphetStyleForecaster({ changepointRange: 1.5 }), ForecastError);
  assert.throws(() => new ProphetStyleForecaster({ seasonalities: [{ period: 7, order: 0 }] }), /order/);
  assert.throws(() => new ProphetStyleForecaster().fit(Float64Array.from([Number.NaN, 1])), /at least 2/);
  const state = new ProphetStyleForecaster();
  state.fit(Float64Array.from([1, 2, 3, 4]));
  const bad = { ...state.toJSON(), beta: [1] };
  assert.throws(() => forecasterFromJSON(bad), /coefficients/);
});
