// A storage server's telemetry: the collector (OS, SMART, the server's own I/O path), the
// per-minute store at <dir>/telemetry.sqlite, per-segment heat for hot/cold decisions, and
// the Prometheus registry behind /metrics. The request handler feeds onComplete() and
// onReplicated() on every request; the collector drains one interval's worth each sample.

import path from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { Flag, Op, Status, STATUS_NAMES } from '../protocol/messages.ts';
import { TelemetryCollector } from '../telemetry/collector.ts';
import { importHistory, type HistorySpec, type ImportReport } from '../telemetry/history-import.ts';
import { bridgeCollector, createServerMetrics, type IoErrorKind, type IoOp, type ServerMetrics } from '../telemetry/prometheus.ts';
import { CSV_HEADER, DAY_MS, MINUTE_MS, TimeSeriesStore, validateRow, type RollupRow, type Sample, type StorageStats } from '../telemetry/tsdb.ts';

// ---------------------------------------------------------------------------------------------
// Latency over one interval

/**
 * Latencies of one sampling interval: the exact count and max, and a uniform reservoir of at
 * most `cap` values for the percentiles (Vitter's algorithm R), so memory stays bounded however
 * many requests arrive.
 */
export class LatencyReservoir {
  count = 0;
  max = 0;
  private readonly values: number[] = [];

  constructor(private readonly cap = 4096, private readonly random: () => number = Math.random) {}

  add(ms: number): void {
    this.count++;
    if (ms > this.max) this.max = ms;
    if (this.values.length < this.cap) this.values.push(ms);
    else {
      const j = Math.floor(this.random() * this.count);
      if (j < this.cap) this.values[j] = ms;
    }
  }

  /** Nearest-rank percentile (q in 0..1); undefined when empty. */
  percentile(q: number): number | undefined {
    if (this.values.length === 0) return undefined;
    const s = [...this.values].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
  }

  reset(): void {
    this.count = 0;
    this.max = 0;
    this.values.length = 0;
  }
}

/**
 * The registry's text exposition. prom-client writes NaN as "Nan" (e.g. the event-loop lag
 * gauges before their first sample), which strict parsers reject: it is written as "NaN".
 */
export async function prometheusText(registry: Registry): Promise<string> {
  return (await registry.metrics()).replace(/ Nan$/gm, ' NaN');
}

// ---------------------------------------------------------------------------------------------
// Segment heat

export interface SegmentHeat {
  segmentId: string;
  readsPerSec: number;
  writesPerSec: number;
  bytesPerSec: number;
}

interface HeatState {
  reads: number;
  writes: number;
  bytes: number;
  at: number;
}

/**
 * Per-segment access rates as exponentially decayed event rates: each event adds 1/τ and the
 * value decays by e^(−Δt/τ), so a steady rate r reads as r (after a few τ) and a segment that
 * goes quiet cools off with time constant τ. Exact in continuous time: no ticks to miss.
 */
export class HeatTracker {
  private readonly map = new Map<string, HeatState>();
  private readonly tauSec: number;

  constructor(readonly tauMs = 60_000, private readonly now: () => number = Date.now) {
    if (!(tauMs > 0)) throw new Error(`heat time constant must be > 0 ms, got ${tauMs}`);
    this.tauSec = tauMs / 1000;
  }

  private decayed(s: HeatState, now: number): HeatState {
    const f = Math.exp(-Math.max(0, now - s.at) / this.tauMs);
    return { reads: s.reads * f, writes: s.writes * f, bytes: s.bytes * f, at: now };
  }

  record(segmentId: string, kind: 'read' | 'write', bytes: number): void {
    const now = this.now();
    const cur = this.map.get(segmentId);
    const s = cur ? this.decayed(cur, now) : { reads: 0, writes: 0, bytes: 0, at: now };
    if (kind === 'read') s.reads += 1 / this.tauSec;
    else s.writes += 1 / this.tauSec;
    s.bytes += bytes / this.tauSec;
    this.map.set(segmentId, s);
  }

  /** Every tracked segment plus `include` (cold ones at 0), hottest first (ops/s, then bytes/s). */
  list(include: Iterable<string> = []): SegmentHeat[] {
    const now = this.now();
    const out = new Map<string, SegmentHeat>();
    for (const id of include) out.set(id, { segmentId: id, readsPerSec: 0, writesPerSec: 0, bytesPerSec: 0 });
    for (const [id, s] of this.map) {
      const d = this.decayed(s, now);
      // Forget segments that have been cold for a long time (≈ 30 τ): bounded memory.
      if (d.reads + d.writes < 1e-12 && d.bytes < 1e-9) {
        this.map.delete(id);
        continue;
      }
      out.set(id, { segmentId: id, readsPerSec: d.reads, writesPerSec: d.writes, bytesPerSec: d.bytes });
    }
    return [...out.values()].sort((a, b) => b.readsPerSec + b.writesPerSec - (a.readsPerSec + a.writesPerSec) || b.bytesPerSec - a.bytesPerSec || a.segmentId.localeCompare(b.segmentId));
  }
}

// ---------------------------------------------------------------------------------------------
// Time and step parsing for the history API and the CLI

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: MINUTE_MS, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS };

/** "90s", "5m", "1h", "30d" → ms; throws on anything else. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text.trim());
  if (!m) throw new Error(`invalid duration ${JSON.stringify(text)} (expected e.g. 90s, 5m, 1h, 30d)`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/**
 * A point in time: ms since the epoch ("1718000000000"), an ISO 8601 date or date-time
 * ("2024-06-10", "2024-06-10T12:00:00Z"), "now", or relative to now ("-1h", "now-30m").
 */
export function parseTime(text: string, now: number = Date.now()): number {
  const t = text.trim();
  if (/^\d+$/.test(t)) return Number(t);
  if (t === 'now') return now;
  const rel = /^(?:now)?-(.+)$/.exec(t);
  if (rel) return now - parseDuration(rel[1]!);
  if (/^\d{4}-\d{2}-\d{2}/.test(t)) {
    const ms = Date.parse(t);
    if (Number.isFinite(ms)) return ms;
  }
  throw new Error(`invalid time ${JSON.stringify(text)} (expected ms since the epoch, an ISO date, "now" or "-1h")`);
}

/** A query step: ms ("300000") or a duration ("5m"); must be a positive multiple of one minute. */
export function parseStep(text: string): number {
  const t = text.trim();
  const ms = /^\d+$/.test(t) ? Number(t) : parseDuration(t);
  if (!(ms > 0) || ms % MINUTE_MS !== 0) throw new Error(`step must be a positive multiple of 1 minute (60000 ms), got ${JSON.stringify(text)}`);
  return ms;
}

/** Parses our export CSV (`ts,metric,min,max,mean,last,count`) held in memory; throws naming the bad line. */
export function parseOwnCsv(text: string): RollupRow[] {
  const lines = text.split(/\r?\n/);
  if (lines[0]?.trim() !== CSV_HEADER) throw new Error(`expected header "${CSV_HEADER}", got "${(lines[0] ?? '').slice(0, 100)}"`);
  const rows: RollupRow[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const f = line.split(',');
    if (f.length !== 7) throw new Error(`line ${i + 1}: expected 7 fields, got ${f.length}`);
    const num = (s: string) => (s.trim() === '' ? NaN : Number(s));
    const row: RollupRow = { ts: num(f[0]!), metric: f[1]!, min: num(f[2]!), max: num(f[3]!), mean: num(f[4]!), last: num(f[5]!), count: num(f[6]!) };
    const err = validateRow(row);
    if (err) throw new Error(`line ${i + 1}: ${err}`);
    rows.push(row);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// The server's telemetry

export interface ServerTelemetryOptions {
  /** The server's data directory: the store is <dir>/telemetry.sqlite. */
  dir: string;
  /** Sampling interval (default 5000 ms). */
  intervalMs?: number;
  /** Days of per-minute history kept (default 35). */
  retentionDays?: number;
  /** SMART device, 'auto' (the data directory's disk; the default) or false. */
  smartDevice?: string | 'auto' | false;
  smartIntervalMs?: number;
  /** Time constant of the segment heat rates (default 60 s). */
  heatTimeConstantMs?: number;
  /** OS metrics from /proc (default true). */
  osMetrics?: boolean;
  /** Segment replicas held here. */
  segments?: () => string[];
  /** Blocks found corrupt by scrub since start (Scrubber.stats.corruptFound). */
  scrubCorrupt?: () => number;
  /** Extra metrics merged into each sample (fault injection's SMART-like counters). */
  extraSource?: () => Record<string, number>;
  /** Path of the SQLite file (default <dir>/telemetry.sqlite; ':memory:' for tests). */
  storeFile?: string;
  now?: () => number;
  onError?: (source: string, err: unknown) => void;
}

type OpKey = 'read' | 'write' | 'flush' | 'trim';

interface OpWindow {
  count: number;
  bytes: number;
  latency: LatencyReservoir;
}

const DATA_OPS: Partial<Record<Op, OpKey>> = { [Op.READ]: 'read', [Op.WRITE]: 'write', [Op.FLUSH]: 'flush', [Op.TRIM]: 'trim' };
/** Answers that are part of normal operation, not errors: the client follows them. */
const REDIRECTS = new Set<Status>([Status.STALE, Status.NOT_OWNER]);

function errorKind(status: Status): IoErrorKind {
  switch (status) {
    case Status.IO_ERROR: return 'io';
    case Status.CORRUPT: return 'checksum';
    case Status.STALE:
    case Status.NOT_OWNER: return 'stale';
    default: return 'other';
  }
}

export interface StorageReport extends StorageStats {
  file: string;
  retentionDays: number;
  /** bytesPerDay × retentionDays: the size the store settles at. */
  projectedBytesAtRetention?: number;
}

export class ServerTelemetry {
  readonly store: TimeSeriesStore;
  readonly collector: TelemetryCollector;
  readonly registry = new Registry();
  readonly prom: ServerMetrics;
  readonly heat: HeatTracker;
  readonly file: string;
  private readonly now: () => number;
  private window = this.newWindow();
  private windowStart: number;
  private readonly totals = { corruptReads: 0, scrubCorruptSeen: 0 };
  private detachBridge: (() => void) | undefined;
  private started = false;

  constructor(private readonly opts: ServerTelemetryOptions) {
    this.now = opts.now ?? Date.now;
    this.windowStart = this.now();
    this.file = opts.storeFile ?? path.join(opts.dir, 'telemetry.sqlite');
    this.store = new TimeSeriesStore(this.file, { retentionDays: opts.retentionDays ?? 35, now: this.now });
    this.heat = new HeatTracker(opts.heatTimeConstantMs ?? 60_000, this.now);
    this.collector = new TelemetryCollector({
      store: this.store,
      intervalMs: opts.intervalMs ?? 5000,
      os: { dataDir: opts.dir },
      sampler: opts.osMetrics === false ? false : undefined,
      smartDevice: opts.osMetrics === false ? false : (opts.smartDevice ?? 'auto'),
      smartIntervalMs: opts.smartIntervalMs,
      now: this.now,
      onError: opts.onError,
    });
    collectDefaultMetrics({ register: this.registry });
    this.prom = createServerMetrics(this.registry);
    this.collector.addSource('io', () => this.drainWindow());
    this.collector.addSource('server', () => this.serverValues());
    if (opts.extraSource) this.collector.addSource('faults', opts.extraSource);
  }

  private newWindow() {
    const op = (): OpWindow => ({ count: 0, bytes: 0, latency: new LatencyReservoir() });
    return {
      ops: { read: op(), write: op(), flush: op(), trim: op() } as Record<OpKey, OpWindow>,
      replicaWrites: 0,
      replicaBytes: 0,
      copyBytes: 0,
      errors: new Map<Status, number>(),
      redirects: 0,
      lag: new LatencyReservoir(1024),
      forward: new LatencyReservoir(1024),
    };
  }

  /** The request handler's hook: one finished data-protocol request. */
  onComplete(op: Op, status: Status, bytes: number, ms: number, segmentId: string, flags = 0): void {
    const w = this.window;
    const key = DATA_OPS[op];
    const internal = (flags & (Flag.FORWARDED | Flag.COPY)) !== 0;
    if (status === Status.CORRUPT) this.totals.corruptReads++;
    if (status !== Status.OK) {
      if (REDIRECTS.has(status)) w.redirects++;
      else w.errors.set(status, (w.errors.get(status) ?? 0) + 1);
      if (key && !internal) this.prom.observeError(key, errorKind(status));
      return;
    }
    if (!key) return; // control ops (CHECKSUMS, STAT, PAUSE, RESUME)
    if ((flags & Flag.COPY) !== 0) {
      w.copyBytes += bytes;
      return;
    }
    if ((flags & Flag.FORWARDED) !== 0) {
      // A replica applying the primary's write: disk work here, but not a client request.
      if (key === 'write' || key === 'trim') {
        w.replicaWrites++;
        w.replicaBytes += bytes;
      }
      return;
    }
    const o = w.ops[key];
    o.count++;
    o.bytes += bytes;
    o.latency.add(ms);
    this.prom.observeIo(key, ms / 1000, bytes);
    if (key === 'read' || key === 'write') this.heat.record(segmentId, key, bytes);
  }

  /** The request handler's hook: a replicated write finished everywhere. */
  onReplicated(_segmentId: string, lagMs: number, forwardMs: number): void {
    this.window.lag.add(lagMs);
    this.window.forward.add(forwardMs);
  }

  /** One interval's I/O values (rates over the time since the previous sample); resets the window. */
  private drainWindow(): Record<string, number> {
    const now = this.now();
    const dt = Math.max(1, now - this.windowStart) / 1000;
    const w = this.window;
    this.window = this.newWindow();
    this.windowStart = now;
    const v: Record<string, number> = {};
    for (const key of ['read', 'write', 'flush', 'trim'] as const) {
      const o = w.ops[key];
      v[`io_${key}_iops`] = o.count / dt;
      if (key === 'read' || key === 'write') {
        v[`io_${key}_bytes_per_s`] = o.bytes / dt;
        // No requests, no latency: absent rather than 0 (never invented).
        if (o.count > 0) {
          v[`io_${key}_latency_p50_ms`] = o.latency.percentile(0.5)!;
          v[`io_${key}_latency_p99_ms`] = o.latency.percentile(0.99)!;
          v[`io_${key}_latency_max_ms`] = o.latency.max;
        }
      }
    }
    v.io_replica_write_iops = w.replicaWrites / dt;
    v.io_replica_write_bytes_per_s = w.replicaBytes / dt;
    v.io_copy_bytes_per_s = w.copyBytes / dt;
    let errors = 0;
    for (const s of [Status.IO_ERROR, Status.CORRUPT, Status.UNAVAILABLE, Status.OUT_OF_RANGE, Status.BAD_REQUEST, Status.NO_SPACE]) {
      const n = w.errors.get(s) ?? 0;
      // Only failures of this server's own storage count as its errors: UNAVAILABLE is the cluster's
      // state (a peer replica died, a lease lapsed) and the others are the client's mistakes. Counting
      // them made every survivor of a peer's death look like it was failing itself. A full disk
      // (NO_SPACE) is a capacity state, not a failing drive: shown, never fed to the failure models.
      if (s === Status.IO_ERROR || s === Status.CORRUPT) errors += n;
      v[`io_errors_${STATUS_NAMES[s]!.toLowerCase()}_per_s`] = n / dt;
    }
    v.io_errors_per_s = errors / dt;
    v.io_redirects_per_s = w.redirects / dt;
    if (w.lag.count > 0) {
      v.replication_lag_ms = w.lag.max;
      v.replication_lag_p50_ms = w.lag.percentile(0.5)!;
      v.replication_forward_latency_p99_ms = w.forward.percentile(0.99)!;
    }
    return v;
  }

  private serverValues(): Record<string, number> {
    const v: Record<string, number> = {};
    const scrub = this.opts.scrubCorrupt?.() ?? 0;
    if (scrub > this.totals.scrubCorruptSeen) this.prom.checksumFailures.inc(scrub - this.totals.scrubCorruptSeen);
    this.totals.scrubCorruptSeen = scrub;
    v.checksum_failures_read_total = this.totals.corruptReads;
    v.checksum_failures_scrub_total = scrub;
    v.checksum_failures_total = this.totals.corruptReads + scrub;
    if (this.opts.segments) {
      const n = this.opts.segments().length;
      v.segments = n;
      this.prom.segments.set(n);
    }
    return v;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.detachBridge = bridgeCollector(this.registry, this.collector);
    this.store.startRetention();
    this.collector.start();
  }

  async stop(): Promise<void> {
    await this.collector.stop();
    this.detachBridge?.();
    this.store.close();
  }

  /** Hottest segments first; every local segment is listed (cold ones at 0). */
  segmentHeat(): SegmentHeat[] {
    return this.heat.list(this.opts.segments?.() ?? []);
  }

  /** The latest sample (taking one now if none was taken yet). */
  async latest(): Promise<Sample> {
    return this.collector.latest() ?? (await this.collector.sampleOnce());
  }

  storageReport(): StorageReport {
    const s = this.store.storageStats();
    return {
      file: this.file, retentionDays: this.store.retentionDays, ...s,
      projectedBytesAtRetention: s.bytesPerDay !== undefined ? Math.round(s.bytesPerDay * this.store.retentionDays) : undefined,
    };
  }

  /** Loads our export CSV held in memory (shiftMs is added to every ts). */
  importCsv(text: string, shiftMs = 0): { rowsImported: number; metrics: string[]; firstTs?: number; lastTs?: number; spanDays: number } {
    const rows = parseOwnCsv(text);
    if (shiftMs) for (const r of rows) r.ts += shiftMs;
    const n = this.store.importRows(rows);
    const metrics = [...new Set(rows.map((r) => r.metric))].sort();
    let first: number | undefined;
    let last: number | undefined;
    for (const r of rows) {
      if (first === undefined || r.ts < first) first = r.ts;
      if (last === undefined || r.ts > last) last = r.ts;
    }
    return { rowsImported: n, metrics, firstTs: first, lastTs: last, spanDays: first === undefined ? 0 : (last! - first + MINUTE_MS) / DAY_MS };
  }

  /** Loads a history file on this machine (own export, Perseus host, Backblaze drive). */
  importFile(spec: HistorySpec, shiftMs = 0): Promise<ImportReport> {
    return importHistory(this.store, spec, shiftMs ? { shiftMs } : {});
  }
}
