/**
 * Cost of the Failure Score engine (docs/prediction-cost.md):
 *  1. retraining time for 100 servers × 30 days of one-minute telemetry (feature snapshots
 *     every hour for every mode + GBDT training + validation), and
 *  2. scoring time per server per tick, from in-memory series and from the real
 *     per-minute SQLite store (TimeSeriesStore) holding 2 days of one server's history.
 *
 * The telemetry here is a SYNTHETIC TIMING FIXTURE (src/prediction/synthetic-telemetry.ts
 * and the on-demand generator below): it has the shape of the real data (metric names,
 * one point per minute, 30 days, failures to learn from) so the timings are honest, and
 * it says nothing about prediction quality. Quality is in docs/eval-*.md and the bundle.
 *
 *   npx tsx bench/prediction-cost.ts [--servers 100] [--days 30]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelManager, type TrainingHistory } from '../src/prediction/lifecycle.ts';
import { loadDefaultBundle } from '../src/prediction/model-bundle.ts';
import { FailureScorer } from '../src/prediction/scorer.ts';
import { DAY_MS, MINUTE_MS, type QueryFn, type QueryPoint } from '../src/prediction/online-features.ts';
import { syntheticHistory } from '../src/prediction/synthetic-telemetry.ts';
import { TimeSeriesStore } from '../src/telemetry/tsdb.ts';
import type { FailureMode } from '../src/api/types.ts';
import { machineSummary } from './machine-info.ts';
import { hashNoise as noise } from '../src/common/prng.ts';

const arg = (n: string, d: number) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? Number(process.argv[i + 1]) : d;
};
const SERVERS = arg('servers', 100);
const DAYS = arg('days', 30);
const now = Date.UTC(2026, 2, 1);


/** On-demand one-minute telemetry of one server (SMART every 10 minutes), with a degradation before its failure. */
function serverQuery(s: number, from: number, fail?: { mode: FailureMode; t: number }): QueryFn {
  const metricId = new Map<string, number>();
  const base: Record<string, number> = {
    io_read_latency_p50_ms: 1, io_read_bytes_per_s: 5e7, io_read_iops: 800, io_write_iops: 500, io_errors_per_s: 0,
    net_tcp_retrans_ratio: 3e-4, net_rx_packets_per_s: 2e4, net_tx_packets_per_s: 2e4, process_heap_used_bytes: 6e7, process_rss_bytes: 1.5e8, mem_used_ratio: 0.45,
    io_read_latency_p99_ms: 4, disk_read_latency_ms: 0.8,
    smart_1_raw_read_error_rate: 1e6, smart_5_reallocated_sectors: 0, smart_9_power_on_hours: 2e4, smart_194_temperature_celsius: 30, smart_197_current_pending_sectors: 0,
  };
  return (metric, a, b) => {
    const v0 = base[metric];
    if (v0 === undefined) return [];
    if (!metricId.has(metric)) metricId.set(metric, metricId.size);
    const mid = metricId.get(metric)!;
    const step = metric.startsWith('smart_') ? 10 * MINUTE_MS : MINUTE_MS;
    const out: QueryPoint[] = [];
    const end = Math.min(b, now, fail?.t ?? Infinity);
    for (let t = Math.max(Math.ceil(a / step) * step, from); t < end; t += step) {
      const r = noise(s * 64 + mid, t / MINUTE_MS);
      let v = v0 * (1 + 0.1 * (r - 0.5));
      if (metric === 'smart_9_power_on_hours') v = v0 + (t - from) / 3_600_000;
      if (fail) {
        const lead = fail.t - t;
        if (fail.mode === 'fail-slow' && lead < 6 * 3_600_000 && metric === 'io_read_latency_p50_ms') v *= 10;
        if (fail.mode === 'network' && lead < 3 * 3_600_000 && metric === 'net_tcp_retrans_ratio') v = 0.03;
        if (fail.mode === 'software' && lead < 12 * 3_600_000 && metric.startsWith('process_')) v *= 1 + (12 * 3_600_000 - lead) / 3_600_000 * 0.15;
        if (fail.mode === 'disk' && lead < 7 * DAY_MS && (metric === 'smart_5_reallocated_sectors' || metric === 'smart_197_current_pending_sectors')) v = Math.round((7 * DAY_MS - lead) / DAY_MS) * 8;
      }
      out.push({ ts: t, mean: v, min: v, max: v, last: v });
    }
    return out;
  };
}

async function main(): Promise<void> {
  const lines: string[] = [];
  const log = (s: string) => {
    console.log(s);
    lines.push(s);
  };
  log(`machine: ${machineSummary()}; the benchmark uses 1 core`);
  const bundle = await loadDefaultBundle();

  // ---- scoring
  const scorer = new FailureScorer(bundle);
  const hist = syntheticHistory({ now, minutes: 2 * 1440, smartDays: 21, seed: 1 });
  const mem: QueryFn = (m, a, b) => {
    const s = hist[m];
    if (!s) return [];
    const out: QueryPoint[] = [];
    for (let i = 0; i < s.t.length; i++) if (s.t[i] >= a && s.t[i] < b) out.push({ ts: s.t[i], mean: s.v[i], min: s.v[i], max: s.max?.[i] ?? s.v[i], last: s.v[i] });
    return out;
  };
  const dir = await mkdtemp(join(tmpdir(), 'presage-cost-'));
  const store = new TimeSeriesStore(join(dir, 'tsdb.sqlite'), { retentionDays: 35, now: () => now });
  const rows = [];
  for (const [metric, s] of Object.entries(hist)) for (let i = 0; i < s.t.length; i++) rows.push({ metric, ts: s.t[i], min: s.v[i], max: s.max?.[i] ?? s.v[i], mean: s.v[i], last: s.v[i], count: 1 });
  store.importRows(rows);
  const sq: QueryFn = (m, a, b) => store.query(m, a, b);
  for (const [label, q] of [['in-memory series', mem], ['TimeSeriesStore (SQLite), 2 days of minutes + 21 days of hourly SMART', sq]] as const) {
    for (const forecast of [true, false]) {
      scorer.score({ serverId: 'w', query: q, now, forecast });
      const n = 50;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) scorer.score({ serverId: 'w', query: q, now: now - i * MINUTE_MS, forecast });
      log(`score, ${label}, forecasts ${forecast ? 'on' : 'off'}: ${((performance.now() - t0) / n).toFixed(2)} ms per server per tick`);
    }
  }
  store.close();

  // ---- retraining
  const from = now - DAYS * DAY_MS;
  const modes: FailureMode[] = ['disk', 'fail-slow', 'network', 'software'];
  const history: TrainingHistory = { from, servers: [] };
  for (let s = 0; s < SERVERS; s++) {
    // 40 % of servers fail once, spread over the period, the modes in turn.
    const fail = s % 5 < 2 ? { mode: modes[s % 4], t: from + (1 + ((s * 7919) % 1000) / 1000 * (DAYS - 1)) * DAY_MS } : undefined;
    history.servers.push({ id: `s${s}`, query: serverQuery(s, from, fail), failures: fail ? [fail] : [] });
  }
  const mgr = await ModelManager.open(dir);
  const t0 = performance.now();
  const r = await mgr.retrain({ history, now, tickMs: 3_600_000 });
  const secs = (performance.now() - t0) / 1000;
  log(`retrain: ${SERVERS} servers × ${DAYS} days of one-minute telemetry, hourly snapshots of every mode: ${secs.toFixed(1)} s (replaced: ${r.replaced}; ${r.reason})`);
  for (const [m, c] of Object.entries(r.comparison)) log(`  ${m}: ${c.positives} positive / ${c.negatives} negative validation snapshots${c.evaluated ? '' : ` (${c.reason})`}`);
  log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
  await rm(dir, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
