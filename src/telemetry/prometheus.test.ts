import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { createServerMetrics, bridgeCollector, nodeMetricName } from './prometheus.ts';
import { parsePrometheusText, PromParseError } from './prom-parse.ts';
import { TelemetryCollector } from './collector.ts';

test('server metrics: names, labels, histogram, and valid exposition text', async () => {
  const reg = new Registry();
  const m = createServerMetrics(reg);
  let text = await reg.metrics();
  let fams = parsePrometheusText(text);
  // Before anything is set, the score and the segment count print no sample (not a fake 0).
  assert.deepEqual(fams.get('presage_failure_score')!.samples, []);
  assert.deepEqual(fams.get('presage_segments')!.samples, []);

  m.observeIo('read', 0.0003, 4096);
  m.observeIo('read', 0.002, 8192);
  m.observeIo('write', 1.5, 4096);
  m.observeError('read', 'checksum');
  m.observeError('write', 'io');
  m.segments.set(42);
  m.failureScore.set(17.5);
  assert.throws(() => m.observeIo('read', -1, 0), /must be >= 0/);
  text = await reg.metrics();
  fams = parsePrometheusText(text);
  const val = (fam: string, name: string, labels: Record<string, string> = {}) =>
    fams.get(fam)!.samples.find((s) => s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels))?.value;
  assert.equal(fams.get('presage_io_requests_total')!.type, 'counter');
  assert.equal(val('presage_io_requests_total', 'presage_io_requests_total', { op: 'read' }), 2);
  assert.equal(val('presage_io_requests_total', 'presage_io_requests_total', { op: 'write' }), 1);
  assert.equal(val('presage_io_bytes_total', 'presage_io_bytes_total', { op: 'read' }), 12288);
  assert.equal(val('presage_io_errors_total', 'presage_io_errors_total', { op: 'read', kind: 'checksum' }), 1);
  assert.equal(val('presage_checksum_failures_total', 'presage_checksum_failures_total'), 1);
  assert.equal(val('presage_segments', 'presage_segments'), 42);
  assert.equal(val('presage_failure_score', 'presage_failure_score'), 17.5);
  const h = fams.get('presage_io_latency_seconds')!;
  assert.equal(h.type, 'histogram');
  assert.equal(val('presage_io_latency_seconds', 'presage_io_latency_seconds_bucket', { le: '0.0005', op: 'read' }), 1);
  assert.equal(val('presage_io_latency_seconds', 'presage_io_latency_seconds_bucket', { le: '0.0025', op: 'read' }), 2);
  assert.equal(val('presage_io_latency_seconds', 'presage_io_latency_seconds_count', { op: 'write' }), 1);
  assert.equal(val('presage_io_latency_seconds', 'presage_io_latency_seconds_sum', { op: 'write' }), 1.5);
  m.failureScore.clear();
  assert.deepEqual(parsePrometheusText(await reg.metrics()).get('presage_failure_score')!.samples, []);
});

test('bridge: the latest collector sample as presage_node_<metric> gauges; absent metrics print nothing', async () => {
  const reg = new Registry();
  createServerMetrics(reg);
  let values: Record<string, number> = { cpu_busy_ratio: 0.25, disk_read_latency_ms: 3.5, custom_thing: 7 };
  const c = new TelemetryCollector({ sampler: { sample: async () => ({ ts: 0, values }) } });
  const detach = bridgeCollector(reg, c);
  await c.sampleOnce();
  let fams = parsePrometheusText(await reg.metrics());
  assert.equal(fams.get('presage_node_cpu_busy_ratio')!.samples[0]!.value, 0.25);
  assert.equal(fams.get('presage_node_disk_read_latency_ms')!.samples[0]!.value, 3.5);
  assert.match(fams.get('presage_node_disk_read_latency_ms')!.help!, /Unit: ms\. Source: \/proc\/diskstats/);
  assert.equal(fams.get('presage_node_custom_thing')!.samples[0]!.value, 7);
  assert.equal(fams.get('presage_node_telemetry_source_errors')!.samples[0]!.value, 0);
  // An interval without reads: the latency disappears instead of going stale or to 0.
  values = { cpu_busy_ratio: 0.5 };
  await c.sampleOnce();
  fams = parsePrometheusText(await reg.metrics());
  assert.equal(fams.get('presage_node_cpu_busy_ratio')!.samples[0]!.value, 0.5);
  assert.deepEqual(fams.get('presage_node_disk_read_latency_ms')!.samples, []);
  detach();
  fams = parsePrometheusText(await reg.metrics());
  assert.equal(fams.has('presage_node_cpu_busy_ratio'), false);
  assert.equal(nodeMetricName('a.b-c'), 'presage_node_a_b_c');
});

test('bridge on the real OS collector: every line of /metrics parses strictly', async () => {
  const reg = new Registry();
  createServerMetrics(reg).observeIo('read', 0.001, 4096);
  const c = new TelemetryCollector({});
  bridgeCollector(reg, c);
  await c.sampleOnce();
  await new Promise((r) => setTimeout(r, 100));
  await c.sampleOnce();
  const text = await reg.metrics();
  const fams = parsePrometheusText(text);
  assert.ok(fams.get('presage_node_mem_total_bytes')!.samples[0]!.value > 0);
  const cpu = fams.get('presage_node_cpu_busy_ratio')!.samples[0]!.value;
  assert.ok(cpu >= 0 && cpu <= 1);
  assert.ok(fams.size > 40, `${fams.size} families`);
});

test('the strict parser rejects malformed exposition text', () => {
  const ok = '# HELP x_total Things.\n# TYPE x_total counter\nx_total{a="b\\"c\\\\d\\n"} 1.5e3 1700000000000\n# just a comment\n';
  const f = parsePrometheusText(ok);
  assert.deepEqual(f.get('x_total')!.samples, [{ name: 'x_total', labels: { a: 'b"c\\d\n' }, value: 1500, timestampMs: 1700000000000 }]);
  const bad: [string, RegExp][] = [
    ['# TYPE x counter\nx 1 2 3\n', /trailing text/],
    ['# TYPE x counter\nx abc\n', /invalid value/],
    ['x 1\n', /no preceding TYPE/],
    ['# TYPE 1x counter\n', /invalid metric name/],
    ['# TYPE x counter\nx{a="1",a="2"} 1\n', /duplicate label/],
    ['# TYPE x counter\nx{a="1} 1\n', /unterminated/],
    ['# TYPE x counter\nx{a="\\q"} 1\n', /invalid escape/],
    ['# TYPE x counter\nx{1a="1"} 1\n', /invalid label name/],
    ['# TYPE x widget\n', /invalid TYPE/],
    ['# TYPE x gauge\n# TYPE x gauge\n', /second TYPE/],
    ['# TYPE x gauge\n# TYPE y gauge\nx 1\n', /not contiguous/],
    ['# TYPE x gauge\nx\n', /expected a space and a value/],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n', /not cumulative/],
    ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\n', /no le="\+Inf"/],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 2\n', /_count 2 != \+Inf bucket 1/],
  ];
  for (const [text, re] of bad) assert.throws(() => parsePrometheusText(text), re, JSON.stringify(text));
  assert.throws(() => parsePrometheusText('# TYPE x counter\nx 1 2 3\n'), (e) => e instanceof PromParseError && e.line === 2);
});
