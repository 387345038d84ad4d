import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { runEvaluation, splitOf, hashUnit, perseusFeatures, backblazeSplits, diskGbdtParams } from './evaluate.ts';
import { driveFeatures, driveDayRows, filledColumns, BACKBLAZE_FEATURE_NAMES, DISK_HORIZON_DAYS } from './backblaze-features.ts';
import { BACKBLAZE_SMART, type DriveHistory, type PerseusDrive } from './datasets.ts';

const DATA = new URL('../../../shared/data/', import.meta.url).pathname;

test('split by drive is deterministic, seed-dependent and roughly 60/20/20', () => {
  assert.equal(splitOf('Z1F0ABCD', 1), splitOf('Z1F0ABCD', 1));
  const counts = { train: 0, validation: 0, test: 0 };
  let moved = 0;
  for (let i = 0; i < 5000; i++) {
    counts[splitOf(`S${i}`, 1)]++;
    if (splitOf(`S${i}`, 1) !== splitOf(`S${i}`, 2)) moved++;
  }
  assert.ok(Math.abs(counts.train / 5000 - 0.6) < 0.03, JSON.stringify(counts));
  assert.ok(Math.abs(counts.test / 5000 - 0.2) < 0.03, JSON.stringify(counts));
  assert.ok(moved > 1000);
  for (let i = 0; i < 100; i++) {
    const u = hashUnit(`k${i}`, 7);
    assert.ok(u >= 0 && u < 1);
  }
});

test('Backblaze drive-day features use only the past (hand-computed)', () => {
  const k5 = BACKBLAZE_SMART.indexOf(5);
  const n = 9;
  const days = Int32Array.from({ length: n }, (_, i) => 100 + i);
  const smart = BACKBLAZE_SMART.map(() => new Float64Array(n).fill(NaN));
  smart[k5] = Float64Array.of(0, 0, 0, 0, 0, 0, 0, 8, 16);
  const d: DriveHistory = { serial: 'X', model: 'M', days, smart, failed: true, failDay: 108 };
  const f = driveFeatures(d);
  const m = BACKBLAZE_FEATURE_NAMES.length;
  const col = (name: string): number => BACKBLAZE_FEATURE_NAMES.indexOf(name);
  assert.equal(f.data[7 * m + col('smart_5_level')], 8);
  assert.equal(f.data[7 * m + col('smart_5_delta1')], 8);
  assert.equal(f.data[8 * m + col('smart_5_delta7')], 16); // day 108 vs day 101
  assert.ok(Number.isNaN(f.data[6 * m + col('smart_5_delta7')])); // day 106 needs a row on day <= 99: none
  assert.equal(f.data[7 * m + col('smart_5_delta7')], 8); // day 107 vs day 100
  assert.ok(Math.abs(f.data[7 * m + col('smart_5_ewma03')] - 2.4) < 1e-6); // 0.3 * 8
  // Slope over days 102..108: values 0,0,0,0,0,8,16 -> sxy = 2*8 + 3*16 = 64, sxx = 28 -> 16/7.
  assert.ok(Math.abs(f.data[8 * m + col('smart_5_slope7')] - 64 / 28) < 1e-5);
  // Changing the future must not change the past rows.
  const smart2 = smart.map((a) => Float64Array.from(a));
  smart2[k5][8] = 1000;
  const f2 = driveFeatures({ ...d, smart: smart2 });
  assert.deepEqual(Array.from(f2.data.subarray(0, 8 * m)), Array.from(f.data.subarray(0, 8 * m)));
  assert.deepEqual(Array.from(f.rule), [0, 0, 0, 0, 0, 0, 0, 1, 1]);
  assert.equal(f.data[8 * m + col('rule_sum')], 16);
});

test('drive-day rows: labels within the horizon, only filled columns, every drive in exactly one split', () => {
  const k5 = BACKBLAZE_SMART.indexOf(5);
  const mk = (serial: string, n: number, failed: boolean): DriveHistory => {
    const smart = BACKBLAZE_SMART.map(() => new Float64Array(n).fill(NaN));
    smart[k5] = Float64Array.from({ length: n }, (_, i) => i);
    return { serial, model: 'M', days: Int32Array.from({ length: n }, (_, i) => 200 + i), smart, failed, failDay: failed ? 200 + n - 1 : NaN };
  };
  const drives = Array.from({ length: 40 }, (_, i) => mk(`S${i}`, 10, i % 4 === 0));
  const feats = new Map(drives.map((d) => [d.serial, driveFeatures(d)]));
  const cols = filledColumns(drives, feats);
  const names = cols.map((c) => BACKBLAZE_FEATURE_NAMES[c]);
  assert.deepEqual(names, ['smart_5_level', 'smart_5_delta1', 'smart_5_delta7', 'smart_5_ewma03', 'smart_5_slope7', 'rule_any_positive', 'rule_sum', 'defects_forecast7']);
  const rows = driveDayRows(drives.slice(0, 2), feats, cols);
  assert.equal(rows.x.nRows, 20);
  assert.equal(rows.x.nCols, cols.length);
  // Drive 0 fails on its last day: the last DISK_HORIZON_DAYS days are positive; drive 1 never.
  assert.deepEqual(Array.from(rows.y), [...Array(10 - DISK_HORIZON_DAYS).fill(0), ...Array(DISK_HORIZON_DAYS).fill(1), ...Array(10).fill(0)]);
  assert.deepEqual(rows.drives.map((r) => [r.drive.serial, r.start, r.end]), [['S0', 0, 10], ['S1', 10, 20]]);
  assert.equal(rows.x.data[13 * cols.length + names.indexOf('smart_5_level')], 3);
  assert.throws(() => driveDayRows([mk('unknown', 3, false)], feats, cols), /no features for drive unknown/);

  const s = backblazeSplits(drives, 5);
  for (const split of ['train', 'validation', 'test'] as const) {
    for (const r of s[split].drives) assert.equal(splitOf(r.drive.serial, 5), split);
  }
  const seen = [...s.train.drives, ...s.validation.drives, ...s.test.drives].map((r) => r.drive.serial).sort();
  assert.deepEqual(seen, drives.map((d) => d.serial).sort());
  const params = diskGbdtParams(s.train, 5, { nTrees: 7 });
  const pos = s.train.y.reduce((a, v) => a + v, 0);
  assert.equal(params.nTrees, 7);
  assert.equal(params.seed, 5);
  assert.equal(params.positiveWeight, Math.sqrt((s.train.x.nRows - pos) / pos));
});

test('Perseus per-drive features flag a drive slower than its host peers', () => {
  const T = 30;
  const mk = (disk: number, latScale: number, slow: boolean): PerseusDrive => {
    const ts = Float64Array.from({ length: T }, (_, i) => 1_000_000 + 60 * i);
    const throughput = Float64Array.from({ length: T }, (_, i) => 1000 + 100 * (i % 5));
    const latencyMean = Float64Array.from(throughput, (tp, i) => latScale * (50 + tp / 100 + disk + (i % 3)));
    return { host: 1, disk, slow, ts, throughput, latencyMean, latencyMax: Float64Array.from(latencyMean, (v) => v * 2) };
  };
  const drives = [mk(1, 1, false), mk(2, 1, false), mk(3, 1, false), mk(4, 1, false), mk(5, 5, true)];
  const f = perseusFeatures(drives);
  const slow = f.find((x) => x.disk === 5)!;
  assert.ok(slow.hostRatioMedian > 3 && slow.over3xFrac === 1 && slow.peerZ3Frac === 1);
  for (const h of f.filter((x) => x.disk !== 5)) assert.ok(h.hostRatioMedian < 1.2 && h.peerZMedian < 3);
  assert.ok(Math.abs(slow.tailRatio - 2) < 1e-12);
  assert.ok(slow.latThroughputCorr > 0.5); // latency follows load in this synthetic drive
});

test('evaluation pipeline smoke test on a small real slice (Backblaze + Perseus)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'presage-eval-'));
  try {
    const out = join(dir, 'bb.md');
    const r = await runEvaluation({
      dataset: join(DATA, 'backblaze_2013_dev.csv.gz'),
      out,
      seed: 3,
      maxRows: 60_000,
      gbdt: { nTrees: 15, earlyStoppingRounds: 5 },
    });
    assert.equal(r.kind, 'backblaze');
    const md = readFileSync(out, 'utf8');
    assert.equal(md, r.markdown);
    for (const s of ['## Protocol', '## Results on the test split', 'SMART rule', '## Transfer']) assert.ok(md.includes(s), s);
    const auc = r.metrics.drive_auc as number;
    assert.ok(Number.isNaN(auc) || (auc >= 0 && auc <= 1));
    assert.ok((r.metrics.test_drives as number) > 100);
    const far = r.metrics.rule_false_alarm_rate as number;
    assert.ok(far >= 0 && far <= 1);

    const p = await runEvaluation({ dataset: join(DATA, 'perseus_A_dev_1min.csv.gz'), maxRows: 20_000, seed: 3 });
    assert.equal(p.kind, 'perseus');
    assert.ok((p.metrics.drives as number) >= 7);
    assert.ok(p.markdown.includes('How little this proves'));
    await assert.rejects(() => runEvaluation({ dataset: join(dir, 'unknown.csv.gz') }), /no evaluation defined/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
