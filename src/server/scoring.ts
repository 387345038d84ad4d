// A storage server scoring itself: every tick it computes its Failure Score from its own
// telemetry with the current model (hot-swappable without restart), comparing itself with the
// fleet's medians that the orchestrator publishes (peer comparison), and serves the report at
// GET /v1/failure-score. New models arrive by POST /v1/model (the orchestrator pushes retrained
// ones) or by pointing the model directory's `current` at another version.

import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { OrchestratorClient } from '../api/orchestrator-client.ts';
import type { FailureScoreReport } from '../api/types.ts';
import type { Logger } from '../common/log.ts';
import { SignatureError, verifySignedJson } from '../auth/signed-json.ts';
import { ModelManager } from '../prediction/lifecycle.ts';
import { validateBundle, type ModelBundle } from '../prediction/model-bundle.ts';
import { FAIL_SLOW_WINDOW_MIN, lastPoint, peerSample, storeQuery, type PeerStats, type QueryFn } from '../prediction/online-features.ts';
import { CompressedSeries } from './score-clock.ts';
import type { ServerTelemetry } from './telemetry.ts';

const COMPRESSED_METRICS = /^(io|disk)_/;

export interface ScoringOptions {
  serverId: string;
  dir: string;
  telemetry: ServerTelemetry;
  orch: OrchestratorClient;
  log: Logger;
  /** Time between scores (default 10 s). */
  intervalMs?: number;
  /** Compressed scoring clock for demos and tests (1 = real time, the default). */
  timeScale?: number;
  /** A model bundle file to start from instead of the model directory's current (or the bundled default). */
  modelPath?: string;
  /**
   * The servers this one compares itself with for fail-slow (default: the whole fleet). Servers
   * sharing a host and its workload (one per drive) name their host, as the model was trained
   * comparing a drive with the other drives of its host.
   */
  peerGroup?: string;
  /** A model signer's public key, or why it is not trusted (Keyring.trustedSigner): pushed bundles must be signed. */
  trustedSigner: (name: string) => Buffer | string;
}

export class ServerScoring {
  private models?: ModelManager;
  private latest?: FailureScoreReport;
  private timer?: NodeJS.Timeout;
  private stopWatch?: () => void;
  private readonly compressed?: CompressedSeries;
  private stopped = false;
  /** Milliseconds the last score took (telemetry for the cost of prediction). */
  lastScoreMs = 0;

  constructor(private readonly opts: ScoringOptions) {
    const scale = opts.timeScale ?? 1;
    if (scale > 1) {
      this.compressed = new CompressedSeries(scale);
      opts.telemetry.collector.onSample((s) => this.compressed!.push(s));
    }
  }

  async start(): Promise<void> {
    this.models = await ModelManager.open(path.join(this.opts.dir, 'models'));
    if (this.opts.modelPath) await this.models.load(this.opts.modelPath);
    this.models.on('swap', (e: { from: string; to: string }) => this.opts.log.info(e, 'model swapped'));
    this.models.on('error', (err: Error) => this.opts.log.warn({ err: err.message }, 'model reload failed'));
    this.stopWatch = this.models.watch();
    const interval = this.opts.intervalMs ?? 10000;
    const loop = async () => {
      if (this.stopped) return;
      await this.scoreNow().catch((err) => this.opts.log.warn({ err: (err as Error).message }, 'scoring failed'));
      if (!this.stopped) this.timer = setTimeout(loop, interval);
    };
    this.timer = setTimeout(loop, Math.min(interval, 1000));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.stopWatch?.();
  }

  get modelVersion(): string | undefined {
    return this.models?.version;
  }

  private query(now: number): QueryFn {
    const store = this.opts.telemetry.store;
    const real = storeQuery(store);
    if (!this.compressed) return real;
    // Only the I/O-path and disk series run on the compressed clock: the fail-slow features built
    // on them are unit-free (z-scores, ratios, correlations). Rates per hour (memory growth) and
    // daily SMART keep real time, or a compressed clock would turn warm-up into a "leak".
    const fast = this.compressed.query(now);
    const q = ((m: string, f: number, t: number) => (COMPRESSED_METRICS.test(m) ? fast(m, f, t) : real(m, f, t))) as QueryFn;
    q.last = (m, f, t) => (COMPRESSED_METRICS.test(m) ? lastPoint(fast, m, f, t) : real.last!(m, f, t));
    return q;
  }

  /**
   * This server's per-minute means of the peer-compared metrics over the fail-slow window, on the
   * clock it scores on. The orchestrator pools these over the fleet into the medians/MADs every
   * server compares itself with: per-minute values, like the ones each server judges, so a healthy
   * server's ordinary minute-to-minute spread is inside the reference rather than an outlier.
   */
  peerSample(now = Date.now()): { group?: string; minutes: number; metrics: Record<string, number[]> } {
    return { ...(this.opts.peerGroup ? { group: this.opts.peerGroup } : {}), minutes: FAIL_SLOW_WINDOW_MIN, metrics: peerSample(this.query(now), now) };
  }

  async scoreNow(): Promise<FailureScoreReport> {
    if (!this.models) throw new Error('scoring has not started');
    const now = Date.now();
    // The reference of the other servers of this one's peer group; without it fail-slow has no input.
    const peers = await this.opts.orch.fleetStats(this.opts.serverId, this.opts.peerGroup).catch(() => undefined) as PeerStats | undefined;
    const t0 = performance.now();
    const report = this.models.scorer.score({ serverId: this.opts.serverId, query: this.query(now), now, peers });
    this.lastScoreMs = performance.now() - t0;
    if (this.compressed) {
      const note = `scored on a compressed clock (x${this.opts.timeScale}: one model minute = ${this.compressed.bucketMs} ms): a demo/test setting`;
      report.note = report.note ? `${report.note}; ${note}` : note;
    }
    this.latest = report;
    this.opts.telemetry.prom.failureScore.set(report.score);
    return report;
  }

  register(app: FastifyInstance): void {
    app.get('/v1/failure-score', async (_req, reply) => {
      try {
        return this.latest ?? (await this.scoreNow());
      } catch (err) {
        return reply.code(503).send({ error: (err as Error).message });
      }
    });
    app.get('/v1/peer-sample', async () => this.peerSample());
    app.get('/v1/model', async (_req, reply) => {
      if (!this.models) return reply.code(503).send({ error: 'models are loading' });
      const b = this.models.bundle;
      return { version: b.version, createdAt: b.createdAt, trainedOn: b.trainedOn, validation: b.validation };
    });
    // A new model, pushed by the orchestrator after retraining: signed by an admin (the
    // orchestrator's identity), validated, installed, swapped in. The admin token on the request
    // says who sent it; the signature says who made it, so a bundle cannot be altered on the way.
    app.post('/v1/model', { bodyLimit: 64 * 1024 * 1024 }, async (req, reply) => {
      if (!this.models) return reply.code(503).send({ error: 'models are loading' });
      let unsigned: Record<string, unknown>;
      try {
        unsigned = verifySignedJson(req.body, this.opts.trustedSigner);
      } catch (err) {
        if (!(err instanceof SignatureError)) throw err;
        this.opts.log.warn({ code: err.code, err: err.message }, 'model bundle refused');
        return reply.code(403).send({ error: `model bundle refused: ${err.message}`, code: err.code });
      }
      try {
        const bundle = validateBundle(unsigned as unknown as ModelBundle);
        await this.models.install(bundle);
        return { version: bundle.version };
      } catch (err) {
        return reply.code(400).send({ error: (err as Error).message });
      }
    });
  }
}
