/**
 * Streaming loaders for the real failure datasets in ../shared/data (gzip CSV).
 * Files are read line by line through zlib + readline; only the parsed, typed
 * per-drive arrays are kept. Row readers are async generators; `load*` helpers
 * group rows into per-drive histories.
 */
import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { createInterface } from 'node:readline';

/** Split one CSV line; handles double-quoted fields with "" escapes. */
export function splitCsvLine(line: string): string[] {
  if (!line.includes('"')) return line.split(',');
  const out: string[] = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q) {
      if (c === '"') {
        if (line[i + 1] === '"') {
          cur += '"';
          i++;
        } else q = false;
      } else cur += c;
    } else if (c === '"') q = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Empty cell = not reported = NaN. */
function num(s: string | undefined): number {
  if (s === undefined || s === '') return NaN;
  const v = Number(s);
  return v;
}

export interface CsvRecord {
  /** 1-based line number in the file (header is line 1). */
  line: number;
  cells: string[];
}

/**
 * Stream the rows of a CSV (gzip if the name ends in .gz), checking that the
 * header has the required columns. Yields the header index map once via `onHeader`.
 */
export async function* readCsv(path: string, required: string[], onHeader?: (index: Map<string, number>) => void): AsyncGenerator<CsvRecord> {
  try {
    await access(path);
  } catch {
    throw new Error(`dataset not found: ${path}`);
  }
  const raw = createReadStream(path);
  const input = path.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  const gzErr: { e?: Error } = {};
  input.on('error', (e: Error) => (gzErr.e = e));
  const rl = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  let index: Map<string, number> | null = null;
  try {
    for await (const line of rl) {
      lineNo++;
      if (index === null) {
        const cols = splitCsvLine(line.replace(/^\uFEFF/, ''));
        index = new Map(cols.map((c, i) => [c.trim(), i]));
        const missing = required.filter((c) => !index!.has(c));
        if (missing.length) throw new Error(`${path}: header lacks column(s) ${missing.join(', ')}`);
        onHeader?.(index);
        continue;
      }
      if (line.length === 0) continue;
      yield { line: lineNo, cells: splitCsvLine(line) };
    }
  } finally {
    rl.close();
    raw.destroy();
  }
  if (gzErr.e) throw new Error(`${path}: ${gzErr.e.message}`);
  if (index === null) throw new Error(`${path}: empty file`);
}

// ---------------------------------------------------------------- Backblaze

/** SMART raw attributes present as columns in both Backblaze files, in column order. */
export const BACKBLAZE_SMART = [1, 5, 7, 9, 187, 188, 194, 197, 198, 199, 240, 241, 242] as const;
export type SmartId = (typeof BACKBLAZE_SMART)[number];

export interface BackblazeRow {
  date: string;
  /** Days since 1970-01-01 (UTC). */
  day: number;
  serial: string;
  model: string;
  failure: 0 | 1;
  /** Raw SMART values in BACKBLAZE_SMART order; NaN = not reported. */
  smart: Float64Array;
}

export function dayNumber(date: string): number {
  const t = Date.parse(`${date}T00:00:00Z`);
  if (Number.isNaN(t)) throw new Error(`bad date ${date}`);
  return Math.round(t / 86_400_000);
}

export async function* readBackblaze(path: string, opts: { limit?: number } = {}): AsyncGenerator<BackblazeRow> {
  const cols = ['date', 'serial_number', 'model', 'failure', ...BACKBLAZE_SMART.map((s) => `smart_${s}_raw`)];
  let idx: number[] = [];
  let n = 0;
  for await (const rec of readCsv(path, cols, (h) => (idx = cols.map((c) => h.get(c)!)))) {
    if (opts.limit !== undefined && n >= opts.limit) return;
    const c = rec.cells;
    const failure = c[idx[3]];
    if (failure !== '0' && failure !== '1') throw new Error(`${path}:${rec.line}: failure must be 0 or 1, got ${JSON.stringify(failure)}`);
    const smart = new Float64Array(BACKBLAZE_SMART.length);
    for (let k = 0; k < BACKBLAZE_SMART.length; k++) smart[k] = num(c[idx[4 + k]]);
    const date = c[idx[0]];
    yield { date, day: dayNumber(date), serial: c[idx[1]], model: c[idx[2]], failure: failure === '1' ? 1 : 0, smart };
    n++;
  }
}

export interface DriveHistory {
  serial: string;
  model: string;
  /** Day numbers, ascending. */
  days: Int32Array;
  /** smart[k][i]: attribute BACKBLAZE_SMART[k] on days[i]. */
  smart: Float64Array[];
  /** Whether the drive has a failure=1 row (its last operational day). */
  failed: boolean;
  /** Day of the failure row, or NaN. */
  failDay: number;
}

/**
 * Group a Backblaze file into per-drive histories sorted by day. Rows after a
 * failure row (should not exist) and duplicate days are rejected with an error.
 */
export async function loadBackblazeDrives(path: string, opts: { limit?: number } = {}): Promise<DriveHistory[]> {
  interface Acc {
    model: string;
    days: number[];
    vals: number[][];
    failDay: number;
  }
  const by = new Map<string, Acc>();
  for await (const r of readBackblaze(path, opts)) {
    let a = by.get(r.serial);
    if (!a) {
      a = { model: r.model, days: [], vals: BACKBLAZE_SMART.map(() => []), failDay: NaN };
      by.set(r.serial, a);
    }
    a.days.push(r.day);
    for (let k = 0; k < BACKBLAZE_SMART.length; k++) a.vals[k].push(r.smart[k]);
    if (r.failure === 1) a.failDay = Number.isNaN(a.failDay) ? r.day : Math.max(a.failDay, r.day);
  }
  const out: DriveHistory[] = [];
  for (const [serial, a] of by) {
    const order = a.days.map((_, i) => i).sort((x, y) => a.days[x] - a.days[y]);
    const days = Int32Array.from(order, (i) => a.days[i]);
    for (let i = 1; i < days.length; i++) if (days[i] === days[i - 1]) throw new Error(`${path}: drive ${serial} has two rows for day ${days[i]}`);
    if (!Number.isNaN(a.failDay) && days[days.length - 1] !== a.failDay) {
      throw new Error(`${path}: drive ${serial} has rows after its failure day`);
    }
    out.push({
      serial,
      model: a.model,
      days,
      smart: a.vals.map((v) => Float64Array.from(order, (i) => v[i])),
      failed: !Number.isNaN(a.failDay),
      failDay: a.failDay,
    });
  }
  out.sort((x, y) => (x.serial < y.serial ? -1 : x.serial > y.serial ? 1 : 0));
  return out;
}

// ---------------------------------------------------------------- Perseus

export interface PerseusRow {
  cluster: string;
  host: number;
  disk: number;
  date: string;
  /** Unix seconds at the start of the minute. */
  ts: number;
  throughput: number;
  latencyMean: number;
  latencyMax: number;
  nSamples: number;
  nMissing: number;
  slow: 0 | 1;
}

export async function* readPerseus(path: string, opts: { limit?: number } = {}): AsyncGenerator<PerseusRow> {
  const cols = ['cluster', 'host', 'disk', 'date', 'minute_ts', 'throughput_mean', 'latency_mean', 'latency_max', 'n_samples', 'n_missing', 'slow_drive'];
  let idx: number[] = [];
  let n = 0;
  for await (const rec of readCsv(path, cols, (h) => (idx = cols.map((c) => h.get(c)!)))) {
    if (opts.limit !== undefined && n >= opts.limit) return;
    const c = rec.cells;
    const host = Number(c[idx[1]]);
    const disk = Number(c[idx[2]]);
    const ts = Number(c[idx[4]]);
    if (!Number.isInteger(host) || !Number.isInteger(disk) || !Number.isFinite(ts)) {
      throw new Error(`${path}:${rec.line}: bad host/disk/minute_ts`);
    }
    yield {
      cluster: c[idx[0]],
      host,
      disk,
      date: c[idx[3]],
      ts,
      throughput: num(c[idx[5]]),
      latencyMean: num(c[idx[6]]),
      latencyMax: num(c[idx[7]]),
      nSamples: num(c[idx[8]]),
      nMissing: num(c[idx[9]]),
      slow: c[idx[10]] === '1' ? 1 : 0,
    };
    n++;
  }
}

export interface PerseusDrive {
  host: number;
  disk: number;
  slow: boolean;
  ts: Float64Array;
  throughput: Float64Array;
  latencyMean: Float64Array;
  latencyMax: Float64Array;
}

/** Group the per-minute Perseus file into per-drive series sorted by time. */
export async function loadPerseusDrives(path: string, opts: { limit?: number } = {}): Promise<PerseusDrive[]> {
  const by = new Map<string, { host: number; disk: number; slow: boolean; ts: number[]; tp: number[]; lm: number[]; lx: number[] }>();
  for await (const r of readPerseus(path, opts)) {
    const key = `${r.host}/${r.disk}`;
    let a = by.get(key);
    if (!a) {
      a = { host: r.host, disk: r.disk, slow: false, ts: [], tp: [], lm: [], lx: [] };
      by.set(key, a);
    }
    if (r.slow) a.slow = true;
    a.ts.push(r.ts);
    a.tp.push(r.throughput);
    a.lm.push(r.latencyMean);
    a.lx.push(r.latencyMax);
  }
  const out: PerseusDrive[] = [];
  for (const a of by.values()) {
    const order = a.ts.map((_, i) => i).sort((x, y) => a.ts[x] - a.ts[y]);
    out.push({
      host: a.host,
      disk: a.disk,
      slow: a.slow,
      ts: Float64Array.from(order, (i) => a.ts[i]),
      throughput: Float64Array.from(order, (i) => a.tp[i]),
      latencyMean: Float64Array.from(order, (i) => a.lm[i]),
      latencyMax: Float64Array.from(order, (i) => a.lx[i]),
    });
  }
  out.sort((x, y) => x.host - y.host || x.disk - y.disk);
  return out;
}

export interface SlowDriveLabel {
  cluster: string;
  host: number;
  workload: string;
  disk: number;
}

export async function readPerseusSlowDrives(path: string): Promise<SlowDriveLabel[]> {
  const cols = ['cluster', 'host', 'workload', 'disk'];
  let idx: number[] = [];
  const out: SlowDriveLabel[] = [];
  for await (const rec of readCsv(path, cols, (h) => (idx = cols.map((c) => h.get(c)!)))) {
    const c = rec.cells;
    out.push({ cluster: c[idx[0]], host: Number(c[idx[1]]), workload: c[idx[2]], disk: Number(c[idx[3]]) });
  }
  return out;
}

// ---------------------------------------------------------------- Alibaba SSD tickets

export interface SsdTicket {
  model: string;
  /** Milliseconds since epoch (the file's times are taken as UTC). */
  failureTime: number;
  app: string;
  diskId: number;
  nodeId: number;
  rackId: number;
  roomId: number;
  /** SMART at failure: column name (r_5, n_5, …) → value, only reported ones. */
  smart: Record<string, number>;
}

const TICKET_FIXED = ['model', 'failure_time', 'failure', 'app', 'disk_id', 'node_id', 'rack_id', 'machine_room_id'];

export async function* readAlibabaTickets(path: string, opts: { limit?: number } = {}): AsyncGenerator<SsdTicket> {
  let header: Map<string, number> = new Map();
  let smartCols: [string, number][] = [];
  let n = 0;
  for await (const rec of readCsv(path, TICKET_FIXED, (h) => {
    header = h;
    smartCols = [...h.entries()].filter(([k]) => !TICKET_FIXED.includes(k));
  })) {
    if (opts.limit !== undefined && n >= opts.limit) return;
    const c = rec.cells;
    const t = Date.parse(c[header.get('failure_time')!].replace(' ', 'T') + 'Z');
    if (Number.isNaN(t)) throw new Error(`${path}:${rec.line}: bad failure_time`);
    const smart: Record<string, number> = {};
    for (const [k, i] of smartCols) {
      const v = num(c[i]);
      if (!Number.isNaN(v)) smart[k] = v;
    }
    yield {
      model: c[header.get('model')!],
      failureTime: t,
      app: c[header.get('app')!],
      diskId: Number(c[header.get('disk_id')!]),
      nodeId: Number(c[header.get('node_id')!]),
      rackId: Number(c[header.get('rack_id')!]),
      roomId: Number(c[header.get('machine_room_id')!]),
      smart,
    };
    n++;
  }
}

export async function loadAlibabaTickets(path: string, opts: { limit?: number } = {}): Promise<SsdTicket[]> {
  const out: SsdTicket[] = [];
  for await (const t of readAlibabaTickets(path, opts)) out.push(t);
  return out;
}
