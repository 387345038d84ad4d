// The failure scenario of the orchestration tests and of bench/predictive-vs-reactive.ts, with
// real processes: 5 storage servers scoring themselves on a compressed clock, an orchestrator
// (predictive drain on or off), three volumes of different criticality each with a hot region,
// a verifying workload through the client, then a ramping slow-I/O fault injected into one
// server and, later, that server SIGKILLed. Everything a test or a benchmark wants to assert or
// report is recorded: scores over time, the decision log, per-op client latencies, and how long
// segments spent below their replication factor.

import { OrchestratorClient } from '../../src/api/orchestrator-client.ts';
import type { Decision } from '../../src/orchestrator/decision-log.ts';
import type { SegmentView } from '../../src/api/types.ts';
import { PresageClient } from '../../src/client/presage-client.ts';
import { createLogger } from '../../src/common/log.ts';
import { TestCluster, authedFetch } from './cluster.ts';
import { sleep, waitFor } from './settle.ts';
import { VerifyingWorkload } from './workload.ts';

const MiB = 1024 * 1024;

export interface ScenarioOptions {
  /** Predictive drain on (the product) or off (reactive failover only). */
  predictive: boolean;
  servers?: number;
  volumeMiB?: number;
  segmentMiB?: number;
  /** Seconds the slow-I/O fault takes to reach full strength, and that strength (ms per disk op). */
  rampSeconds?: number;
  intensityMs?: number;
  /** Orchestrator --max-copies-cluster (default: its own default). 1 makes the copy order exactly the priority order. */
  maxCopiesCluster?: number;
  log?: (line: string) => void;
}

export const SCENARIO_VOLUMES = [
  { name: 'vol-critical', criticality: 'critical' as const },
  { name: 'vol-normal', criticality: 'normal' as const },
  { name: 'vol-low', criticality: 'low' as const },
];

/** The workload's hot region: the first HOT_FRACTION of each volume gets HOT_SHARE of the I/O. */
export const HOT_FRACTION = 0.25;
export const HOT_SHARE = 0.85;
const STRIPE = 256 * 1024;
/**
 * Each workload worker starts at most one operation per PACE_MS. Unpaced, the six workers kept both
 * cores of the CI machine busy, latency then measured the run queue (a server that the scheduler
 * happened to favour less looked 1.5–2× slower than its peers for a minute at a time), and healthy
 * servers scored up to 67 on fail-slow before any fault; paced, the machine has headroom, as a real
 * fleet does, and only the injected fault stands out.
 */
const PACE_MS = 25;

export interface ScorePoint {
  t: number;
  server: string;
  score: number;
  mode: string;
  features: string;
}

export class DegradeScenario {
  readonly scores: ScorePoint[] = [];
  /** Times (ms) at which the orchestrator reported segments below their replication factor, and how many. */
  readonly degradedSamples: { t: number; degraded: number }[] = [];
  readonly loads: VerifyingWorkload[] = [];
  victim = '';
  faultAt = 0;
  killedAt = 0;
  private stopWorkload = false;
  private running?: Promise<unknown>;
  private samplers: Promise<void>[] = [];
  private sampling = true;

  private constructor(readonly cluster: TestCluster, readonly api: OrchestratorClient, readonly client: PresageClient, readonly opts: Required<Omit<ScenarioOptions, 'log'>> & { log: (l: string) => void }) {}

  static async start(o: ScenarioOptions): Promise<DegradeScenario> {
    const opts = { servers: 5, volumeMiB: 32, segmentMiB: 4, rampSeconds: 20, intensityMs: 40, maxCopiesCluster: 0, log: () => {}, ...o };
    const cluster = await TestCluster.start({
      servers: opts.servers,
      heartbeatTimeoutMs: 3000,
      // One model minute = 1 s: a degradation that takes an hour in production plays out in a minute.
      serverArgs: (i) => ['--zone', `zone-${i % 3}`, '--allow-faults', '--telemetry-interval', '500', '--score-interval', '1000', '--score-time-scale', '60', '--gc-grace', '1000'],
      orchestratorArgs: ['--score-poll', '1000', '--drain-sustain', '4000', '--recover-after', '600000', ...(opts.predictive ? [] : ['--no-predictive']),
        ...(opts.maxCopiesCluster ? ['--max-copies-cluster', String(opts.maxCopiesCluster)] : [])],
    });
    let s: DegradeScenario | undefined;
    try {
      const api = new OrchestratorClient(cluster.url);
      const client = await PresageClient.connect({ orchestratorUrl: cluster.url, logger: createLogger('scenario-client', 'error') });
      s = new DegradeScenario(cluster, api, client, opts);
      for (const v of SCENARIO_VOLUMES) {
        await api.createVolume({ name: v.name, size: opts.volumeMiB * MiB, segmentSize: opts.segmentMiB * MiB, replicas: 2, criticality: v.criticality });
      }
      for (const [i, v] of SCENARIO_VOLUMES.entries()) s.loads.push(new VerifyingWorkload(await client.openVolume(v.name), 100 + i, 64 * 1024));
      s.startSamplers();
      return s;
    } catch (err) {
      await s?.stop().catch(() => {});
      await cluster.stop();
      throw err;
    }
  }

  startWorkload(): void {
    this.running = Promise.all(this.loads.map((w) => w.run({ workers: 2, until: () => this.stopWorkload, readRatio: 0.5, stripe: STRIPE, hotFraction: HOT_FRACTION, hotShare: HOT_SHARE, paceMs: PACE_MS })));
  }

  private startSamplers(): void {
    const loop = async (every: number, fn: () => Promise<void>) => {
      while (this.sampling) {
        await fn().catch(() => {});
        await sleep(every);
      }
    };
    this.samplers.push(loop(1000, async () => {
      const t = Date.now();
      for (const r of await this.api.failureScores()) this.scores.push({ t, server: r.serverId, score: r.score, mode: r.mode, features: r.topFeatures.slice(0, 3).map((f) => `${f.name}=${f.value.toFixed(2)}`).join(' ') });
    }));
    this.samplers.push(loop(200, async () => {
      const st = await this.api.status();
      this.degradedSamples.push({ t: Date.now(), degraded: st.segments.degraded });
    }));
  }

  /** Whether a segment lies in its volume's hot region. */
  isHot(segmentId: string): boolean {
    const idx = Number(segmentId.slice(segmentId.lastIndexOf('/') + 1));
    const segs = this.opts.volumeMiB / this.opts.segmentMiB;
    return idx < Math.ceil(segs * HOT_FRACTION);
  }

  async allSegments(): Promise<SegmentView[]> {
    return (await Promise.all(SCENARIO_VOLUMES.map((v) => this.api.segments(v.name)))).flat();
  }

  /**
   * The victim: the server holding the most hot critical segments (ties: most segments), so the
   * drain order has something to show — hot critical segments must leave before the rest.
   */
  async chooseVictim(): Promise<string> {
    const segs = await this.allSegments();
    const rank = new Map<string, [number, number, number]>();
    for (const seg of segs) {
      for (const r of seg.replicas) {
        const cur = rank.get(r) ?? [0, 0, 0];
        if (seg.segmentId.startsWith('vol-critical/') && this.isHot(seg.segmentId)) cur[0]++;
        if (seg.segmentId.startsWith('vol-low/')) cur[1]++;
        cur[2]++;
        rank.set(r, cur);
      }
    }
    const best = [...rank.entries()].sort((a, b) => b[1][0] - a[1][0] || Math.min(b[1][1], 1) - Math.min(a[1][1], 1) || b[1][2] - a[1][2])[0];
    this.victim = best[0];
    return this.victim;
  }

  /** Starts the ramping slow-I/O fault on the victim through its admin API. */
  async injectFault(): Promise<void> {
    const s = this.cluster.serverById(this.victim);
    const res = await authedFetch(`http://127.0.0.1:${s.adminPort}/v1/faults`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ profile: 'slow-io', rampSeconds: this.opts.rampSeconds, intensity: this.opts.intensityMs }),
    });
    if (res.status !== 201) throw new Error(`fault injection refused: ${res.status} ${await res.text()}`);
    this.faultAt = Date.now();
    this.opts.log(`fault: slow-io ramping to +${this.opts.intensityMs} ms over ${this.opts.rampSeconds} s on ${this.victim}`);
  }

  /** Replicas still on the victim. */
  async onVictim(): Promise<number> {
    return (await this.allSegments()).filter((x) => x.replicas.includes(this.victim) || (x.joining ?? []).includes(this.victim)).length;
  }

  async waitScoreAbove(threshold: number, timeoutMs = 120000): Promise<number> {
    return waitFor(`${this.victim}'s score to pass ${threshold}`, async () => {
      const r = await this.api.failureScore(this.victim).catch(() => undefined);
      return r && r.score > threshold ? Date.now() : undefined;
    }, timeoutMs, 500);
  }

  async waitDrained(timeoutMs = 180000): Promise<number> {
    return waitFor(`${this.victim} to be drained`, async () => ((await this.onVictim()) === 0 && (await this.api.migrations()).length === 0 ? Date.now() : undefined), timeoutMs, 500);
  }

  /**
   * The failure: 'crash' SIGKILLs the victim (its port refuses connections at once); 'hang'
   * SIGSTOPs it — the kernel still accepts connections but nothing answers, like a host that
   * froze or vanished behind the network, which only the heartbeat timeout reveals. stop() kills
   * a hung victim for good.
   */
  async killVictim(how: 'crash' | 'hang' = 'crash'): Promise<void> {
    const h = this.cluster.serverById(this.victim);
    if (how === 'hang') h.proc!.child.kill('SIGSTOP');
    else await this.cluster.killServer(h.index, 'SIGKILL');
    this.killedAt = Date.now();
    this.opts.log(`${how === 'hang' ? 'froze' : 'killed'} ${this.victim} (${how === 'hang' ? 'SIGSTOP' : 'SIGKILL'})`);
  }

  /** Waits until the orchestrator has marked the victim down and every segment has its replicas back. */
  async waitRecovered(timeoutMs = 120000): Promise<number> {
    return waitFor('the cluster to be fully replicated without the victim', async () => {
      const st = await this.api.status();
      const v = st.servers.find((x) => x.id === this.victim);
      if (v && v.state === 'up') return undefined;
      if (st.segments.degraded > 0 || st.operators.length > 0) return undefined;
      const segs = await this.allSegments();
      return segs.every((x) => x.replicas.length === 2 && !x.replicas.includes(this.victim)) ? Date.now() : undefined;
    }, timeoutMs, 200);
  }

  async events(): Promise<Decision[]> {
    return this.api.events(0);
  }

  /** Seconds during which at least one segment was below its replication factor (from 200 ms samples). */
  belowRfSeconds(): number {
    let total = 0;
    for (let i = 1; i < this.degradedSamples.length; i++) {
      if (this.degradedSamples[i - 1].degraded > 0) total += this.degradedSamples[i].t - this.degradedSamples[i - 1].t;
    }
    return total / 1000;
  }

  /** Stops the workload and the samplers; returns the client errors and verification failures. */
  async finish(): Promise<string[]> {
    this.stopWorkload = true;
    await this.running;
    const problems: string[] = [];
    for (const w of this.loads) {
      problems.push(...w.stats.errors.slice(0, 5));
      const bad = await w.verifyAll();
      if (bad !== undefined) problems.push(`${w.dev.name}: wrong byte at ${bad}`);
    }
    return problems;
  }

  async stop(): Promise<void> {
    this.stopWorkload = true;
    this.sampling = false;
    await this.running?.catch(() => {});
    await Promise.all(this.samplers);
    await this.client.close().catch(() => {});
    this.api.close();
    await this.cluster.stop();
  }
}
