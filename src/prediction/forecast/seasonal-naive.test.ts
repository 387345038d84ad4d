import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeasonalNaiveForecaster } from './seasonal-naive.ts';
import { mase, mae, seasonalNaiveScale } from './mase.ts';
import { forecasterFromJSON, ForecastError, Z95 } from './index.ts';

test('seasonal naive repeats the last season, by hand', () => {
  const f = new SeasonalNaiveForecaster();
  f.fit(Float64Array.from([1, 2, 3, 4, 5, 6, 7]), { period: 3 });
  // last season = y[4..6] = 5, 6, 7 → phases continue 5, 6, 7, 5, 6
  assert.deepEqual(Array.from(f.forecast(5).mean), [5, 6, 7, 5, 6]);
  // in-sample 3-step residuals are all 3 → σ = 3; h ≤ 3: ±Z·3, h = 4, 5: ±Z·3·√2
  const r = f.forecast(4);
  assert.ok(Math.abs(r.upper![0]! - (5 + Z95 * 3)) < 1e-12);
  assert.ok(Math.abs(r.upper![3]! - (5 + Z95 * 3 * Math.SQRT2)) < 1e-12);
});

test('naive (no period) forecasts the last value; NaN phases fall back a season', () => {
  const f = new SeasonalNaiveForecaster();
  f.fit(Float64Array.from([1, 2, 3]));
  assert.deepEqual(Array.from(f.forecast(2).mean), [3, 3]);
  const g = new SeasonalNaiveForecaster();
  g.fit(Float64Array.from([10, 20, 11, Number.NaN]), { period: 2 });
  assert.deepEqual(Array.from(g.forecast(2).mean), [11, 20]);
});

test('seasonal naive JSON round trip gives identical forecasts', () => {
  const f = new SeasonalNaiveForecaster();
  f.fit(Float64Array.from([3, 1, 4, 1, 5, 9, 2, 6]), { period: 4 });
  const g = forecasterFromJSON(JSON.parse(JSON.stringify(f.toJSON())));
  assert.deepEqual(g.forecast(9), f.forecast(9));
});

test('MASE on a hand example (Hyndman & Koehler 2006)', () => {
  const insample = [2, 4, 3, 7, 5];
  // naive one-step in-sample errors: |4−2|,|3−4|,|7−3|,|5−7| = 2,1,4,2 → scale 9/4
  assert.equal(seasonalNaiveScale(insample, 1), 9 / 4);
  const actual = [6, 8];
  const forecast = [5, 5];
  assert.equal(mae(actual, forecast), 2);
  assert.ok(Math.abs(mase(actual, forecast, insample, 1) - 2 / (9 / 4)) < 1e-15);
  // m = 2: |3−2|,|7−4|,|5−3| = 1,3,2 → scale 2, MASE = 1
  assert.equal(mase(actual, forecast, insample, 2), 1);
  // NaN values are skipped on both sides
  assert.equal(seasonalNaiveScale([1, Number.NaN, 3, 6], 1), 3);
  assert.equal(mae([1, Number.NaN, 3], [2, 0, 3]), 0.5);
});

test('MASE of a constant training series is NaN; bad input throws clearly', () => {
  assert.ok(Number.isNaN(mase([1], [2], [5, 5, 5])));
  assert.throws(() => seasonalNaiveScale([1, 2], 3), ForecastError);
  assert.throws(() => mae([1, 2], [1]), ForecastError);
  assert.throws(() => new SeasonalNaiveForecaster().forecast(3), /before fit/);
  assert.throws(() => new SeasonalNaiveForecaster().fit(Float64Array.from([Number.NaN])), ForecastError);
  assert.throws(() => forecasterFromJSON({ kind: 'magic', version: 1 }), /unknown forecaster kind/);
  const f = new SeasonalNaiveForecaster();
  f.fit(Float64Array.from([1, 2]));
  assert.throws(() => f.forecast(0), /horizon/);
});
