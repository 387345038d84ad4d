import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BACKBLAZE_SMART } from './datasets.ts';
import { SMART_METRICS, arrayQuery, dailySmartHistory, DAY_MS } from './online-features.ts';
import { parseSmartctlJson } from '../telemetry/smart.ts';
import { metricInfo } from '../telemetry/metrics.ts';

test('every SMART attribute the disk model reads has a live metric in the telemetry catalogue', () => {
  for (const id of BACKBLAZE_SMART) {
    const name = SMART_METRICS[id];
    assert.ok(name, `SMART ${id} has no metric name`);
    assert.ok(metricInfo(name), `${name} is not in the metric catalogue`);
  }
});

test('the disk features read SMART values under the names smartctl parsing writes them', () => {
  const json = {
    device: { name: '/dev/sda', protocol: 'ATA' },
    smartctl: { exit_status: 0 },
    ata_smart_attributes: { table: [
      { id: 5, name: 'Reallocated_Sector_Ct', raw: { value: 12, string: '12' } },
      { id: 197, name: 'Current_Pending_Sector', raw: { value: 3, string: '3' } },
    ] },
  };
  const parsed = parseSmartctlJson(json, '/dev/sda');
  assert.equal(parsed.available, true, JSON.stringify(parsed));
  if (!parsed.available) return;
  const now = 30 * DAY_MS;
  const series: Record<string, { t: number[]; v: number[] }> = {};
  for (const [name, v] of Object.entries(parsed.values)) series[name] = { t: [now - 60_000], v: [v] };
  const { history } = dailySmartHistory(arrayQuery(series), now, 3);
  const k5 = BACKBLAZE_SMART.indexOf(5);
  const k197 = BACKBLAZE_SMART.indexOf(197);
  const k9 = BACKBLAZE_SMART.indexOf(9);
  assert.equal(history.days.length, 1);
  assert.equal(history.smart[k5]![0], 12);
  assert.equal(history.smart[k197]![0], 3);
  assert.ok(Number.isNaN(history.smart[k9]![0]));
});
