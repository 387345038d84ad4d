/**
 * A server's feature vector at "now", computed from its own telemetry history with the
 * same definitions the models were trained with:
 *
 * - disk: daily SMART values (the last value of each UTC day) fed through
 *   `driveFeatures` — the very function the Backblaze training rows come from;
 * - fail-slow: `failSlowWindowFeatures` over the last 60 one-minute points of the
 *   server's I/O latency and throughput, against `peerReference` of the other units of
 *   its peer group over the same window — the same two functions the Perseus training
 *   windows use with the other drives of the host;
 * - network, software: the heuristic models' inputs (docs/prediction.md).
 *
 * A missing input is NaN (the trees route NaN along learned default branches; the rule
 * models treat NaN as "no evidence"); nothing is filled in or invented.
 */
import type { FailureMode } from './failure-report.ts';
import { BACKBLAZE_SMART, type DriveHistory } from './datasets.ts';
import { BACKBLAZE_FEATURE_NAMES, driveFeatures } from './backblaze-features.ts';
import { MAD_TO_SIGMA, linearSlope, median, pearson } from './features.ts';
import { ATA_ATTRIBUTES } from '../telemetry/smart.ts';

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/** One roll-up point as TimeSeriesStore.query returns it (`ts`) or as the brief names it (`t`). */
export interface QueryPoint {
  ts?: number;
  t?: number;
  mean: number;
  max: number;
  min: number;
  last: number;
}

/**
 * Telemetry access: the stored per-minute points of `metric` with fromMs ≤ t < toMs, oldest
 * first. The feature code never asks a store to merge minutes into buckets (a store's buckets
 * are aligned to the epoch, so their meaning would depend on the time of day); it re-buckets
 * minutes itself, so any QueryFn that returns the stored minutes — the real store, the retrain
 * history, the test fixtures — gives the same features.
 */
export type QueryFn = ((metric: string, fromMs: number, toMs: number) => QueryPoint[]) & {
  /** Optional fast path: exactly the last point query(metric, fromMs, toMs) would return. */
  last?: (metric: string, fromMs: number, toMs: number) => QueryPoint | undefined;
};

/** The latest point of `metric` in [fromMs, toMs) (the fast path where the source has one). */
export function lastPoint(query: QueryFn, metric: string, fromMs: number, toMs: number): QueryPoint | undefined {
  if (query.last) return query.last(metric, fromMs, toMs);
  const pts = query(metric, fromMs, toMs);
  return pts[pts.length - 1];
}

/** A QueryFn over a store with TimeSeriesStore's query/last (the live path servers score on). */
export function storeQuery(store: { query(m: string, f: number, t: number): QueryPoint[]; last(m: string, f: number, t: number): QueryPoint | undefined }): QueryFn {
  const q = ((m: string, f: number, t: number) => store.query(m, f, t)) as QueryFn;
  q.last = (m, f, t) => store.last(m, f, t);
  return q;
}

/** Fleet reference for one metric: the median and MAD (raw, unscaled) over peer servers. */
export interface PeerStat {
  median: number;
  mad: number;
}
export type PeerStats = Record<string, PeerStat>;

export interface ModeFeatures {
  names: string[];
  values: Float64Array;
  /** Number of non-NaN values. */
  present: number;
  /** Which telemetry the values came from (for notes and debugging). */
  sources: string[];
}

export type OnlineFeatures = Record<FailureMode, ModeFeatures>;

const pointTime = (p: QueryPoint): number => (p.ts ?? p.t ?? NaN);

// ------------------------------------------------------------------ disk

/**
 * Backblaze SMART id → the live metric carrying it. The telemetry side names the metrics
 * (one table, the one smartctl parsing and history import write under); this alias is what
 * the disk features and the retrain scheduler read.
 */
export const SMART_METRICS: Readonly<Record<number, string>> = ATA_ATTRIBUTES;

/** Days of SMART history read for the disk features (7-day deltas/slopes + EWMA warm-up). */
export const DISK_HISTORY_DAYS = 21;

/**
 * The SMART history of the last `days` days as a DriveHistory: day 0 is the 24 h ending at
 * `now`, day −1 the 24 h before it, …, each with its last value (a daily snapshot taken at
 * the time of day of `now`, so a 1-day delta spans 24 h as Backblaze's daily rows do). Days
 * without any SMART value are left out, as Backblaze has no row for them.
 *
 * Each snapshot is the latest stored minute of its 24 h, never a store's day bucket: buckets
 * are aligned to UTC days, so "the last value of the day bucket" made the 1-day change at
 * 01:00 UTC one hour of change (the train/serve skew of issue #14). With a store that has
 * `last` it is one index seek per attribute and day.
 */
export function dailySmartHistory(query: QueryFn, now: number, days = DISK_HISTORY_DAYS): { history: DriveHistory; sources: string[] } {
  const byDay = new Map<number, Float64Array>();
  const sources: string[] = [];
  BACKBLAZE_SMART.forEach((id, k) => {
    const metric = SMART_METRICS[id];
    let any = false;
    for (let d = 0; d > -days; d--) {
      // Day d is (now + (d − 1)·24 h, now + d·24 h]; its snapshot is its latest value.
      const p = lastPoint(query, metric, now + (d - 1) * DAY_MS + 1, now + d * DAY_MS + 1);
      if (!p || !Number.isFinite(p.last)) continue;
      let row = byDay.get(d);
      if (!row) {
        row = new Float64Array(BACKBLAZE_SMART.length).fill(NaN);
        byDay.set(d, row);
      }
      row[k] = p.last;
      any = true;
    }
    if (any) sources.push(metric);
  });
  const dayList = [...byDay.keys()].sort((a, b) => a - b);
  const history: DriveHistory = {
    serial: 'live',
    model: 'live',
    days: Int32Array.from(dayList),
    smart: BACKBLAZE_SMART.map((_, k) => Float64Array.from(dayList, (d) => byDay.get(d)![k])),
    failed: false,
    failDay: NaN,
  };
  return { history, sources };
}

/** Disk-mode features at `now`: the Backblaze feature row of today (all NaN when today has no SMART). */
export function diskFeatures(query: QueryFn, now: number, names: string[] = BACKBLAZE_FEATURE_NAMES): ModeFeatures {
  const { history, sources } = dailySmartHistory(query, now);
  const values = new Float64Array(names.length).fill(NaN);
  const n = history.days.length;
  if (n > 0 && history.days[n - 1] === 0) {
    const f = driveFeatures(history);
    const M = BACKBLAZE_FEATURE_NAMES.length;
    names.forEach((name, j) => {
      const c = BACKBLAZE_FEATURE_NAMES.indexOf(name);
      if (c >= 0) values[j] = f.data[(n - 1) * M + c];
    });
  }
  return finish(names, values, sources);
}

// ------------------------------------------------------------------ fail-slow

/**
 * Perseus's max/mean latency ratio is left out on purpose: live, the per-minute max of a
 * p50 series sampled every few seconds is not the max of four 15-second means, so the same
 * name would mean a different number.
 */
export const FAIL_SLOW_FEATURE_NAMES = [
  'fs_lat_dev_median',
  'fs_lat_dev_frac3',
  'fs_lat_ratio_median',
  'fs_tp_dev_median',
  'fs_lat_tp_corr',
] as const;

/** Minutes in a fail-slow window (the training windows cut Perseus evenings the same way). */
export const FAIL_SLOW_WINDOW_MIN = 60;
/** Fewer valid minutes than this in the window (half of it) → the features are NaN: a few minutes of data are not an hour's evidence. */
export const FAIL_SLOW_MIN_POINTS = 30;

/** Reference for each minute (a number = the same for every minute). */
export interface SlowReference {
  latMedian: ArrayLike<number> | number;
  latMad: ArrayLike<number> | number;
  tpMedian: ArrayLike<number> | number;
  tpMad: ArrayLike<number> | number;
}

const at = (v: ArrayLike<number> | number, i: number): number => (typeof v === 'number' ? v : v[i]);

/** Robust z of x against (median, MAD), with the scale floored at `floor` (relative to the median). */
function robustZ(x: number, med: number, madRaw: number, relFloor: number): number {
  if (Number.isNaN(x) || Number.isNaN(med)) return NaN;
  const scale = Math.max(MAD_TO_SIGMA * (Number.isNaN(madRaw) ? 0 : madRaw), Math.abs(med) * relFloor, 1e-9);
  return (x - med) / scale;
}

/**
 * The fail-slow window features (Perseus, FAST '23: latency against peers and against
 * its own throughput). Shared by training (Perseus drives, host peers each minute) and
 * scoring (a server against its fleet or its own past), so both compute the same thing.
 * Units cancel: every feature is a z-score, a ratio or a correlation.
 */
export function failSlowWindowFeatures(lat: ArrayLike<number>, tp: ArrayLike<number>, ref: SlowReference): Float64Array {
  const out = new Float64Array(FAIL_SLOW_FEATURE_NAMES.length).fill(NaN);
  const n = lat.length;
  const dev: number[] = [];
  const ratio: number[] = [];
  const tpDev: number[] = [];
  for (let i = 0; i < n; i++) {
    const l = lat[i];
    if (!Number.isFinite(l)) continue;
    const med = at(ref.latMedian, i);
    // A 5 % floor on the scale: identical peers must not turn a 1 % difference into 100 MADs.
    dev.push(robustZ(l, med, at(ref.latMad, i), 0.05));
    if (med > 0) ratio.push(l / med);
    const t = tp[i];
    if (Number.isFinite(t)) tpDev.push(robustZ(t, at(ref.tpMedian, i), at(ref.tpMad, i), 0.05));
  }
  const valid = dev.filter((v) => !Number.isNaN(v));
  if (valid.length < FAIL_SLOW_MIN_POINTS) return out;
  out[0] = median(valid);
  out[1] = valid.filter((v) => v > 3).length / valid.length;
  out[2] = ratio.length ? median(ratio) : NaN;
  out[3] = tpDev.length ? median(tpDev) : NaN;
  out[4] = pearson(lat, tp);
  return out;
}

/** Live latency/throughput pairs for fail-slow, in order of preference (the first with data is used). */
export const FAIL_SLOW_SOURCES: { latency: string; throughput: string }[] = [
  { latency: 'io_read_latency_p50_ms', throughput: 'io_read_bytes_per_s' },
  { latency: 'io_write_latency_p50_ms', throughput: 'io_write_bytes_per_s' },
  { latency: 'disk_read_latency_ms', throughput: 'disk_read_bytes_per_s' },
  { latency: 'disk_write_latency_ms', throughput: 'disk_write_bytes_per_s' },
];

/** Minute-aligned values of one metric over [from, from + n minutes) (stored minutes, no bucketing asked of the store). */
export function minuteSeries(query: QueryFn, metric: string, from: number, n: number, field: 'mean' | 'max' | 'last' = 'mean'): Float64Array {
  const out = new Float64Array(n).fill(NaN);
  for (const p of query(metric, from, from + n * MINUTE_MS)) {
    const i = Math.floor((pointTime(p) - from) / MINUTE_MS);
    if (i >= 0 && i < n && Number.isFinite(p[field])) out[i] = p[field];
  }
  return out;
}

/** Start of the fail-slow window ending with the minute that holds `now` (FAIL_SLOW_WINDOW_MIN minutes). */
export function failSlowWindowStart(now: number): number {
  return Math.floor(now / MINUTE_MS) * MINUTE_MS - (FAIL_SLOW_WINDOW_MIN - 1) * MINUTE_MS;
}

/** A peer reference needs at least this many other units with data in the window. */
export const MIN_PEERS = 3;

/**
 * THE fail-slow reference, used identically by training (Perseus: the other drives of the
 * host), evaluation, replay and serving (the other servers of the server's peer group, pooled
 * by the orchestrator): the median and MAD of every finite per-minute mean the *other* units
 * recorded in the same window, pooled. The unit itself is never part of its own reference
 * (one slow unit among few would otherwise pull the median towards itself), and with fewer
 * than MIN_PEERS other units there is no reference (NaN): the mode then has no input rather
 * than an unvalidated substitute.
 */
export function peerReference(others: Iterable<ArrayLike<number>>): PeerStat & { n: number } {
  const pooled: number[] = [];
  let n = 0;
  for (const o of others) {
    let any = false;
    for (let i = 0; i < o.length; i++) if (Number.isFinite(o[i])) {
      pooled.push(o[i]);
      any = true;
    }
    if (any) n++;
  }
  if (n < MIN_PEERS) return { median: NaN, mad: NaN, n };
  const m = median(pooled);
  for (let i = 0; i < pooled.length; i++) pooled[i] = Math.abs(pooled[i] - m);
  return { median: m, mad: median(pooled), n };
}

/**
 * What a unit contributes to its peers' references: its per-minute means of every fail-slow
 * latency/throughput metric over the window ending at `now` (GET /v1/peer-sample on a server).
 */
export function peerSample(query: QueryFn, now: number): Record<string, number[]> {
  const from = failSlowWindowStart(now);
  const metrics: Record<string, number[]> = {};
  for (const src of FAIL_SLOW_SOURCES) {
    for (const m of [src.latency, src.throughput]) {
      const v = query(m, from, from + FAIL_SLOW_WINDOW_MIN * MINUTE_MS).map((p) => p.mean).filter(Number.isFinite);
      if (v.length) metrics[m] = v;
    }
  }
  return metrics;
}

/** Each metric's peerReference over the given peer samples (the other units of a group). */
export function peerStatsOf(samples: Record<string, number[]>[]): Record<string, PeerStat & { n: number }> {
  const names = new Set<string>();
  for (const m of samples) for (const k of Object.keys(m)) names.add(k);
  const out: Record<string, PeerStat & { n: number }> = {};
  for (const k of names) {
    const ref = peerReference(samples.map((m) => m[k] ?? []));
    if (Number.isFinite(ref.median)) out[k] = ref;
  }
  return out;
}

/** The window's latency and throughput of the first fail-slow source with enough minutes, or undefined. */
export function failSlowWindow(query: QueryFn, now: number): { source: (typeof FAIL_SLOW_SOURCES)[number]; lat: Float64Array; tp: Float64Array } | undefined {
  const W = FAIL_SLOW_WINDOW_MIN;
  const from = failSlowWindowStart(now);
  for (const source of FAIL_SLOW_SOURCES) {
    const lat = minuteSeries(query, source.latency, from, W);
    let valid = 0;
    for (const v of lat) if (Number.isFinite(v)) valid++;
    if (valid < FAIL_SLOW_MIN_POINTS) continue;
    return { source, lat, tp: minuteSeries(query, source.throughput, from, W) };
  }
  return undefined;
}

/**
 * Fail-slow features at `now` against `peers` (per metric, the peerReference of the other
 * units of the peer group over the same window). Without a reference for the window's latency
 * metric the features are NaN: the mode has no input.
 */
export function failSlowFeatures(query: QueryFn, now: number, peers?: PeerStats): ModeFeatures {
  const names = [...FAIL_SLOW_FEATURE_NAMES];
  const none = (why: string[]) => finish(names, new Float64Array(names.length).fill(NaN), why);
  const w = failSlowWindow(query, now);
  if (!w) return none([]);
  const pl = peers?.[w.source.latency];
  if (!pl || !Number.isFinite(pl.median)) return none([w.source.latency, `no peer reference (fewer than ${MIN_PEERS} peers with data)`]);
  const pt = peers?.[w.source.throughput];
  const ref: SlowReference = { latMedian: pl.median, latMad: pl.mad, tpMedian: pt?.median ?? NaN, tpMad: pt?.mad ?? NaN };
  return finish(names, failSlowWindowFeatures(w.lat, w.tp, ref), [w.source.latency, w.source.throughput, 'peers']);
}

// ------------------------------------------------------------------ network

export const NETWORK_FEATURE_NAMES = ['net_retrans_ratio', 'net_err_drop_ratio', 'io_error_ratio'] as const;
/** Minutes averaged for the network inputs. */
export const NETWORK_WINDOW_MIN = 15;

function windowMean(query: QueryFn, metric: string, from: number, to: number): number {
  let s = 0;
  let n = 0;
  for (const p of query(metric, from, to)) if (Number.isFinite(p.mean)) {
    s += p.mean;
    n++;
  }
  return n ? s / n : NaN;
}

function sumMeans(query: QueryFn, metrics: string[], from: number, to: number): number {
  let total = NaN;
  for (const m of metrics) {
    const v = windowMean(query, m, from, to);
    if (!Number.isNaN(v)) total = (Number.isNaN(total) ? 0 : total) + v;
  }
  return total;
}

export function networkFeatures(query: QueryFn, now: number): ModeFeatures {
  const to = now + 1;
  const from = now - NETWORK_WINDOW_MIN * MINUTE_MS;
  const sources: string[] = [];
  const retrans = windowMean(query, 'net_tcp_retrans_ratio', from, to);
  if (!Number.isNaN(retrans)) sources.push('net_tcp_retrans_ratio');
  const bad = sumMeans(query, ['net_rx_errs_per_s', 'net_tx_errs_per_s', 'net_rx_drops_per_s', 'net_tx_drops_per_s'], from, to);
  const pkts = sumMeans(query, ['net_rx_packets_per_s', 'net_tx_packets_per_s'], from, to);
  const errDrop = pkts > 0 && !Number.isNaN(bad) ? bad / pkts : NaN;
  if (!Number.isNaN(errDrop)) sources.push('net_*_errs/drops/packets_per_s');
  const errs = windowMean(query, 'io_errors_per_s', from, to);
  const ops = sumMeans(query, ['io_read_iops', 'io_write_iops'], from, to);
  // Error ratio of the data protocol; errors with no ops at all still count against 1 op/s.
  const ioErr = Number.isNaN(errs) ? NaN : errs / Math.max(Number.isNaN(ops) ? 0 : ops, 1);
  if (!Number.isNaN(ioErr)) sources.push('io_errors_per_s/io_*_iops');
  return finish([...NETWORK_FEATURE_NAMES], Float64Array.of(retrans, errDrop, ioErr), sources);
}

// ------------------------------------------------------------------ software

export const SOFTWARE_FEATURE_NAMES = ['sw_heap_growth_per_h', 'sw_rss_growth_per_h', 'sw_mem_used_ratio'] as const;
/** Hours over which memory growth is measured. */
export const SOFTWARE_WINDOW_H = 6;

/** Least-squares growth per hour relative to the median level, over 10-minute buckets. */
function relativeGrowthPerHour(query: QueryFn, metric: string, from: number, to: number): number {
  const step = 10 * MINUTE_MS;
  const buckets = new Map<number, { s: number; n: number }>();
  for (const p of query(metric, from, to)) {
    if (!Number.isFinite(p.mean)) continue;
    const b = Math.floor(pointTime(p) / step);
    const e = buckets.get(b) ?? { s: 0, n: 0 };
    e.s += p.mean;
    e.n++;
    buckets.set(b, e);
  }
  // At least an hour of buckets before a trend means anything.
  if (buckets.size < 6) return NaN;
  const keys = [...buckets.keys()].sort((a, b) => a - b);
  const y = keys.map((k) => buckets.get(k)!.s / buckets.get(k)!.n);
  const t = keys.map((k) => (k * step) / HOUR_MS);
  const level = median(y);
  return level > 0 ? linearSlope(y, t) / level : NaN;
}

export function softwareFeatures(query: QueryFn, now: number): ModeFeatures {
  const to = now + 1;
  const from = now - SOFTWARE_WINDOW_H * HOUR_MS;
  const heap = relativeGrowthPerHour(query, 'process_heap_used_bytes', from, to);
  const rss = relativeGrowthPerHour(query, 'process_rss_bytes', from, to);
  const memPts = query('mem_used_ratio', now - 5 * MINUTE_MS, to);
  const mem = memPts.length ? memPts[memPts.length - 1].last : NaN;
  const sources = [
    ...(Number.isNaN(heap) ? [] : ['process_heap_used_bytes']),
    ...(Number.isNaN(rss) ? [] : ['process_rss_bytes']),
    ...(Number.isFinite(mem) ? ['mem_used_ratio'] : []),
  ];
  return finish([...SOFTWARE_FEATURE_NAMES], Float64Array.of(heap, rss, Number.isFinite(mem) ? mem : NaN), sources);
}

// ------------------------------------------------------------------ all modes

function finish(names: string[], values: Float64Array, sources: string[]): ModeFeatures {
  let present = 0;
  for (const v of values) if (!Number.isNaN(v)) present++;
  return { names, values, present, sources };
}

/**
 * Every mode's features at `now`. `diskNames` selects the disk columns the model uses
 * (the bundle's feature list); peers, when given, replace the server's own past as the
 * fail-slow reference.
 */
export function computeOnlineFeatures(query: QueryFn, now: number, peers?: PeerStats, diskNames?: string[]): OnlineFeatures {
  return {
    disk: diskFeatures(query, now, diskNames),
    'fail-slow': failSlowFeatures(query, now, peers),
    network: networkFeatures(query, now),
    software: softwareFeatures(query, now),
  };
}

/**
 * A QueryFn over in-memory per-minute series (tests, fixtures, retraining from exported
 * history): `series[metric]` = { t: minute start ms, ascending; v: value }.
 */
export function arrayQuery(series: Record<string, { t: ArrayLike<number>; v: ArrayLike<number>; max?: ArrayLike<number> }>): QueryFn {
  return (metric, fromMs, toMs) => {
    const s = series[metric];
    if (!s) return [];
    let lo = 0;
    let hi = s.t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (s.t[mid] < fromMs) lo = mid + 1;
      else hi = mid;
    }
    const out: QueryPoint[] = [];
    for (let i = lo; i < s.t.length && s.t[i] < toMs; i++) {
      const v = s.v[i];
      if (Number.isNaN(v)) continue;
      out.push({ ts: s.t[i], mean: v, min: v, max: s.max ? s.max[i] : v, last: v });
    }
    return out;
  };
}
