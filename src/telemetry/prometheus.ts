// Prometheus metrics of a storage server, on prom-client. createServerMetrics() makes the
// data-path metrics with conventional names and units and returns typed handles the server
// calls; bridgeCollector() exposes the collector's latest sample as `presage_node_<metric>`.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { metricInfo } from './metrics.ts';
import type { Sample } from './tsdb.ts';

export type IoOp = 'read' | 'write' | 'flush' | 'trim';
export type IoErrorKind = 'io' | 'checksum' | 'timeout' | 'stale' | 'other';

/** Storage latencies run from tens of µs (cache) to seconds (a failing disk). */
export const IO_LATENCY_BUCKETS_SECONDS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/**
 * A gauge that says nothing until it is set: a no-label prom-client Gauge prints 0 from the
 * start, which for a failure score would claim "healthy" before any model has run.
 */
export class OptionalGauge<T extends string = string> extends Gauge<T> {
  private hasValue = false;
  private readonly labelled: boolean;

  constructor(cfg: ConstructorParameters<typeof Gauge<T>>[0]) {
    super(cfg);
    this.labelled = (cfg.labelNames?.length ?? 0) > 0;
  }

  override set(value: number): void;
  override set(labels: Partial<Record<T, string | number>>, value: number): void;
  override set(a: number | Partial<Record<T, string | number>>, b?: number): void {
    this.hasValue = true;
    if (typeof a === 'number') super.set(a);
    else super.set(a, b!);
  }

  /** Back to "no value" (the metric prints no sample). */
  clear(): void {
    this.hasValue = false;
    this.reset();
  }

  override async get(): ReturnType<Gauge<T>['get']> {
    const r = await super.get();
    if (!this.labelled && !this.hasValue) return { ...r, values: [] };
    return r;
  }
}

export interface ServerMetrics {
  registry: Registry;
  ioRequests: Counter<'op'>;
  ioLatency: Histogram<'op'>;
  ioBytes: Counter<'op'>;
  ioErrors: Counter<'op' | 'kind'>;
  checksumFailures: Counter<string>;
  segments: OptionalGauge<string>;
  failureScore: OptionalGauge<string>;
  /** One finished I/O: counts it, its bytes and its latency. */
  observeIo(op: IoOp, seconds: number, bytes: number): void;
  /** One failed I/O. */
  observeError(op: IoOp, kind: IoErrorKind): void;
}

export function createServerMetrics(registry: Registry = new Registry()): ServerMetrics {
  const ioRequests = new Counter({
    name: 'presage_io_requests_total', help: 'Data-path requests completed, by operation.', labelNames: ['op'] as const, registers: [registry],
  });
  const ioLatency = new Histogram({
    name: 'presage_io_latency_seconds', help: 'Data-path request latency in seconds, by operation.', labelNames: ['op'] as const,
    buckets: IO_LATENCY_BUCKETS_SECONDS, registers: [registry],
  });
  const ioBytes = new Counter({
    name: 'presage_io_bytes_total', help: 'Bytes moved by data-path requests, by operation.', labelNames: ['op'] as const, registers: [registry],
  });
  const ioErrors = new Counter({
    name: 'presage_io_errors_total', help: 'Data-path requests that failed, by operation and kind.', labelNames: ['op', 'kind'] as const, registers: [registry],
  });
  const checksumFailures = new Counter({
    name: 'presage_checksum_failures_total', help: 'Blocks whose checksum did not verify (read or scrub).', registers: [registry],
  });
  const segments = new OptionalGauge({ name: 'presage_segments', help: 'Segment replicas held by this server.', registers: [registry] });
  const failureScore = new OptionalGauge({
    name: 'presage_failure_score', help: 'Failure Score of this server, 0 healthy .. 100 critical.', registers: [registry],
  });
  return {
    registry, ioRequests, ioLatency, ioBytes, ioErrors, checksumFailures, segments, failureScore,
    observeIo(op, seconds, bytes) {
      if (!(seconds >= 0) || !(bytes >= 0)) throw new Error(`observeIo: seconds and bytes must be >= 0 (got ${seconds}, ${bytes})`);
      ioRequests.inc({ op });
      ioLatency.observe({ op }, seconds);
      if (bytes > 0) ioBytes.inc({ op }, bytes);
    },
    observeError(op, kind) {
      ioErrors.inc({ op, kind });
      if (kind === 'checksum') checksumFailures.inc();
    },
  };
}

/** `presage_node_` + the metric name made safe for Prometheus. */
export function nodeMetricName(metric: string, prefix = 'presage_node_'): string {
  return prefix + metric.replace(/[^a-zA-Z0-9_:]/g, '_');
}

export interface CollectorLike {
  latest(): Sample | undefined;
  onSample(fn: (s: Sample) => void): () => void;
}

/**
 * Exposes the latest collector sample as gauges `presage_node_<metric>`. Gauges are created
 * as new metric names appear; a metric absent from the latest sample prints no sample
 * (never a stale or zero value). Returns a function that detaches the bridge.
 */
export function bridgeCollector(registry: Registry, collector: CollectorLike, prefix = 'presage_node_'): () => void {
  const gauges = new Map<string, OptionalGauge>();
  const apply = (s: Sample) => {
    for (const name of Object.keys(s.values)) {
      if (gauges.has(name)) continue;
      const promName = nodeMetricName(name, prefix);
      if (registry.getSingleMetric(promName)) continue; // someone else owns that name
      const info = metricInfo(name);
      const help = info ? `${info.description} Unit: ${info.unit}. Source: ${info.source}.` : `Telemetry metric ${name}.`;
      gauges.set(name, new OptionalGauge({ name: promName, help, registers: [registry] }));
    }
    for (const [name, g] of gauges) {
      const v = s.values[name];
      if (v === undefined || !Number.isFinite(v)) g.clear();
      else g.set(v);
    }
  };
  const cur = collector.latest();
  if (cur) apply(cur);
  const off = collector.onSample(apply);
  return () => {
    off();
    for (const [name] of gauges) registry.removeSingleMetric(nodeMetricName(name, prefix));
    gauges.clear();
  };
}
