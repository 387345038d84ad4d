import { test } from 'node:test';
import assert from 'node:assert/strict';
import { METRICS, metricInfo, catalogueMarkdown } from './metrics.ts';
import { ATA_ATTRIBUTES, NVME_FIELDS } from './smart.ts';

test('catalogue: unique snake_case names, every entry has unit, source, description', () => {
  const names = METRICS.map((m) => m.name);
  assert.equal(new Set(names).size, names.length, 'no duplicates');
  for (const m of METRICS) {
    assert.match(m.name.replace('{N}', '7'), /^[a-z][a-z0-9_]*$/, m.name);
    assert.ok(m.unit && m.source && m.description.length > 5, m.name);
  }
  assert.ok(METRICS.length >= 80);
});

test('metricInfo resolves exact names and per-drive patterns', () => {
  assert.equal(metricInfo('disk_write_iops')?.unit, 'ops/s');
  assert.equal(metricInfo('disk12_latency_mean_us')?.name, 'disk{N}_latency_mean_us');
  assert.equal(metricInfo('diskX_latency_mean_us'), undefined);
  assert.equal(metricInfo('no_such_metric'), undefined);
});

test('every SMART name the parser can produce is catalogued', () => {
  for (const n of [...Object.values(ATA_ATTRIBUTES), ...Object.values(NVME_FIELDS)]) assert.ok(metricInfo(n), n);
});

test('catalogueMarkdown prints one table row per metric', () => {
  const md = catalogueMarkdown().split('\n');
  assert.equal(md.length, METRICS.length + 2);
  assert.equal(md[0], '| metric | unit | kind | source | description |');
  assert.ok(md.includes('| `cpu_busy_ratio` | ratio | gauge | /proc/stat | Fraction of CPU time (all CPUs) not idle and not waiting for I/O, 0..1. |'));
});
