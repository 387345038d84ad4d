import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { TelemetryCollector } from './collector.ts';
import { TimeSeriesStore, type Sample } from './tsdb.ts';
import type { SmartResult } from './smart.ts';
import { metricInfo } from './metrics.ts';

test('sampleOnce merges OS metrics with registered sources; a failing source loses only its values', async () => {
  const pushed: Sample[] = [];
  const errors: string[] = [];
  let now = 1_000_000;
  const c = new TelemetryCollector({
    store: { push: (s) => void pushed.push(s) },
    sampler: { sample: async () => ({ ts: now, values: { cpu_busy_ratio: 0.25, mem_used_ratio: 0.5 } }) },
    now: () => now,
    onError: (src) => void errors.push(src),
  });
  c.addSource('io', () => ({ io_read_latency_p99_ms: 4.5, checksum_failures_total: 2 }));
  c.addSource('broken', () => {
    throw new Error('boom');
  });
  c.addSource('async', async () => ({ replication_lag_ms: 12, junk: Number.NaN }));
  assert.throws(() => c.addSource('io', () => ({})), /already registered/);
  const s = await c.sampleOnce();
  assert.equal(s.ts, now);
  const { telemetry_sample_ms, ...rest } = s.values;
  assert.ok(telemetry_sample_ms! >= 0);
  assert.deepEqual(rest, {
    cpu_busy_ratio: 0.25, mem_used_ratio: 0.5, io_read_latency_p99_ms: 4.5, checksum_failures_total: 2, replication_lag_ms: 12,
    telemetry_source_errors: 1,
  });
  assert.deepEqual(errors, ['broken']);
  assert.deepEqual(pushed, [s]);
  assert.equal(c.latest(), s);
  c.removeSource('broken');
  now += 5000;
  assert.equal((await c.sampleOnce()).values.telemetry_source_errors, 0);
});

test('SMART is read on its own schedule, repeated while fresh, and never invented when unavailable', async () => {
  let now = 0;
  const reads: string[] = [];
  let result: SmartResult = { available: true, device: '/dev/sdz', protocol: 'ATA', values: { smart_5_reallocated_sectors: 3 } };
  const c = new TelemetryCollector({
    sampler: false, now: () => now, smartDevice: '/dev/sdz', smartIntervalMs: 60_000,
    smartReader: async (d) => {
      reads.push(d);
      return result;
    },
  });
  assert.equal((await c.sampleOnce()).values.smart_5_reallocated_sectors, 3);
  now = 30_000;
  assert.equal((await c.sampleOnce()).values.smart_5_reallocated_sectors, 3);
  assert.equal(reads.length, 1);
  result = { available: false, device: '/dev/sdz', reason: 'gone' };
  now = 61_000;
  // Re-read fails: the last good reading (61 s old) is still within 2 intervals.
  assert.equal((await c.sampleOnce()).values.smart_5_reallocated_sectors, 3);
  assert.equal(reads.length, 2);
  now = 125_000;
  const s = await c.sampleOnce();
  assert.equal(s.values.smart_5_reallocated_sectors, undefined);
  assert.deepEqual(c.smartStatus(), { available: false, device: '/dev/sdz', reason: 'gone' });
});

test('start/stop on the real OS: samples arrive every intervalMs into a TimeSeriesStore', async () => {
  const store = new TimeSeriesStore(':memory:');
  const c = new TelemetryCollector({ store, intervalMs: 100, os: { dataDir: os.tmpdir() } });
  const seen: Sample[] = [];
  c.onSample((s) => seen.push(s));
  c.start();
  assert.equal(c.running, true);
  await new Promise((r) => setTimeout(r, 480));
  await c.stop();
  const n = seen.length;
  assert.ok(n >= 2 && n <= 7, `${n} samples in 480 ms at 100 ms`);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(seen.length, n, 'no samples after stop()');
  const last = c.latest()!;
  const v = last.values;
  assert.ok(v.cpu_busy_ratio! >= 0 && v.cpu_busy_ratio! <= 1, `cpu ${v.cpu_busy_ratio}`);
  assert.ok(v.mem_total_bytes! > 0);
  assert.ok(v.disk_util_ratio! >= 0 && v.disk_util_ratio! <= 1, 'the disk behind tmpdir is sampled');
  assert.ok(v.disk_read_iops! >= 0);
  for (const k of Object.keys(v)) assert.ok(metricInfo(k), `${k} is in the metric catalogue`);
  // Everything went through the store's current-minute accumulator.
  const q = store.query('mem_total_bytes', last.ts - 120_000, last.ts + 60_000);
  assert.equal(q.reduce((a, p) => a + p.count, 0), n);
  store.close();
});
