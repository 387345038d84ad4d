// Unit tests of the server telemetry pieces: percentiles, heat, time parsing, CSV import, and
// the values one interval of requests produces (with an in-memory store and no OS sampling).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Flag, Op, Status } from '../protocol/messages.ts';
import { parsePrometheusText } from '../telemetry/prom-parse.ts';
import { HeatTracker, LatencyReservoir, parseDuration, parseOwnCsv, parseStep, parseTime, prometheusText, ServerTelemetry } from './telemetry.ts';

test('LatencyReservoir: nearest-rank percentiles, exact max, bounded memory', () => {
  const r = new LatencyReservoir(1000);
  assert.equal(r.percentile(0.5), undefined);
  for (let i = 1; i <= 100; i++) r.add(i);
  assert.equal(r.percentile(0.5), 50);
  assert.equal(r.percentile(0.99), 99);
  assert.equal(r.percentile(1), 100);
  assert.equal(r.max, 100);
  const big = new LatencyReservoir(64, () => 0.999);
  for (let i = 0; i < 10_000; i++) big.add(i === 5000 ? 1e6 : 1);
  assert.equal(big.count, 10_000);
  assert.equal(big.max, 1e6, 'the max is exact even when the sample dropped it');
});

test('HeatTracker: a steady rate reads as that rate; quiet segments cool with the time constant', () => {
  let now = 0;
  const h = new HeatTracker(10_000, () => now);
  // 20 reads/s of 4 KiB on a, for 100 s (10 τ): the estimate converges to 20/s.
  for (let i = 0; i < 2000; i++) {
    now += 50;
    h.record('v/a', 'read', 4096);
  }
  h.record('v/b', 'write', 512);
  const [a, b, c] = h.list(['v/c']);
  assert.equal(a!.segmentId, 'v/a');
  assert.ok(Math.abs(a!.readsPerSec - 20) < 0.5, String(a!.readsPerSec));
  assert.ok(Math.abs(a!.bytesPerSec - 20 * 4096) < 0.5 * 4096);
  assert.equal(a!.writesPerSec, 0);
  assert.equal(b!.segmentId, 'v/b');
  assert.deepEqual(c, { segmentId: 'v/c', readsPerSec: 0, writesPerSec: 0, bytesPerSec: 0 });
  now += 10_000; // one τ later: e^-1 of the rate
  const later = h.list().find((x) => x.segmentId === 'v/a')!;
  assert.ok(Math.abs(later.readsPerSec / a!.readsPerSec - Math.exp(-1)) < 1e-9);
  assert.throws(() => new HeatTracker(0), /time constant/);
});

test('parseTime / parseStep / parseDuration', () => {
  const now = Date.UTC(2024, 5, 10, 12, 0, 0);
  assert.equal(parseTime('1718000000000', now), 1718000000000);
  assert.equal(parseTime('2024-06-10T00:00:00Z', now), Date.UTC(2024, 5, 10));
  assert.equal(parseTime('2024-06-10', now), Date.UTC(2024, 5, 10));
  assert.equal(parseTime('now', now), now);
  assert.equal(parseTime('-1h', now), now - 3_600_000);
  assert.equal(parseTime('now-30m', now), now - 1_800_000);
  for (const bad of ['yesterday', '', '2024-13-45', '-1y', '12abc']) assert.throws(() => parseTime(bad, now), /invalid/);
  assert.equal(parseStep('5m'), 300_000);
  assert.equal(parseStep('3600000'), 3_600_000);
  assert.throws(() => parseStep('90s'), /multiple of 1 minute/);
  assert.throws(() => parseStep('0'), /multiple/);
  assert.equal(parseDuration('1.5h'), 5_400_000);
  assert.throws(() => parseDuration('5 minutes'), /invalid duration/);
});

test('parseOwnCsv: our export format, clear errors naming the line', () => {
  const rows = parseOwnCsv('ts,metric,min,max,mean,last,count\n60000,a,1,3,2,2.5,4\n\n');
  assert.deepEqual(rows, [{ ts: 60000, metric: 'a', min: 1, max: 3, mean: 2, last: 2.5, count: 4 }]);
  assert.throws(() => parseOwnCsv('time,value\n1,2\n'), /expected header/);
  assert.throws(() => parseOwnCsv('ts,metric,min,max,mean,last,count\n1,a,1,2\n'), /line 2: expected 7 fields/);
  assert.throws(() => parseOwnCsv('ts,metric,min,max,mean,last,count\n1,a,1,2,1,1,0\n'), /line 2: count/);
  assert.throws(() => parseOwnCsv('ts,metric,min,max,mean,last,count\n1,bad name,1,2,1,1,1\n'), /line 2: invalid metric name/);
  assert.throws(() => parseOwnCsv('ts,metric,min,max,mean,last,count\n1,a,,2,1,1,1\n'), /line 2: min/);
});

test('ServerTelemetry: one interval of requests becomes rates, percentiles, errors, heat and Prometheus', async () => {
  let now = 1_700_000_000_000;
  let scrubCorrupt = 0;
  const t = new ServerTelemetry({
    dir: '/nonexistent', storeFile: ':memory:', osMetrics: false, now: () => now,
    segments: () => ['v/0', 'v/1'], scrubCorrupt: () => scrubCorrupt, extraSource: () => ({ smart_5_reallocated_sectors: 3 }),
  });
  try {
    for (let i = 1; i <= 100; i++) t.onComplete(Op.WRITE, Status.OK, 4096, i, 'v/0');
    for (let i = 0; i < 10; i++) t.onComplete(Op.READ, Status.OK, 8192, 2, 'v/1');
    t.onComplete(Op.READ, Status.CORRUPT, 0, 1, 'v/1');
    t.onComplete(Op.WRITE, Status.IO_ERROR, 0, 1, 'v/0');
    t.onComplete(Op.WRITE, Status.STALE, 0, 1, 'v/0');
    t.onComplete(Op.WRITE, Status.UNAVAILABLE, 0, 1, 'v/0'); // a dead peer replica: not this server's error
    t.onComplete(Op.WRITE, Status.OK, 4096, 50, 'v/1', Flag.FORWARDED); // a replica's work: not a client op
    t.onComplete(Op.WRITE, Status.OK, 65536, 5, 'v/1', Flag.COPY);
    t.onComplete(Op.CHECKSUMS, Status.OK, 0, 1, 'v/1');
    t.onReplicated('v/0', 3, 7);
    t.onReplicated('v/0', 9, 12);
    scrubCorrupt = 2;
    now += 2000;
    const s = await t.collector.sampleOnce();
    const v = s.values;
    assert.equal(v.io_write_iops, 50);
    assert.equal(v.io_read_iops, 5);
    assert.equal(v.io_write_bytes_per_s, 100 * 4096 / 2);
    assert.equal(v.io_read_bytes_per_s, 10 * 8192 / 2);
    assert.equal(v.io_write_latency_p50_ms, 50);
    assert.equal(v.io_write_latency_p99_ms, 99);
    assert.equal(v.io_write_latency_max_ms, 100);
    assert.equal(v.io_read_latency_p99_ms, 2);
    assert.equal(v.io_errors_per_s, 1);
    assert.equal(v.io_errors_corrupt_per_s, 0.5);
    assert.equal(v.io_errors_io_error_per_s, 0.5);
    assert.equal(v.io_errors_unavailable_per_s, 0.5);
    assert.equal(v.io_redirects_per_s, 0.5);
    assert.equal(v.io_replica_write_iops, 0.5);
    assert.equal(v.io_copy_bytes_per_s, 32768);
    assert.equal(v.replication_lag_ms, 9);
    assert.equal(v.replication_forward_latency_p99_ms, 12);
    assert.equal(v.checksum_failures_total, 3);
    assert.equal(v.checksum_failures_scrub_total, 2);
    assert.equal(v.segments, 2);
    assert.equal(v.smart_5_reallocated_sectors, 3);
    // The next interval had no requests: rates 0, latencies absent (never invented).
    now += 1000;
    const s2 = await t.collector.sampleOnce();
    assert.equal(s2.values.io_write_iops, 0);
    assert.equal(s2.values.io_write_latency_p99_ms, undefined);
    assert.equal(s2.values.replication_lag_ms, undefined);
    assert.ok(t.store.metrics().includes('io_write_latency_p99_ms'));

    const heat = t.segmentHeat();
    assert.equal(heat[0]!.segmentId, 'v/0');
    assert.ok(heat[0]!.writesPerSec > heat[1]!.writesPerSec);

    t.start();
    const fams = parsePrometheusText(await prometheusText(t.registry));
    const writes = fams.get('presage_io_requests_total')!.samples.find((x) => x.labels.op === 'write')!;
    assert.equal(writes.value, 100);
    assert.equal(fams.get('presage_checksum_failures_total')!.samples[0]!.value, 3);
    assert.equal(fams.get('presage_node_io_write_iops')!.samples[0]!.value, 0);
    assert.ok(fams.has('process_cpu_user_seconds_total'));
  } finally {
    await t.stop();
  }
});
