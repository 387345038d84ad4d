// TelemetryCollector: every intervalMs it samples the OS (proc.ts), SMART (smart.ts, on its
// own slower schedule) and any sources the server registers, and pushes one
// `{ ts, values }` sample into a sink (normally a TimeSeriesStore).

import { Sampler, type SamplerOptions } from './proc.ts';
import { readSmart, type SmartResult } from './smart.ts';
import type { Sample, SampleSink } from './tsdb.ts';

export type SourceFn = () => Record<string, number> | Promise<Record<string, number>>;

export interface CollectorOptions {
  /** Where samples go; none → samples are only kept as latest(). */
  store?: SampleSink;
  /** Default 5000 ms. */
  intervalMs?: number;
  /** OS sampler options (dataDir selects the disk). Ignored when `sampler` is given. */
  os?: SamplerOptions;
  /** A ready sampler (tests); false disables OS metrics altogether. */
  sampler?: Pick<Sampler, 'sample'> | false;
  /**
   * SMART: the device to read (`/dev/sda`), or 'auto' for the disk behind os.dataDir, or
   * false (the default) for none. smartctl is slow and SMART changes slowly, so it runs
   * every smartIntervalMs (default 10 min) and the latest good reading is repeated in
   * samples until it is older than twice that.
   */
  smartDevice?: string | 'auto' | false;
  smartIntervalMs?: number;
  smartReader?: (device: string) => Promise<SmartResult>;
  now?: () => number;
  /** Called with errors of sources and of the store (default: ignored). */
  onError?: (source: string, err: unknown) => void;
}

export class TelemetryCollector {
  readonly intervalMs: number;
  private readonly sources = new Map<string, SourceFn>();
  private readonly sampler: Pick<Sampler, 'sample'> | undefined;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<Sample> | undefined;
  private last: Sample | undefined;
  private listeners: ((s: Sample) => void)[] = [];
  private smart: { device?: string; lastTry: number; result?: SmartResult; good?: { values: Record<string, number>; at: number } } = { lastTry: -Infinity };
  private readonly smartIntervalMs: number;
  /** The last SMART result (available or why not), for status pages. */
  smartStatus(): SmartResult | undefined {
    return this.smart.result;
  }

  constructor(private readonly opts: CollectorOptions = {}) {
    this.intervalMs = opts.intervalMs ?? 5000;
    if (!(this.intervalMs >= 10)) throw new Error(`intervalMs must be >= 10, got ${this.intervalMs}`);
    this.now = opts.now ?? Date.now;
    this.sampler = opts.sampler === false ? undefined : (opts.sampler ?? new Sampler({ ...opts.os, now: opts.os?.now ?? this.now }));
    this.smartIntervalMs = opts.smartIntervalMs ?? 600_000;
    const sd = opts.smartDevice ?? false;
    if (sd === 'auto') {
      const s = this.sampler instanceof Sampler ? this.sampler.blockDevice() : undefined;
      this.smart.device = s?.smartDevice;
      if (!this.smart.device) this.smart.result = { available: false, device: '', reason: 'no block device found behind the data directory' };
    } else if (sd) this.smart.device = sd;
  }

  /**
   * Registers extra metrics, e.g. the server's I/O counters. The function is called once per
   * sample; its values are merged after the OS metrics (a later source wins on a name
   * clash). A source that throws or returns non-numbers loses only its own values.
   */
  addSource(name: string, fn: SourceFn): void {
    if (this.sources.has(name)) throw new Error(`telemetry source ${JSON.stringify(name)} is already registered`);
    this.sources.set(name, fn);
  }

  removeSource(name: string): boolean {
    return this.sources.delete(name);
  }

  /** Called after every sample (the Prometheus bridge and the failure scorer listen here). */
  onSample(fn: (s: Sample) => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  latest(): Sample | undefined {
    return this.last;
  }

  /** Takes one sample now (concurrent calls share the one in progress). */
  sampleOnce(): Promise<Sample> {
    if (!this.inFlight) {
      this.inFlight = this.doSample().finally(() => {
        this.inFlight = undefined;
      });
    }
    return this.inFlight;
  }

  private async doSample(): Promise<Sample> {
    const t0 = performance.now();
    const values: Record<string, number> = {};
    let errors = 0;
    if (this.sampler) {
      try {
        Object.assign(values, (await this.sampler.sample()).values);
      } catch (e) {
        errors++;
        this.opts.onError?.('os', e);
      }
    }
    await this.maybeReadSmart();
    const sm = this.smart;
    if (sm.good && this.now() - sm.good.at <= 2 * this.smartIntervalMs) Object.assign(values, sm.good.values);
    for (const [name, fn] of this.sources) {
      try {
        const got = await fn();
        if (!got || typeof got !== 'object') throw new Error(`source returned ${typeof got}, not an object`);
        for (const [k, v] of Object.entries(got)) if (typeof v === 'number' && Number.isFinite(v)) values[k] = v;
      } catch (e) {
        errors++;
        this.opts.onError?.(name, e);
      }
    }
    values.telemetry_sample_ms = performance.now() - t0;
    values.telemetry_source_errors = errors;
    const sample: Sample = { ts: this.now(), values };
    this.last = sample;
    if (this.opts.store) {
      try {
        this.opts.store.push(sample);
      } catch (e) {
        this.opts.onError?.('store', e);
      }
    }
    for (const l of this.listeners) {
      try {
        l(sample);
      } catch (e) {
        this.opts.onError?.('listener', e);
      }
    }
    return sample;
  }

  private async maybeReadSmart(): Promise<void> {
    const sm = this.smart;
    if (!sm.device || this.now() - sm.lastTry < this.smartIntervalMs) return;
    sm.lastTry = this.now();
    const reader = this.opts.smartReader ?? ((d: string) => readSmart(d));
    let r: SmartResult;
    try {
      r = await reader(sm.device);
    } catch (e) {
      r = { available: false, device: sm.device, reason: `SMART read failed: ${(e as Error)?.message ?? String(e)}` };
      this.opts.onError?.('smart', e);
    }
    sm.result = r;
    if (r.available) sm.good = { values: r.values, at: this.now() };
  }

  /** Samples now and then every intervalMs. The timer does not keep the process alive. */
  start(): void {
    if (this.timer) return;
    const tick = () => {
      // A slow sample (a hung smartctl, a slow source) makes the next tick share it rather
      // than pile up.
      this.sampleOnce().catch((e) => this.opts.onError?.('collector', e));
    };
    this.timer = setInterval(tick, this.intervalMs);
    this.timer.unref();
    tick();
  }

  /** Stops the timer and waits for a sample in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.inFlight) await this.inFlight.catch(() => undefined);
  }

  get running(): boolean {
    return this.timer !== undefined;
  }
}
