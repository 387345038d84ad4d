// The live path on real data: Backblaze dev drives streamed into a real TimeSeriesStore every
// 10 minutes (the collector's push, not arrayQuery) and scored by FailureScorer.score() score
// the same whatever the time of day (the UTC-day-bucket skew of issue #14 made them 60–80 at
// 01:00); and the retrain path (history fetched as stored minutes, seriesQuery) computes exactly
// the feature vectors the serving path computes from the store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { loadBackblazeDrives } from './datasets.ts';
import { backblazeDataset } from './live-datasets.ts';
import { scoreStreams } from './live-eval.ts';
import { FailureScorer } from './scorer.ts';
import { loadDefaultBundle } from './model-bundle.ts';
import { storeQuery, HOUR_MS, MINUTE_MS } from './online-features.ts';
import { FAILURE_MODES as FAILURE_MODES_FOR_TEST } from './failure-report.ts';
import { TimeSeriesStore } from '../telemetry/tsdb.ts';
import { seriesQuery, type CompactSeries } from '../orchestrator/retrain-worker.ts';

const DATA = '../shared/data/backblaze_2013_dev.csv.gz';
const scorer = new FailureScorer(await loadDefaultBundle());

test('healthy Backblaze drives streamed every 10 minutes score the same (within 1 point) at 01:00, 12:00 and 23:59 UTC', async () => {
  assert.ok(existsSync(DATA), `${DATA} is needed (read in place)`);
  const all = await loadBackblazeDrives(DATA);
  const drives = all.filter((d) => !d.failed && d.days.length >= 30).slice(0, 40);
  assert.equal(drives.length, 40);
  const at = async (offsetMs: number) => {
    const ds = backblazeDataset(DATA, drives, { cadenceMs: 10 * MINUTE_MS, scoreOffsetMs: offsetMs });
    return scoreStreams(scorer, ds.groups, { staleMs: ds.staleMs });
  };
  const [a, b, c] = [await at(1 * HOUR_MS), await at(12 * HOUR_MS), await at(23 * HOUR_MS + 59 * MINUTE_MS)];
  let compared = 0;
  for (let u = 0; u < drives.length; u++) {
    assert.equal(a[u].score.length, drives[u].days.length, 'scored once a day');
    for (let i = 0; i < a[u].score.length; i++) {
      for (const other of [b, c]) {
        assert.ok(Math.abs(a[u].score[i] - other[u].score[i]) <= 1, `drive ${drives[u].serial} day ${i}: ${a[u].score[i]} vs ${other[u].score[i]}`);
      }
      compared++;
    }
  }
  assert.ok(compared > 1000);
});

test('the retrain path (stored minutes → seriesQuery) and the serving path (the store) compute identical feature vectors', async () => {
  assert.ok(existsSync(DATA));
  const drive = (await loadBackblazeDrives(DATA, { limit: 200_000 })).find((d) => d.days.length >= 20)!;
  const store = new TimeSeriesStore(':memory:');
  const ds = backblazeDataset(DATA, [drive], { cadenceMs: 10 * MINUTE_MS });
  for (const { sample } of ds.groups[0].samples) {
    // Add minute-level I/O, memory and network series too, so every mode's features are compared.
    const m = sample.ts / MINUTE_MS;
    sample.values.io_read_latency_p50_ms = 1 + (m % 7) / 10;
    sample.values.io_read_bytes_per_s = 5e6 + (m % 11) * 1e5;
    sample.values.process_rss_bytes = 1e8 + m;
    sample.values.net_tcp_retrans_ratio = 0.001;
    store.push(sample);
  }
  store.flush();
  const last = drive.days[drive.days.length - 1] * 86_400_000;
  const series: Record<string, CompactSeries> = {};
  for (const metric of store.metrics()) {
    const pts = store.query(metric, 0, last + 2 * 86_400_000);
    series[metric] = { t: Float64Array.from(pts, (p) => p.ts), mean: Float32Array.from(pts, (p) => p.mean), last: Float32Array.from(pts, (p) => p.last) };
  }
  const served = storeQuery(store);
  const retrain = seriesQuery(series);
  let checked = 0;
  for (const now of [last + 1 * HOUR_MS, last + 12 * HOUR_MS + 7 * MINUTE_MS, last - 5 * 86_400_000 + 23 * HOUR_MS]) {
    const peers = { io_read_latency_p50_ms: { median: 1.2, mad: 0.1 }, io_read_bytes_per_s: { median: 5.5e6, mad: 3e5 } };
    const fs = scorer.features(served, now, peers);
    const fr = scorer.features(retrain, now, peers);
    for (const mode of FAILURE_MODES_FOR_TEST) {
      // float32 storage of the retrain series: identical up to its precision.
      const a = Array.from(fs[mode].values);
      const b = Array.from(fr[mode].values);
      assert.equal(a.length, b.length);
      a.forEach((v, i) => {
        if (Number.isNaN(v)) assert.ok(Number.isNaN(b[i]), `${mode} ${fs[mode].names[i]}: served NaN, retrain ${b[i]}`);
        else assert.ok(Math.abs(v - b[i]) <= 1e-5 * Math.max(1, Math.abs(v)), `${mode} ${fs[mode].names[i]}: served ${v}, retrain ${b[i]}`);
      });
      checked += fs[mode].present;
    }
  }
  assert.ok(checked > 30, `${checked} present features compared`);
  store.close();
});
