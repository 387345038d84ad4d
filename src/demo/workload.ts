// A verifying random workload (the demo's, and the integration tests'): writes random data at random offsets
// through any BlockDevice, keeps an exact model of what every acknowledged write left behind,
// and checks the device byte for byte against it.

import type { BlockDevice } from '../client/block-device.ts';
import { mulberry32 as prng } from '../common/prng.ts';

// Seeded so failures are reproducible; exported under this name for the integration tests.
export { prng };

export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let i = 0;
  for (; i + 4 <= n; i += 4) b.writeUInt32LE((rand() * 4294967296) >>> 0, i);
  for (; i < n; i++) b[i] = (rand() * 256) | 0;
  return b;
}

export interface WorkloadStats {
  writes: number;
  reads: number;
  bytesWritten: number;
  errors: string[];
  /** Per-op latencies in ms, for stall measurements. */
  latencies: { at: number; ms: number; op: 'read' | 'write' }[];
}

export class VerifyingWorkload {
  /** What the device must hold, assuming every write was acknowledged. */
  readonly model: Buffer;
  /** Ranges whose write failed (not acknowledged): either the old or the new bytes are acceptable. */
  private readonly uncertain: { offset: number; before: Buffer; after: Buffer }[] = [];
  readonly stats: WorkloadStats = { writes: 0, reads: 0, bytesWritten: 0, errors: [], latencies: [] };
  private readonly rand: () => number;

  constructor(readonly dev: BlockDevice, seed = 1, readonly maxIo = 256 * 1024) {
    this.model = Buffer.alloc(dev.size);
    this.rand = prng(seed);
  }

  /** One random write inside [lo, hi); the model is updated only once it is acknowledged. */
  async writeRandom(lo = 0, hi = this.dev.size): Promise<void> {
    const len = 1 + Math.floor(this.rand() * Math.min(this.maxIo, hi - lo));
    const offset = lo + Math.floor(this.rand() * (hi - lo - len + 1));
    await this.writeAt(offset, randomBytes(this.rand, len));
  }

  async writeAt(offset: number, data: Buffer): Promise<void> {
    const before = Buffer.from(this.model.subarray(offset, offset + data.length));
    const t0 = performance.now();
    try {
      await this.dev.write(offset, data);
    } catch (err) {
      this.stats.errors.push(`write ${offset}+${data.length}: ${(err as Error).message}`);
      this.uncertain.push({ offset, before, after: Buffer.from(data) });
      return;
    } finally {
      this.stats.latencies.push({ at: Date.now(), ms: performance.now() - t0, op: 'write' });
    }
    data.copy(this.model, offset);
    this.stats.writes++;
    this.stats.bytesWritten += data.length;
  }

  /** Reads a random range and checks it against the model (ranges being written are avoided by callers). */
  async readRandomAndCheck(lo = 0, hi = this.dev.size): Promise<void> {
    const len = 1 + Math.floor(this.rand() * Math.min(this.maxIo, hi - lo));
    const offset = lo + Math.floor(this.rand() * (hi - lo - len + 1));
    const t0 = performance.now();
    let got: Buffer;
    try {
      got = await this.dev.read(offset, len);
    } catch (err) {
      this.stats.errors.push(`read ${offset}+${len}: ${(err as Error).message}`);
      return;
    } finally {
      this.stats.latencies.push({ at: Date.now(), ms: performance.now() - t0, op: 'read' });
    }
    this.stats.reads++;
    const bad = this.firstMismatch(offset, got);
    if (bad !== undefined) this.stats.errors.push(`read ${offset}+${len}: wrong data at byte ${bad}`);
  }

  /**
   * Runs `workers` concurrent loops of writes (and reads, with `readRatio`) until `until()` says stop.
   * Each worker owns its own stripes of the device so no two in-flight writes overlap and the model
   * stays exact. With `paceMs`, a worker starts at most one operation per `paceMs` (an open-ish load
   * that leaves the machine headroom, as a real fleet has; unpaced workers saturate every core, and
   * latency then measures the run queue, not the servers).
   */
  async run(opts: { workers: number; until: () => boolean; readRatio?: number; stripe?: number; hotFraction?: number; hotShare?: number; paceMs?: number }): Promise<void> {
    const stripe = opts.stripe ?? 1024 * 1024;
    const stripes = Math.floor(this.dev.size / stripe);
    if (stripes < opts.workers) throw new Error('device too small for that many workers');
    await Promise.all(Array.from({ length: opts.workers }, async (_, w) => {
      const mine = Math.floor((stripes - w - 1) / opts.workers + 1);
      // Skew: with hotFraction set, hotShare of the I/O goes to the first hotFraction of the stripes.
      const hot = Math.max(1, Math.floor(mine * (opts.hotFraction ?? 1)));
      while (!opts.until()) {
        const started = Date.now();
        const pickHot = this.rand() < (opts.hotShare ?? 1);
        const n = pickHot ? Math.floor(this.rand() * hot) : hot + Math.floor(this.rand() * Math.max(1, mine - hot));
        const s = w + Math.min(n, mine - 1) * opts.workers;
        const lo = s * stripe;
        if (this.rand() < (opts.readRatio ?? 0)) await this.readRandomAndCheck(lo, lo + stripe);
        else await this.writeRandom(lo, lo + stripe);
        const rest = (opts.paceMs ?? 0) - (Date.now() - started);
        if (rest > 0) await new Promise((r) => setTimeout(r, rest));
      }
    }));
  }

  /** Index of the first byte of `got` (read at `offset`) that matches neither the model nor an unacknowledged write. */
  firstMismatch(offset: number, got: Buffer): number | undefined {
    const want = this.model.subarray(offset, offset + got.length);
    if (want.equals(got)) return undefined;
    for (let i = 0; i < got.length; i++) {
      if (got[i] === want[i]) continue;
      const abs = offset + i;
      const alt = this.uncertain.some((u) => abs >= u.offset && abs < u.offset + u.after.length && got[i] === u.after[abs - u.offset]);
      if (!alt) return abs;
    }
    return undefined;
  }

  /** Reads the whole device in chunks and returns the first wrong byte's offset, if any. */
  async verifyAll(chunk = 4 * 1024 * 1024): Promise<number | undefined> {
    for (let off = 0; off < this.dev.size; off += chunk) {
      const len = Math.min(chunk, this.dev.size - off);
      const got = await this.dev.read(off, len);
      const bad = this.firstMismatch(off, got);
      if (bad !== undefined) return bad;
    }
    return undefined;
  }
}
