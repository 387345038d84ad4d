/**
 * Datasets as live telemetry: each public schema in ../shared/data, and the generic format
 * (servers' own telemetry exports plus a label file), turned into the sample streams and score
 * times `scoreStreams` plays into real stores. How a recording becomes samples is stated here
 * once, so eval and replay agree:
 *
 * - Backblaze (daily SMART rows): drive-day D's row is read at D 00:00 UTC and then every
 *   `cadence` until the next row (power-on hours growing one an hour in between, as a running
 *   drive's do); the drive is scored once a day at `scoreOffset` after midnight; it fails at
 *   the end of its failure=1 day. Each drive is its own peer group (the disk mode has no peers).
 * - Perseus (per-minute drive latency/throughput): each minute is one sample at its timestamp,
 *   under the names the history import maps a drive to (`disk_read_latency_ms` from µs,
 *   `disk_read_bytes_per_s`), which a server's fail-slow mode reads; a host is a peer group, as servers sharing a host name it
 *   with --peer-group; units are scored every `scoreEvery`.
 * - Generic: a folder of `<unit>.csv[.gz]` files in the servers' export format
 *   (`ts,metric,min,max,mean,last,count`, GET /v1/metrics/export) and a label file
 *   `unit,failed_at,group` (failed_at ISO time or empty; group optional, default one fleet).
 *
 * A file's schema is recognised by its header, never by its name.
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { BACKBLAZE_SMART, loadBackblazeDrives, loadPerseusDrives, type DriveHistory, type PerseusDrive } from './datasets.ts';
import { SMART_RULE_ATTRS } from './backblaze-features.ts';
import { median } from './metrics.ts';
import { DAY_MS, FAIL_SLOW_WINDOW_MIN, HOUR_MS, MINUTE_MS, SMART_METRICS } from './online-features.ts';
import { PERSEUS_US_PER_MS, PERSEUS_LIVE_LATENCY as PERSEUS_LATENCY_METRIC, PERSEUS_LIVE_THROUGHPUT as PERSEUS_THROUGHPUT_METRIC, readLines, splitCsv } from '../telemetry/history-import.ts';
import type { Sample } from '../telemetry/tsdb.ts';
import type { BaselineInput, GroupStream, LiveUnit } from './live-eval.ts';

export type DatasetKind = 'backblaze' | 'perseus' | 'generic';

/** Default time between scores for minute-level data (a server scores far more often; 10 min keeps replays short). */
export const SCORE_EVERY_MS = 10 * MINUTE_MS;

/**
 * Score times for samples at `timesMs` (ascending): the last millisecond of every `everyMs`
 * period that holds a sample. Training cuts its windows at the same times (train.ts).
 */
export function scoreTicks(timesMs: ArrayLike<number>, everyMs: number): number[] {
  const ticks: number[] = [];
  for (let i = 0; i < timesMs.length; i++) {
    const tick = Math.ceil((timesMs[i] + 1) / everyMs) * everyMs - 1;
    if (ticks[ticks.length - 1] !== tick) ticks.push(tick);
  }
  return ticks;
}


export interface LiveDataset {
  kind: DatasetKind;
  file: string;
  units: LiveUnit[];
  groups: GroupStream[];
  baselines: Record<string, BaselineInput>;
  /** How the recording was streamed, for the report. */
  protocol: string;
  /** Unit-days observed (for rates per unit-day). */
  unitDays: number;
  /** A unit is scored while its last sample is at most this old (ScoreStreamOptions.staleMs). */
  staleMs: number;
}

export class DatasetError extends Error {
  readonly code = 'PRESAGE_DATASET';
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

/** Recognises a dataset by its header (a folder is the generic format). */
export async function detectDataset(path: string): Promise<DatasetKind> {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new DatasetError(`dataset not found: ${path}`);
  }
  if (st.isDirectory()) return 'generic';
  for await (const line of readLines(path)) {
    const cols = new Set(splitCsv(line).map((c) => c.trim()));
    if (cols.has('serial_number') && [...cols].some((c) => /^smart_\d+_raw$/.test(c))) return 'backblaze';
    if (cols.has('host') && cols.has('disk') && cols.has('latency_mean') && cols.has('minute_ts')) return 'perseus';
    throw new DatasetError(`${path}: header is neither Backblaze (date,serial_number,…,smart_N_raw) nor Perseus (cluster,host,disk,…,latency_mean); a folder of server exports plus --labels is the generic format`);
  }
  throw new DatasetError(`${path}: empty file`);
}

export interface DatasetOptions {
  /** Telemetry cadence (ms): how often a SMART reading is streamed (Backblaze). */
  cadenceMs?: number;
  /** Time between scores (ms) for minute-level data (Perseus, generic); default 10 minutes. */
  scoreEveryMs?: number;
  /** Backblaze: score each day at this offset after 00:00 UTC (default 12 h). */
  scoreOffsetMs?: number;
  /** Keep only these units (e.g. a test split). */
  keep?: (unit: LiveUnit) => boolean;
  /** Smoke runs: read at most this many rows. */
  maxRows?: number;
  /** Generic format: the label file. */
  labels?: string;
}

export async function loadLiveDataset(path: string, opts: DatasetOptions = {}): Promise<LiveDataset> {
  const kind = await detectDataset(path);
  if (kind === 'backblaze') return backblazeDataset(path, await loadBackblazeDrives(path, { limit: opts.maxRows }), opts);
  if (kind === 'perseus') return perseusDataset(path, await loadPerseusDrives(path, { limit: opts.maxRows }), opts);
  return genericDataset(path, opts);
}

// ------------------------------------------------------------------ Backblaze

const SMART9 = BACKBLAZE_SMART.indexOf(9);

function* driveSamples(d: DriveHistory, cadenceMs: number): Generator<{ unit: number; sample: Sample }> {
  for (let i = 0; i < d.days.length; i++) {
    const start = d.days[i] * DAY_MS;
    // Until the next row, or one day for the last row / before a gap.
    const end = i + 1 < d.days.length && d.days[i + 1] === d.days[i] + 1 ? d.days[i + 1] * DAY_MS : start + DAY_MS;
    for (let t = start; t < end; t += cadenceMs) {
      const values: Record<string, number> = {};
      for (let k = 0; k < BACKBLAZE_SMART.length; k++) {
        const v = d.smart[k][i];
        if (Number.isNaN(v)) continue;
        values[SMART_METRICS[BACKBLAZE_SMART[k]]] = k === SMART9 ? v + Math.floor((t - start) / HOUR_MS) : v;
      }
      yield { unit: 0, sample: { ts: t, values } };
    }
  }
}

export function backblazeDataset(file: string, drives: DriveHistory[], opts: DatasetOptions = {}): LiveDataset {
  const cadenceMs = opts.cadenceMs ?? 10 * MINUTE_MS;
  const offset = opts.scoreOffsetMs ?? 12 * HOUR_MS;
  if (!(cadenceMs >= MINUTE_MS && cadenceMs <= DAY_MS)) throw new DatasetError(`cadence must be between 1 minute and 1 day for daily SMART data (got ${cadenceMs} ms)`);
  const groups: GroupStream[] = [];
  const units: LiveUnit[] = [];
  const rule = new Map<string, boolean>();
  const ruleSum = new Map<string, number>();
  const s5197 = new Map<string, number>();
  const i5 = BACKBLAZE_SMART.indexOf(5);
  const i197 = BACKBLAZE_SMART.indexOf(197);
  const ruleIdx = SMART_RULE_ATTRS.map((a) => BACKBLAZE_SMART.indexOf(a));
  let unitDays = 0;
  for (const d of drives) {
    const unit: LiveUnit = { id: d.serial, group: d.serial, failed: d.failed, failAt: d.failed ? (d.failDay + 1) * DAY_MS : NaN };
    if (opts.keep && !opts.keep(unit)) continue;
    units.push(unit);
    unitDays += d.days.length;
    groups.push({
      units: [unit],
      samples: { [Symbol.iterator]: () => driveSamples(d, cadenceMs) },
      ticks: Array.from(d.days, (day) => ({ t: day * DAY_MS + offset, units: [0] })),
    });
    // Baselines, from the rows themselves (they are offline rules).
    let fired = false;
    let maxSum = 0;
    let max5197 = 0;
    for (let i = 0; i < d.days.length; i++) {
      let sum = 0;
      for (const k of ruleIdx) {
        const v = d.smart[k][i];
        if (v > 0) fired = true;
        if (Number.isFinite(v)) sum += v;
      }
      maxSum = Math.max(maxSum, sum);
      const a = d.smart[i5][i];
      const b = d.smart[i197][i];
      max5197 = Math.max(max5197, (Number.isFinite(a) ? a : 0) + (Number.isFinite(b) ? b : 0));
    }
    rule.set(d.serial, fired);
    ruleSum.set(d.serial, maxSum);
    s5197.set(d.serial, max5197);
  }
  return {
    kind: 'backblaze', file, units, groups, unitDays, staleMs: cadenceMs + offset,
    baselines: {
      'smart-rule': { description: 'alarm when any of SMART 5, 187, 188, 197, 198 raw > 0 on any day (ranked by their sum)', score: ruleSum, alarm: rule },
      'smart5+197': { description: 'ranking by the largest SMART 5 + 197 (reallocated + pending sectors)', score: s5197 },
    },
    protocol: `Backblaze daily rows streamed into a real TimeSeriesStore every ${cadenceMs / MINUTE_MS} min (a row's values from 00:00 UTC of its day until the next row, power-on hours +1 an hour); each drive scored once a day at ${(offset / HOUR_MS).toFixed(2)} h UTC by FailureScorer.score(); a failed drive fails at the end of its failure=1 day.`,
  };
}

// ------------------------------------------------------------------ Perseus

function* hostSamples(ds: PerseusDrive[]): Generator<{ unit: number; sample: Sample }> {
  const pos = new Int32Array(ds.length);
  for (;;) {
    let best = -1;
    for (let u = 0; u < ds.length; u++) if (pos[u] < ds[u].ts.length && (best < 0 || ds[u].ts[pos[u]] < ds[best].ts[pos[best]])) best = u;
    if (best < 0) return;
    const d = ds[best];
    const i = pos[best]++;
    const values: Record<string, number> = {};
    if (Number.isFinite(d.latencyMean[i])) values[PERSEUS_LATENCY_METRIC] = d.latencyMean[i] / PERSEUS_US_PER_MS;
    if (Number.isFinite(d.throughput[i])) values[PERSEUS_THROUGHPUT_METRIC] = d.throughput[i];
    yield { unit: best, sample: { ts: d.ts[i] * 1000, values } };
  }
}

export function perseusDataset(file: string, drives: PerseusDrive[], opts: DatasetOptions = {}): LiveDataset {
  const every = opts.scoreEveryMs ?? SCORE_EVERY_MS;
  const byHost = new Map<number, PerseusDrive[]>();
  for (const d of drives) {
    if (!byHost.has(d.host)) byHost.set(d.host, []);
    byHost.get(d.host)!.push(d);
  }
  const groups: GroupStream[] = [];
  const units: LiveUnit[] = [];
  const ratioMax = new Map<string, number>();
  const ratioAlarm = new Map<string, boolean>();
  let unitDays = 0;
  for (const [host, ds0] of [...byHost].sort((a, b) => a[0] - b[0])) {
    const gUnits = ds0.map((d) => ({ id: `${host}/${d.disk}`, group: `host-${host}`, failed: d.slow, failAt: NaN }));
    const keepIdx = gUnits.map((u, i) => (opts.keep && !opts.keep(u) ? -1 : i)).filter((i) => i >= 0);
    if (!keepIdx.length) continue;
    // Every drive of the host streams (peers need them); only kept units are scored.
    const ds = ds0;
    units.push(...keepIdx.map((i) => gUnits[i]));
    for (const i of keepIdx) unitDays += new Set(Array.from(ds[i].ts, (s) => Math.floor(s / 86_400))).size;
    // Score ticks: every `every` within each recorded stretch, plus the end of each stretch.
    const ticks = scoreTicks([...new Set(ds.flatMap((d) => Array.from(d.ts, (s) => s * 1000)))].sort((a, b) => a - b), every);
    groups.push({ units: gUnits, samples: { [Symbol.iterator]: () => hostSamples(ds) }, ticks: ticks.map((t) => ({ t, units: keepIdx })) });
    // Baseline: latency > 3× the median of the host's other drives, per clock-hour window.
    const hourly = ds.map((d) => {
      const m = new Map<number, number[]>();
      d.ts.forEach((s, i) => {
        const h = Math.floor(s / 3600);
        if (!m.has(h)) m.set(h, []);
        if (Number.isFinite(d.latencyMean[i])) m.get(h)!.push(d.latencyMean[i]);
      });
      return m;
    });
    for (const i of keepIdx) {
      let best = 0;
      for (const [h, lat] of hourly[i]) {
        const others = hourly.flatMap((m, q) => (q === i ? [] : (m.get(h) ?? [])));
        const r = median(lat) / median(others);
        if (Number.isFinite(r)) best = Math.max(best, r);
      }
      ratioMax.set(gUnits[i].id, best);
      ratioAlarm.set(gUnits[i].id, best > 3);
    }
  }
  return {
    kind: 'perseus', file, units, groups, unitDays, staleMs: FAIL_SLOW_WINDOW_MIN * MINUTE_MS,
    baselines: {
      'latency>3x-host-median': { description: 'alarm when a drive\'s median latency over a clock hour exceeds 3× the median of the other drives of its host (ranked by the largest such ratio)', score: ratioMax, alarm: ratioAlarm },
    },
    protocol: `Perseus per-minute rows streamed into one real TimeSeriesStore per drive (latency µs → ${PERSEUS_LATENCY_METRIC}, throughput → ${PERSEUS_THROUGHPUT_METRIC}); every ${every / MINUTE_MS} min each drive is scored by FailureScorer.score() against peerStatsOf the other drives of its host over the ${FAIL_SLOW_WINDOW_MIN}-minute window (a host = one peer group).`,
  };
}

// ------------------------------------------------------------------ generic

interface Row {
  ts: number;
  metric: string;
  mean: number;
}

async function readExport(file: string): Promise<Row[]> {
  const rows: Row[] = [];
  let idx: Map<string, number> | undefined;
  let n = 0;
  for await (const line of readLines(file)) {
    n++;
    if (!idx) {
      idx = new Map(splitCsv(line).map((c, i) => [c.trim(), i]));
      for (const c of ['ts', 'metric', 'mean']) if (!idx.has(c)) throw new DatasetError(`${file}: header must have ts,metric,mean (the server export format ts,metric,min,max,mean,last,count)`);
      continue;
    }
    if (!line) continue;
    const f = splitCsv(line);
    const ts = Number(f[idx.get('ts')!]);
    const mean = Number(f[idx.get('mean')!]);
    const metric = f[idx.get('metric')!];
    if (!Number.isFinite(ts) || !metric) throw new DatasetError(`${file}:${n}: bad ts or metric`);
    if (Number.isFinite(mean)) rows.push({ ts, metric, mean });
  }
  rows.sort((a, b) => a.ts - b.ts);
  return rows;
}

export async function genericDataset(dir: string, opts: DatasetOptions): Promise<LiveDataset> {
  if (!opts.labels) throw new DatasetError('the generic format needs --labels FILE (unit,failed_at,group)');
  const labels = new Map<string, { failAt: number; group: string }>();
  let header: Map<string, number> | undefined;
  for await (const line of readLines(opts.labels)) {
    if (!header) {
      header = new Map(splitCsv(line).map((c, i) => [c.trim(), i]));
      if (!header.has('unit') || !header.has('failed_at')) throw new DatasetError(`${opts.labels}: header must be unit,failed_at[,group]`);
      continue;
    }
    if (!line) continue;
    const f = splitCsv(line);
    const at = f[header.get('failed_at')!]?.trim();
    const failAt = at ? Date.parse(at) : NaN;
    if (at && !Number.isFinite(failAt)) throw new DatasetError(`${opts.labels}: unit ${f[header.get('unit')!]}: failed_at '${at}' is not an ISO time`);
    labels.set(f[header.get('unit')!].trim(), { failAt, group: (header.has('group') ? f[header.get('group')!]?.trim() : '') || 'fleet' });
  }
  const files = readdirSync(dir).filter((f) => /\.csv(\.gz)?$/.test(f)).sort();
  const byGroup = new Map<string, { unit: LiveUnit; rows: Row[] }[]>();
  for (const f of files) {
    const id = basename(f).replace(/\.csv(\.gz)?$/, '');
    const l = labels.get(id);
    if (!l) throw new DatasetError(`${join(dir, f)}: unit '${id}' is not in ${opts.labels}`);
    const unit: LiveUnit = { id, group: l.group, failed: Number.isFinite(l.failAt), failAt: l.failAt };
    if (opts.keep && !opts.keep(unit)) continue;
    if (!byGroup.has(l.group)) byGroup.set(l.group, []);
    byGroup.get(l.group)!.push({ unit, rows: await readExport(join(dir, f)) });
  }
  const every = opts.scoreEveryMs ?? SCORE_EVERY_MS;
  const groups: GroupStream[] = [];
  const units: LiveUnit[] = [];
  let unitDays = 0;
  for (const members of byGroup.values()) {
    const gUnits = members.map((m) => m.unit);
    units.push(...gUnits);
    const merged = members.flatMap((m, u) => m.rows.map((r) => ({ u, r }))).sort((a, b) => a.r.ts - b.r.ts);
    for (const m of members) unitDays += new Set(m.rows.map((r) => Math.floor(r.ts / DAY_MS))).size;
    const ticks = scoreTicks(merged.map(({ r }) => r.ts), every);
    groups.push({
      units: gUnits,
      samples: merged.map(({ u, r }) => ({ unit: u, sample: { ts: r.ts, values: { [r.metric]: r.mean } } })),
      ticks: ticks.map((t) => ({ t, units: gUnits.map((_, i) => i) })),
    });
  }
  return {
    kind: 'generic', file: dir, units, groups, unitDays, staleMs: FAIL_SLOW_WINDOW_MIN * MINUTE_MS, baselines: {},
    protocol: `server telemetry exports streamed minute by minute into one real TimeSeriesStore per unit; every ${every / MINUTE_MS} min each unit scored by FailureScorer.score() against peerStatsOf the other units of its label-file group.`,
  };
}
