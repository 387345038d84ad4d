// The part of retraining that runs off the orchestrator's event loop. Building hourly feature
// snapshots of every server over 30+ days and training takes about a minute for 100 servers
// (docs/prediction-cost.md); on the main thread that would stall heartbeats long enough for the
// failover controller to mark healthy servers down. So the fetched history (compact typed arrays,
// transferred, not copied) goes to a worker thread that runs ModelManager.retrain on the same
// model directory; the main thread then reloads the `current` pointer.
//
// Also here, shared by both sides: the compact series format, a QueryFn over it, and the split of
// a server's history into "lives" at its failures.

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { FailureMode } from '../api/types.ts';
import { ModelManager, type CandidateTrainer, type RetrainResult, type ServerHistory, type TrainingHistory } from '../prediction/lifecycle.ts';
import type { QueryFn, QueryPoint } from '../prediction/online-features.ts';

/** One metric's points, oldest first: point time (ms), mean and last (float32: 4 bytes a value is plenty for features). */
export interface CompactSeries {
  t: Float64Array;
  mean: Float32Array;
  last: Float32Array;
}

export interface FetchedServer {
  id: string;
  series: Record<string, CompactSeries>;
  failures: { mode: FailureMode; t: number }[];
}

/** A QueryFn over fetched series (binary search), with the `last` fast path. */
export function seriesQuery(series: Record<string, CompactSeries>, notBefore = -Infinity): QueryFn {
  const lowerBound = (t: Float64Array, x: number): number => {
    let lo = 0;
    let hi = t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const point = (s: CompactSeries, i: number): QueryPoint => ({ ts: s.t[i]!, mean: s.mean[i]!, min: s.mean[i]!, max: s.mean[i]!, last: s.last[i]! });
  const q = ((metric: string, fromMs: number, toMs: number) => {
    const s = series[metric];
    if (!s) return [];
    const out: QueryPoint[] = [];
    for (let i = lowerBound(s.t, Math.max(fromMs, notBefore)); i < s.t.length && s.t[i]! < toMs; i++) out.push(point(s, i));
    return out;
  }) as QueryFn;
  q.last = (metric, fromMs, toMs) => {
    const s = series[metric];
    if (!s) return undefined;
    const i = lowerBound(s.t, toMs) - 1;
    return i >= 0 && s.t[i]! >= Math.max(fromMs, notBefore) ? point(s, i) : undefined;
  };
  return q;
}

/**
 * A server's history cut into lives at its failures: a life ends at its failure (lifecycle's
 * buildRows stops a server at its first failure), and the next life sees only telemetry from
 * after it, as a replaced drive or a restarted process starts afresh. Without the split a server
 * that failed once would contribute nothing after its first failure.
 */
export function splitLives(s: FetchedServer): ServerHistory[] {
  const fails = [...s.failures].sort((a, b) => a.t - b.t);
  const out: ServerHistory[] = [];
  let start = -Infinity;
  fails.forEach((f, k) => {
    out.push({ id: `${s.id}#${k}`, query: seriesQuery(s.series, start), failures: [f] });
    start = f.t;
  });
  out.push({ id: fails.length ? `${s.id}#${fails.length}` : s.id, query: seriesQuery(s.series, start), failures: [] });
  return out;
}

function trainingHistory(from: number, servers: FetchedServer[]): TrainingHistory {
  return { from, servers: servers.flatMap(splitLives) };
}

/** What one retrain needs besides the model directory: the same on the main thread and in the worker. */
export interface RetrainJob {
  from: number;
  now: number;
  servers: FetchedServer[];
  minDays: number;
  tickMs: number;
  modes?: FailureMode[];
  seed: number;
}

export interface WorkerJob extends RetrainJob {
  presageRetrain: true;
  dir: string;
}

/** A message from the worker: progress while it runs, then exactly one outcome. */
export type WorkerMessage =
  | { progress: { step: string; fraction: number } }
  | { ok: true; result: RetrainResult }
  | { ok: false; error: string };

/** Runs `job` through `mgr.retrain` (a `trainer` only on the main thread: a function cannot cross to a worker). */
export function retrainFrom(mgr: ModelManager, job: RetrainJob, progress: (step: string, fraction: number) => void, trainer?: CandidateTrainer): Promise<RetrainResult> {
  return mgr.retrain({ history: trainingHistory(job.from, job.servers), now: job.now, minDays: job.minDays, tickMs: job.tickMs, modes: job.modes, seed: job.seed, trainer, progress });
}

if (!isMainThread && (workerData as WorkerJob | undefined)?.presageRetrain) {
  // One message per server at most (see lifecycle's progress): cheap next to building its features.
  const progress = (step: string, fraction: number) => parentPort!.postMessage({ progress: { step, fraction } } satisfies WorkerMessage);
  const job = workerData as WorkerJob;
  ModelManager.open(job.dir).then((mgr) => retrainFrom(mgr, job, progress)).then(
    (result) => parentPort!.postMessage({ ok: true, result }),
    (err: Error) => parentPort!.postMessage({ ok: false, error: err.message ?? String(err) }),
  );
}
