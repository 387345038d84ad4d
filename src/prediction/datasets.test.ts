import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import {
  splitCsvLine,
  readBackblaze,
  loadBackblazeDrives,
  readPerseus,
  loadPerseusDrives,
  readPerseusSlowDrives,
  loadAlibabaTickets,
  dayNumber,
  BACKBLAZE_SMART,
} from './datasets.ts';

const DATA = new URL('../../../shared/data/', import.meta.url).pathname;

test('CSV line splitting with quotes', () => {
  assert.deepEqual(splitCsvLine('a,,b'), ['a', '', 'b']);
  assert.deepEqual(splitCsvLine('"x, y",2,"say ""hi"""'), ['x, y', '2', 'say "hi"']);
});

test('Backblaze 2013: first rows parsed exactly', async () => {
  const rows = [];
  for await (const r of readBackblaze(join(DATA, 'backblaze_2013_dev.csv.gz'), { limit: 3 })) rows.push(r);
  assert.equal(rows.length, 3);
  // 2013-04-26,13H32WEAS,TOSHIBA DT01ACA300,0,0,0,,8,,,25,0,,,,,
  assert.equal(rows[0].date, '2013-04-26');
  assert.equal(rows[0].day, dayNumber('2013-04-26'));
  assert.equal(rows[0].serial, '13H32WEAS');
  assert.equal(rows[0].model, 'TOSHIBA DT01ACA300');
  assert.equal(rows[0].failure, 0);
  const expect = [0, 0, NaN, 8, NaN, NaN, 25, 0, NaN, NaN, NaN, NaN, NaN];
  assert.deepEqual(Array.from(rows[0].smart), expect);
  assert.equal(rows[2].smart[BACKBLAZE_SMART.indexOf(9)], 56);
  assert.equal(rows[1].smart[BACKBLAZE_SMART.indexOf(194)], 23);
});

test('Backblaze 2019-2020 failed-only: a whole drive history', async () => {
  const drives = await loadBackblazeDrives(join(DATA, 'backblaze_2019_2020_st4000dm000_failed_only.csv.gz'), { limit: 61 });
  const d = drives.find((x) => x.serial === 'S300VLG3');
  assert.ok(d, 'first drive present');
  // 2020-03-15,S300VLG3,ST4000DM000,0,,,528313814238,40867,,,,,,,40681,62130717008,133746502377
  assert.equal(d.days[0], dayNumber('2020-03-15'));
  assert.equal(d.smart[BACKBLAZE_SMART.indexOf(7)][0], 528313814238);
  assert.equal(d.smart[BACKBLAZE_SMART.indexOf(9)][0], 40867);
  assert.equal(d.smart[BACKBLAZE_SMART.indexOf(242)][0], 133746502377);
  assert.ok(Number.isNaN(d.smart[BACKBLAZE_SMART.indexOf(5)][0]));
  for (let i = 1; i < d.days.length; i++) assert.ok(d.days[i] > d.days[i - 1]);
});

test('Perseus: first rows, missing cells as NaN, slow-drive labels', async () => {
  const rows = [];
  for await (const r of readPerseus(join(DATA, 'perseus_A_dev_1min.csv.gz'), { limit: 2 })) rows.push(r);
  // A,1,1,2022-07-18,1658149200,20087742,85.04,102.91,3,0,0
  assert.deepEqual(rows[0], {
    cluster: 'A', host: 1, disk: 1, date: '2022-07-18', ts: 1658149200, throughput: 20087742,
    latencyMean: 85.04, latencyMax: 102.91, nSamples: 3, nMissing: 0, slow: 0,
  });
  assert.equal(rows[1].ts, 1658149260);
  const drives = await loadPerseusDrives(join(DATA, 'perseus_A_dev_1min.csv.gz'), { limit: 5000 });
  assert.equal(drives[0].host, 1);
  assert.equal(drives[0].disk, 1);
  assert.equal(drives[0].latencyMean[0], 85.04);
  const labels = await readPerseusSlowDrives(join(DATA, 'perseus_A_slow_drives.csv'));
  assert.deepEqual(labels, [
    { cluster: 'A', host: 22, workload: 'e-commerce', disk: 11 },
    { cluster: 'A', host: 25, workload: 'e-commerce', disk: 8 },
  ]);
});

test('Alibaba SSD tickets: ids, time, SMART map', async () => {
  const t = await loadAlibabaTickets(join(DATA, 'alibaba_ssd_failures_2018.csv.gz'), { limit: 2 });
  // A6,2018-01-02 03:09:38,1,none,,,…,21946,184931,22520,499
  assert.deepEqual(t[0], {
    model: 'A6', failureTime: Date.UTC(2018, 0, 2, 3, 9, 38), app: 'none',
    diskId: 21946, nodeId: 184931, rackId: 22520, roomId: 499, smart: {},
  });
  assert.equal(t[1].app, 'RM');
});

test('bad files give clear errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'presage-ds-'));
  try {
    const p = join(dir, 'x.csv.gz');
    writeFileSync(p, gzipSync('date,serial_number\n2013-01-01,A\n'));
    await assert.rejects(async () => {
      for await (const _ of readBackblaze(p)) void _;
    }, /lacks column\(s\) model, failure/);
    await assert.rejects(() => loadBackblazeDrives(join(dir, 'nope.csv.gz')), /dataset not found/);
    const q = join(dir, 'y.csv.gz');
    writeFileSync(q, Buffer.from('not gzip at all'));
    await assert.rejects(() => loadBackblazeDrives(q), /header|gzip|incorrect/i);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
