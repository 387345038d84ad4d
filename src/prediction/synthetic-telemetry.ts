/**
 * SYNTHETIC telemetry — a test and timing fixture, never evaluation data. It produces the
 * shape of a storage server's one-minute history (the metric names of
 * src/telemetry/metrics.ts) with seeded noise and optional injected degradations, so the
 * scorer's tests and the cost benchmark have something of the right size and form.
 * Nothing measured on it says anything about how well the models predict real failures.
 */
import { mulberry32 } from '../common/prng.ts';
import { arrayQuery, DAY_MS, MINUTE_MS, type QueryFn } from './online-features.ts';

export interface SyntheticOptions {
  /** End of the history (exclusive), ms; minute-aligned. */
  now: number;
  /** Minutes of I/O / network / process history. */
  minutes: number;
  /** Days of SMART history (sampled hourly); 0 = the server has no SMART. */
  smartDays?: number;
  seed?: number;
  /** Latency ramps linearly from baseline to `toMs` over the last `minutes` minutes (slow-I/O fault). */
  slowIo?: { minutes: number; toMs: number };
  /** Heap and RSS grow by `perHour` (fraction) over the last `minutes` minutes (memory leak). */
  memLeak?: { minutes: number; perHour: number };
  /** TCP retransmit ratio over the last `minutes` minutes. */
  netLoss?: { minutes: number; retransRatio: number };
  /** SMART 5 and 197 climb over the last `days` days to these values (growing defects). */
  sectorErrors?: { days: number; reallocated: number; pending: number };
}

type Series = { t: Float64Array; v: Float64Array; max?: Float64Array };

/** A per-minute synthetic history as a map of metric → series. */
export function syntheticHistory(o: SyntheticOptions): Record<string, Series> {
  const rnd = mulberry32(o.seed ?? 1);
  const gauss = () => {
    const u = Math.max(rnd(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
  };
  const n = o.minutes;
  const start = Math.floor(o.now / MINUTE_MS) * MINUTE_MS - n * MINUTE_MS;
  const t = Float64Array.from({ length: n }, (_, i) => start + i * MINUTE_MS);
  const out: Record<string, Series> = {};
  const ramp = (i: number, last: number | undefined) => (last && i >= n - last ? (i - (n - last) + 1) / last : 0);
  const make = (f: (i: number) => number, maxFactor?: () => number) => {
    const v = Float64Array.from({ length: n }, (_, i) => f(i));
    const s: Series = { t, v };
    if (maxFactor) s.max = Float64Array.from(v, (x) => x * maxFactor());
    return s;
  };
  const lat = (base: number) => (i: number) => {
    const r = ramp(i, o.slowIo?.minutes);
    return Math.max(0.01, base * (1 + 0.1 * gauss()) + r * ((o.slowIo?.toMs ?? base) - base));
  };
  out.io_read_latency_p50_ms = make(lat(1), () => 1.2 + 0.3 * rnd());
  out.io_write_latency_p50_ms = make(lat(1.5), () => 1.2 + 0.3 * rnd());
  out.io_read_latency_p99_ms = make(lat(4));
  out.io_write_latency_p99_ms = make(lat(6));
  out.disk_read_latency_ms = make(lat(0.8), () => 1.2 + 0.3 * rnd());
  out.io_read_bytes_per_s = make(() => 50e6 * (1 + 0.2 * gauss()));
  out.io_write_bytes_per_s = make(() => 30e6 * (1 + 0.2 * gauss()));
  out.disk_read_bytes_per_s = make(() => 50e6 * (1 + 0.2 * gauss()));
  out.io_read_iops = make(() => 800 * (1 + 0.1 * gauss()));
  out.io_write_iops = make(() => 500 * (1 + 0.1 * gauss()));
  out.io_errors_per_s = make(() => 0);
  const retrans = (i: number) => (ramp(i, o.netLoss?.minutes) > 0 ? o.netLoss!.retransRatio : 0.0002 * (1 + 0.3 * Math.abs(gauss())));
  out.net_tcp_retrans_ratio = make(retrans);
  out.net_rx_packets_per_s = make(() => 20_000 * (1 + 0.1 * gauss()));
  out.net_tx_packets_per_s = make(() => 18_000 * (1 + 0.1 * gauss()));
  out.net_rx_errs_per_s = make(() => 0);
  out.net_tx_errs_per_s = make(() => 0);
  out.net_rx_drops_per_s = make(() => 0);
  out.net_tx_drops_per_s = make(() => 0);
  const mem = (base: number) => (i: number) => {
    const leakMin = o.memLeak?.minutes;
    const grown = leakMin && i >= n - leakMin ? (i - (n - leakMin)) / 60 * (o.memLeak!.perHour) : 0;
    return base * (1 + grown) * (1 + 0.01 * gauss());
  };
  out.process_heap_used_bytes = make(mem(60e6));
  out.process_rss_bytes = make(mem(150e6));
  out.mem_used_ratio = make(() => 0.45 + 0.01 * gauss());
  const days = o.smartDays ?? 0;
  if (days > 0) {
    const hours = days * 24;
    const hStart = Math.floor(o.now / DAY_MS) * DAY_MS - (days - 1) * DAY_MS;
    const ht = Float64Array.from({ length: hours }, (_, i) => hStart + i * 3_600_000).filter((x) => x < o.now);
    const H = ht.length;
    const sec = o.sectorErrors;
    const climb = (i: number, target: number) => {
      if (!sec) return 0;
      const from = H - sec.days * 24;
      return i < from ? 0 : Math.round(target * (i - from + 1) / (H - from));
    };
    const poh0 = 20_000;
    const smart = (f: (i: number) => number): Series => ({ t: ht, v: Float64Array.from({ length: H }, (_, i) => f(i)) });
    out.smart_1_raw_read_error_rate = smart(() => 0);
    out.smart_5_reallocated_sectors = smart((i) => climb(i, sec?.reallocated ?? 0));
    out.smart_9_power_on_hours = smart((i) => poh0 + i);
    out.smart_194_temperature_celsius = smart(() => 30 + Math.round(2 * rnd()));
    out.smart_197_current_pending_sectors = smart((i) => climb(i, sec?.pending ?? 0));
  }
  return out;
}

export function syntheticQuery(o: SyntheticOptions): QueryFn {
  return arrayQuery(syntheticHistory(o));
}
