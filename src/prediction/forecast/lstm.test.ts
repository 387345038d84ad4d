import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LstmForecaster, interpolate } from './lstm.ts';
import { forecasterFromJSON, ForecastError, initTfBackend } from './index.ts';
import { mae } from './mase.ts';

test('interpolate fills NaN gaps linearly and edges with the nearest value, by hand', () => {
  const y = interpolate(Float64Array.from([Number.NaN, 2, Number.NaN, Number.NaN, 8, Number.NaN]));
  assert.deepEqual(Array.from(y), [2, 2, 4, 6, 8, 8]);
});

test('the LSTM learns a periodic signal better than a constant forecast; JSON round trip is exact', async () => {
  const backend = await initTfBackend();
  assert.ok(backend === 'wasm' || backend === 'cpu');
  const P = 16;
  let s = 11;
  const rnd = (): number => { s = (s * 16807) % 2147483647; return s / 2147483647 - 0.5; };
  const all = Float64Array.from({ length: 260 + P }, (_, t) => 50 + 10 * Math.sin((2 * Math.PI * t) / P) + 0.5 * rnd());
  const train = all.subarray(0, 260);
  const test = all.subarray(260);
  const f = new LstmForecaster({ window: 20, outputSteps: 8, units: 16, epochs: 60, patience: 6, maxWindows: 240, seed: 1 });
  const t0 = performance.now();
  await f.fit(train);
  const fitMs = performance.now() - t0;
  const fc = f.forecast(P); // 8 direct steps, then 8 recursive
  let mean = 0;
  for (const v of train) mean += v / train.length;
  const lstmMae = mae(test, fc.mean);
  const constMae = mae(test, new Float64Array(P).fill(mean));
  assert.ok(lstmMae < 0.5 * constMae, `LSTM MAE ${lstmMae.toFixed(3)} vs constant ${constMae.toFixed(3)} (fit ${fitMs.toFixed(0)} ms, ${f.epochsRun} epochs)`);
  for (let i = 0; i < P; i++) assert.ok(fc.lower![i]! <= fc.mean[i]! && fc.mean[i]! <= fc.upper![i]!);

  const state = JSON.parse(JSON.stringify(f.toJSON()));
  assert.ok(state.weights.every((w: { values: unknown[] }) => w.values.every((v) => typeof v === 'number')));
  const g = forecasterFromJSON(state);
  assert.deepEqual(g.forecast(P), fc);
  f.dispose();
  (g as LstmForecaster).dispose();
});

test('the LSTM rejects bad input clearly', async () => {
  assert.throws(() => new LstmForecaster({ window: 0 }), ForecastError);
  await assert.rejects(new LstmForecaster({ window: 10, outputSteps: 5 }).fit(Float64Array.from({ length: 12 }, (_, t) => t)), /too short/);
  assert.throws(() => new LstmForecaster().forecast(3), /before fit/);
  assert.throws(() => forecasterFromJSON({ kind: 'lstm', version: 1, window: 2, outputSteps: 1, units: 2, m: 0, mu: 0, sd: 1, tail: [1, 2], stepRmse: [1], epochsRun: 1, weights: [{ shape: [2], values: [1] }] }), /size/);
});

test('a period shorter than the output block gives a seasonal lag that is a multiple of it (no target leak)', async () => {
  const y = Float64Array.from({ length: 120 }, (_, t) => [1, 3, 2, 5][t % 4]! + 0.01 * t);
  const f = new LstmForecaster({ window: 8, outputSteps: 6, units: 4, epochs: 2, seed: 3 });
  await f.fit(y, { period: 4 });
  assert.equal(f.toJSON().m, 8); // 4·⌈6/4⌉
  const fc = f.forecast(15);
  assert.equal(fc.mean.length, 15);
  assert.ok(fc.mean.every(Number.isFinite));
  f.dispose();
});
