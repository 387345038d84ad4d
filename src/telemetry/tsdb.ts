// A small time-series store for one server's telemetry, on SQLite (better-sqlite3).
//
// Layout: raw samples (every few seconds) are folded in memory into the current minute;
// when the minute turns, one row per metric is written:
//
//   rollup(metric INTEGER, minute INTEGER, min, max, mean, last REAL, count INTEGER)
//   PRIMARY KEY (metric, minute) WITHOUT ROWID
//
// Why one row per metric per minute rather than one blob per minute: the table *is* the
// (metric, minute) index (WITHOUT ROWID clusters rows by the key, no second copy), so a
// query for one metric over 30 days reads one contiguous key range instead of decoding
// every minute's blob for all metrics; metric names are interned to small integers; the
// minute number (not ms) is a 4-byte varint; and SQLite writes integral REAL values (a
// zero error count, a byte count) as 0–8 byte integers, so the many flat or zero series
// cost a few bytes each. docs/telemetry.md gives the measured bytes per day.
//
// Retention: prune(now) drops rows older than `retentionDays` (default 35); a timer runs it.

import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';

export const MINUTE_MS = 60_000;
export const DAY_MS = 86_400_000;

/** What the collector pushes: one sample of many metrics at one moment. */
export interface Sample {
  ts: number;
  values: Record<string, number>;
}

/** Something that accepts samples (TimeSeriesStore does; tests may use an array). */
export interface SampleSink {
  push(sample: Sample): void;
}

/** One per-minute roll-up of one metric. `ts` is the start of the minute (or step bucket), ms since epoch. */
export interface RollupPoint {
  ts: number;
  min: number;
  max: number;
  mean: number;
  last: number;
  count: number;
}

export interface RollupRow extends RollupPoint {
  metric: string;
}

export interface StorageStats {
  /** Bytes SQLite uses for live pages (free pages after a prune are not counted). */
  usedBytes: number;
  rows: number;
  metrics: number;
  firstTs?: number;
  lastTs?: number;
  /** (last minute − first minute + 1) / 1440. */
  coveredDays: number;
  bytesPerDay?: number;
  bytesPerRow?: number;
}

export interface TimeSeriesStoreOptions {
  /** Default 35. */
  retentionDays?: number;
  /** Run prune() this often (ms) once startRetention() is called; default hourly. */
  pruneIntervalMs?: number;
  now?: () => number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

const IMPORT_BATCH = 128;
const IMPORT_CHUNK = 262_144;

export const CSV_HEADER = 'ts,metric,min,max,mean,last,count';

interface Acc {
  min: number;
  max: number;
  sum: number;
  count: number;
  last: number;
}

function mergePoints(a: RollupPoint, b: RollupPoint): RollupPoint {
  // b is the later of the two (its `last` wins).
  const count = a.count + b.count;
  return {
    ts: a.ts,
    min: Math.min(a.min, b.min),
    max: Math.max(a.max, b.max),
    mean: (a.mean * a.count + b.mean * b.count) / count,
    last: b.last,
    count,
  };
}

export class TimeSeriesStore implements SampleSink {
  readonly db: Db;
  readonly retentionDays: number;
  private readonly pruneIntervalMs: number;
  private readonly now: () => number;
  private readonly ids = new Map<string, number>();
  private accMinute: number | undefined;
  private acc = new Map<string, Acc>();
  private pruneTimer: NodeJS.Timeout | undefined;
  private readonly st: {
    upsert: Statement;
    replace: Statement;
    replaceBatch: Statement;
    insertMetric: Statement;
    range: Statement;
    latest: Statement;
    bounds: Statement;
    pruneOne: Statement;
    hasRows: Statement;
  };

  /** `file` is a path, or ':memory:' for tests. */
  constructor(file: string, opts: TimeSeriesStoreOptions = {}) {
    this.retentionDays = opts.retentionDays ?? 35;
    if (!(this.retentionDays > 0)) throw new Error(`retentionDays must be > 0, got ${this.retentionDays}`);
    this.pruneIntervalMs = opts.pruneIntervalMs ?? 3_600_000;
    this.now = opts.now ?? Date.now;
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS metric (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      CREATE TABLE IF NOT EXISTS rollup (
        metric INTEGER NOT NULL, minute INTEGER NOT NULL,
        min REAL NOT NULL, max REAL NOT NULL, mean REAL NOT NULL, last REAL NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (metric, minute)
      ) WITHOUT ROWID;
    `);
    for (const r of this.db.prepare('SELECT id, name FROM metric').all() as { id: number; name: string }[]) {
      this.ids.set(r.name, r.id);
    }
    this.st = {
      // Live writes merge with a row already there (a restart inside a minute, a flush
      // followed by more samples of the same minute).
      upsert: this.db.prepare(`
        INSERT INTO rollup (metric, minute, min, max, mean, last, count) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (metric, minute) DO UPDATE SET
          min = min(rollup.min, excluded.min), max = max(rollup.max, excluded.max),
          mean = (rollup.mean * rollup.count + excluded.mean * excluded.count) / (rollup.count + excluded.count),
          last = excluded.last, count = rollup.count + excluded.count`),
      // Imports replace, so that importing the same file twice changes nothing.
      replace: this.db.prepare('INSERT OR REPLACE INTO rollup (metric, minute, min, max, mean, last, count) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      replaceBatch: this.db.prepare(
        'INSERT OR REPLACE INTO rollup (metric, minute, min, max, mean, last, count) VALUES ' +
          Array.from({ length: IMPORT_BATCH }, () => '(?, ?, ?, ?, ?, ?, ?)').join(', '),
      ),
      insertMetric: this.db.prepare('INSERT INTO metric (name) VALUES (?)'),
      range: this.db.prepare('SELECT minute, min, max, mean, last, count FROM rollup WHERE metric = ? AND minute >= ? AND minute < ? ORDER BY minute'),
      latest: this.db.prepare('SELECT minute, min, max, mean, last, count FROM rollup WHERE metric = ? AND minute >= ? AND minute < ? ORDER BY minute DESC LIMIT 1'),
      bounds: this.db.prepare('SELECT min(minute) AS lo, max(minute) AS hi FROM rollup WHERE metric = ?'),
      pruneOne: this.db.prepare('DELETE FROM rollup WHERE metric = ? AND minute < ?'),
      hasRows: this.db.prepare('SELECT 1 FROM rollup WHERE metric = ? LIMIT 1'),
    };
  }

  private metricId(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
      id = Number(this.st.insertMetric.run(name).lastInsertRowid);
      this.ids.set(name, id);
    }
    return id;
  }

  /**
   * Adds one raw sample. Values that are not finite numbers or whose names are not valid
   * metric names are dropped (counted in the return value) rather than stored.
   */
  push(sample: Sample): number {
    if (!Number.isFinite(sample.ts)) throw new Error(`sample ts must be a finite number, got ${sample.ts}`);
    const minute = Math.floor(sample.ts / MINUTE_MS);
    let dropped = 0;
    if (this.accMinute !== undefined && minute > this.accMinute) this.flush();
    if (this.accMinute !== undefined && minute < this.accMinute) {
      // A late sample for a minute already closed: write it straight through.
      const tx = this.db.transaction(() => {
        for (const [name, v] of Object.entries(sample.values)) {
          if (!Number.isFinite(v) || !METRIC_NAME.test(name)) {
            dropped++;
            continue;
          }
          this.st.upsert.run(this.metricId(name), minute, v, v, v, v, 1);
        }
      });
      tx();
      return dropped;
    }
    this.accMinute = minute;
    for (const [name, v] of Object.entries(sample.values)) {
      if (!Number.isFinite(v) || !METRIC_NAME.test(name)) {
        dropped++;
        continue;
      }
      const a = this.acc.get(name);
      if (!a) this.acc.set(name, { min: v, max: v, sum: v, count: 1, last: v });
      else {
        if (v < a.min) a.min = v;
        if (v > a.max) a.max = v;
        a.sum += v;
        a.count++;
        a.last = v;
      }
    }
    return dropped;
  }

  /** Writes the in-memory minute to disk (called when the minute turns, and by close()). */
  flush(): void {
    if (this.accMinute === undefined || this.acc.size === 0) return;
    const minute = this.accMinute;
    const acc = this.acc;
    this.acc = new Map();
    const tx = this.db.transaction(() => {
      for (const [name, a] of acc) this.st.upsert.run(this.metricId(name), minute, a.min, a.max, a.sum / a.count, a.last, a.count);
    });
    tx();
  }

  /**
   * Bulk import of roll-up rows in one transaction (all or nothing). A row for a
   * (metric, minute) that exists replaces it. Returns the number of rows written.
   */
  importRows(rows: Iterable<RollupRow>): number {
    let n = 0;
    // Two things make bulk import fast: rows are written in key order (metric, minute), so
    // each metric's rows append at the end of its key range instead of splitting pages all
    // over the tree (history files are usually ordered by time, all metrics interleaved),
    // and they go IMPORT_BATCH at a time through one multi-row statement, because the
    // per-call overhead of better-sqlite3 dominates single-row inserts.
    let chunk: [number, number, number, number, number, number, number][] = [];
    const write = () => {
      chunk.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let i = 0;
      const buf: number[] = [];
      for (; i + IMPORT_BATCH <= chunk.length; i += IMPORT_BATCH) {
        buf.length = 0;
        for (let j = i; j < i + IMPORT_BATCH; j++) buf.push(...chunk[j]!);
        this.st.replaceBatch.run(buf);
      }
      for (; i < chunk.length; i++) this.st.replace.run(chunk[i]!);
      chunk = [];
    };
    const tx = this.db.transaction(() => {
      for (const r of rows) {
        const err = validateRow(r);
        if (err) throw new Error(`importRows: row ${n}: ${err}`);
        chunk.push([this.metricId(r.metric), Math.floor(r.ts / MINUTE_MS), r.min, r.max, r.mean, r.last, r.count]);
        n++;
        if (chunk.length >= IMPORT_CHUNK) write();
      }
      write();
    });
    tx();
    return n;
  }

  /** Metric names that have data (on disk or in the current minute), sorted. */
  metrics(): string[] {
    const out = new Set(this.acc.keys());
    for (const [name, id] of this.ids) if (this.st.hasRows.get(id)) out.add(name);
    return [...out].sort();
  }

  /**
   * Points of `metric` with fromMs ≤ ts < toMs, oldest first. Without `step` one point per
   * stored minute; with `step` (a multiple of 60000 ms) minutes are merged into buckets
   * aligned to multiples of step since the epoch (min of mins, max of maxes, count-weighted
   * mean, the latest minute's last). Minutes with no data give no point (never filled in).
   */
  query(metric: string, fromMs: number, toMs: number, step?: number): RollupPoint[] {
    if (!Number.isFinite(fromMs) || !Number.isFinite(toMs)) throw new Error('query: fromMs and toMs must be finite');
    if (step !== undefined && !(Number.isInteger(step) && step > 0 && step % MINUTE_MS === 0)) {
      throw new Error(`query: step must be a positive multiple of ${MINUTE_MS} ms, got ${step}`);
    }
    const minutes = this.minuteRows(metric, Math.ceil(fromMs / MINUTE_MS), Math.ceil(toMs / MINUTE_MS));
    if (step === undefined || step === MINUTE_MS) return minutes;
    const out: RollupPoint[] = [];
    for (const p of minutes) {
      const bucket = Math.floor(p.ts / step) * step;
      const cur = out[out.length - 1];
      if (cur && cur.ts === bucket) out[out.length - 1] = mergePoints(cur, { ...p, ts: bucket });
      else out.push({ ...p, ts: bucket });
    }
    return out;
  }

  /**
   * The latest point of `metric` with fromMs ≤ ts < toMs — by definition the last element of
   * query(metric, fromMs, toMs), found with one index seek instead of reading the range (the disk
   * features read a daily snapshot from 21 days of sparse SMART minutes on every score).
   */
  last(metric: string, fromMs: number, toMs: number): RollupPoint | undefined {
    if (!Number.isFinite(fromMs) || !Number.isFinite(toMs)) throw new Error('last: fromMs and toMs must be finite');
    const fromMinute = Math.ceil(fromMs / MINUTE_MS);
    const toMinute = Math.ceil(toMs / MINUTE_MS);
    const m = this.accMinute;
    // The in-memory minute is the newest minute there is; if it falls in the range it is (part of) the answer.
    if (m !== undefined && this.acc.has(metric) && m >= fromMinute && m < toMinute) {
      const pts = this.minuteRows(metric, m, m + 1);
      return pts[pts.length - 1];
    }
    const id = this.ids.get(metric);
    if (id === undefined) return undefined;
    const r = this.st.latest.get(id, fromMinute, toMinute) as { minute: number; min: number; max: number; mean: number; last: number; count: number } | undefined;
    return r ? { ts: r.minute * MINUTE_MS, min: r.min, max: r.max, mean: r.mean, last: r.last, count: r.count } : undefined;
  }

  /** Stored minutes [fromMinute, toMinute) of one metric, with the in-memory minute merged in. */
  private minuteRows(metric: string, fromMinute: number, toMinute: number): RollupPoint[] {
    const id = this.ids.get(metric);
    const out: RollupPoint[] = [];
    if (id !== undefined) {
      for (const r of this.st.range.iterate(id, fromMinute, toMinute) as Iterable<{ minute: number; min: number; max: number; mean: number; last: number; count: number }>) {
        out.push({ ts: r.minute * MINUTE_MS, min: r.min, max: r.max, mean: r.mean, last: r.last, count: r.count });
      }
    }
    const a = this.acc.get(metric);
    const m = this.accMinute;
    if (a && m !== undefined && m >= fromMinute && m < toMinute) {
      const live: RollupPoint = { ts: m * MINUTE_MS, min: a.min, max: a.max, mean: a.sum / a.count, last: a.last, count: a.count };
      const i = out.findIndex((p) => p.ts >= live.ts);
      if (i < 0) out.push(live);
      else if (out[i]!.ts === live.ts) out[i] = mergePoints(out[i]!, live);
      else out.splice(i, 0, live);
    }
    return out;
  }

  /** Drops every row older than now − retention. Returns the number of rows deleted. */
  prune(now = this.now()): number {
    const cutoff = Math.floor((now - this.retentionDays * DAY_MS) / MINUTE_MS);
    let n = 0;
    const tx = this.db.transaction(() => {
      for (const id of this.ids.values()) n += this.st.pruneOne.run(id, cutoff).changes;
    });
    tx();
    return n;
  }

  /** Runs prune() now and then every pruneIntervalMs (the timer does not keep the process alive). */
  startRetention(): void {
    if (this.pruneTimer) return;
    this.prune();
    this.pruneTimer = setInterval(() => this.prune(), this.pruneIntervalMs);
    this.pruneTimer.unref();
  }

  stopRetention(): void {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.pruneTimer = undefined;
  }

  storageStats(): StorageStats {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    const usedBytes = (pages - free) * pageSize;
    const rows = (this.db.prepare('SELECT count(*) AS n FROM rollup').get() as { n: number }).n;
    let lo: number | undefined;
    let hi: number | undefined;
    for (const id of this.ids.values()) {
      const b = this.st.bounds.get(id) as { lo: number | null; hi: number | null };
      if (b.lo !== null && (lo === undefined || b.lo < lo)) lo = b.lo;
      if (b.hi !== null && (hi === undefined || b.hi > hi)) hi = b.hi;
    }
    const stats: StorageStats = { usedBytes, rows, metrics: this.metrics().length, coveredDays: 0 };
    if (lo !== undefined && hi !== undefined) {
      stats.firstTs = lo * MINUTE_MS;
      stats.lastTs = hi * MINUTE_MS;
      stats.coveredDays = (hi - lo + 1) / 1440;
      stats.bytesPerDay = usedBytes / stats.coveredDays;
    }
    if (rows > 0) stats.bytesPerRow = usedBytes / rows;
    return stats;
  }

  /** Storage used per day of covered time (bytes); undefined while the store is empty. */
  bytesPerDay(): number | undefined {
    return this.storageStats().bytesPerDay;
  }

  /** CSV lines (header first) of every metric's minutes with fromMs ≤ ts < toMs, by metric then time. */
  *exportLines(fromMs: number, toMs: number): Generator<string> {
    yield CSV_HEADER;
    for (const name of this.metrics()) {
      for (const p of this.query(name, fromMs, toMs)) {
        yield `${p.ts},${name},${p.min},${p.max},${p.mean},${p.last},${p.count}`;
      }
    }
  }

  /** Our CSV format `ts,metric,min,max,mean,last,count`, one line per metric-minute, newline-terminated. */
  export(fromMs: number, toMs: number): string {
    let s = '';
    for (const line of this.exportLines(fromMs, toMs)) s += line + '\n';
    return s;
  }

  close(): void {
    this.stopRetention();
    this.flush();
    this.db.close();
  }
}

/** Why a roll-up row is unacceptable, or undefined when it is fine. */
export function validateRow(r: RollupRow): string | undefined {
  if (!r || typeof r !== 'object') return 'not an object';
  if (typeof r.metric !== 'string' || !METRIC_NAME.test(r.metric)) return `invalid metric name ${JSON.stringify(r.metric)}`;
  if (!Number.isFinite(r.ts)) return `ts is not a finite number (${r.ts})`;
  for (const k of ['min', 'max', 'mean', 'last'] as const) {
    if (typeof r[k] !== 'number' || !Number.isFinite(r[k])) return `${k} is not a finite number (${r[k]})`;
  }
  if (!Number.isInteger(r.count) || r.count < 1) return `count must be a positive integer (${r.count})`;
  if (r.min > r.max) return `min ${r.min} > max ${r.max}`;
  return undefined;
}
