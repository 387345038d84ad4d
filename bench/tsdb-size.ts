// Measures how many bytes the telemetry store needs per server per day.
//
//   node --import tsx bench/tsdb-size.ts [--days 1] [--interval-ms 5000] [--db /tmp/x.db]
//
// Method: the real collector (real /proc, real process counters, the disk behind the db's
// directory) is sampled back to back, but each sample is stamped with a simulated clock that
// advances by the collector interval, so one simulated day takes ~17,280 real readings and
// a few seconds instead of a day. Rates are therefore computed over the simulated interval
// and their magnitudes are not meaningful; their number, sparsity and float entropy — what
// decides storage size — are those of real readings. A stand-in for the server's own I/O
// metrics (12 names of the catalogue, values drawn at random so each costs a full 8-byte
// double: the worst case) is registered too, because the server process does not exist yet.
// The result is the store's live pages divided by the simulated days.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TelemetryCollector } from '../src/telemetry/collector.ts';
import { TimeSeriesStore, DAY_MS } from '../src/telemetry/tsdb.ts';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const days = Number(arg('days', '1'));
const intervalMs = Number(arg('interval-ms', '5000'));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsdb-size-'));
const dbFile = arg('db', path.join(dir, 'telemetry.db'));
if (!(days > 0) || !(intervalMs >= 1000)) throw new Error('--days must be > 0 and --interval-ms >= 1000');

const start = Date.UTC(2026, 0, 1);
let now = start;
const store = new TimeSeriesStore(dbFile, { now: () => now });
const collector = new TelemetryCollector({ store, intervalMs, now: () => now, os: { dataDir: path.dirname(dbFile), now: () => now } });
const serverNames = [
  'io_read_iops', 'io_write_iops', 'io_read_bytes_per_s', 'io_write_bytes_per_s', 'io_read_latency_p50_ms', 'io_read_latency_p99_ms',
  'io_write_latency_p50_ms', 'io_write_latency_p99_ms', 'io_errors_per_s', 'checksum_failures_total', 'replication_lag_ms', 'segments',
];
collector.addSource('server-stand-in', () => Object.fromEntries(serverNames.map((n) => [n, Math.random() * 1000])));

const samples = Math.round((days * DAY_MS) / intervalMs);
const t0 = performance.now();
for (let i = 0; i < samples; i++) {
  await collector.sampleOnce();
  now += intervalMs;
}
store.flush();
const wall = performance.now() - t0;
store.db.pragma('wal_checkpoint(TRUNCATE)');
const st = store.storageStats();
const metricsPerMinute = st.rows / (days * 1440);
const fileBytes = fs.statSync(dbFile).size;
const result = {
  simulatedDays: days,
  intervalMs,
  samples,
  metrics: st.metrics,
  rows: st.rows,
  usedBytes: st.usedBytes,
  fileBytes,
  bytesPerDay: Math.round(st.usedBytes / days),
  bytesPerRow: Number(st.bytesPerRow?.toFixed(1)),
  metricsPerMinute: Number(metricsPerMinute.toFixed(1)),
  projected35DaysMiB: Number(((st.usedBytes / days) * 35 / 2 ** 20).toFixed(1)),
  wallMs: Math.round(wall),
};
console.log(JSON.stringify(result, null, 2));
store.close();
if (arg('db', '') === '') fs.rmSync(dir, { recursive: true, force: true });
