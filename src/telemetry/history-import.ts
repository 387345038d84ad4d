// Loads historical telemetry (CSV, gzip or plain) into a TimeSeriesStore, streaming the
// file line by line (zlib + readline) so multi-GB files never sit in memory. Three formats:
//
// - own:       our export `ts,metric,min,max,mean,last,count` (TimeSeriesStore.export).
// - perseus:   the Alibaba fail-slow per-minute schema `cluster,host,disk,date,minute_ts,
//              throughput_mean,latency_mean,latency_max,n_samples,n_missing,slow_drive`.
//              One host is one server. Per drive N: `disk{N}_latency_mean_us`,
//              `disk{N}_latency_max_us`, `disk{N}_throughput_bps` (one point per minute,
//              count = n_samples of the 15 s samples averaged upstream). Per host:
//              `disk_latency_mean_us` (mean over drives; min/max columns are the fastest and
//              slowest drive that minute), `disk_latency_max_us` (max over drives) and
//              `disk_throughput_bps` (sum over drives), count = drives reporting. Units are
//              not stated upstream; we follow the data README (bytes/s and µs).
//              A Presage server scores itself as ONE drive, so one drive of the host (option
//              `disk`, default the host's lowest-numbered drive; ImportReport.mappedDisk says
//              which) is also written under the live fail-slow names the server's models read:
//              `disk_read_latency_ms` (latency_mean / 1000; min/max/mean/last all the
//              per-minute mean) and `disk_read_bytes_per_s` (throughput_mean), count = n_samples.
// - backblaze: the daily SMART schema `date,serial_number,model,failure,smart_N_raw…`; one
//              drive's rows become daily points (ts = 00:00 UTC) `smart_N_<name>` plus
//              `drive_failed`.
//
// Nothing is synthesised: empty cells give no point, and backfill() reports how much of the
// requested span the data actually covers.
//
// Errors name the file, the line number and what was wrong, never the line's content: the file
// may be one the caller could not otherwise read (the server's import folder, issue #22), and a
// quoted line of the wrong file is a leak (it once printed a line of /etc/shadow).

import { createReadStream, promises as fsp } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { ATA_ATTRIBUTES } from './smart.ts';
import { CSV_HEADER, DAY_MS, MINUTE_MS, validateRow, type RollupRow, type TimeSeriesStore } from './tsdb.ts';

export type HistoryFormat = 'own' | 'perseus' | 'backblaze';

export interface ImportWindow {
  /** Only rows with fromMs ≤ original ts < toMs. */
  fromMs?: number;
  toMs?: number;
  /** Added to every timestamp after the window filter (to move old data to the present). */
  shiftMs?: number;
  /** Parse and count but do not write (used to find a dataset's extent). */
  dryRun?: boolean;
  /** Rows per store transaction (default 50 000). */
  batchRows?: number;
}

export interface PerseusOptions extends ImportWindow {
  host: string | number;
  cluster?: string;
  /** Per-drive metrics (default true). */
  perDisk?: boolean;
  /** Host aggregates (default true). */
  aggregate?: boolean;
  /** The file is sorted by host: stop reading once past the host (default true). */
  stopAfterHost?: boolean;
  /**
   * The drive (digits, as in the file's `disk` column) that this server is: its rows are also
   * written as `disk_read_latency_ms` / `disk_read_bytes_per_s`, the live names the fail-slow
   * mode reads. Default: the host's lowest-numbered drive. A drive the host lacks is an error.
   */
  disk?: string | number;
}

export interface BackblazeOptions extends ImportWindow {
  serial: string;
  /** The file is sorted by serial: stop once past the drive (default true). */
  stopAfterSerial?: boolean;
}

export interface ImportReport {
  format: HistoryFormat;
  file: string;
  /** Data lines read (after the header). */
  linesRead: number;
  /** Lines that matched the selection (host / serial / window). */
  linesSelected: number;
  /** Roll-up rows written (or that would be, for a dry run). */
  rowsImported: number;
  metrics: string[];
  /** After shifting. */
  firstTs?: number;
  lastTs?: number;
  /** Distinct time points (minutes, or days for Backblaze). */
  pointsWithData: number;
  /** Distinct UTC calendar days with data. */
  daysWithData: number;
  /** (lastTs − firstTs + one resolution step) in days. */
  spanDays: number;
  /** 60 000 for per-minute formats, 86 400 000 for daily Backblaze. */
  resolutionMs: number;
  /** Perseus: the drive written under the live fail-slow names (the `disk` option, or the host's lowest drive). */
  mappedDisk?: string;
  /** Perseus: the selected host's drive ids (whole file, not only the window), in numeric order. */
  disks?: string[];
}

/** Lines of a text file, gunzipped when it starts with the gzip magic bytes. */
export async function* readLines(file: string): AsyncGenerator<string> {
  const fh = await fsp.open(file, 'r');
  let gz = false;
  try {
    const b = Buffer.alloc(2);
    const { bytesRead } = await fh.read(b, 0, 2, 0);
    gz = bytesRead === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    await fh.close();
  }
  const raw = createReadStream(file, { highWaterMark: 1 << 20 });
  const input: Readable = gz ? raw.pipe(createGunzip()) : raw;
  raw.on('error', (e) => input.destroy(e));
  const rl = createInterface({ input, crlfDelay: Infinity });
  try {
    for await (const line of rl) yield line;
  } finally {
    rl.close();
    raw.destroy();
    input.destroy();
  }
}

/** Splits one CSV line; handles double-quoted fields with "" escapes. */
export function splitCsv(line: string): string[] {
  if (!line.includes('"')) return line.split(',');
  const out: string[] = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (q) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') q = false;
      else cur += c;
    } else if (c === '"') q = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function numCell(s: string | undefined): number | undefined {
  if (s === undefined || s.trim() === '') return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

/** Tracks what an import covered, and batches rows into the store. */
class Writer {
  readonly metrics = new Set<string>();
  readonly points = new Set<number>();
  readonly days = new Set<number>();
  first: number | undefined;
  last: number | undefined;
  rows = 0;
  private batch: RollupRow[] = [];
  /** While true, rows are kept in memory (not written) until release() or discard. */
  hold = false;

  constructor(private readonly store: TimeSeriesStore | undefined, private readonly opts: ImportWindow) {}

  inWindow(ts: number): boolean {
    return (this.opts.fromMs === undefined || ts >= this.opts.fromMs) && (this.opts.toMs === undefined || ts < this.opts.toMs);
  }

  add(r: RollupRow): void {
    const row = this.opts.shiftMs ? { ...r, ts: r.ts + this.opts.shiftMs } : r;
    this.metrics.add(row.metric);
    this.points.add(row.ts);
    this.days.add(Math.floor(row.ts / DAY_MS));
    if (this.first === undefined || row.ts < this.first) this.first = row.ts;
    if (this.last === undefined || row.ts > this.last) this.last = row.ts;
    this.rows++;
    if (this.opts.dryRun || !this.store) return;
    this.batch.push(row);
    if (!this.hold && this.batch.length >= (this.opts.batchRows ?? 50_000)) this.flush();
  }

  release(): void {
    this.hold = false;
    if (this.batch.length >= (this.opts.batchRows ?? 50_000)) this.flush();
  }

  flush(): void {
    if (this.batch.length && this.store) this.store.importRows(this.batch);
    this.batch = [];
  }

  report(format: HistoryFormat, file: string, linesRead: number, linesSelected: number, resolutionMs: number): ImportReport {
    this.flush();
    const r: ImportReport = {
      format, file, linesRead, linesSelected, rowsImported: this.rows, metrics: [...this.metrics].sort(),
      pointsWithData: this.points.size, daysWithData: this.days.size, spanDays: 0, resolutionMs,
    };
    if (this.first !== undefined && this.last !== undefined) {
      r.firstTs = this.first;
      r.lastTs = this.last;
      r.spanDays = (this.last - this.first + resolutionMs) / DAY_MS;
    }
    return r;
  }
}

function headerIndex(header: string, required: string[], file: string): Map<string, number> {
  const cols = splitCsv(header).map((c) => c.trim());
  const idx = new Map(cols.map((c, i) => [c, i]));
  const missing = required.filter((c) => !idx.has(c));
  if (missing.length) throw new Error(`${file}:1: not the expected schema, missing column(s) ${missing.join(', ')} in the header line`);
  return idx;
}

/** validateRow's verdict without the values it quotes: which field is wrong, not what it holds. */
function rowProblem(row: RollupRow): string | undefined {
  const err = validateRow(row);
  if (!err) return undefined;
  if (!Number.isFinite(row.ts)) return 'ts (field 1) is not a finite number';
  if (err.startsWith('invalid metric name')) return 'invalid metric name (field 2)';
  for (const [i, k] of (['min', 'max', 'mean', 'last'] as const).entries()) {
    if (!Number.isFinite(row[k])) return `${k} (field ${i + 3}) is not a finite number`;
  }
  if (!(Number.isInteger(row.count) && row.count >= 1)) return 'count (field 7) is not a positive integer';
  if (row.min > row.max) return 'min (field 3) is above max (field 4)';
  return 'not a valid row';
}

/** Imports our own export format. Throws on the first malformed line, naming it (never quoting it). */
export async function importOwnCsv(store: TimeSeriesStore | undefined, file: string, opts: ImportWindow = {}): Promise<ImportReport> {
  const w = new Writer(store, opts);
  let lineNo = 0;
  let read = 0;
  let selected = 0;
  for await (const line of readLines(file)) {
    lineNo++;
    if (lineNo === 1) {
      if (line.trim() !== CSV_HEADER) throw new Error(`${file}:1: expected header "${CSV_HEADER}" (not our export format)`);
      continue;
    }
    if (line === '') continue;
    read++;
    const f = line.split(',');
    if (f.length !== 7) throw new Error(`${file}:${lineNo}: expected 7 fields, got ${f.length}`);
    const row: RollupRow = {
      ts: Number(f[0]), metric: f[1]!, min: Number(f[2]), max: Number(f[3]), mean: Number(f[4]), last: Number(f[5]), count: Number(f[6]),
    };
    const err = rowProblem(row);
    if (err) throw new Error(`${file}:${lineNo}: ${err}`);
    if (!w.inWindow(row.ts)) continue;
    selected++;
    w.add(row);
  }
  return w.report('own', file, read, selected, MINUTE_MS);
}

const PERSEUS_COLS = ['cluster', 'host', 'disk', 'minute_ts', 'throughput_mean', 'latency_mean', 'latency_max', 'n_samples'];

/** The live fail-slow metric names a Perseus drive is mapped to (third pair of FAIL_SLOW_SOURCES). */
export const PERSEUS_LIVE_LATENCY = 'disk_read_latency_ms';
export const PERSEUS_LIVE_THROUGHPUT = 'disk_read_bytes_per_s';
/** Perseus latency is in microseconds (../shared/data/README.md); live latency is in ms: divide by this. */
export const PERSEUS_US_PER_MS = 1000;

/** Imports one Perseus host as one server's history; one of its drives also feeds the live fail-slow names. */
export async function importPerseus(store: TimeSeriesStore | undefined, file: string, opts: PerseusOptions): Promise<ImportReport> {
  const host = String(opts.host).trim();
  const perDisk = opts.perDisk ?? true;
  const aggregate = opts.aggregate ?? true;
  const want = opts.disk === undefined ? undefined : String(opts.disk).trim();
  if (want !== undefined && !/^\d+$/.test(want)) throw new Error(`perseus: disk must be a drive id of digits, got ${JSON.stringify(opts.disk)}`);
  const w = new Writer(store, opts);
  // Nothing is written until the requested drive is seen: an unknown drive imports nothing.
  if (want !== undefined) w.hold = true;
  const disks = new Set<string>();
  let wantSeen = false;
  // Default mapping: the live rows of the lowest drive seen so far (one drive's rows at most).
  let lowest: string | undefined;
  let lowestRows: RollupRow[] = [];
  type Agg = { latSum: number; latMin: number; latMax: number; nLat: number; maxMax: number; nMax: number; tp: number; nTp: number };
  const agg = new Map<number, Agg>();
  let idx: Map<string, number> | undefined;
  let read = 0;
  let selected = 0;
  let seenHost = false;
  let lineNo = 0;
  for await (const line of readLines(file)) {
    lineNo++;
    if (!idx) {
      idx = headerIndex(line, PERSEUS_COLS, file);
      continue;
    }
    if (line === '') continue;
    read++;
    const f = splitCsv(line);
    const c = (name: string) => f[idx!.get(name)!];
    if (opts.cluster !== undefined && c('cluster') !== opts.cluster) continue;
    if (c('host') !== host) {
      if (seenHost && opts.stopAfterHost !== false) break;
      continue;
    }
    seenHost = true;
    const sec = numCell(c('minute_ts'));
    const disk = c('disk')?.trim();
    if (sec === undefined || !disk || !/^\d+$/.test(disk)) throw new Error(`${file}:${lineNo}: bad minute_ts or disk`);
    const ts = sec * 1000;
    disks.add(disk);
    let mapped: boolean;
    if (want !== undefined) mapped = Number(disk) === Number(want);
    else {
      if (lowest === undefined || Number(disk) < Number(lowest)) {
        lowest = disk;
        lowestRows = [];
      }
      mapped = disk === lowest;
    }
    if (mapped && want !== undefined && !wantSeen) {
      wantSeen = true;
      w.release();
    }
    if (!w.inWindow(ts)) continue;
    selected++;
    const tp = numCell(c('throughput_mean'));
    const lat = numCell(c('latency_mean'));
    const lmax = numCell(c('latency_max'));
    const n = Math.max(1, Math.round(numCell(c('n_samples')) ?? 1));
    const one = (metric: string, v: number) => w.add({ ts, metric, min: v, max: v, mean: v, last: v, count: n });
    if (mapped) {
      const live: RollupRow[] = [];
      if (lat !== undefined) {
        const ms = lat / PERSEUS_US_PER_MS;
        live.push({ ts, metric: PERSEUS_LIVE_LATENCY, min: ms, max: ms, mean: ms, last: ms, count: n });
      }
      if (tp !== undefined) live.push({ ts, metric: PERSEUS_LIVE_THROUGHPUT, min: tp, max: tp, mean: tp, last: tp, count: n });
      if (want !== undefined) for (const r of live) w.add(r);
      else lowestRows.push(...live);
    }
    if (perDisk) {
      if (lat !== undefined) one(`disk${disk}_latency_mean_us`, lat);
      if (lmax !== undefined) one(`disk${disk}_latency_max_us`, lmax);
      if (tp !== undefined) one(`disk${disk}_throughput_bps`, tp);
    }
    if (aggregate && (lat !== undefined || lmax !== undefined || tp !== undefined)) {
      let a = agg.get(ts);
      if (!a) agg.set(ts, (a = { latSum: 0, latMin: Infinity, latMax: -Infinity, nLat: 0, maxMax: -Infinity, nMax: 0, tp: 0, nTp: 0 }));
      if (lat !== undefined) {
        a.latSum += lat;
        a.latMin = Math.min(a.latMin, lat);
        a.latMax = Math.max(a.latMax, lat);
        a.nLat++;
      }
      if (lmax !== undefined) {
        a.maxMax = Math.max(a.maxMax, lmax);
        a.nMax++;
      }
      if (tp !== undefined) {
        a.tp += tp;
        a.nTp++;
      }
    }
  }
  if (!idx) throw new Error(`${file}: empty file`);
  const hostDisks = [...disks].sort((x, y) => Number(x) - Number(y) || x.localeCompare(y));
  if (want !== undefined && !wantSeen) {
    const where = opts.cluster !== undefined ? `cluster ${opts.cluster} host ${host}` : `host ${host}`;
    throw new Error(hostDisks.length
      ? `${file}: ${where} has no disk ${want}; its disks are ${hostDisks.join(', ')}`
      : `${file}: ${where} is not in the file (no rows), so it has no disk ${want}`);
  }
  for (const r of lowestRows) w.add(r);
  for (const ts of [...agg.keys()].sort((x, y) => x - y)) {
    const a = agg.get(ts)!;
    if (a.nLat) w.add({ ts, metric: 'disk_latency_mean_us', min: a.latMin, max: a.latMax, mean: a.latSum / a.nLat, last: a.latSum / a.nLat, count: a.nLat });
    if (a.nMax) w.add({ ts, metric: 'disk_latency_max_us', min: a.maxMax, max: a.maxMax, mean: a.maxMax, last: a.maxMax, count: a.nMax });
    if (a.nTp) w.add({ ts, metric: 'disk_throughput_bps', min: a.tp, max: a.tp, mean: a.tp, last: a.tp, count: a.nTp });
  }
  const r = w.report('perseus', file, read, selected, MINUTE_MS);
  const mappedDisk = want ?? lowest;
  if (mappedDisk !== undefined) r.mappedDisk = hostDisks.find((d) => Number(d) === Number(mappedDisk)) ?? mappedDisk;
  r.disks = hostDisks;
  return r;
}

/** Imports one Backblaze drive (by serial number) as daily SMART points. */
export async function importBackblaze(store: TimeSeriesStore | undefined, file: string, opts: BackblazeOptions): Promise<ImportReport> {
  const w = new Writer(store, opts);
  let idx: Map<string, number> | undefined;
  let smartCols: [number, string][] = [];
  let read = 0;
  let selected = 0;
  let seen = false;
  let lineNo = 0;
  for await (const line of readLines(file)) {
    lineNo++;
    if (!idx) {
      idx = headerIndex(line, ['date', 'serial_number', 'failure'], file);
      // smart_N_raw columns we have names for; others (normalised values, unknown ids) are skipped.
      smartCols = [...idx].flatMap(([col, i]) => {
        const m = /^smart_(\d+)_raw$/.exec(col);
        const name = m ? ATA_ATTRIBUTES[Number(m[1])] : undefined;
        return name ? [[i, name] as [number, string]] : [];
      });
      continue;
    }
    if (line === '') continue;
    read++;
    const f = splitCsv(line);
    if (f[idx.get('serial_number')!] !== opts.serial) {
      if (seen && opts.stopAfterSerial !== false) break;
      continue;
    }
    seen = true;
    const date = f[idx.get('date')!] ?? '';
    const ts = Date.parse(`${date}T00:00:00Z`);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(date) || !Number.isFinite(ts)) throw new Error(`${file}:${lineNo}: the date column is not a date (YYYY-MM-DD)`);
    if (!w.inWindow(ts)) continue;
    selected++;
    const one = (metric: string, v: number) => w.add({ ts, metric, min: v, max: v, mean: v, last: v, count: 1 });
    for (const [i, name] of smartCols) {
      const v = numCell(f[i]);
      if (v !== undefined) one(name, v);
    }
    const fail = numCell(f[idx.get('failure')!]);
    if (fail !== undefined) one('drive_failed', fail);
  }
  if (!idx) throw new Error(`${file}: empty file`);
  return w.report('backblaze', file, read, selected, DAY_MS);
}

export type HistorySpec =
  | { format: 'own'; file: string }
  | ({ format: 'perseus'; file: string } & Omit<PerseusOptions, keyof ImportWindow>)
  | ({ format: 'backblaze'; file: string } & Omit<BackblazeOptions, keyof ImportWindow>);

export function importHistory(store: TimeSeriesStore | undefined, spec: HistorySpec, win: ImportWindow = {}): Promise<ImportReport> {
  switch (spec.format) {
    case 'own':
      return importOwnCsv(store, spec.file, win);
    case 'perseus':
      return importPerseus(store, spec.file, { ...spec, ...win });
    case 'backblaze':
      return importBackblaze(store, spec.file, { ...spec, ...win });
    default:
      throw new Error(`unknown history format ${(spec as { format: string }).format}`);
  }
}

export interface BackfillReport extends ImportReport {
  requestedDays: number;
  /** The data reaches back to the start of the requested span. */
  complete: boolean;
  /** Days of the requested span before the data starts (0 when complete). */
  shortfallDays: number;
  /** Fraction of the requested span's time points that have data (0..1). */
  fillRatio: number;
  /** What was added to the original timestamps. */
  shiftMs: number;
  message: string;
}

/**
 * Backfills the last `days` days of a dataset (its own last timestamp, not today, ends the
 * window). With `shiftEndTo` the timestamps are moved so the last point lands there (e.g.
 * Date.now(), so that retention does not drop years-old data at once); values are never
 * changed. A dataset shorter than asked is imported whole and the report says so: nothing
 * is filled in. Reads the file twice (once to find its extent).
 */
export async function backfill(store: TimeSeriesStore, spec: HistorySpec, days: number, shiftEndTo?: number): Promise<BackfillReport> {
  if (!(days > 0)) throw new Error(`backfill: days must be > 0, got ${days}`);
  const scan = await importHistory(undefined, spec, { dryRun: true });
  if (scan.lastTs === undefined) {
    return {
      ...scan, requestedDays: days, complete: false, shortfallDays: days, fillRatio: 0, shiftMs: 0,
      message: `${spec.file}: no data for this selection; nothing imported`,
    };
  }
  const toMs = scan.lastTs + 1;
  const fromMs = scan.lastTs - days * DAY_MS + scan.resolutionMs;
  const shiftMs = shiftEndTo === undefined ? 0 : Math.floor(shiftEndTo / scan.resolutionMs) * scan.resolutionMs - scan.lastTs;
  const r = await importHistory(store, spec, { fromMs, toMs, shiftMs });
  // Complete = the dataset reaches back to the window's start (gaps inside it, such as
  // Perseus' 3 hours a day, are what fillRatio reports).
  const shortfall = Math.max(0, (scan.firstTs! - fromMs) / DAY_MS);
  const complete = shortfall === 0;
  const cov = `${r.spanDays.toFixed(2)} days span (${r.daysWithData} calendar days with data, ${r.pointsWithData} time points)`;
  const fill = Math.min(1, (r.pointsWithData * r.resolutionMs) / (days * DAY_MS));
  return {
    ...r, requestedDays: days, complete, shortfallDays: complete ? 0 : shortfall, shiftMs,
    fillRatio: Math.min(1, (r.pointsWithData * r.resolutionMs) / (days * DAY_MS)),
    message: complete
      ? `imported ${days} days: ${cov}, ${(fill * 100).toFixed(1)} % of the time points filled`
      : `asked for ${days} days but the data covers only ${cov}; imported all of it, nothing synthesised`,
  };
}
