import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GradientBoostedTrees, computeBinEdges, type FeatureMatrix } from './gbdt.ts';
import { mulberry32 } from '../common/prng.ts';
import { rocAuc } from './metrics.ts';

function xorData(n: number, seed: number, nanFrac = 0): { x: FeatureMatrix; y: Uint8Array } {
  const rnd = mulberry32(seed);
  const m = 4;
  const data = new Float64Array(n * m);
  const y = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const x0 = rnd();
    const x1 = rnd();
    data[r * m] = x0;
    data[r * m + 1] = x1;
    data[r * m + 2] = rnd(); // noise
    data[r * m + 3] = rnd() * 100; // noise on another scale
    y[r] = (x0 > 0.5) !== (x1 > 0.3) ? 1 : 0;
    if (nanFrac > 0 && rnd() < nanFrac) data[r * m + 2] = NaN;
  }
  return { x: { nRows: n, nCols: m, data }, y };
}

test('learns x0 > 0.5 XOR x1 > 0.3 (AUC > 0.95 on held-out rows)', () => {
  const tr = xorData(4000, 1);
  const te = xorData(2000, 2);
  const model = GradientBoostedTrees.train(tr.x, tr.y, { params: { nTrees: 60, maxDepth: 3, learningRate: 0.3, earlyStoppingRounds: 0, seed: 7 } });
  const p = model.predictProbaBatch(te.x);
  const auc = rocAuc(p, te.y);
  assert.ok(auc > 0.95, `AUC ${auc}`);
  // The two informative features carry almost all of the gain.
  const imp = model.featureImportance();
  assert.deepEqual(new Set([imp[0].index, imp[1].index]), new Set([0, 1]));
  assert.ok(imp[0].gain + imp[1].gain > 0.9 * imp.reduce((s, e) => s + e.gain, 0));
});

test('missing values: learns a default direction for NaN', () => {
  // y = 1 exactly when x0 is missing or x0 > 0.8; a model that sent NaN the wrong way would fail.
  const rnd = mulberry32(3);
  const n = 3000;
  const data = new Float64Array(n * 2);
  const y = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const miss = rnd() < 0.3;
    const v = rnd();
    data[r * 2] = miss ? NaN : v;
    data[r * 2 + 1] = rnd();
    y[r] = miss || v > 0.8 ? 1 : 0;
  }
  const model = GradientBoostedTrees.train({ nRows: n, nCols: 2, data }, y, { params: { nTrees: 30, maxDepth: 2, learningRate: 0.3, earlyStoppingRounds: 0 } });
  assert.ok(model.predictProba([NaN, 0.5]) > 0.9);
  assert.ok(model.predictProba([0.9, 0.5]) > 0.9);
  assert.ok(model.predictProba([0.2, 0.5]) < 0.1);
  // NaN in a feature never seen missing in training does not crash and gives a probability.
  const q = model.predictProba([0.2, NaN]);
  assert.ok(q >= 0 && q <= 1);
});

test('JSON round trip gives identical predictions', () => {
  const tr = xorData(2000, 4, 0.2);
  const te = xorData(500, 5, 0.2);
  const model = GradientBoostedTrees.train(tr.x, tr.y, { params: { nTrees: 25, maxDepth: 4, subsample: 0.8, seed: 11, earlyStoppingRounds: 0 } });
  const text = JSON.stringify(model.toJSON());
  const back = GradientBoostedTrees.fromJSON(JSON.parse(text));
  const a = model.predictProbaBatch(te.x);
  const b = back.predictProbaBatch(te.x);
  assert.deepEqual(Array.from(b), Array.from(a));
  assert.equal(JSON.stringify(back.toJSON()), text);
  // Single-row and batch prediction agree.
  const row = Array.from(te.x.data.subarray(0, 4));
  assert.equal(back.predictProba(row), a[0]);
});

test('training is deterministic for a seed', () => {
  const tr = xorData(1500, 6);
  const p = { nTrees: 10, subsample: 0.7, seed: 5, earlyStoppingRounds: 0 };
  const a = JSON.stringify(GradientBoostedTrees.train(tr.x, tr.y, { params: p }).toJSON());
  const b = JSON.stringify(GradientBoostedTrees.train(tr.x, tr.y, { params: p }).toJSON());
  assert.equal(a, b);
});

test('early stopping on validation keeps the best iteration', () => {
  // Pure noise labels: validation loss stops improving almost at once.
  const rnd = mulberry32(9);
  const mk = (n: number): { x: FeatureMatrix; y: Uint8Array } => {
    const data = Float64Array.from({ length: n * 3 }, () => rnd());
    return { x: { nRows: n, nCols: 3, data }, y: Uint8Array.from({ length: n }, () => (rnd() < 0.3 ? 1 : 0)) };
  };
  const tr = mk(2000);
  const va = mk(1000);
  const model = GradientBoostedTrees.train(tr.x, tr.y, { validation: va, params: { nTrees: 200, maxDepth: 6, learningRate: 0.3, earlyStoppingRounds: 5 } });
  assert.ok(model.nTrees < 50, `kept ${model.nTrees} trees`);
  assert.equal(model.nTrees, model.bestIteration);
});

test('class weights raise predicted probabilities of the rare class', () => {
  const tr = xorData(3000, 12);
  // Make positives rare: keep 5 % of them.
  const rnd = mulberry32(1);
  const keep: number[] = [];
  for (let r = 0; r < tr.x.nRows; r++) if (tr.y[r] === 0 || rnd() < 0.05) keep.push(r);
  const data = new Float64Array(keep.length * 4);
  const y = new Uint8Array(keep.length);
  keep.forEach((r, i) => {
    data.set(tr.x.data.subarray(r * 4, r * 4 + 4), i * 4);
    y[i] = tr.y[r];
  });
  const x = { nRows: keep.length, nCols: 4, data };
  const plain = GradientBoostedTrees.train(x, y, { params: { nTrees: 30, earlyStoppingRounds: 0 } });
  const weighted = GradientBoostedTrees.train(x, y, { params: { nTrees: 30, earlyStoppingRounds: 0, positiveWeight: 20 } });
  const row = [0.9, 0.1, 0.5, 50]; // a positive region
  assert.ok(weighted.predictProba(row) > plain.predictProba(row));
});

test('bin edges: midpoints for few distinct values, at most maxBins otherwise', () => {
  const e = computeBinEdges(Float64Array.of(1, 2, 4), Float64Array.of(1, 1, 1), 10);
  assert.deepEqual(Array.from(e), [1.5, 3, Infinity]);
  const u = Float64Array.from({ length: 1000 }, (_, i) => i);
  const e2 = computeBinEdges(u, new Float64Array(1000).fill(1), 255);
  assert.ok(e2.length <= 255 && e2.length > 200);
  for (let i = 1; i < e2.length; i++) assert.ok(e2[i] > e2[i - 1]);
});

test('bad input gives clear errors', () => {
  const x = { nRows: 2, nCols: 2, data: Float64Array.of(1, 2, 3, 4) };
  assert.throws(() => GradientBoostedTrees.train(x, [0, 2]), /label/);
  assert.throws(() => GradientBoostedTrees.train(x, [0]), /labels/);
  assert.throws(() => GradientBoostedTrees.train({ nRows: 2, nCols: 2, data: new Float64Array(3) }, [0, 1]), /data length/);
  assert.throws(() => GradientBoostedTrees.train(x, [0, 1], { params: { maxBins: 300 } }), /maxBins/);
  const model = GradientBoostedTrees.train(x, [0, 1], { params: { nTrees: 2, minChildWeight: 0 } });
  assert.throws(() => model.predictProba([1]), /expects 2/);
  assert.throws(() => GradientBoostedTrees.fromJSON({ format: 'other' }), /presage-gbdt/);
  const j = model.toJSON();
  j.trees[0].left = [];
  assert.throws(() => GradientBoostedTrees.fromJSON(j), /malformed/);
});
