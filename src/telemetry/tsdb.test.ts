import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TimeSeriesStore, CSV_HEADER, DAY_MS, MINUTE_MS, type RollupRow } from './tsdb.ts';

const T0 = Date.UTC(2026, 0, 1); // a minute boundary

function tmpDb(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsdb-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'telemetry.db');
}

test('raw samples roll up into min, max, mean, last, count per metric per minute', () => {
  const s = new TimeSeriesStore(':memory:');
  // Minute 0: 4 samples; minute 1: 2 samples; metric b only in some samples.
  s.push({ ts: T0 + 0, values: { a: 3, b: 10 } });
  s.push({ ts: T0 + 15_000, values: { a: 1 } });
  s.push({ ts: T0 + 30_000, values: { a: 8, b: 20 } });
  s.push({ ts: T0 + 59_999, values: { a: 4 } });
  s.push({ ts: T0 + 60_000, values: { a: -2 } });
  s.push({ ts: T0 + 90_000, values: { a: 5, b: Number.NaN } });
  assert.deepEqual(s.query('a', T0, T0 + 2 * MINUTE_MS), [
    { ts: T0, min: 1, max: 8, mean: 4, last: 4, count: 4 },
    // Minute 1 is still in memory and already visible.
    { ts: T0 + MINUTE_MS, min: -2, max: 5, mean: 1.5, last: 5, count: 2 },
  ]);
  assert.deepEqual(s.query('b', T0, T0 + 2 * MINUTE_MS), [{ ts: T0, min: 10, max: 20, mean: 15, last: 20, count: 2 }]);
  assert.deepEqual(s.metrics(), ['a', 'b']);
  // A partial flush followed by more samples of the same minute merges on disk.
  s.flush();
  s.push({ ts: T0 + 95_000, values: { a: 11 } });
  s.flush();
  assert.deepEqual(s.query('a', T0 + MINUTE_MS, T0 + 2 * MINUTE_MS), [{ ts: T0 + MINUTE_MS, min: -2, max: 11, mean: 14 / 3, last: 11, count: 3 }]);
  // A late sample for a closed minute is merged into that minute.
  s.push({ ts: T0 + 5_000, values: { a: 100 } });
  assert.deepEqual(s.query('a', T0, T0 + MINUTE_MS), [{ ts: T0, min: 1, max: 100, mean: 116 / 5, last: 100, count: 5 }]);
  s.close();
});

test('query ranges are [from, to) on minute starts; step merges buckets', () => {
  const s = new TimeSeriesStore(':memory:');
  const rows: RollupRow[] = [];
  for (let m = 0; m < 180; m++) rows.push({ ts: T0 + m * MINUTE_MS, metric: 'x', min: m, max: m + 1, mean: m + 0.5, last: m + 0.25, count: 2 });
  assert.equal(s.importRows(rows), 180);
  assert.equal(s.query('x', T0, T0 + 180 * MINUTE_MS).length, 180);
  assert.equal(s.query('x', T0 + 10 * MINUTE_MS, T0 + 20 * MINUTE_MS).length, 10);
  assert.equal(s.query('x', T0 + 10 * MINUTE_MS, T0 + 20 * MINUTE_MS)[0]!.ts, T0 + 10 * MINUTE_MS);
  // A from inside a minute starts at the next minute.
  assert.equal(s.query('x', T0 + 10 * MINUTE_MS + 1, T0 + 20 * MINUTE_MS)[0]!.ts, T0 + 11 * MINUTE_MS);
  assert.deepEqual(s.query('x', T0 - DAY_MS, T0), []);
  assert.deepEqual(s.query('nope', T0, T0 + DAY_MS), []);
  const hourly = s.query('x', T0, T0 + 180 * MINUTE_MS, 3_600_000);
  assert.equal(hourly.length, 3);
  // Hour 1: minutes 60..119.
  assert.deepEqual(hourly[1], { ts: T0 + 3_600_000, min: 60, max: 120, mean: 90, last: 119.25, count: 120 });
  assert.throws(() => s.query('x', T0, T0 + 1, 1000), /multiple of 60000/);
  s.close();
});

test('retention drops data older than configured, and the timer runs prune', async (t) => {
  let now = T0 + 10 * DAY_MS;
  const s = new TimeSeriesStore(tmpDb(t), { retentionDays: 3, now: () => now, pruneIntervalMs: 20 });
  const rows: RollupRow[] = [];
  for (let d = 0; d < 10; d++) for (const metric of ['a', 'b']) rows.push({ ts: T0 + d * DAY_MS, metric, min: d, max: d, mean: d, last: d, count: 1 });
  s.importRows(rows);
  // Cutoff = now − 3 days = T0 + 7 days: days 0..6 go, 7..9 stay.
  assert.equal(s.prune(), 14);
  assert.deepEqual(s.query('a', 0, T0 + 100 * DAY_MS).map((p) => p.min), [7, 8, 9]);
  assert.equal(s.prune(), 0);
  now += DAY_MS;
  s.startRetention();
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(s.query('b', 0, T0 + 100 * DAY_MS).map((p) => p.min), [8, 9]);
  s.close();
});

test('importRows is all-or-nothing and names the bad row', () => {
  const s = new TimeSeriesStore(':memory:');
  const good = { ts: T0, metric: 'a', min: 1, max: 1, mean: 1, last: 1, count: 1 };
  assert.throws(() => s.importRows([good, { ...good, ts: T0 + MINUTE_MS, count: 0 }]), /row 1: count must be a positive integer/);
  assert.throws(() => s.importRows([{ ...good, metric: 'bad name' }]), /invalid metric name/);
  assert.throws(() => s.importRows([{ ...good, min: 2 }]), /min 2 > max 1/);
  assert.deepEqual(s.query('a', 0, T0 + DAY_MS), []);
  s.close();
});

test('export → import → export is byte-identical and survives reopening the file', (t) => {
  const file = tmpDb(t);
  const s = new TimeSeriesStore(file);
  s.push({ ts: T0 + 1000, values: { disk_read_latency_ms: 0.1 + 0.2, cpu_busy_ratio: 1 / 3 } });
  s.push({ ts: T0 + 6000, values: { disk_read_latency_ms: 1e-7, cpu_busy_ratio: 0 } });
  s.push({ ts: T0 + MINUTE_MS, values: { mem_total_bytes: 25276514304 } });
  const csv = s.export(T0, T0 + DAY_MS);
  assert.equal(
    csv,
    `${CSV_HEADER}\n` +
      `${T0},cpu_busy_ratio,0,${1 / 3},${1 / 6},0,2\n` +
      `${T0},disk_read_latency_ms,1e-7,${0.1 + 0.2},${(0.1 + 0.2 + 1e-7) / 2},1e-7,2\n` +
      `${T0 + MINUTE_MS},mem_total_bytes,25276514304,25276514304,25276514304,25276514304,1\n`,
  );
  s.close();
  const back = new TimeSeriesStore(file);
  assert.equal(back.export(T0, T0 + DAY_MS), csv);
  const copy = new TimeSeriesStore(':memory:');
  const rows = csv.trim().split('\n').slice(1).map((l) => {
    const f = l.split(',');
    return { ts: +f[0]!, metric: f[1]!, min: +f[2]!, max: +f[3]!, mean: +f[4]!, last: +f[5]!, count: +f[6]! };
  });
  copy.importRows(rows);
  copy.importRows(rows); // idempotent: import replaces
  assert.equal(copy.export(T0, T0 + DAY_MS), csv);
  back.close();
  copy.close();
});

test('30 days × 40 metrics × 1 minute (1.73M rows): import in seconds, fast queries, bytes/day', (t) => {
  const s = new TimeSeriesStore(tmpDb(t));
  const days = 30;
  const metrics = Array.from({ length: 40 }, (_, i) => `m${String(i).padStart(2, '0')}`);
  function* rows(): Generator<RollupRow> {
    for (let m = 0; m < days * 1440; m++) {
      const ts = T0 + m * MINUTE_MS;
      for (let k = 0; k < metrics.length; k++) {
        // Deterministic values: a daily sine for half the metrics, integer counters for the rest.
        const v = k % 2 ? Math.sin((m / 1440) * 2 * Math.PI + k) * 50 + 50 : Math.floor(m / 60) + k;
        yield { ts, metric: metrics[k]!, min: v, max: v + 1, mean: v + 0.5, last: v, count: 12 };
      }
    }
  }
  let t0 = performance.now();
  const n = s.importRows(rows());
  const importMs = performance.now() - t0;
  assert.equal(n, days * 1440 * 40);
  t.diagnostic(`import ${n} rows: ${importMs.toFixed(0)} ms`);
  assert.ok(importMs < 30_000, `import took ${importMs} ms`);

  t0 = performance.now();
  const all = s.query('m07', T0, T0 + days * DAY_MS);
  const qMs = performance.now() - t0;
  t.diagnostic(`query 30 days of one metric: ${qMs.toFixed(0)} ms`);
  assert.equal(all.length, days * 1440);
  assert.ok(qMs < 2000, `query took ${qMs} ms`);
  const v = Math.sin((1234 / 1440) * 2 * Math.PI + 7) * 50 + 50;
  assert.deepEqual(all[1234], { ts: T0 + 1234 * MINUTE_MS, min: v, max: v + 1, mean: v + 0.5, last: v, count: 12 });
  const day5 = s.query('m10', T0 + 5 * DAY_MS, T0 + 6 * DAY_MS, DAY_MS);
  // Counter metric m10: value = hour index + 10 over day 5 → hours 120..143.
  assert.equal(day5.length, 1);
  const { mean, ...rest } = day5[0]!;
  assert.deepEqual(rest, { ts: T0 + 5 * DAY_MS, min: 130, max: 154, last: 153, count: 12 * 1440 });
  // A count-weighted mean of 1440 minutes carries float rounding.
  assert.ok(Math.abs(mean - ((130 + 153) / 2 + 0.5)) < 1e-9, `mean ${mean}`);
  assert.equal(s.metrics().length, 40);

  const st = s.storageStats();
  t.diagnostic(`storage: ${JSON.stringify(st)}`);
  assert.equal(st.rows, n);
  assert.equal(st.coveredDays, 30);
  assert.equal(st.firstTs, T0);
  assert.equal(st.lastTs, T0 + (days * 1440 - 1) * MINUTE_MS);
  assert.ok(st.bytesPerDay! > 40 * 1440 * 8 && st.bytesPerDay! < 40 * 1440 * 120, `bytes/day ${st.bytesPerDay}`);
  assert.equal(s.bytesPerDay(), st.bytesPerDay);
  s.close();
});
