import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import readline from 'node:readline';
import { TimeSeriesStore, DAY_MS, MINUTE_MS } from './tsdb.ts';
import { importOwnCsv, importPerseus, importBackblaze, backfill, splitCsv, readLines } from './history-import.ts';
import { FAIL_SLOW_SOURCES } from '../prediction/online-features.ts';

const DATA = path.resolve(import.meta.dirname, '../../../shared/data');
const PERSEUS = path.join(DATA, 'perseus_A_dev_1min.csv.gz');
const BACKBLAZE = path.join(DATA, 'backblaze_2013_dev.csv.gz');
const SLOW_DRIVES = path.join(DATA, 'perseus_A_slow_drives.csv');

function tmpDir(t: { after(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'hist-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

test('splitCsv handles quotes; readLines reads gzip and plain alike', async (t) => {
  assert.deepEqual(splitCsv('a,"b,c",,"d""e"'), ['a', 'b,c', '', 'd"e']);
  const d = tmpDir(t);
  fs.writeFileSync(path.join(d, 'p.csv'), 'x\r\ny\n');
  fs.writeFileSync(path.join(d, 'g.csv.gz'), zlib.gzipSync('x\ny\n'));
  for (const f of ['p.csv', 'g.csv.gz']) {
    const lines: string[] = [];
    for await (const l of readLines(path.join(d, f))) lines.push(l);
    assert.deepEqual(lines, ['x', 'y']);
  }
});

test('own CSV: export of one store imports into another identically (gzip), bad lines are named', async (t) => {
  const d = tmpDir(t);
  const a = new TimeSeriesStore(':memory:');
  const T0 = Date.UTC(2026, 1, 1);
  for (let i = 0; i < 30; i++) a.push({ ts: T0 + i * 10_000, values: { cpu_busy_ratio: (i % 7) / 7, io_errors_per_s: i % 3 } });
  a.flush();
  const csv = a.export(0, T0 + DAY_MS);
  fs.writeFileSync(path.join(d, 'x.csv.gz'), zlib.gzipSync(csv));
  const b = new TimeSeriesStore(':memory:');
  const r = await importOwnCsv(b, path.join(d, 'x.csv.gz'));
  assert.equal(r.rowsImported, 10);
  assert.equal(r.linesRead, 10);
  assert.deepEqual(r.metrics, ['cpu_busy_ratio', 'io_errors_per_s']);
  assert.equal(b.export(0, T0 + DAY_MS), csv);
  // Window: only the 2nd minute onwards.
  const c = new TimeSeriesStore(':memory:');
  assert.equal((await importOwnCsv(c, path.join(d, 'x.csv.gz'), { fromMs: T0 + MINUTE_MS })).rowsImported, 8);

  fs.writeFileSync(path.join(d, 'bad.csv'), csv.replace(',io_errors_per_s,', ',io errors,'));
  await assert.rejects(importOwnCsv(b, path.join(d, 'bad.csv')), /bad\.csv:\d+: invalid metric name/);
  fs.writeFileSync(path.join(d, 'hdr.csv'), 'when,what\n');
  await assert.rejects(importOwnCsv(b, path.join(d, 'hdr.csv')), /expected header/);
  await assert.rejects(importOwnCsv(b, path.join(d, 'missing.csv')), /ENOENT/);
  fs.writeFileSync(path.join(d, 'corrupt.csv.gz'), Buffer.from([0x1f, 0x8b, 0x41, 0x42, 0x43]));
  await assert.rejects(importOwnCsv(b, path.join(d, 'corrupt.csv.gz')), /compression|header|unexpected end/);
});

const PERSEUS_FIXTURE = `cluster,host,disk,date,minute_ts,throughput_mean,latency_mean,latency_max,n_samples,n_missing,slow_drive
A,1,1,2022-07-18,1658149200,100,10,20,4,0,0
A,1,1,2022-07-18,1658149260,200,30,50,3,1,0
A,1,2,2022-07-18,1658149200,300,50,90,4,0,0
A,1,2,2022-07-18,1658149260,,,,0,4,0
A,2,1,2022-07-18,1658149200,999,999,999,4,0,0
`;

test('Perseus fixture: per-drive points and host aggregates, empty cells give no point', async (t) => {
  const d = tmpDir(t);
  const f = path.join(d, 'p.csv');
  fs.writeFileSync(f, PERSEUS_FIXTURE);
  const s = new TimeSeriesStore(':memory:');
  const r = await importPerseus(s, f, { host: 1 });
  assert.equal(r.linesRead, 5); // stopped after host 1: the host-2 line was read, then the loop ended
  assert.equal(r.linesSelected, 4);
  const t1 = 1658149200_000;
  const t2 = t1 + MINUTE_MS;
  const q = (m: string) => s.query(m, t1, t2 + MINUTE_MS);
  assert.deepEqual(q('disk1_latency_mean_us'), [
    { ts: t1, min: 10, max: 10, mean: 10, last: 10, count: 4 },
    { ts: t2, min: 30, max: 30, mean: 30, last: 30, count: 3 },
  ]);
  assert.deepEqual(q('disk2_throughput_bps'), [{ ts: t1, min: 300, max: 300, mean: 300, last: 300, count: 4 }]);
  assert.deepEqual(q('disk_latency_mean_us'), [
    { ts: t1, min: 10, max: 50, mean: 30, last: 30, count: 2 },
    { ts: t2, min: 30, max: 30, mean: 30, last: 30, count: 1 },
  ]);
  assert.deepEqual(q('disk_latency_max_us'), [
    { ts: t1, min: 90, max: 90, mean: 90, last: 90, count: 2 },
    { ts: t2, min: 50, max: 50, mean: 50, last: 50, count: 1 },
  ]);
  assert.deepEqual(q('disk_throughput_bps'), [
    { ts: t1, min: 400, max: 400, mean: 400, last: 400, count: 2 },
    { ts: t2, min: 200, max: 200, mean: 200, last: 200, count: 1 },
  ]);
  // Default: the lowest drive (1) also under the live fail-slow names.
  assert.equal(r.mappedDisk, '1');
  assert.deepEqual(r.disks, ['1', '2']);
  assert.deepEqual(q('disk_read_latency_ms').map((p) => p.mean), [10 / 1000, 30 / 1000]);
  assert.deepEqual(q('disk_read_bytes_per_s').map((p) => p.mean), [100, 200]);
  assert.equal(r.rowsImported, 9 + 6 + 4);
  assert.equal(r.pointsWithData, 2);
  assert.equal(r.spanDays, 2 / 1440);
  fs.writeFileSync(path.join(d, 'wrong.csv'), 'a,b\n1,2\n');
  await assert.rejects(importPerseus(s, path.join(d, 'wrong.csv'), { host: 1 }), /missing column\(s\) cluster, host, disk/);
});

// Host 7's drives arrive out of order (10, 3, 2): "lowest" is numeric, so drive 2, not 10.
const PERSEUS_DRIVES = `cluster,host,disk,date,minute_ts,throughput_mean,latency_mean,latency_max,n_samples,n_missing,slow_drive
A,6,1,2022-07-18,1658149200,5,5,5,4,0,0
A,7,10,2022-07-18,1658149200,1000,1234.5,2000,4,0,0
A,7,3,2022-07-18,1658149200,31415926,87.3,99.9,4,0,0
A,7,2,2022-07-18,1658149200,2000,0.1,0.3,4,0,0
A,7,10,2022-07-18,1658149260,1100,1300.25,2100,4,0,0
A,7,3,2022-07-18,1658149260,,123.45,150,3,1,0
A,7,2,2022-07-18,1658149260,2100,0.7,0.9,2,2,0
A,7,3,2022-07-18,1658149320,27182818,,,1,3,0
A,7,2,2022-07-18,1658149320,,,,0,4,0
A,8,3,2022-07-18,1658149200,9,9,9,4,0,0
`;

test('Perseus disk=D: exactly that drive\'s minutes become disk_read_latency_ms (µs/1000) and disk_read_bytes_per_s', async (t) => {
  // The names the importer writes are the ones the fail-slow mode reads.
  assert.ok(FAIL_SLOW_SOURCES.some((x) => x.latency === 'disk_read_latency_ms' && x.throughput === 'disk_read_bytes_per_s'));
  const d = tmpDir(t);
  const f = path.join(d, 'drives.csv.gz');
  fs.writeFileSync(f, zlib.gzipSync(PERSEUS_DRIVES));
  const t1 = 1658149200_000;
  const s = new TimeSeriesStore(':memory:');
  const r = await importPerseus(s, f, { host: 7, disk: '3' });
  assert.equal(r.mappedDisk, '3');
  assert.deepEqual(r.disks, ['2', '3', '10']);
  assert.equal(r.linesSelected, 8);
  // Byte-exact against the file's cells: one line per minute of drive 3 that has the cell.
  const csv = s.export(0, t1 + DAY_MS).split('\n');
  const live = (m: string) => csv.filter((l) => l.split(',')[1] === m);
  const row = (ts: number, m: string, v: number, n: number) => `${ts},${m},${v},${v},${v},${v},${n}`;
  assert.deepEqual(live('disk_read_latency_ms'), [
    row(t1, 'disk_read_latency_ms', 87.3 / 1000, 4),
    row(t1 + MINUTE_MS, 'disk_read_latency_ms', 123.45 / 1000, 3),
  ]);
  assert.deepEqual(live('disk_read_bytes_per_s'), [
    row(t1, 'disk_read_bytes_per_s', 31415926, 4),
    row(t1 + 2 * MINUTE_MS, 'disk_read_bytes_per_s', 27182818, 1),
  ]);
  assert.deepEqual(s.query('disk_read_latency_ms', 0, t1 + DAY_MS), [
    { ts: t1, min: 0.0873, max: 0.0873, mean: 0.0873, last: 0.0873, count: 4 },
    { ts: t1 + MINUTE_MS, min: 0.12345, max: 0.12345, mean: 0.12345, last: 0.12345, count: 3 },
  ]);
  // The per-drive and host metrics are as before; host 6 and 8 leave no trace.
  assert.deepEqual(s.query('disk3_latency_mean_us', 0, t1 + DAY_MS).map((p) => p.mean), [87.3, 123.45]);
  assert.deepEqual(s.query('disk_latency_mean_us', t1, t1 + MINUTE_MS).map((p) => p.count), [3]);
  assert.equal(r.rowsImported, 18 + 7 + 4); // per drive (3 drives × 6), host aggregates, live names
  // A numeric disk id is the same drive; a window keeps only its minutes.
  const s2 = new TimeSeriesStore(':memory:');
  const r2 = await importPerseus(s2, f, { host: '7', disk: 3, fromMs: t1 + MINUTE_MS, perDisk: false, aggregate: false });
  assert.equal(r2.mappedDisk, '3');
  assert.deepEqual(r2.metrics, ['disk_read_bytes_per_s', 'disk_read_latency_ms']);
  assert.deepEqual(s2.query('disk_read_latency_ms', 0, t1 + DAY_MS).map((p) => p.mean), [0.12345]);
  assert.deepEqual(s2.query('disk_read_bytes_per_s', 0, t1 + DAY_MS).map((p) => p.mean), [27182818]);
  // Through a HistorySpec (backfill passes disk on).
  const s3 = new TimeSeriesStore(':memory:');
  const b = await backfill(s3, { format: 'perseus', file: f, host: 7, disk: '10' }, 1);
  assert.equal(b.mappedDisk, '10');
  assert.deepEqual(s3.query('disk_read_latency_ms', 0, t1 + DAY_MS).map((p) => p.mean), [1234.5 / 1000, 1300.25 / 1000]);
});

test('Perseus default maps the host\'s lowest-numbered drive and reports it', async (t) => {
  const d = tmpDir(t);
  const f = path.join(d, 'drives.csv');
  fs.writeFileSync(f, PERSEUS_DRIVES);
  const t1 = 1658149200_000;
  const s = new TimeSeriesStore(':memory:');
  const r = await importPerseus(s, f, { host: 7 });
  assert.equal(r.mappedDisk, '2');
  assert.deepEqual(r.disks, ['2', '3', '10']);
  assert.deepEqual(s.query('disk_read_latency_ms', 0, t1 + DAY_MS), [
    { ts: t1, min: 0.1 / 1000, max: 0.1 / 1000, mean: 0.1 / 1000, last: 0.1 / 1000, count: 4 },
    { ts: t1 + MINUTE_MS, min: 0.7 / 1000, max: 0.7 / 1000, mean: 0.7 / 1000, last: 0.7 / 1000, count: 2 },
  ]);
  assert.deepEqual(s.query('disk_read_bytes_per_s', 0, t1 + DAY_MS).map((p) => [p.ts, p.mean, p.count]), [[t1, 2000, 4], [t1 + MINUTE_MS, 2100, 2]]);
  // Host aggregates are still written, and are not what the live names hold.
  assert.deepEqual(s.query('disk_throughput_bps', t1, t1 + MINUTE_MS).map((p) => p.mean), [1000 + 31415926 + 2000]);
  // Even when a window leaves the lowest drive no rows, it stays the mapped one (backfill's
  // dry-run scan and its import agree): nothing of another drive is written under the live names.
  const s2 = new TimeSeriesStore(':memory:');
  const r2 = await importPerseus(s2, f, { host: 7, fromMs: t1 + 2 * MINUTE_MS });
  assert.equal(r2.mappedDisk, '2');
  assert.deepEqual(s2.query('disk_read_bytes_per_s', 0, t1 + DAY_MS), []);
  assert.deepEqual(s2.query('disk3_throughput_bps', 0, t1 + DAY_MS).map((p) => p.mean), [27182818]);
});

test('Perseus unknown disk: an error naming the host and its drives, and nothing imported', async (t) => {
  const d = tmpDir(t);
  const f = path.join(d, 'drives.csv');
  fs.writeFileSync(f, PERSEUS_DRIVES);
  const s = new TimeSeriesStore(':memory:');
  // batchRows 1: even rows read before the end of the host are not written.
  await assert.rejects(importPerseus(s, f, { host: 7, disk: '4', batchRows: 1 }), /host 7 has no disk 4; its disks are 2, 3, 10$/);
  assert.deepEqual(s.metrics(), []);
  await assert.rejects(importPerseus(s, f, { host: 8, disk: 2, cluster: 'A' }), /cluster A host 8 has no disk 2; its disks are 3$/);
  await assert.rejects(importPerseus(s, f, { host: 9, disk: 1 }), /host 9 is not in the file \(no rows\), so it has no disk 1/);
  await assert.rejects(importPerseus(s, f, { host: 7, disk: 'sda' }), /disk must be a drive id of digits, got "sda"/);
  await assert.rejects(backfill(s, { format: 'perseus', file: f, host: 7, disk: '13' }, 30), /host 7 has no disk 13/);
  assert.deepEqual(s.metrics(), []);
});

/** Median of the imported live latency of one Perseus drive. */
async function liveLatencyMedian(host: string, disk: string): Promise<{ median: number; n: number; mapped?: string }> {
  const s = new TimeSeriesStore(':memory:');
  const r = await importPerseus(s, PERSEUS, { host, disk, perDisk: false, aggregate: false });
  const v = s.query('disk_read_latency_ms', 0, Date.UTC(2030, 0, 1)).map((p) => p.mean).sort((a, b) => a - b);
  s.close();
  return { median: v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2, n: v.length, mapped: r.mappedDisk };
}

test('real Perseus data: a labelled slow drive imports slower than a healthy drive of its host', async (t) => {
  assert.ok(fs.existsSync(SLOW_DRIVES), `${SLOW_DRIVES} is missing`);
  const [hdr, first] = fs.readFileSync(SLOW_DRIVES, 'utf8').trim().split('\n').map((l) => l.split(','));
  const col = (name: string) => first![hdr!.indexOf(name)]!;
  const host = col('host');
  const slowDisk = col('disk');
  const healthyDisk = slowDisk === '1' ? '2' : '1';
  const t0 = performance.now();
  const [slow, healthy] = await Promise.all([liveLatencyMedian(host, slowDisk), liveLatencyMedian(host, healthyDisk)]);
  t.diagnostic(`host ${host}: slow disk ${slowDisk} median ${slow.median.toFixed(4)} ms (${slow.n} min), healthy disk ${healthyDisk} ${healthy.median.toFixed(4)} ms (${healthy.n} min), ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(slow.mapped, slowDisk);
  assert.equal(healthy.mapped, healthyDisk);
  assert.ok(slow.n > 1000 && healthy.n > 1000, `${slow.n} / ${healthy.n} minutes`);
  // Milliseconds now: Perseus latencies are tens of µs to a few ms.
  assert.ok(healthy.median > 0.001 && healthy.median < 10, `healthy median ${healthy.median}`);
  assert.ok(slow.median > healthy.median, `slow ${slow.median} ms ≤ healthy ${healthy.median} ms`);
});

test('Backblaze fixture: one drive → daily smart_* points and drive_failed', async (t) => {
  const d = tmpDir(t);
  const f = path.join(d, 'b.csv');
  fs.writeFileSync(f, `date,serial_number,model,failure,smart_1_raw,smart_5_raw,smart_9_raw,smart_194_raw,smart_197_raw,smart_240_raw
2013-04-10,AAA,M,0,5,0,100,25,0,
2013-04-10,BBB,M,0,1,2,3,4,5,
2013-04-11,BBB,M,1,1,8,27,30,6,
2013-04-12,CCC,M,0,1,2,3,4,5,
`);
  const s = new TimeSeriesStore(':memory:');
  const r = await importBackblaze(s, f, { serial: 'BBB' });
  assert.equal(r.linesSelected, 2);
  assert.equal(r.resolutionMs, DAY_MS);
  assert.equal(r.spanDays, 2);
  assert.deepEqual(r.metrics, [
    'drive_failed', 'smart_194_temperature_celsius', 'smart_197_current_pending_sectors', 'smart_1_raw_read_error_rate',
    'smart_5_reallocated_sectors', 'smart_9_power_on_hours',
  ]);
  const d0 = Date.UTC(2013, 3, 10);
  assert.deepEqual(s.query('smart_5_reallocated_sectors', 0, Date.UTC(2014, 0, 1)), [
    { ts: d0, min: 2, max: 2, mean: 2, last: 2, count: 1 },
    { ts: d0 + DAY_MS, min: 8, max: 8, mean: 8, last: 8, count: 1 },
  ]);
  assert.deepEqual(s.query('drive_failed', 0, Date.UTC(2014, 0, 1)).map((p) => p.last), [0, 1]);
});

/** Reads host 1 / disk 1 rows of the real Perseus file independently of the importer. */
async function perseusRows(host: string, disk: string): Promise<string[][]> {
  const rl = readline.createInterface({ input: fs.createReadStream(PERSEUS).pipe(zlib.createGunzip()), crlfDelay: Infinity });
  const out: string[][] = [];
  let seen = false;
  for await (const line of rl) {
    const f = line.split(',');
    if (f[1] === host) {
      seen = true;
      if (f[2] === disk) out.push(f);
    } else if (seen) break;
  }
  rl.close();
  return out;
}

test('real Perseus data: host 1 imported in place; drive 1 matches the file row for row', async (t) => {
  assert.ok(fs.existsSync(PERSEUS), `${PERSEUS} is missing`);
  const s = new TimeSeriesStore(':memory:');
  const t0 = performance.now();
  const r = await importPerseus(s, PERSEUS, { host: 1 });
  t.diagnostic(`host 1: ${r.linesSelected} lines → ${r.rowsImported} rows in ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(r.linesSelected, 30408);
  assert.equal(r.metrics.length, 12 * 3 + 3 + 2);
  assert.equal(r.mappedDisk, '1');
  const rows = await perseusRows('1', '1');
  assert.equal(rows.length, 2534);
  const from = Number(rows[0]![4]) * 1000;
  const to = Number(rows[rows.length - 1]![4]) * 1000 + MINUTE_MS;
  const lat = s.query('disk1_latency_mean_us', from, to);
  const tp = s.query('disk1_throughput_bps', from, to);
  const withLat = rows.filter((f) => f[6] !== '');
  assert.equal(lat.length, withLat.length);
  withLat.forEach((f, i) => {
    assert.equal(lat[i]!.ts, Number(f[4]) * 1000);
    assert.equal(lat[i]!.mean, Number(f[6]));
    assert.equal(lat[i]!.count, Math.max(1, Number(f[8])));
  });
  assert.deepEqual(tp.map((p) => p.last), rows.filter((f) => f[5] !== '').map((f) => Number(f[5])));
  // The host aggregate is the mean over the 12 drives in the first minute.
  const agg = s.query('disk_latency_mean_us', from, from + MINUTE_MS)[0]!;
  const perDrive = Array.from({ length: 12 }, (_, i) => s.query(`disk${i + 1}_latency_mean_us`, from, from + MINUTE_MS)[0]?.mean).filter((v) => v !== undefined);
  assert.equal(agg.count, perDrive.length);
  assert.ok(Math.abs(agg.mean - perDrive.reduce((a, b) => a + b, 0) / perDrive.length) < 1e-9);
  assert.equal(agg.max, Math.max(...perDrive));
});

test('backfill 30 days from Perseus reports the real, shorter coverage and invents nothing', async () => {
  const s = new TimeSeriesStore(':memory:');
  const now = Date.UTC(2026, 10, 24, 12, 0);
  const r = await backfill(s, { format: 'perseus', file: PERSEUS, host: 1, perDisk: false }, 30, now);
  assert.equal(r.complete, false);
  assert.equal(r.requestedDays, 30);
  // 2022-07-18 21:00 .. 2022-08-01 ~24:00 → just over 14 days, 3 hours a day.
  assert.ok(r.spanDays > 14 && r.spanDays < 15, `span ${r.spanDays}`);
  assert.equal(r.daysWithData, 14);
  assert.ok(r.fillRatio > 0.05 && r.fillRatio < 0.15, `fill ${r.fillRatio}`);
  assert.ok(Math.abs(r.shortfallDays - (30 - r.spanDays)) < 1e-9);
  assert.match(r.message, /asked for 30 days but the data covers only 14\.\d\d days span .* nothing synthesised/);
  assert.equal(r.lastTs, now);
  // Exactly the points that exist: one aggregate row per minute with data, no more.
  const pts = s.query('disk_latency_mean_us', now - 30 * DAY_MS, now + 1);
  assert.equal(pts.length, r.pointsWithData);
  assert.equal(pts[pts.length - 1]!.ts, now);

  // A window shorter than the data: complete, and only the last 2 days are imported.
  const s2 = new TimeSeriesStore(':memory:');
  const r2 = await backfill(s2, { format: 'perseus', file: PERSEUS, host: 1, perDisk: false }, 2);
  assert.equal(r2.complete, true);
  assert.equal(r2.shortfallDays, 0);
  // The window holds two evenings of data (21:00–24:00 each day).
  assert.ok(r2.spanDays > 1 && r2.spanDays <= 2 && r2.daysWithData === 2, JSON.stringify(r2));
  assert.equal(r2.shiftMs, 0);
});

test('real Backblaze data: a failed drive\'s daily SMART history', async () => {
  assert.ok(fs.existsSync(BACKBLAZE), `${BACKBLAZE} is missing`);
  const s = new TimeSeriesStore(':memory:');
  const r = await backfill(s, { format: 'backblaze', file: BACKBLAZE, serial: '5XW02LSS' }, 30);
  // The file has this drive from 2013-04-10 to its failure on 2013-04-19: 10 days.
  assert.equal(r.daysWithData, 10);
  assert.equal(r.complete, false);
  assert.equal(r.spanDays, 10);
  const failed = s.query('drive_failed', 0, Date.UTC(2014, 0, 1));
  assert.equal(failed.length, 10);
  assert.deepEqual(failed.map((p) => p.last), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.equal(failed[9]!.ts, Date.UTC(2013, 3, 19));
  const raw1 = s.query('smart_1_raw_read_error_rate', 0, Date.UTC(2014, 0, 1));
  assert.equal(raw1[0]!.last, 69258313);
  assert.equal(raw1[9]!.last, 206713241);
  assert.equal(s.query('smart_9_power_on_hours', 0, Date.UTC(2014, 0, 1))[9]!.last, 30109);
  // SMART 7 is empty in 2013: no points at all.
  assert.deepEqual(s.query('smart_7_seek_error_rate', 0, Date.UTC(2014, 0, 1)), []);
});
