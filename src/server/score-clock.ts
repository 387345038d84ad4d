// The telemetry a server scores itself on. In production the models read the per-minute
// roll-ups of the time-series store as they are. For demos and tests, where a degradation must
// play out in minutes instead of hours, `timeScale` N compresses the clock: recent samples are
// rolled up in memory into buckets of 60 s / N, and the models see each bucket as one minute
// (windows, baselines and slopes are all counted in those "minutes"). The features are ratios,
// peer deviations and correlations, so they keep their meaning; the scale is reported with the
// score so nobody mistakes a compressed demo for real lead time.

import type { QueryFn, QueryPoint } from '../prediction/online-features.ts';

const MINUTE_MS = 60_000;

interface Bucket {
  min: number;
  max: number;
  sum: number;
  count: number;
  last: number;
}

export class CompressedSeries {
  readonly bucketMs: number;
  private readonly series = new Map<string, Map<number, Bucket>>();

  /** Keeps `keepMinutes` compressed minutes (default: 26 hours' worth, for the fail-slow baseline). */
  constructor(readonly timeScale: number, private readonly keepMinutes = 26 * 60) {
    if (!(timeScale >= 1)) throw new RangeError(`timeScale must be >= 1, got ${timeScale}`);
    this.bucketMs = Math.max(1, Math.round(MINUTE_MS / timeScale));
  }

  push(sample: { ts: number; values: Record<string, number> }): void {
    const b = Math.floor(sample.ts / this.bucketMs);
    for (const [metric, v] of Object.entries(sample.values)) {
      if (!Number.isFinite(v)) continue;
      let m = this.series.get(metric);
      if (!m) this.series.set(metric, (m = new Map()));
      const cur = m.get(b);
      if (cur) {
        cur.min = Math.min(cur.min, v);
        cur.max = Math.max(cur.max, v);
        cur.sum += v;
        cur.count++;
        cur.last = v;
      } else {
        m.set(b, { min: v, max: v, sum: v, count: 1, last: v });
        // Drop what fell out of the window (maps iterate oldest first).
        for (const k of m.keys()) {
          if (k > b - this.keepMinutes) break;
          m.delete(k);
        }
      }
    }
  }

  /**
   * A query function on the compressed clock ending at real time `now`: the bucket holding `now`
   * is the current minute; the bucket before it is one minute earlier, and so on.
   */
  query(now: number): QueryFn {
    const nowBucket = Math.floor(now / this.bucketMs);
    const nowMinute = Math.floor(now / MINUTE_MS) * MINUTE_MS;
    return (metric: string, fromMs: number, toMs: number): QueryPoint[] => {
      const m = this.series.get(metric);
      if (!m) return [];
      const out: QueryPoint[] = [];
      // Minutes k back from now: model time nowMinute - k·60 s ↔ real bucket nowBucket - k.
      const kFrom = Math.max(0, Math.floor((nowMinute - toMs) / MINUTE_MS) + 1);
      const kTo = Math.floor((nowMinute - fromMs) / MINUTE_MS);
      for (let k = Math.min(kTo, this.keepMinutes); k >= kFrom; k--) {
        const b = m.get(nowBucket - k);
        if (!b) continue;
        out.push({ ts: nowMinute - k * MINUTE_MS, mean: b.sum / b.count, min: b.min, max: b.max, last: b.last });
      }
      return out;
    };
  }
}
