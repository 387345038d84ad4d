import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mulberry32 } from './prng.ts';
import { prng as workloadPrng } from '../demo/workload.ts';

// Taken from the copies this module replaced (demo/workload.ts, prediction/gbdt.ts,
// prediction/forecast/optim.ts, which all agreed), as outputs × 2^32.
const GOLDEN: [seed: number, first: number[]][] = [
  [0, [1144304738, 1416247, 958946056, 627933444, 2007157716, 2340967985]],
  [1, [2693262067, 11749833, 2265367787, 4213581821, 4159151403, 1207330352]],
  [42, [2581720956, 1925393290, 3661312704, 2876485805, 750819978, 2261697747]],
  [0xffffffff, [3850105811, 813802916, 3073704848, 4054706436, 3630262831, 2315588663]],
  [-1, [3850105811, 813802916, 3073704848, 4054706436, 3630262831, 2315588663]],
  [2 ** 32 + 5, [2962560684, 3318907087, 943874942, 2676532661, 365661495, 2543329052]],
];

test('mulberry32 gives bit for bit the sequence of the implementations it replaced', () => {
  for (const [seed, first] of GOLDEN) {
    const r = mulberry32(seed);
    assert.deepEqual(Array.from(first, () => r()), first.map((u) => u / 4294967296), `seed ${seed}`);
  }
  const r = mulberry32(7);
  let x = 0;
  for (let i = 0; i < 10000; i++) x = r();
  assert.equal(x * 4294967296, 2804778338);
});

test('mulberry32 returns floats in [0, 1) that are whole multiples of 2^-32', () => {
  const r = mulberry32(123);
  for (let i = 0; i < 5000; i++) {
    const v = r();
    assert.ok(v >= 0 && v < 1, `value ${v} out of range`);
    assert.ok(Number.isInteger(v * 4294967296));
  }
});

test('the demo workload draws from this one implementation', () => {
  assert.equal(workloadPrng, mulberry32);
});
