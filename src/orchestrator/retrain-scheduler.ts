// Weekly retraining and model distribution (issue #8). Every `intervalMs` (default 7 days; 0 = only
// on demand) and on POST /v1/models/retrain, the orchestrator:
//   1. pulls each up server's per-minute history over HTTP (GET /v1/metrics/history), only the
//      metrics the failure modes' features read, a few servers at a time; a server that does not
//      answer is skipped with a warning;
//   2. joins the failure labels it recorded itself (failure-labels.ts);
//   3. runs ModelManager.retrain on its own model directory (<dir>/models) in a worker thread:
//      < 30 days of history → a warning, the model stays; a candidate that validates worse on
//      the held-out last 30 % → the model stays;
//   4. when the model was replaced, pushes the bundle to every up server (POST /v1/model), and
//      from then on a periodic reconcile pushes it to servers that come up later or report an
//      older model (GET /v1/model). Every outcome goes to the decision log.
//
// "Older" is by the bundle's createdAt: a server running a newer model than the orchestrator's
// (loaded there by hand) is left alone and shown as ahead in GET /v1/models.
//
// While a retrain runs, GET /v1/models shows its progress as `running` (null when idle), and the
// scheduler emits 'progress' with the same object at every change (null at the end), so that
// `presage model retrain` can draw a bar over a request that may take minutes.

import { adminBaseUrl } from '../common/cluster-tls.ts';
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ApiError, httpJson } from '../api/http.ts';
import { FAILURE_MODES, type FailureMode, type FailureScoreReport, type ModelsStatus, type PushOutcome, type RetrainProgress, type RetrainRun, type RetrainStage, type ServerModel } from '../api/types.ts';
import type { Logger } from '../common/log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { KvEvent, KvStore } from '../metadata/kv.ts';
import { SERVERS, type ServerRecord } from '../metadata/model.ts';
import { ModelManager, type CandidateTrainer, type RetrainResult } from '../prediction/lifecycle.ts';
import type { ModelBundle } from '../prediction/model-bundle.ts';
import { DAY_MS, FAIL_SLOW_SOURCES, HOUR_MS, MINUTE_MS, SMART_METRICS } from '../prediction/online-features.ts';
import type { DecisionLog } from './decision-log.ts';
import { FailureLabelStore, MarkDownLabeler, validateLabel, type FailureLabel } from './failure-labels.ts';
import { retrainFrom, type CompactSeries, type FetchedServer, type RetrainJob, type WorkerJob, type WorkerMessage } from './retrain-worker.ts';

export interface RetrainConfig {
  /** Time between scheduled retrains (default 7 days); 0 = only on request. */
  intervalMs: number;
  /** Fewer days of history → no retraining (default 30). */
  minDays: number;
  /** Days of history pulled from each server (default 35, the servers' retention). */
  historyDays: number;
  /** Time between feature snapshots (default 1 h). */
  tickMs: number;
  /** Modes to retrain (default all). */
  modes?: FailureMode[];
  /** Servers whose history is pulled at once (default 4). */
  concurrency: number;
  /** Time between checks of the servers' model versions (default 60 s). */
  reconcileMs: number;
  /** Timeout of one history request or one model push (default 60 s). */
  requestTimeoutMs: number;
  seed: number;
  /** Replaces the GBDT trainer (tests). A trainer is a function, so it runs on the main thread. */
  trainer?: CandidateTrainer;
  /** Run retraining in a worker thread (default true; false or a trainer → inline). */
  worker: boolean;
  now: () => number;
}

export const DEFAULT_RETRAIN: RetrainConfig = {
  intervalMs: 7 * DAY_MS, minDays: 30, historyDays: 35, tickMs: HOUR_MS, concurrency: 4,
  reconcileMs: 60_000, requestTimeoutMs: 60_000, seed: 1, worker: true, now: Date.now,
};

export type { ModelsStatus, PushOutcome, RetrainProgress, RetrainRun, RetrainStage, ServerModel } from '../api/types.ts';

export class RetrainBusyError extends Error {
  constructor() {
    super('a retrain is already running');
    this.name = 'RetrainBusyError';
  }
}

/** The telemetry metrics the features of these modes read (src/prediction/online-features.ts). */
export function metricsFor(modes: readonly FailureMode[]): string[] {
  const out = new Set<string>();
  for (const m of modes) {
    if (m === 'disk') for (const name of Object.values(SMART_METRICS)) out.add(name);
    if (m === 'fail-slow') for (const s of FAIL_SLOW_SOURCES) out.add(s.latency).add(s.throughput);
    if (m === 'network') {
      for (const n of ['net_tcp_retrans_ratio', 'net_rx_errs_per_s', 'net_tx_errs_per_s', 'net_rx_drops_per_s', 'net_tx_drops_per_s', 'net_rx_packets_per_s', 'net_tx_packets_per_s', 'io_errors_per_s', 'io_read_iops', 'io_write_iops']) out.add(n);
    }
    if (m === 'software') for (const n of ['process_heap_used_bytes', 'process_rss_bytes', 'mem_used_ratio']) out.add(n);
  }
  return [...out];
}

/** Longest range asked in one history request (the server caps an answer at 200 000 points). */
const CHUNK_MS = 30 * DAY_MS;

interface HistoryAnswer {
  points: { ts: number; mean: number; last: number }[];
}

/**
 * One server's history of `metrics` over [from, to), as the stored per-minute roll-ups (never
 * bucketed by the server: the features re-bucket minutes themselves, so the retrained model
 * sees exactly the points the serving scorer reads from the store; SMART series are sparse, one
 * point per read).
 */
export async function fetchServerHistory(adminAddr: string, metrics: string[], from: number, to: number, timeoutMs: number): Promise<Record<string, CompactSeries>> {
  const base = adminBaseUrl(adminAddr);
  const names = new Set(await httpJson<string[]>(base, 'GET', '/v1/metrics/names', undefined, timeoutMs));
  const out: Record<string, CompactSeries> = {};
  for (const metric of metrics) {
    if (!names.has(metric)) continue;
    const step = MINUTE_MS;
    const t: number[] = [];
    const mean: number[] = [];
    const last: number[] = [];
    for (let a = from; a < to; a += CHUNK_MS) {
      const b = Math.min(to, a + CHUNK_MS);
      let r: HistoryAnswer;
      try {
        r = await httpJson<HistoryAnswer>(base, 'GET', `/v1/metrics/history?metric=${encodeURIComponent(metric)}&from=${Math.floor(a)}&to=${Math.floor(b)}&step=${step}`, undefined, timeoutMs);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) continue; // no data for it (pruned since /names)
        throw err;
      }
      for (const p of r.points) {
        const ts = p.ts;
        if (ts >= to) continue;
        t.push(ts);
        mean.push(p.mean);
        last.push(p.last);
      }
    }
    if (t.length) out[metric] = { t: Float64Array.from(t), mean: Float32Array.from(mean), last: Float32Array.from(last) };
  }
  return out;
}

/** Runs `fn` over `items`, at most `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]!);
  }));
}

const isOlder = (theirs: string | undefined, ours: string): boolean => {
  const a = Date.parse(theirs ?? '');
  return !Number.isFinite(a) || a < Date.parse(ours);
};

export interface RetrainSchedulerDeps {
  /** The orchestrator's data directory: models live in <dir>/models. */
  dir: string;
  kv: KvStore;
  view: ClusterView;
  decisions: DecisionLog;
  log: Logger;
  /** The fleet monitor's latest Failure Score per server (for labelling mark-downs). */
  lastScore: (server: string) => FailureScoreReport | undefined;
  /** Signs a bundle as this orchestrator's identity before it is pushed (servers refuse unsigned ones). */
  sign: <T extends object>(bundle: T) => T;
  config?: Partial<RetrainConfig>;
}

export class RetrainScheduler extends EventEmitter {
  readonly config: RetrainConfig;
  readonly labels: FailureLabelStore;
  private readonly labeler: MarkDownLabeler;
  private models?: ModelManager;
  private inFlight?: Promise<RetrainRun>;
  private current: RetrainProgress | null = null;
  private last?: RetrainRun;
  private readonly serverModels = new Map<string, ServerModel>();
  /** (server, version) pairs whose failed push was already logged: one decision per failure streak. */
  private readonly failLogged = new Set<string>();
  private retrainTimer?: NodeJS.Timeout;
  private reconcileTimer?: NodeJS.Timeout;
  private nextAt?: number;
  private reconciling?: Promise<PushOutcome[]>;
  private readonly onView = (ev: KvEvent) => {
    // A server (re)joining gets the current model soon, not at the next periodic check.
    if (ev.key.startsWith(SERVERS) && this.view.servers.get(ev.key.slice(SERVERS.length))?.state === 'up') this.reconcileSoon();
  };
  private soonTimer?: NodeJS.Timeout;
  private started = false;

  constructor(private readonly deps: RetrainSchedulerDeps) {
    super();
    this.config = { ...DEFAULT_RETRAIN, ...deps.config };
    if (!(this.config.intervalMs >= 0)) throw new Error('retrain interval must be ≥ 0 (0 = only on request)');
    if (!(this.config.minDays > 0) || !(this.config.historyDays >= this.config.minDays)) throw new Error('retrain: need 0 < minDays ≤ historyDays');
    for (const m of this.config.modes ?? []) if (!FAILURE_MODES.includes(m)) throw new Error(`retrain: unknown mode ${m}`);
    this.labels = new FailureLabelStore(deps.kv);
    this.labeler = new MarkDownLabeler(deps.view, this.labels, deps.lastScore, deps.log, deps.decisions);
  }

  private get view(): ClusterView {
    return this.deps.view;
  }

  /** The servers that are up now, by id. */
  private upServers(): ServerRecord[] {
    return [...this.view.servers.values()].filter((s) => s.state === 'up').sort((a, b) => a.id.localeCompare(b.id));
  }

  /** One retrain decision in the decision log. */
  private decide(reason: string, about: { server?: string; mode?: FailureMode } = {}): void {
    this.deps.decisions.record({ type: 'retrain', segmentId: '', ...about, reason });
  }

  /** A reconcile whose failure is only logged (timers: the next check retries). */
  private reconcileLogged(): Promise<unknown> {
    return this.reconcile().catch((err) => this.deps.log.warn({ err: (err as Error).message }, 'model reconcile failed'));
  }

  /** Opens the model directory; call before start() or any route is served. */
  async init(): Promise<void> {
    this.models ??= await ModelManager.open(path.join(this.deps.dir, 'models'));
  }

  get manager(): ModelManager {
    if (!this.models) throw new Error('models are not loaded yet');
    return this.models;
  }

  get running(): boolean {
    return this.inFlight !== undefined;
  }

  /** The running retrain's progress (a fresh object at every change), null when idle. */
  get progress(): RetrainProgress | null {
    return this.current;
  }

  private setProgress(p: RetrainProgress | null): void {
    const c = this.current;
    if (p && c && p.stage === c.stage && p.done === c.done && p.total === c.total && p.step === c.step) return;
    this.current = p;
    this.emit('progress', p);
  }

  /** Moves the running retrain's progress on within its stage (or into the next). */
  private advance(stage: RetrainStage, done: number, total: number, step?: string): void {
    if (!this.current) return;
    this.setProgress({ stage, done, total, startedAt: this.current.startedAt, ...(step !== undefined ? { step } : {}) });
  }

  /** Starts labelling mark-downs, the retrain schedule and the reconcile loop (the leader only). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.labeler.start();
    this.view.on('change', this.onView);
    if (this.config.intervalMs > 0) {
      const arm = () => {
        this.nextAt = this.config.now() + this.config.intervalMs;
        this.retrainTimer = setTimeout(() => {
          this.retrainNow('schedule').catch((err) => this.deps.log.warn({ err: (err as Error).message }, 'scheduled retrain did not run')).finally(() => this.started && arm());
        }, this.config.intervalMs);
        this.retrainTimer.unref();
      };
      arm();
    }
    const loop = () => {
      this.reconcileTimer = setTimeout(() => {
        void this.reconcileLogged().finally(() => this.started && loop());
      }, this.config.reconcileMs);
      this.reconcileTimer.unref();
    };
    loop();
  }

  stop(): void {
    this.started = false;
    this.labeler.stop();
    this.view.off('change', this.onView);
    clearTimeout(this.retrainTimer);
    clearTimeout(this.reconcileTimer);
    clearTimeout(this.soonTimer);
    this.nextAt = undefined;
  }

  /** Waits for label writes in progress (shutdown: the metadata store is about to close). */
  flushLabels(): Promise<unknown> {
    return this.labeler.flush();
  }

  /** Waits for a retrain, a reconcile and label writes in progress (tests). */
  async settle(): Promise<void> {
    await this.inFlight?.catch(() => {});
    await this.reconciling?.catch(() => {});
    await this.labeler.flush();
  }

  private reconcileSoon(): void {
    if (!this.started || this.soonTimer) return;
    this.soonTimer = setTimeout(() => {
      this.soonTimer = undefined;
      void this.reconcileLogged();
    }, 1000);
    this.soonTimer.unref();
  }

  /** One retrain now; throws RetrainBusyError while one runs. */
  retrainNow(trigger: RetrainRun['trigger'] = 'request'): Promise<RetrainRun> {
    if (this.inFlight) return Promise.reject(new RetrainBusyError());
    // Set before anything is awaited: `running` is never null while a retrain is in flight.
    const up = this.upServers();
    this.setProgress({ stage: 'pulling history', done: 0, total: up.length, startedAt: new Date().toISOString() }); // wall clock (config.now is the history's clock)
    const p = this.run(trigger, up).finally(() => {
      this.inFlight = undefined;
      this.setProgress(null);
    });
    this.inFlight = p;
    return p;
  }

  /** `up`: the servers asked for history (and, if the model is replaced, counted in 'pushing'). */
  private async run(trigger: RetrainRun['trigger'], up: ServerRecord[]): Promise<RetrainRun> {
    await this.init();
    const mgr = this.manager;
    const cfg = this.config;
    const now = cfg.now();
    const at = new Date(now).toISOString();
    const from = now - cfg.historyDays * DAY_MS;
    const modes = cfg.modes ?? [...FAILURE_MODES];
    const metrics = metricsFor(modes);
    const byServer = new Map<string, FailureLabel[]>();
    for (const l of await this.labels.list()) {
      if (l.t > now) continue;
      const a = byServer.get(l.server) ?? [];
      a.push(l);
      byServer.set(l.server, a);
    }
    const fetched: FetchedServer[] = [];
    const skipped: RetrainRun['skipped'] = [];
    await pool(up, cfg.concurrency, async (s) => {
      try {
        const series = await fetchServerHistory(s.adminAddr, metrics, from, now, cfg.requestTimeoutMs);
        fetched.push({ id: s.id, series, failures: (byServer.get(s.id) ?? []).map((l) => ({ mode: l.mode, t: l.t })) });
      } catch (err) {
        const reason = `history not available: ${(err as Error).message}`;
        skipped.push({ server: s.id, reason });
        this.decide(`retrain skips ${s.id}: ${reason}`, { server: s.id });
      }
      this.advance('pulling history', fetched.length + skipped.length, up.length);
    });
    fetched.sort((a, b) => a.id.localeCompare(b.id));
    // The history starts at the oldest point any server has (not at the asked window's start).
    let first = Infinity;
    for (const f of fetched) for (const s of Object.values(f.series)) if (s.t.length && s.t[0]! < first) first = s.t[0]!;
    const histFrom = Number.isFinite(first) ? Math.max(first, from) : now;
    const labels: RetrainRun['labels'] = {};
    for (const f of fetched) for (const x of f.failures) if (x.t >= histFrom) labels[x.mode] = (labels[x.mode] ?? 0) + 1;

    let result: RetrainResult;
    this.advance('training', 0, 0);
    const progress = (step: string, fraction: number) => this.advance('training', Math.round(Math.min(1, Math.max(0, fraction)) * 100), 100, step);
    const job: RetrainJob = { from: histFrom, now, servers: fetched, minDays: cfg.minDays, tickMs: cfg.tickMs, modes: cfg.modes, seed: cfg.seed };
    if (cfg.trainer || !cfg.worker || (now - histFrom) / DAY_MS < cfg.minDays) {
      // Nothing heavy to do (too little history), or a trainer that cannot cross to a worker.
      result = await retrainFrom(mgr, job, progress, cfg.trainer);
    } else {
      result = await this.runInWorker({ presageRetrain: true, dir: mgr.dir, ...job }, progress);
      if (result.replaced) await mgr.reload();
    }

    const run: RetrainRun = { ...result, at, trigger, servers: fetched.map((f) => f.id), skipped, labels, pushes: [] };
    const what = result.replaced
      ? `model replaced: ${result.currentVersion} → ${mgr.version} (${result.reason})`
      : result.warning ?? `model kept (${result.currentVersion}): ${result.reason}`;
    this.decide(`retrain (${trigger}, ${result.days} days, ${fetched.length} server(s), ${Object.values(labels).reduce((a, b) => a + b, 0)} label(s)): ${what}`);
    this.deps.log.info({ replaced: result.replaced, reason: result.reason, warning: result.warning, version: mgr.version, seconds: result.seconds }, 'retrain finished');
    if (result.replaced) {
      this.advance('pushing', 0, up.length);
      run.pushes = await this.reconcile(true, (done, total) => this.advance('pushing', done, total));
    }
    this.last = run;
    return run;
  }

  private runInWorker(job: WorkerJob, progress: (step: string, fraction: number) => void): Promise<RetrainResult> {
    const api = import.meta.resolve('tsx/esm/api');
    const target = new URL('./retrain-worker.ts', import.meta.url).href;
    // The worker does not inherit the tsx loader from --import: register it before loading the module.
    const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); })`;
    const transfer = job.servers.flatMap((s) => Object.values(s.series).flatMap((x) => [x.t.buffer, x.mean.buffer, x.last.buffer]));
    return new Promise((resolve, reject) => {
      const w = new Worker(code, { eval: true, workerData: job, transferList: transfer as ArrayBuffer[] });
      let done = false;
      w.on('message', (m: WorkerMessage) => {
        if (done) return;
        if ('progress' in m) return progress(m.progress.step, m.progress.fraction);
        done = true;
        if (m.ok) resolve(m.result);
        else reject(new Error(`retrain failed: ${m.error}`));
        void w.terminate();
      });
      w.once('error', (err) => {
        done = true;
        reject(err);
      });
      w.once('exit', (code) => {
        if (!done) reject(new Error(`retrain worker exited with ${code}`));
      });
    });
  }

  /**
   * Checks every up server's model; pushes ours to those behind (older, unknown or unreadable
   * createdAt), or with `force` to every server not on our version. Returns the pushes made.
   * `onServer` hears (servers done, up servers) as each server is checked (and pushed to).
   */
  reconcile(force = false, onServer?: (done: number, total: number) => void): Promise<PushOutcome[]> {
    const p = (this.reconciling ?? Promise.resolve([])).catch(() => []).then(() => this.reconcileOnce(force, onServer));
    this.reconciling = p;
    return p;
  }

  private async reconcileOnce(force: boolean, onServer?: (done: number, total: number) => void): Promise<PushOutcome[]> {
    await this.init();
    const ours = this.manager.bundle;
    let signed: ModelBundle | undefined; // signed once, at the first push it is needed for
    const pushes: PushOutcome[] = [];
    for (const id of [...this.serverModels.keys()]) if (!this.view.servers.has(id)) this.serverModels.delete(id);
    const servers = [...this.view.servers.values()];
    for (const s of servers) {
      if (s.state === 'up') continue;
      const m = this.serverModels.get(s.id);
      this.serverModels.set(s.id, { ...m, server: s.id, state: s.state, sync: m?.version === ours.version ? 'current' : 'unknown' });
    }
    const up = servers.filter((s) => s.state === 'up');
    let checked = 0;
    onServer?.(0, up.length);
    await pool(up, this.config.concurrency, async (s) => {
      const base = adminBaseUrl(s.adminAddr);
      const prev = this.serverModels.get(s.id);
      const entry: ServerModel = { server: s.id, state: s.state, sync: 'unknown', checkedAt: new Date().toISOString(), ...(prev?.lastPush ? { lastPush: prev.lastPush } : {}) };
      try {
        const v = await httpJson<{ version: string; createdAt?: string }>(base, 'GET', '/v1/model', undefined, 5000);
        entry.version = v.version;
        entry.createdAt = v.createdAt;
        entry.sync = v.version === ours.version ? 'current' : isOlder(v.createdAt, ours.createdAt) ? 'behind' : 'ahead';
      } catch (err) {
        entry.error = (err as Error).message;
      }
      if (entry.sync === 'behind' || (force && entry.sync !== 'current')) {
        const out: PushOutcome = { server: s.id, version: ours.version, ok: false, at: new Date().toISOString() };
        const failKey = `${s.id} ${ours.version}`;
        try {
          signed ??= this.deps.sign(ours);
          await httpJson<{ version: string }>(base, 'POST', '/v1/model', signed, this.config.requestTimeoutMs);
          out.ok = true;
          entry.version = ours.version;
          entry.createdAt = ours.createdAt;
          entry.sync = 'current';
          delete entry.error;
          this.failLogged.delete(failKey);
          this.decide(`model ${ours.version} pushed to ${s.id}`, { server: s.id });
        } catch (err) {
          out.error = (err as Error).message;
          entry.error = out.error;
          if (!this.failLogged.has(failKey)) {
            this.failLogged.add(failKey);
            this.decide(`model ${ours.version} could not be pushed to ${s.id}: ${out.error} (retried at the next check)`, { server: s.id });
          }
        }
        entry.lastPush = out;
        pushes.push(out);
      }
      this.serverModels.set(s.id, entry);
      onServer?.(++checked, up.length);
    });
    return pushes.sort((a, b) => a.server.localeCompare(b.server));
  }

  status(): ModelsStatus {
    const b = this.manager.bundle;
    return {
      version: b.version, createdAt: b.createdAt, trainedOn: b.trainedOn, validation: b.validation,
      running: this.current, intervalMs: this.config.intervalMs,
      ...(this.nextAt ? { nextRetrainAt: new Date(this.nextAt).toISOString() } : {}),
      ...(this.last ? { lastRetrain: this.last } : {}),
      servers: [...this.view.servers.values()].sort((a, c) => a.id.localeCompare(c.id)).map((s) => {
        const m = this.serverModels.get(s.id);
        return m ? { ...m, state: s.state, sync: m.version === b.version ? 'current' as const : m.sync } : { server: s.id, state: s.state, sync: 'unknown' as const };
      }),
    };
  }

  /** GET /v1/models, POST /v1/models/retrain, GET/POST /v1/labels. */
  register(app: FastifyInstance): void {
    app.get('/v1/models', async (_req, reply) => {
      if (!this.models) return reply.code(503).send({ error: 'models are loading' });
      return this.status();
    });
    app.post('/v1/models/retrain', async (_req, reply) => {
      try {
        return await this.retrainNow('request');
      } catch (err) {
        if (err instanceof RetrainBusyError) return reply.code(409).send({ error: err.message });
        return reply.code(500).send({ error: `retrain failed: ${(err as Error).message}` });
      }
    });
    app.get<{ Querystring: { server?: string } }>('/v1/labels', async (req) => this.labels.list(req.query.server || undefined));
    app.post('/v1/labels', async (req, reply) => {
      try {
        const label = validateLabel(req.body);
        if (!(await this.labels.add(label))) return reply.code(409).send({ error: `${label.server} already has a label at ${label.t}` });
        this.decide(`failure label (operator): ${label.mode} (${label.cause})`, { server: label.server, mode: label.mode });
        return reply.code(201).send(label);
      } catch (err) {
        return reply.code(400).send({ error: (err as Error).message });
      }
    });
  }
}
